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
            for chunk in chunk_lines(o, size) {
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
pub(crate) fn json_text(v: &Value, pretty: bool) -> String {
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
pub(crate) fn chunk_lines(o: &Outcome, size: usize) -> Vec<Value> {
    let series = match o.result.get("series").and_then(Value::as_array) {
        Some(s) if o.select && !s.is_empty() => s,
        _ => return vec![o.result.clone()],
    };
    let mut c = Chunker::new(o.result["statement_id"].clone(), size);
    for s in series {
        c.push(s.clone());
    }
    c.finish()
}

/// Cuts one SELECT's series into influxd's chunks as they come: pieces of
/// the same series (same name, tags and columns) given one after another
/// are joined, and each chunk is given out once the next is known (so
/// that it can say whether more follow).
pub(crate) struct Chunker {
    id: Value,
    size: usize,
    /// The series whose rows are still coming.
    open: Option<Value>,
    /// The last chunk cut, not yet given out.
    held: Option<Value>,
    /// Chunks ready.
    ready: Vec<Value>,
}

impl Chunker {
    /// A chunker of statement `id`'s series, `size` rows a chunk.
    pub(crate) fn new(id: Value, size: usize) -> Self {
        Chunker {
            id,
            size: size.max(1),
            open: None,
            held: None,
            ready: Vec::new(),
        }
    }

    /// Adds a series (or more rows of the last one).
    pub(crate) fn push(&mut self, series: Value) {
        let same = |a: &Value, b: &Value| {
            ["name", "tags", "columns"]
                .iter()
                .all(|k| a.get(*k) == b.get(*k))
        };
        match &mut self.open {
            Some(open) if same(open, &series) => {
                if let (Some(Value::Array(rows)), Value::Object(mut more)) =
                    (open.get_mut("values"), series)
                    && let Some(Value::Array(more)) = more.remove("values")
                {
                    rows.extend(more);
                }
            }
            _ => {
                if let Some(done) = self.open.replace(series) {
                    self.cut(done);
                }
            }
        }
        // Full chunks of a series with more rows after them, moved out
        // (not copied) from the front.
        let mut full = Vec::new();
        if let Some(open) = &mut self.open
            && let Some(Value::Array(rows)) = open.get_mut("values")
            && rows.len() > self.size
        {
            let mut rest = std::mem::take(rows).into_iter();
            let header = open.clone();
            while rest.len() > self.size {
                let mut piece = header.clone();
                piece["values"] = Value::Array(rest.by_ref().take(self.size).collect());
                piece["partial"] = json!(true);
                full.push(piece);
            }
            open["values"] = Value::Array(rest.collect());
        }
        for piece in full {
            self.cut(piece);
        }
    }

    /// A chunk of one series piece; the one held before it is ready.
    fn cut(&mut self, piece: Value) {
        let chunk = json!({ "statement_id": self.id, "series": [piece], "partial": true });
        if let Some(before) = self.held.replace(chunk) {
            self.ready.push(before);
        }
    }

    /// The chunks ready so far.
    pub(crate) fn take(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.ready)
    }

    /// The chunks left when the statement fails part-way, as they are
    /// (its error follows them).
    pub(crate) fn cut_short(mut self) -> Vec<Value> {
        if let Some(done) = self.open.take() {
            self.cut(done);
        }
        self.ready.extend(self.held.take());
        self.ready
    }

    /// Every chunk left: the last without `"partial"` (the statement's
    /// result alone when it had no series).
    pub(crate) fn finish(mut self) -> Vec<Value> {
        if let Some(done) = self.open.take() {
            self.cut(done);
        }
        match self.held.take() {
            Some(Value::Object(mut last)) => {
                last.remove("partial");
                self.ready.push(Value::Object(last));
            }
            Some(other) => self.ready.push(other),
            None => self.ready.push(json!({ "statement_id": self.id })),
        }
        self.ready
    }
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
        let c = chunk_lines(&o, 2);
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
