//! Bulk data by file, end to end on `tsnode` processes: `tsnode import`
//! stages TSM files, splits them at shard-group bounds and has every
//! replica link them in; bad files are refused before anything is
//! proposed; a replica that did not stage the files fetches them from
//! another holder when the proposer is gone.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::procs::Procs;
use raftsnap::tsdb::tsm::{TsmWriter, Values};

const SEC: i64 = 1_000_000_000;
const DAY: i64 = 86_400 * SEC;

/// (count, sum) of `v` in `m` on node `id`, or what it answered.
fn count_sum(p: &Procs, id: u64) -> Result<(i64, f64), String> {
    let v = p.query(id, "db", "SELECT count(v), sum(v) FROM m");
    let row = &v["results"][0]["series"][0]["values"][0];
    match (row[1].as_i64(), row[2].as_f64()) {
        (Some(c), Some(s)) => Ok((c, s)),
        _ => Err(v.to_string()),
    }
}

fn wait_all(p: &Procs, ids: &[u64], want: (i64, f64)) {
    for id in ids {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = count_sum(p, *id);
            if got.as_ref().ok() == Some(&want) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {id}: {got:?}, want {want:?}\n{}",
                p.log(*id)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A TSM file of `m,h=<tag>` field `v`: floats at `ts` (value = `f(t)`).
fn tsm(path: &Path, tag: &str, ts: &[i64], f: impl Fn(i64) -> f64) {
    let mut w = TsmWriter::create(path).unwrap();
    let key = format!("m,h={tag}#!~#v");
    w.write(&key, ts, &Values::Float(ts.iter().map(|t| f(*t)).collect()))
        .unwrap();
    w.finish().unwrap();
}

fn import(http: &str, path: &Path) -> (bool, String) {
    common::tsnode(&["import", "--host", http, "--db", "db"], path)
}

fn staged_sets(p: &Procs, id: u64) -> usize {
    let d = p.dir.path().join(format!("node{id}/tsdb.staging"));
    std::fs::read_dir(d).map_or(0, |r| r.count())
}

#[test]
fn imports_split_at_groups_overwrite_by_age_and_bad_files_change_nothing() {
    let p = Procs::start(3, &[]);
    let leader = p.leader();
    let follower = *p.nodes.keys().find(|i| **i != leader).unwrap();
    let all: Vec<u64> = p.nodes.keys().copied().collect();
    p.query(leader, "", "CREATE DATABASE db");
    // A point written before the import, at a time the file also holds.
    assert!(p.write(leader, "db", &format!("m,h=a v=1 {}\n", 10 * SEC)));
    wait_all(&p, &all, (1, 1.0));

    // 1000 points over 20 days: four 7-day shard groups of autogen
    // (influxd's weeks start on Mondays; 1969-12-29 is one).
    let dir = tempfile::tempdir().unwrap();
    let ts: Vec<i64> = (0..1000)
        .map(|i| 10 * SEC + i * (20 * DAY / 1000))
        .collect();
    tsm(
        &dir.path().join("000000001-000000001.tsm"),
        "a",
        &ts,
        |_| 2.0,
    );
    let (ok, out) = import(&p.nodes[&follower].http, dir.path());
    assert!(ok, "{out}");
    assert!(
        out.contains("1 file(s)") && out.contains("1000 values in 4 shard group(s)"),
        "{out}"
    );
    // The file's point at 10 s overwrote the older written one.
    wait_all(&p, &all, (1000, 2000.0));
    // A later write overwrites an ingested point.
    assert!(p.write(leader, "db", &format!("m,h=a v=5 {}\n", 10 * SEC)));
    wait_all(&p, &all, (1000, 2003.0));

    // A flipped byte inside a block: refused before proposing, nothing changes.
    let bad = tempfile::tempdir().unwrap();
    let f = bad.path().join("x.tsm");
    tsm(&f, "b", &[SEC, 2 * SEC, 3 * SEC], |t| t as f64);
    let mut b = std::fs::read(&f).unwrap();
    b[12] ^= 0x20;
    std::fs::write(&f, b).unwrap();
    let (ok, out) = import(&p.nodes[&leader].http, bad.path());
    assert!(!ok, "{out}");
    assert!(out.to_lowercase().contains("crc"), "{out}");

    // A field type conflict with the shard: refused, naming series and field.
    let conflict = tempfile::tempdir().unwrap();
    let mut w = TsmWriter::create(&conflict.path().join("c.tsm")).unwrap();
    w.write("m,h=a#!~#v", &[11 * SEC], &Values::Integer(vec![9]))
        .unwrap();
    w.finish().unwrap();
    let (ok, out) = import(&p.nodes[&follower].http, conflict.path());
    assert!(!ok, "{out}");
    assert!(
        out.contains("field type conflict: input field \"v\" on series \"m,h=a\" is type integer, already exists as type float"),
        "{out}"
    );
    // A database that does not exist.
    let o = Command::new(env!("CARGO_BIN_EXE_tsnode"))
        .args(["import", "--host", &p.nodes[&leader].http, "--db", "nope"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("database not found"),
        "{o:?}"
    );
    // The same file again: newer than the write, so its value is back.
    let (ok, out) = import(&p.nodes[&follower].http, dir.path());
    assert!(ok, "{out}");
    wait_all(&p, &all, (1000, 2000.0));
    std::thread::sleep(Duration::from_millis(200));
    for id in &all {
        assert_eq!(count_sum(&p, *id).unwrap(), (1000, 2000.0));
    }
    // Refused imports leave no staged set behind; applied ones are leased
    // (two imports of four shard groups each).
    for id in &all {
        assert!(
            staged_sets(&p, *id) <= 8,
            "node {id}: {} sets",
            staged_sets(&p, *id)
        );
    }
}

#[test]
fn a_replica_fetches_staged_files_from_another_holder_when_the_proposer_dies() {
    let mut p = Procs::start(3, &[]);
    let leader = p.leader();
    let others: Vec<u64> = p.nodes.keys().copied().filter(|i| *i != leader).collect();
    let (a, b) = (others[0], others[1]);
    p.query(leader, "", "CREATE DATABASE db");
    assert!(p.write(leader, "db", &format!("m,h=a v=1 {SEC}\n")));
    wait_all(&p, &[leader, a, b], (1, 1.0));

    // B is down while the files are staged: only the proposer and A hold them.
    p.kill(b);
    let dir = tempfile::tempdir().unwrap();
    let ts: Vec<i64> = (0..5000).map(|i| 2 * SEC + i * SEC).collect();
    tsm(&dir.path().join("1.tsm"), "z", &ts, |_| 3.0);
    let (ok, out) = import(&p.nodes[&leader].http, dir.path());
    assert!(ok, "{out}");
    wait_all(&p, &[leader, a], (5001, 15001.0));
    // The proposer dies right after the command committed; B comes back
    // and must get the files from A.
    p.kill(leader);
    p.spawn(b);
    p.wait_http(b);
    wait_all(&p, &[a, b], (5001, 15001.0));
    assert_eq!(
        staged_sets(&p, b),
        1,
        "B fetched the set into its staging area"
    );
    p.spawn(leader);
    p.wait_http(leader);
    wait_all(&p, &[leader, a, b], (5001, 15001.0));
}

#[test]
fn a_new_member_fetches_the_files_every_replica_holds_from_all_of_them() {
    let mut p = Procs::start(3, &[]);
    let leader = p.leader();
    p.query(leader, "", "CREATE DATABASE db");
    // Three files of random floats (about 0.7 MB each; a fourth would let
    // each replica merge them at its own time): ingested, they are the
    // same bytes on every replica.
    let dir = tempfile::tempdir().unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut want = (0i64, 0f64);
    for f in 0..3i64 {
        let ts: Vec<i64> = (0..180_000).map(|i| (f * 180_000 + i + 1) * SEC).collect();
        let vals: Vec<f64> = ts
            .iter()
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f64
            })
            .collect();
        want.0 += vals.len() as i64;
        want.1 += vals.iter().sum::<f64>();
        let mut w = TsmWriter::create(&dir.path().join(format!("{f}.tsm"))).unwrap();
        w.write(&format!("m,h={f}#!~#v"), &ts, &Values::Float(vals))
            .unwrap();
        w.finish().unwrap();
    }
    let (ok, out) = import(&p.nodes[&leader].http, dir.path());
    assert!(ok, "{out}");
    let ids: Vec<u64> = p.nodes.keys().copied().collect();
    wait_all(&p, &ids, want);
    for id in &ids {
        p.snapshot(*id);
    }
    let served = |p: &Procs| -> Vec<f64> {
        ids.iter()
            .map(|id| p.metric(*id, "raftsnap_snapshot_served_bytes_total"))
            .collect()
    };
    let before = served(&p);
    p.join(4, leader);
    wait_all(&p, &[4], want);
    let after = served(&p);
    for (i, id) in ids.iter().enumerate() {
        let mib = (after[i] - before[i]) / f64::from(1 << 20);
        assert!(
            mib >= 0.5,
            "node {id} served {mib:.2} MiB of the new member's install (all: {before:?} → {after:?})\n{}",
            p.log(4)
        );
    }
}
