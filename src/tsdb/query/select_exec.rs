//! A SELECT run: series chosen, grouped, and turned into rows.

use serde_json::{Value, json};

use super::aggregate::aggregate_rows;
use super::ast::*;
use super::filter::TagFilter;
use super::raw::raw_rows;
use super::select::aggs_only;
use super::values::{TaggedSeries, series_tags};
use crate::tsdb::fsm::TsdbView;
use crate::tsdb::line_protocol::{FieldValue, Precision};

pub(super) fn select_exec(
    t: &TsdbView,
    db: &str,
    s: &Select,
    epoch: Option<Precision>,
) -> Result<Value, String> {
    let db = s.db.as_deref().unwrap_or(db);
    if db.is_empty() {
        return Err("database name required".into());
    }
    if !t.meta().databases.contains_key(db) {
        return Err(format!("database not found: {db}"));
    }
    let data = t
        .scan(
            db,
            s.rp.as_deref().unwrap_or(""),
            &s.measurement,
            scan_start(s),
            s.max,
        )
        .map_err(|e| e.to_string())?;
    let data: Vec<TaggedSeries> = data
        .into_iter()
        .map(|(k, f)| (series_tags(&k), f))
        .collect();
    // `*` is every field and tag of the measurement in the time range, as
    // influxd expands it, whatever the conditions keep.
    let mut field_names: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut tag_names: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for (tags, fields) in &data {
        field_names.extend(fields.keys().cloned());
        tag_names.extend(tags.iter().map(|(k, _)| k.clone()));
    }
    // A `key = 'string'` on a field (no tag of that name) is a condition
    // on the field's value, as influxd decides it.
    let is_tag = |k: &str| {
        data.iter()
            .any(|(tags, _)| tags.iter().any(|(t, _)| t == k))
    };
    let is_field = |k: &str| data.iter().any(|(_, fs)| fs.contains_key(k));
    let mut field_conds = s.field_conds.clone();
    let mut tag_conds = Vec::new();
    for c in &s.tags {
        if !c.regex && !is_tag(&c.key) && is_field(&c.key) {
            field_conds.push(FieldCond {
                key: c.key.clone(),
                op: if c.eq { "=" } else { "!=" }.into(),
                value: FieldLit::Str(c.value.clone()),
            });
        } else {
            tag_conds.push(c.clone());
        }
    }
    // Keep series whose tags satisfy the conditions, and the points whose
    // fields do.
    let filter = TagFilter::new(&tag_conds)?;
    let data: Vec<TaggedSeries> = data
        .into_iter()
        .filter(|(tags, _)| filter.keep(tags))
        .map(|(tags, fields)| (tags, keep_rows(fields, &field_conds)))
        .filter(|(_, fields)| !fields.is_empty())
        .collect();
    if data.is_empty() {
        return Ok(json!({}));
    }
    // The groups: series by the values of the grouped tags (a missing tag
    // is ""), in order of those values.
    let keys: Vec<String> = match &s.group_tags {
        GroupTags::None => Vec::new(),
        GroupTags::All => tag_names.iter().cloned().collect(),
        GroupTags::Keys(k) => {
            let mut k = k.clone();
            k.sort();
            k.dedup();
            k
        }
    };
    let mut groups: std::collections::BTreeMap<Vec<String>, Vec<&TaggedSeries>> =
        std::collections::BTreeMap::new();
    for d in &data {
        let vals = keys
            .iter()
            .map(|k| {
                d.0.iter()
                    .find(|(tk, _)| tk == k)
                    .map_or(String::new(), |(_, v)| v.clone())
            })
            .collect();
        groups.entry(vals).or_default().push(d);
    }
    let grouped = !matches!(s.group_tags, GroupTags::None);
    let mut out = Vec::new();
    let slimit = if s.slimit == 0 { usize::MAX } else { s.slimit };
    // `ORDER BY time DESC` reverses the series too, as influxd's.
    let ordered: Vec<(&Vec<String>, &Vec<&TaggedSeries>)> = if s.desc {
        groups.iter().rev().collect()
    } else {
        groups.iter().collect()
    };
    for (vals, members) in ordered.into_iter().skip(s.soffset).take(slimit) {
        let body = if aggs_only(&s.fields) {
            aggregate_rows(s, &members[..], &field_names, epoch)?
        } else {
            raw_rows(s, &members[..], &field_names, &tag_names, &keys, epoch)
        };
        let Some((columns, values)) = body else {
            continue;
        };
        let mut one = json!({"name": s.measurement, "columns": columns, "values": values});
        if grouped {
            let tags: serde_json::Map<String, Value> = keys
                .iter()
                .zip(vals)
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            one["tags"] = Value::Object(tags);
        }
        out.push(one);
    }
    if out.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({ "series": out }))
}

/// The points of a series' fields at the times where every field
/// condition holds (a condition on a field the row lacks fails).
pub(super) fn keep_rows(
    mut fields: std::collections::BTreeMap<String, Vec<(i64, FieldValue)>>,
    conds: &[FieldCond],
) -> std::collections::BTreeMap<String, Vec<(i64, FieldValue)>> {
    if conds.is_empty() {
        return fields;
    }
    let mut keep: Option<std::collections::BTreeSet<i64>> = None;
    for c in conds {
        let ok: std::collections::BTreeSet<i64> = fields
            .get(&c.key)
            .map(|pts| {
                pts.iter()
                    .filter(|(_, v)| c.holds(v))
                    .map(|(t, _)| *t)
                    .collect()
            })
            .unwrap_or_default();
        keep = Some(match keep {
            None => ok,
            Some(k) => k.intersection(&ok).copied().collect(),
        });
    }
    let keep = keep.unwrap_or_default();
    for pts in fields.values_mut() {
        pts.retain(|(t, _)| keep.contains(t));
    }
    fields.retain(|_, pts| !pts.is_empty());
    fields
}

/// Whether a SELECT transforms aggregates (then its buckets start one
/// interval before the range, as influxd's, so that the first bucket of
/// the range has one before it).
pub(super) fn transforms(s: &Select) -> bool {
    s.fields
        .iter()
        .any(|f| matches!(f, Projection::Nested { .. }))
}

/// The first time a SELECT reads.
pub(super) fn scan_start(s: &Select) -> i64 {
    match s.group_time {
        Some((iv, _)) if transforms(s) && s.has_min => s.min.saturating_sub(iv),
        _ => s.min,
    }
}
