//! Numbers in query answers as a real influxd 1.6.7 writes them (Go's
//! encoding/json): whole floats without a fraction (`17835`, not
//! `17835.0`), in raw points and in aggregates. The same points are
//! written to both and the answers compared exactly.

mod common;

use common::influxd::Influxd;
use common::procs::Procs;

#[test]
fn whole_and_fractional_floats_are_written_as_influxd_writes_them() {
    let Some(real) = Influxd::start() else { return };
    let p = Procs::start(1, &[]);
    p.leader();
    p.query(1, "", "CREATE DATABASE db");
    real.query("", "CREATE DATABASE db");
    let body = "m v=1,w=1 1600000000000000000\n\
                m v=2.5,w=2 1600000000000000001\n\
                m v=17835,w=3 1600000000000000002\n\
                m v=-3,w=-4 1600000000000000003\n\
                n i=7i 1600000000000000000\n";
    real.write("db", body);
    assert!(p.write(1, "db", body));
    for q in [
        "SELECT v FROM m",
        "SELECT w FROM m",
        "SELECT * FROM m",
        "SELECT sum(v) FROM m",
        "SELECT sum(w) FROM m",
        "SELECT mean(v) FROM m",
        "SELECT mean(w) FROM m",
        "SELECT max(v) FROM m",
        "SELECT min(w) FROM m",
        "SELECT first(v) FROM m",
        "SELECT last(w) FROM m",
        "SELECT i FROM n",
    ] {
        let ts = ureq::post(&format!("http://{}/query", p.nodes[&1].http))
            .query("db", "db")
            .query("q", q)
            .query("epoch", "ns")
            .send_empty()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        let ts: serde_json::Value = serde_json::from_str(&ts).unwrap();
        assert_eq!(ts, real.query("db", q), "{q}");
    }
}

/// gzip bodies (Telegraf's default, `InfluxDBClient(gzip=True)`) and
/// influxd's answers to bad ones, compared with a real influxd.
#[test]
fn gzip_write_bodies_are_taken_and_bad_ones_refused_as_influxd_does() {
    use std::io::Write;
    let Some(real) = Influxd::start() else { return };
    let p = Procs::start(1, &[]);
    p.leader();
    p.query(1, "", "CREATE DATABASE db");
    real.query("", "CREATE DATABASE db");
    let gz = |b: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    let good = gz(b"m v=1 1600000000000000000\nm v=2 1600000000000000001\n");
    let mut bad_crc = gz(b"m v=3 1600000000000000002\n");
    let n = bad_crc.len();
    bad_crc[n - 8] ^= 0xff;
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("good", good.clone()),
        ("short", b"not gzip".to_vec()),
        ("not gzip", vec![b'x'; 100]),
        ("truncated", good[..20].to_vec()),
        ("bad checksum", bad_crc),
    ];
    let post = |http: &str, body: &[u8]| -> (u16, serde_json::Value) {
        let gzip = [("Content-Encoding", "gzip")];
        common::http::request("POST", http, "/write", &[("db", "db")], &gzip, body)
    };
    for (what, body) in &bodies {
        let want = post(&real.http, body);
        let got = post(&p.nodes[&1].http, body);
        assert_eq!(got, want, "{what}");
    }
    let q = "SELECT count(v) FROM m";
    let ts = p.query(1, "db", q);
    assert_eq!(ts["results"][0]["series"][0]["values"][0][1], 2, "{ts}");
    assert_eq!(
        ts["results"][0]["series"][0]["values"][0][1],
        real.query("db", q)["results"][0]["series"][0]["values"][0][1]
    );
}
