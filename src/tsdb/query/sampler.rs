//! `sample(field, N)` as the series are read: one reservoir of N points
//! per group and `GROUP BY time` bucket, fed every point of the field in
//! the order the series are read (a reservoir picks each point with the
//! same chance whatever that order), so its memory follows the groups
//! and buckets, not the points in range. Each point kept carries the
//! other fields of its series at its time (the auxiliary columns).

use std::collections::BTreeMap;

use super::aggregate::Reservoir;
use super::ast::*;
use super::values::{Points, TaggedSeries, group_of, selector_of};
use super::window::Windows;
use crate::tsdb::line_protocol::FieldValue;

/// A point in a reservoir: the series read (its position), its time, and
/// its series' fields at that time.
type Kept = (usize, i64, Vec<(String, FieldValue)>);

/// One bucket's reservoir: points seen, and the points kept.
type Bucket = (usize, Vec<Kept>);

/// The reservoirs of one `sample()` statement.
pub(super) struct Sampler {
    field: String,
    n: usize,
    /// The tag keys grouped by (None: `GROUP BY *`, each series a group).
    grouped: Option<Vec<String>>,
    windows: Option<Windows>,
    rng: Reservoir,
    /// Per group, per bucket: points seen, and the points kept.
    reservoirs: BTreeMap<Vec<String>, BTreeMap<i64, Bucket>>,
    /// The tags of each series read, by position.
    series: Vec<Vec<(String, String)>>,
}

impl Sampler {
    /// The sampler of `s`, if it samples.
    pub(super) fn of(s: &Select) -> Option<Sampler> {
        match selector_of(s)? {
            (_, Pick::Sample, field, _, n) => Some(Sampler {
                field: field.to_string(),
                n,
                grouped: s.group_tags.keys(),
                windows: s.group_time.map(|(iv, off)| Windows::new(iv, off, s.tz)),
                rng: Reservoir::seeded(),
                reservoirs: BTreeMap::new(),
                series: Vec::new(),
            }),
            _ => None,
        }
    }

    /// Feeds one series' points (its conditions applied).
    pub(super) fn add(&mut self, tags: Vec<(String, String)>, points: &Points) {
        let Some(pts) = points.get(&self.field) else {
            return;
        };
        let at = self.series.len();
        let group = match &self.grouped {
            Some(keys) => group_of(&tags, keys),
            None => tags.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        };
        self.series.push(tags);
        let buckets = self.reservoirs.entry(group).or_default();
        for (t, _) in pts {
            let bucket = self.windows.map_or(i64::MIN, |w| w.start(*t));
            let (seen, kept) = buckets.entry(bucket).or_insert_with(|| (0, Vec::new()));
            *seen += 1;
            let slot = if kept.len() < self.n {
                kept.len()
            } else {
                let r = self.rng.below(*seen);
                if r >= self.n {
                    continue;
                }
                r
            };
            let row: Vec<(String, FieldValue)> = points
                .iter()
                .filter_map(|(f, p)| {
                    let i = p.binary_search_by_key(t, |x| x.0).ok()?;
                    Some((f.clone(), p[i].1.clone()))
                })
                .collect();
            let point = (at, *t, row);
            if slot == kept.len() {
                kept.push(point);
            } else {
                kept[slot] = point;
            }
        }
    }

    /// The series read with the points kept of each (those with none left
    /// out), in the order they were read.
    pub(super) fn finish(&mut self) -> Vec<TaggedSeries> {
        let mut per_series: BTreeMap<usize, Points> = BTreeMap::new();
        let reservoirs = std::mem::take(&mut self.reservoirs);
        for (_, kept) in reservoirs.into_values().flat_map(BTreeMap::into_values) {
            for (at, t, row) in kept {
                let points = per_series.entry(at).or_default();
                for (f, v) in row {
                    points.entry(f).or_default().push((t, v));
                }
            }
        }
        let mut tags: Vec<Option<Vec<(String, String)>>> = std::mem::take(&mut self.series)
            .into_iter()
            .map(Some)
            .collect();
        per_series
            .into_iter()
            .filter_map(|(at, mut points)| {
                for pts in points.values_mut() {
                    pts.sort_by_key(|p| p.0);
                }
                Some((tags.get_mut(at)?.take()?, points))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::tests::select_of as statement;

    fn series(host: &str, n: i64) -> (Vec<(String, String)>, Points) {
        let v = (0..n).map(|t| (t, FieldValue::Float(t as f64))).collect();
        let w = (0..n)
            .filter(|t| t % 2 == 0)
            .map(|t| (t, FieldValue::Integer(t * 10)))
            .collect();
        (
            vec![("host".to_string(), host.to_string())],
            Points::from([("v".to_string(), v), ("w".to_string(), w)]),
        )
    }

    #[test]
    fn each_group_and_bucket_keeps_n_points_with_their_fields() {
        let s = statement(
            "SELECT sample(v, 3), w FROM m WHERE time >= 0 AND time < 100 GROUP BY time(50ns), host",
        );
        let Some(mut sm) = Sampler::of(&s) else {
            panic!("samples");
        };
        for h in ["a", "b"] {
            let (tags, points) = series(h, 100);
            sm.add(tags, &points);
        }
        let out = sm.finish();
        assert_eq!(out.len(), 2);
        for (_, points) in &out {
            let v = &points["v"];
            assert_eq!(v.iter().filter(|p| p.0 < 50).count(), 3);
            assert_eq!(v.iter().filter(|p| p.0 >= 50).count(), 3);
            // The integer field beside each point kept, where it has one.
            for (t, _) in v {
                let has = points.get("w").is_some_and(|w| w.iter().any(|p| p.0 == *t));
                assert_eq!(has, t % 2 == 0);
            }
        }
    }

    #[test]
    fn every_point_is_as_likely_whatever_series_it_is_in() {
        // Two series of one group, 10 and 30 points: a sample of 4 picks
        // each point with chance 4/40 over many runs.
        let s = statement("SELECT sample(v, 4) FROM m");
        let mut hits = [0u32; 2];
        let runs = 4000;
        for _ in 0..runs {
            let Some(mut sm) = Sampler::of(&s) else {
                panic!("samples");
            };
            let (tags, points) = series("a", 10);
            sm.add(tags, &points);
            let (tags, points) = series("b", 30);
            sm.add(tags, &points);
            for (tags, points) in sm.finish() {
                let i = usize::from(tags[0].1 == "b");
                hits[i] += points["v"].len() as u32;
            }
        }
        // Expected 4000 × 4 × 10/40 = 4000 from a, 12 000 from b.
        let from_a = f64::from(hits[0]) / f64::from(hits[0] + hits[1]);
        assert!((from_a - 0.25).abs() < 0.02, "{hits:?}");
    }

    #[test]
    fn a_group_with_fewer_points_keeps_them_all() {
        let s = statement("SELECT sample(v, 50) FROM m GROUP BY host");
        let Some(mut sm) = Sampler::of(&s) else {
            panic!("samples");
        };
        let (tags, points) = series("a", 20);
        sm.add(tags, &points);
        let out = sm.finish();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1["v"], series("a", 20).1["v"]);
    }
}
