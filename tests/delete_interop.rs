//! DELETE, DROP SERIES and DROP MEASUREMENT: answered as a real influxd
//! 1.6.7 answers them (the statements' results and every query after each
//! of them compared exactly), and carried by raft: every replica, a node
//! restarted (log replayed), and a new member that installs a snapshot
//! taken after the deletes hold exactly what is left.

mod common;

use common::differential::load;
use common::http::request;
use common::influxd::Influxd;
use common::procs::Procs;
use common::{check, wait};
use serde_json::Value;

const POINTS: &str = "cpu,host=a,dc=x v=1,i=10i 0\n\
cpu,host=a,dc=x v=2,i=20i 60000000000\n\
cpu,host=b,dc=x v=3,i=30i 60000000000\n\
cpu,host=a,dc=y v=5,i=50i 250000000000\n\
cpu,host=b,dc=y v=7 400000000000\n\
cpu,host=c v=-2.5,i=-4i 470000000000\n\
cpu,host=c v=9 1000000000000000000\n\
mem,host=a used=100i 30000000000\n\
mem,host=b used=300i 90000000000\n\
mem,host=c used=5i 1000000000000000000\n\
disk,host=a free=1i 10\n\
disk,host=b free=2i 20\n\
net,host=a rx=1i 1\n\
net,host=b rx=2i 2\n\
swap,host=a s=1i 1";

/// What is compared after each delete.
const CHECKS: &[&str] = &[
    "SELECT * FROM cpu",
    "SELECT * FROM mem",
    "SELECT * FROM disk",
    "SELECT * FROM net",
    "SELECT * FROM swap",
    "SHOW MEASUREMENTS",
    "SHOW SERIES",
    "SHOW TAG VALUES WITH KEY = host",
    "SELECT count(v) FROM cpu GROUP BY host",
];

fn ask(http: &str, q: &str) -> (u16, Value) {
    request("POST", http, "/query", &[("db", "d"), ("q", q)], &[], b"")
}

#[test]
fn deletes_answer_as_influxd_and_no_replica_brings_points_back() {
    let Some(real) = Influxd::start() else { return };
    // No background merges: the deleted points stay in their files,
    // hidden by tombstones, for every check below (and the backup).
    let mut p = Procs::start(
        3,
        &[
            "--snapshot-log-gap",
            "100000",
            "--trailing-logs",
            "0",
            "--merge-files",
            "0",
        ],
    );
    let leader = p.leader();
    let ours = p.nodes[&leader].http.clone();
    load(&[&real.http, &ours], "d", POINTS);
    // Half the points in TSM files, the rest cached, on every node.
    p.snapshot(leader);
    let more = "cpu,host=a,dc=x v=11 120000000000\ncpu,host=b,dc=x v=13 120000000000\nmem,host=a used=7i 60000000000";
    for http in [&real.http, &ours] {
        let (code, v) = request("POST", http, "/write", &[("db", "d")], &[], more.as_bytes());
        assert_eq!(code, 204, "{v}");
    }
    let steps = [
        "DELETE FROM cpu WHERE host = 'a' AND time >= 60s AND time < 300s",
        "DELETE FROM cpu WHERE time > 465s AND time < 500s",
        "DELETE FROM mem WHERE host =~ /a|c/",
        "DROP SERIES FROM cpu WHERE dc = 'y'",
        "DROP SERIES WHERE host = 'b' AND time > 0",
        "DROP MEASUREMENT disk",
        "DROP MEASUREMENT nope",
        "DELETE FROM /^ne/ WHERE host = 'a'",
        "DELETE FROM nope",
        "DELETE WHERE time < 0",
        "DELETE FROM cpu WHERE v > 1",
        "DROP SERIES FROM swap",
    ];
    let mut differ = Vec::new();
    let mut asked = 0;
    let mut compare = |what: &str, q: &str| {
        asked += 1;
        let (theirs, mine) = (ask(&real.http, q), ask(&ours, q));
        // influxd names the shard that refused first, in map order (it
        // varies from run to run): the number is not compared.
        let norm = |v: &(u16, Value)| {
            let re = regex::Regex::new(r"shard \d+: ").unwrap();
            (
                v.0,
                re.replace_all(&v.1.to_string(), "shard N: ").into_owned(),
            )
        };
        if norm(&theirs) != norm(&mine) {
            differ.push(format!(
                "after {what}: {q}\n  influxd {theirs:?}\n  tsnode  {mine:?}"
            ));
        }
    };
    for step in steps {
        compare(step, step);
        for q in CHECKS {
            compare(step, q);
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {asked} answers differ:\n{}",
        differ.len(),
        differ.join("\n")
    );

    // Every replica holds what the leader holds; so does a node restarted
    // (its log replayed over its last snapshot) and a new member that
    // installs a snapshot taken after the deletes.
    let expect: Vec<Value> = CHECKS.iter().map(|q| p.query(leader, "d", q)).collect();
    let same = |p: &Procs, id: u64| -> Result<(), String> {
        for (q, want) in CHECKS.iter().zip(&expect) {
            let got = p.query(id, "d", q);
            check(&got == want, || format!("node {id}: {q}: {got} != {want}"))?;
        }
        Ok(())
    };
    for id in 1..=3 {
        wait(&format!("node {id} agrees"), || same(&p, id));
    }
    let follower = (1..=3).find(|id| *id != leader).unwrap_or(2);
    p.kill(follower);
    p.spawn(follower);
    p.wait_http(follower);
    wait("the restarted follower agrees", || same(&p, follower));
    p.join_from_snapshot(4, leader);
    wait("the new member agrees", || same(&p, 4));

    // A backup taken now (by influxd's own tool) holds none of the deleted
    // points, though their files still do: restored into the real influxd
    // (whose restore ignores tombstone files) under a new name, it answers
    // as influxd's own database that took the same deletes.
    let dir = tempfile::tempdir().unwrap();
    let snapshotter = p.nodes[&leader].snapshotter.clone();
    common::influxd::portable("backup", &snapshotter, &["-db", "d"], dir.path(), || {
        p.log(leader)
    });
    real.restore(&["-db", "d", "-newdb", "restored"], dir.path());
    let restored = |q: &str| {
        request(
            "POST",
            &real.http,
            "/query",
            &[("db", "restored"), ("q", q)],
            &[],
            b"",
        )
    };
    wait(
        "the restored copy answers as the deleted-from database",
        || {
            for q in CHECKS {
                let (want, got) = (ask(&real.http, q), restored(q));
                check(want == got, || format!("{q}: restored {got:?} != {want:?}"))?;
            }
            Ok(())
        },
    );
}
