//! Subscriptions as influxd's: `CREATE`/`SHOW`/`DROP SUBSCRIPTION` answered
//! as a real influxd 1.6.7 answers them, and the writes a 3-node tsnode
//! accepts forwarded once, whichever node took them: over HTTP into a real
//! influxd (which then answers as tsnode does), over UDP one datagram per
//! point, `ANY` in turn, nothing after `DROP`, and kept across a restart.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::differential::assert_same;
use common::influxd::Influxd;
use common::procs::Procs;
use serde_json::Value;

fn ask(http: &str, db: &str, q: &str) -> (u16, Value) {
    common::http::request("POST", http, "/query", &[("db", db), ("q", q)], &[], b"")
}

fn write(http: &str, db: &str, body: &str) {
    let (code, v) =
        common::http::request("POST", http, "/write", &[("db", db)], &[], body.as_bytes());
    assert_eq!(code, 204, "{http}: {v}");
}

/// Waits until `f` is true (30 s at most).
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The datagrams `sock` receives until `n` lines came.
fn receive_lines(sock: &UdpSocket, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut buf = vec![0u8; 65_536];
    let deadline = Instant::now() + Duration::from_secs(30);
    while lines.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {lines:?} of {n} lines came"
        );
        if let Ok(len) = sock.recv(&mut buf) {
            let text = String::from_utf8(buf[..len].to_vec()).expect("UTF-8 datagram");
            lines.extend(text.lines().map(str::to_string));
        }
    }
    lines
}

/// Waits until the node at `http` lists subscription `name` (or no
/// longer lists it).
fn subs_on(http: &str, name: &str, listed: bool) {
    wait_for(&format!("{http} to list {name}: {listed}"), || {
        let v = ask(http, "", "SHOW SUBSCRIPTIONS").1;
        let names: Vec<Value> = v["results"][0]["series"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
            .map(|row| row[1].clone())
            .collect();
        names.contains(&Value::from(name)) == listed
    });
}

fn udp() -> (UdpSocket, String) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let addr = format!("udp://{}", sock.local_addr().unwrap());
    (sock, addr)
}

#[test]
fn subscription_statements_answer_as_influxd() {
    let Some(real) = Influxd::start() else { return };
    let p = Procs::start(1, &[]);
    let ours = p.nodes[&p.leader()].http.clone();
    for http in [&real.http, &ours] {
        assert_eq!(ask(http, "", "CREATE DATABASE d").0, 200);
    }
    let queries = [
        "SHOW SUBSCRIPTIONS",
        "CREATE SUBSCRIPTION s0 ON d.autogen DESTINATIONS ALL 'http://127.0.0.1:1'",
        "CREATE SUBSCRIPTION s1 ON d.autogen DESTINATIONS ANY 'udp://127.0.0.1:2', 'http://localhost:3'",
        "SHOW SUBSCRIPTIONS",
        "CREATE SUBSCRIPTION s0 ON d.autogen DESTINATIONS ALL 'http://127.0.0.1:1'",
        "CREATE SUBSCRIPTION s2 ON d.autogen DESTINATIONS ALL 'ftp://127.0.0.1:1'",
        "CREATE SUBSCRIPTION s2 ON d.autogen DESTINATIONS ALL 'http://127.0.0.1'",
        "CREATE SUBSCRIPTION s2 ON d.nope DESTINATIONS ALL 'http://127.0.0.1:1'",
        "CREATE SUBSCRIPTION s2 ON nope.autogen DESTINATIONS ALL 'http://127.0.0.1:1'",
        "CREATE SUBSCRIPTION s2 ON d.autogen DESTINATIONS SOME 'http://127.0.0.1:1'",
        "CREATE SUBSCRIPTION \"a b\" ON \"d\".\"autogen\" DESTINATIONS ALL 'https://[::1]:8'",
        "SHOW SUBSCRIPTIONS",
        "DROP SUBSCRIPTION s9 ON d.autogen",
        "DROP SUBSCRIPTION s0 ON d.autogen",
        "DROP SUBSCRIPTION s0 ON d.nope",
        "SHOW SUBSCRIPTIONS",
        "DROP SUBSCRIPTION s1 ON d.autogen",
        "DROP SUBSCRIPTION \"a b\" ON d.autogen",
        "SHOW SUBSCRIPTIONS",
    ];
    assert_same(
        &queries,
        |q| ask(&real.http, "d", q),
        |q| ask(&ours, "d", q),
    );
}

#[test]
fn writes_are_forwarded_once_from_any_node() {
    let Some(real) = Influxd::start() else { return };
    let mut p = Procs::start(3, &[]);
    let leader = p.leader();
    let follower = *p.nodes.keys().find(|id| **id != leader).unwrap();
    let (lhttp, fhttp) = (
        p.nodes[&leader].http.clone(),
        p.nodes[&follower].http.clone(),
    );
    for (http, db) in [(&real.http, "sub"), (&lhttp, "sub"), (&lhttp, "other")] {
        assert_eq!(ask(http, "", &format!("CREATE DATABASE {db}")).0, 200);
    }
    let (udp_all, udp_all_addr) = udp();
    let create = format!(
        "CREATE SUBSCRIPTION k ON sub.autogen DESTINATIONS ALL 'http://{}', '{udp_all_addr}'",
        real.http
    );
    let (code, v) = ask(&lhttp, "", &create);
    assert_eq!(code, 200, "{v}");
    assert!(v["results"][0].get("error").is_none(), "{v}");
    subs_on(&fhttp, "k", true);
    // Writes through a follower and through the leader, with names and
    // values that need escaping.
    let mut sent = Vec::new();
    for (i, http) in [&fhttp, &lhttp, &fhttp].into_iter().enumerate() {
        let body = format!(
            "m,t=a\\ b,h=n{i} v={}.5,s=\"q\\\"x\",n={i}i,ok=true {}\n\
             m,t=c v=-{i} {}\n",
            i,
            1_000 + i,
            2_000 + i
        );
        write(http, "sub", &body);
        sent.push(body);
    }
    // Another database's writes are not forwarded.
    write(&fhttp, "other", "m v=1 1\n");
    let count = |http: &str| {
        ask(http, "sub", "SELECT count(v) FROM m").1["results"][0]["series"][0]["values"][0][1]
            .as_i64()
            .unwrap_or(0)
    };
    wait_for("influxd to hold the forwarded points", || {
        count(&real.http) == 6
    });
    // influxd, fed only by tsnode's forwarding, answers as tsnode does.
    let queries = [
        "SELECT * FROM m",
        "SELECT * FROM m GROUP BY *",
        "SHOW SERIES",
        "SHOW FIELD KEYS",
    ];
    assert_same(
        &queries,
        |q| ask(&real.http, "sub", q),
        |q| ask(&lhttp, "sub", q),
    );
    // UDP: one datagram per point, each write once.
    let mut lines = receive_lines(&udp_all, 6);
    lines.sort();
    let mut want: Vec<String> = Vec::new();
    for b in &sent {
        want.extend(b.lines().map(|l| {
            // tsnode writes tags sorted, floats as Rust prints them.
            let (ours, _) = raftsnap::tsdb::line_protocol::parse(
                l,
                raftsnap::tsdb::line_protocol::Precision::Nanoseconds,
                0,
            );
            let mut s = String::new();
            raftsnap::tsdb::line_protocol::encode_line(&mut s, &ours[0]);
            s.trim_end().to_string()
        }));
    }
    want.sort();
    assert_eq!(lines, want);
    // Nothing more came (a write forwarded twice would be here by now:
    // the influxd destination's copies already all arrived).
    let mut buf = [0u8; 1024];
    assert!(udp_all.recv(&mut buf).is_err(), "a point came twice");

    // ANY: each write to one destination, in turn.
    let (a, a_addr) = udp();
    let (b, b_addr) = udp();
    let create =
        format!("CREATE SUBSCRIPTION t ON sub.autogen DESTINATIONS ANY '{a_addr}', '{b_addr}'");
    assert_eq!(ask(&lhttp, "", &create).0, 200);
    // A node forwards to the subscriptions it has applied when it takes a
    // write: the follower learns of a new one from the log.
    subs_on(&fhttp, "t", true);
    for i in 0..4 {
        write(&fhttp, "sub", &format!("any v={i} {}\n", 10_000 + i));
    }
    assert_eq!(receive_lines(&a, 2).len(), 2);
    assert_eq!(receive_lines(&b, 2).len(), 2);
    // (`k` sent each of them to its destinations too.)
    let all = receive_lines(&udp_all, 4);
    assert!(all.iter().all(|l| l.starts_with("any ")), "{all:?}");

    // After DROP nothing is forwarded to that subscription's destinations:
    // a later write to the same destination (one queue, in order) arrives
    // alone.
    assert_eq!(ask(&lhttp, "", "DROP SUBSCRIPTION k ON sub.autogen").0, 200);
    subs_on(&fhttp, "k", false);
    write(&fhttp, "sub", "gone v=1 1\n");
    let create = format!("CREATE SUBSCRIPTION k2 ON sub.autogen DESTINATIONS ALL '{udp_all_addr}'");
    assert_eq!(ask(&lhttp, "", &create).0, 200);
    subs_on(&fhttp, "k2", true);
    write(&fhttp, "sub", "after v=1 1\n");
    let got = receive_lines(&udp_all, 1);
    assert_eq!(got, vec!["after v=1 1".to_string()]);

    // Subscriptions are kept across a restart (they live in the metastore,
    // which snapshots and the log carry).
    p.kill(follower);
    p.spawn(follower);
    p.wait_http(follower);
    let fhttp = p.nodes[&follower].http.clone();
    wait_for("the restarted node to list the subscriptions", || {
        let v = ask(&fhttp, "", "SHOW SUBSCRIPTIONS").1;
        v["results"][0]["series"][0]["values"]
            .as_array()
            .is_some_and(|v| v.len() == 2)
    });
    write(&fhttp, "sub", "restarted v=2 2\n");
    let got = receive_lines(&udp_all, 1);
    assert_eq!(got, vec!["restarted v=2 2".to_string()]);

    // The leader took one write of 2 points, sent to both destinations
    // of `k`: influxd's `subscriber` statistics count them.
    let (code, vars) = common::http::request("GET", &lhttp, "/debug/vars", &[], &[], b"");
    assert_eq!(code, 200, "{vars}");
    let sub = &vars["subscriber"]["values"];
    assert_eq!(
        (sub["pointsWritten"].as_u64(), sub["writeFailures"].as_u64()),
        (Some(4), Some(0)),
        "{sub}"
    );
    // What `SELECT … INTO` writes is forwarded too, as influxd's.
    let (code, v) = ask(&fhttp, "sub", "SELECT v INTO copied FROM restarted");
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["results"][0]["series"][0]["values"][0][1], 1, "{v}");
    let got = receive_lines(&udp_all, 1);
    assert_eq!(got, vec!["copied v=2 2".to_string()]);
}
