//! `tsnode` processes crashed at every failpoint of a save and of an install
//! (`FAILPOINTS=<point>=panic` in a `failpoints` build aborts the process
//! there), then restarted: they recover with their data and keep working.
#![cfg(feature = "failpoints")]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::procs::Procs;
use raftsnap::snapshot::copier::INSTALL_FAILPOINTS;
use raftsnap::snapshot::storage::SAVE_FAILPOINTS;

fn count(p: &Procs, id: u64) -> i64 {
    p.query(id, "db", "SELECT count(v) FROM m")["results"][0]["series"][0]["values"][0][1]
        .as_i64()
        .unwrap_or(0)
}

fn body(from: u64, n: u64) -> String {
    (from..from + n)
        .map(|i| format!("m,h=x{} v={i} {}\n", i % 3, (i + 1) * 1_000_000_000))
        .collect()
}

#[test]
fn a_node_crashed_at_each_save_step_restarts_with_its_data() {
    for point in SAVE_FAILPOINTS {
        let mut p = Procs::start(1, &[]);
        p.leader();
        p.query(1, "", "CREATE DATABASE db");
        assert!(p.write(1, "db", &body(0, 300)));
        // Restart with the failpoint armed, then ask for a snapshot.
        p.kill(1);
        p.spawn_env(1, &[("FAILPOINTS", &format!("{point}=panic"))]);
        p.wait_http(1);
        p.leader();
        assert_eq!(count(&p, 1), 300);
        let _ = ureq::post(&format!("http://{}/snapshot", p.nodes[&1].http)).send_empty();
        let st = p
            .wait_exit(1, 20)
            .unwrap_or_else(|| panic!("{point}: the node did not crash"));
        assert_eq!(st.signal(), Some(6), "{point}: {st}");
        // Restart clean: the data is there, a snapshot works, no temp/ left.
        p.spawn(1);
        p.wait_http(1);
        p.leader();
        let deadline = Instant::now() + Duration::from_secs(20);
        while count(&p, 1) != 300 {
            assert!(
                Instant::now() < deadline,
                "{point}: data lost: {}",
                p.log(1)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(p.write(1, "db", &body(300, 10)), "{point}");
        let snap = p.snapshot(1);
        assert!(snap["index"].as_u64().unwrap() > 0, "{point}: {snap}");
        assert!(
            !p.dir.path().join("node1/snapshots/temp").exists(),
            "{point}"
        );
        assert_eq!(count(&p, 1), 310);
    }
}

#[test]
fn a_follower_crashed_at_each_install_step_restarts_and_catches_up() {
    for point in INSTALL_FAILPOINTS
        .iter()
        .chain(["save_after_publish_rename"].iter())
    {
        let mut p = Procs::start(3, &["--snapshot-log-gap", "1000", "--trailing-logs", "0"]);
        let leader = p.leader();
        p.query(leader, "", "CREATE DATABASE db");
        let f = *p.nodes.keys().find(|i| **i != leader).unwrap();
        p.kill(f);
        for b in 0..5 {
            assert!(p.write(leader, "db", &body(b * 100, 100)));
        }
        p.snapshot(leader);
        p.spawn_env(f, &[("FAILPOINTS", &format!("{point}=panic"))]);
        let st = p
            .wait_exit(f, 30)
            .unwrap_or_else(|| panic!("{point}: the follower did not crash: {}", p.log(f)));
        assert_eq!(st.signal(), Some(6), "{point}: {st}");
        p.spawn(f);
        p.wait_http(f);
        let deadline = Instant::now() + Duration::from_secs(30);
        while count(&p, f) != 500 {
            assert!(
                Instant::now() < deadline,
                "{point}: follower did not catch up: {:?}\n{}",
                p.status(f),
                p.log(f)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn a_command_that_fails_at_apply_on_every_replica_leaves_them_equal_saving_and_compacting() {
    // Every node rejects, at apply, the commands that mention "poison".
    let p = Procs::start_env(
        3,
        &["--snapshot-log-gap", "20", "--trailing-logs", "5"],
        &[("FAILPOINTS", "apply::reject=return(poison)")],
    );
    let leader = p.leader();
    p.query(leader, "", "CREATE DATABASE db");
    let follower = *p.nodes.keys().find(|i| **i != leader).unwrap();
    for (i, via) in [leader, follower].into_iter().enumerate() {
        let (code, body) = p.write_answer(via, "db", &format!("poison v={i} {}", i + 1));
        assert_eq!(code, 400, "{body}");
        assert!(body.contains("rejected at apply"), "{body}");
    }
    for b in 0..40 {
        assert!(
            p.write(leader, "db", &body(b * 50, 50)),
            "{}",
            p.log(leader)
        );
    }
    for id in 1..=3u64 {
        let meta = p.snapshot(id);
        assert!(meta["index"].as_u64().unwrap() > 40, "node {id}: {meta}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in 1..=3u64 {
        while p.status(id).unwrap()["first_log_index"].as_u64().unwrap() <= 1 {
            assert!(Instant::now() < deadline, "node {id} never compacted");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(count(&p, id), 2000, "node {id}");
        let poison = p.query(id, "db", "SELECT count(v) FROM poison");
        assert!(
            poison["results"][0]["series"].is_null(),
            "node {id}: {poison}"
        );
        assert!(!p.log(id).contains("cannot apply"), "{}", p.log(id));
    }
}

#[test]
fn installs_to_a_peer_whose_every_install_fails_back_off() {
    let mut p = Procs::start(3, &["--snapshot-log-gap", "100000", "--trailing-logs", "0"]);
    let leader = p.leader();
    p.query(leader, "", "CREATE DATABASE db");
    let follower = *p.nodes.keys().find(|i| **i != leader).unwrap();
    p.kill(follower);
    for b in 0..10 {
        assert!(p.write(leader, "db", &body(b * 100, 100)));
    }
    let snap = p.snapshot(leader)["index"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.status(leader).unwrap()["first_log_index"]
        .as_u64()
        .unwrap()
        <= snap
    {
        assert!(Instant::now() < deadline, "leader never compacted");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every install on the follower fails after its files arrived.
    p.spawn_env(follower, &[("FAILPOINTS", "install_after_files=return")]);
    p.wait_http(follower);
    std::thread::sleep(Duration::from_secs(30));
    let st = p.status(leader).unwrap();
    let failing = st["snapshot"]["peer_install_failures"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|f| f["peer"].as_u64() == Some(follower))
                .cloned()
        })
        .unwrap_or_else(|| panic!("the leader shows no failing install to {follower}: {st}"));
    let attempts = failing["attempts"].as_u64().unwrap();
    assert!(
        (2..=10).contains(&attempts),
        "{attempts} attempts in 30 s: {failing}"
    );
    let fst = p.status(follower).unwrap();
    let last = &fst["snapshot"]["last_install_failure"];
    assert!(
        last["reason"]
            .as_str()
            .is_some_and(|r| r.contains("install_after_files")),
        "{fst}"
    );
    let failures = fst["snapshot"]["install_failures_total"].as_u64().unwrap();
    assert!(
        (2..=10).contains(&failures),
        "the follower failed {failures} installs in 30 s"
    );
    let metrics = ureq::get(&format!("http://{}/metrics", p.nodes[&leader].http))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.lines().any(|l| l
            .starts_with("raftsnap_snapshot_send_failures_total{kind=\"unavailable\"}")
            && !l.ends_with(" 0")),
        "{metrics}"
    );
    eprintln!("{attempts} install attempts to a failing peer in 30 s");
}
