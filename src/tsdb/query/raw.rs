//! The rows of a SELECT of raw points.

use serde_json::{Value, json};

use super::aggregate::Rows;
use super::ast::*;
use super::values::{TaggedSeries, time_value, to_json};
use crate::tsdb::line_protocol::Precision;

/// The raw rows of one group: one per (time, series), columns in
/// InfluxDB's order (the grouped tags are the series' tags, not columns).
pub(super) fn raw_rows(
    s: &Select,
    members: &[&TaggedSeries],
    field_names: &std::collections::BTreeSet<String>,
    tag_names: &std::collections::BTreeSet<String>,
    grouped: &[String],
    epoch: Option<Precision>,
) -> Rows {
    let all = s.fields.iter().any(|p| matches!(p, Projection::All));
    let wanted: Vec<String> = if all {
        let mut v: Vec<String> = field_names
            .iter()
            .chain(tag_names.iter().filter(|t| !grouped.contains(t)))
            .cloned()
            .collect();
        v.sort();
        v.dedup();
        v
    } else {
        s.fields
            .iter()
            .filter_map(|p| {
                if let Projection::Field(f) = p {
                    Some(f.clone())
                } else {
                    None
                }
            })
            .collect()
    };
    let mut rows: Vec<(i64, usize, Vec<Value>)> = Vec::new();
    for (si, (tags, fields)) in members.iter().enumerate() {
        let mut times: std::collections::BTreeMap<i64, Vec<Value>> =
            std::collections::BTreeMap::new();
        for (ci, col) in wanted.iter().enumerate() {
            if let Some(pts) = fields.get(col) {
                for (ts, v) in pts {
                    times
                        .entry(*ts)
                        .or_insert_with(|| vec![Value::Null; wanted.len()])[ci] = to_json(v);
                }
            }
        }
        for (ts, mut vals) in times {
            if vals
                .iter()
                .zip(&wanted)
                .all(|(v, c)| v.is_null() || tag_names.contains(c) && !field_names.contains(c))
            {
                continue;
            }
            for (ci, col) in wanted.iter().enumerate() {
                if vals[ci].is_null()
                    && let Some((_, tv)) = tags.iter().find(|(k, _)| k == col)
                {
                    vals[ci] = json!(tv);
                }
            }
            rows.push((ts, si, vals));
        }
    }
    rows.sort_by_key(|r| (r.0, r.1));
    if s.desc {
        rows.sort_by_key(|r| (std::cmp::Reverse(r.0), r.1));
    }
    rows.drain(..s.offset.min(rows.len()));
    if s.limit > 0 {
        rows.truncate(s.limit);
    }
    if rows.is_empty() {
        return None;
    }
    let mut columns = vec!["time".to_string()];
    if all {
        columns.extend(wanted);
    } else {
        // The projections' names, or their `AS` names.
        let named = s
            .fields
            .iter()
            .zip(&s.aliases)
            .filter_map(|(p, a)| match p {
                Projection::Field(f) => Some(a.clone().unwrap_or_else(|| f.clone())),
                _ => None,
            });
        columns.extend(named);
    }
    let values = rows
        .into_iter()
        .map(|(ts, _, vals)| {
            let mut r = vec![time_value(ts, epoch)];
            r.extend(vals);
            Value::Array(r)
        })
        .collect();
    Some((columns, values))
}
