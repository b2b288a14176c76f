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
