//! `EXPLAIN SELECT …`: what the statement would read, as influxd's query
//! plan lists it — one entry per iterator influxd would create (a pushed
//! down aggregate such as `mean(v::float)`, or the field a function reads
//! point by point, or `<nil>` with the auxiliary fields of raw points),
//! each with the shards it meets, the series it reads there, and the
//! values in the cache, the TSM files, blocks and bytes of blocks that
//! hold the fields it reads (its own, the auxiliary ones, and those of
//! the condition) in the time range. Counted on this node's files, which
//! are laid out differently from influxd's.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::ast::*;
use super::filter::{Filter, Keys};
use super::values::series_tags;
use crate::tsdb::fsm::TsdbView;
use crate::tsdb::tsm::KEY_FIELD_SEPARATOR;

/// One iterator of the plan.
struct Node {
    /// Its expression (`mean(v::float)`, `v::float`), or none for raw
    /// points.
    expr: Option<String>,
    /// Its auxiliary fields (`h::tag, v::float`).
    aux: Vec<String>,
    /// The fields whose keys it reads.
    reads: BTreeSet<String>,
}

/// The `EXPLAIN` answer for `s` on database `db`.
pub(super) fn explain(t: &TsdbView, db: &str, s: &Select) -> Result<Value, String> {
    let db = s.db.as_deref().unwrap_or(db);
    if db.is_empty() {
        return Err("database name required".into());
    }
    let rp = s.rp.as_deref().unwrap_or("");
    let shards = t
        .shards_in(db, rp, s.min, s.max)
        .map_err(|e| e.to_string())?;
    let filter = Filter::new(s.cond.as_ref())?;
    let names = super::select_exec::source_names(t, db, s)?;
    let mut lines: Vec<String> = Vec::new();
    for m in names {
        // The measurement's names and types in the shards the range meets.
        let (mut types, mut tags) = (BTreeMap::new(), BTreeSet::new());
        for (_, shard) in &shards {
            shard.field_types(&m, &mut types);
            shard.tag_keys(&m, &mut tags);
        }
        let fields: BTreeSet<String> = types.keys().cloned().collect();
        let keys = Keys::Known {
            tags: &tags,
            fields: &fields,
        };
        let cond_fields: BTreeSet<String> = filter
            .fields(&keys)
            .into_iter()
            .map(str::to_string)
            .collect();
        let typed = |name: &str| -> String {
            match types.get(name) {
                Some(ty) => format!("{name}::{ty}"),
                None if tags.contains(name) => format!("{name}::tag"),
                None => format!("{name}::unknown"),
            }
        };
        // A measurement no shard of the range holds: no iterator.
        if !shards
            .iter()
            .any(|(_, shard)| shard.measurements().contains(&m))
        {
            continue;
        }
        for node in nodes(s, &types, &tags, &typed) {
            let mut reads = node.reads.clone();
            reads.extend(cond_fields.iter().cloned());
            let (mut n_shards, mut n_series, mut cached, mut files, mut blocks, mut bytes) =
                (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
            for (_, shard) in &shards {
                if !shard.measurements().contains(&m) {
                    continue;
                }
                n_shards += 1;
                let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
                shard.series(&m, &[], &mut series);
                for key in series.keys() {
                    let tags_of = series_tags(key);
                    if filter.series(&tags_of, &keys) == Some(false) {
                        continue;
                    }
                    n_series += 1;
                    for field in &reads {
                        let c =
                            shard.cost(&format!("{key}{KEY_FIELD_SEPARATOR}{field}"), s.min, s.max);
                        cached += c.0;
                        files += c.1;
                        blocks += c.2;
                        bytes += c.3;
                    }
                }
            }
            if !lines.is_empty() {
                lines.push(String::new());
            }
            lines.push(format!(
                "EXPRESSION: {}",
                node.expr.as_deref().unwrap_or("<nil>")
            ));
            if !node.aux.is_empty() {
                lines.push(format!("AUXILIARY FIELDS: {}", node.aux.join(", ")));
            }
            lines.push(format!("NUMBER OF SHARDS: {n_shards}"));
            lines.push(format!("NUMBER OF SERIES: {n_series}"));
            lines.push(format!("CACHED VALUES: {cached}"));
            lines.push(format!("NUMBER OF FILES: {files}"));
            lines.push(format!("NUMBER OF BLOCKS: {blocks}"));
            lines.push(format!("SIZE OF BLOCKS: {bytes}"));
        }
    }
    if lines.is_empty() {
        lines.push(String::new());
    }
    let values: Vec<Value> = lines.into_iter().map(|l| json!([l])).collect();
    Ok(json!({"series": [{"columns": ["QUERY PLAN"], "values": values}]}))
}

/// The iterators influxd creates for `s` on one measurement: for raw
/// points one, with every field and tag used as auxiliary fields (sorted);
/// otherwise one per call — pushed down (`count`, `min`, `max`, `sum`,
/// `first`, `last`, `mean`) with the call as its expression, the rest
/// reading the field point by point — with the fields and tags beside a
/// selector as auxiliary fields.
fn nodes(
    s: &Select,
    types: &BTreeMap<String, &'static str>,
    tags: &BTreeSet<String>,
    typed: &dyn Fn(&str) -> String,
) -> Vec<Node> {
    let mut calls: Vec<(Func, String)> = Vec::new();
    let mut raw_reads: Vec<String> = Vec::new();
    let mut plain: BTreeSet<String> = BTreeSet::new();
    let every_field = || types.keys().cloned().collect::<Vec<_>>();
    for p in &s.fields {
        match p {
            Projection::All => {
                plain.extend(types.keys().cloned());
                plain.extend(tags.iter().cloned());
            }
            Projection::Field(f) => {
                plain.insert(f.clone());
            }
            Projection::Agg(f, field) if field == "*" => {
                calls.extend(every_field().into_iter().map(|fld| (*f, fld)));
            }
            Projection::Agg(f, field) => calls.push((*f, field.clone())),
            Projection::Nested { inner, field, .. } => match inner {
                Func::Raw => raw_reads.push(field.clone()),
                f => calls.push((*f, field.clone())),
            },
            Projection::Math(e) => {
                let mut leaves = Vec::new();
                e.leaves(&mut leaves);
                for l in leaves {
                    match l {
                        Expr::Call(f, field) => calls.push((*f, field.clone())),
                        Expr::Field(f) => {
                            plain.insert(f.clone());
                        }
                        _ => {}
                    }
                }
            }
            // top/bottom by a tag: the highest (lowest) of each of its
            // values first, pushed down.
            Projection::Selector {
                pick,
                field,
                tag: Some(t),
                ..
            } if *pick != Pick::Sample => {
                let f = if *pick == Pick::Top {
                    Func::Max
                } else {
                    Func::Min
                };
                calls.push((f, field.clone()));
                plain.insert(t.clone());
            }
            Projection::Selector { field, .. } => raw_reads.push(field.clone()),
            Projection::Invalid(_) => {}
        }
    }
    let reads_of = |names: &mut dyn Iterator<Item = &String>| -> BTreeSet<String> {
        names.filter(|n| types.contains_key(*n)).cloned().collect()
    };
    let aux: Vec<String> = plain.iter().map(|n| typed(n)).collect();
    if calls.is_empty() && raw_reads.is_empty() {
        return vec![Node {
            expr: None,
            aux,
            reads: reads_of(&mut plain.iter()),
        }];
    }
    let mut out = Vec::new();
    for (f, field) in calls {
        let pushed = matches!(
            f,
            Func::Count | Func::Min | Func::Max | Func::Sum | Func::First | Func::Last | Func::Mean
        );
        let expr = if pushed {
            format!("{}({})", f.name(), typed(&field))
        } else {
            typed(&field)
        };
        let mut reads = reads_of(&mut plain.iter());
        reads.extend(reads_of(&mut std::iter::once(&field)));
        out.push(Node {
            expr: Some(expr),
            aux: aux.clone(),
            reads,
        });
    }
    for field in raw_reads {
        let mut reads = reads_of(&mut plain.iter());
        reads.extend(reads_of(&mut std::iter::once(&field)));
        out.push(Node {
            expr: Some(typed(&field)),
            aux: aux.clone(),
            reads,
        });
    }
    out
}
