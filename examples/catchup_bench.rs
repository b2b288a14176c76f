//! Catch-up benchmark: a 3-node cluster holds `--gib` GiB of state (64 files
//! of 16 MiB per GiB, written through raft); a new, empty node 4 is added and
//! catches up by snapshot install. Its catch-up time (add → applied) is
//! compared with `cp -r` + `sync` of the leader's snapshot directory, in the
//! same run.
//!
//! `cargo run --release --example catchup_bench -- [--gib 1] [--dir D]`

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use raftsnap::batch_store::BatchStore;
use raftsnap::raft::{MembershipChange, NodeConfig, NodeHandle};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn config(id: u64, dir: &std::path::Path, addr: &str, peers: &BTreeMap<u64, String>) -> NodeConfig {
    let mut c = NodeConfig::new(id, dir.join(format!("node{id}")), addr);
    c.peers = peers.clone();
    c.tick = Duration::from_millis(50);
    c.snapshot_log_gap = 100_000;
    c.snapshot_interval = Duration::ZERO;
    c.trailing_logs = 0;
    c.proposal_timeout = Duration::from_secs(120);
    c
}

async fn start(cfg: NodeConfig, l: std::net::TcpListener) -> NodeHandle<BatchStore> {
    let fsm = BatchStore::open(cfg.data_dir.join("fsm")).unwrap();
    let lookup = fsm.lookup();
    NodeHandle::start_with(cfg, fsm, l, Some(lookup))
        .await
        .unwrap()
}

#[tokio::main]
async fn main() {
    let gib: u64 = arg("--gib").map_or(1, |v| v.parse().expect("--gib N"));
    let tmp = tempfile::tempdir_in(arg("--dir").unwrap_or_else(|| "/tmp".into())).unwrap();
    let dir = tmp.path();
    let ls: BTreeMap<u64, std::net::TcpListener> = (1..=4)
        .map(|i| (i, std::net::TcpListener::bind("127.0.0.1:0").unwrap()))
        .collect();
    let addrs: BTreeMap<u64, String> = ls
        .iter()
        .map(|(i, l)| (*i, l.local_addr().unwrap().to_string()))
        .collect();
    let peers: BTreeMap<u64, String> = addrs
        .iter()
        .filter(|(i, _)| **i <= 3)
        .map(|(i, a)| (*i, a.clone()))
        .collect();
    let mut ls = ls;
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        let l = ls.remove(&id).unwrap();
        nodes.insert(id, start(config(id, dir, &addrs[&id], &peers), l).await);
    }
    let leader = loop {
        let mut found = None;
        for n in nodes.values() {
            if n.status().await.unwrap().role == "leader" {
                found = Some(n.id());
            }
        }
        if let Some(l) = found {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "catch-up benchmark: {gib} GiB of state on a 3-node cluster in {}",
        dir.display()
    );
    let t = Instant::now();
    let mut last = 0;
    for _ in 0..gib * 64 {
        last = nodes[&leader]
            .propose(format!("bytes {}", 16 << 20).into_bytes())
            .await
            .unwrap()
            .0;
    }
    for n in nodes.values() {
        n.wait_applied(last, Duration::from_secs(300)).await;
    }
    println!("  wrote {gib} GiB through raft in {:.1?}", t.elapsed());
    let meta = nodes[&leader].snapshot_now().await.unwrap();
    let snap_dir = dir.join(format!(
        "node{leader}/snapshots/snapshot_{:020}",
        meta.last_included_index
    ));

    // Baseline: copy the leader's snapshot directory and sync it.
    let t = Instant::now();
    assert!(
        Command::new("cp")
            .arg("-r")
            .arg(&snap_dir)
            .arg(dir.join("cp"))
            .status()
            .unwrap()
            .success()
    );
    assert!(
        Command::new("sync")
            .arg("-f")
            .arg(dir.join("cp"))
            .status()
            .unwrap()
            .success()
    );
    let cp = t.elapsed().as_secs_f64();
    std::fs::remove_dir_all(dir.join("cp")).unwrap();

    // Node 4 joins empty and catches up by snapshot.
    let n4 = start(
        config(4, dir, &addrs[&4], &BTreeMap::new()),
        ls.remove(&4).unwrap(),
    )
    .await;
    let t = Instant::now();
    nodes[&leader]
        .change_membership(MembershipChange::Add {
            id: 4,
            addr: addrs[&4].clone(),
        })
        .await
        .unwrap();
    assert!(
        n4.wait_applied(last, Duration::from_secs(600)).await,
        "node 4 did not catch up"
    );
    let catchup = t.elapsed().as_secs_f64();
    let s4 = n4.status().await.unwrap();
    let bytes = s4.snapshot.install_bytes_total as f64;
    let mib = |s: f64| bytes / s / 1048576.0;
    println!(
        "  cp -r + sync of the snapshot  {cp:>7.2} s  {:>6.0} MiB/s",
        mib(cp)
    );
    println!(
        "  node 4 catch-up (add→applied) {catchup:>7.2} s  {:>6.0} MiB/s",
        mib(catchup)
    );
    println!("  catch-up / baseline (time)    {:>7.2}", catchup / cp);
    println!(
        "  installs {}, fetched {} bytes",
        s4.snapshot.installs_total, s4.snapshot.install_bytes_total
    );
    for n in nodes.values().chain(std::iter::once(&n4)) {
        n.shutdown().await;
    }
}
