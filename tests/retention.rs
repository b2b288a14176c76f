//! Retention as influxd enforces it: retention policies' shard durations
//! normalised and their errors (compared with a real influxd 1.6.7),
//! points older than a policy keeps refused with influxd's answer, and
//! expired shard groups dropped by the leader on schedule, on every
//! replica.

mod common;

use common::http::request;
use common::influxd::Influxd;
use common::procs::Procs;
use common::{check, wait};
use serde_json::Value;

fn ask(http: &str, q: &str) -> (u16, Value) {
    request("POST", http, "/query", &[("db", "r"), ("q", q)], &[], b"")
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

const HOUR: i64 = 3_600_000_000_000;

#[test]
fn retention_policies_and_writes_beyond_them_answer_as_influxd() {
    let Some(real) = Influxd::start() else { return };
    let p = Procs::start(1, &[]);
    let ours = p.nodes[&p.leader()].http.clone();
    let mut differ = Vec::new();
    let mut asked = 0;
    for q in [
        "CREATE DATABASE r",
        "CREATE RETENTION POLICY a ON r DURATION 1h REPLICATION 1",
        "CREATE RETENTION POLICY b ON r DURATION 3d REPLICATION 1",
        "CREATE RETENTION POLICY c ON r DURATION 200d REPLICATION 1",
        "CREATE RETENTION POLICY d ON r DURATION 30m REPLICATION 1",
        "CREATE RETENTION POLICY e ON r DURATION 2h REPLICATION 1 SHARD DURATION 30m",
        "CREATE RETENTION POLICY f ON r DURATION 2h REPLICATION 1 SHARD DURATION 5h",
        "CREATE RETENTION POLICY g ON r DURATION INF REPLICATION 1 SHARD DURATION 1m",
        "CREATE RETENTION POLICY h ON r DURATION 2d REPLICATION 1",
        "CREATE RETENTION POLICY i ON r DURATION 180d REPLICATION 1",
        "CREATE RETENTION POLICY j ON r DURATION 47h REPLICATION 1",
        "ALTER RETENTION POLICY a ON r DURATION 4d",
        "ALTER RETENTION POLICY b ON r SHARD DURATION 10m",
        "ALTER RETENTION POLICY b ON r SHARD DURATION 100h",
        "ALTER RETENTION POLICY h ON r DURATION 30m",
        "ALTER RETENTION POLICY h ON r DURATION 1h",
        "ALTER RETENTION POLICY g ON r DURATION 2h DEFAULT",
        "SHOW RETENTION POLICIES ON r",
    ] {
        asked += 1;
        let (theirs, mine) = (ask(&real.http, q), ask(&ours, q));
        if theirs != mine {
            differ.push(format!("{q}\n  influxd {theirs:?}\n  tsnode  {mine:?}"));
        }
    }
    // Writes: into a 1h policy, a point of 2h ago is refused, one of now
    // is kept; a body with only old points, and one with a bad line too.
    let now = now_ns();
    let bodies = [
        ("e", format!("m v=1 {}\nm v=2 {now}", now - 2 * HOUR)),
        (
            "e",
            format!("m v=3 {}\nm v=4 {}", now - 3 * HOUR, now - 4 * HOUR),
        ),
        (
            "e",
            format!("m v=5 {}\nm v=6 x\nm v=7 {now}", now - 3 * HOUR),
        ),
        ("autogen", format!("m v=8 {}", now - 3 * HOUR)),
        ("c", "m v=9 1".to_string()),
    ];
    for (rp, body) in &bodies {
        asked += 1;
        let w = |http: &str| {
            request(
                "POST",
                http,
                "/write",
                &[("db", "r"), ("rp", rp)],
                &[],
                body.as_bytes(),
            )
        };
        let (theirs, mine) = (w(&real.http), w(&ours));
        if theirs != mine {
            differ.push(format!(
                "write {rp} {body:?}\n  influxd {theirs:?}\n  tsnode  {mine:?}"
            ));
        }
    }
    for q in [
        "SELECT v FROM r.e.m",
        "SELECT v FROM r.autogen.m",
        "SELECT count(v) FROM r.c.m",
    ] {
        asked += 1;
        let (theirs, mine) = (ask(&real.http, q), ask(&ours, q));
        if theirs != mine {
            differ.push(format!("{q}\n  influxd {theirs:?}\n  tsnode  {mine:?}"));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {asked} answers differ:\n{}",
        differ.len(),
        differ.join("\n")
    );
}

#[test]
fn the_leader_drops_expired_shard_groups_on_every_replica() {
    let p = Procs::start(3, &["--retention-check-interval", "1s"]);
    let leader = p.leader();
    let now = now_ns();
    let q = |id: u64, q: &str| p.query(id, "", q);
    q(
        leader,
        "CREATE DATABASE x; CREATE RETENTION POLICY short ON x DURATION 4h REPLICATION 1 SHARD DURATION 1h DEFAULT",
    );
    // Points of 3 hours and of 10 minutes ago, kept by a 4h policy.
    let body = format!("m v=1 {}\nm v=2 {}", now - 3 * HOUR, now - HOUR / 6);
    assert!(p.write(leader, "x", &body));
    let count = |p: &Procs, id: u64| {
        p.query(id, "x", "SELECT count(v) FROM m")["results"][0]["series"][0]["values"][0][1]
            .clone()
    };
    for id in 1..=3 {
        wait(&format!("node {id} holds both points"), || {
            let c = count(&p, id);
            check(c == 2, || format!("{c}"))
        });
    }
    // Keeping 1h now, the older point's group has expired: the leader
    // drops it within a check or two, and every replica follows.
    q(leader, "ALTER RETENTION POLICY short ON x DURATION 1h");
    for id in 1..=3 {
        wait(&format!("node {id} dropped the expired group"), || {
            let c = count(&p, id);
            check(c == 1, || format!("{c}"))
        });
    }
}
