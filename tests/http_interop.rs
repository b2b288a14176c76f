//! The /query answer's shapes compared with a real influxd 1.6.7:
//! `chunked=true` with `chunk_size` (each chunk's JSON), CSV for
//! `Accept: application/csv` (byte for byte), `pretty=true`, `epoch`,
//! multi-statement requests that fail part-way, statements that change
//! state sent with GET, and influxd's headers on every answer.

mod common;

use common::http::request_raw;
use common::influxd::Influxd;
use common::procs::Procs;
use serde_json::Value;

const POINTS: &str = "m,host=a v=1,w=2i,s=\"x\" 1000000000\n\
m,host=a v=2.5,w=3i 2000000000\n\
m,host=b v=4,w=5i,s=\"y\" 3000000000\n\
m,host=b w=7i 4000000000\n\
m,host=c v=-1 5000000000\n\
m,host=c v=0.1 6000000000\n\
t,a=1,b=x\\,y s=\"he,llo \\\"q\\\"\",v=1 1\n\
t,a=2 v=2 2\n\
t,a=3 v=1e21,s=\" lead\" 3";

/// A /query answer reduced to what is compared: status, content type,
/// and the body (chunks parsed one by one; CSV as text; else the JSON).
fn answer(
    http: &str,
    method: &str,
    params: &[(&str, &str)],
    accept: Option<&str>,
) -> (u16, String, Value) {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
    let (code, h, text) = request_raw(method, http, "/query", params, &headers, b"");
    let ct = h
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.split(';').next().unwrap_or("").to_string())
        .unwrap_or_default();
    let body = if ct == "text/csv" {
        Value::String(text)
    } else if params.iter().any(|(k, v)| *k == "chunked" && *v == "true") {
        chunk_list(&text)
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (code, ct, body)
}

/// A chunked answer: the JSON of each line (a line that is not JSON as
/// its text).
fn chunk_list(text: &str) -> Value {
    Value::Array(
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or(Value::String(l.to_string())))
            .collect(),
    )
}

/// POST /query?db=h&q=… over raw HTTP/1.0 with `Accept-Encoding: gzip` if
/// `gz`: the status, whether the answer came gzip-encoded, and its JSON
/// (decompressed).
fn gzip_answer(http: &str, q: &str, gz: bool) -> (String, bool, Value) {
    gzip_answer_with(http, q, gz, "")
}

/// [`gzip_answer`] with more URL parameters (`&k=v…`); an answer of
/// several lines (chunks) as the list of their JSON.
fn gzip_answer_with(http: &str, q: &str, gz: bool, extra: &str) -> (String, bool, Value) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(http).unwrap();
    let q: String = q
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let accept = if gz { "Accept-Encoding: gzip\r\n" } else { "" };
    write!(
        c,
        "POST /query?db=h&q={q}{extra} HTTP/1.0\r\nHost: x\r\n{accept}Content-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let body = raw.get(split + 4..).unwrap_or_default();
    let status = head.split_whitespace().nth(1).unwrap_or("").to_string();
    let gzipped = head.contains("content-encoding: gzip");
    let mut text = String::new();
    if gzipped {
        flate2::read::GzDecoder::new(body)
            .read_to_string(&mut text)
            .unwrap();
    } else {
        text = String::from_utf8_lossy(body).into_owned();
    }
    let parsed = if text.trim_end().contains('\n') {
        chunk_list(&text)
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, gzipped, parsed)
}

/// A request: method, URL parameters, `Accept`.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Option<&'a str>);

#[test]
fn query_answer_shapes_and_headers_are_influxds() {
    let Some(real) = Influxd::start() else { return };
    let p = Procs::start(1, &[]);
    let ours = p.nodes[&p.leader()].http.clone();
    for http in [&real.http, &ours] {
        answer(http, "POST", &[("q", "CREATE DATABASE h")], None);
        let (code, _, body) = request_raw(
            "POST",
            http,
            "/write",
            &[("db", "h")],
            &[],
            POINTS.as_bytes(),
        );
        assert_eq!(code, 204, "{body}");
    }
    let q = |s: &'static str| vec![("db", "h"), ("q", s)];
    let with = |s: &'static str, extra: &[(&'static str, &'static str)]| {
        let mut v = vec![("db", "h"), ("q", s)];
        v.extend_from_slice(extra);
        v
    };
    let chunked =
        |s: &'static str, size: &'static str| with(s, &[("chunked", "true"), ("chunk_size", size)]);
    let cases: Vec<Case> = vec![
        // Chunks.
        ("POST", chunked("SELECT * FROM m", "2"), None),
        ("POST", chunked("SELECT * FROM m GROUP BY host", "2"), None),
        ("POST", chunked("SELECT * FROM m GROUP BY host", "10"), None),
        (
            "POST",
            chunked(
                "SELECT * FROM m GROUP BY host; SHOW MEASUREMENTS; SELECT count(v) FROM m GROUP BY host",
                "10",
            ),
            None,
        ),
        (
            "POST",
            chunked("SHOW MEASUREMENTS; SHOW TAG VALUES WITH KEY = host", "1"),
            None,
        ),
        (
            "POST",
            chunked("SELECT v FROM m WHERE host = 'c'", "1"),
            None,
        ),
        (
            "POST",
            chunked("SELECT * FROM nope; SELECT count(v) FROM m", "1"),
            None,
        ),
        (
            "POST",
            chunked(
                "SELECT count(v) FROM m; SELECT count(v) FROM nope.autogen.m; SHOW DATABASES",
                "1",
            ),
            None,
        ),
        (
            "POST",
            with("SELECT * FROM m", &[("chunked", "true")]),
            None,
        ),
        (
            "POST",
            with(
                "SELECT * FROM m",
                &[("chunked", "false"), ("chunk_size", "1")],
            ),
            None,
        ),
        // CSV.
        (
            "POST",
            q("SELECT * FROM m GROUP BY host; SELECT count(v) FROM m"),
            Some("application/csv"),
        ),
        (
            "POST",
            q("SELECT * FROM t GROUP BY *"),
            Some("application/csv"),
        ),
        ("POST", q("SELECT * FROM t"), Some("application/csv")),
        ("POST", q("SELECT v / 3 FROM m"), Some("application/csv")),
        (
            "POST",
            with("SELECT count(v) FROM m", &[("epoch", "s")]),
            Some("application/csv"),
        ),
        (
            "POST",
            with("SELECT v FROM m", &[("epoch", "ms")]),
            Some("application/csv"),
        ),
        (
            "POST",
            q("SHOW MEASUREMENTS; SHOW TAG KEYS; SHOW FIELD KEYS"),
            Some("application/csv"),
        ),
        (
            "POST",
            q("SELECT count(v) FROM m; SELECT count(v) FROM nope.autogen.m"),
            Some("application/csv"),
        ),
        ("POST", q("SHOW DATABASES"), Some("text/csv")),
        // Pretty.
        (
            "POST",
            with("SELECT * FROM m; SELECT * FROM nope", &[("pretty", "true")]),
            None,
        ),
        ("POST", with("SHOW DATABASES", &[("pretty", "true")]), None),
        // Epochs.
        ("POST", with("SELECT v FROM m", &[("epoch", "h")]), None),
        ("POST", with("SELECT v FROM m", &[("epoch", "m")]), None),
        ("POST", with("SELECT v FROM m", &[("epoch", "s")]), None),
        ("POST", with("SELECT v FROM m", &[("epoch", "ms")]), None),
        ("POST", with("SELECT v FROM m", &[("epoch", "u")]), None),
        ("POST", with("SELECT v FROM m", &[("epoch", "ns")]), None),
        // Statements that fail part-way.
        ("POST", vec![("q", "SELECT count(v) FROM m")], None),
        (
            "POST",
            vec![("q", "SELECT count(v) FROM m; SHOW DATABASES")],
            None,
        ),
        (
            "POST",
            q("SHOW DATABASES; SELECT count(v) FROM nope.autogen.m"),
            None,
        ),
        (
            "POST",
            q("SELECT count(v) FROM m; SELECT count(v) FROM nope.autogen.m; SHOW DATABASES"),
            None,
        ),
        ("POST", q("SHOW MEASUREMENTS ON nope; SHOW DATABASES"), None),
        (
            "POST",
            q("SELECT * FROM nope; SELECT count(v) FROM m"),
            None,
        ),
        // Parse errors: the whole request refused, the place named.
        ("POST", q("SELEC nothing"), None),
        ("POST", q("SHOW DATABASES; SELEC x"), None),
        ("POST", q("SHOW DATABASES;\nSHOW FOO"), None),
        ("POST", q("SELECT v FROM"), None),
        ("POST", q("SELECT v FROM m WHERE"), None),
        ("POST", q("SELECT v FROM m WHERE host = "), None),
        (
            "POST",
            q("SELECT v FROM m GROUP BY time(1m) fill(foo)"),
            None,
        ),
        ("POST", q("SELECT v FROM m LIMIT x"), None),
        ("POST", q("CREATE DATABASE"), None),
        ("POST", q("DROP"), None),
        ("POST", q("SELECT v FROM m extra"), None),
        // Bound parameters.
        (
            "POST",
            with(
                "SELECT v FROM m WHERE host = $h AND v > $min",
                &[("params", r#"{"h":"a","min":1}"#)],
            ),
            None,
        ),
        (
            "POST",
            with(
                "SELECT v FROM m WHERE host = $h AND v > $min",
                &[("params", r#"{"h":"a","min":1.5}"#)],
            ),
            None,
        ),
        (
            "POST",
            with(
                "SELECT v FROM m WHERE host = $h AND v > $min",
                &[("params", r#"{"h":true,"min":1}"#)],
            ),
            None,
        ),
        (
            "POST",
            with(
                "SELECT v FROM m WHERE host = $h AND v > $min",
                &[("params", r#"{"h":"a"}"#)],
            ),
            None,
        ),
        ("POST", q("SELECT v FROM m WHERE host = $h"), None),
        // State changed with GET: done, with a warning.
        (
            "GET",
            vec![(
                "q",
                "CREATE DATABASE g1; CREATE RETENTION POLICY r ON g1 DURATION 1d REPLICATION 1; SHOW RETENTION POLICIES ON g1",
            )],
            None,
        ),
        ("GET", vec![("q", "DROP DATABASE g1; SHOW DATABASES")], None),
        (
            "GET",
            vec![(
                "q",
                "CREATE DATABASE g3; CREATE CONTINUOUS QUERY c ON g3 BEGIN SELECT count(v) INTO x FROM (SELECT v FROM m) GROUP BY time(1m) END; DROP DATABASE g3",
            )],
            None,
        ),
        // DELETE from a GET: done, without a warning.
        ("GET", q("DELETE FROM m WHERE host = 'none'"), None),
        ("GET", q("DROP SERIES FROM m WHERE host = 'none'"), None),
        (
            "POST",
            vec![("q", "CREATE DATABASE g2; DROP DATABASE g2")],
            None,
        ),
        ("GET", q("SELECT count(v) FROM m"), None),
    ];
    let mut differ = Vec::new();
    for (method, params, accept) in &cases {
        let theirs = answer(&real.http, method, params, *accept);
        let mine = answer(&ours, method, params, *accept);
        if theirs != mine {
            differ.push(format!(
                "{method} {params:?} accept {accept:?}\n  influxd {theirs:?}\n  tsnode  {mine:?}"
            ));
        }
    }
    // Compressed answers: gzip when the client accepts it (raw HTTP/1.0, so
    // that nothing decodes them on the way).
    for (q, gz) in [
        ("SHOW DATABASES", true),
        ("SELECT * FROM m", true),
        ("SELECT * FROM m", false),
        ("SELEC x", true),
    ] {
        let (theirs, mine) = (gzip_answer(&real.http, q, gz), gzip_answer(&ours, q, gz));
        if theirs != mine {
            differ.push(format!(
                "gzip {q}\n  influxd {theirs:?}\n  tsnode  {mine:?}"
            ));
        }
    }
    // Headers on every answer, and the error repeated in one.
    for (method, path, params, body) in [
        ("GET", "/ping", vec![], ""),
        ("POST", "/query", vec![("q", "SHOW DATABASES")], ""),
        ("POST", "/query", vec![("q", "SELEC nothing")], ""),
        ("POST", "/write", vec![("db", "h")], "m v=1 1"),
        ("POST", "/write", vec![("db", "nope")], "m v=1 1"),
    ] {
        let names = |http: &str| {
            let (code, h, _) = request_raw(method, http, path, &params, &[], body.as_bytes());
            let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            (
                code,
                get("x-influxdb-build"),
                get("x-influxdb-version").is_some(),
                get("request-id").is_some_and(|v| v.len() == 36),
                get("request-id") == get("x-request-id"),
                get("x-influxdb-error"),
            )
        };
        let (theirs, mine) = (names(&real.http), names(&ours));
        if theirs != mine {
            differ.push(format!(
                "headers of {method} {path} {params:?}\n  influxd {theirs:?}\n  tsnode  {mine:?}"
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} answers differ:\n{}",
        differ.len(),
        cases.len() + 5,
        differ.join("\n")
    );
}

/// Chunked answers of raw points, which tsnode writes as it reads them (a
/// page at a time), against influxd's: every chunk, over pages, shard
/// groups, groups, limits and offsets, gzip-compressed too.
#[test]
fn chunked_answers_read_as_they_are_written_are_influxds() {
    let Some(real) = Influxd::start() else { return };
    let p = Procs::start(1, &[]);
    let ours = p.nodes[&p.leader()].http.clone();
    let body = format!("{POINTS}\n{}", common::differential::several_series(400));
    for http in [&real.http, &ours] {
        answer(http, "POST", &[("q", "CREATE DATABASE h")], None);
        let (code, _, text) =
            request_raw("POST", http, "/write", &[("db", "h")], &[], body.as_bytes());
        assert_eq!(code, 204, "{text}");
    }
    let statements = [
        "SELECT * FROM r WHERE host != ''",
        "SELECT * FROM r WHERE host != '' ORDER BY time DESC",
        "SELECT v, w FROM r GROUP BY host",
        "SELECT * FROM r GROUP BY *",
        "SELECT v FROM r GROUP BY dc, host ORDER BY time DESC",
        "SELECT v * 2 + w, host FROM r WHERE v > 10 OR s = 's9'",
        "SELECT * FROM r WHERE host = 'a' OR host = 'c'",
        "SELECT * FROM r WHERE host =~ /a|b/ AND v < 100 GROUP BY host",
        "SELECT * FROM r LIMIT 37 OFFSET 20",
        "SELECT * FROM r GROUP BY host LIMIT 25 OFFSET 3",
        "SELECT * FROM r GROUP BY host ORDER BY time DESC LIMIT 25 OFFSET 30",
        "SELECT * FROM r GROUP BY host SLIMIT 2 SOFFSET 1",
        "SELECT * FROM r WHERE time >= 100h AND time < 300h AND host != ''",
        "SELECT * FROM r, m GROUP BY host",
        "SELECT v FROM /^[mr]$/ ORDER BY time DESC",
        "SELECT count(v) FROM r; SELECT * FROM r WHERE host = 'b'",
        "SELECT * FROM nope",
        "SELECT * FROM r WHERE host = 'zz'",
    ];
    let mut differ = Vec::new();
    let mut n = 0;
    for q in statements {
        for size in ["3", "64", "10000", "whole"] {
            let mut params = vec![
                ("db", "h"),
                ("q", q),
                ("chunked", "true"),
                ("chunk_size", size),
            ];
            if size == "whole" {
                params.truncate(2);
            }
            let theirs = answer(&real.http, "POST", &params, None);
            let mine = answer(&ours, "POST", &params, None);
            n += 1;
            if theirs != mine {
                differ.push(format!(
                    "{q} by {size}\n  influxd {theirs:?}\n  tsnode  {mine:?}"
                ));
            }
        }
    }
    for (q, extra) in [
        (
            "SELECT * FROM r GROUP BY host",
            "&chunked=true&chunk_size=50",
        ),
        ("SELECT v FROM r WHERE host = 'a'", "&chunked=true&epoch=ms"),
        (
            "SELECT * FROM r GROUP BY host ORDER BY time DESC",
            "&chunked=true&chunk_size=7",
        ),
    ] {
        let (theirs, mine) = (
            gzip_answer_with(&real.http, q, true, extra),
            gzip_answer_with(&ours, q, true, extra),
        );
        n += 1;
        if theirs != mine {
            differ.push(format!(
                "gzip {q}{extra}\n  influxd {theirs:?}\n  tsnode  {mine:?}"
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {n} answers differ:\n{}",
        differ.len(),
        differ.join("\n")
    );
}
