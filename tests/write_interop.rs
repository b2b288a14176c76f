//! /write answered as a real influxd 1.6.7 answers it: precisions (`us`,
//! unknown ones), timestamps out of range, a `time` tag or field, CRLF
//! line ends, a newline inside a string field, bad lines among good ones,
//! a field given another type by another series; each answer compared,
//! and what was stored queried back from both.

mod common;

use common::differential::assert_same;
use common::http::request;
use common::influxd::Influxd;
use common::procs::Procs;

#[test]
fn writes_answer_as_influxd() {
    let Some(real) = Influxd::start() else { return };
    let p = Procs::start(1, &[]);
    let ours = p.nodes[&p.leader()].http.clone();
    for http in [&real.http, &ours] {
        request(
            "POST",
            http,
            "/query",
            &[("q", "CREATE DATABASE w")],
            &[],
            b"",
        );
    }
    let cases: Vec<(&str, &str, String)> = vec![
        ("a", "", "m v=1 1600000000000000000".into()),
        ("b", "us", "m v=2 1600000000000001".into()),
        ("c", "u", "m v=3 1600000000000002".into()),
        ("d", "ms", "m v=4 1600000000003".into()),
        ("e", "s", "m v=5 1600000004".into()),
        ("f", "m", "m v=6 26666667".into()),
        ("g", "h", "m v=7 444445".into()),
        ("h", "xs", "m v=8 1".into()),
        ("i", "n", "m v=9 9".into()),
        ("j", "ns", "m v=10 10".into()),
        ("k", "", "m v=1 9223372036854775807".into()),
        ("l", "", "m v=1 -9223372036854775808".into()),
        ("m", "", "m v=1 9223372036854775806".into()),
        ("n", "", "m v=1 -9223372036854775806".into()),
        ("o", "s", "m v=1 9223372036".into()),
        ("p", "s", "m v=1 9223372037".into()),
        ("q", "", "m,time=x v=1 1".into()),
        ("r", "", "m time=1 1".into()),
        ("s", "", "m v=1,time=2 2".into()),
        ("t", "", "m v=1 1\r\nm v=2 2\r\n".into()),
        ("u", "", "m s=\"a\nb\" 3".into()),
        ("v", "", "m v=1 1\nbad line\nm v=2 2\nworse".into()),
        ("w", "", "m v=1 1\n\n\n# comment\nm v=3 3\n".into()),
        ("x", "", "m v=1i 1\nm v=2 2".into()),
        ("y", "", "m v=1 1 extra".into()),
        ("z", "", "m,a=1,a=2 v=1 1".into()),
        // A field has one type per measurement in a shard group, whatever
        // the series: in one write, and in a later one (`ad` writes to
        // `ac`).
        ("aa", "", "m,h=a v=1 1\nm,h=b v=2i 2".into()),
        ("ab", "", "m,h=a v=1 1\nm,h=b v=true 1\nm,h=c v=3 1".into()),
        ("ac", "", "ac,h=a v=1 3".into()),
        ("ad", "", "ac,h=b v=2i 4\nac,h=c v=5 5".into()),
    ];
    let write = |http: &str, (db_m, precision, body): &(&str, &str, String)| {
        let mut params = vec![("db", "w")];
        if !precision.is_empty() {
            params.push(("precision", precision));
        }
        let body = body
            .replace("m ", &format!("{db_m} "))
            .replace("m,", &format!("{db_m},"));
        request("POST", http, "/write", &params, &[], body.as_bytes())
    };
    assert_same(&cases, |c| write(&real.http, c), |c| write(&ours, c));
    let reads: Vec<String> = cases
        .iter()
        .map(|(m, _, _)| format!("SELECT * FROM \"{m}\""))
        .collect();
    let ask = |http: &str, q: &String| {
        request(
            "POST",
            http,
            "/query",
            &[("db", "w"), ("q", q), ("epoch", "ns")],
            &[],
            b"",
        )
    };
    assert_same(&reads, |q| ask(&real.http, q), |q| ask(&ours, q));
}
