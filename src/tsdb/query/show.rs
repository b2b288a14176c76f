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
    let mut last = String::new();
    for (key, ty) in t.key_types(db) {
        let (sk, field) = key
            .split_once(crate::tsdb::tsm::KEY_FIELD_SEPARATOR)
            .unwrap_or((key.as_str(), ""));
        let m = crate::tsdb::shard::measurement_of(sk);
        if from.as_deref().is_some_and(|f| f != m) {
            continue;
        }
        if let Statement::ShowFieldKeys(_) = stmt {
            let e = per.entry(m).or_default();
            if !e.iter().any(|(f, _)| f == field) {
                e.insert((field.to_string(), ty.to_string()));
            }
            continue;
        }
        if sk == last {
            continue;
        }
        last = sk.to_string();
        let tags = series_tags(sk);
        if filter.series(&tags, &Keys::AllTags) != Some(true) {
            continue;
        }
        match stmt {
            Statement::ShowSeries { .. } => {
                series.insert(sk.to_string());
            }
            Statement::ShowTagKeys(_) => {
                let e = per.entry(m).or_default();
                e.extend(tags.into_iter().map(|(k, _)| (k, String::new())));
            }
            _ => {
                let e = per.entry(m).or_default();
                e.extend(tags.into_iter().filter(|(k, _)| key_wanted(k)));
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
