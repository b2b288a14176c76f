//! `sample()` beside other functions (`SELECT sample(v, 5), max(w) …`):
//! influxd runs each projection as its own iterator and zips their points
//! by time, so that a row holds every projection's point at its time and
//! null where a projection has none. Each projection runs here as a SELECT
//! of its own; their series are joined by name and tags, their rows by
//! time.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::ast::{Fill, Pick, Projection, Select};
use super::select::aggs_only;
use super::values::{ColName, TimeFmt, columns_named, time_value};
use crate::tsdb::line_protocol::Precision;

/// Whether `s` is a SELECT whose projections influxd zips: a `sample()`
/// beside other aggregates or samples.
pub(super) fn zipped(s: &Select) -> bool {
    s.fields.len() > 1
        && s.fields.iter().any(|f| {
            matches!(
                f,
                Projection::Selector {
                    pick: Pick::Sample,
                    ..
                }
            )
        })
        && s.fields.iter().all(|f| {
            aggs_only(std::slice::from_ref(f))
                && !matches!(
                    f,
                    Projection::Selector {
                        pick: Pick::Top | Pick::Bottom,
                        ..
                    }
                )
        })
}

/// One series of the answer being built: by time, each projection's
/// values at that time (a sample may hold several points at one time:
/// the k-th of each projection share the k-th row).
struct Joined {
    name: Value,
    tags: Option<Value>,
    rows: BTreeMap<i64, Vec<Vec<Value>>>,
}

/// Runs each projection of `s` on its own with `run` (times as
/// nanoseconds) and zips the answers: one series per name and tags, one
/// row per time, in time order.
pub(super) fn zip_projections(
    s: &Select,
    epoch: Option<Precision>,
    mut run: impl FnMut(&Select) -> Result<Value, String>,
) -> Result<Value, String> {
    let n = s.fields.len();
    let mut names: Vec<ColName> = Vec::with_capacity(n);
    let mut series: BTreeMap<String, Joined> = BTreeMap::new();
    for (i, f) in s.fields.iter().enumerate() {
        let alias = s.aliases.get(i).cloned().flatten();
        let mut one = s.clone();
        one.fields = vec![f.clone()];
        one.aliases = vec![alias.clone()];
        let v = run(&one)?;
        // Beside others, a selector's row (max, first, …) is at the start
        // of its window, not at its point's time as when alone.
        let sample = matches!(
            f,
            Projection::Selector {
                pick: Pick::Sample,
                ..
            }
        );
        let at = (!sample && s.group_time.is_none()).then_some(if s.has_min { s.min } else { 0 });
        let mut name = None;
        for part in v
            .get("series")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let col = part["columns"][1].as_str().unwrap_or_default().to_string();
            name.get_or_insert(col);
            let tags = part.get("tags").cloned();
            let key = format!(
                "{}\u{0}{}",
                part["name"].as_str().unwrap_or_default(),
                tags.as_ref().map(Value::to_string).unwrap_or_default()
            );
            let joined = series.entry(key).or_insert_with(|| Joined {
                name: part["name"].clone(),
                tags: tags.clone(),
                rows: BTreeMap::new(),
            });
            for row in part["values"].as_array().into_iter().flatten() {
                let (Some(t), Some(v)) = (row[0].as_i64(), row.get(1)) else {
                    continue;
                };
                let t = at.unwrap_or(t);
                joined.rows.entry(t).or_insert_with(|| vec![Vec::new(); n])[i].push(v.clone());
            }
        }
        names.push(match alias {
            Some(a) => ColName::Alias(a),
            None => ColName::Made(name.unwrap_or_else(|| default_name(f))),
        });
    }
    if series.is_empty() {
        return Ok(json!({}));
    }
    let columns = columns_named(names.iter());
    let fmt = TimeFmt { epoch, tz: s.tz };
    let out: Vec<Value> = series
        .into_values()
        .map(|j| {
            let mut m = Map::new();
            m.insert("name".into(), j.name);
            if let Some(t) = j.tags {
                m.insert("tags".into(), t);
            }
            m.insert("columns".into(), json!(columns));
            // A projection without a point at a row's time gets what
            // fill() says, as influxd fills zipped rows.
            let mut last: Vec<Value> = vec![Value::Null; n];
            let values: Vec<Value> = j
                .rows
                .into_iter()
                .flat_map(|(t, cols)| {
                    let depth = cols.iter().map(Vec::len).max().unwrap_or(0);
                    (0..depth).map(move |k| {
                        let vals: Vec<Value> = cols
                            .iter()
                            .map(|c| c.get(k).cloned().unwrap_or(Value::Null))
                            .collect();
                        (t, vals)
                    })
                })
                .map(|(t, vals)| {
                    let mut row = Vec::with_capacity(n + 1);
                    row.push(time_value(t, fmt));
                    for (c, v) in vals.into_iter().enumerate() {
                        let v = match (&v, &s.fill) {
                            (Value::Null, Fill::Value(x)) => number(*x),
                            (Value::Null, Fill::Previous) => last[c].clone(),
                            _ => v,
                        };
                        if !v.is_null() {
                            last[c] = v.clone();
                        }
                        row.push(v);
                    }
                    Value::Array(row)
                })
                .collect();
            m.insert("values".into(), Value::Array(values));
            Value::Object(m)
        })
        .collect();
    Ok(json!({ "series": out }))
}

/// A fill value as influxd's JSON writes it (a whole number without `.0`).
fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.007_199_254_740_992e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

/// The column a projection gets when its own SELECT returned no series
/// (its name is then not in any answer).
fn default_name(f: &Projection) -> String {
    match f {
        Projection::Selector { pick, .. } => pick.name().to_string(),
        Projection::Agg(func, _) => func.name().to_string(),
        Projection::Math(e) => e.column_name(),
        _ => String::new(),
    }
}
