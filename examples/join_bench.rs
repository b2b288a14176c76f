//! Join benchmark: a 3-node tsnode cluster holds `--mb` MB of TSM (random
//! floats, imported by file) and a snapshot of it; a new `tsnode serve
//! --join` process starts with an empty data directory. Timed, per round:
//! from the process start to its first answer to a query of the leader's
//! data (a marker point written before the snapshot), with the phases from
//! its log (listening, joined as a learner, install started and finished,
//! snapshot loaded). The new member is removed and its data deleted
//! between rounds. Baseline in the same run: `cp -r` + `sync` of the
//! leader's snapshot directory.
//!
//! With `--two`, each round also starts two new members at once and reports
//! the slower one's time against one member alone. `--send-rate R` limits
//! what each existing node serves and `--recv-rate R` what each new member
//! fetches (a per-node budget, as separate machines would have).
//!
//! `cargo run --release --example join_bench -- [--mb 1230] [--rounds 3]
//! [--two] [--send-rate 200MiB] [--recv-rate 200MiB] [--dir D] [--verbose]`

mod common;
use common::status;
use common::{arg, query};

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use raftsnap::tsdb::tsm::{TsmWriter, Values};

/// Writes `files` TSM files of random floats (`per_file` values each, 10
/// series per file, one point a second in one 7-day shard group).
fn generate(dir: &Path, files: usize, per_file: usize) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let base: i64 = 1_699_833_600_000_000_000; // a shard group start
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for f in 0..files {
        let mut w = TsmWriter::create(&dir.join(format!("{f:04}.tsm"))).expect("create");
        let per_series = per_file / 10;
        for s in 0..10 {
            let key = format!("big,f={f:04},s={s}#!~#v");
            let ts: Vec<i64> = (0..per_series as i64)
                .map(|i| base + i * 1_000_000_000)
                .collect();
            let vals: Vec<f64> = (0..per_series)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    f64::from_bits((x >> 12) | 0x3ff0_0000_0000_0000)
                })
                .collect();
            w.write(&key, &ts, &Values::Float(vals)).expect("write");
        }
        w.finish().expect("finish");
    }
}

fn dir_size(d: &Path) -> u64 {
    let mut n = 0;
    let mut stack = vec![d.to_path_buf()];
    while let Some(p) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&p) {
            for e in rd.flatten() {
                match e.file_type() {
                    Ok(t) if t.is_dir() => stack.push(e.path()),
                    Ok(_) => n += e.metadata().map_or(0, |m| m.len()),
                    Err(_) => {}
                }
            }
        }
    }
    n
}

/// Seconds since the process start of the first log line containing `what`.
fn phase(log: &str, start: &chrono_free::Stamp, what: &str) -> Option<f64> {
    log.lines()
        .find(|l| l.contains(what))
        .and_then(chrono_free::parse)
        .map(|t| t - start.0)
}

/// RFC 3339 stamps of tracing's default format, without a date library.
mod chrono_free {
    /// Seconds of the day (UTC).
    pub struct Stamp(pub f64);
    pub fn now() -> Stamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Stamp((d.as_secs() % 86_400) as f64 + f64::from(d.subsec_nanos()) / 1e9)
    }
    /// `2026-12-02T13:14:15.123456Z ...` → seconds of the day.
    pub fn parse(line: &str) -> Option<f64> {
        let t = line.split_whitespace().next()?;
        let t = t.split('T').nth(1)?.trim_end_matches('Z');
        let mut p = t.split(':');
        let h: f64 = p.next()?.parse().ok()?;
        let m: f64 = p.next()?.parse().ok()?;
        let s: f64 = p.next()?.parse().ok()?;
        Some(h * 3600.0 + m * 60.0 + s)
    }
}

/// Waits (at most 5 minutes) until the processes together use under 5% of
/// a core over a second.
fn quiesce(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(300);
    let total = || {
        pids.iter()
            .map(|p| {
                let (user, sys) = common::cpu_ticks(&p.to_string());
                user + sys
            })
            .sum::<u64>()
    };
    while Instant::now() < deadline {
        let before = total();
        std::thread::sleep(Duration::from_secs(1));
        // Ticks are 10 ms: at most 5 in a second.
        if total() - before <= 5 {
            return;
        }
    }
    println!("the nodes were still busy after 5 minutes");
}

fn main() {
    let mb: u64 = arg("--mb").map_or(1230, |v| v.parse().expect("--mb N"));
    let rounds: usize = arg("--rounds").map_or(3, |v| v.parse().expect("--rounds N"));
    let tmp = tempfile::tempdir_in(arg("--dir").unwrap_or_else(|| "/tmp".into())).expect("tmp");
    let w = tmp.path();
    let files = 64;
    // ~8.2 bytes per random float value in a TSM block.
    let per_file = (mb * 1_000_000 / 8 / files as u64) as usize;
    let t = Instant::now();
    generate(&w.join("tsm"), files, per_file);
    let tsm_bytes = dir_size(&w.join("tsm"));
    println!(
        "{files} TSM files, {:.0} MB, generated in {:.1} s",
        tsm_bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let two = std::env::args().any(|a| a == "--two");
    let mut cluster_args = vec!["--snapshot-interval".to_string(), "0".to_string()];
    if let Some(r) = arg("--send-rate") {
        cluster_args.extend(["--snapshot-send-rate".to_string(), r]);
    }
    let mut joiner_args = Vec::new();
    if let Some(r) = arg("--recv-rate") {
        joiner_args.extend(["--snapshot-recv-rate".to_string(), r]);
    }
    let cluster_refs: Vec<&str> = cluster_args.iter().map(String::as_str).collect();
    let (mut procs, http, raft, _) = common::start_cluster(3, &w.join("cluster"), &cluster_refs);
    let leader = common::leader_of(&http);
    let li = http.iter().position(|h| *h == leader).expect("leader");
    query(&leader, "", "CREATE DATABASE bench");
    let bin = common::tsnode_binary();
    let t = Instant::now();
    let o = Command::new(&bin)
        .args(["import", "--host", &leader, "--db", "bench"])
        .arg(w.join("tsm"))
        .output()
        .expect("import");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    println!(
        "imported by file into 3 replicas in {:.2} s: {}",
        t.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&o.stdout).trim()
    );
    let r = ureq::post(&format!("http://{leader}/write"))
        .query("db", "bench")
        .send("marker v=1 1699833600000000000\n");
    assert!(r.is_ok(), "{r:?}");
    // The nodes merge what was imported in the background; the rounds
    // start once they are done, so that no round competes with them.
    let t = Instant::now();
    let pids: Vec<u32> = procs.iter().map(|k| k.0.id()).collect();
    quiesce(&pids);
    println!(
        "background merges after the import done in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // Every replica saves (each may then serve the files it shares with
    // the leader's snapshot).
    for h in &http {
        let r = ureq::post(&format!("http://{h}/snapshot")).send_empty();
        assert!(r.is_ok(), "{r:?}");
    }
    let snaps = w.join(format!("cluster/node{}/snapshots", li + 1));
    // The leader's newest snapshot (a membership change may replace it).
    let latest = || {
        std::fs::read_dir(&snaps)
            .expect("snapshots")
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n.starts_with("snapshot_") && !n.ends_with(".broken")
                })
            })
            .max()
            .expect("a snapshot")
    };
    let snap_bytes = dir_size(&latest());
    println!("leader snapshot: {:.0} MB", snap_bytes as f64 / 1e6);

    let ctx = Ctx {
        bin: bin.clone(),
        w: w.to_path_buf(),
        leader: leader.clone(),
        http: http.clone(),
        join_via: raft[li].clone(),
        joiner_args: joiner_args.clone(),
    };
    let mut totals = Vec::new();
    let mut pairs = Vec::new();
    let mut cps = Vec::new();
    // Each timed step starts with nothing left to write back (the import's
    // and the previous step's data), so that neither pays for the other.
    let settle = || {
        let _ = Command::new("sync").status();
    };
    for round in 0..rounds {
        // Baseline: cp -r + sync of the leader's snapshot directory.
        let dst = w.join(format!("cp{round}"));
        settle();
        cps.push(common::cp_sync(&[&latest()], &dst).as_secs_f64());
        let _ = std::fs::remove_dir_all(&dst);

        settle();
        let one = ctx.join_members(&format!("r{round}"), &[4]);
        totals.push(one[0]);
        println!("round {round}: cp+sync {:.3} s", cps[round]);
        if two {
            settle();
            let both = ctx.join_members(&format!("r{round}pair"), &[4, 5]);
            let slowest = both.iter().copied().fold(0.0, f64::max);
            println!(
                "round {round}: two members at once: {:.3} s and {:.3} s; slowest ÷ one alone {:.2}",
                both[0],
                both[1],
                slowest / one[0]
            );
            pairs.push(slowest);
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (tm, cm) = (med(&mut totals), med(&mut cps));
    println!(
        "median: start → serving {tm:.3} s; cp -r + sync of the snapshot {cm:.3} s ({:.0} MB)",
        snap_bytes as f64 / 1e6
    );
    if two {
        let pm = med(&mut pairs);
        println!(
            "median: two members at once, the slower {pm:.3} s: {:.2} × one alone",
            pm / tm
        );
    }
    let _ = std::io::stdout().flush();
    procs.clear();
}

/// What starting new members needs.
struct Ctx {
    bin: std::path::PathBuf,
    w: std::path::PathBuf,
    leader: String,
    http: Vec<String>,
    join_via: String,
    joiner_args: Vec<String>,
}

impl Ctx {
    /// Starts a new member for each id at once (empty data directories),
    /// waits until each answers the leader's data, prints its phases,
    /// removes them again; returns each one's start → serving seconds.
    fn join_members(&self, tag: &str, ids: &[u64]) -> Vec<f64> {
        let served = || -> Vec<f64> {
            self.http
                .iter()
                .map(|h| common::metric(h, "raftsnap_snapshot_served_bytes_total"))
                .collect()
        };
        let served_before = served();
        let start = chrono_free::now();
        let t0 = Instant::now();
        let mut nodes = Vec::new();
        for id in ids {
            let data = self.w.join(format!("joiner{tag}-{id}"));
            let h = format!("127.0.0.1:{}", common::free_port());
            let r = format!("127.0.0.1:{}", common::free_port());
            let s = format!("127.0.0.1:{}", common::free_port());
            let log = self.w.join(format!("joiner{tag}-{id}.log"));
            let child = Command::new(&self.bin)
                .args(["serve", "--id", &id.to_string(), "--raft-addr", &r])
                .args(["--http-addr", &h, "--snapshotter-addr", &s])
                .args(["--join", &self.join_via])
                .args(&self.joiner_args)
                .arg("--data-dir")
                .arg(&data)
                .env("RUST_LOG", "info")
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log"))
                .spawn()
                .expect("spawn");
            nodes.push((*id, h, data, log, common::Kill(child)));
        }
        let mut times = vec![None; ids.len()];
        let deadline = Instant::now() + Duration::from_secs(300);
        while times.iter().any(Option::is_none) {
            for (i, (_, h, ..)) in nodes.iter().enumerate() {
                if times[i].is_some() {
                    continue;
                }
                let v = ureq::get(&format!("http://{h}/query"))
                    .query("db", "bench")
                    .query("q", "SELECT count(v) FROM marker")
                    .call()
                    .ok()
                    .and_then(|mut r| r.body_mut().read_to_string().ok())
                    .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok());
                if v.is_some_and(|v| v["results"][0]["series"][0]["values"][0][1] == 1) {
                    times[i] = Some(t0.elapsed().as_secs_f64());
                }
            }
            assert!(
                Instant::now() < deadline,
                "new members never served the data"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let times: Vec<f64> = times.into_iter().flatten().collect();
        let mb: Vec<String> = served()
            .iter()
            .zip(&served_before)
            .map(|(a, b)| format!("{:.0}", (a - b) / 1e6))
            .collect();
        println!(
            "{tag}: MB served by the existing nodes: {} (leader {})",
            mb.join(" / "),
            self.http
                .iter()
                .position(|h| *h == self.leader)
                .map_or(0, |i| i + 1)
        );
        let verbose = std::env::args().any(|a| a == "--verbose");
        for (i, (id, _, _, log, _)) in nodes.iter().enumerate() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let p = |what: &str| {
                phase(&text, &start, what).map_or("-".to_string(), |s| format!("{s:.3}"))
            };
            let sources = text.matches("fetching from it too").count();
            println!(
                "{tag} node {id}: start → serving {:.3} s | node started {} | joined {} | install started {} | installed {} | loaded {} | other members used as sources: {sources}",
                times[i],
                p("node starting"),
                p("joined the cluster"),
                p("installing snapshot"),
                p("snapshot installed"),
                p("snapshot loaded"),
            );
            if verbose {
                for l in text.lines() {
                    if let Some(t) = chrono_free::parse(l) {
                        let msg: String =
                            l.split_whitespace().skip(1).collect::<Vec<_>>().join(" ");
                        println!("    {:>7.3}  {}", t - start.0, &msg[..msg.len().min(160)]);
                    }
                }
            }
        }
        // Remove the members (retried: a promotion may be in flight) and
        // their data.
        let deadline = Instant::now() + Duration::from_secs(60);
        for (id, ..) in &nodes {
            loop {
                let st = status(&self.leader);
                let listed = |k: &str| st[k].as_array().is_some_and(|v| v.iter().any(|x| x == *id));
                if !listed("voters") && !listed("learners") {
                    break;
                }
                let _ = ureq::delete(&format!("http://{}/members/{id}", self.leader)).call();
                assert!(Instant::now() < deadline, "node {id} not removed: {st}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        for (_, _, data, _, k) in nodes {
            drop(k);
            let _ = std::fs::remove_dir_all(&data);
        }
        times
    }
}
