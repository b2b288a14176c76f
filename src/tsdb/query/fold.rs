//! Aggregates folded as the scan reads each series: `count`, `sum`,
//! `mean`, `spread`, `min`, `max`, `first` and `last` keep one accumulator per group,
//! field and `GROUP BY time` bucket instead of every point read, so a
//! query's memory follows its groups and buckets, not the points in its
//! range. Each accumulator gives the value the same function computes
//! over the bucket's points ([`super::aggregate::aggregate`]): sums add
//! series by series in the order they are read, as influxd's reducers do,
//! and selectors break ties by time, then value, as influxd's.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::aggregate::value_order;
use super::ast::*;
use super::values::{float_json, num, to_json};
use super::window::Windows;
use crate::tsdb::line_protocol::FieldValue;

/// The bucket key of a statement without `GROUP BY time`.
const WHOLE: i64 = i64::MIN;

/// One function's running state over one bucket.
#[derive(Debug, Clone)]
enum Acc {
    Count(u64),
    /// Integers wrap as influxd's; other numbers add as floats.
    Sum {
        int: i64,
        float: f64,
        integer: bool,
    },
    Mean {
        sum: f64,
        n: u64,
    },
    /// The lowest and highest values (integers apart, as the points'
    /// spread takes them when the first is one).
    Spread {
        lo: f64,
        hi: f64,
        ilo: i64,
        ihi: i64,
        integer: bool,
    },
    /// The selected point: (time, value, its number).
    Min(Option<(i64, FieldValue, f64)>),
    Max(Option<(i64, FieldValue, f64)>),
    First(Option<(i64, FieldValue)>),
    Last(Option<(i64, FieldValue)>),
}

impl Acc {
    fn new(f: Func, first: &FieldValue) -> Option<Acc> {
        Some(match f {
            Func::Count => Acc::Count(0),
            Func::Sum => Acc::Sum {
                int: 0,
                float: 0.0,
                integer: matches!(first, FieldValue::Integer(_)),
            },
            Func::Mean => Acc::Mean { sum: 0.0, n: 0 },
            Func::Spread => Acc::Spread {
                lo: f64::INFINITY,
                hi: f64::NEG_INFINITY,
                ilo: i64::MAX,
                ihi: i64::MIN,
                integer: matches!(first, FieldValue::Integer(_)),
            },
            Func::Min => Acc::Min(None),
            Func::Max => Acc::Max(None),
            Func::First => Acc::First(None),
            Func::Last => Acc::Last(None),
            _ => return None,
        })
    }

    /// Adds a point; `false` if the function needs a number and the
    /// point holds none (the statement's type check refuses such a field
    /// in influxd's words).
    fn add(&mut self, f: Func, t: i64, v: &FieldValue) -> bool {
        let number = match v {
            FieldValue::Boolean(b) if matches!(f, Func::Min | Func::Max) => {
                Some(f64::from(u8::from(*b)))
            }
            _ => num(v),
        };
        let needs_number = !matches!(self, Acc::Count(_) | Acc::First(_) | Acc::Last(_));
        let Some(x) = number.or((!needs_number).then_some(0.0)) else {
            return false;
        };
        match self {
            Acc::Count(n) => *n += 1,
            Acc::Sum {
                int,
                float,
                integer,
            } => match v {
                FieldValue::Integer(i) if *integer => *int = int.wrapping_add(*i),
                // Points of another type beside integers are left out, as
                // the points' sum leaves them out.
                _ if *integer => {}
                _ => *float += x,
            },
            Acc::Mean { sum, n } => {
                *sum += x;
                *n += 1;
            }
            Acc::Spread {
                lo,
                hi,
                ilo,
                ihi,
                integer,
            } => match v {
                FieldValue::Integer(i) if *integer => {
                    *ilo = (*ilo).min(*i);
                    *ihi = (*ihi).max(*i);
                }
                _ if *integer => {}
                _ => {
                    *lo = lo.min(x);
                    *hi = hi.max(x);
                }
            },
            Acc::Min(best) | Acc::Max(best) => {
                let lower = f == Func::Min;
                let better = best.as_ref().is_none_or(|(bt, _, bx)| {
                    (if lower { x < *bx } else { x > *bx }) || (x == *bx && t < *bt)
                });
                if better {
                    *best = Some((t, v.clone(), x));
                }
            }
            Acc::First(best) | Acc::Last(best) => {
                let first = f == Func::First;
                let wanted = if first && matches!(v, FieldValue::Boolean(_)) {
                    std::cmp::Ordering::Less
                } else {
                    std::cmp::Ordering::Greater
                };
                let better = best.as_ref().is_none_or(|(bt, bv)| {
                    (if first { t < *bt } else { t > *bt })
                        || (t == *bt && value_order(v, bv) == wanted)
                });
                if better {
                    *best = Some((t, v.clone()));
                }
            }
        }
        true
    }

    /// Its value, and the time of the point a selector picked.
    fn value(&self) -> (Value, Option<i64>) {
        match self {
            Acc::Count(n) => (json!(n), None),
            Acc::Sum {
                int, integer: true, ..
            } => (json!(int), None),
            Acc::Sum { float, .. } => (float_json(*float), None),
            Acc::Mean { sum, n } => (float_json(*sum / *n as f64), None),
            Acc::Spread {
                ilo,
                ihi,
                integer: true,
                ..
            } => (json!(ihi.wrapping_sub(*ilo)), None),
            Acc::Spread { lo, hi, .. } => (float_json(hi - lo), None),
            Acc::Min(p) | Acc::Max(p) => p
                .as_ref()
                .map_or((Value::Null, None), |(t, v, _)| (to_json(v), Some(*t))),
            Acc::First(p) | Acc::Last(p) => p
                .as_ref()
                .map_or((Value::Null, None), |(t, v)| (to_json(v), Some(*t))),
        }
    }
}

/// One group's accumulators: per (function, field), per bucket.
#[derive(Debug, Default)]
pub(super) struct GroupAcc {
    /// Per (function, field) folded: its buckets (a statement has few,
    /// so they are found by a scan, without building keys).
    accs: Vec<(Func, String, BTreeMap<i64, Acc>)>,
    /// The first and last times of the points folded.
    span: Option<(i64, i64)>,
    /// Fields a numeric function over `*` left out (their points are not
    /// numbers).
    non_numeric: std::collections::BTreeSet<String>,
}

impl GroupAcc {
    /// The value of `f` over `field`'s points in the bucket at `bucket`
    /// (`None`: the whole range), the time of a selector's point, and
    /// whether no point was folded there.
    pub(super) fn value(
        &self,
        f: Func,
        field: &str,
        bucket: Option<i64>,
    ) -> (Value, Option<i64>, bool) {
        let at = bucket.unwrap_or(WHOLE);
        match self.of(f, field).and_then(|b| b.get(&at)) {
            Some(acc) => {
                let (v, t) = acc.value();
                (v, t, false)
            }
            None if f == Func::Count && bucket.is_some() => (json!(0), None, true),
            None => (Value::Null, None, true),
        }
    }

    /// Whether `func(*)` left `field` out for holding no numbers.
    pub(super) fn non_numeric(&self, field: &str) -> bool {
        self.non_numeric.contains(field)
    }

    /// The buckets of `f` over `field`, if any point was folded.
    fn of(&self, f: Func, field: &str) -> Option<&BTreeMap<i64, Acc>> {
        self.accs
            .iter()
            .find(|(g, fld, _)| *g == f && fld == field)
            .map(|(_, _, b)| b)
    }

    /// The first and last times of its points.
    pub(super) fn span(&self) -> Option<(i64, i64)> {
        self.span
    }

    /// The buckets holding points, in order.
    pub(super) fn buckets(&self) -> Vec<i64> {
        let mut out: Vec<i64> = self
            .accs
            .iter()
            .flat_map(|(_, _, b)| b.keys().copied())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The accumulators of every group of one SELECT.
#[derive(Debug)]
pub(super) struct Folder {
    /// (function, field; `*` for every field) of the statement.
    funcs: Vec<(Func, String)>,
    windows: Option<Windows>,
    groups: Vec<GroupAcc>,
}

impl Folder {
    /// A folder for `s`, if every value it answers can be folded: its
    /// projections are aggregates of the functions above (alone, in
    /// arithmetic, or under a transformation of their buckets).
    pub(super) fn new(s: &Select) -> Option<Folder> {
        let foldable = |f: &Func| {
            matches!(
                f,
                Func::Count
                    | Func::Sum
                    | Func::Mean
                    | Func::Spread
                    | Func::Min
                    | Func::Max
                    | Func::First
                    | Func::Last
            )
        };
        let mut funcs = Vec::new();
        for p in &s.fields {
            match p {
                Projection::Agg(f, field) if foldable(f) => funcs.push((*f, field.clone())),
                Projection::Nested { inner, field, .. } if foldable(inner) => {
                    funcs.push((*inner, field.clone()));
                }
                Projection::Math(e) if e.has_call() && !e.has_field() => {
                    let mut leaves = Vec::new();
                    e.leaves(&mut leaves);
                    for l in leaves {
                        match l {
                            Expr::Call(f, field) if foldable(f) => funcs.push((*f, field.clone())),
                            Expr::Call(..) => return None,
                            _ => {}
                        }
                    }
                }
                _ => return None,
            }
        }
        // One accumulator per function and field, however often used.
        let mut unique: Vec<(Func, String)> = Vec::new();
        for f in funcs {
            if !unique.contains(&f) {
                unique.push(f);
            }
        }
        Some(Folder {
            funcs: unique,
            windows: s.group_time.map(|(iv, off)| Windows::new(iv, off, s.tz)),
            groups: Vec::new(),
        })
    }

    /// Folds one series' points of `field` into group `group`.
    pub(super) fn add(&mut self, group: usize, field: &str, pts: &[(i64, FieldValue)]) {
        if self.groups.len() <= group {
            self.groups.resize_with(group + 1, GroupAcc::default);
        }
        let Some(first) = pts.first() else {
            return;
        };
        let g = &mut self.groups[group];
        for (f, target) in &self.funcs {
            if target != field && target != "*" {
                continue;
            }
            // `func(*)` of a numeric function skips what is not a number.
            if target == "*" && f.skips_in_star(&first.1) {
                g.non_numeric.insert(field.to_string());
                continue;
            }
            let at = match g.accs.iter().position(|(h, fld, _)| h == f && fld == field) {
                Some(i) => i,
                None => {
                    g.accs.push((*f, field.to_string(), BTreeMap::new()));
                    g.accs.len() - 1
                }
            };
            let buckets = &mut g.accs[at].2;
            // A series' points are in time order: each bucket's run is
            // found in the map once.
            let mut i = 0;
            while i < pts.len() {
                let (bucket, end) = match self.windows {
                    None => (WHOLE, pts.len()),
                    Some(w) => {
                        let b = w.start(pts[i].0);
                        let run = pts[i + 1..].iter().take_while(|p| w.start(p.0) == b);
                        (b, i + 1 + run.count())
                    }
                };
                let acc = match buckets.entry(bucket) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(e) => match Acc::new(*f, &first.1) {
                        Some(a) => e.insert(a),
                        None => break,
                    },
                };
                for (t, v) in &pts[i..end] {
                    if !acc.add(*f, *t, v) {
                        g.non_numeric.insert(field.to_string());
                    }
                }
                i = end;
            }
        }
        let (lo, hi) = pts.iter().fold(
            g.span.unwrap_or((i64::MAX, i64::MIN)),
            |(lo, hi), (t, _)| (lo.min(*t), hi.max(*t)),
        );
        g.span = Some((lo, hi));
    }

    /// Group `i`'s accumulators (empty if nothing was folded into it).
    pub(super) fn take(&mut self, i: usize) -> GroupAcc {
        self.groups
            .get_mut(i)
            .map(std::mem::take)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::query::aggregate::aggregate;

    /// Points of one series in time order, some at equal times, as the
    /// scan hands them over.
    fn points(seed: u64, n: usize, make: impl Fn(u64) -> FieldValue) -> Vec<(i64, FieldValue)> {
        let mut x = seed;
        let mut t = 0i64;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                t += (x >> 62) as i64; // 0..3: equal times happen
                (t, make(x >> 33))
            })
            .collect()
    }

    #[test]
    fn folded_values_equal_the_aggregates_of_the_points() {
        let funcs = [
            Func::Count,
            Func::Sum,
            Func::Mean,
            Func::Spread,
            Func::Min,
            Func::Max,
            Func::First,
            Func::Last,
        ];
        let kinds: [&dyn Fn(u64) -> FieldValue; 3] = [
            &|r| FieldValue::Float((r % 1000) as f64 / 7.0),
            &|r| FieldValue::Integer((r % 50) as i64 - 25),
            &|r| FieldValue::Boolean(r % 3 == 0),
        ];
        for (k, make) in kinds.iter().enumerate() {
            for seed in 0..20u64 {
                let pts = points(seed * 31 + k as u64, 1 + (seed as usize * 7) % 60, make);
                let booleans = k == 2;
                for f in funcs {
                    if booleans
                        && !matches!(
                            f,
                            Func::Count | Func::Min | Func::Max | Func::First | Func::Last
                        )
                    {
                        continue;
                    }
                    let text = format!("SELECT {}(v) FROM m", f.name());
                    let Ok(parsed) = crate::tsdb::query::parse(&text, 0) else {
                        panic!("{text} parses");
                    };
                    let Some(Statement::Select(s)) = parsed.first() else {
                        panic!("{text} is a SELECT");
                    };
                    let Some(mut folder) = Folder::new(s) else {
                        panic!("{f:?} folds");
                    };
                    // Folded in two pieces, as two series of one group.
                    let cut = pts.len() / 2;
                    folder.add(0, "v", &pts[..cut]);
                    folder.add(0, "v", &pts[cut..]);
                    let acc = folder.take(0);
                    let (v, t, empty) = acc.value(f, "v", None);
                    let want = aggregate(f, "v", &pts).unwrap_or((Value::Null, None));
                    assert!(!empty);
                    assert_eq!((v, t), want, "{f:?} of {pts:?}");
                }
            }
        }
    }
}
