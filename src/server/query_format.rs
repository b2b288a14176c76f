//! The body of a `/query` answer in the shapes influxd writes: one JSON
//! document (indented with `pretty=true`), newline-separated JSON chunks
//! (`chunked=true`, a series at most `chunk_size` rows per chunk), or CSV
//! (`Accept: application/csv`).

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::tsdb::line_protocol::escape_key;

/// influxd's default `chunk_size`.
const DEFAULT_CHUNK_SIZE: usize = 10_000;

/// How a request wants its answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Format {
    /// `chunked=true`: rows per chunk.
    pub chunked: Option<usize>,
    /// `Accept: application/csv` (or `text/csv`).
    pub csv: bool,
    /// `pretty=true`.
    pub pretty: bool,
    /// `Accept-Encoding: gzip`: the answer is compressed.
    pub gzip: bool,
}

impl Format {
    /// The format a request asks for with its parameters and `Accept`.
    pub(crate) fn of(q: &HashMap<String, String>, headers: &HeaderMap) -> Format {
        let on = |k: &str| q.get(k).is_some_and(|v| v == "true");
        let chunk_size = q
            .get("chunk_size")
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_CHUNK_SIZE);
        let csv = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| matches!(t.trim(), "application/csv" | "text/csv"))
            });
        let gzip = headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
        Format {
            chunked: on("chunked").then_some(chunk_size),
            csv,
            pretty: on("pretty"),
            gzip,
        }
    }
}

/// One statement's result (with its `statement_id`), and whether it was a
/// SELECT (whose series influxd splits into chunks).
pub(crate) struct Outcome {
    /// The result object.
    pub result: Value,
    /// A SELECT.
    pub select: bool,
}

/// The answer. `cut_short`: the last result failed with statements left
/// after it, which influxd then reports as "not executed" (merged into the
/// failed statement's result, or as a chunk of its own).
pub(crate) fn render(format: Format, mut outcomes: Vec<Outcome>, cut_short: bool) -> Response {
    if format.csv {
        if cut_short && let Some(last) = outcomes.last_mut() {
            last.result["error"] = json!("not executed");
        }
        let results: Vec<&Value> = outcomes.iter().map(|o| &o.result).collect();
        return with_type(csv(&results), "text/csv", format.gzip);
    }
    if let Some(size) = format.chunked {
        let mut body = String::new();
        let last_id = outcomes.last().map(|o| o.result["statement_id"].clone());
        for o in &outcomes {
            for chunk in chunks(o, size) {
                body.push_str(&json_text(&json!({ "results": [chunk] }), format.pretty));
                body.push('\n');
            }
        }
        if cut_short && let Some(id) = last_id {
            let r = json!({"results": [{"statement_id": id, "error": "not executed"}]});
            body.push_str(&json_text(&r, format.pretty));
            body.push('\n');
        }
        return with_type(body, "application/json", format.gzip);
    }
    if cut_short && let Some(last) = outcomes.last_mut() {
        last.result["error"] = json!("not executed");
    }
    let results: Vec<Value> = outcomes.into_iter().map(|o| o.result).collect();
    with_type(
        json_text(&json!({ "results": results }), format.pretty),
        "application/json",
        format.gzip,
    )
}

/// A 200 answer of `body`, gzip-compressed when the client accepts it (as
/// influxd compresses its answers).
fn with_type(body: String, content_type: &'static str, gzip: bool) -> Response {
    use std::io::Write;
    let compressed = gzip
        .then(|| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(body.as_bytes()).ok()?;
            e.finish().ok()
        })
        .flatten();
    let mut r = match compressed {
        Some(z) => {
            let mut r = (StatusCode::OK, z).into_response();
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        }
        None => (StatusCode::OK, body).into_response(),
    };
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// JSON text, indented by four spaces as influxd's when `pretty`.
fn json_text(v: &Value, pretty: bool) -> String {
    if !pretty {
        return v.to_string();
    }
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    match serde::Serialize::serialize(v, &mut ser) {
        Ok(()) => String::from_utf8(out).unwrap_or_else(|_| v.to_string()),
        Err(_) => v.to_string(),
    }
}

/// The chunks of one statement's result: a SELECT's series one per chunk,
/// a series longer than `size` rows split (`"partial": true` on every
/// piece but its last), and `"partial": true` on every chunk of the
/// statement but its last. Other results are one chunk.
fn chunks(o: &Outcome, size: usize) -> Vec<Value> {
    let series = match o.result.get("series").and_then(Value::as_array) {
        Some(s) if o.select && !s.is_empty() => s,
        _ => return vec![o.result.clone()],
    };
    let id = &o.result["statement_id"];
    let mut out = Vec::new();
    for s in series {
        let values = s.get("values").and_then(Value::as_array);
        let pieces: Vec<Option<&[Value]>> = match values {
            Some(v) if v.len() > size => v.chunks(size).map(Some).collect(),
            _ => vec![None],
        };
        let n = pieces.len();
        for (i, piece) in pieces.into_iter().enumerate() {
            let mut one = s.clone();
            if let Some(rows) = piece {
                one["values"] = json!(rows);
            }
            if i + 1 < n {
                one["partial"] = json!(true);
            }
            out.push(json!({ "statement_id": id, "series": [one], "partial": true }));
        }
    }
    if let Some(Value::Object(last)) = out.last_mut() {
        last.remove("partial");
    }
    out
}

/// Results as influxd's CSV: per statement with series, a header
/// `name,tags,<columns>` (again when the columns change), a row per value
/// row, and a blank line between statements. Tags are a series key's
/// `k=v,…` (escaped as line protocol, empty values left out); times and numbers as integers or
/// plain decimals; null is empty. Results without series (errors too)
/// write nothing, as influxd's.
fn csv(results: &[&Value]) -> String {
    let mut out = String::new();
    let mut current: Option<&Value> = None;
    for r in results {
        let Some(series) = r.get("series").and_then(Value::as_array) else {
            continue;
        };
        if series.is_empty() {
            continue;
        }
        if current.is_some() {
            out.push('\n');
        }
        current = Some(&r["statement_id"]);
        let mut columns: Option<&Value> = None;
        for s in series {
            let cols = &s["columns"];
            if columns != Some(cols) {
                let mut head = vec!["name".to_string(), "tags".to_string()];
                head.extend(
                    cols.as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| c.as_str().unwrap_or_default().to_string()),
                );
                csv_line(&mut out, &head);
                columns = Some(cols);
            }
            let name = s["name"].as_str().unwrap_or_default().to_string();
            let tags = s
                .get("tags")
                .and_then(Value::as_object)
                .map(|t| {
                    t.iter()
                        .filter(|(_, v)| v.as_str().is_some_and(|v| !v.is_empty()))
                        .map(|(k, v)| {
                            format!("{}={}", escape_key(k), escape_key(v.as_str().unwrap_or("")))
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            for row in s
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let mut fields = vec![name.clone(), tags.clone()];
                fields.extend(row.as_array().into_iter().flatten().map(csv_value));
                csv_line(&mut out, &fields);
            }
        }
    }
    out
}

fn csv_value(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            // Rust prints a float's shortest exact decimal without an
            // exponent, as Go's 'f', -1.
            (_, _, Some(f)) => f.to_string(),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// One CSV record, quoted where Go's encoding/csv quotes.
fn csv_line(out: &mut String, fields: &[String]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let quote = !f.is_empty()
            && (f == r"\."
                || f.contains([',', '"', '\r', '\n'])
                || f.starts_with(|c: char| c.is_whitespace()));
        if quote {
            out.push('"');
            out.push_str(&f.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(f);
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn select(v: Value) -> Outcome {
        Outcome {
            result: v,
            select: true,
        }
    }

    #[test]
    fn a_long_series_is_split_and_every_chunk_but_the_last_is_partial() {
        let o = select(json!({"statement_id": 0, "series": [
            {"name": "m", "columns": ["time", "v"], "values": [[1, 1], [2, 2], [3, 3]]},
            {"name": "n", "columns": ["time", "v"], "values": [[1, 1]]}
        ]}));
        let c = chunks(&o, 2);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0]["series"][0]["values"], json!([[1, 1], [2, 2]]));
        assert_eq!(c[0]["series"][0]["partial"], json!(true));
        assert_eq!(c[0]["partial"], json!(true));
        assert_eq!(c[1]["series"][0].get("partial"), None);
        assert_eq!(c[1]["partial"], json!(true));
        assert_eq!(c[2].get("partial"), None);
    }

    #[test]
    fn csv_quotes_as_go_and_escapes_tags_as_line_protocol() {
        let r = json!({"statement_id": 0, "series": [{"name": "t", "tags": {"a": "1", "b": "x,y"},
            "columns": ["time", "s", "v"], "values": [[1, "he,llo \"q\"", 1.5], [2, null, 2]]}]});
        let e = json!({"statement_id": 1, "error": "boom"});
        let r2 = json!({"statement_id": 2, "series": [{"name": "m", "columns": ["time", "count"], "values": [[0, 4]]}]});
        assert_eq!(
            csv(&[&r, &e, &r2]),
            "name,tags,time,s,v\nt,\"a=1,b=x\\,y\",1,\"he,llo \"\"q\"\"\",1.5\nt,\"a=1,b=x\\,y\",2,,2\n\nname,tags,time,count\nm,,0,4\n"
        );
    }
}
