//! 3-node clusters in one process over real gRPC on 127.0.0.1, with the test
//! KV state machine: catch-up by snapshot install, new members, a leader killed
//! mid-install, restarts, a bounded log; and after each, every acknowledged
//! write is checked on every node.

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use raftsnap::raft::NodeConfig;

fn small_gaps(c: &mut NodeConfig) {
    c.snapshot_log_gap = 100;
    c.trailing_logs = 30;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_replicate_and_agree() {
    let mut c = Cluster::start(3, small_gaps).await;
    let last = c.put_many("k", 60).await;
    c.converge(last, 10).await;
    c.check_acked();
    // Writes through a follower are forwarded to the leader.
    let leader = c.leader().await;
    let follower = *c.nodes.keys().find(|i| **i != leader).unwrap();
    let idx = c.put_via(follower, "via-follower", "yes").await;
    c.converge(idx, 10).await;
    c.check_acked();
    let st = c.statuses().await;
    assert!(
        st.values()
            .all(|s| s.voters == vec![1, 2, 3] && s.commit_index >= idx)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_follower_catches_up_by_snapshot_then_by_log() {
    let mut c = Cluster::start(3, small_gaps).await;
    let leader = c.leader().await;
    let follower = *c.nodes.keys().find(|i| **i != leader).unwrap();
    c.put_many("a", 50).await;
    c.stop(follower).await;
    // Well past snapshot_log_gap + trailing_logs: the leader compacts past
    // everything the stopped follower has.
    let last = c.put_many("b", 400).await;
    let ls = c.nodes[&leader].status().await.unwrap();
    assert!(ls.snapshot.last_index >= 300, "{ls:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while c.nodes[&leader].status().await.unwrap().first_log_index <= 60 {
        assert!(
            std::time::Instant::now() < deadline,
            "leader never compacted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.restart(follower).await;
    c.converge(last, 30).await;
    let fs = c.nodes[&follower].status().await.unwrap();
    assert!(
        fs.snapshot.installs_total >= 1,
        "caught up without an install: {fs:?}"
    );
    assert!(fs.snapshot.install_bytes_total > 0);
    c.check_acked();
    // Then by log: more writes arrive without another install.
    let installs = fs.snapshot.installs_total;
    let last = c.put_many("c", 20).await;
    c.converge(last, 10).await;
    assert_eq!(
        c.nodes[&follower]
            .status()
            .await
            .unwrap()
            .snapshot
            .installs_total,
        installs
    );
    c.check_acked();
}
