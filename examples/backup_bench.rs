//! Backup and restore against tsnode and against a real `influxd` 1.6.7
//! holding the same points, same machine, one run:
//! - `influxd backup -portable` from tsnode vs from influxd;
//! - `tsnode backup` vs `influxd backup`, both from tsnode;
//! - restores of the same backup: `tsnode restore` into tsnode (through
//!   raft, confirmed applied) vs `influxd restore -portable` into influxd.
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
    let (_ts, http, snap) = common::start_tsnodes(1, &w.join("tsnode"), &[]);
    let (thttp, tsnap) = (http[0].clone(), snap[0].clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::post(&format!("http://{thttp}/query"))
        .query("q", "CREATE DATABASE bench")
        .send_empty()
        .is_err()
    {
        assert!(Instant::now() < deadline, "tsnode never elected itself");
        std::thread::sleep(Duration::from_millis(200));
    }
    query(&ihttp, "", "CREATE DATABASE bench");

    // The same points into both: 100 series, one point a second each.
    let base = 1_700_000_000_000_000_000i64;
    let batch = 50_000u64;
    let mut i = 0u64;
    while i < points {
        let body: String = (i..(i + batch).min(points))
            .map(|j| {
                format!(
                    "cpu,host=h{} v={},n={}i {}\n",
                    j % 100,
                    (j.wrapping_mul(2_654_435_761) % 1_000_003) as f64 / 7.0,
                    j,
                    base + (j / 100) as i64 * 1_000_000_000
                )
            })
            .collect();
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
    let t_ts_restore_src = b("a0");
    // Restores of the same (influxd-made) backup.
    let started = Instant::now();
    let t_real_restore = run(
        &influxd,
        &[
            "restore",
            "-portable",
            "-host",
            &ibind,
            "-db",
            "bench",
            "-newdb",
            "r1",
        ],
        &t_ts_restore_src,
    );
    // influxd applies after its client returns: time until every point shows.
    let deadline = Instant::now() + Duration::from_secs(600);
    while count(&ihttp, "r1") < points as i64 {
        assert!(Instant::now() < deadline, "influxd restore never completed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let t_real_restore_applied = started.elapsed();
    let t_ts_restore = run(
        &tsnode,
        &[
            "restore", "--host", &tsnap, "--db", "bench", "--newdb", "r1",
        ],
        &t_ts_restore_src,
    );
    assert_eq!(
        count(&thttp, "r1"),
        points as i64,
        "tsnode restore confirmed but incomplete"
    );
    println!("restore of the same backup:");
    println!(
        "  influxd restore into influxd, client returned                   : {:>8.3} s",
        t_real_restore.as_secs_f64()
    );
    println!(
        "  influxd restore into influxd, all points queryable              : {:>8.3} s",
        t_real_restore_applied.as_secs_f64()
    );
    println!(
        "  tsnode restore into tsnode (through raft, confirmed applied)     : {:>8.3} s",
        t_ts_restore.as_secs_f64()
    );
    println!(
        "  ratio tsnode/influxd: {:.2}",
        t_ts_restore.as_secs_f64() / t_real_restore_applied.as_secs_f64()
    );
}
