//! `SELECT … INTO`: the rows of a SELECT as points written back, as
//! influxd's: the target measurement, the series' GROUP BY tags as tags,
//! every other column but time as a field (nulls left out, a row without
//! a field left out).

use serde_json::Value;

use crate::tsdb::line_protocol::{FieldValue, Point};

/// The points of a SELECT's result (run with epoch ns and
/// [`super::values::with_typed_floats`]) for `measurement` (None: each
/// series' own, as `INTO :MEASUREMENT`).
pub fn into_points(result: &Value, measurement: Option<&str>) -> Vec<Point> {
    let mut out = Vec::new();
    for s in result_series(result) {
        let (tags, columns) = tags_and_columns(s);
        let name = measurement
            .or_else(|| s.get("name").and_then(Value::as_str))
            .unwrap_or_default();
        for row in s
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(row) = row.as_array() else { continue };
            let Some(time) = row.first().and_then(Value::as_i64) else {
                continue;
            };
            let fields: Vec<(String, FieldValue)> = columns
                .iter()
                .zip(row)
                .skip(1)
                .filter_map(|(c, v)| field(v).map(|f| (c.to_string(), f)))
                .collect();
            if fields.is_empty() {
                continue;
            }
            out.push(Point {
                measurement: name.to_string(),
                tags: tags.clone(),
                fields,
                timestamp: time,
            });
        }
    }
    out
}

/// The series of a SELECT's result.
pub(super) fn result_series(result: &Value) -> impl Iterator<Item = &Value> {
    result
        .get("series")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// A result series' GROUP BY tags (sorted, empty values left out) and its
/// column names.
pub(super) fn tags_and_columns(series: &Value) -> (Vec<(String, String)>, Vec<&str>) {
    let mut tags: Vec<(String, String)> = series
        .get("tags")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            v.as_str()
                .filter(|v| !v.is_empty())
                .map(|v| (k.clone(), v.to_string()))
        })
        .collect();
    tags.sort();
    let columns = series
        .get("columns")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| c.as_str().unwrap_or_default())
        .collect();
    (tags, columns)
}

/// A value of a result row as a field value (null: none).
pub(super) fn field(v: &Value) -> Option<FieldValue> {
    Some(match v {
        Value::Number(n) if n.is_f64() => FieldValue::Float(n.as_f64()?),
        Value::Number(n) if n.is_i64() => FieldValue::Integer(n.as_i64()?),
        Value::Number(n) => FieldValue::Unsigned(n.as_u64()?),
        Value::String(s) => FieldValue::String(s.clone()),
        Value::Bool(b) => FieldValue::Boolean(*b),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_become_points_with_their_groups_tags_and_types() {
        let r = json!({"series": [{"name": "m", "tags": {"host": "a", "dc": ""},
            "columns": ["time", "mean", "count", "s"],
            "values": [[60, 2.0, 3, "x"], [120, null, null, null]]}]});
        let p = into_points(&r, Some("m_1m"));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].measurement, "m_1m");
        assert_eq!(p[0].tags, vec![("host".to_string(), "a".to_string())]);
        assert_eq!(p[0].timestamp, 60);
        assert_eq!(
            p[0].fields,
            vec![
                ("mean".to_string(), FieldValue::Float(2.0)),
                ("count".to_string(), FieldValue::Integer(3)),
                ("s".to_string(), FieldValue::String("x".into()))
            ]
        );
        // `INTO :MEASUREMENT`: the series' own name.
        assert_eq!(into_points(&r, None)[0].measurement, "m");
    }
}
