//! Debian's real `influx` CLI 1.6.7 against a 3-node tsnode cluster: DDL,
//! INSERT (through a follower, forwarded to the leader), SHOW and SELECT.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::influxd::binary;
use common::procs::Procs;

fn influx(exe: &std::path::Path, http: &str, db: &str, q: &str) -> serde_json::Value {
    let (host, port) = http.rsplit_once(':').unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([
        "-host", host, "-port", port, "-format", "json", "-execute", q,
    ]);
    if !db.is_empty() {
        cmd.args(["-database", db]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "influx {q}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8_lossy(&out.stdout);
    if s.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("{q}: {e}: {s}"))
    }
}

#[test]
fn the_influx_cli_talks_to_a_tsnode_cluster() {
    let Some(exe) = binary("influx") else { return };
    let p = Procs::start(3, &[]);
    let leader = p.leader();
    let follower = *p.nodes.keys().find(|i| **i != leader).unwrap();
    let fh = p.nodes[&follower].http.clone();
    influx(&exe, &fh, "", "CREATE DATABASE clidb");
    for id in 1..=3u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let dbs = influx(&exe, &p.nodes[&id].http, "", "SHOW DATABASES");
            if dbs["results"][0]["series"][0]["values"] == serde_json::json!([["clidb"]]) {
                break;
            }
            assert!(Instant::now() < deadline, "node {id}: {dbs}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for i in 0..5i64 {
        influx(
            &exe,
            &fh,
            "clidb",
            &format!("INSERT cpu,host=h{i} v={i} {}", (i + 1) * 1_000_000_000),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = influx(
            &exe,
            &p.nodes[&leader].http,
            "clidb",
            "SELECT count(*) FROM cpu",
        );
        if c["results"][0]["series"][0]["values"][0][1] == 5 {
            assert_eq!(
                c["results"][0]["series"][0]["columns"],
                serde_json::json!(["time", "count_v"])
            );
            break;
        }
        assert!(Instant::now() < deadline, "{c}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let all = influx(&exe, &fh, "clidb", "SELECT * FROM cpu WHERE host = 'h3'");
    assert_eq!(
        all["results"][0]["series"][0]["values"],
        // A whole float, written as influxd writes it: 3, not 3.0.
        serde_json::json!([[4_000_000_000i64, "h3", 3]])
    );
}
