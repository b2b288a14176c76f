//! Continuous queries and `SELECT … INTO` as influxd has them: created,
//! listed (the stored statement, qualified as influxd qualifies it) and
//! dropped, and INTO's rows written back — compared with a real influxd
//! 1.6.7; and a continuous query run by the leader on schedule, its rows
//! on every replica.

mod common;

use common::differential::{assert_same, load};
use common::http::request;
use common::influxd::Influxd;
use common::procs::Procs;
use common::{check, wait};
use serde_json::Value;

fn ask(http: &str, q: &str) -> (u16, Value) {
    request("POST", http, "/query", &[("db", "c"), ("q", q)], &[], b"")
}

const POINTS: &str = "m,host=a v=1,w=2i,s=\"x\" 1000000000\n\
m,host=a v=2.5,w=3i 2000000000\n\
m,host=b v=4,w=5i,s=\"y\" 3000000000\n\
m,host=b w=7i 4000000000\n\
m,host=c v=-1 5000000000\n\
m,host=c v=2 65000000000";

#[test]
fn continuous_queries_and_select_into_answer_as_influxd() {
    let Some(real) = Influxd::start() else { return };
    let p = Procs::start(1, &[]);
    let ours = p.nodes[&p.leader()].http.clone();
    for http in [&real.http, &ours] {
        ask(http, "CREATE DATABASE c2");
    }
    load(&[&real.http, &ours], "c", POINTS);
    let steps = [
        "SHOW CONTINUOUS QUERIES",
        "CREATE CONTINUOUS QUERY cq1 ON c BEGIN SELECT mean(v) INTO m_1m FROM m GROUP BY time(1m) END",
        "CREATE CONTINUOUS QUERY \"cq 2\" ON c RESAMPLE EVERY 2m FOR 10m BEGIN SELECT max(v) AS mx, count(w) INTO c.autogen.m2 FROM m WHERE host = 'a' GROUP BY time(1m), host fill(0) END",
        "CREATE CONTINUOUS QUERY cq3 ON c BEGIN SELECT v INTO x FROM m END",
        "CREATE CONTINUOUS QUERY cq1 ON c BEGIN SELECT mean(v) INTO m_1m FROM m GROUP BY time(1m) END",
        "CREATE CONTINUOUS QUERY cq1 ON c BEGIN SELECT mean(v) INTO m_2m FROM m GROUP BY time(1m) END",
        "CREATE CONTINUOUS QUERY cq4 ON nodb BEGIN SELECT mean(v) INTO m_1m FROM m GROUP BY time(1m) END",
        "CREATE CONTINUOUS QUERY cq5 ON c2 RESAMPLE FOR 1h BEGIN SELECT sum(w) INTO c2..agg FROM c.autogen.m GROUP BY time(30m, 5m), * END",
        "SHOW CONTINUOUS QUERIES",
        "DROP CONTINUOUS QUERY nope ON c",
        "DROP CONTINUOUS QUERY cq1 ON c",
        "SHOW CONTINUOUS QUERIES",
        "SELECT mean(v) INTO c.autogen.mm FROM m WHERE time >= 0 AND time < 2m GROUP BY time(1s), host",
        "SELECT * FROM mm",
        "SELECT * FROM mm GROUP BY *",
        "SELECT v, host INTO m3 FROM m",
        "SELECT * FROM m3",
        "SELECT count(w), sum(v) INTO c2.autogen.totals FROM m GROUP BY host",
        "SELECT * FROM c2.autogen.totals GROUP BY *",
        "SELECT mean(v) INTO nodb.autogen.x FROM m",
        "SELECT nope INTO m4 FROM m",
        "SHOW MEASUREMENTS",
        // Downsampling every measurement into another database at once.
        "CREATE CONTINUOUS QUERY cq6 ON c BEGIN SELECT mean(*) INTO c2.autogen.:MEASUREMENT FROM /.*/ GROUP BY time(1m), * END",
        "CREATE CONTINUOUS QUERY cq7 ON c BEGIN SELECT max(v) INTO c2..:measurement FROM c../^m/ GROUP BY time(5m) END",
        "SHOW CONTINUOUS QUERIES",
        // Over a subquery; every retention policy named must exist.
        "CREATE CONTINUOUS QUERY cq8 ON c BEGIN SELECT mean(mx) INTO c.autogen.of_max FROM (SELECT max(v) AS mx FROM m GROUP BY time(1m), host) GROUP BY time(5m) END",
        "CREATE CONTINUOUS QUERY cq9 ON c RESAMPLE EVERY 2m BEGIN SELECT count(x) INTO rollups FROM (SELECT v AS x FROM c.autogen./^m/ WHERE host = 'a') GROUP BY time(5m), host END",
        "CREATE CONTINUOUS QUERY cq10 ON c BEGIN SELECT count(x) INTO nosuchrp.x FROM m GROUP BY time(5m) END",
        "CREATE CONTINUOUS QUERY cq11 ON c BEGIN SELECT count(x) INTO y FROM (SELECT v AS x FROM c.norp.m) GROUP BY time(5m) END",
        "CREATE CONTINUOUS QUERY cq12 ON c BEGIN SELECT count(x) INTO y FROM (SELECT v AS x FROM nodb.autogen.m) GROUP BY time(5m) END",
        "CREATE CONTINUOUS QUERY cq13 ON c BEGIN SELECT count(x) INTO nodb.autogen.y FROM m GROUP BY time(5m) END",
        "SHOW CONTINUOUS QUERIES",
        "SELECT mean(*) INTO c2.autogen.:MEASUREMENT FROM /.*/ WHERE time >= 0 AND time < 2m GROUP BY time(1m), *",
        "SHOW MEASUREMENTS ON c2",
        "SELECT * FROM c2.autogen.m GROUP BY *",
        "SELECT * FROM c2.autogen.m3 GROUP BY *",
        "SELECT count(v) INTO c2..:MEASUREMENT FROM c.autogen./^m$/",
        "SELECT * FROM c2..m",
        "SELECT * FROM c.autogen./^m/ LIMIT 2",
        "SELECT * FROM c../^mm$/ LIMIT 2",
        "SELECT v INTO :MEASUREMENT FROM /^zz/",
    ];
    // In order: each step changes what the next ones see.
    assert_same(&steps, |q| ask(&real.http, q), |q| ask(&ours, q));
}

#[test]
fn the_leader_runs_continuous_queries_on_schedule_for_every_replica() {
    let p = Procs::start(3, &[]);
    let leader = p.leader();
    p.query(
        leader,
        "",
        "CREATE DATABASE x; CREATE CONTINUOUS QUERY per_second ON x BEGIN SELECT count(v) AS n, max(v) INTO x.autogen.rollup FROM x.autogen.m GROUP BY time(1s), host END; \
         CREATE CONTINUOUS QUERY of_maxima ON x BEGIN SELECT sum(mx) AS s INTO x.autogen.summed FROM (SELECT max(v) AS mx FROM m GROUP BY time(1s), host) GROUP BY time(1s) END",
    );
    // Points for a few seconds from 2 s on, two hosts: each falls in an
    // interval that begins after the query was created (as influxd, a
    // query does not go back before it).
    let sec = 1_000_000_000i64;
    // (On a whole second: each second holds two points of each host.)
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
        / sec
        * sec
        + 2 * sec;
    let mut body = String::new();
    for i in 0..8 {
        body.push_str(&format!(
            "m,host=a v={i} {}\nm,host=b v={} {}\n",
            now + i * sec / 2,
            i * 10,
            now + i * sec / 2
        ));
    }
    assert!(p.write(leader, "x", &body));
    let rolled = |p: &Procs, id: u64| {
        let v = p.query(id, "x", "SELECT sum(n) FROM rollup GROUP BY host");
        v["results"][0]["series"]
            .as_array()
            .map(|s| {
                s.iter()
                    .map(|s| s["values"][0][1].as_i64().unwrap_or(0))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    // Every point falls in a second that ends within ~5 s: all 8 of each
    // host are rolled up, on every node.
    for id in 1..=3 {
        wait(
            &format!("node {id} holds the rollup of every point"),
            || {
                let r = rolled(&p, id);
                check(r == vec![8, 8], || format!("{r:?}"))
            },
        );
    }
    let max = p.query(leader, "x", "SELECT max(max) FROM rollup WHERE host = 'b'");
    assert_eq!(max["results"][0]["series"][0]["values"][0][1], 70, "{max}");
    // The query over a subquery: per second, the sum of the hosts'
    // maxima (i + 1 and 10 (i + 1) for the seconds of points i, i + 1).
    for id in 1..=3 {
        wait(&format!("node {id} holds the sums of the maxima"), || {
            let v = p.query(id, "x", "SELECT sum(s), count(s) FROM summed");
            let row = &v["results"][0]["series"][0]["values"][0];
            check(row[1] == 176 && row[2] == 4, || v.to_string())
        });
    }
}
