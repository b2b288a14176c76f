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
    c.wait_compacted(leader, 60).await;
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

/// Before any compaction the leader still holds its whole log, but the
/// initial membership is in no entry: a new member must start from a
/// snapshot, or it would apply the later membership changes to an empty
/// configuration and never know the voters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_to_a_young_cluster_starts_from_a_snapshot_and_knows_the_voters() {
    let mut c = Cluster::start(3, |_| {}).await;
    let last = c.put_many("a", 20).await;
    c.converge(last, 10).await;
    let leader = c.leader().await;
    assert_eq!(c.nodes[&leader].status().await.unwrap().first_log_index, 2);
    c.add(4).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s4 = c.nodes[&4].status().await.unwrap();
        if s4.voters == vec![1, 2, 3, 4] {
            assert!(s4.snapshot.installs_total >= 1, "{s4:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node 4 never saw itself a voter among the others: {s4:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last = c.put_many("b", 20).await;
    c.converge(last, 20).await;
    c.check_acked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_added_after_compaction_gets_state_by_snapshot_and_becomes_a_voter() {
    let mut c = Cluster::start(3, small_gaps).await;
    let last = c.put_many("a", 300).await;
    c.converge(last, 10).await;
    let leader = c.leader().await;
    c.wait_compacted(leader, 1).await;
    c.add(4).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let st = c.nodes[&leader].status().await.unwrap();
        if st.voters.contains(&4) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node 4 never became a voter: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last = c.put_many("b", 20).await;
    c.converge(last, 20).await;
    let s4 = c.nodes[&4].status().await.unwrap();
    assert!(s4.snapshot.installs_total >= 1, "{s4:?}");
    assert_eq!(s4.voters, vec![1, 2, 3, 4]);
    c.check_acked();
    // Node 4 knows every member's address (from the snapshot), so it can lead.
    c.stop(leader).await;
    let last = c.put_many("c", 10).await;
    c.converge(last, 20).await;
    c.check_acked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_leaves_the_configuration() {
    let mut c = Cluster::start(3, small_gaps).await;
    let leader = c.leader().await;
    let victim = *c.nodes.keys().find(|i| **i != leader).unwrap();
    c.nodes[&leader]
        .change_membership(raftsnap::raft::MembershipChange::Remove { id: victim })
        .await
        .unwrap();
    c.stop(victim).await;
    let last = c.put_many("r", 20).await;
    c.converge(last, 10).await;
    for s in c.statuses().await.values() {
        assert!(!s.voters.contains(&victim), "{s:?}");
    }
    c.check_acked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_membership_change_while_one_is_pending_is_refused_at_once() {
    use raftsnap::raft::{MembershipChange, RaftError};
    let c = Cluster::start(3, small_gaps).await;
    let leader = c.leader().await;
    let others: Vec<u64> = c.nodes.keys().copied().filter(|i| *i != leader).collect();
    let h = &c.nodes[&leader];
    // Both reach the raft loop before the first is applied: raft-rs would
    // turn the second into an empty entry, and its caller would wait until
    // the proposal timeout for a change that never happens.
    let (a, b) = tokio::join!(
        h.change_membership(MembershipChange::Remove { id: others[0] }),
        h.change_membership(MembershipChange::Remove { id: others[1] }),
    );
    assert!(a.is_ok(), "{a:?}");
    assert!(matches!(b, Err(RaftError::MembershipBusy(_))), "{b:?}");
    // Once applied, the next change goes through.
    let st = h.status().await.unwrap();
    assert!(!st.voters.contains(&others[0]), "{st:?}");
    h.change_membership(MembershipChange::Remove { id: others[1] })
        .await
        .unwrap();
}

fn slow_install(c: &mut NodeConfig) {
    small_gaps(c);
    c.snapshot_recv_rate = Some(2 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_mid_install_the_follower_completes_from_the_new_leader() {
    // 6 MiB of blob in every snapshot at 2 MiB/s: an install takes ~3 s.
    let blob: Vec<u8> = (0..6u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut c = Cluster::start_with_blob(3, slow_install, blob).await;
    let leader = c.leader().await;
    let follower = *c.nodes.keys().find(|i| **i != leader).unwrap();
    c.put_many("a", 20).await;
    c.stop(follower).await;
    let last = c.put_many("b", 250).await;
    c.converge(last, 20).await;
    c.restart(follower).await;
    // Wait until the follower is fetching from the leader, then kill it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let st = c.nodes[&follower].status().await.unwrap();
        if st
            .snapshot
            .install
            .as_ref()
            .is_some_and(|i| i.bytes_done > 0)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no install started: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.stop(leader).await;
    let new_leader = c.leader().await;
    assert_ne!(new_leader, leader);
    let last = c.put_many("c", 30).await;
    c.converge(last, 60).await;
    let st = c.nodes[&follower].status().await.unwrap();
    assert!(st.snapshot.installs_total >= 1, "{st:?}");
    c.check_acked();
    // The old leader comes back and catches up too.
    c.restart(leader).await;
    c.converge(last, 60).await;
    c.check_acked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_restarted_one_by_one_then_all_at_once_keeps_its_state_and_a_bounded_log() {
    let mut c = Cluster::start(3, small_gaps).await;
    let last = c.put_many("a", 250).await;
    c.converge(last, 10).await;
    for id in [1, 2, 3] {
        c.stop(id).await;
        let last = c.put_many(&format!("during{id}-"), 20).await;
        c.restart(id).await;
        c.converge(last, 20).await;
        c.check_acked();
    }
    for id in [1, 2, 3] {
        c.stop(id).await;
    }
    for id in [1, 2, 3] {
        c.restart(id).await;
    }
    let last = c.put_many("after", 20).await;
    c.converge(last, 20).await;
    c.check_acked();
    for (id, s) in c.statuses().await {
        assert!(
            s.last_log_index - s.first_log_index < 100 + 30 + 64,
            "node {id}: {s:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_raft_log_stays_bounded_under_continuous_writes() {
    let mut c = Cluster::start(3, small_gaps).await;
    let mut max_len = 0;
    for round in 0..12 {
        let last = c.put_many(&format!("r{round}-"), 100).await;
        c.converge(last, 10).await;
        for n in c.nodes.values() {
            max_len = max_len.max(n.log_len());
        }
    }
    // snapshot_log_gap + trailing_logs + what is in flight (one save's worth).
    assert!(max_len <= 100 + 30 + 100, "log grew to {max_len} entries");
    let st = c.statuses().await;
    for s in st.values() {
        assert!(s.snapshot.saves_total >= 8, "{s:?}");
        assert!(s.first_log_index > 1000, "{s:?}");
    }
    let compactions: u64 = c
        .nodes
        .values()
        .map(|n| n.counters().compactions_total)
        .sum();
    assert!(compactions >= 24, "{compactions}");
    c.check_acked();
}

/// Without certificates the raft port cannot prove who sends, but it drops
/// what no member would send: a non-member's heartbeat with a far higher
/// term, a `MsgTimeoutNow` not from the leader; and it refuses proposals
/// and membership changes from non-members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_raft_messages_and_requests_from_non_members_change_nothing() {
    use protobuf::Message as _;
    use raft::prelude::{Message, MessageType};
    use raftsnap::proto::raft::{MembershipRequest, ProposeRequest, RaftBatch};
    let mut c = Cluster::start(3, |_| {}).await;
    let last = c.put_many("a", 10).await;
    c.converge(last, 10).await;
    let leader = c.leader().await;
    let before = c.nodes[&leader].status().await.unwrap();
    let follower = *c.nodes.keys().find(|i| **i != leader).unwrap();
    let spoof = |to: u64, from: u64, t: MessageType, term: u64| {
        let mut m = Message::default();
        m.set_msg_type(t);
        m.to = to;
        m.from = from;
        m.term = term;
        m.write_to_bytes().unwrap()
    };
    for round in 0..20u64 {
        for (&id, addr) in &c.addrs {
            let mut cl = raftsnap::raft::transport_client(addr).unwrap();
            let messages = vec![
                spoof(id, 99, MessageType::MsgHeartbeat, before.term + 100 + round),
                spoof(id, 99, MessageType::MsgAppend, before.term + 100 + round),
                spoof(
                    id,
                    99,
                    MessageType::MsgRequestVote,
                    before.term + 100 + round,
                ),
                // From a member id, but not the leader this node follows.
                spoof(id, follower, MessageType::MsgTimeoutNow, before.term),
                spoof(id, 99, MessageType::MsgTimeoutNow, before.term),
            ];
            cl.send(RaftBatch {
                from: 99,
                from_addr: String::new(),
                messages,
            })
            .await
            .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = c.nodes[&leader].status().await.unwrap();
    assert_eq!(
        (after.role.as_str(), after.term),
        ("leader", before.term),
        "{after:?}"
    );
    for id in c.nodes.keys() {
        let dropped = c.nodes[id].counters().dropped_messages_total;
        assert!(dropped >= 20, "node {id} dropped {dropped}");
    }
    // Proposals and membership changes from a non-member are refused.
    let mut cl = raftsnap::raft::transport_client(&c.addrs[&leader]).unwrap();
    let p = cl
        .propose(ProposeRequest {
            command: b"x".to_vec(),
            from: 99,
        })
        .await
        .unwrap_err();
    assert_eq!(p.code(), tonic::Code::PermissionDenied, "{p:?}");
    for (op, id, addr) in [(1, follower, ""), (0, 7, "127.0.0.1:1")] {
        let m = cl
            .change_membership(MembershipRequest {
                op,
                id,
                addr: addr.into(),
                from: 99,
            })
            .await
            .unwrap_err();
        assert_eq!(m.code(), tonic::Code::PermissionDenied, "{m:?}");
    }
    let st = c.nodes[&leader].status().await.unwrap();
    assert_eq!(st.voters, vec![1, 2, 3], "{st:?}");
    assert!(st.learners.is_empty(), "{st:?}");
    let last = c.put_many("b", 10).await;
    c.converge(last, 10).await;
    c.check_acked();
}
