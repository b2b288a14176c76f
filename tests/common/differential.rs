//! Differential checks: the same requests sent to a real influxd and to
//! tsnode, every pair of answers compared.

use std::fmt::Debug;

/// Sends each case to influxd (`theirs`) and to tsnode (`mine`); panics
/// listing every case whose answers differ, with both answers.
pub fn assert_same<C: Debug, A: PartialEq + Debug>(
    cases: &[C],
    mut theirs: impl FnMut(&C) -> A,
    mut mine: impl FnMut(&C) -> A,
) {
    let mut differ = Vec::new();
    for c in cases {
        let (t, m) = (theirs(c), mine(c));
        if t != m {
            differ.push(format!("{c:?}\n  influxd {t:?}\n  tsnode  {m:?}"));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} answers differ:\n{}",
        differ.len(),
        cases.len(),
        differ.join("\n")
    );
}

/// Creates database `db` on each server and writes `points` to it (204
/// asserted): the same data on influxd and tsnode.
pub fn load(servers: &[&str], db: &str, points: &str) {
    for http in servers {
        let q = format!("CREATE DATABASE {db}");
        let (code, v) = super::http::request("POST", http, "/query", &[("q", &q)], &[], b"");
        assert_eq!(code, 200, "{http}: {v}");
        let (code, v) = super::http::request(
            "POST",
            http,
            "/write",
            &[("db", db)],
            &[],
            points.as_bytes(),
        );
        assert_eq!(code, 204, "{http}: {v}");
    }
}

/// Measurement `r` over `n` steps of 3 hours: series `host=a,dc=x` (float
/// `v`, integer `w`) at every step, `host=b,dc=x` (`v`) at every second,
/// `host=c` (string `s`, `w`) a nanosecond after every third, and one
/// without tags (`v`) at every seventh: several series with points at
/// equal times, tagged and not.
pub fn several_series(n: i64) -> String {
    let hour = 3_600_000_000_000i64;
    let mut text = String::new();
    for i in 0..n {
        let ts = i * 3 * hour;
        text.push_str(&format!("r,host=a,dc=x v={i}.5,w={i}i {ts}\n"));
        if i % 2 == 0 {
            text.push_str(&format!("r,host=b,dc=x v={} {ts}\n", -i));
        }
        if i % 3 == 0 {
            text.push_str(&format!("r,host=c s=\"s{i}\",w={}i {}\n", i * 2, ts + 1));
        }
        if i % 7 == 0 {
            text.push_str(&format!("r v={i} {ts}\n"));
        }
    }
    text
}
