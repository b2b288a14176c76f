//! Deletes against tsnode and against a real `influxd` 1.6.7 holding the
//! same points, same machine, one run: for each round a fresh database gets
//! the same points in both (flushed into TSM files), then the same
//! statements are timed on both (the answer of a 3-node tsnode comes once
//! the command is committed and applied by the node that answers):
//! - `DROP SERIES` of one series out of all (a key in every TSM file);
//! - `DELETE` of the older half of every series.
//!
//! Both then answer `SELECT count(v) … GROUP BY host` the same (checked).
//! Medians over interleaved rounds, and the ratio tsnode ÷ influxd.
//!
//! `cargo run --release --example delete_bench -- [--points 4000000]
//! [--series 1000] [--rounds 3]` (needs Debian's `influxdb` package; `cargo
//! build --release` first so `target/release/tsnode` exists;
//! `TSNODE_BIN=<path>` benches another build).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::query;

fn write_all(agent: &ureq::Agent, http: &str, db: &str, points: u64, series: u64) {
    let batch = 50_000u64;
    let mut i = 0u64;
    while i < points {
        let body = common::cpu_body(i, (i + batch).min(points), series, false);
        let r = agent
            .post(&format!("http://{http}/write"))
            .query("db", db)
            .send(&body)
            .expect("write");
        assert_eq!(r.status(), 204, "write to {http}");
        i += batch;
    }
}

fn timed(http: &str, db: &str, q: &str) -> Duration {
    let t = Instant::now();
    let v = query(http, db, q);
    let d = t.elapsed();
    assert!(v["results"][0].get("error").is_none(), "{http}: {q}: {v}");
    d
}

fn counts(http: &str, db: &str) -> serde_json::Value {
    let v = query(http, db, "SELECT count(v) FROM cpu GROUP BY host");
    v["results"][0]["series"].clone()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let points: u64 = common::arg("--points")
        .and_then(|v| v.parse().ok())
        .unwrap_or(4_000_000);
    let series: u64 = common::arg("--series")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rounds: usize = common::arg("--rounds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let (_real, ihttp, ibind) = common::start_influxd(&w.join("influxd"));
    let (_nodes, http, _) = common::start_tsnodes(3, &w.join("tsnode"), &[]);
    let leader = common::leader_of(&http);
    common::create_database_when_elected(&leader, "warmup");
    let agent = common::keep_alive_agent();
    let per_series = points / series;
    let half = 1_700_000_000_000_000_000i64 + (per_series / 2) as i64 * 1_000_000_000;
    let statements = [
        "DROP SERIES FROM cpu WHERE host = 'h7'".to_string(),
        format!("DELETE FROM cpu WHERE time < {half}"),
    ];
    let mut times: Vec<[Vec<f64>; 2]> = vec![[Vec::new(), Vec::new()]; statements.len()];
    println!(
        "{points} points, {series} series; tsnode {}",
        common::tsnode_binary().display()
    );
    for round in 0..rounds {
        let db = format!("r{round}");
        query(&ihttp, "", &format!("CREATE DATABASE {db}"));
        query(&leader, "", &format!("CREATE DATABASE {db}"));
        write_all(&agent, &ihttp, &db, points, series);
        write_all(&agent, &leader, &db, points, series);
        // Into TSM files: influxd writes its cache out for a backup; tsnode
        // flushes for a snapshot (every node).
        let scratch = w.join(format!("flush-{round}"));
        let o = Command::new("/usr/bin/influxd")
            .args(["backup", "-portable", "-host", &ibind, "-db", &db])
            .arg(&scratch)
            .output()
            .expect("influxd backup");
        assert!(o.status.success(), "influxd backup failed");
        for h in &http {
            let r = agent
                .post(&format!("http://{h}/snapshot"))
                .send_empty()
                .expect("snapshot");
            assert!(r.status().is_success(), "snapshot of {h}");
        }
        // Let both settle (influxd compacts what it flushed; tsnode merges).
        std::thread::sleep(Duration::from_secs(5));
        let _ = std::fs::remove_dir_all(&scratch);
        // Interleaved: which goes first alternates.
        for (i, q) in statements.iter().enumerate() {
            let order: [(usize, &str); 2] = if round % 2 == 0 {
                [(0, &ihttp), (1, &leader)]
            } else {
                [(1, &leader), (0, &ihttp)]
            };
            for (who, h) in order {
                let d = timed(h, &db, q);
                times[i][who].push(d.as_secs_f64());
            }
        }
        let (a, b) = (counts(&ihttp, &db), counts(&leader, &db));
        assert_eq!(a, b, "answers after the deletes differ");
        for h in &http {
            let mut tries = 0;
            while counts(h, &db) != a {
                tries += 1;
                assert!(tries < 300, "{h} never agreed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        println!("round {} done", round + 1);
        query(&ihttp, "", &format!("DROP DATABASE {db}"));
        query(&leader, "", &format!("DROP DATABASE {db}"));
    }
    println!();
    println!(
        "{:<48} {:>10} {:>10} {:>7}",
        "statement", "influxd", "tsnode", "ratio"
    );
    for (q, t) in statements.iter().zip(&times) {
        let (i, n) = (median(t[0].clone()), median(t[1].clone()));
        let rounds_of = |v: &Vec<f64>| {
            v.iter()
                .map(|x| format!("{x:.3}"))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        println!("{q:<48} {i:>9.3}s {n:>9.3}s {:>7.2}", n / i);
        println!(
            "    rounds: influxd {} s; tsnode {} s",
            rounds_of(&t[0]),
            rounds_of(&t[1])
        );
    }
}
