//! `GROUP BY time(…)`, `fill(…)` and `GROUP BY <tags>` answered as a real
//! influxd 1.6.7 answers them: the same points written to both, the same
//! queries sent, the JSON answers compared exactly (the shapes Grafana's
//! panels and the client libraries' `groups()` read), regular expressions on
//! tags, and the schema statements dashboards' editors ask (`SHOW TAG KEYS`,
//! `SHOW TAG VALUES`, `SHOW FIELD KEYS`, `SHOW SERIES`).

mod common;

use common::differential::{assert_same, load};
use common::influxd::Influxd;
use common::procs::Procs;

const POINTS: &str = "cpu,host=a,dc=x v=1,i=10i 0\n\
cpu,host=a,dc=x v=2,i=20i 60000000000\n\
cpu,host=b,dc=x v=3,i=30i 60000000000\n\
cpu,host=a,dc=y v=5,i=50i 250000000000\n\
cpu,host=b,dc=y v=7 400000000000\n\
cpu,host=c v=-2.5,i=-4i 470000000000\n\
mem,host=a used=100i 30000000000\n\
mem,host=a used=300i 90000000000\n\
msg,host=a s=\"s1\",ok=true 1000000000\n\
msg,host=a s=\"s2\",ok=false 2000000000\n\
msg,host=b s=\"s1\" 3000000000\n\
st,h=a v=1,i=1i 1\n\
st,h=a v=2,i=2i 2\n\
st,h=a v=2,i=2i 3\n\
st,h=a v=10,i=10i 4\n\
st,h=b v=5,i=5i 5\n\
st,h=b v=3,i=3i 6\n\
st,h=c v=1,i=7i 7\n\
c,h=a n=10i,v=1 0\n\
c,h=a n=20i,v=4 60000000000\n\
c,h=a n=35i,v=2 120000000000\n\
c,h=a n=5i,v=8 300000000000\n\
c,h=b n=1i,v=1 60000000000\n\
c,h=b n=2i,v=3 180000000000";

fn ask(http: &str, q: &str, epoch: Option<&str>) -> (u16, serde_json::Value) {
    let mut params = vec![("db", "g"), ("q", q)];
    if let Some(e) = epoch {
        params.push(("epoch", e));
    }
    common::http::request("POST", http, "/query", &params, &[], b"")
}

#[test]
fn group_by_time_fill_and_tags_answer_as_influxd() {
    let Some(real) = Influxd::start() else { return };
    let p = Procs::start(1, &[]);
    let ours = p.nodes[&p.leader()].http.clone();
    load(&[&real.http, &ours], "g", POINTS);
    let range = "time >= 0 AND time < 600000000000";
    let queries: Vec<(String, Option<&str>)> = [
        format!("SELECT mean(v) FROM cpu WHERE {range} GROUP BY time(2m)"),
        format!("SELECT count(v) FROM cpu WHERE {range} GROUP BY time(2m)"),
        format!("SELECT count(v) FROM cpu WHERE {range} GROUP BY time(2m) fill(none)"),
        format!("SELECT mean(v) FROM cpu WHERE {range} GROUP BY time(2m) fill(0)"),
        format!("SELECT mean(v) FROM cpu WHERE {range} GROUP BY time(2m) fill(-1)"),
        format!("SELECT mean(v) FROM cpu WHERE {range} GROUP BY time(2m) fill(previous)"),
        format!("SELECT mean(v) FROM cpu WHERE {range} GROUP BY time(2m) fill(linear)"),
        format!("SELECT mean(v) FROM cpu WHERE {range} GROUP BY time(2m) fill(null)"),
        format!("SELECT max(v) FROM cpu WHERE {range} GROUP BY time(2m)"),
        format!("SELECT min(v), max(v), sum(v) FROM cpu WHERE {range} GROUP BY time(2m)"),
        format!("SELECT first(v), last(v) FROM cpu WHERE {range} GROUP BY time(5m)"),
        format!("SELECT sum(i) FROM cpu WHERE {range} GROUP BY time(1m)"),
        format!("SELECT count(*) FROM cpu WHERE {range} GROUP BY time(3m)"),
        format!("SELECT mean(v) FROM cpu WHERE {range} GROUP BY time(2m), host"),
        format!("SELECT mean(v) FROM cpu WHERE {range} GROUP BY host, time(2m) fill(none)"),
        format!("SELECT mean(v) FROM cpu WHERE {range} GROUP BY time(2m), * fill(0)"),
        format!("SELECT mean(v) FROM cpu WHERE host = 'a' AND {range} GROUP BY time(2m) fill(none)"),
        format!("SELECT mean(v) FROM cpu WHERE {range} GROUP BY time(2m) LIMIT 2"),
        "SELECT mean(v) FROM cpu WHERE time >= 30000000000 AND time < 300000000000 GROUP BY time(2m, 30s)".into(),
        "SELECT count(v) FROM cpu WHERE time >= 0 AND time < 120000000000 GROUP BY time(10s)".into(),
        "SELECT max(v) FROM cpu WHERE time >= 0 AND time < 3600000000000 GROUP BY time(1h)".into(),
        "SELECT mean(used) FROM mem WHERE time >= 0 AND time < 120000000000 GROUP BY time(1m), host".into(),
        "SELECT mean(v) FROM cpu GROUP BY host".into(),
        "SELECT mean(v) FROM cpu GROUP BY *".into(),
        "SELECT mean(v) FROM cpu GROUP BY dc".into(),
        "SELECT mean(v) FROM cpu GROUP BY nosuchtag".into(),
        "SELECT last(v) FROM cpu GROUP BY dc, host".into(),
        "SELECT first(v) FROM cpu GROUP BY host".into(),
        "SELECT max(v) FROM cpu GROUP BY host".into(),
        "SELECT count(*) FROM cpu GROUP BY host".into(),
        "SELECT sum(i), count(i) FROM cpu GROUP BY dc".into(),
        "SELECT * FROM cpu GROUP BY host".into(),
        "SELECT * FROM cpu GROUP BY *".into(),
        // (Not `SELECT v FROM cpu GROUP BY dc`: influxd orders the rows of
        // two series at the same time in a way not derived here; tsnode by
        // series key.)
        "SELECT v FROM cpu GROUP BY host".into(),
        "SELECT v, i FROM cpu WHERE host = 'a' GROUP BY dc".into(),
        "SELECT * FROM cpu GROUP BY host LIMIT 1".into(),
        // Regular expressions on tags (Grafana's template variables).
        "SELECT mean(v) FROM cpu WHERE host =~ /a|b/ GROUP BY host".into(),
        "SELECT v FROM cpu WHERE host !~ /^a$/ AND dc = 'y'".into(),
        "SELECT count(v) FROM cpu WHERE dc =~ /^$/".into(),
        "SELECT * FROM cpu WHERE host =~ /^(a|c)$/ GROUP BY dc".into(),
        // The schema: what dashboards' editors and autocomplete ask.
        "SHOW TAG KEYS".into(),
        "SHOW TAG KEYS FROM cpu".into(),
        "SHOW TAG KEYS FROM nosuch".into(),
        "SHOW TAG VALUES WITH KEY = host".into(),
        "SHOW TAG VALUES FROM cpu WITH KEY = \"dc\"".into(),
        "SHOW TAG VALUES WITH KEY IN (dc, host)".into(),
        "SHOW TAG VALUES WITH KEY =~ /h.*/".into(),
        "SHOW TAG VALUES FROM cpu WITH KEY = host WHERE dc = 'y'".into(),
        "SHOW TAG VALUES FROM nosuch WITH KEY = host".into(),
        "SHOW FIELD KEYS".into(),
        "SHOW FIELD KEYS FROM cpu".into(),
        "SHOW FIELD KEYS FROM nosuch".into(),
        "SHOW SERIES".into(),
        "SHOW SERIES FROM cpu WHERE host = 'a'".into(),
        "SHOW SERIES WHERE host =~ /b|c/".into(),
        "SHOW MEASUREMENTS WITH MEASUREMENT =~ /c.*/".into(),
        "SHOW MEASUREMENTS WITH MEASUREMENT = mem".into(),
        "SHOW MEASUREMENTS WITH MEASUREMENT =~ /nomatch/".into(),
        "SHOW MEASUREMENTS LIMIT 1".into(),
        "SHOW MEASUREMENTS LIMIT 1 OFFSET 1".into(),
        // Conditions on field values (a string field's too: once answered
        // with nothing).
        "SELECT * FROM cpu WHERE v > 2".into(),
        "SELECT v FROM cpu WHERE v >= 2 AND v < 7".into(),
        "SELECT * FROM cpu WHERE i = 20".into(),
        "SELECT count(v) FROM cpu WHERE v > 2 GROUP BY host".into(),
        "SELECT mean(v) FROM cpu WHERE v <= 3 AND time >= 0 AND time < 600000000000 GROUP BY time(2m) fill(none)".into(),
        "SELECT * FROM cpu WHERE v < -1".into(),
        "SELECT count(v) FROM cpu WHERE v > 100".into(),
        "SELECT * FROM msg WHERE s = 's1'".into(),
        "SELECT * FROM msg WHERE s != 's1'".into(),
        "SELECT count(s) FROM msg WHERE s = 's2'".into(),
        "SELECT * FROM msg WHERE ok = true".into(),
        "SELECT * FROM msg WHERE host = 'a' AND s = 's1'".into(),
        // median, spread, stddev.
        "SELECT median(v), spread(v), stddev(v) FROM st".into(),
        "SELECT median(i), spread(i), stddev(i) FROM st".into(),
        "SELECT median(v) FROM st GROUP BY h".into(),
        "SELECT stddev(v) FROM st GROUP BY h".into(),
        "SELECT spread(v), spread(i) FROM st GROUP BY h".into(),
        "SELECT median(v) FROM st WHERE time >= 0 AND time < 10 GROUP BY time(4ns)".into(),
        "SELECT stddev(v) FROM st WHERE time >= 0 AND time < 10 GROUP BY time(4ns) fill(none)".into(),
        // percentile (nearest rank, a selector).
        "SELECT percentile(v, 50) FROM st".into(),
        "SELECT percentile(v, 95) FROM st".into(),
        "SELECT percentile(i, 90) FROM st GROUP BY h".into(),
        "SELECT percentile(v, 50), max(v) FROM st".into(),
        "SELECT percentile(v, 90) FROM cpu WHERE time >= 0 AND time < 600000000000 GROUP BY time(2m)".into(),
        // Transformations of aggregates (counters' rates on dashboards).
        "SELECT derivative(mean(v), 1s) FROM c WHERE time >= 0 AND time < 360000000000 GROUP BY time(1m)".into(),
        "SELECT non_negative_derivative(max(n), 1s) FROM c WHERE time >= 0 AND time < 360000000000 GROUP BY time(1m)".into(),
        "SELECT derivative(mean(v)) FROM c WHERE time >= 0 AND time < 360000000000 GROUP BY time(1m) fill(0)".into(),
        "SELECT difference(sum(n)) FROM c WHERE time >= 0 AND time < 360000000000 GROUP BY time(2m)".into(),
        "SELECT cumulative_sum(mean(v)) FROM c WHERE time >= 0 AND time < 360000000000 GROUP BY time(1m)".into(),
        // Newest first: the buckets are transformed in that order, from the
        // bucket after the range.
        "SELECT derivative(mean(v), 1s) FROM c WHERE time >= 0 AND time < 300000000000 GROUP BY time(1m) ORDER BY time DESC".into(),
        "SELECT difference(max(v)) FROM c WHERE time >= 60000000000 AND time < 300000000000 GROUP BY time(1m), h ORDER BY time DESC".into(),
        "SELECT cumulative_sum(mean(v)), moving_average(mean(v), 2) FROM c WHERE time >= 0 AND time < 360000000000 GROUP BY time(1m) ORDER BY time DESC".into(),
        "SELECT non_negative_derivative(mean(v), 1m) FROM c WHERE time >= 0 AND time < 360000000000 GROUP BY time(1m) fill(0) ORDER BY time DESC LIMIT 3".into(),
        "SELECT elapsed(mean(v), 1s) FROM c WHERE time >= 0 AND time < 360000000000 GROUP BY time(1m) ORDER BY time DESC".into(),
        "SELECT exponential_moving_average(mean(v), 2) FROM c WHERE time >= 0 AND time < 360000000000 GROUP BY time(1m) ORDER BY time DESC".into(),
        "SELECT mean(v), derivative(mean(v), 1m) FROM c WHERE time >= 0 AND time < 360000000000 GROUP BY time(1m) ORDER BY time DESC".into(),
        "SELECT max(v), difference(max(v)) FROM c WHERE time >= 60000000000 AND time < 360000000000 GROUP BY time(1m) ORDER BY time DESC LIMIT 2".into(),
        "SELECT mean(v), derivative(mean(v), 1m) FROM c WHERE time >= 0 AND time < 360000000000 GROUP BY time(1m) LIMIT 2 OFFSET 1".into(),
        "SELECT max(v), difference(max(v)) FROM c WHERE time >= 0 AND time < 360000000000 GROUP BY time(1m), h LIMIT 3".into(),
        "SELECT non_negative_derivative(mean(v), 1m) FROM c WHERE time >= 0 AND time < 360000000000 GROUP BY time(1m), h".into(),
        "SELECT derivative(mean(v), 1s) FROM c WHERE time >= 60000000000 AND time < 360000000000 GROUP BY time(1m)".into(),
        // Transformations beside the aggregates they transform.
        "SELECT mean(v), derivative(mean(v), 1m) FROM c WHERE time >= 0 AND time < 360000000000 GROUP BY time(1m)".into(),
        "SELECT max(v), difference(max(v)) FROM c WHERE time >= 0 AND time < 360000000000 GROUP BY time(1m)".into(),
        "SELECT mean(v), derivative(mean(v), 1m) FROM c WHERE time >= 60000000000 AND time < 360000000000 GROUP BY time(1m)".into(),
        "SELECT mean(v), derivative(mean(v), 1m) FROM c WHERE time >= 0 AND time < 360000000000 GROUP BY time(1m) fill(none)".into(),
        "SELECT mean(v), derivative(mean(v), 1m) FROM c WHERE time >= 0 AND time < 360000000000 GROUP BY time(1m) fill(0)".into(),
        "SELECT mean(v), moving_average(mean(v), 2), cumulative_sum(max(n)) FROM c WHERE time >= 0 AND time < 360000000000 GROUP BY time(1m)".into(),
        "SELECT sum(n), non_negative_difference(sum(n)) FROM c WHERE time >= 0 AND time < 360000000000 GROUP BY time(1m), h".into(),
        "SELECT v, derivative(mean(v)) FROM c WHERE time >= 0 AND time < 360000000000 GROUP BY time(1m)".into(),
        "SELECT non_negative_difference(max(n)) FROM c WHERE time >= 0 AND time < 360000000000 GROUP BY time(1m)".into(),
        "SELECT cumulative_sum(sum(n)) FROM c WHERE time >= 0 AND time < 360000000000 GROUP BY time(2m), h".into(),
        "SELECT moving_average(mean(v), 2) FROM c WHERE time >= 0 AND time < 360000000000 GROUP BY time(1m)".into(),
        "SELECT moving_average(mean(v), 2) FROM c WHERE time >= 60000000000 AND time < 360000000000 GROUP BY time(1m)".into(),
        "SELECT moving_average(max(n), 3) FROM c WHERE time >= 0 AND time < 360000000000 GROUP BY time(1m) fill(0)".into(),
        "SELECT elapsed(mean(v), 1s) FROM c WHERE time >= 0 AND time < 360000000000 GROUP BY time(1m)".into(),
        "SELECT elapsed(mean(v)) FROM c WHERE time >= 0 AND time < 360000000000 GROUP BY time(1m), h".into(),
        // AS, ORDER BY time DESC, OFFSET, SLIMIT, SOFFSET.
        "SELECT mean(v) AS avg FROM cpu GROUP BY host".into(),
        "SELECT v AS value, i FROM cpu WHERE host = 'a'".into(),
        "SELECT count(*) AS n FROM cpu".into(),
        "SELECT min(v) AS lo, max(v) AS hi FROM cpu WHERE time >= 0 AND time < 600000000000 GROUP BY time(5m)".into(),
        "SELECT * FROM cpu WHERE host = 'a' ORDER BY time DESC".into(),
        "SELECT v FROM cpu WHERE host = 'b' ORDER BY time DESC LIMIT 1".into(),
        "SELECT mean(v) FROM cpu WHERE time >= 0 AND time < 600000000000 GROUP BY time(2m) ORDER BY time DESC".into(),
        "SELECT * FROM cpu WHERE host = 'a' LIMIT 2 OFFSET 1".into(),
        "SELECT mean(v) FROM cpu WHERE time >= 0 AND time < 600000000000 GROUP BY time(2m) LIMIT 2 OFFSET 1".into(),
        "SELECT mean(v) FROM cpu GROUP BY host SLIMIT 1".into(),
        "SELECT mean(v) FROM cpu GROUP BY host SLIMIT 1 SOFFSET 1".into(),
        "SELECT last(v) FROM cpu GROUP BY host ORDER BY time DESC LIMIT 1".into(),
        "SELECT * FROM cpu GROUP BY host ORDER BY time DESC".into(),
        // Time bounds as Grafana and people write them.
        "SELECT mean(\"v\") FROM \"cpu\" WHERE time >= 0ms and time <= 600000ms GROUP BY time(2m) fill(null)".into(),
        "SELECT count(v) FROM cpu WHERE time >= 0s AND time < 300s".into(),
        "SELECT mean(v) FROM cpu WHERE time >= '1970-01-01 00:00:00' AND time < '1970-01-01 00:10:00' GROUP BY time(5m)".into(),
        "SELECT max(v) FROM cpu WHERE time >= '1970-01-01' GROUP BY host".into(),
    ]
    .into_iter()
    .map(|q| (q, None))
    .chain([
        (format!("SELECT mean(v) FROM cpu WHERE {range} GROUP BY time(2m), host"), Some("s")),
        ("SELECT * FROM cpu GROUP BY host".to_string(), Some("ms")),
        (
            "SELECT mean(\"v\") FROM \"autogen\".\"cpu\" WHERE time >= 0ms and time <= 600000ms GROUP BY time(1m), \"host\" fill(none)".to_string(),
            Some("ms"),
        ),
    ])
    .collect();
    assert_same(
        &queries,
        |(q, epoch)| ask(&real.http, q, *epoch),
        |(q, epoch)| ask(&ours, q, *epoch),
    );
}

/// Fields and tags beside a selector (`SELECT max(v), host, w`): the point
/// the selector picked, with its series' tags and its other fields at its
/// time, in and out of `GROUP BY time` buckets, every fill, `*`, casts,
/// and the statements influxd refuses.
const AUX_POINTS: &str = "cpu,host=a,region=e v=1,w=10i 1000000000\n\
cpu,host=b,region=e v=5,w=20i 1000000000\n\
cpu,host=a,region=e v=7 2000000000\n\
cpu,host=b,region=w v=3,w=30i 3000000000\n\
cpu,host=c,region=w v=7,w=40i 4000000000\n\
cpu,host=a,region=e v=2,w=50i 5000000000\n\
cpu,host=b,region=e v=9 6000000000\n\
cpu,host=c,region=w v=0,w=60i 7000000000\n\
cpu,host=a,region=e s=\"x\",w=70i 8000000000";

#[test]
fn selectors_beside_fields_and_tags_answer_as_influxd() {
    let Some(real) = Influxd::start() else { return };
    let p = Procs::start(1, &[]);
    let ours = p.nodes[&p.leader()].http.clone();
    load(&[&real.http, &ours], "g", AUX_POINTS);
    let r = "time >= 0 AND time < 12s";
    let queries: Vec<String> = vec![
        "SELECT max(v), host FROM cpu".into(),
        "SELECT max(v), host, w FROM cpu".into(),
        "SELECT host, max(v) FROM cpu".into(),
        "SELECT max(v) AS m, host AS h FROM cpu".into(),
        "SELECT max(v) * 2, host FROM cpu".into(),
        "SELECT min(v), w * 2, w FROM cpu".into(),
        "SELECT max(v), v FROM cpu".into(),
        "SELECT max(v), nope FROM cpu".into(),
        "SELECT max(v), w FROM cpu fill(0)".into(),
        "SELECT first(v), * FROM cpu".into(),
        "SELECT first(v), * FROM cpu GROUP BY host".into(),
        "SELECT last(w), s FROM cpu".into(),
        "SELECT last(s), host, v FROM cpu".into(),
        "SELECT percentile(v, 50), host FROM cpu".into(),
        "SELECT max(v), host FROM cpu GROUP BY host".into(),
        "SELECT max(v), host FROM cpu GROUP BY *".into(),
        "SELECT max(v), host FROM cpu WHERE v < 0".into(),
        "SELECT max(v), host::tag, w::field FROM cpu".into(),
        format!("SELECT max(v), host FROM cpu WHERE {r} GROUP BY time(2s)"),
        format!("SELECT max(v), host FROM cpu WHERE {r} GROUP BY time(2s) fill(0)"),
        format!("SELECT max(v), w FROM cpu WHERE {r} GROUP BY time(2s) fill(0)"),
        format!("SELECT max(v), w, host FROM cpu WHERE {r} GROUP BY time(2s) fill(previous)"),
        format!("SELECT max(v), w, host FROM cpu WHERE {r} GROUP BY time(2s) fill(linear)"),
        format!("SELECT max(v), w, host FROM cpu WHERE {r} GROUP BY time(2s) fill(none)"),
        format!("SELECT max(v), host FROM cpu WHERE {r} GROUP BY time(4s) ORDER BY time DESC"),
        format!(
            "SELECT max(v), host FROM cpu WHERE {r} GROUP BY time(2s) ORDER BY time DESC LIMIT 2"
        ),
        format!("SELECT max(v), host FROM cpu WHERE {r} GROUP BY time(2s) LIMIT 2 OFFSET 1"),
        format!("SELECT percentile(v, 90), host, w FROM cpu WHERE {r} GROUP BY time(4s)"),
        "SELECT top(v, 2), host FROM cpu".into(),
        "SELECT top(v, 3), host, w FROM cpu GROUP BY region".into(),
        "SELECT top(v, host, 2), w FROM cpu".into(),
        "SELECT top(v, 3), host FROM cpu ORDER BY time DESC".into(),
        "SELECT sample(v, 20), host FROM cpu".into(),
        format!("SELECT top(v, 2), host, w FROM cpu WHERE {r} GROUP BY time(4s)"),
        format!("SELECT top(v, 2), host, w FROM cpu WHERE {r} GROUP BY time(4s) fill(0)"),
        format!("SELECT top(v, 2), w FROM cpu WHERE {r} GROUP BY time(4s) fill(previous)"),
        format!(
            "SELECT bottom(v, 2), region FROM cpu WHERE {r} GROUP BY time(4s) ORDER BY time DESC"
        ),
        format!("SELECT sample(v, 20) FROM cpu WHERE {r} GROUP BY time(4s) ORDER BY time DESC"),
        // Casts on names, as Chronograf and Kapacitor write them.
        "SELECT host::tag, v::field FROM cpu".into(),
        "SELECT \"v\"::float FROM cpu WHERE \"host\"::tag = 'b'".into(),
        // Refused as influxd refuses them.
        "SELECT max(v), min(v), host FROM cpu".into(),
        "SELECT distinct(v), host FROM cpu".into(),
        "SELECT max(*), host FROM cpu".into(),
        "SELECT mean(v), host FROM cpu".into(),
        "SELECT top(v, 2), min(v) FROM cpu".into(),
        "SELECT top(v, 3), host FROM cpu LIMIT 2".into(),
        format!("SELECT derivative(max(v)), host FROM cpu WHERE {r} GROUP BY time(4s)"),
    ];
    assert_same(
        &queries,
        |q| ask(&real.http, q, None),
        |q| ask(&ours, q, None),
    );
}

/// A `GROUP BY time` query without an upper time bound ends now, as
/// influxd's (Grafana's `$timeFilter` of a range ending now is `time >=
/// now() - 6h` alone): empty buckets up to now are answered (and filled),
/// and a point written in the future is left out.
#[test]
fn group_by_time_without_an_end_ends_now() {
    let Some(real) = Influxd::start() else { return };
    let p = Procs::start(1, &[]);
    let ours = p.nodes[&p.leader()].http.clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let (m, h) = (60_000_000_000i64, 3_600_000_000_000i64);
    let body = format!(
        "recent,h=a v=1 {}\nrecent,h=a v=2 {}\nrecent,h=b v=4 {}\nrecent,h=a v=8 {}",
        now - 3 * h,
        now - 2 * h - 10 * m,
        now - m,
        now + 2 * h
    );
    load(&[&real.http, &ours], "g", &body);
    let r = "time >= now() - 6h";
    let queries: Vec<String> = vec![
        format!("SELECT mean(v) FROM recent WHERE {r} GROUP BY time(1h)"),
        format!("SELECT count(v) FROM recent WHERE {r} GROUP BY time(1h) fill(0)"),
        format!("SELECT count(v) FROM recent WHERE {r} GROUP BY time(1h) ORDER BY time DESC"),
        format!("SELECT mean(v) FROM recent WHERE {r} GROUP BY time(1h), h fill(previous)"),
        format!("SELECT max(v), * FROM recent WHERE {r} GROUP BY time(1h)"),
        format!("SELECT sum(v) FROM recent WHERE {r} GROUP BY time(1h) fill(none)"),
        format!("SELECT difference(sum(v)) FROM recent WHERE {r} GROUP BY time(1h)"),
        "SELECT count(v) FROM recent GROUP BY time(1h)".into(),
        // Without GROUP BY time nothing ends now: the future point counts.
        format!("SELECT max(v) FROM recent WHERE {r} GROUP BY h"),
    ];
    assert_same(
        &queries,
        |q| ask(&real.http, q, None),
        |q| ask(&ours, q, None),
    );
}
