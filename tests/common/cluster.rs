//! In-process raft clusters over real gRPC on 127.0.0.1, with the test KV
//! state machine, and a checker that every acknowledged write survives.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use raftsnap::raft::{MembershipChange, NodeConfig, NodeHandle, Status};

use super::kv_fsm::KvFsm;

/// A cluster of nodes; each keeps its data dir and address across restarts.
pub struct Cluster {
    pub nodes: BTreeMap<u64, NodeHandle<KvFsm>>,
    pub addrs: BTreeMap<u64, String>,
    pub dirs: BTreeMap<u64, tempfile::TempDir>,
    pub tweak: fn(&mut NodeConfig),
    /// Every write the cluster acknowledged (key → value).
    pub acked: BTreeMap<String, String>,
    /// Blob each node's state machine writes into its snapshots.
    pub blob: Vec<u8>,
}

fn free_listener() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

/// Fast timings for tests: 20 ms ticks, elections after 200-400 ms.
pub fn fast(cfg: &mut NodeConfig) {
    cfg.tick = Duration::from_millis(20);
    cfg.election_tick = 10;
    cfg.heartbeat_tick = 2;
    cfg.proposal_timeout = Duration::from_secs(10);
    cfg.snapshot_interval = Duration::ZERO;
}

impl Cluster {
    /// Starts `n` nodes (ids 1..=n) bootstrapped together.
    pub async fn start(n: u64, tweak: fn(&mut NodeConfig)) -> Self {
        Self::start_with_blob(n, tweak, Vec::new()).await
    }

    /// Same, each state machine writing `blob` into its snapshots.
    pub async fn start_with_blob(n: u64, tweak: fn(&mut NodeConfig), blob: Vec<u8>) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let listeners: BTreeMap<u64, std::net::TcpListener> =
            (1..=n).map(|i| (i, free_listener())).collect();
        let addrs: BTreeMap<u64, String> = listeners
            .iter()
            .map(|(i, l)| (*i, l.local_addr().unwrap().to_string()))
            .collect();
        let mut c = Cluster {
            nodes: BTreeMap::new(),
            addrs: addrs.clone(),
            dirs: (1..=n).map(|i| (i, tempfile::tempdir().unwrap())).collect(),
            tweak,
            acked: BTreeMap::new(),
            blob,
        };
        for (id, l) in listeners {
            let node = c.launch(id, addrs.clone(), l).await;
            c.nodes.insert(id, node);
        }
        c
    }

    fn config(&self, id: u64, peers: BTreeMap<u64, String>) -> NodeConfig {
        let mut cfg = NodeConfig::new(id, self.dirs[&id].path(), self.addrs[&id].clone());
        cfg.peers = peers;
        fast(&mut cfg);
        (self.tweak)(&mut cfg);
        cfg
    }

    async fn launch(
        &self,
        id: u64,
        peers: BTreeMap<u64, String>,
        l: std::net::TcpListener,
    ) -> NodeHandle<KvFsm> {
        let fsm = KvFsm {
            blob: self.blob.clone(),
            ..Default::default()
        };
        NodeHandle::start(self.config(id, peers), fsm, l)
            .await
            .expect("node starts")
    }

    /// Stops a node (its data and address stay).
    pub async fn stop(&mut self, id: u64) {
        if let Some(n) = self.nodes.remove(&id) {
            n.shutdown().await;
        }
    }

    /// Restarts a stopped node on its old address and data.
    pub async fn restart(&mut self, id: u64) {
        let l = rebind(&self.addrs[&id]).await;
        let peers = self.addrs.clone();
        let node = self.launch(id, peers, l).await;
        self.nodes.insert(id, node);
    }

    /// Starts a new, empty node `id` and adds it through the leader.
    pub async fn add(&mut self, id: u64) {
        let leader = self.leader().await;
        let l = free_listener();
        self.addrs.insert(id, l.local_addr().unwrap().to_string());
        self.dirs.insert(id, tempfile::tempdir().unwrap());
        let node = self.launch(id, BTreeMap::new(), l).await;
        self.nodes.insert(id, node);
        self.nodes[&leader]
            .change_membership(MembershipChange::Add {
                id,
                addr: self.addrs[&id].clone(),
            })
            .await
            .expect("add member");
    }

    /// Status of every running node.
    pub async fn statuses(&self) -> BTreeMap<u64, Status> {
        let mut out = BTreeMap::new();
        for (id, n) in &self.nodes {
            if let Ok(s) = n.status().await {
                out.insert(*id, s);
            }
        }
        out
    }

    /// The id of the leader all running nodes agree on (waits up to 20 s).
    pub async fn leader(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let st = self.statuses().await;
            let leaders: Vec<u64> = st
                .values()
                .filter(|s| s.role == "leader")
                .map(|s| s.id)
                .collect();
            // Nodes that are not voters (learners, members not yet added) do
            // not have to agree.
            if leaders.len() == 1
                && st
                    .values()
                    .all(|s| s.leader_id == leaders[0] || !s.voters.contains(&s.id))
            {
                return leaders[0];
            }
            assert!(Instant::now() < deadline, "no agreed leader: {st:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Writes `key=value` through `via` (forwarded to the leader if needed),
    /// retrying a few times across leader changes; records acknowledged ones.
    pub async fn put_via(&mut self, via: u64, key: &str, value: &str) -> u64 {
        for attempt in 0..50 {
            let node = self.nodes.get(&via).expect("node running");
            match node.propose(&format!("{key}={value}")).await {
                Ok((index, _)) => {
                    self.acked.insert(key.to_string(), value.to_string());
                    return index;
                }
                Err(e) if attempt < 49 => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("write {key} failed: {e}"),
            }
        }
        unreachable!()
    }

    /// Writes `n` keys `prefix<i>` through the leader.
    pub async fn put_many(&mut self, prefix: &str, n: u64) -> u64 {
        let mut last = 0;
        let mut leader = self.leader().await;
        for i in 0..n {
            if !self.nodes.contains_key(&leader) {
                leader = self.leader().await;
            }
            last = self
                .put_via(leader, &format!("{prefix}{i}"), &format!("v{i}"))
                .await;
        }
        last
    }

    /// Waits until every running node applied `index` (up to `secs`).
    pub async fn converge(&self, index: u64, secs: u64) {
        for (id, n) in &self.nodes {
            assert!(
                n.wait_applied(index, Duration::from_secs(secs)).await,
                "node {id} did not apply {index}: {:?}",
                n.status().await
            );
        }
    }

    /// Waits (up to 10 s) until node `id`'s log starts after `index`.
    pub async fn wait_compacted(&self, id: u64, index: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.nodes[&id].status().await.unwrap();
            if s.first_log_index > index {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} never compacted past {index}: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A node's KV map.
    pub fn map(&self, id: u64) -> BTreeMap<String, String> {
        self.nodes[&id].local(|kv, _| kv.map.clone()).clone()
    }

    /// The linearizability-style check: every acknowledged write is present,
    /// with its value, on every running node, and all nodes hold the same map.
    pub fn check_acked(&self) {
        let mut first: Option<(u64, BTreeMap<String, String>)> = None;
        for id in self.nodes.keys() {
            let m = self.map(*id);
            for (k, v) in &self.acked {
                assert_eq!(
                    m.get(k),
                    Some(v),
                    "node {id} lost acknowledged write {k}={v}"
                );
            }
            match &first {
                None => first = Some((*id, m)),
                Some((fid, fm)) => assert_eq!(&m, fm, "node {id} differs from node {fid}"),
            }
        }
    }
}

/// Binds the same address again (the old listener may take a moment to go).
pub async fn rebind(addr: &str) -> std::net::TcpListener {
    for _ in 0..100 {
        if let Ok(l) = std::net::TcpListener::bind(addr) {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot bind {addr} again");
}
