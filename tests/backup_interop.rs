//! `tsnode backup` / `tsnode restore` and the snapshotter's restore side
//! against Debian's real InfluxDB 1.6.7 tools, on 3-node tsnode clusters:
//! - real influxd → `influxd backup -portable` → `tsnode restore`, and the
//!   same backup through `influxd restore -portable -host <tsnode>`: equal
//!   counts on every replica;
//! - `tsnode backup` → `influxd restore -portable` into a real influxd;
//! - `-start/-end` exports hold exactly the points in range (from
//!   `tsnode backup` and from `influxd backup` against tsnode);
//! - `--db/--newdb`, `--rp/--newrp` renames.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::influxd::{Influxd, portable};
use common::procs::Procs;

const BASE: i64 = 1_700_000_000_000_000_000;
const STEP: i64 = 600_000_000_000;
const N: i64 = 3000;

/// 3000 cpu points (float, int) and 3000 mem points (string, bool), one
/// every 10 minutes over ~3 weeks (several shard groups).
fn line_protocol(from: i64, to: i64) -> String {
    (from..to)
        .map(|i| {
            format!(
                "cpu,host=h{} v={}.5,n={i}i {t}\nmem,host=h{} s=\"s{}\",b={} {t}\n",
                i % 5,
                i,
                i % 3,
                i % 11,
                i % 2 == 0,
                t = BASE + i * STEP
            )
        })
        .collect()
}

fn tsnode(args: &[&str], dir: &Path) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_tsnode"))
        .args(args)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "tsnode {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn first_row(v: &serde_json::Value) -> Vec<serde_json::Value> {
    v["results"][0]["series"][0]["values"][0]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `SELECT count(v), sum(n) FROM <from>` and `count(s)` on mem, on node `id`.
fn counts(p: &Procs, id: u64, db: &str, rp: &str) -> (i64, i64, i64) {
    let from = |m: &str| {
        if rp.is_empty() {
            m.to_string()
        } else {
            format!("\"{rp}\".{m}")
        }
    };
    let a = first_row(&p.query(
        id,
        db,
        &format!("SELECT count(v), sum(n) FROM {}", from("cpu")),
    ));
    let b = first_row(&p.query(id, db, &format!("SELECT count(s) FROM {}", from("mem"))));
    let g = |r: &[serde_json::Value], i: usize| r.get(i).and_then(|v| v.as_i64()).unwrap_or(-1);
    (g(&a, 1), g(&a, 2), g(&b, 1))
}

fn wait_counts(p: &Procs, db: &str, rp: &str, want: (i64, i64, i64)) {
    for id in p.nodes.keys() {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = counts(p, *id, db, rp);
            if got == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {id}, {db}: counts {got:?}, want {want:?}\n{}",
                p.log(*id)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn real_counts(real: &Influxd, db: &str, want_cpu: usize) -> (i64, i64, i64) {
    real.rows(db, "SELECT v FROM cpu", want_cpu);
    let a = first_row(&real.query(db, "SELECT count(v), sum(n) FROM cpu"));
    let b = first_row(&real.query(db, "SELECT count(s) FROM mem"));
    let g = |r: &[serde_json::Value], i: usize| r.get(i).and_then(|v| v.as_i64()).unwrap_or(-1);
    (g(&a, 1), g(&a, 2), g(&b, 1))
}

fn expected(from: i64, to: i64) -> (i64, i64, i64) {
    (to - from, (from..to).sum(), to - from)
}

#[test]
fn real_influxd_backup_restores_into_a_tsnode_cluster_both_ways() {
    let Some(real) = Influxd::start() else { return };
    real.query("", "CREATE DATABASE src");
    real.write("src", &line_protocol(0, N));
    let bk = tempfile::tempdir().unwrap();
    real.backup(&["-db", "src"], bk.path());

    let p = Procs::start(3, &[]);
    let leader = p.leader();
    let follower = *p.nodes.keys().find(|i| **i != leader).unwrap();
    // tsnode restore, through a follower (the import and the values go
    // through raft to every replica).
    let out = tsnode(
        &[
            "restore",
            "--host",
            &p.nodes[&follower].snapshotter,
            "--db",
            "src",
        ],
        bk.path(),
    );
    assert!(out.contains("restore complete"), "{out}");
    assert!(out.contains(&format!("{} values applied", 4 * N)), "{out}");
    wait_counts(&p, "src", "", expected(0, N));
    // Every shard of the backup (several) was restored.
    let tars = std::fs::read_dir(bk.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tar.gz")
        })
        .count();
    assert!(tars >= 3, "{tars} shards");
    assert!(
        out.contains(&format!("restore complete: {tars} shard(s)")),
        "{out}"
    );

    // Real `influxd restore -portable -host <tsnode>` into a new name.
    portable(
        "restore",
        &p.nodes[&leader].snapshotter,
        &["-db", "src", "-newdb", "viainflux"],
        bk.path(),
        || p.log(leader),
    );
    wait_counts(&p, "viainflux", "", expected(0, N));

    // Restoring onto an existing database is refused and changes nothing.
    let o = Command::new(env!("CARGO_BIN_EXE_tsnode"))
        .args([
            "restore",
            "--host",
            &p.nodes[&leader].snapshotter,
            "--db",
            "src",
        ])
        .arg(bk.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("may already exist"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    wait_counts(&p, "src", "", expected(0, N));
}

#[test]
fn tsnode_backup_restores_into_real_influxd_with_exact_ranges_and_renames() {
    let Some(real) = Influxd::start() else { return };
    let p = Procs::start(3, &[]);
    let leader = p.leader();
    p.query(leader, "", "CREATE DATABASE src");
    let lp = line_protocol(0, N);
    for chunk in lp.lines().collect::<Vec<_>>().chunks(1000) {
        assert!(p.write(leader, "src", &(chunk.join("\n") + "\n")));
    }
    wait_counts(&p, "src", "", expected(0, N));
    let follower = *p.nodes.keys().find(|i| **i != leader).unwrap();
    let snap = p.nodes[&follower].snapshotter.clone();

    // Full backup through a follower → real influxd.
    let full = tempfile::tempdir().unwrap();
    let out = tsnode(&["backup", "--host", &snap], full.path());
    assert!(out.contains("backup complete"), "{out}");
    real.restore(&["-db", "src"], full.path());
    assert_eq!(real_counts(&real, "src", N as usize), expected(0, N));
    // `tsnode restore` into the real influxd too (which confirms nothing).
    let out = tsnode(
        &[
            "restore",
            "--host",
            &real.bind,
            "--db",
            "src",
            "--newdb",
            "viatsnode",
        ],
        full.path(),
    );
    assert!(out.contains("not confirmed"), "{out}");
    assert_eq!(real_counts(&real, "viatsnode", N as usize), expected(0, N));

    // --start/--end: exactly the points in [start, end], both ends included.
    let (a, b) = (1000i64, 1999i64);
    let t = |i: i64| {
        let ns = BASE + i * STEP;
        let secs = ns / 1_000_000_000;
        raftsnap::tsdb::timefmt::rfc3339_nano(secs * 1_000_000_000)
    };
    let ranged = tempfile::tempdir().unwrap();
    tsnode(
        &[
            "backup",
            "--host",
            &snap,
            "--db",
            "src",
            "--start",
            &t(a),
            "--end",
            &t(b),
        ],
        ranged.path(),
    );
    let manifest = std::fs::read_dir(ranged.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "manifest"))
        .unwrap();
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    assert_eq!(m["limited"], true);
    real.restore(&["-db", "src", "-newdb", "ranged"], ranged.path());
    assert_eq!(real_counts(&real, "ranged", 1000), expected(a, b + 1));
    let r = first_row(&real.query("ranged", "SELECT min(n), max(n) FROM cpu"));
    assert_eq!((r[1].as_i64(), r[2].as_i64()), (Some(a), Some(b)));

    // The same range through real `influxd backup -start -end` against
    // tsnode: tsnode exports exactly the range too (influxd would ship
    // whole blocks).
    let viainflux = tempfile::tempdir().unwrap();
    portable(
        "backup",
        &snap,
        &["-db", "src", "-start", &t(a), "-end", &t(b)],
        viainflux.path(),
        || p.log(follower),
    );
    real.restore(&["-db", "src", "-newdb", "ranged2"], viainflux.path());
    assert_eq!(real_counts(&real, "ranged2", 1000), expected(a, b + 1));

    // `-since` compares file modification times (as InfluxDB): an hour ago
    // takes every file written by this test, an hour ahead none.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let at = |secs: i64| raftsnap::tsdb::timefmt::rfc3339_nano(secs * 1_000_000_000);
    for (since, newdb, want) in [
        (now - 3600, "since_past", N),
        (now + 3600, "since_future", 0),
    ] {
        let d = tempfile::tempdir().unwrap();
        tsnode(
            &[
                "backup",
                "--host",
                &snap,
                "--db",
                "src",
                "--since",
                &at(since),
            ],
            d.path(),
        );
        real.restore(&["-db", "src", "-newdb", newdb], d.path());
        if want > 0 {
            assert_eq!(real_counts(&real, newdb, want as usize), expected(0, want));
        } else {
            let q = real.query(newdb, "SELECT count(v) FROM cpu");
            assert!(q["results"][0]["series"].is_null(), "{q}");
        }
    }

    // Renames into tsnode: --db/--newdb with --rp/--newrp.
    let out = tsnode(
        &[
            "restore", "--host", &snap, "--db", "src", "--newdb", "copy", "--rp", "autogen",
            "--newrp", "kept",
        ],
        full.path(),
    );
    assert!(out.contains("restore complete"), "{out}");
    wait_counts(&p, "copy", "kept", expected(0, N));
    let rps = p.query(leader, "", "SHOW RETENTION POLICIES ON copy");
    assert!(rps.to_string().contains("\"kept\""), "{rps}");
    assert!(!rps.to_string().contains("\"autogen\""), "{rps}");
    // The source is untouched.
    assert_eq!(counts(&p, leader, "src", ""), expected(0, N));
}
