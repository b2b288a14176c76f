//! Process tests: real `tsnode serve` processes on free loopback ports,
//! SIGKILLed and restarted; every child is reaped.

mod common;

use std::time::{Duration, Instant};

use common::procs::Procs;

fn count(p: &Procs, id: u64, db: &str) -> i64 {
    p.query(id, db, "SELECT count(v) FROM m")["results"][0]["series"][0]["values"][0][1]
        .as_i64()
        .unwrap_or(0)
}

#[test]
fn a_killed_follower_catches_up_by_snapshot_install_and_counts_agree() {
    let mut p = Procs::start(3, &["--snapshot-log-gap", "20", "--trailing-logs", "5"]);
    let leader = p.leader();
    p.query(leader, "", "CREATE DATABASE db");
    let follower = *p.nodes.keys().find(|i| **i != leader).unwrap();
    let batch = |b: u64| {
        (0..100)
            .map(|i| {
                format!(
                    "m,host=h{} v={i} {}\n",
                    i % 5,
                    (b * 100 + i + 1) * 1_000_000_000
                )
            })
            .collect::<String>()
    };
    for b in 0..5 {
        assert!(p.write(leader, "db", &batch(b)));
    }
    p.kill(follower);
    for b in 5..60 {
        assert!(p.write(leader, "db", &batch(b)), "{}", p.log(leader));
    }
    p.snapshot(leader);
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.status(leader).unwrap()["first_log_index"]
        .as_u64()
        .unwrap()
        <= 10
    {
        assert!(Instant::now() < deadline, "leader never compacted");
        std::thread::sleep(Duration::from_millis(50));
    }
    p.spawn(follower);
    p.wait_http(follower);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if count(&p, follower, "db") == 6000 {
            // A linearizable read waits for the install: status after it.
            let st = p.status(follower).unwrap();
            assert!(
                st["snapshot"]["installs_total"].as_u64().unwrap() >= 1,
                "{st}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "follower did not catch up: {:?}\n{}",
            p.status(follower),
            p.log(follower)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for id in 1..=3 {
        assert_eq!(count(&p, id, "db"), 6000, "node {id}");
    }
}

#[test]
fn killing_the_leader_during_writes_loses_no_acknowledged_write() {
    let mut p = Procs::start(3, &["--snapshot-log-gap", "50", "--trailing-logs", "10"]);
    let leader = p.leader();
    p.query(leader, "", "CREATE DATABASE db");
    let via = *p.nodes.keys().find(|i| **i != leader).unwrap();
    let mut acked = Vec::new();
    let mut acked_after_kill = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0u64;
    while acked_after_kill < 100 {
        assert!(
            Instant::now() < deadline,
            "writes did not resume after the leader died:\n{}",
            p.log(via)
        );
        if i == 150 {
            p.kill(leader);
        }
        let line = format!("m,k=p{i} v={i} {}\n", (i + 1) * 1_000_000_000);
        if p.write(via, "db", &line) {
            acked.push(i);
            if i >= 150 {
                acked_after_kill += 1;
            }
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
        i += 1;
    }
    let new_leader = p.leader();
    assert_ne!(new_leader, leader);
    // Every acknowledged point is on both surviving nodes.
    for id in p
        .nodes
        .keys()
        .copied()
        .filter(|i| *i != leader)
        .collect::<Vec<_>>()
    {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = p.query(id, "db", "SELECT v FROM m");
            let vals: std::collections::BTreeSet<u64> = got["results"][0]["series"][0]["values"]
                .as_array()
                .map(|a| a.iter().map(|r| r[1].as_f64().unwrap() as u64).collect())
                .unwrap_or_default();
            let missing: Vec<&u64> = acked.iter().filter(|i| !vals.contains(i)).collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} lost acknowledged writes {missing:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn a_follower_killed_during_an_install_resumes_and_fetches_less_than_the_whole_snapshot() {
    // 1 MiB/s of receive rate: a ~4 MB snapshot takes seconds to install.
    let mut p = Procs::start(
        3,
        &[
            "--snapshot-log-gap",
            "1000",
            "--trailing-logs",
            "0",
            "--snapshot-recv-rate",
            "1MiB/s",
        ],
    );
    let leader = p.leader();
    p.query(leader, "", "CREATE DATABASE db");
    let follower = *p.nodes.keys().find(|i| **i != leader).unwrap();
    p.kill(follower);
    // Strings of pseudo-random text barely compress: ~4 MB of TSM.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for b in 0..8u64 {
        let mut body = String::new();
        for i in 0..500u64 {
            let s: String = (0..1000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (b'a' + (x % 26) as u8) as char
                })
                .collect();
            body.push_str(&format!(
                "m,shard=s{} v={i},s=\"{s}\" {}\n",
                i % 4,
                (b * 500 + i + 1) * 1_000_000_000
            ));
        }
        assert!(p.write(leader, "db", &body), "{}", p.log(leader));
    }
    let snap = p.snapshot(leader);
    let total = p.status(leader).unwrap()["snapshot"]["bytes"]
        .as_u64()
        .unwrap();
    assert!(
        total > 3_000_000,
        "snapshot of {total} bytes is too small for this test ({snap})"
    );
    p.spawn(follower);
    p.wait_http(follower);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = p.status(follower).unwrap();
        if st["snapshot"]["install"]["bytes_done"]
            .as_u64()
            .unwrap_or(0)
            > 1_000_000
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "install never got going: {st}\n{}",
            p.log(follower)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    p.kill(follower);
    p.spawn(follower);
    p.wait_http(follower);
    let deadline = Instant::now() + Duration::from_secs(90);
    while count(&p, follower, "db") != 4000 {
        assert!(
            Instant::now() < deadline,
            "follower did not finish: {:?}\n{}",
            p.status(follower),
            p.log(follower)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let st = p.status(follower).unwrap();
    let fetched = st["snapshot"]["install_bytes_total"].as_u64().unwrap();
    assert!(
        st["snapshot"]["installs_total"].as_u64().unwrap() >= 1,
        "{st}"
    );
    eprintln!("resumed install: the restarted follower fetched {fetched} of {total} bytes");
    assert!(
        fetched < total,
        "the second install fetched {fetched} of {total} bytes: nothing was resumed"
    );
}
