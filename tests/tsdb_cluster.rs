//! The time-series state machine replicated by a 3-node raft cluster over
//! real gRPC: a follower catches up by installing a snapshot made of TSM
//! files and the metastore backup, every node restarts (state = snapshot +
//! log replay), and all nodes answer queries identically.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::cluster::rebind;
use raftsnap::proto::tsdb::{CreateDatabase, WritePoints, command::Cmd};
use raftsnap::raft::{NodeConfig, NodeHandle};
use raftsnap::tsdb::fsm::{Tsdb, command, point_to_pb};
use raftsnap::tsdb::line_protocol::{Precision, parse};
use raftsnap::tsdb::query::{execute_read, parse as parse_q};

struct C {
    addrs: BTreeMap<u64, String>,
    dirs: BTreeMap<u64, tempfile::TempDir>,
    nodes: BTreeMap<u64, NodeHandle<Tsdb>>,
}

impl C {
    async fn launch(&mut self, id: u64, l: std::net::TcpListener) {
        let mut cfg = NodeConfig::new(id, self.dirs[&id].path(), self.addrs[&id].clone());
        cfg.peers = self.addrs.clone();
        cfg.tick = Duration::from_millis(20);
        cfg.snapshot_log_gap = 40;
        cfg.trailing_logs = 10;
        cfg.snapshot_interval = Duration::ZERO;
        let fsm = Tsdb::open(self.dirs[&id].path().join("tsdb"))
            .unwrap()
            .with_flush_bytes(256 << 10);
        self.nodes
            .insert(id, NodeHandle::start(cfg, fsm, l).await.unwrap());
    }

    async fn leader(&self) -> u64 {
        for _ in 0..500 {
            for n in self.nodes.values() {
                if n.status().await.unwrap().role == "leader" {
                    return n.id();
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no leader");
    }

    async fn propose(&self, cmd: Cmd) -> u64 {
        for _ in 0..50 {
            let l = self.leader().await;
            if let Ok((index, r)) = self.nodes[&l].propose(&command(cmd.clone())).await {
                assert!(r.error.is_empty(), "{}", r.error);
                return index;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("proposal failed");
    }

    async fn write_batch(&self, batch: i64) -> u64 {
        let mut body = String::new();
        for i in 0..200i64 {
            let t = 1_700_000_000_000_000_000 + (batch * 200 + i) * 1_000_000_000;
            body.push_str(&format!(
                "cpu,host=h{} v={},n={}i {}\n",
                i % 4,
                (batch * 200 + i) as f64 / 4.0,
                i,
                t
            ));
        }
        let (points, _) = parse(&body, Precision::Nanoseconds, 0);
        self.propose(Cmd::Write(WritePoints {
            db: "db".into(),
            rp: String::new(),
            points: points.iter().map(point_to_pb).collect(),
        }))
        .await
    }

    fn answers(&self, id: u64) -> Vec<serde_json::Value> {
        let view = self.nodes[&id].local(|t, _| t.view());
        [
            "SELECT count(v) FROM cpu",
            "SELECT sum(n) FROM cpu WHERE host = 'h1'",
            "SELECT * FROM cpu WHERE time >= 1700000100000000000 LIMIT 20",
            "SHOW MEASUREMENTS",
        ]
        .iter()
        .map(|q| {
            execute_read(
                &view,
                "db",
                &parse_q(q, 0).unwrap()[0],
                Some(Precision::Nanoseconds),
            )
        })
        .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tsdb_cluster_installs_snapshots_restarts_and_answers_identically() {
    let ls: BTreeMap<u64, std::net::TcpListener> = (1..=3)
        .map(|i| (i, std::net::TcpListener::bind("127.0.0.1:0").unwrap()))
        .collect();
    let mut c = C {
        addrs: ls
            .iter()
            .map(|(i, l)| (*i, l.local_addr().unwrap().to_string()))
            .collect(),
        dirs: (1..=3).map(|i| (i, tempfile::tempdir().unwrap())).collect(),
        nodes: BTreeMap::new(),
    };
    for (id, l) in ls {
        c.launch(id, l).await;
    }
    c.propose(Cmd::CreateDatabase(CreateDatabase { name: "db".into() }))
        .await;
    for b in 0..10 {
        c.write_batch(b).await;
    }
    let leader = c.leader().await;
    let follower = *c.nodes.keys().find(|i| **i != leader).unwrap();
    let n = c.nodes.remove(&follower).unwrap();
    n.shutdown().await;
    let mut last = 0;
    for b in 10..100 {
        last = c.write_batch(b).await;
    }
    assert!(c.nodes[&leader].status().await.unwrap().first_log_index > 15);
    let l = rebind(&c.addrs[&follower]).await;
    c.launch(follower, l).await;
    for n in c.nodes.values() {
        assert!(
            n.wait_applied(last, Duration::from_secs(60)).await,
            "{:?}",
            n.status().await
        );
    }
    let st = c.nodes[&follower].status().await.unwrap();
    assert!(st.snapshot.installs_total >= 1, "{st:?}");
    let want = c.answers(leader);
    assert_eq!(want[0]["series"][0]["values"][0][1], 20_000);
    for id in c.nodes.keys() {
        assert_eq!(c.answers(*id), want, "node {id}");
    }
    // Every node restarts: snapshot + log replay gives the same answers.
    let ids: Vec<u64> = c.nodes.keys().copied().collect();
    for id in &ids {
        let n = c.nodes.remove(id).unwrap();
        n.shutdown().await;
    }
    for id in &ids {
        let l = rebind(&c.addrs[id]).await;
        c.launch(*id, l).await;
    }
    for n in c.nodes.values() {
        assert!(n.wait_applied(last, Duration::from_secs(60)).await);
    }
    for id in &ids {
        assert_eq!(c.answers(*id), want, "node {id} after restart");
    }
    for n in c.nodes.values() {
        n.shutdown().await;
    }
}
