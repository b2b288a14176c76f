//! `tz('…')` answered as a real influxd 1.6.7 answers: `GROUP BY time`
//! windows at the zone's local midnight (and hours) across the days its
//! offset changes, every `fill`, times written in the zone (`-05:00`, `Z`
//! for UTC), wall-clock times in the condition read in the zone, and
//! influxd's errors for a bad `tz()`. The same points go to both.

mod common;

use common::differential::{assert_same, load};
use common::influxd::Influxd;
use common::procs::Procs;

/// Two series every 30 minutes for four days around New York's and
/// Europe's changes in March and October 2020 and Lord Howe's half-hour
/// change in April.
fn points() -> String {
    let mut out = String::new();
    // 2020-03-06, 2020-10-30, 2020-04-03 (00:00 UTC), in seconds.
    for start in [1_583_452_800i64, 1_604_016_000, 1_585_872_000] {
        for i in 0..4 * 48 {
            let t = (start + i * 1800) * 1_000_000_000;
            out.push_str(&format!("m,h=a v={} {t}\n", (i % 17) as f64 + 0.5));
            if i % 3 == 0 {
                out.push_str(&format!("m,h=b v={i} {t}\n"));
            }
        }
    }
    out
}

#[test]
fn time_zones_answer_as_influxd() {
    let Some(real) = Influxd::start() else { return };
    let p = Procs::start(1, &[]);
    let ours = p.nodes[&p.leader()].http.clone();
    load(&[&real.http, &ours], "tz", &points());
    let march = "time >= '2020-03-07T00:00:00Z' AND time < '2020-03-10T00:00:00Z'";
    let october = "time >= '2020-10-31T00:00:00Z' AND time < '2020-11-03T00:00:00Z'";
    let april = "time >= '2020-04-04T00:00:00Z' AND time < '2020-04-06T00:00:00Z'";
    let ny = "tz('America/New_York')";
    let mut queries: Vec<String> = Vec::new();
    for range in [march, october] {
        for zone in [ny, "tz('Europe/Berlin')", "tz('UTC')", "tz('Asia/Kolkata')"] {
            queries.push(format!(
                "SELECT count(v) FROM m WHERE {range} GROUP BY time(1d) {zone}"
            ));
            queries.push(format!(
                "SELECT mean(v), max(v) FROM m WHERE {range} GROUP BY time(6h), h {zone}"
            ));
        }
        queries.push(format!(
            "SELECT count(v) FROM m WHERE {range} GROUP BY time(1h) fill(0) {ny}"
        ));
        queries.push(format!(
            "SELECT sum(v) FROM m WHERE {range} GROUP BY time(12h, 3h) {ny}"
        ));
        queries.push(format!(
            "SELECT last(v) FROM m WHERE {range} AND h = 'b' GROUP BY time(1d) fill(previous) {ny}"
        ));
        queries.push(format!(
            "SELECT mean(v) FROM m WHERE {range} GROUP BY time(1d) fill(none) {ny}"
        ));
        queries.push(format!(
            "SELECT derivative(mean(v), 1h) FROM m WHERE {range} GROUP BY time(1d) {ny}"
        ));
        queries.push(format!(
            "SELECT max(v) FROM m WHERE {range} GROUP BY time(1d) ORDER BY time DESC {ny}"
        ));
        queries.push(format!(
            "SELECT top(v, 2) FROM m WHERE {range} GROUP BY time(1d) {ny}"
        ));
        queries.push(format!(
            "SELECT distinct(v) FROM m WHERE {range} AND h = 'b' GROUP BY time(1d) {ny}"
        ));
    }
    queries.extend([
        format!("SELECT count(v) FROM m WHERE {april} GROUP BY time(1d) tz('Australia/Lord_Howe')"),
        format!("SELECT count(v) FROM m WHERE {april} GROUP BY time(1h) tz('Australia/Lord_Howe')"),
        format!("SELECT count(v) FROM m WHERE {april} GROUP BY time(30m) LIMIT 8 tz('Australia/Lord_Howe')"),
        // Wall-clock times of the zone in the condition.
        format!("SELECT count(v) FROM m WHERE time >= '2020-03-08 00:00:00' AND time < '2020-03-08 06:00:00' GROUP BY time(1h) {ny}"),
        format!("SELECT count(v) FROM m WHERE time >= '2020-11-01' AND time < '2020-11-02' {ny}"),
        format!("SELECT v FROM m WHERE time >= '2020-11-01 01:00:00' AND h = 'b' LIMIT 3 {ny}"),
        // Raw points and selectors at their own times, in the zone.
        "SELECT v FROM m WHERE h = 'b' LIMIT 3 tz('Asia/Kolkata')".into(),
        format!("SELECT * FROM m WHERE {october} ORDER BY time DESC LIMIT 3 {ny}"),
        format!("SELECT max(v) FROM m WHERE {march} {ny}"),
        format!("SELECT max(v) FROM m WHERE {march} tz('UTC')"),
        format!("SELECT count(v) FROM m WHERE {march} {ny}"),
        format!("SELECT count(v) FROM m WHERE {march} GROUP BY time(1d) SLIMIT 1 {ny}"),
        // Errors.
        "SELECT count(v) FROM m tz('Foo/Bar')".into(),
        "SELECT count(v) FROM m tz(1)".into(),
        "SELECT count(v) FROM m tz('UTC', 'UTC')".into(),
        "SELECT count(v) FROM m tz()".into(),
        "SELECT count(v) FROM m tz".into(),
        "SELECT count(v) FROM m tz('america/new_york')".into(),
    ]);
    for epoch in [None, Some("ns")] {
        let ask = |http: &str, q: &String| {
            let mut params = vec![("db", "tz"), ("q", q.as_str())];
            if let Some(e) = epoch {
                params.push(("epoch", e));
            }
            common::http::request("POST", http, "/query", &params, &[], b"")
        };
        assert_same(&queries, |q| ask(&real.http, q), |q| ask(&ours, q));
    }
}
