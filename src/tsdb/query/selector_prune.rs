//! What `top()` and `bottom()` keep of each series as it is read: only the
//! points they can pick, with the other fields at those times (the
//! auxiliary columns beside them), so their memory follows the series
//! and buckets read times N, not the points in range.
//!
//! A point the group's selection picks is among the N its own series
//! would pick in its bucket: fewer than N points of the group come
//! before it in [`pick_order`], so fewer than N of its series do (with a
//! tag argument, one per tag value is picked, and a series has one value
//! of it). Under `LIMIT` without a tag, influxd's selection reads only
//! the group's first `LIMIT + OFFSET + 1` points by time, which are among
//! each series' first that many.

use std::collections::BTreeSet;

use super::aggregate::{by_bucket, pick_order};
use super::ast::*;
use super::values::{Points, selector_of};
use crate::tsdb::line_protocol::FieldValue;

/// How the points of each series read for a `top()`/`bottom()` are
/// pruned.
pub(super) struct SelectorPrune<'s> {
    s: &'s Select,
    pick: Pick,
    field: &'s str,
    /// The points picked per bucket.
    n: usize,
    /// Whether one point per value of a tag is picked (`top(v, host, 3)`).
    tagged: bool,
}

impl<'s> SelectorPrune<'s> {
    /// The pruning of `s`'s series, if it selects with `top()` or
    /// `bottom()` (`sample()` picks at random from every point).
    pub(super) fn of(s: &'s Select) -> Option<Self> {
        match selector_of(s)? {
            (_, Pick::Sample, ..) => None,
            (_, pick, field, tag, n) => Some(SelectorPrune {
                s,
                pick,
                field,
                n,
                tagged: tag.is_some(),
            }),
        }
    }

    /// The points of a series (its conditions applied, each field's in
    /// time order) that the selection can pick, with every field's points
    /// at their times; none if it lacks the selected field.
    pub(super) fn prune(&self, mut points: Points) -> Points {
        let Some(pts) = points.get(self.field) else {
            return Points::new();
        };
        let mut times: BTreeSet<i64> = BTreeSet::new();
        if self.s.limit > 0 && !self.tagged {
            let first = self.s.limit.saturating_add(self.s.offset).saturating_add(1);
            let skip = if self.s.desc {
                pts.len().saturating_sub(first)
            } else {
                0
            };
            times.extend(pts.iter().skip(skip).take(first).map(|p| p.0));
        } else {
            by_bucket(
                self.s,
                pts,
                |p| p.0,
                |_, slice| {
                    if slice.len() <= self.n {
                        times.extend(slice.iter().map(|p| p.0));
                        return;
                    }
                    let mut order: Vec<&(i64, FieldValue)> = slice.iter().collect();
                    order.select_nth_unstable_by(self.n - 1, |a, b| {
                        pick_order(self.pick, (a.0, &a.1), (b.0, &b.1))
                    });
                    times.extend(order[..self.n].iter().map(|p| p.0));
                },
            );
        }
        for pts in points.values_mut() {
            pts.retain(|p| times.contains(&p.0));
            // The series' buffers go, not only their points.
            pts.shrink_to_fit();
        }
        points.retain(|_, pts| !pts.is_empty());
        points
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::tests::select_of as statement;

    fn series() -> Points {
        let v: Vec<(i64, FieldValue)> = [5.0, 1.0, 9.0, 9.0, 3.0, 7.0, 2.0, 8.0]
            .iter()
            .enumerate()
            .map(|(i, x)| (i as i64 * 10, FieldValue::Float(*x)))
            .collect();
        let w = (0..8)
            .map(|i| (i * 10, FieldValue::Integer(i)))
            .collect::<Vec<_>>();
        Points::from([("v".to_string(), v), ("w".to_string(), w)])
    }

    fn times(p: &Points, f: &str) -> Vec<i64> {
        p.get(f)
            .map_or(Vec::new(), |v| v.iter().map(|x| x.0).collect())
    }

    #[test]
    fn a_series_keeps_its_n_best_points_per_bucket_and_the_fields_beside_them() {
        let s = statement("SELECT top(v, 2), w FROM m");
        let kept = SelectorPrune::of(&s).map(|p| p.prune(series()));
        let kept = kept.unwrap_or_default();
        // 9 at 20 and 9 at 30 (the earlier first among equal values).
        assert_eq!(times(&kept, "v"), [20, 30]);
        assert_eq!(times(&kept, "w"), [20, 30]);
        let s = statement("SELECT bottom(v, 3) FROM m");
        let kept = SelectorPrune::of(&s)
            .map(|p| p.prune(series()))
            .unwrap_or_default();
        assert_eq!(times(&kept, "v"), [10, 40, 60]);
        // Per bucket of 40 ns: [0, 40) and [40, 80).
        let s =
            statement("SELECT top(v, 1) FROM m WHERE time >= 0 AND time < 80 GROUP BY time(40ns)");
        let kept = SelectorPrune::of(&s)
            .map(|p| p.prune(series()))
            .unwrap_or_default();
        assert_eq!(times(&kept, "v"), [20, 70]);
    }

    #[test]
    fn under_limit_a_series_keeps_its_first_points_by_time() {
        let s = statement("SELECT top(v, 2) FROM m LIMIT 2 OFFSET 1");
        let kept = SelectorPrune::of(&s)
            .map(|p| p.prune(series()))
            .unwrap_or_default();
        assert_eq!(times(&kept, "v"), [0, 10, 20, 30]);
        let s = statement("SELECT top(v, 2) FROM m ORDER BY time DESC LIMIT 2");
        let kept = SelectorPrune::of(&s)
            .map(|p| p.prune(series()))
            .unwrap_or_default();
        assert_eq!(times(&kept, "v"), [50, 60, 70]);
    }

    use proptest::prelude::*;

    /// Series of one measurement: tags, then points of `v` (floats with
    /// many equal values) and of `w` (integers, at some of the times).
    fn data() -> impl Strategy<Value = Vec<crate::tsdb::query::values::TaggedSeries>> {
        let series = (
            0..3usize,
            0..3usize,
            proptest::collection::btree_map(0i64..60, (0u8..6, any::<bool>()), 0..25),
        );
        proptest::collection::vec(series, 1..5).prop_map(|all| {
            let mut seen = BTreeSet::new();
            let mut out = Vec::new();
            for (host, dc, pts) in all {
                if !seen.insert((host, dc)) {
                    continue;
                }
                let mut tags = vec![("host".to_string(), format!("h{host}"))];
                if dc > 0 {
                    tags.insert(0, ("dc".to_string(), format!("d{dc}")));
                }
                let v = pts
                    .iter()
                    .map(|(t, (x, _))| (*t, FieldValue::Float(f64::from(*x) / 2.0)))
                    .collect();
                let w = pts
                    .iter()
                    .filter(|(_, (_, has))| *has)
                    .map(|(t, (x, _))| (*t, FieldValue::Integer(i64::from(*x))))
                    .collect();
                out.push((
                    tags,
                    Points::from([("v".to_string(), v), ("w".to_string(), w)]),
                ));
            }
            out
        })
    }

    const STATEMENTS: &[&str] = &[
        "SELECT top(v, 1) FROM m",
        "SELECT top(v, 3) FROM m",
        "SELECT bottom(v, 2), w FROM m",
        "SELECT top(v, host, 2) FROM m",
        "SELECT bottom(v, dc, 3), host FROM m",
        "SELECT top(v, 2) FROM m WHERE time >= 0 AND time < 60 GROUP BY time(13ns)",
        "SELECT bottom(v, host, 2), w FROM m WHERE time >= 0 AND time < 60 GROUP BY time(20ns, 7ns)",
        "SELECT top(v, 2), w FROM m WHERE time >= 0 AND time < 60 GROUP BY time(10ns) fill(previous)",
        "SELECT top(v, 3) FROM m LIMIT 2",
        "SELECT bottom(v, 2), w FROM m LIMIT 1 OFFSET 2",
        "SELECT top(v, 3) FROM m ORDER BY time DESC LIMIT 2 OFFSET 1",
        "SELECT top(v, host, 3) FROM m LIMIT 2",
        "SELECT top(v, 2) FROM m WHERE time >= 0 AND time < 60 GROUP BY time(15ns) ORDER BY time DESC",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Pruned series answer as the whole series do.
        #[test]
        fn pruned_series_select_as_all_their_points(data in data(), which in 0..STATEMENTS.len()) {
            let s = statement(STATEMENTS[which]);
            let Some(prune) = SelectorPrune::of(&s) else {
                panic!("{} prunes", STATEMENTS[which]);
            };
            let fields: BTreeSet<String> = ["v".to_string(), "w".to_string()].into();
            let tags: BTreeSet<String> = ["dc".to_string(), "host".to_string()].into();
            let aux = super::super::aux::Aux::of(&s, &fields, &tags, &[]);
            let times = super::super::values::TimeFmt { epoch: None, tz: None };
            let pruned: Vec<_> = data
                .iter()
                .map(|(t, p)| (t.clone(), prune.prune(p.clone())))
                .filter(|(_, p)| !p.is_empty())
                .collect();
            let all: Vec<&_> = data.iter().collect();
            let some: Vec<&_> = pruned.iter().collect();
            let want = super::super::aggregate::selector_rows(&s, &all, times, aux.as_ref());
            let got = super::super::aggregate::selector_rows(&s, &some, times, aux.as_ref());
            prop_assert_eq!(got, want, "{}", STATEMENTS[which]);
        }
    }

    #[test]
    fn a_series_without_the_field_keeps_nothing_and_sample_is_not_pruned() {
        let s = statement("SELECT top(x, 2) FROM m");
        let kept = SelectorPrune::of(&s).map(|p| p.prune(series()));
        assert_eq!(kept, Some(Points::new()));
        assert!(SelectorPrune::of(&statement("SELECT sample(v, 2) FROM m")).is_none());
        assert!(SelectorPrune::of(&statement("SELECT max(v) FROM m")).is_none());
    }
}
