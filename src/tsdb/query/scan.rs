//! What a SELECT reads of one measurement, planned on the series index of
//! the shards its time range meets (as influxd's): the measurement's field
//! names and tag keys, the series the condition's tag equalities name (the
//! whole condition then tested on each one's tags), only the fields the
//! statement uses, and at most `LIMIT + OFFSET` points of each when the
//! rows are the points themselves.

use std::collections::{BTreeMap, BTreeSet};

use super::ast::*;
use super::filter::{Filter, Keys};
use super::select_exec::Interrupt;
use super::values::{TaggedSeries, series_tags};
use crate::tsdb::fsm::TsdbView;
use crate::tsdb::tsm::KEY_FIELD_SEPARATOR;

/// The series read, and the measurement's names in the shards read.
pub(super) struct Scanned {
    /// Every series the condition's tags let through (some without points
    /// in the range), with the points of the fields read.
    pub data: Vec<TaggedSeries>,
    /// Field names.
    pub fields: BTreeSet<String>,
    /// Each field's type name.
    pub types: BTreeMap<String, &'static str>,
    /// Tag keys.
    pub tags: BTreeSet<String>,
    /// The times where a shard after the first starts (influxd merges the
    /// series of each shard on its own).
    pub shard_starts: Vec<i64>,
    /// Set when the series were merged into their groups as they were
    /// read (see [`scan`]'s `groups`): `data` then holds one entry per
    /// group, its conditions already applied, and these are the series
    /// and points read, for influxd's limits.
    pub merged: Option<(u64, u64)>,
}

/// Reads what `s` needs of its measurement in `[from, to]`.
/// Stops with influxd's `query interrupted` once `interrupt` is set.
///
/// With `groups` (the tag keys an aggregate groups by), each series is
/// tested against the whole condition and merged into its group's entry
/// as it is read (fields appended in series order, as the aggregates
/// concatenate them), so memory follows the points read, not the series;
/// with `fold` too, its points are folded into the group's accumulators
/// and not kept, so memory follows the groups and buckets.
pub(super) fn scan(
    t: &TsdbView,
    db: &str,
    s: &Select,
    (from, to): (i64, i64),
    interrupt: &Interrupt,
    groups: Option<&[String]>,
    mut fold: Option<&mut super::fold::Folder>,
) -> Result<Scanned, String> {
    let (starts, shards): (Vec<i64>, Vec<_>) = t
        .shards_in(db, s.rp.as_deref().unwrap_or(""), from, to)
        .map_err(|e| e.to_string())?
        .into_iter()
        .unzip();
    let (mut tags, mut types) = (BTreeSet::new(), BTreeMap::new());
    for shard in &shards {
        shard.tag_keys(&s.measurement, &mut tags);
        shard.field_types(&s.measurement, &mut types);
    }
    let fields: BTreeSet<String> = types.keys().cloned().collect();
    let filter = Filter::new(s.cond.as_ref())?;
    let keys = Keys::Known {
        tags: &tags,
        fields: &fields,
    };
    let mut eq = Vec::new();
    if let Some(c) = &s.cond {
        tag_equalities(c, &keys, &mut eq);
    }
    let mut candidates: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for shard in &shards {
        shard.series(&s.measurement, &eq, &mut candidates);
    }
    let wanted = used_fields(s, &filter, &keys);
    let per_field = points_per_field(s, &filter, &keys);
    let mut data = Vec::new();
    // Merged: group tag values → entry in `data`; series and points read.
    let mut group_at: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    let (mut series_read, mut points_read) = (0u64, 0u64);
    for (i, (series, have)) in candidates.into_iter().enumerate() {
        if i % 256 == 0 && interrupt.is_set() {
            return Err("query interrupted".into());
        }
        let series_tags = series_tags(&series);
        let on_tags = filter.series(&series_tags, &keys);
        if on_tags == Some(false) {
            continue;
        }
        let mut points = BTreeMap::new();
        for field in have {
            if wanted.as_ref().is_some_and(|w| !w.contains(&field)) {
                continue;
            }
            let key = format!("{series}{KEY_FIELD_SEPARATOR}{field}");
            let mut pts = Vec::new();
            for shard in &shards {
                let read = match per_field {
                    Some(n) => shard.read_n(&key, from, to, n, s.desc),
                    None => shard.read(&key, from, to),
                };
                pts.extend(read.map_err(|e| e.to_string())?);
            }
            if let Some(n) = per_field {
                // Shards are in time order: keep the first (last) n overall.
                let skip = if s.desc {
                    pts.len().saturating_sub(n)
                } else {
                    0
                };
                pts = pts.into_iter().skip(skip).take(n).collect();
            }
            if !pts.is_empty() {
                points.insert(field, pts);
            }
        }
        let Some(group_keys) = groups else {
            data.push((series_tags, points));
            continue;
        };
        series_read += 1;
        points_read += points.values().map(|p| p.len() as u64).sum::<u64>();
        if on_tags.is_none() {
            points = super::select_exec::keep_rows(&series_tags, points, &filter, &keys);
        }
        if points.is_empty() {
            continue;
        }
        let value = |k: &String| {
            series_tags
                .iter()
                .find(|(tk, _)| tk == k)
                .map_or(String::new(), |(_, v)| v.clone())
        };
        let values: Vec<String> = group_keys.iter().map(value).collect();
        let at = *group_at.entry(values.clone()).or_insert_with(|| {
            let tags = group_keys
                .iter()
                .zip(values)
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.clone(), v))
                .collect();
            data.push((tags, BTreeMap::new()));
            data.len() - 1
        });
        for (field, pts) in points {
            match fold.as_deref_mut() {
                // Folded into the group's accumulators: nothing kept.
                Some(f) => f.add(at, &field, &pts),
                None => data[at].1.entry(field).or_default().extend(pts),
            }
        }
    }
    Ok(Scanned {
        data,
        fields,
        types,
        tags,
        shard_starts: starts.into_iter().skip(1).collect(),
        merged: groups.map(|_| (series_read, points_read)),
    })
}

/// The `tag = 'value'` terms every series passing `c` must satisfy (those
/// joined by AND at its top; a missing tag is "", so an empty value is
/// left to the full test).
fn tag_equalities<'a>(c: &'a Cond, keys: &Keys, out: &mut Vec<(&'a str, &'a str)>) {
    match c {
        Cond::And(a, b) => {
            tag_equalities(a, keys, out);
            tag_equalities(b, keys, out);
        }
        Cond::Cmp {
            key,
            op: CmpOp::Eq,
            value: value @ Lit::Str(v),
        } if !v.is_empty() && keys.is_tag(key, value) => out.push((key, v)),
        _ => {}
    }
}

/// The fields `s` reads (None: every field).
fn used_fields(s: &Select, filter: &Filter, keys: &Keys) -> Option<BTreeSet<String>> {
    let mut out: BTreeSet<String> = filter
        .fields(keys)
        .into_iter()
        .map(str::to_string)
        .collect();
    let expr = |e: &Expr, out: &mut BTreeSet<String>| {
        let mut leaves = Vec::new();
        e.leaves(&mut leaves);
        for l in leaves {
            match l {
                Expr::Field(f) | Expr::Call(_, f) => {
                    out.insert(f.clone());
                }
                _ => {}
            }
        }
    };
    for p in &s.fields {
        match p {
            Projection::All => return None,
            Projection::Field(f) | Projection::Agg(_, f) => {
                if f == "*" {
                    return None;
                }
                out.insert(f.clone());
            }
            Projection::Nested { field, .. } | Projection::Selector { field, .. } => {
                if field == "*" {
                    return None;
                }
                out.insert(field.clone());
            }
            Projection::Math(e) => expr(e, &mut out),
            Projection::Invalid(_) => {}
        }
    }
    Some(out)
}

/// How many points of each field a statement whose rows are its points can
/// use: `LIMIT + OFFSET` (per series, from the start, or the end for
/// `ORDER BY time DESC`), when no condition on fields drops rows.
fn points_per_field(s: &Select, filter: &Filter, keys: &Keys) -> Option<usize> {
    let raw = s.fields.iter().all(|p| match p {
        Projection::All | Projection::Field(_) => true,
        Projection::Math(e) => !e.has_call(),
        _ => false,
    });
    (raw && s.limit > 0 && s.group_time.is_none() && filter.fields(keys).is_empty())
        .then(|| s.limit.saturating_add(s.offset))
}
