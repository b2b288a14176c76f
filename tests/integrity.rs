//! Integrity end to end, with real `tsnode serve` processes: a byte flipped
//! in a snapshot or live TSM file is found (by a follower's install, by the
//! scrub, at startup), the damaged copy is never served, and the node heals
//! from a sound snapshot without a hand wipe.

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::procs::Procs;

const POINTS_PER_BATCH: u64 = 200;

fn batch(b: u64) -> String {
    (0..POINTS_PER_BATCH)
        .map(|i| {
            format!(
                "m,host=h{} v={i} {}\n",
                i % 4,
                (b * POINTS_PER_BATCH + i + 1) * 1_000_000_000
            )
        })
        .collect()
}

/// (count, sum) of `v` through node `id`, or the error it answered.
fn count_sum(p: &Procs, id: u64) -> Result<(i64, f64), String> {
    count_sum_at(&p.nodes[&id].http)
}

/// (count, sum) of `v` through the node at `http`, or what it answered.
fn count_sum_at(http: &str) -> Result<(i64, f64), String> {
    let r = ureq::post(&format!("http://{http}/query"))
        .query("db", "db")
        .query("q", "SELECT count(v), sum(v) FROM m")
        .config()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .send_empty();
    let text = match r {
        Ok(mut r) => r.body_mut().read_to_string().unwrap_or_default(),
        Err(e) => return Err(e.to_string()),
    };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    let row = &v["results"][0]["series"][0]["values"][0];
    match (row[1].as_i64(), row[2].as_f64()) {
        (Some(c), Some(s)) => Ok((c, s)),
        _ => Err(text),
    }
}

fn expected(batches: u64) -> (i64, f64) {
    let per: u64 = (0..POINTS_PER_BATCH).sum();
    ((batches * POINTS_PER_BATCH) as i64, (batches * per) as f64)
}

/// TSM files under `dir` (recursively), largest first.
fn tsm_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "tsm") {
                out.push(p);
            }
        }
    }
    out.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).map_or(0, |m| m.len())));
    out
}

/// Flips one byte in the first data block of `path` (in place: every hard
/// link to it sees the change): reads of that block fail their CRC.
fn flip(path: &Path) {
    flip_at(path, 40); // past the 5-byte header and the block's CRC
}

/// Flips one byte of `path`'s index, which a running node read when it
/// opened the file: its queries still answer right, only a re-read of the
/// whole file (the scrub) sees the damage.
fn flip_index(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len();
    flip_at(path, len - 12); // the last index entry, before the footer
}

fn flip_at(path: &Path, at: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x5a;
    f.write_all_at(&b, at).unwrap();
    f.sync_all().unwrap();
}

fn node_dir(p: &Procs, id: u64) -> PathBuf {
    p.dir.path().join(format!("node{id}"))
}

fn live_tsm(p: &Procs, id: u64) -> Vec<PathBuf> {
    tsm_files(&node_dir(p, id))
        .into_iter()
        .filter(|f| !f.components().any(|c| c.as_os_str() == "snapshots"))
        .collect()
}

fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool, ctx: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "{what} within {secs} s\n{}",
            ctx()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Queries node `id` in a loop until stopped; counts the answers that were
/// neither the expected one nor an error (a damaged value served).
struct Watcher {
    stop: Arc<AtomicBool>,
    wrong: Arc<AtomicU64>,
    answers: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    fn start(http: String, want: (i64, f64)) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let wrong = Arc::new(AtomicU64::new(0));
        let answers = Arc::new(AtomicU64::new(0));
        let (s, w, a) = (stop.clone(), wrong.clone(), answers.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                // An error (a damaged block refused) is fine; a count or
                // sum other than the one written is not.
                if let Ok(got) = count_sum_at(&http) {
                    a.fetch_add(1, Ordering::Relaxed);
                    if got != want {
                        eprintln!("a wrong answer: {got:?}");
                        w.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self {
            stop,
            wrong,
            answers,
            handle: Some(handle),
        }
    }

    /// Stops; (wrong answers, right answers).
    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        (
            self.wrong.load(Ordering::Relaxed),
            self.answers.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn write_batches(p: &Procs, via: u64, range: std::ops::Range<u64>) {
    for b in range {
        assert!(p.write(via, "db", &batch(b)), "{}", p.log(via));
    }
}

fn wait_compacted_past(p: &Procs, id: u64, index: u64) {
    wait_for(
        "the leader compacts its log",
        20,
        || p.status(id).unwrap()["first_log_index"].as_u64().unwrap() > index,
        || format!("{:?}", p.status(id)),
    );
}

#[test]
fn a_corrupt_file_in_the_leaders_snapshot_heals_instead_of_looping() {
    let mut p = Procs::start(3, &["--snapshot-log-gap", "100000", "--trailing-logs", "0"]);
    let leader = p.leader();
    p.query(leader, "", "CREATE DATABASE db");
    let lagging = *p.nodes.keys().find(|i| **i != leader).unwrap();
    p.kill(lagging);
    write_batches(&p, leader, 0..20);
    // The live file is flipped after one save and before the next: the next
    // save links the same (damaged) file with the crc32c it was written with.
    let first = p.snapshot(leader)["index"].as_u64().unwrap();
    let live = live_tsm(&p, leader);
    assert!(!live.is_empty(), "no TSM file on the leader");
    flip(&live[0]);
    write_batches(&p, leader, 20..30);
    let snap = p.snapshot(leader)["index"].as_u64().unwrap();
    assert!(snap > first);
    wait_compacted_past(&p, leader, first);
    let total = p.status(leader).unwrap()["snapshot"]["bytes"]
        .as_u64()
        .unwrap();

    let started = Instant::now();
    p.spawn(lagging);
    p.wait_http(lagging);
    let want = expected(30);
    wait_for(
        "the lagging follower catches up",
        30,
        || count_sum(&p, lagging) == Ok(want),
        || {
            format!(
                "{:?}\n{:?}\n--- leader\n{}\n--- follower\n{}",
                p.status(leader),
                p.status(lagging),
                p.log(leader),
                p.log(lagging)
            )
        },
    );
    let took = started.elapsed();
    let fst = p.status(lagging).unwrap();
    let fetched = fst["snapshot"]["install_bytes_total"].as_u64().unwrap();
    eprintln!("caught up in {took:?}, fetching {fetched} bytes for a {total}-byte snapshot");
    assert!(
        fetched < 3 * total,
        "fetched {fetched} bytes for a {total}-byte snapshot"
    );
    let lst = p.status(leader).unwrap();
    let broken = &lst["repair"]["broken_snapshots"];
    assert!(
        broken
            .as_array()
            .is_some_and(|b| b.iter().any(|s| s["index"].as_u64() == Some(snap))),
        "the leader's /status does not name snapshot {snap}: {lst}"
    );
    assert!(
        lst["repair"]["repairs_total"].as_u64().unwrap() >= 1,
        "{lst}"
    );
    let broken_dir = node_dir(&p, leader)
        .join("snapshots")
        .join(format!("snapshot_{snap:020}.broken"));
    assert!(broken_dir.exists(), "{} missing", broken_dir.display());
    for id in 1..=3 {
        assert_eq!(count_sum(&p, id), Ok(want), "node {id}");
    }
}

/// A byte flipped in a live TSM file of node `victim` (a follower or the
/// leader) is found by the scrub and repaired from a replica; no query
/// answers a wrong value meanwhile. (The byte is in the file's index, which
/// only the scrub re-reads; a damaged block met by a query is the test
/// below.)
fn scrub_repairs(victim_is_leader: bool) {
    let log = std::env::var("INTEGRITY_LOG").unwrap_or_else(|_| "warn".into());
    let p = Procs::start_env(
        3,
        &[
            "--snapshot-log-gap",
            "100000",
            "--trailing-logs",
            "0",
            "--scrub-interval",
            "2s",
        ],
        &[("RUST_LOG", log.as_str())],
    );
    let leader = p.leader();
    p.query(leader, "", "CREATE DATABASE db");
    write_batches(&p, leader, 0..30);
    let victim = if victim_is_leader {
        leader
    } else {
        *p.nodes.keys().find(|i| **i != leader).unwrap()
    };
    // Live TSM files on every node (a save flushes the caches).
    for id in 1..=3 {
        p.snapshot(id);
    }
    let want = expected(30);
    assert_eq!(count_sum(&p, victim), Ok(want));
    let watch = Watcher::start(p.nodes[&victim].http.clone(), want);
    let live = live_tsm(&p, victim);
    assert!(!live.is_empty(), "no live TSM file on node {victim}");
    flip_index(&live[0]);
    wait_for(
        "the scrub finds the file and the node repairs it",
        60,
        || repairs(&p, victim) >= 1,
        || format!("{:?}\n{}", p.status(victim), p.log(victim)),
    );
    let (wrong, right) = watch.finish();
    // Still writable and consistent afterwards.
    write_batches(&p, leader, 30..35);
    let want = expected(35);
    wait_for(
        "every node answers the same count and sum",
        30,
        || (1..=3).all(|id| count_sum(&p, id) == Ok(want)),
        || {
            (1..=3)
                .map(|id| format!("node {id}: {:?}", count_sum(&p, id)))
                .collect::<Vec<_>>()
                .join("\n")
        },
    );
    assert_eq!(wrong, 0, "{wrong} answers carried the damaged value");
    assert!(right > 0, "the watcher never got an answer");
    let st = p.status(victim).unwrap();
    assert!(
        st["scrub"]["corrupt_files_total"].as_u64().unwrap() >= 1,
        "{st}"
    );
    assert!(st["scrub"]["bytes_total"].as_u64().unwrap() > 0, "{st}");
    // The repaired node's new files are sound: a later pass finds nothing.
    let passes = st["scrub"]["passes_total"].as_u64().unwrap();
    wait_for(
        "a later scrub pass",
        30,
        || {
            // A status request may time out while the node is busy.
            p.status(victim)
                .and_then(|s| s["scrub"]["passes_total"].as_u64())
                .is_some_and(|n| n > passes + 1)
        },
        String::new,
    );
    let st = p.status(victim).unwrap();
    assert_eq!(
        st["scrub"]["last"]["findings"].as_array().map(Vec::len),
        Some(0),
        "{st}"
    );
}

#[test]
fn the_scrub_finds_a_damaged_live_file_on_a_follower_and_it_is_repaired() {
    scrub_repairs(false);
}

#[test]
fn the_scrub_finds_a_damaged_live_file_on_the_leader_and_it_is_repaired() {
    scrub_repairs(true);
}

#[test]
fn a_leader_whose_latest_snapshot_is_corrupt_restarts_and_serves() {
    let mut p = Procs::start(3, &["--snapshot-log-gap", "100000", "--trailing-logs", "0"]);
    let leader = p.leader();
    p.query(leader, "", "CREATE DATABASE db");
    write_batches(&p, leader, 0..20);
    let snap = p.snapshot(leader)["index"].as_u64().unwrap();
    wait_compacted_past(&p, leader, snap - 1);
    let in_snapshot = tsm_files(&node_dir(&p, leader).join("snapshots"));
    assert!(!in_snapshot.is_empty());
    flip(&in_snapshot[0]);
    p.kill(leader);
    write_batches(&p, p.leader(), 20..25);
    p.spawn(leader);
    p.wait_http(leader);
    let want = expected(25);
    wait_for(
        "the restarted node serves every point",
        60,
        || count_sum(&p, leader) == Ok(want),
        || format!("{:?}\n{}", p.status(leader), p.log(leader)),
    );
    let log = p.log(leader);
    assert!(log.contains("failed verification at startup"), "{log}");
    let broken = node_dir(&p, leader)
        .join("snapshots")
        .join(format!("snapshot_{snap:020}.broken"));
    assert!(broken.exists(), "{} missing", broken.display());
    for id in 1..=3 {
        assert_eq!(count_sum(&p, id), Ok(want), "node {id}");
    }
}

/// A 3-node cluster holding `batches` batches, saved on every node (so
/// every node has live TSM files), with the first live TSM file of a
/// follower damaged in a data block: (cluster, that follower, the file).
fn damaged_follower(batches: u64) -> (Procs, u64, PathBuf) {
    let p = Procs::start(3, &["--snapshot-log-gap", "100000", "--trailing-logs", "0"]);
    let leader = p.leader();
    p.query(leader, "", "CREATE DATABASE db");
    write_batches(&p, leader, 0..batches);
    let victim = *p.nodes.keys().find(|i| **i != leader).unwrap();
    for id in 1..=3 {
        p.snapshot(id);
    }
    let live = live_tsm(&p, victim);
    assert!(!live.is_empty(), "no live TSM file on node {victim}");
    flip(&live[0]);
    (p, victim, live[0].clone())
}

fn repairs(p: &Procs, id: u64) -> u64 {
    p.status(id)
        .map_or(0, |s| s["repair"]["repairs_total"].as_u64().unwrap_or(0))
}

/// `tsnode backup --db db` of node `id` into `dir`: (success, output).
fn backup(p: &Procs, id: u64, dir: &Path) -> (bool, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_tsnode"))
        .args(["backup", "--host", &p.nodes[&id].snapshotter, "--db", "db"])
        .arg(dir)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

#[test]
fn a_backup_refuses_a_damaged_shard_file_and_the_node_repairs_it() {
    let (p, victim, file) = damaged_follower(10);
    let out = tempfile::tempdir().unwrap();
    let (ok, text) = backup(&p, victim, &out.path().join("bk"));
    assert!(!ok, "the backup of a damaged shard succeeded: {text}");
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    wait_for(
        "the node names the damaged file and repairs it",
        30,
        || p.log(victim).contains(&name) && repairs(&p, victim) >= 1,
        || format!("{text}\n{:?}\n{}", p.status(victim), p.log(victim)),
    );
    // Once repaired, the same backup works and holds every point.
    let (ok, text) = backup(&p, victim, &out.path().join("bk2"));
    assert!(ok, "{text}");
    assert_eq!(count_sum(&p, victim), Ok(expected(10)));
}

#[test]
fn a_query_that_meets_a_damaged_block_answers_an_error_and_the_node_repairs_it() {
    let (p, victim, _) = damaged_follower(10);
    let first = count_sum(&p, victim);
    assert!(
        first.as_ref().is_err_and(|e| e.contains("CRC")),
        "a damaged block was answered: {first:?}"
    );
    wait_for(
        "the node repairs itself after the failed query",
        30,
        || repairs(&p, victim) >= 1,
        || format!("{:?}\n{}", p.status(victim), p.log(victim)),
    );
    assert_eq!(count_sum(&p, victim), Ok(expected(10)));
}
