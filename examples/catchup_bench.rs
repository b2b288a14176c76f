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

    // 1. Node 4 joins empty and catches up by snapshot on a quiet cluster.
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
        "  node 4 catch-up (add→applied) {catchup:>7.2} s  {:>6.0} MiB/s  (no writes meanwhile)",
        mib(catchup)
    );
    println!("  catch-up / baseline (time)    {:>7.2}", catchup / cp);
    println!(
        "  installs {}, fetched {} bytes",
        s4.snapshot.installs_total, s4.snapshot.install_bytes_total
    );

    // 2. Writes (small proposals, one after another) for 3 s; then node 4
    // leaves and a new, empty node 5 joins and installs the whole snapshot
    // while the writes go on; then 3 s more without an install.
    nodes[&leader]
        .change_membership(MembershipChange::Remove { id: 4 })
        .await
        .unwrap();
    n4.shutdown().await;
    drop(n4);
    let writer = nodes[&leader].clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (stop2, count2) = (stop.clone(), count.clone());
    let w = tokio::spawn(async move {
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            writer.propose(&"records 10".to_string()).await.unwrap();
            count2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let window = |secs: f64| {
        let count = count.clone();
        async move {
            let (c0, t0) = (
                count.load(std::sync::atomic::Ordering::Relaxed),
                Instant::now(),
            );
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            (count.load(std::sync::atomic::Ordering::Relaxed) - c0) as f64
                / t0.elapsed().as_secs_f64()
        }
    };
    let before = window(3.0).await;
    let l5 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a5 = l5.local_addr().unwrap().to_string();
    let (c0, t0) = (
        count.load(std::sync::atomic::Ordering::Relaxed),
        Instant::now(),
    );
    let n5 = start(config(5, dir, &a5, &BTreeMap::new()), l5).await;
    nodes[&leader]
        .change_membership(MembershipChange::Add {
            id: 5,
            addr: a5.clone(),
        })
        .await
        .unwrap();
    assert!(
        n5.wait_applied(last, Duration::from_secs(600)).await,
        "node 5 did not catch up under writes"
    );
    let loaded = t0.elapsed().as_secs_f64();
    let during = (count.load(std::sync::atomic::Ordering::Relaxed) - c0) as f64 / loaded;
    let after = window(3.0).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    w.await.unwrap();
    let without = (before + after) / 2.0;
    println!(
        "  node 5 catch-up under writes  {loaded:>7.2} s  {:>6.0} MiB/s",
        mib(loaded)
    );
    println!(
        "  writes/s without an install   {without:>7.0}  (3 s before: {before:.0}, 3 s after: {after:.0})"
    );
    println!("  writes/s during the install   {during:>7.0}");
    println!("  during / without              {:>7.2}", during / without);

    // Incremental: node 5 stops, 1% new data, a snapshot, node 5 restarts.
    n5.shutdown().await;
    drop(n5);
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
    let l5b = loop {
        if let Ok(l) = std::net::TcpListener::bind(&a5) {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let n5 = start(config(5, dir, &a5, &BTreeMap::new()), l5b).await;
    assert!(
        n5.wait_applied(last, Duration::from_secs(600)).await,
        "node 5 did not catch up again"
    );
    let s5 = n5.status().await.unwrap();
    let fetched = s5.snapshot.install_bytes_total;
    println!(
        "  after 1% new data ({one_pct} bytes): node 5 fetched {fetched} bytes = {:.2}% of the {} byte state ({} installs, {} bytes reused)",
        fetched as f64 * 100.0 / s5.snapshot.bytes.max(1) as f64,
        s5.snapshot.bytes,
        s5.snapshot.installs_total,
        s5.snapshot.reused_bytes_total
    );
    for n in nodes.values().chain(std::iter::once(&n5)) {
        n.shutdown().await;
    }
}
