//! Aggregates, and the rows of `GROUP BY time` buckets.

use serde_json::{Value, json};

use super::ast::*;
use super::fill::fill;
use super::select_exec::scan_start;
use super::transform::transform;
use super::values::{TaggedSeries, float_json, num, time_value, to_json};
use crate::tsdb::line_protocol::{FieldValue, Precision};

/// Most `GROUP BY time` buckets one query may ask for.
pub(super) const MAX_BUCKETS: i64 = 1_000_000;

/// The value of `f` over `pts` (sorted by time), and the time of the point
/// a selector picked. An empty set counts 0 and is null otherwise.
pub(super) fn aggregate(
    f: &str,
    fld: &str,
    pts: &[(i64, FieldValue)],
) -> Result<(Value, Option<i64>), String> {
    let nums: Vec<f64> = pts.iter().filter_map(|p| num(&p.1)).collect();
    Ok(match f {
        "count" => (json!(pts.len()), None),
        _ if pts.is_empty() => (Value::Null, None),
        "first" => (to_json(&pts[0].1), Some(pts[0].0)),
        "last" => {
            let l = &pts[pts.len() - 1];
            (to_json(&l.1), Some(l.0))
        }
        "sum" | "min" | "max" | "mean" | "median" | "spread" | "stddev"
            if nums.len() != pts.len() =>
        {
            return Err(format!("{f}() needs a numeric field, {fld} is not"));
        }
        "sum" => match &pts[0].1 {
            FieldValue::Integer(_) => (
                json!(
                    pts.iter()
                        .map(|p| if let FieldValue::Integer(i) = p.1 {
                            i
                        } else {
                            0
                        })
                        .fold(0i64, i64::wrapping_add)
                ),
                None,
            ),
            _ => (float_json(nums.iter().sum::<f64>()), None),
        },
        "min" | "max" => pts
            .iter()
            .reduce(|a, b| {
                let (x, y) = (num(&a.1).unwrap_or(0.0), num(&b.1).unwrap_or(0.0));
                if (f == "min" && y < x) || (f == "max" && y > x) {
                    b
                } else {
                    a
                }
            })
            .map_or((Value::Null, None), |p| (to_json(&p.1), Some(p.0))),
        "mean" => (
            float_json(nums.iter().sum::<f64>() / nums.len() as f64),
            None,
        ),
        "median" => {
            let mut v = nums.clone();
            v.sort_by(f64::total_cmp);
            let m = v.len() / 2;
            let x = if v.len() % 2 == 1 {
                v[m]
            } else {
                (v[m - 1] + v[m]) / 2.0
            };
            (float_json(x), None)
        }
        "spread" => match &pts[0].1 {
            FieldValue::Integer(_) => {
                let ints = pts.iter().filter_map(|p| match p.1 {
                    FieldValue::Integer(i) => Some(i),
                    _ => None,
                });
                let (lo, hi) =
                    ints.fold((i64::MAX, i64::MIN), |(lo, hi), i| (lo.min(i), hi.max(i)));
                (json!(hi.wrapping_sub(lo)), None)
            }
            _ => {
                let lo = nums.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = nums.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (float_json(hi - lo), None)
            }
        },
        // The nearest-rank percentile, a selector (influxd's rule).
        _ if f.starts_with("percentile:") => {
            let n: f64 = f["percentile:".len()..].parse().unwrap_or(0.0);
            if nums.len() != pts.len() {
                return Err(format!("percentile() needs a numeric field, {fld} is not"));
            }
            let i = (pts.len() as f64 * n / 100.0 + 0.5).floor() as i64 - 1;
            let Ok(i) = usize::try_from(i) else {
                return Ok((Value::Null, None));
            };
            let mut sorted: Vec<&(i64, FieldValue)> = pts.iter().collect();
            sorted.sort_by(|a, b| {
                num(&a.1)
                    .unwrap_or(0.0)
                    .total_cmp(&num(&b.1).unwrap_or(0.0))
            });
            match sorted.get(i) {
                Some(p) => (to_json(&p.1), Some(p.0)),
                None => (Value::Null, None),
            }
        }
        // The sample standard deviation; of one value: null, as influxd.
        "stddev" if nums.len() < 2 => (Value::Null, None),
        "stddev" => {
            // influxd's arithmetic: a running mean, then the squares.
            let mut mean = 0.0;
            for (k, x) in nums.iter().enumerate() {
                mean += (x - mean) / (k + 1) as f64;
            }
            let var = nums.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>();
            (float_json((var / (nums.len() - 1) as f64).sqrt()), None)
        }
        _ => (Value::Null, None),
    })
}

pub(super) type Rows = Option<(Vec<String>, Vec<Value>)>;

/// The aggregate rows of one group: one row, or one per `GROUP BY time`
/// bucket with `fill` applied.
pub(super) fn aggregate_rows(
    s: &Select,
    members: &[&TaggedSeries],
    field_names: &std::collections::BTreeSet<String>,
    epoch: Option<Precision>,
) -> Result<Rows, String> {
    // (function, field, column) per output column.
    let mut targets: Vec<(String, String, String)> = Vec::new();
    // Per column: the transformation over it and its unit, if any.
    let mut outers: Vec<Option<(String, Option<i64>)>> = Vec::new();
    for (i, p) in s.fields.iter().enumerate() {
        if let Projection::Nested {
            outer,
            inner,
            field,
            unit,
        } = p
        {
            let alias = s.aliases.get(i).cloned().flatten();
            targets.push((
                inner.clone(),
                field.clone(),
                alias.unwrap_or_else(|| outer.clone()),
            ));
            outers.push(Some((outer.clone(), *unit)));
            continue;
        }
        let Projection::Agg(f, field) = p else {
            continue;
        };
        outers.push(None);
        let alias = s.aliases.get(i).cloned().flatten();
        if field == "*" {
            for fld in field_names {
                let col = match &alias {
                    Some(a) => format!("{a}_{fld}"),
                    None => format!("{f}_{fld}"),
                };
                targets.push((f.clone(), fld.clone(), col));
            }
        } else {
            let name = f.split(':').next().unwrap_or(f).to_string();
            targets.push((f.clone(), field.clone(), alias.unwrap_or(name)));
        }
    }
    let pts: Vec<Vec<(i64, FieldValue)>> = targets
        .iter()
        .map(|(_, fld, _)| {
            let mut v: Vec<(i64, FieldValue)> = members
                .iter()
                .flat_map(|(_, fs)| fs.get(fld).cloned().unwrap_or_default())
                .collect();
            v.sort_by_key(|p| p.0);
            v
        })
        .collect();
    let mut columns = vec!["time".to_string()];
    // A name used twice gets `_1`, `_2`, … as influxd names them.
    for t in &targets {
        let mut name = t.2.clone();
        let mut n = 0;
        while columns.contains(&name) {
            n += 1;
            name = format!("{}_{n}", t.2);
        }
        columns.push(name);
    }
    let Some((iv, off)) = s.group_time else {
        let mut row = vec![time_value(if s.has_min { s.min } else { 0 }, epoch)];
        let mut selector_time = None;
        for ((f, fld, _), p) in targets.iter().zip(&pts) {
            let (v, t) = aggregate(f, fld, p)?;
            if matches!(f.as_str(), "first" | "last") || (s.fields.len() == 1 && t.is_some()) {
                selector_time = t;
            }
            row.push(v);
        }
        // A lone selector reports its point's time, as InfluxDB does.
        if s.fields.len() == 1
            && columns.len() == 2
            && let Some(t0) = selector_time
        {
            row[0] = time_value(t0, epoch);
        }
        return Ok(Some((columns, vec![Value::Array(row)])));
    };
    let bucket = |t: i64| (t - off).div_euclid(iv) * iv + off;
    let first_point = pts.iter().filter_map(|p| p.first()).map(|p| p.0).min();
    let last_point = pts.iter().filter_map(|p| p.last()).map(|p| p.0).max();
    outers.resize(targets.len(), None);
    let (Some(lo), Some(hi)) = (
        if s.has_min {
            Some(scan_start(s))
        } else {
            first_point
        },
        if s.max != i64::MAX {
            Some(s.max)
        } else {
            last_point
        },
    ) else {
        return Ok(None);
    };
    let (start, end) = (bucket(lo), bucket(hi));
    let n = end.saturating_sub(start) / iv + 1;
    if n > MAX_BUCKETS {
        return Err(format!(
            "GROUP BY time({}) over this range makes {n} buckets, more than {MAX_BUCKETS}",
            crate::tsdb::timefmt::go_duration(iv)
        ));
    }
    // Per bucket, per column: the value and whether the bucket was empty.
    let mut rows: Vec<(i64, Vec<(Value, bool)>)> = Vec::with_capacity(n.max(0) as usize);
    for b in 0..n {
        let t0 = start + b * iv;
        let mut cells = Vec::with_capacity(targets.len());
        for ((f, fld, _), p) in targets.iter().zip(&pts) {
            let from = p.partition_point(|x| x.0 < t0.max(lo));
            let to = p.partition_point(|x| x.0 < t0.saturating_add(iv) && x.0 <= hi);
            let slice = &p[from..to.max(from)];
            let (v, _) = aggregate(f, fld, slice)?;
            cells.push((v, slice.is_empty()));
        }
        rows.push((t0, cells));
    }
    fill(&mut rows, &s.fill);
    if outers.iter().any(Option::is_some) {
        // The transformations, over each column's buckets; a row for each
        // time one of them produced a value, from the range's first bucket.
        let first = if s.has_min { bucket(s.min) } else { i64::MIN };
        let mut by_time: std::collections::BTreeMap<i64, Vec<(Value, bool)>> =
            std::collections::BTreeMap::new();
        for (c, o) in outers.iter().enumerate() {
            let Some((outer, unit)) = o else { continue };
            let col: Vec<(i64, Value)> = rows.iter().map(|r| (r.0, r.1[c].0.clone())).collect();
            let default = if outer == "elapsed" { 1 } else { iv };
            for (t, v) in transform(outer, unit.unwrap_or(default), &col) {
                if t >= first {
                    by_time
                        .entry(t)
                        .or_insert_with(|| vec![(Value::Null, true); outers.len()])[c] = (v, false);
                }
            }
        }
        rows = by_time.into_iter().collect();
    }
    if s.desc {
        rows.reverse();
    }
    let values: Vec<Value> = rows
        .into_iter()
        .skip(s.offset)
        .map(|(t0, cells)| {
            let mut r = vec![time_value(t0, epoch)];
            r.extend(cells.into_iter().map(|c| c.0));
            Value::Array(r)
        })
        .collect();
    let values = if s.limit > 0 {
        values.into_iter().take(s.limit).collect()
    } else {
        values
    };
    Ok((!values.is_empty()).then_some((columns, values)))
}
