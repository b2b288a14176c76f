//! Aggregates, and the rows of `GROUP BY time` buckets.

use serde_json::{Value, json};

use super::ast::*;
use super::aux::{Aux, series_of};
use super::fill::fill;
use super::fold::GroupAcc;
use super::math::eval;
use super::select::is_aux;
use super::select_exec::scan_range;
use super::transform::transform;
use super::values::{
    ColName, TaggedSeries, TimeFmt, columns_named, float_json, num, time_value, to_json,
};
use super::window::Windows;
use crate::tsdb::line_protocol::FieldValue;

/// Most `GROUP BY time` buckets one query may ask for.
pub(super) const MAX_BUCKETS: i64 = 1_000_000;

/// The value of `f` over `pts` (sorted by time), and the time of the point
/// a selector picked. An empty set counts 0 and is null otherwise.
pub(super) fn aggregate(
    f: Func,
    fld: &str,
    pts: &[(i64, FieldValue)],
) -> Result<(Value, Option<i64>), String> {
    if f == Func::Count {
        return Ok((json!(pts.len()), None));
    }
    if f == Func::CountDistinct {
        return Ok((json!(distinct(pts).len()), None));
    }
    if pts.is_empty() {
        return Ok((Value::Null, None));
    }
    // min() and max() of booleans: false before true.
    let bools = pts.iter().all(|p| matches!(p.1, FieldValue::Boolean(_)));
    let nums: Vec<f64> = pts
        .iter()
        .filter_map(|p| match p.1 {
            FieldValue::Boolean(b) if bools && matches!(f, Func::Min | Func::Max) => {
                Some(f64::from(u8::from(b)))
            }
            _ => num(&p.1),
        })
        .collect();
    if f.numeric() && nums.len() != pts.len() {
        return Err(format!(
            "{}() needs a numeric field, {fld} is not",
            f.name()
        ));
    }
    let ints = || {
        pts.iter().filter_map(|p| match p.1 {
            FieldValue::Integer(i) => Some(i),
            _ => None,
        })
    };
    let integer = matches!(pts[0].1, FieldValue::Integer(_));
    Ok(match f {
        Func::Count => (json!(pts.len()), None),
        Func::CountDistinct => (json!(distinct(pts).len()), None),
        // Its rows are made by `aggregate_rows`.
        Func::Distinct => (Value::Null, None),
        Func::Integral(unit) => (float_json(integral(pts, unit)), None),
        // Raw points are transformed, not aggregated.
        Func::Raw => (Value::Null, None),
        // Of the points at the first (last) time, influxd's reducers keep
        // the greatest value (of booleans: first false, last true).
        Func::First | Func::Last => {
            let t = if f == Func::First {
                pts[0].0
            } else {
                pts[pts.len() - 1].0
            };
            let wanted = if f == Func::First && bools {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Greater
            };
            let p = pts
                .iter()
                .filter(|p| p.0 == t)
                .reduce(|a, b| {
                    if value_order(&b.1, &a.1) == wanted {
                        b
                    } else {
                        a
                    }
                })
                .unwrap_or(&pts[0]);
            (to_json(&p.1), Some(p.0))
        }
        Func::Sum if integer => (json!(ints().fold(0i64, i64::wrapping_add)), None),
        Func::Sum => (float_json(nums.iter().sum::<f64>()), None),
        Func::Min | Func::Max => pts
            .iter()
            .zip(&nums)
            .reduce(|(a, x), (b, y)| {
                if (f == Func::Min && y < x) || (f == Func::Max && y > x) {
                    (b, y)
                } else {
                    (a, x)
                }
            })
            .map_or((Value::Null, None), |(p, _)| (to_json(&p.1), Some(p.0))),
        Func::Mean => (
            float_json(nums.iter().sum::<f64>() / nums.len() as f64),
            None,
        ),
        Func::Median => {
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
        Func::Mode => (mode(pts), None),
        Func::Spread if integer => {
            let (lo, hi) = ints().fold((i64::MAX, i64::MIN), |(lo, hi), i| (lo.min(i), hi.max(i)));
            (json!(hi.wrapping_sub(lo)), None)
        }
        Func::Spread => {
            let lo = nums.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = nums.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (float_json(hi - lo), None)
        }
        // The nearest-rank percentile, a selector (influxd's rule).
        Func::Percentile(n) => {
            let i = (pts.len() as f64 * n / 100.0 + 0.5).floor() as i64 - 1;
            let Ok(i) = usize::try_from(i) else {
                return Ok((Value::Null, None));
            };
            // Sorted as influxd sorts them (Go's unstable sort.Sort, from
            // the points in the order its reducer received them): which of
            // several equal values is picked, and so the time, is its.
            // Each point's number is taken once, not at every comparison.
            let mut sorted: Vec<(f64, &(i64, FieldValue))> =
                pts.iter().map(|p| (num(&p.1).unwrap_or(0.0), p)).collect();
            super::go_sort::go_sort(&mut sorted, &|a, b| a.0 < b.0);
            match sorted.get(i) {
                Some((_, p)) => (to_json(&p.1), Some(p.0)),
                None => (Value::Null, None),
            }
        }
        // The sample standard deviation; of one value: null, as influxd.
        Func::Stddev if nums.len() < 2 => (Value::Null, None),
        Func::Stddev => {
            // influxd's arithmetic: a running mean, then the squares.
            let mut mean = 0.0;
            for (k, x) in nums.iter().enumerate() {
                mean += (x - mean) / (k + 1) as f64;
            }
            let var = nums.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>();
            (float_json((var / (nums.len() - 1) as f64).sqrt()), None)
        }
    })
}

/// The first point of each value, in time order (`distinct`).
fn distinct(pts: &[(i64, FieldValue)]) -> Vec<&(i64, FieldValue)> {
    let mut seen: Vec<&(i64, FieldValue)> = Vec::new();
    for p in pts {
        if !seen.iter().any(|s| s.1 == p.1) {
            seen.push(p);
        }
    }
    seen
}

/// The area under `pts` (sorted by time) by trapezoids, per `unit` ns.
fn integral(pts: &[(i64, FieldValue)], unit: i64) -> f64 {
    let numbers = pts.iter().map(|(t, v)| (*t, num(v).unwrap_or(0.0)));
    integral_areas(numbers, None, unit, false, false)
        .first()
        .map_or(0.0, |a| a.1)
}

/// The areas under `pts` (in the statement's order, several series'
/// merged) by trapezoids, per `unit` ns, as influxd's integral reducer
/// sums them: a point at the time of the one before replaces it; under
/// `GROUP BY time` (`windows`), when a point falls past the window's end
/// the area is carried to the end along the line toward that point and
/// emitted for the window, and the next window's area starts there (so a
/// gap's area goes to the window after it). Each area comes with the
/// time influxd gives it: its window's start (for `desc`, the end, as
/// the reducer names the window's edges the other way round); none for a
/// window whose last point is at its start. influxd's reducer of
/// `integer` fields differs past a window's end: the value carried to the
/// end stands for the next point in the next window's first trapezoid,
/// and the point before keeps its own value.
fn integral_areas(
    pts: impl Iterator<Item = (i64, f64)>,
    windows: Option<&Windows>,
    unit: i64,
    desc: bool,
    integer: bool,
) -> Vec<(i64, f64)> {
    let unit = unit.max(1) as f64;
    // The reducer's window: `start` and `end` in the order it reads.
    let edges = |t: i64| match windows.map(|w| w.window(t)) {
        Some((a, b)) if desc => (b, a),
        Some((a, b)) => (a, b),
        None => (0, 0),
    };
    let mut prev: Option<(i64, f64)> = None;
    let (mut start, mut end) = (0, 0);
    let mut sum = 0.0;
    let mut out = Vec::new();
    for (t, v) in pts {
        let Some((mut pt, mut pv)) = prev else {
            prev = Some((t, v));
            (start, end) = edges(t);
            continue;
        };
        if pt == t {
            prev = Some((t, v));
            continue;
        }
        let mut next = v;
        if windows.is_some() && ((!desc && t >= end) || (desc && t <= end)) {
            if pt != end {
                let at_end = pv + (v - pv) * (end - pt) as f64 / (t - pt) as f64;
                sum += 0.5 * (at_end + pv) * ((end - pt) as f64 / unit);
                if integer {
                    next = at_end;
                } else {
                    pv = at_end;
                }
                pt = end;
            }
            out.push((start, sum));
            (start, end) = edges(t);
            sum = 0.0;
        }
        sum += 0.5 * (next + pv) * ((t - pt) as f64 / unit);
        prev = Some((t, v));
    }
    if prev.is_some_and(|(pt, _)| pt != start) {
        out.push((start, sum));
    }
    out
}

/// The most frequent value, as influxd picks it: values sorted (stably,
/// so equal values keep their time order) and counted in runs; a run
/// longer than the best so far wins, and one as long wins if its value
/// first appeared earlier. All values distinct: the smallest.
fn mode(pts: &[(i64, FieldValue)]) -> Value {
    fn rank(v: &FieldValue) -> (u8, f64, &str, bool) {
        match v {
            FieldValue::Float(f) => (0, *f, "", false),
            FieldValue::Integer(i) => (0, *i as f64, "", false),
            FieldValue::Unsigned(u) => (0, *u as f64, "", false),
            FieldValue::String(s) => (1, 0.0, s.as_str(), false),
            FieldValue::Boolean(b) => (2, 0.0, "", *b),
        }
    }
    let mut sorted: Vec<&(i64, FieldValue)> = pts.iter().collect();
    sorted.sort_by(|a, b| {
        let (x, y) = (rank(&a.1), rank(&b.1));
        x.0.cmp(&y.0)
            .then(x.1.total_cmp(&y.1))
            .then(x.2.cmp(y.2))
            .then(x.3.cmp(&y.3))
    });
    let Some(first) = sorted.first() else {
        return Value::Null;
    };
    let (mut best, mut best_n, mut best_t) = (&first.1, 0usize, first.0);
    let (mut cur, mut cur_n, mut cur_t) = (&first.1, 0usize, first.0);
    for p in &sorted {
        if p.1 != *cur {
            (cur, cur_n, cur_t) = (&p.1, 1, p.0);
            continue;
        }
        cur_n += 1;
        if best_n > cur_n || (best_n == cur_n && cur_t > best_t) {
            continue;
        }
        (best, best_n, best_t) = (cur, cur_n, cur_t);
    }
    to_json(best)
}

pub(super) type Rows = Option<(Vec<String>, Vec<Value>)>;

/// The aggregate rows of one group: one row, or one per `GROUP BY time`
/// bucket with `fill` applied.
pub(super) fn aggregate_rows(
    s: &Select,
    (members, shard_starts): (&[&TaggedSeries], &[i64]),
    folded: Option<&GroupAcc>,
    field_names: &std::collections::BTreeSet<String>,
    epoch: TimeFmt,
    max_buckets: u64,
    aux: Option<&Aux>,
) -> Result<Rows, String> {
    // (function, field, column) per aggregate computed.
    let mut targets: Vec<(Func, String, String)> = Vec::new();
    // Per target: the transformation over it and its unit, if any.
    let mut outers: Vec<Option<(Transform, Option<i64>)>> = Vec::new();
    // Per output column: a target, or arithmetic over targets (their
    // indices in the order of the expression's aggregates).
    let mut outs: Vec<(Out, ColName)> = Vec::new();
    for (i, p) in s.fields.iter().enumerate() {
        let alias = s.aliases.get(i).cloned().flatten();
        if let (Some(a), true) = (aux, is_aux(p)) {
            outs.extend(a.columns_of(i).map(|(k, n)| (Out::Aux(k), n.clone())));
            continue;
        }
        match p {
            Projection::Nested {
                outer,
                inner,
                field,
                unit,
            } => {
                outs.push((
                    Out::Target(targets.len()),
                    ColName::of(alias, || outer.name().into()),
                ));
                targets.push((*inner, field.clone(), String::new()));
                outers.push(Some((*outer, *unit)));
            }
            Projection::Agg(f, field) if field == "*" => {
                // A numeric function skips the fields holding other types.
                let numeric = |fld: &String| match folded {
                    Some(acc) => !acc.non_numeric(fld),
                    None => members
                        .iter()
                        .find_map(|(_, fs)| fs.get(fld).and_then(|p| p.first()))
                        .is_none_or(|(_, v)| !f.skips_in_star(v)),
                };
                for fld in field_names.iter().filter(|fld| numeric(fld)) {
                    // influxd rewrites `f(*)` into one aliased call per field.
                    let col = match &alias {
                        Some(a) => ColName::Alias(format!("{a}_{fld}")),
                        None => ColName::Alias(format!("{}_{fld}", f.name())),
                    };
                    outs.push((Out::Target(targets.len()), col));
                    targets.push((*f, fld.clone(), String::new()));
                    outers.push(None);
                }
            }
            Projection::Agg(f, field) => {
                outs.push((
                    Out::Target(targets.len()),
                    ColName::of(alias, || f.name().into()),
                ));
                targets.push((*f, field.clone(), String::new()));
                outers.push(None);
            }
            Projection::Math(e) => {
                let mut leaves = Vec::new();
                e.leaves(&mut leaves);
                let mut idx = Vec::new();
                for l in leaves {
                    if let Expr::Call(f, field) = l {
                        idx.push(targets.len());
                        targets.push((*f, field.clone(), String::new()));
                        outers.push(None);
                    }
                }
                outs.push((
                    Out::Math(e.clone(), idx),
                    ColName::of(alias, || e.column_name()),
                ));
            }
            Projection::All
            | Projection::Field(_)
            | Projection::Selector { .. }
            | Projection::Invalid(_) => {}
        }
    }
    // Auxiliary cells follow the targets' in each row.
    let aux_len = aux.map_or(0, Aux::len);
    for (o, _) in outs.iter_mut() {
        if let Out::Aux(k) = o {
            *o = Out::Target(targets.len() + *k);
        }
    }
    let windows = s.group_time.map(|(iv, off)| Windows::new(iv, off, s.tz));
    // The points of each target (none when they were folded as read).
    let pts: Vec<Vec<(i64, FieldValue)>> = targets
        .iter()
        .filter(|_| folded.is_none())
        .map(|(f, fld, _)| {
            // A percentile sorts the points in the order influxd's merge
            // gives them (by time, ties in its heap's order), in which of
            // several equal values it picks shows.
            if matches!(f, Func::Percentile(_)) {
                return super::raw::merged_order(members, fld, shard_starts, false)
                    .into_iter()
                    .map(|(t, v)| (t, v.clone()))
                    .collect();
            }
            let mut v: Vec<(i64, FieldValue)> = members
                .iter()
                .flat_map(|(_, fs)| fs.get(fld).cloned().unwrap_or_default())
                .collect();
            // Sums add a bucket's points series by series (each in time
            // order), as influxd's reducers receive them, so that their
            // floats round alike; the rest read a bucket in time order.
            match (f, windows) {
                (Func::Sum | Func::Mean | Func::Stddev, None) => {}
                (Func::Sum | Func::Mean | Func::Stddev, Some(w)) => {
                    v.sort_by_cached_key(|p| w.start(p.0));
                }
                _ => v.sort_by_key(|p| p.0),
            }
            v
        })
        .collect();
    // Each integral's areas, computed as influxd's reducer computes them
    // over the series' points as its merge gives them: (the start of the
    // window an area is for, the area), one per window it emits.
    let areas: Vec<Option<Vec<(i64, f64)>>> = targets
        .iter()
        .map(|(f, fld, _)| match f {
            Func::Integral(unit) if folded.is_none() => {
                let mut stream = super::raw::merged_order(members, fld, shard_starts, s.desc);
                if s.desc {
                    stream.reverse();
                }
                // Integers go through influxd's integer reducer.
                let integer = stream.first().is_some_and(|(_, v)| {
                    matches!(v, FieldValue::Integer(_) | FieldValue::Unsigned(_))
                });
                let numbers = stream.iter().filter_map(|(t, v)| num(v).map(|x| (*t, x)));
                Some(integral_areas(
                    numbers,
                    windows.as_ref(),
                    *unit,
                    s.desc,
                    integer,
                ))
            }
            _ => None,
        })
        .collect();
    let columns = columns_named(outs.iter().map(|(_, c)| c));
    if let [Projection::Agg(Func::Distinct, _)] = &s.fields[..] {
        return Ok(distinct_rows(s, columns, &pts[0], epoch));
    }
    if s.fields
        .iter()
        .any(|f| matches!(f, Projection::Selector { .. }))
    {
        return Ok(selector_rows(s, members, epoch, aux));
    }
    // Transformations of the raw points: over every point, in time order;
    // beside aggregates (no GROUP BY time), the aggregates' row joins them
    // at the range's start, as influxd's rows meet by time.
    if s.fields.iter().any(|f| {
        matches!(
            f,
            Projection::Nested {
                inner: Func::Raw,
                ..
            }
        )
    }) {
        // Several series' points reach a transformation merged as
        // influxd's merge gives them: by time, ties in its heap's order.
        let cols: Vec<Vec<(i64, Value)>> = targets
            .iter()
            .map(|(f, fld, _)| match f {
                Func::Raw => super::raw::merged_points(members, fld, shard_starts, s.desc),
                _ => Vec::new(),
            })
            .collect();
        let mut rows = transformed(&outers, &cols, 1_000_000_000, (i64::MIN, i64::MAX), s.desc);
        let aggregated = targets
            .iter()
            .zip(&pts)
            .any(|((f, ..), p)| *f != Func::Raw && !p.is_empty());
        if aggregated {
            let t = if s.has_min { s.min } else { 0 };
            let at = rows.partition_point(|r| r.0 < t);
            if rows.get(at).is_none_or(|r| r.0 != t) {
                rows.insert(at, (t, vec![(Value::Null, true); targets.len()]));
            }
            for (c, ((f, fld, _), p)) in targets.iter().zip(&pts).enumerate() {
                if *f != Func::Raw {
                    rows[at].1[c] = (aggregate(*f, fld, p)?.0, p.is_empty());
                }
            }
        }
        return Ok(finish(s, rows, &outs, columns, epoch));
    }
    let Some((iv, off)) = s.group_time else {
        // No points for any aggregate: no row; none for one of them: null
        // (a count too), as influxd's.
        let nothing = match folded {
            Some(acc) => acc.span().is_none(),
            None => pts.iter().all(Vec::is_empty),
        };
        // Integrals alone that emitted nothing (influxd's reducer emits
        // nothing when its last point is at the window's start): no row.
        let unemitted = !areas.is_empty()
            && areas
                .iter()
                .all(|a| a.as_ref().is_some_and(|a| a.is_empty()));
        if nothing || unemitted {
            return Ok(None);
        }
        let mut time = time_value(if s.has_min { s.min } else { 0 }, epoch);
        let mut cells = Vec::with_capacity(targets.len() + aux_len);
        let mut picked = None;
        for (c, (f, fld, _)) in targets.iter().enumerate() {
            let (v, t) = match (folded, pts.get(c)) {
                (Some(acc), _) => {
                    let (v, t, _) = acc.value(*f, fld, None);
                    (v, t)
                }
                (None, _) if areas[c].is_some() => {
                    let area = areas[c].iter().flatten().next();
                    (area.map_or(Value::Null, |a| float_json(a.1)), None)
                }
                (None, Some(p)) if !p.is_empty() => aggregate(*f, fld, p)?,
                _ => (Value::Null, None),
            };
            // A lone selector (in arithmetic too) reports its point's
            // time, as InfluxDB does.
            if let Some(t) = t
                && outs.len() == 1 + aux_len
                && targets.len() == 1
            {
                time = time_value(t, epoch);
            }
            picked = picked.or(t.map(|t| (fld.as_str(), t, v.clone())));
            cells.push((v, false));
        }
        if let Some(a) = aux {
            cells.extend(picked_cells(a, members, picked, &s.fill, false));
        }
        let mut rows = vec![(0, cells)];
        fill(&mut rows, &s.fill);
        let mut row = vec![time];
        row.extend(project(
            &outs,
            rows.remove(0).1.into_iter().map(|c| c.0).collect(),
        ));
        return Ok(Some((columns, vec![Value::Array(row)])));
    };
    let w = windows.unwrap_or_else(|| Windows::new(iv, off, s.tz));
    // Integrals alone: a row for each window influxd's reducer emits an
    // area for (at the window's start), and no other: no fill, no
    // buckets counted out to the range's end.
    if !areas.is_empty() && areas.iter().all(Option::is_some) && outers.iter().all(Option::is_none)
    {
        // Each column's areas oldest first (emitted newest first for
        // `desc`), joined by time as influxd's cursor joins its columns:
        // two areas of one column at one time make two rows.
        let mut cols: Vec<std::collections::VecDeque<(i64, Value)>> = areas
            .iter()
            .map(|emitted| {
                let mut col: Vec<(i64, Value)> = emitted
                    .iter()
                    .flatten()
                    .map(|(t, area)| (w.start(*t), float_json(*area)))
                    .collect();
                if s.desc {
                    col.reverse();
                }
                col.into()
            })
            .collect();
        return Ok(finish(s, join_by_time(&mut cols), &outs, columns, epoch));
    }
    let (first_point, last_point) = match folded {
        Some(acc) => (acc.span().map(|s| s.0), acc.span().map(|s| s.1)),
        None => (
            pts.iter().flatten().map(|p| p.0).min(),
            pts.iter().flatten().map(|p| p.0).max(),
        ),
    };
    outers.resize(targets.len(), None);
    let (from, to) = scan_range(s);
    let (Some(lo), Some(hi)) = (
        if s.has_min { Some(from) } else { first_point },
        if s.max != i64::MAX {
            Some(to)
        } else {
            last_point
        },
    ) else {
        return Ok(None);
    };
    let n = w.count(lo, hi);
    if max_buckets > 0 && u64::try_from(n).unwrap_or(u64::MAX) > max_buckets {
        return Err(format!(
            "max-select-buckets limit exceeded: ({n}/{max_buckets})"
        ));
    }
    if n > MAX_BUCKETS {
        return Err(format!(
            "GROUP BY time({}) over this range makes {n} buckets, more than {MAX_BUCKETS}",
            crate::tsdb::timefmt::go_duration(iv)
        ));
    }
    // Per bucket, per column: the value and whether the bucket was empty.
    let mut rows: Vec<(i64, Vec<(Value, bool)>)> = Vec::with_capacity(n.max(0) as usize);
    // With a zone, the windows that hold points (influxd emits them even
    // where its steps passed them by).
    let mut held: Vec<i64> = Vec::new();
    if let (true, Some(acc)) = (s.tz.is_some(), folded) {
        held = acc.buckets();
    } else if s.tz.is_some() {
        for p in &pts {
            held.extend(
                p.iter()
                    .filter(|x| x.0 >= lo && x.0 <= hi)
                    .map(|x| w.start(x.0)),
            );
        }
        held.sort_unstable();
        held.dedup();
    }
    for t0 in w.rows(lo, hi, &held) {
        let mut cells = Vec::with_capacity(targets.len());
        if let Some(acc) = folded {
            for (f, fld, _) in &targets {
                let (v, _, empty) = acc.value(*f, fld, Some(t0));
                cells.push((v, empty));
            }
            rows.push((t0, cells));
            continue;
        }
        // The point the selector picked (beside auxiliary fields).
        let mut picked = None;
        for (((f, fld, _), p), area) in targets.iter().zip(&pts).zip(&areas) {
            if let Some(areas) = area {
                let at = areas.iter().find(|a| w.start(a.0) == t0);
                cells.push(at.map_or((Value::Null, true), |a| (float_json(a.1), false)));
                continue;
            }
            let from = p.partition_point(|x| x.0 < lo || w.start(x.0) < t0);
            let to = p.partition_point(|x| x.0 <= hi && w.start(x.0) <= t0);
            let slice = &p[from..to.max(from)];
            let (v, t) = aggregate(*f, fld, slice)?;
            picked = picked.or(t.map(|t| (fld.as_str(), t, v.clone())));
            cells.push((v, slice.is_empty()));
        }
        if let Some(a) = aux {
            let empty = cells.first().is_none_or(|c| c.1);
            cells.extend(picked_cells(a, members, picked, &s.fill, empty));
        }
        rows.push((t0, cells));
    }
    fill(&mut rows, &s.fill);
    if outers.iter().any(Option::is_some) {
        // The transformations, over each column's buckets, kept within the
        // range's buckets.
        let first = if s.has_min { w.start(s.min) } else { i64::MIN };
        let last = if s.max == i64::MAX {
            i64::MAX
        } else {
            w.start(s.max)
        };
        let cols: Vec<Vec<(i64, Value)>> = (0..outers.len())
            .map(|c| rows.iter().map(|r| (r.0, r.1[c].0.clone())).collect())
            .collect();
        let done = transformed(&outers, &cols, iv, (first, last), s.desc);
        if outers.iter().all(Option::is_some) {
            rows = done;
        } else {
            // Beside plain aggregates every bucket of the range keeps its
            // row; a transformed column holds its value there, or null.
            let at: std::collections::BTreeMap<i64, Vec<(Value, bool)>> =
                done.into_iter().collect();
            rows.retain(|r| r.0 >= first && r.0 <= last);
            for (t, cells) in rows.iter_mut() {
                for (c, o) in outers.iter().enumerate() {
                    if o.is_some() {
                        cells[c] = at.get(t).map_or((Value::Null, true), |r| r[c].clone());
                    }
                }
            }
            if s.limit > 0 || s.offset > 0 {
                limit_each_column(s, &mut rows, &outers);
                let unpaged = Select {
                    limit: 0,
                    offset: 0,
                    ..s.clone()
                };
                return Ok(finish(&unpaged, rows, &outs, columns, epoch));
            }
        }
    }
    Ok(finish(s, rows, &outs, columns, epoch))
}

/// The auxiliary cells of the point a selector picked (`picked`: its
/// field, time and value; None in an empty bucket), each with whether
/// `fill` fills it.
fn picked_cells(
    aux: &Aux,
    members: &[&TaggedSeries],
    picked: Option<(&str, i64, Value)>,
    how: &Fill,
    bucket_empty: bool,
) -> Vec<(Value, bool)> {
    let point = picked.and_then(|(fld, t, v)| series_of(members, fld, t, &v).map(|m| (m, t)));
    aux.cells(point, how, bucket_empty)
}

/// `OFFSET` and `LIMIT` as influxd applies them to aggregates beside
/// transformations: each column on its own (an aggregate's over every
/// bucket, a transformation's over the buckets it has a value in, in the
/// statement's order); a row stays if any column keeps it, with the
/// cells no column kept emptied.
fn limit_each_column(
    s: &Select,
    rows: &mut Vec<(i64, Vec<(Value, bool)>)>,
    outers: &[Option<(Transform, Option<i64>)>],
) {
    let order: Vec<usize> = if s.desc {
        (0..rows.len()).rev().collect()
    } else {
        (0..rows.len()).collect()
    };
    let limit = if s.limit == 0 { usize::MAX } else { s.limit };
    let mut kept = vec![vec![false; outers.len()]; rows.len()];
    for (c, o) in outers.iter().enumerate() {
        for &i in order
            .iter()
            .filter(|&&i| o.is_none() || !rows[i].1[c].1)
            .skip(s.offset)
            .take(limit)
        {
            kept[i][c] = true;
        }
    }
    let mut i = 0;
    rows.retain_mut(|(_, cells)| {
        let keep = &kept[i];
        i += 1;
        for (c, cell) in cells.iter_mut().enumerate() {
            if !keep[c] {
                *cell = (Value::Null, true);
            }
        }
        keep.iter().any(|k| *k)
    });
}

/// The transformations of `cols` (one per target, `None`: none; read
/// newest first for `desc`), in time order: the values each produced at
/// times in `first..=last`, joined into rows by time as influxd's
/// cursor joins its columns (a row takes the next value of each column
/// at the row's time, so a column with two values at one time, from
/// several series, makes two rows there).
/// `default_unit`: a derivative's unit when none is given.
fn transformed(
    outers: &[Option<(Transform, Option<i64>)>],
    cols: &[Vec<(i64, Value)>],
    default_unit: i64,
    (first, last): (i64, i64),
    desc: bool,
) -> Vec<(i64, Vec<(Value, bool)>)> {
    // Each column's values in the order they were produced.
    let mut produced: Vec<std::collections::VecDeque<(i64, Value)>> = Vec::new();
    for (c, o) in outers.iter().enumerate() {
        let Some((outer, unit)) = o else {
            produced.push(Default::default());
            continue;
        };
        let default = if *outer == Transform::Elapsed {
            1
        } else {
            default_unit
        };
        // Indicators answer from the bucket before the range too once
        // their hold period allows (as influxd's); forecasts are past it.
        let unbounded = matches!(
            outer,
            Transform::Indicator(_) | Transform::HoltWinters { .. }
        );
        let mut values: Vec<(i64, Value)> =
            transform(*outer, unit.unwrap_or(default), &cols[c], desc)
                .into_iter()
                .filter(|(t, _)| unbounded || (*t >= first && *t <= last))
                .collect();
        // Rows are joined oldest first; a column is produced in the
        // statement's order.
        if desc {
            values.reverse();
        }
        produced.push(values.into());
    }
    join_by_time(&mut produced)
}

/// Columns of values (each oldest first) joined into rows by time as
/// influxd's cursor joins its columns: a row at the earliest time left
/// takes the next value of each column at that time (null, and marked
/// empty, where a column has none), so a column with two values at one
/// time makes two rows there.
fn join_by_time(
    cols: &mut [std::collections::VecDeque<(i64, Value)>],
) -> Vec<(i64, Vec<(Value, bool)>)> {
    let mut rows = Vec::new();
    while let Some(t) = cols.iter().filter_map(|c| c.front().map(|v| v.0)).min() {
        let row = cols
            .iter_mut()
            .map(|c| match c.front() {
                Some((at, _)) if *at == t => {
                    c.pop_front().map_or((Value::Null, true), |v| (v.1, false))
                }
                _ => (Value::Null, true),
            })
            .collect();
        rows.push((t, row));
    }
    rows
}

/// Rows of aggregates as the answer has them: ordered, offset, limited,
/// projected onto the output columns.
fn finish(
    s: &Select,
    rows: Vec<(i64, Vec<(Value, bool)>)>,
    outs: &[(Out, ColName)],
    columns: Vec<String>,
    epoch: TimeFmt,
) -> Rows {
    let values: Vec<Value> = page(s, rows)
        .into_iter()
        .map(|(t0, cells)| {
            let mut r = vec![time_value(t0, epoch)];
            r.extend(project(outs, cells.into_iter().map(|c| c.0).collect()));
            Value::Array(r)
        })
        .collect();
    (!values.is_empty()).then_some((columns, values))
}

/// Rows as a statement pages them: reversed for `ORDER BY time DESC`,
/// then `OFFSET` and `LIMIT`.
fn page<T>(s: &Select, mut rows: Vec<T>) -> Vec<T> {
    if s.desc {
        rows.reverse();
    }
    offset_limit(s, rows)
}

/// The rows `OFFSET` and `LIMIT` keep, in the order given.
fn offset_limit<T>(s: &Select, rows: Vec<T>) -> Vec<T> {
    rows.into_iter()
        .skip(s.offset)
        .take(if s.limit == 0 { usize::MAX } else { s.limit })
        .collect()
}

/// Calls `f` with each `GROUP BY time` bucket's start and points (`pts`
/// sorted by time; empty buckets skipped), or once with the range's time
/// and all of them.
pub(super) fn by_bucket<T>(
    s: &Select,
    pts: &[T],
    time: impl Fn(&T) -> i64,
    mut f: impl FnMut(i64, &[T]),
) {
    let Some((iv, off)) = s.group_time else {
        f(if s.has_min { s.min } else { 0 }, pts);
        return;
    };
    let w = Windows::new(iv, off, s.tz);
    let mut i = 0;
    while i < pts.len() {
        let t0 = w.start(time(&pts[i]));
        let end = pts[i..].partition_point(|p| w.start(time(p)) <= t0) + i;
        f(t0, &pts[i..end.max(i + 1)]);
        i = end.max(i + 1);
    }
}

/// `distinct(field)`: a row per value of each `GROUP BY time` bucket (or
/// of the range), first seen first, at the bucket's time.
fn distinct_rows(
    s: &Select,
    columns: Vec<String>,
    pts: &[(i64, FieldValue)],
    epoch: TimeFmt,
) -> Rows {
    let mut values = Vec::new();
    by_bucket(
        s,
        pts,
        |p| p.0,
        |t0, slice| {
            for p in distinct(slice) {
                values.push(json!([time_value(t0, epoch), to_json(&p.1)]));
            }
        },
    );
    let values = page(s, values);
    (!values.is_empty()).then_some((columns, values))
}

/// `top(field[, tag], N)` / `bottom(…)`: per `GROUP BY time` bucket (or
/// over the range), the N points of the highest (lowest) values, the
/// earlier point first among equal values, one per value of `tag` if
/// given; `sample(field, N)`: N points of each bucket at random (all of
/// them if it has no more). Listed in time order at their own times
/// (a sample's equal times by value, as influxd sorts them), with the
/// auxiliary columns of each point.
pub(super) fn selector_rows(
    s: &Select,
    members: &[&TaggedSeries],
    epoch: TimeFmt,
    aux: Option<&Aux>,
) -> Rows {
    let (at, pick, field, tag, n) = super::values::selector_of(s)?;
    // (time, value, the tag's value, the series), by time.
    let mut pts: Vec<(i64, FieldValue, String, usize)> = Vec::new();
    for (m, (tags, fields)) in members.iter().enumerate() {
        let tv = tag
            .as_ref()
            .and_then(|k| tags.iter().find(|(t, _)| t == k))
            .map_or(String::new(), |(_, v)| v.clone());
        for (t, v) in fields.get(field).into_iter().flatten() {
            pts.push((*t, v.clone(), tv.clone(), m));
        }
    }
    pts.sort_by_key(|p| p.0);
    // influxd's LIMIT reaches below top() and bottom(): they pick from the
    // group's first LIMIT + OFFSET + 1 points only (its last, newest
    // first), then LIMIT and OFFSET apply to what they picked.
    if s.limit > 0 && tag.is_none() && pick != Pick::Sample {
        let keep = s.limit.saturating_add(s.offset).saturating_add(1);
        if s.desc {
            pts.drain(..pts.len().saturating_sub(keep));
        } else {
            pts.truncate(keep);
        }
    }
    type Point = (i64, FieldValue, String, usize);
    let mut rng = Reservoir::seeded();
    let mut pick_from = |slice: &[Point]| -> Vec<Point> {
        if pick == Pick::Sample {
            let mut chosen = rng.sample(slice, n);
            chosen.sort_by(|a, b| a.0.cmp(&b.0).then(value_order(&a.1, &b.1)));
            return chosen;
        }
        let mut order: Vec<&Point> = slice.iter().collect();
        order.sort_by(|a, b| pick_order(pick, (a.0, &a.1), (b.0, &b.1)));
        let mut chosen: Vec<Point> = Vec::new();
        for p in order {
            if chosen.len() == n {
                break;
            }
            if tag.is_some() && chosen.iter().any(|c| c.2 == p.2) {
                continue;
            }
            chosen.push(p.clone());
        }
        chosen.sort_by_key(|c| c.0);
        chosen
    };
    let mut buckets: Vec<Vec<Point>> = Vec::new();
    by_bucket(s, &pts, |p| p.0, |_, slice| buckets.push(pick_from(slice)));
    // `ORDER BY time DESC` lists the buckets newest first, each one's
    // points still oldest first, as influxd's.
    if s.desc {
        buckets.reverse();
    }
    let rows: Vec<Point> = buckets.into_iter().flatten().collect();
    // The columns in the statement's order: the selector's (and its tag's)
    // where it stands, the auxiliary ones where theirs do.
    let mut names: Vec<ColName> = Vec::new();
    for i in 0..s.fields.len() {
        if i == at {
            let alias = s.aliases.get(at).cloned().flatten();
            names.push(ColName::of(alias, || pick.name().into()));
            names.extend(tag.map(|t| ColName::Made(t.to_string())));
        } else if let Some(a) = aux {
            names.extend(a.columns_of(i).map(|(_, n)| n.clone()));
        }
    }
    let columns = columns_named(names.iter());
    // (Already in the statement's order.)
    let mut cells: Vec<(i64, Vec<(Value, bool)>)> = offset_limit(s, rows)
        .into_iter()
        .map(|(t, v, tv, m)| {
            // A series without the tag shows null (tags are never empty).
            let tag_cell = |tv: String| {
                if tv.is_empty() {
                    Value::Null
                } else {
                    json!(tv)
                }
            };
            let own = std::iter::once(to_json(&v)).chain(tag.as_ref().map(|_| tag_cell(tv)));
            let extra = aux.map_or(Vec::new(), |a| {
                a.cells(members.get(m).map(|m| (*m, t)), &s.fill, false)
            });
            let mut row = Vec::with_capacity(names.len());
            for i in 0..s.fields.len() {
                if i == at {
                    row.extend(own.clone().map(|c| (c, false)));
                } else if let Some(a) = aux {
                    row.extend(
                        a.columns_of(i)
                            .map(|(k, _)| extra.get(k).cloned().unwrap_or((Value::Null, false))),
                    );
                }
            }
            (t, row)
        })
        .collect();
    fill(&mut cells, &s.fill);
    let values: Vec<Value> = cells
        .into_iter()
        .map(|(t, row)| {
            let mut r = vec![time_value(t, epoch)];
            r.extend(row.into_iter().map(|c| c.0));
            Value::Array(r)
        })
        .collect();
    (!values.is_empty()).then_some((columns, values))
}

/// The order in which `top()` (`bottom()`) picks points: the highest
/// (lowest) value first, the earlier point first among equal values.
pub(super) fn pick_order(
    pick: Pick,
    (at, a): (i64, &FieldValue),
    (bt, b): (i64, &FieldValue),
) -> std::cmp::Ordering {
    let (x, y) = (num(a).unwrap_or(0.0), num(b).unwrap_or(0.0));
    let by_value = if pick == Pick::Top {
        y.total_cmp(&x)
    } else {
        x.total_cmp(&y)
    };
    by_value.then(at.cmp(&bt))
}

/// Two values of one field in influxd's order of its points' values
/// (numbers by value, strings by bytes, false before true).
pub(super) fn value_order(a: &FieldValue, b: &FieldValue) -> std::cmp::Ordering {
    match (a, b) {
        (FieldValue::String(x), FieldValue::String(y)) => x.cmp(y),
        (FieldValue::Boolean(x), FieldValue::Boolean(y)) => x.cmp(y),
        _ => num(a).unwrap_or(0.0).total_cmp(&num(b).unwrap_or(0.0)),
    }
}

/// Reservoir sampling (`sample()`): the first N points fill the reservoir,
/// then the k-th replaces a random one of them with probability N/k.
pub(super) struct Reservoir(u64);

impl Reservoir {
    /// Seeded from the clock, as influxd seeds each sample.
    pub(super) fn seeded() -> Reservoir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Reservoir(nanos | 1)
    }

    /// A number in `0..k` (splitmix64, scaled without modulo bias worth
    /// noting).
    pub(super) fn below(&mut self, k: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((u128::from(z) * k as u128) >> 64) as usize
    }

    fn sample<T: Clone>(&mut self, items: &[T], n: usize) -> Vec<T> {
        let mut kept: Vec<T> = items.iter().take(n).cloned().collect();
        for (i, item) in items.iter().enumerate().skip(n) {
            let r = self.below(i + 1);
            if let Some(slot) = kept.get_mut(r) {
                *slot = item.clone();
            }
        }
        kept
    }
}

/// An output column of aggregates.
pub(super) enum Out {
    /// One aggregate (by its index among the targets).
    Target(usize),
    /// Arithmetic over aggregates (their target indices, in the order of
    /// the expression's aggregates).
    Math(Expr, Vec<usize>),
    /// An auxiliary column (its index among them), while the columns are
    /// being listed: then the target index its cell has.
    Aux(usize),
}

/// The output columns of a row of aggregates.
fn project(outs: &[(Out, ColName)], cells: Vec<Value>) -> Vec<Value> {
    outs.iter()
        .map(|(o, _)| match o {
            Out::Target(i) => cells.get(*i).cloned().unwrap_or(Value::Null),
            Out::Aux(_) => Value::Null,
            Out::Math(e, idx) => {
                let mut k = 0;
                eval(e, &mut |_| {
                    let v = idx
                        .get(k)
                        .and_then(|i| cells.get(*i))
                        .cloned()
                        .unwrap_or(Value::Null);
                    k += 1;
                    v
                })
            }
        })
        .collect()
}
