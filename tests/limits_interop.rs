//! Request limits answered as a real influxd 1.6.7 answers them, the same
//! requests sent to both: a /write body over `max-body-size` (25 000 000
//! bytes by default) gets 413 and writes nothing, whether its length is
//! declared (refused before the body is sent, with `Expect:
//! 100-continue`) or it comes chunked; one of exactly that size is taken.

mod common;

use common::influxd::Influxd;
use common::procs::Procs;

/// (status, body) of a POST /write of `body` to `http`; `chunked` sends it
/// without a declared length.
fn post_write(http: &str, body: &[u8], chunked: bool) -> (u16, String) {
    let req = ureq::post(&format!("http://{http}/write"))
        .query("db", "db")
        .config()
        .http_status_as_error(false)
        .build();
    let r = if chunked {
        let mut reader = std::io::Cursor::new(body);
        req.send(ureq::SendBody::from_reader(&mut reader))
    } else {
        req.send(body)
    };
    let mut r = r.unwrap_or_else(|e| panic!("write of {} bytes to {http}: {e}", body.len()));
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().unwrap_or_default())
}

/// A request declaring `len` body bytes and asking `Expect: 100-continue`:
/// the status and body of the first final answer (no body is sent).
fn declared_only(http: &str, len: usize) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        s,
        "POST /write?db=db HTTP/1.1\r\nHost: {http}\r\nContent-Length: {len}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_string();
    (status, body)
}

fn count(http: &str) -> serde_json::Value {
    let mut r = ureq::post(&format!("http://{http}/query"))
        .query("db", "db")
        .query("q", "SELECT count(v) FROM m")
        .send_empty()
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    v["results"][0].clone()
}

#[test]
fn a_write_body_over_max_body_size_is_refused_as_influxd_refuses_it() {
    let Some(real) = Influxd::start() else { return };
    let p = Procs::start(1, &[]);
    p.leader();
    let ts = p.nodes[&1].http.clone();
    p.query(1, "", "CREATE DATABASE db");
    real.query("", "CREATE DATABASE db");
    // Distinct points (one per line), 25 000 000 bytes and one more.
    let mut body = Vec::with_capacity(25_000_100);
    let mut i = 0u64;
    while body.len() < 25_000_000 {
        body.extend_from_slice(
            format!("m,h=a v={i} {}\n", 1_600_000_000_000_000_000 + i).as_bytes(),
        );
        i += 1;
    }
    body.truncate(25_000_000);
    // The cut line may be partial: end the body on a whole line.
    let cut = body.iter().rposition(|b| *b == b'\n').unwrap() + 1;
    let mut exact = body[..cut].to_vec();
    exact.resize(25_000_000, b'\n');
    let mut over = exact.clone();
    over.push(b'\n');

    let refusal = (
        413,
        serde_json::json!({"error": "Request Entity Too Large"}),
    );
    for http in [real.http.as_str(), ts.as_str()] {
        let (status, text) = post_write(http, &over, true);
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!((status, json), refusal, "chunked to {http}: {text}");
        let (status, text) = declared_only(http, over.len());
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!((status, json), refusal, "declared to {http}: {text}");
    }
    assert_eq!(
        count(&ts),
        count(&real.http),
        "the refused body wrote nothing"
    );
    for http in [real.http.as_str(), ts.as_str()] {
        let (status, text) = post_write(http, &exact, false);
        assert_eq!(status, 204, "{http}: {text}");
    }
    assert_eq!(count(&ts), count(&real.http));
}
