//! Durability seen in the kernel: `tsnode` processes run under `strace`, and
//! every write they acknowledge (the HTTP 204) must come after the raft log
//! record holding it was written (`pwrite64` to a `.wal` file) and synced
//! (`fdatasync` of that file) — on the node that acknowledged it, and on a
//! quorum of a 3-node cluster (the leader and at least one follower).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::procs::Procs;

const OPTS: &[&str] = &[
    "-f",
    "-ttt",
    "-T",
    "-y",
    "-s",
    "600",
    "-e",
    "trace=pwrite64,fdatasync,fsync,write,writev,sendto,sendmsg",
];

/// One node's trace: marker → end time of the pwrite that wrote it to the
/// log; (start, end) of every fdatasync/fsync of a `.wal`; start times of
/// the HTTP 204 answers.
#[derive(Default, Debug)]
struct Trace {
    wal_writes: BTreeMap<String, f64>,
    syncs: Vec<(f64, f64)>,
    acks: Vec<f64>,
}

fn duration(line: &str) -> f64 {
    line.rsplit_once('<')
        .and_then(|(_, d)| d.trim_end().strip_suffix('>'))
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0)
}

fn parse(path: &Path, markers: &[String]) -> Trace {
    let text = std::fs::read_to_string(path).unwrap();
    let mut t = Trace::default();
    // pid → (syscall, start, line) of calls left unfinished.
    let mut open: BTreeMap<String, (f64, String)> = BTreeMap::new();
    for line in text.lines() {
        // `<pid> <seconds.micros> <call>`; strace pads short pids with spaces.
        let Some((pid, after)) = line.trim_start().split_once(' ') else {
            continue;
        };
        let Some((ts, rest)) = after.trim_start().split_once(' ') else {
            continue;
        };
        let Ok(ts) = ts.parse::<f64>() else { continue };
        let (start, call, end) = if rest.ends_with("<unfinished ...>") {
            open.insert(pid.to_string(), (ts, rest.to_string()));
            continue;
        } else if rest.starts_with("<... ") {
            match open.remove(pid) {
                Some((start, first)) => (start, format!("{first}{rest}"), ts),
                None => continue,
            }
        } else {
            (ts, rest.to_string(), ts + duration(rest))
        };
        if (call.starts_with("fdatasync(") || call.starts_with("fsync(")) && call.contains(".wal>")
        {
            t.syncs.push((start, end));
        } else if call.starts_with("pwrite64(") && call.contains(".wal>") {
            for m in markers {
                if call.contains(m.as_str()) {
                    t.wal_writes.entry(m.clone()).or_insert(end);
                }
            }
        } else if call.contains("HTTP/1.1 204") {
            t.acks.push(start);
        }
    }
    t
}

/// True if `t` wrote `marker` to its log and synced it before `ack`.
fn synced_before(t: &Trace, marker: &str, ack: f64) -> bool {
    let Some(written) = t.wal_writes.get(marker) else {
        return false;
    };
    t.syncs
        .iter()
        .any(|(start, end)| *start >= *written && *end <= ack)
}

fn run(nodes: u64, writes: usize) {
    let mut p = Procs::start_traced(nodes, &[], OPTS);
    let leader = p.leader();
    p.query(leader, "", "CREATE DATABASE db");
    let markers: Vec<String> = (0..writes).map(|k| format!("w{k:05}x")).collect();
    for (k, m) in markers.iter().enumerate() {
        assert!(
            p.write(leader, "db", &format!("m,k={m} v={k} {}", k + 1)),
            "write {k}"
        );
    }
    for id in 1..=nodes {
        p.kill(id);
    }
    let traces: BTreeMap<u64, Trace> = (1..=nodes)
        .map(|id| {
            (
                id,
                parse(&p.dir.path().join(format!("strace.{id}")), &markers),
            )
        })
        .collect();
    let lt = &traces[&leader];
    let first = *lt
        .wal_writes
        .get(&markers[0])
        .unwrap_or_else(|| panic!("the leader never wrote {} to its log: {lt:?}", markers[0]));
    // The 204s of the writes, in order (the pings came before the first write).
    let acks: Vec<f64> = lt.acks.iter().copied().filter(|a| *a > first).collect();
    assert_eq!(acks.len(), writes, "204 answers seen on the leader");
    for (k, m) in markers.iter().enumerate() {
        let ack = acks[k];
        assert!(
            synced_before(lt, m, ack),
            "write {k} acknowledged before the leader synced it"
        );
        let followers = traces
            .iter()
            .filter(|(id, t)| **id != leader && synced_before(t, m, ack))
            .count() as u64;
        assert!(
            1 + followers > nodes / 2,
            "write {k} acknowledged with {followers} follower(s) synced, no quorum"
        );
    }
    let syncs: usize = traces.values().map(|t| t.syncs.len()).sum();
    eprintln!("{writes} acknowledged writes, {syncs} log syncs over {nodes} node(s)");
}

#[test]
fn every_acknowledged_write_is_fdatasynced_first_on_one_node() {
    run(1, 20);
}

#[test]
fn every_acknowledged_write_is_fdatasynced_first_on_a_quorum_of_three() {
    run(3, 20);
}
