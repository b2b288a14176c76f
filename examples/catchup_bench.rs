//! Catch-up benchmark: a 3-node cluster holds `--gib` GiB of state (64 files
//! of 16 MiB per GiB, written through raft); a new, empty node 4 is added and
//! catches up by snapshot install. Figures, all from one run:
//! - its catch-up time (add → applied) vs `cp -r` + `sync` of the leader's
//!   snapshot directory;
//! - the cluster's write rate (small proposals) while that install runs vs
//!   before it;
//! - node 4 stopped, 1% new data written and snapshotted, node 4 restarted:
//!   the bytes its install fetches vs the whole state.
//!
//! `cargo run --release --example catchup_bench -- [--gib 1] [--recv-rate 100MiB/s] [--dir D]`

mod common;
use common::arg;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use raftsnap::batch_store::BatchStore;
use raftsnap::raft::{MembershipChange, NodeConfig, NodeHandle};

fn config(id: u64, dir: &std::path::Path, addr: &str, peers: &BTreeMap<u64, String>) -> NodeConfig {
    let mut c = NodeConfig::new(id, dir.join(format!("node{id}")), addr);
    c.peers = peers.clone();
    c.tick = Duration::from_millis(50);
    c.snapshot_log_gap = 100_000;
    c.snapshot_interval = Duration::ZERO;
    c.trailing_logs = 0;
    c.proposal_timeout = Duration::from_secs(120);
    c.snapshot_recv_rate = arg("--recv-rate")
        .map(|r| raftsnap::server::config::parse_rate(&r).expect("--recv-rate 100MiB/s"))
        .unwrap_or(None);
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
    // `RUST_LOG=info` shows the install's phases.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
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
            .propose(&format!("bytes {}", 16 << 20))
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
    let cp = common::cp_sync(&[&snap_dir], &dir.join("cp")).as_secs_f64();

    // Write rate without an install: small proposals, one after another.
    let rate = |n: u64, t: f64| n as f64 / t;
    let t = Instant::now();
    for _ in 0..300 {
        nodes[&leader]
            .propose(&"records 10".to_string())
            .await
            .unwrap();
    }
    let rate_idle = rate(300, t.elapsed().as_secs_f64());

    // Node 4 joins empty and catches up by snapshot while writes go on.
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
    let writer = nodes[&leader].clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let w = tokio::spawn(async move {
        let (t0, mut n) = (Instant::now(), 0u64);
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            writer.propose(&"records 10".to_string()).await.unwrap();
            n += 1;
        }
        (n, t0.elapsed().as_secs_f64())
    });
    assert!(
        n4.wait_applied(last, Duration::from_secs(600)).await,
        "node 4 did not catch up"
    );
    let catchup = t.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (n_during, t_during) = w.await.unwrap();
    let rate_install = rate(n_during, t_during);
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
    println!("  writes/s without an install   {rate_idle:>7.0}");
    println!("  writes/s during the install   {rate_install:>7.0}  ({n_during} writes)");
    println!(
        "  during / without              {:>7.2}",
        rate_install / rate_idle
    );

    // Incremental: node 4 stops, 1% new data, a snapshot, node 4 restarts.
    n4.shutdown().await;
    drop(n4);
    let state: u64 = gib << 30;
    let one_pct = state / 100;
    let mut last = 0;
    for _ in 0..3 {
        last = nodes[&leader]
            .propose(&format!("bytes {}", one_pct / 3))
            .await
            .unwrap()
            .0;
    }
    nodes[&leader].snapshot_now().await.unwrap();
    let l4 = loop {
        if let Ok(l) = std::net::TcpListener::bind(&addrs[&4]) {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let n4 = start(config(4, dir, &addrs[&4], &BTreeMap::new()), l4).await;
    assert!(
        n4.wait_applied(last, Duration::from_secs(600)).await,
        "node 4 did not catch up again"
    );
    let s4 = n4.status().await.unwrap();
    let fetched = s4.snapshot.install_bytes_total;
    println!(
        "  after 1% new data ({one_pct} bytes): node 4 fetched {fetched} bytes = {:.2}% of the {} byte state ({} installs, {} bytes reused)",
        fetched as f64 * 100.0 / s4.snapshot.bytes.max(1) as f64,
        s4.snapshot.bytes,
        s4.snapshot.installs_total,
        s4.snapshot.reused_bytes_total
    );
    for n in nodes.values().chain(std::iter::once(&n4)) {
        n.shutdown().await;
    }
}
