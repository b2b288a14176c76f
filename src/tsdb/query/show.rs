//! The SHOW statements that read the schema.

use serde_json::{Value, json};

use super::ast::*;
use super::filter::{Filter, Keys};
use super::values::series_tags;
use crate::tsdb::fsm::TsdbView;

/// One unnamed series of `columns`, with `values` only if there are any
/// (as influxd lists users and grants).
pub(super) fn listing(columns: Value, values: Vec<Value>) -> Value {
    let mut s = json!({ "columns": columns });
    if !values.is_empty() {
        s["values"] = json!(values);
    }
    json!({ "series": [s] })
}

/// The schema statements: tag keys, tag values, field keys, series.
pub(super) fn show_schema(t: &TsdbView, db: &str, stmt: &Statement) -> Result<Value, String> {
    use std::collections::{BTreeMap, BTreeSet};
    if db.is_empty() {
        return Err("database name required".into());
    }
    let (from, cond) = match stmt {
        Statement::ShowTagKeys(f) | Statement::ShowFieldKeys(f) => (f.clone(), None),
        Statement::ShowTagValues { from, cond, .. } | Statement::ShowSeries { from, cond } => {
            (from.clone(), cond.as_ref())
        }
        _ => return Err("not a schema statement".into()),
    };
    let filter = Filter::new(cond)?;
    let key_re = match stmt {
        Statement::ShowTagValues {
            keys: KeyMatch::Regex(re, _),
            ..
        } => Some(regex::Regex::new(re).map_err(|e| e.to_string())?),
        _ => None,
    };
    let key_wanted = |k: &str| match stmt {
        Statement::ShowTagValues { keys, .. } => match keys {
            KeyMatch::Eq(x) => x == k,
            KeyMatch::In(xs) => xs.iter().any(|x| x == k),
            KeyMatch::Regex(_, pos) => key_re.as_ref().is_some_and(|r| r.is_match(k)) == *pos,
        },
        _ => true,
    };
    // measurement → what the statement lists for it.
    let mut per: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    let mut series: BTreeSet<String> = BTreeSet::new();
    // From the series index of each shard of the database.
    for shard in t.shards_of(db) {
        for m in shard.measurements() {
            if from.as_deref().is_some_and(|f| f != m) {
                continue;
            }
            let mut tag_keys = BTreeSet::new();
            match stmt {
                Statement::ShowFieldKeys(_) => {
                    let mut types = BTreeMap::new();
                    shard.field_types(&m, &mut types);
                    let e = per.entry(m).or_default();
                    for (f, ty) in types {
                        if !e.iter().any(|(x, _)| *x == f) {
                            e.insert((f, ty.to_string()));
                        }
                    }
                }
                Statement::ShowTagKeys(_) => {
                    shard.tag_keys(&m, &mut tag_keys);
                    let e = per.entry(m).or_default();
                    e.extend(tag_keys.into_iter().map(|k| (k, String::new())));
                }
                Statement::ShowTagValues { cond: None, .. } => {
                    shard.tag_keys(&m, &mut tag_keys);
                    let e = per.entry(m.clone()).or_default();
                    for k in tag_keys.into_iter().filter(|k| key_wanted(k)) {
                        let mut values = BTreeSet::new();
                        shard.tag_values(&m, &k, &mut values);
                        e.extend(values.into_iter().map(|v| (k.clone(), v)));
                    }
                }
                _ => {
                    // Series by series: the condition reads their tags.
                    let mut keys = BTreeMap::new();
                    shard.series(&m, &[], &mut keys);
                    for sk in keys.into_keys() {
                        let tags = series_tags(&sk);
                        if filter.series(&tags, &Keys::AllTags) != Some(true) {
                            continue;
                        }
                        if let Statement::ShowSeries { .. } = stmt {
                            series.insert(sk);
                        } else {
                            let e = per.entry(m.clone()).or_default();
                            e.extend(tags.into_iter().filter(|(k, _)| key_wanted(k)));
                        }
                    }
                }
            }
        }
    }
    if let Statement::ShowSeries { .. } = stmt {
        if series.is_empty() {
            return Ok(json!({}));
        }
        let vals: Vec<Value> = series.into_iter().map(|k| json!([k])).collect();
        return Ok(json!({"series": [{"columns": ["key"], "values": vals}]}));
    }
    let columns = match stmt {
        Statement::ShowTagKeys(_) => json!(["tagKey"]),
        Statement::ShowFieldKeys(_) => json!(["fieldKey", "fieldType"]),
        _ => json!(["key", "value"]),
    };
    let out: Vec<Value> = per
        .into_iter()
        .filter(|(_, rows)| !rows.is_empty())
        .map(|(m, rows)| {
            let vals: Vec<Value> = rows
                .into_iter()
                .map(|(a, b)| match stmt {
                    Statement::ShowTagKeys(_) => json!([a]),
                    _ => json!([a, b]),
                })
                .collect();
            json!({"name": m, "columns": columns, "values": vals})
        })
        .collect();
    if out.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({ "series": out }))
}
