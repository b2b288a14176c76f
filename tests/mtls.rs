//! Mutual TLS between nodes (`--cluster-ca`, `--node-certificate`,
//! `--node-private-key`), as a process test: a 3-node cluster writes,
//! loses its leader and elects another, and a fourth node joins and
//! installs a snapshot, all over mTLS. Then, against it: a client without a
//! certificate, one whose certificate another CA signed, and a cluster
//! member's certificate used to speak for another node can neither join,
//! send raft messages, propose, change the membership, nor fetch a
//! snapshot file; nothing they sent changed the leader, the members or the
//! data.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::procs::Procs;
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use raftsnap::proto::file::GetMetaRequest;
use raftsnap::proto::file::file_service_client::FileServiceClient;
use raftsnap::proto::raft::raft_client::RaftClient;
use raftsnap::proto::raft::{MembershipRequest, OfferSnapshotRequest, ProposeRequest, RaftBatch};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Ca {
    fn new() -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        Ca {
            cert: p.self_signed(&key).unwrap(),
            key,
        }
    }

    /// (certificate PEM, key PEM) naming `tsnode` and `node-<id>`.
    fn node(&self, id: u64) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["tsnode".to_string(), format!("node-{id}")])
            .unwrap()
            .signed_by(&key, &self.cert, &self.key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A gRPC channel to `addr` over TLS trusting `ca`, presenting `me` if
/// given.
async fn channel(
    addr: &str,
    ca: &str,
    me: Option<&(String, String)>,
) -> Result<tonic::transport::Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("tsnode");
    if let Some((c, k)) = me {
        tls = tls.identity(Identity::from_pem(c, k));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

fn heartbeat(to: u64, from: u64, term: u64) -> Vec<u8> {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgHeartbeat);
    m.to = to;
    m.from = from;
    m.term = term;
    m.write_to_bytes().unwrap()
}

/// Every request an intruder can make, as node `from`, to `addr`; each
/// must fail. `what` names the intruder in the messages.
/// (A node with the CA's certificate naming itself may ask to join: that
/// is how members are added. `as_itself` skips that request.)
async fn every_request_fails(
    what: &str,
    ch: Result<tonic::transport::Channel, String>,
    to: u64,
    from: u64,
    term: u64,
    as_itself: bool,
) {
    let ch = match ch {
        Err(e) => {
            // Refused in the handshake: nothing can be sent at all.
            eprintln!("{what}: refused at connect: {e}");
            return;
        }
        Ok(ch) => ch,
    };
    let mut raft = RaftClient::new(ch.clone());
    let r = raft
        .send(RaftBatch {
            from,
            from_addr: String::new(),
            messages: vec![heartbeat(to, from, term + 100)],
        })
        .await;
    // A proven non-member's messages get an answer and are dropped, as
    // every non-member's are (the leader's term is checked at the end).
    assert!(r.is_err() || as_itself, "{what}: raft messages accepted");
    let r = raft
        .propose(ProposeRequest {
            command: vec![1, 2, 3],
            from,
        })
        .await;
    assert!(r.is_err(), "{what}: a proposal accepted");
    if !as_itself {
        let r = raft
            .change_membership(MembershipRequest {
                op: 0,
                id: from,
                addr: "127.0.0.1:1".into(),
                from,
            })
            .await;
        assert!(r.is_err(), "{what}: a join accepted");
    }
    let r = raft
        .change_membership(MembershipRequest {
            op: 1,
            id: 2,
            addr: String::new(),
            from,
        })
        .await;
    assert!(r.is_err(), "{what}: a removal accepted");
    let r = raft
        .offer_snapshot(OfferSnapshotRequest {
            from,
            from_addr: String::new(),
            min_index: 0,
            as_source: true,
        })
        .await;
    assert!(r.is_err(), "{what}: a snapshot offered");
    let r = FileServiceClient::new(ch)
        .get_meta(GetMetaRequest { reader_id: 1 })
        .await;
    // Without a proven identity no reader id is even learned; a wrong one
    // is refused as well.
    assert!(r.is_err(), "{what}: a snapshot's meta table served");
}

fn count(p: &Procs, id: u64) -> Option<i64> {
    p.query(id, "db", "SELECT count(v) FROM m")["results"][0]["series"][0]["values"][0][1].as_i64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_mutual_tls_refuses_every_intruder() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.cert.pem()).unwrap();
    for id in 1..=4u64 {
        let (c, k) = ca.node(id);
        std::fs::write(dir.path().join(format!("node{id}.pem")), c).unwrap();
        std::fs::write(dir.path().join(format!("node{id}.key")), k).unwrap();
    }
    let d = dir.path().to_path_buf();
    let per_node: common::procs::PerNode = Arc::new(move |id| {
        vec![
            "--cluster-ca".into(),
            d.join("ca.pem").display().to_string(),
            "--node-certificate".into(),
            d.join(format!("node{id}.pem")).display().to_string(),
            "--node-private-key".into(),
            d.join(format!("node{id}.key")).display().to_string(),
        ]
    });
    let mut p = tokio::task::block_in_place(|| {
        Procs::start_per_node(
            3,
            &["--snapshot-log-gap", "100000", "--trailing-logs", "0"],
            per_node,
        )
    });
    let p = &mut p;
    tokio::task::block_in_place(|| {
        let leader = p.leader();
        p.query(leader, "", "CREATE DATABASE db");
        for i in 0..50 {
            assert!(p.write(leader, "db", &format!("m v={i} {}", i + 1)));
        }
        // The leader dies; the others elect one over mTLS and go on.
        p.kill(leader);
        let deadline = Instant::now() + Duration::from_secs(30);
        let next = loop {
            let others: Vec<u64> = p.nodes.keys().copied().filter(|i| *i != leader).collect();
            if let Some(l) = others
                .iter()
                .find(|i| p.status(**i).is_some_and(|s| s["role"] == "leader"))
            {
                break *l;
            }
            assert!(
                Instant::now() < deadline,
                "no new leader:\n{}",
                p.log(others[0])
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        for i in 50..100 {
            assert!(p.write(next, "db", &format!("m v={i} {}", i + 1)));
        }
        p.spawn(leader);
        p.wait_http(leader);
        // A snapshot, the log behind it compacted; a new node installs it.
        let snap = p.snapshot(next)["index"].as_u64().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while p
            .status(next)
            .and_then(|s| s["first_log_index"].as_u64())
            .is_none_or(|f| f <= snap)
        {
            assert!(Instant::now() < deadline, "{:?}", p.status(next));
            std::thread::sleep(Duration::from_millis(100));
        }
        p.join(4, next);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(1..=4).all(|id| count(p, id) == Some(100)) {
            assert!(
                Instant::now() < deadline,
                "counts {:?}\n{}",
                (1..=4).map(|id| count(p, id)).collect::<Vec<_>>(),
                p.log(4)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let installs = p.status(4).unwrap()["snapshot"]["installs_total"].as_u64();
        assert!(installs.is_some_and(|n| n >= 1), "{:?}", p.status(4));
    });

    // Node 4 becomes a voter once caught up; wait for it, so that the
    // membership compared below is settled.
    let (leader, before) = tokio::task::block_in_place(|| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let leader = p.leader();
            let st = p.status(leader).unwrap();
            if st["voters"].as_array().is_some_and(|v| v.len() == 4) {
                return (leader, st);
            }
            assert!(
                Instant::now() < deadline,
                "node 4 never became a voter: {st}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let term = before["term"].as_u64().unwrap();
    let addr = p.nodes[&leader].raft.clone();
    let member = *p.nodes.keys().find(|i| **i != leader).unwrap();

    // 1. No certificate at all, over plain HTTP/2 and over TLS.
    let plain = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| e.to_string());
    every_request_fails("plain gRPC", plain, leader, member, term, false).await;
    let anon = channel(&addr, &ca.cert.pem(), None).await;
    every_request_fails(
        "TLS without a client certificate",
        anon,
        leader,
        member,
        term,
        false,
    )
    .await;
    // 2. A certificate from another CA, naming a member.
    let rogue = Ca::new();
    let forged = rogue.node(member);
    let ch = channel(&addr, &ca.cert.pem(), Some(&forged)).await;
    every_request_fails("another CA's certificate", ch, leader, member, term, false).await;
    let ch = channel(&addr, &ca.cert.pem(), Some(&rogue.node(9))).await;
    every_request_fails("another CA's node 9 joining", ch, leader, 9, term, false).await;
    // 3. The cluster CA's certificate of node 9 (not a member), speaking as
    //    a member.
    let nine = ca.node(9);
    let ch = channel(&addr, &ca.cert.pem(), Some(&nine)).await;
    assert!(
        ch.is_ok(),
        "a CA-signed client is let through the handshake"
    );
    every_request_fails(
        "node 9's certificate as a member",
        ch,
        leader,
        member,
        term,
        false,
    )
    .await;
    //    … and as itself: not a member, so still nothing.
    let ch = channel(&addr, &ca.cert.pem(), Some(&nine)).await;
    every_request_fails("node 9 as itself", ch, leader, 9, term, true).await;

    tokio::task::block_in_place(|| {
        let after = p.status(leader).unwrap();
        assert_eq!(after["role"], "leader", "{after}");
        assert_eq!(after["term"], before["term"], "{after}");
        assert_eq!(after["voters"], before["voters"], "{after}");
        assert_eq!(after["learners"], before["learners"], "{after}");
        assert!((1..=4).all(|id| count(p, id) == Some(100)));
    });
}
