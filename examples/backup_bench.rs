//! Backup and restore against tsnode and against a real `influxd` 1.6.7
//! holding the same points, same machine, one run:
//! - `influxd backup -portable` from tsnode vs from influxd;
//! - `tsnode backup` vs `influxd backup`, both from tsnode;
//! - restores of the same backup, 3 interleaved rounds, medians:
//!   `tsnode restore` into a 3-node tsnode (files staged, fetched by every
//!   replica, ingested by one raft command each; timed until every point
//!   is queryable on all 3 replicas) vs `influxd restore -portable` into
//!   influxd (timed until every point is queryable), with the peak RSS
//!   growth of each tsnode during its restores.
//!
//! `cargo run --release --example backup_bench -- [--points 2000000]`
//! (needs Debian's `influxdb` package; `cargo build --release` first so
//! `target/release/tsnode` exists).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::query;
use std::time::{Duration, Instant};

fn count(http: &str, db: &str) -> i64 {
    query(http, db, "SELECT count(v) FROM cpu")["results"][0]["series"][0]["values"][0][1]
        .as_i64()
        .unwrap_or(0)
}

fn run(cmd: &Path, args: &[&str], dir: &Path) -> Duration {
    let t = Instant::now();
    let o = Command::new(cmd).args(args).arg(dir).output().expect("run");
    assert!(
        o.status.success(),
        "{} {args:?}: {}",
        cmd.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    t.elapsed()
}

fn dir_bytes(d: &Path) -> u64 {
    std::fs::read_dir(d)
        .map(|r| {
            r.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    let points: u64 = common::arg("--points")
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let influxd = PathBuf::from("/usr/bin/influxd");
    let tsnode = common::tsnode_binary();
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();

    // A real influxd and a one-node tsnode.
    let (_real, ihttp, ibind) = common::start_influxd(&w.join("influxd"));
    let (ts_nodes, http, snap) = common::start_tsnodes(3, &w.join("tsnode"), &[]);
    let leader = common::leader_of(&http);
    let li = http.iter().position(|h| *h == leader).unwrap_or(0);
    let (thttp, tsnap) = (http[li].clone(), snap[li].clone());
    common::create_database_when_elected(&thttp, "bench");
    query(&ihttp, "", "CREATE DATABASE bench");

    // The same points into both: 100 series, one point a second each.
    let batch = 50_000u64;
    let mut i = 0u64;
    while i < points {
        let body = common::cpu_body(i, (i + batch).min(points), 100, true);
        for http in [&ihttp, &thttp] {
            let r = ureq::post(&format!("http://{http}/write"))
                .query("db", "bench")
                .send(&body);
            assert!(r.is_ok(), "write to {http}: {r:?}");
        }
        i += batch;
    }
    assert_eq!(count(&ihttp, "bench"), points as i64);
    assert_eq!(count(&thttp, "bench"), points as i64);
    println!("{points} points (2 fields each) in each server");

    let b = |name: &str| w.join(name);
    // Each backup three times into fresh directories; the first against a
    // server also flushes its cache. Reported: first and median.
    let rounds = |cmd: &Path, args: &[&str], name: &str| -> (f64, f64) {
        let mut ts: Vec<f64> = (0..3)
            .map(|r| {
                let d = b(&format!("{name}{r}"));
                run(cmd, args, &d).as_secs_f64()
            })
            .collect();
        let first = ts[0];
        ts.sort_by(f64::total_cmp);
        (first, ts[1])
    };
    let influx_from_real = rounds(
        &influxd,
        &["backup", "-portable", "-host", &ibind, "-db", "bench"],
        "a",
    );
    let influx_from_ts = rounds(
        &influxd,
        &["backup", "-portable", "-host", &tsnap, "-db", "bench"],
        "b",
    );
    let ts_from_ts = rounds(&tsnode, &["backup", "--host", &tsnap, "--db", "bench"], "c");
    let ts_from_real = rounds(&tsnode, &["backup", "--host", &ibind, "--db", "bench"], "d");
    let mib = |d: &str| dir_bytes(&b(&format!("{d}0"))) as f64 / (1 << 20) as f64;
    println!("backup: first run (server flushes its cache) / median of 3, directory size");
    for (label, (first, med), d) in [
        ("influxd backup from influxd", influx_from_real, "a"),
        ("influxd backup from tsnode ", influx_from_ts, "b"),
        ("tsnode backup  from tsnode ", ts_from_ts, "c"),
        ("tsnode backup  from influxd", ts_from_real, "d"),
    ] {
        println!(
            "  {label}: {first:>7.3} s / {med:>7.3} s  {:>7.1} MiB",
            mib(d)
        );
    }
    println!(
        "  ratio influxd backup, tsnode server / influxd server (median): {:.2}",
        influx_from_ts.1 / influx_from_real.1
    );
    println!(
        "  ratio from tsnode, tsnode backup / influxd backup (median): {:.2}",
        ts_from_ts.1 / influx_from_ts.1
    );
    let src = b("a0");
    // Restores of the same (influxd-made) backup, interleaved.
    let pids: Vec<u32> = ts_nodes.iter().map(|k| k.0.id()).collect();
    let rss = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .unwrap_or(0)
            * 1024
    };
    let (mut real_t, mut ts_t) = (Vec::new(), Vec::new());
    let mut growth = vec![0u64; pids.len()];
    for round in 0..3 {
        let newdb = format!("r{round}");
        let started = Instant::now();
        run(
            &influxd,
            &[
                "restore",
                "-portable",
                "-host",
                &ibind,
                "-db",
                "bench",
                "-newdb",
                &newdb,
            ],
            &src,
        );
        // influxd applies after its client returns: time until every point shows.
        let deadline = Instant::now() + Duration::from_secs(600);
        while count(&ihttp, &newdb) < points as i64 {
            assert!(Instant::now() < deadline, "influxd restore never completed");
            std::thread::sleep(Duration::from_millis(10));
        }
        real_t.push(started.elapsed().as_secs_f64());

        let before: Vec<u64> = pids.iter().map(|p| rss(*p)).collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (stop2, pids2) = (stop.clone(), pids.clone());
        let sampler = std::thread::spawn(move || {
            let mut peak = vec![0u64; pids2.len()];
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                for (i, p) in pids2.iter().enumerate() {
                    peak[i] = peak[i].max(rss(*p));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        });
        let started = Instant::now();
        run(
            &tsnode,
            &[
                "restore", "--host", &tsnap, "--db", "bench", "--newdb", &newdb,
            ],
            &src,
        );
        // The receiving node answered once it applied every shard's ingest;
        // the others are done once they applied as far (the ingest links the
        // files: the points are queryable from then on). Counted after.
        let applied = |h: &str| common::status(h)["applied_index"].as_u64().unwrap_or(0);
        let target = applied(&thttp);
        let deadline = Instant::now() + Duration::from_secs(600);
        for h in &http {
            while applied(h) < target {
                assert!(
                    Instant::now() < deadline,
                    "tsnode restore never applied on {h}"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        ts_t.push(started.elapsed().as_secs_f64());
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let peak = sampler.join().unwrap_or_default();
        for h in &http {
            assert_eq!(count(h, &newdb), points as i64, "restore incomplete on {h}");
        }
        for (i, (p, b)) in peak.iter().zip(&before).enumerate() {
            growth[i] = growth[i].max(p.saturating_sub(*b));
        }
        println!(
            "  round {round}: influxd {:.3} s, tsnode (all 3 replicas) {:.3} s",
            real_t[round], ts_t[round]
        );
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (rm, tm) = (med(&mut real_t), med(&mut ts_t));
    println!("restore of the same backup, median of 3 interleaved rounds:");
    println!("  influxd restore -portable into influxd, all points queryable : {rm:>8.3} s");
    println!("  tsnode restore into 3-node tsnode, queryable on all replicas : {tm:>8.3} s");
    println!("  ratio tsnode/influxd: {:.2}", tm / rm);
    println!(
        "  peak RSS growth per tsnode during the restores: {} MiB",
        growth
            .iter()
            .map(|g| format!("{:.1}", *g as f64 / (1 << 20) as f64))
            .collect::<Vec<_>>()
            .join(" / ")
    );
}
