//! The rows of a SELECT of raw points.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::aggregate::Rows;
use super::ast::*;
use super::math::eval;
use super::values::{TaggedSeries, time_value, to_json};
use crate::tsdb::line_protocol::Precision;

/// A column of raw rows.
enum Col<'a> {
    /// A field or tag by name.
    Name(String),
    /// Arithmetic over fields.
    Math(&'a Expr),
}

/// The raw rows of one group: one per (time, series) where a field the
/// projections read has a value; columns in InfluxDB's order (the grouped
/// tags are the series' tags, not columns).
pub(super) fn raw_rows(
    s: &Select,
    members: &[&TaggedSeries],
    field_names: &BTreeSet<String>,
    tag_names: &BTreeSet<String>,
    grouped: &[String],
    epoch: Option<Precision>,
) -> Rows {
    let all = s.fields.iter().any(|p| matches!(p, Projection::All));
    let mut cols: Vec<(Col, String)> = Vec::new();
    if all {
        let mut v: Vec<&String> = field_names
            .iter()
            .chain(tag_names.iter().filter(|t| !grouped.contains(t)))
            .collect();
        v.sort();
        v.dedup();
        cols.extend(v.into_iter().map(|n| (Col::Name(n.clone()), n.clone())));
    } else {
        for (p, alias) in s.fields.iter().zip(&s.aliases) {
            match p {
                Projection::Field(f) => cols.push((
                    Col::Name(f.clone()),
                    alias.clone().unwrap_or_else(|| f.clone()),
                )),
                Projection::Math(e) => cols.push((
                    Col::Math(e),
                    alias.clone().unwrap_or_else(|| e.column_name()),
                )),
                _ => {}
            }
        }
    }
    // The fields the columns read.
    let mut read: Vec<&str> = Vec::new();
    for (c, _) in &cols {
        match c {
            Col::Name(n) => read.push(n),
            Col::Math(e) => {
                let mut leaves = Vec::new();
                e.leaves(&mut leaves);
                read.extend(leaves.into_iter().filter_map(|l| match l {
                    Expr::Field(f) => Some(f.as_str()),
                    _ => None,
                }));
            }
        }
    }
    read.sort_unstable();
    read.dedup();
    let mut rows: Vec<(i64, usize, Vec<Value>)> = Vec::new();
    for (si, (tags, fields)) in members.iter().enumerate() {
        let mut times: BTreeMap<i64, Vec<Option<Value>>> = BTreeMap::new();
        for (ri, f) in read.iter().enumerate() {
            for (ts, v) in fields.get(*f).into_iter().flatten() {
                times.entry(*ts).or_insert_with(|| vec![None; read.len()])[ri] = Some(to_json(v));
            }
        }
        let tag = |n: &str| tags.iter().find(|(k, _)| k == n).map(|(_, v)| json!(v));
        for (ts, row) in times {
            let at = |n: &str| read.binary_search(&n).ok().and_then(|i| row[i].clone());
            let vals = cols
                .iter()
                .map(|(c, _)| match c {
                    Col::Name(n) => at(n).or_else(|| tag(n)).unwrap_or(Value::Null),
                    Col::Math(e) => eval(e, &mut |l| match l {
                        Expr::Field(f) => at(f).unwrap_or(Value::Null),
                        _ => Value::Null,
                    }),
                })
                .collect();
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
    columns.extend(cols.into_iter().map(|(_, name)| name));
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
