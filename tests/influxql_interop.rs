//! Conditions and arithmetic answered as a real influxd 1.6.7 answers
//! them: `OR` and parentheses in WHERE (on tags, fields and both), time
//! comparisons wherever they stand, regular expressions on string fields,
//! arithmetic in the select list over fields and over aggregates, and
//! `mode()`. The same points are written to both and the JSON answers
//! compared exactly.

mod common;

use common::differential::{assert_same, load};
use common::influxd::Influxd;
use common::procs::Procs;

const POINTS: &str = "cpu,host=a,dc=x v=1,i=10i,s=\"up\" 0\n\
cpu,host=a,dc=x v=2,i=20i,s=\"up\" 60000000000\n\
cpu,host=b,dc=x v=3,i=30i,s=\"down\" 60000000000\n\
cpu,host=a,dc=y v=5,i=50i 250000000000\n\
cpu,host=b,dc=y v=7,s=\"degraded\" 400000000000\n\
cpu,host=c v=-2.5,i=-4i 470000000000\n\
cpu,host=c i=9i 500000000000\n\
mem,host=a used=100i,free=50i 30000000000\n\
mem,host=a used=300i,free=0i 90000000000\n\
mem,host=b used=7i,free=3i 90000000000\n\
md,h=a v=1,i=1i,s=\"x\",b=true 1\n\
md,h=a v=2,i=2i,s=\"y\",b=false 2\n\
md,h=a v=2,i=2i,s=\"y\",b=false 3\n\
md,h=a v=10,i=10i,s=\"x\",b=true 4\n\
md,h=b v=5,i=5i,s=\"z\",b=true 5\n\
md,h=b v=3,i=3i,s=\"z\",b=true 6\n\
md,h=b v=3,i=3i,s=\"z\",b=false 7";

fn ask(http: &str, q: &str) -> (u16, serde_json::Value) {
    common::http::request("POST", http, "/query", &[("db", "q"), ("q", q)], &[], b"")
}

#[test]
fn conditions_and_arithmetic_answer_as_influxd() {
    let Some(real) = Influxd::start() else { return };
    let p = Procs::start(1, &[]);
    let ours = p.nodes[&p.leader()].http.clone();
    load(&[&real.http, &ours], "q", POINTS);
    let queries = [
        // OR and parentheses.
        "SELECT v FROM cpu WHERE host = 'a' OR host = 'c'",
        "SELECT v FROM cpu WHERE (host = 'a' OR host = 'b') AND dc = 'y'",
        "SELECT v FROM cpu WHERE host = 'a' OR (host = 'b' AND dc = 'x')",
        "SELECT v FROM cpu WHERE host = 'a' OR v > 4",
        "SELECT v FROM cpu WHERE v < 0 OR v > 4",
        "SELECT v, i FROM cpu WHERE v > 2 OR i > 15",
        "SELECT * FROM cpu WHERE (v > 2 AND host = 'b') OR i < 0",
        "SELECT v FROM cpu WHERE ((host = 'a'))",
        "SELECT v FROM cpu WHERE host =~ /a|b/ OR dc = 'y'",
        "SELECT v FROM cpu WHERE host !~ /a/ AND (v > 0 OR i > 0)",
        "SELECT v FROM cpu WHERE host != 'a' OR dc != 'x'",
        "SELECT count(v) FROM cpu WHERE host = 'a' OR host = 'b'",
        "SELECT mean(v) FROM cpu WHERE host = 'a' OR v > 4 GROUP BY host",
        "SELECT sum(i) FROM cpu WHERE (host = 'a' OR host = 'c') AND i > 0",
        "SELECT v FROM cpu WHERE i > 5",
        "SELECT v, i FROM cpu WHERE i > 5 ORDER BY time DESC",
        "SELECT * FROM cpu WHERE host = 'a' OR host = 'b' ORDER BY time DESC LIMIT 3",
        "SELECT used FROM mem WHERE free = 0 OR free = 3",
        // Arithmetic and fields on both sides of a comparison.
        "SELECT v FROM cpu WHERE v * 2 > 5",
        "SELECT v, i FROM cpu WHERE i > v",
        "SELECT v, i FROM cpu WHERE v + i >= 20",
        "SELECT used FROM mem WHERE used > free",
        "SELECT v FROM cpu WHERE v * 2 > 5 AND host = 'a'",
        "SELECT v FROM cpu WHERE v - 1 = 1 OR host = 'c'",
        "SELECT count(v) FROM cpu WHERE i / 10 > 2",
        "SELECT v FROM cpu WHERE v < i - 15",
        "SELECT v FROM cpu WHERE (v + 1) * 2 > 7",
        "SELECT v FROM cpu WHERE (v > 2 AND host = 'b') OR (i - 40) > 0",
        // Time comparisons anywhere.
        "SELECT v FROM cpu WHERE time > 0 OR v > 1",
        "SELECT v FROM cpu WHERE host = 'a' AND (time >= 60s AND time < 300s)",
        "SELECT v FROM cpu WHERE (time >= 60s OR host = 'a') AND time < 300s",
        "SELECT v FROM cpu WHERE time > 100s OR host = 'a'",
        // LIMIT reaches below top() and bottom(): they pick from the
        // group's first LIMIT + OFFSET + 1 points.
        "SELECT top(v, 2) FROM md LIMIT 3",
        "SELECT top(v, 2) FROM md LIMIT 2 OFFSET 1",
        "SELECT bottom(v, 2) FROM md WHERE time >= 0 AND time < 8 GROUP BY time(4ns) LIMIT 3",
        "SELECT top(v, 2) FROM md WHERE time >= 0 AND time < 8 GROUP BY time(4ns) ORDER BY time DESC LIMIT 2",
        "SELECT top(v, 2) FROM md WHERE time >= 0 AND time < 8 GROUP BY time(4ns), h LIMIT 2",
        "SELECT top(v, 1) FROM cpu WHERE time >= 0 AND time < 10m GROUP BY time(2m) LIMIT 4",
        "SELECT top(v, h, 2) FROM md LIMIT 3",
        "SELECT bottom(i, 2), s FROM md LIMIT 4 OFFSET 1",
        // Conditions on no field at all, true or false on every row;
        // strings compared for equality only.
        "SELECT v FROM cpu WHERE 1 = 1",
        "SELECT v FROM cpu WHERE 1 = 2",
        "SELECT v FROM cpu WHERE 'a' = 'a' AND host = 'b'",
        "SELECT v FROM cpu WHERE 1 = 2 OR host = 'a'",
        "SELECT mean(v) FROM cpu WHERE 1 < 2 GROUP BY host",
        "SELECT * FROM cpu WHERE 2 > 1 + 0 AND time > 100s",
        "SELECT v FROM cpu WHERE 'b' > 'a'",
        "SELECT s FROM cpu WHERE s > 'down'",
        "SELECT s FROM md WHERE s != 'x' AND 1.5 = 1.5",
        // A literal first: the name and the comparison turned round.
        "SELECT v FROM cpu WHERE 'a' = host",
        "SELECT v FROM cpu WHERE 'a' != host AND 2 < v",
        "SELECT v FROM cpu WHERE 2 >= v OR 'c' = host",
        "SELECT v FROM cpu WHERE 60s < time",
        "SELECT v FROM cpu WHERE 250s >= time AND '1970-01-01T00:01:00Z' <= time",
        "SELECT v FROM cpu WHERE -1 < v",
        "SELECT v FROM cpu WHERE 3 = v + 0",
        "SELECT v, i FROM cpu WHERE 40 < i - v",
        "SELECT mean(v) FROM cpu WHERE 'a' = host GROUP BY dc",
        // Strings and booleans.
        "SELECT s FROM cpu WHERE s = 'up'",
        "SELECT s FROM cpu WHERE s != 'up'",
        "SELECT s FROM cpu WHERE s =~ /^d/",
        "SELECT s FROM cpu WHERE s !~ /^d/",
        "SELECT v, s FROM cpu WHERE s = 'up' OR v > 6",
        "SELECT s FROM md WHERE b = true",
        "SELECT s, b FROM md WHERE b = false OR s = 'x'",
        "SELECT count(s) FROM md WHERE s =~ /x|z/",
        // Arithmetic over fields.
        "SELECT v * 2 FROM cpu",
        "SELECT v + i FROM cpu",
        "SELECT i / 2 FROM cpu",
        "SELECT i / 0, v / 0 FROM cpu",
        "SELECT i % 3, -v FROM cpu",
        "SELECT (v + 1) * 2 FROM cpu",
        "SELECT v + 1 * 2 FROM cpu",
        "SELECT v - i - 1 FROM cpu",
        "SELECT v * 1.5 AS scaled FROM cpu",
        "SELECT used - free, used / (used + free) FROM mem",
        "SELECT used * 100 / (used + free) AS pct FROM mem GROUP BY host",
        "SELECT v * 2, v FROM cpu WHERE host = 'b'",
        "SELECT i * -1 FROM cpu WHERE host = 'c'",
        "SELECT 2 * v FROM cpu WHERE host = 'a'",
        // Arithmetic over aggregates.
        "SELECT max(v) * 2 FROM cpu",
        "SELECT mean(v) + mean(i) FROM cpu",
        "SELECT sum(i) / count(i) FROM cpu",
        "SELECT max(v) - min(v) FROM cpu GROUP BY host",
        "SELECT mean(v) * 10 FROM cpu WHERE time >= 0 AND time < 600s GROUP BY time(2m)",
        "SELECT mean(v) * 10 FROM cpu WHERE time >= 0 AND time < 600s GROUP BY time(2m) fill(0)",
        "SELECT mean(v) * 10 FROM cpu WHERE time >= 0 AND time < 600s GROUP BY time(2m) fill(none)",
        "SELECT sum(used) / sum(free) FROM mem WHERE time >= 0 AND time < 2m GROUP BY time(1m)",
        "SELECT count(v), count(s) FROM cpu GROUP BY host",
        "SELECT count(s) FROM cpu WHERE host = 'c'",
        "SELECT count(v) * 1.5 AS c FROM cpu GROUP BY host",
        "SELECT last(v) - first(v) FROM cpu",
        "SELECT mean(v) / 0 FROM cpu",
        // distinct(), count(distinct()), integral().
        "SELECT distinct(v) FROM md",
        "SELECT distinct(s) FROM md",
        "SELECT count(distinct(v)) FROM md",
        "SELECT distinct(v) FROM md GROUP BY h",
        "SELECT distinct(i) FROM md WHERE time >= 0 AND time < 8 GROUP BY time(3ns)",
        "SELECT distinct(v), count(v) FROM md",
        "SELECT count(distinct(s)) FROM md GROUP BY h",
        "SELECT integral(v) FROM md",
        "SELECT integral(v, 1ns) FROM md WHERE time >= 0 AND time < 8 GROUP BY time(3ns)",
        "SELECT integral(i, 2ns) FROM md",
        // Transformations of raw points.
        "SELECT derivative(v) FROM md",
        "SELECT derivative(v, 1ns) FROM md GROUP BY h",
        "SELECT non_negative_derivative(v, 1ns) FROM md",
        "SELECT difference(i) FROM md",
        "SELECT non_negative_difference(v) FROM md",
        "SELECT cumulative_sum(i) FROM md",
        "SELECT moving_average(v, 2) FROM md",
        "SELECT elapsed(v) FROM md",
        "SELECT elapsed(v, 1ns) FROM md GROUP BY h",
        "SELECT derivative(v) FROM md WHERE time >= 0 AND time < 8 GROUP BY time(4ns)",
        "SELECT derivative(v), v FROM md",
        "SELECT difference(v), cumulative_sum(v) FROM md",
        // Newest first: the points are transformed in that order.
        "SELECT derivative(v) FROM md ORDER BY time DESC",
        "SELECT non_negative_derivative(v, 1ns) FROM md ORDER BY time DESC",
        "SELECT difference(i), cumulative_sum(i) FROM md ORDER BY time DESC",
        "SELECT moving_average(v, 2) FROM md ORDER BY time DESC LIMIT 3",
        "SELECT elapsed(v, 1ns) FROM md GROUP BY h ORDER BY time DESC",
        "SELECT relative_strength_index(v, 2) FROM md ORDER BY time DESC",
        // Transformations of raw points beside aggregates: one series, the
        // aggregates' row at the range's start.
        "SELECT derivative(v), mean(v) FROM md",
        "SELECT difference(v), max(v), count(i) FROM md WHERE time >= 2 AND time < 9",
        "SELECT cumulative_sum(i), sum(i) FROM md GROUP BY h",
        "SELECT moving_average(v, 2), first(v) FROM md WHERE time >= 3",
        "SELECT derivative(v), mean(v) FROM md WHERE time >= 0 AND time < 8 GROUP BY time(4ns)",
        "SELECT derivative(v), mean(v) * 2 FROM md",
        "SELECT derivative(v, 1m) FROM cpu WHERE host = 'a'",
        // Subqueries.
        "SELECT mean(max) FROM (SELECT max(v) FROM cpu GROUP BY host)",
        "SELECT max FROM (SELECT max(v) FROM cpu GROUP BY host)",
        "SELECT sum(m) FROM (SELECT mean(v) AS m FROM cpu WHERE time >= 0 AND time < 10m GROUP BY time(2m), host) WHERE time >= 0 AND time < 10m GROUP BY time(4m)",
        "SELECT * FROM (SELECT v, i FROM cpu WHERE host = 'a')",
        "SELECT count(v) FROM (SELECT v FROM cpu) WHERE v > 2",
        "SELECT max(max) FROM (SELECT max(v) FROM cpu GROUP BY host) GROUP BY host",
        "SELECT mean(d) FROM (SELECT difference(v) AS d FROM md)",
        "SELECT top(n, 1) FROM (SELECT count(v) AS n FROM cpu GROUP BY host)",
        // top() and bottom().
        "SELECT top(v, 2) FROM md",
        "SELECT bottom(v, 2) FROM md",
        "SELECT top(v, 3) FROM md",
        "SELECT top(v, 10) FROM md",
        "SELECT top(v, 2) FROM md GROUP BY h",
        "SELECT top(v, 1) FROM md WHERE time >= 0 AND time < 8 GROUP BY time(4ns)",
        "SELECT bottom(v, 2) FROM md WHERE time >= 0 AND time < 8 GROUP BY time(4ns)",
        "SELECT top(v, h, 2) FROM md",
        "SELECT bottom(i, h, 1) FROM md",
        "SELECT top(v, 0) FROM md",
        "SELECT top(v) FROM md",
        "SELECT top(v, 2), count(v) FROM md",
        "SELECT top(v, 2) FROM cpu WHERE time >= 0 AND time < 10m GROUP BY time(5m), host",
        "SELECT bottom(v, 3) FROM cpu",
        // Several measurements, regular expressions.
        "SELECT * FROM /c.u/",
        // Arithmetic on strings and tags: influxd's type errors.
        "SELECT s + 1 FROM cpu",
        "SELECT (v + 1) * s FROM cpu",
        "SELECT v + s + 1 FROM cpu",
        "SELECT 1 + s FROM cpu",
        "SELECT s + 1.5 FROM cpu",
        "SELECT -s FROM cpu",
        "SELECT v + 1, s - 2 FROM cpu",
        "SELECT i + s FROM cpu",
        "SELECT v + host FROM cpu",
        "SELECT s + 1 FROM cpu WHERE time > 1000s",
        "SELECT nosuch + 1 FROM cpu",
        "SELECT s + 1 FROM nosuch",
        "SELECT i / 2 + v FROM cpu",
        // Functions that need numbers, on strings and booleans.
        "SELECT mean(s) FROM md",
        "SELECT sum(b) FROM md",
        "SELECT median(s) FROM md",
        "SELECT spread(b) FROM md",
        "SELECT stddev(s) FROM md",
        "SELECT integral(b) FROM md",
        "SELECT percentile(s, 50) FROM md",
        "SELECT min(b) FROM md",
        "SELECT max(b) FROM md",
        "SELECT min(b), max(b) FROM md GROUP BY h",
        "SELECT max(*) FROM md",
        "SELECT min(*) AS x, max(*) FROM md GROUP BY h",
        "SELECT max(b) FROM md WHERE time > 1000s",
        "SELECT mean(s) FROM md WHERE time > 1000s",
        "SELECT mean(s) + 1 FROM md",
        "SELECT mean(s) FROM md WHERE time >= 0 AND time < 10ns GROUP BY time(2ns)",
        "SELECT max(s) FROM md",
        "SELECT v FROM cpu, md",
        "SELECT count(v) FROM /m/",
        "SELECT mean(v) FROM /./ GROUP BY host",
        "SELECT used FROM /^mem$/, cpu",
        "SELECT * FROM /nomatch/",
        "SELECT max(i) FROM cpu, md GROUP BY *",
        // Checked when the statement runs: its error, not the request's.
        "SELECT v FROM cpu GROUP BY time(1m)",
        "SELECT v, count(v) FROM cpu",
        "SELECT v + count(v) FROM cpu",
        "SELECT derivative(mean(v)) FROM cpu",
        "SELECT holt(v) FROM cpu",
        "SELECT mean(v) + nope(v) FROM cpu",
        // mode() over numbers, strings and booleans.
        "SELECT mode(v) FROM md",
        "SELECT mode(i) FROM md",
        "SELECT mode(s) FROM md",
        "SELECT mode(b) FROM md",
        "SELECT mode(v) FROM md GROUP BY h",
        "SELECT mode(v) FROM cpu",
        "SELECT mode(i), count(i) FROM md WHERE time >= 0 AND time < 8 GROUP BY time(4ns)",
        "SELECT mode(s) FROM cpu GROUP BY host",
        // Strings and booleans in the select list: type errors beside
        // fields and functions, literals alone refused.
        "SELECT host + 'x' FROM cpu",
        "SELECT v + 'x' FROM cpu",
        "SELECT 'a' + v FROM cpu",
        "SELECT s + 'x' FROM md",
        "SELECT b + true FROM md",
        "SELECT v * 'a' FROM cpu",
        "SELECT i + 'a' + 1 FROM cpu",
        "SELECT mean(v) + 'x' FROM cpu",
        "SELECT count(v) + true FROM cpu",
        "SELECT last(s) + 'x' FROM md",
        "SELECT percentile(i, 50) + 'x' FROM md",
        "SELECT count(distinct(v)) + 'x' FROM md",
        "SELECT mean(s) + 'x' FROM md",
        "SELECT nosuch + 'x' FROM cpu",
        "SELECT v, nosuch + 'x' FROM cpu",
        "SELECT 'a' FROM cpu",
        "SELECT 1 FROM cpu",
        "SELECT 1 + 2 FROM cpu",
        "SELECT v, 1 FROM cpu",
        "SELECT v, 'x' + 'y' FROM cpu",
        "SELECT true FROM cpu",
        "SELECT 1 + 'a' FROM cpu",
        "SELECT v, 1 + 'a' FROM cpu",
        "SELECT mean(v) + 1, 2 FROM cpu",
        "SELECT mean(v) + true, 1 FROM cpu",
        "SELECT -'a' FROM cpu",
        "SELECT -true FROM cpu",
        "SELECT v - -1 FROM cpu",
        "SELECT 1 + nope(v) FROM cpu",
        // Column names: aliases kept as given, made names numbered
        // around them; `*` expanded where it stands.
        "SELECT max(v) AS x, i AS x FROM cpu",
        "SELECT mean(v), mean(v) AS mean FROM cpu",
        "SELECT max(v), min(v) AS max FROM cpu",
        "SELECT v AS v_1, v, v FROM cpu",
        "SELECT v, v, v_1 FROM cpu",
        "SELECT v, i AS v FROM cpu",
        "SELECT v + i, v + i AS v_i, v * i FROM cpu",
        "SELECT mean(*), mean(v) AS mean_v FROM md",
        "SELECT count(v) AS time FROM cpu",
        "SELECT *, v FROM cpu",
        "SELECT v, * FROM cpu",
        "SELECT *, v AS host FROM cpu",
        "SELECT *, v + i FROM cpu WHERE host = 'a'",
        "SELECT *, * FROM mem",
        "SELECT *, used FROM mem GROUP BY host",
        "SELECT *, v FROM cpu WHERE v > 2 LIMIT 2",
        "SELECT top(v, host, 3), host FROM cpu",
        "SELECT top(v, dc, 3) FROM cpu",
        "SELECT bottom(v, dc, 4), i FROM cpu",
        // A literal matched against a regular expression holds on every
        // row or none.
        "SELECT v FROM cpu WHERE 'a' =~ /a/",
        "SELECT v FROM cpu WHERE 'a' !~ /a/",
        "SELECT v FROM cpu WHERE 'x' =~ /x/ AND host = 'b'",
        "SELECT v FROM cpu WHERE 'a' =~ /b/ OR host = 'c'",
        "SELECT v FROM cpu WHERE 1 =~ /1/",
        "SELECT v FROM cpu WHERE true !~ /t/",
        // A string where something else belongs: influxd names it
        // without quotes, a character before them.
        "SELECT v FROM cpu WHERE 'a' =~ 'a'",
        "SELECT v FROM cpu WHERE host =~ 'a'",
        "SELECT v FROM 'cpu'",
        "SELECT v FROM cpu LIMIT 'a'",
        "SELECT v FROM cpu WHERE host = 'a' 'b'",
    ];
    assert_same(&queries, |q| ask(&real.http, q), |q| ask(&ours, q));
}

/// Several series over three weekly shard groups (which influxd starts on
/// Mondays) with points at equal times: raw rows in influxd's merge order,
/// transformations of raw points over the series merged as influxd merges
/// them (a derivative keeps a time's first point; a moving average,
/// cumulative sum and elapsed every point), `integral()` as its reducer
/// computes it (alone, per window, across gaps, of integers), and which
/// of many equal values `percentile()` picks.
#[test]
fn several_series_merged_as_influxd_merges_them() {
    let Some(real) = Influxd::start() else { return };
    let p = Procs::start(1, &[]);
    let ours = p.nodes[&p.leader()].http.clone();
    let mut text = common::differential::several_series(120);
    text.push_str(
        "x,host=a v=1 0\nx,host=b v=10 0\nx,host=a v=2 10000000000\n\
         x,host=b v=20 10000000000\nx,host=a v=4 20000000000",
    );
    // Twelve series and one without tags, many equal values at equal
    // times: which one a percentile picks shows the order it sorted.
    for i in 0..200i64 {
        for h in 0..12i64 {
            text.push_str(&format!(
                "\npc,h=h{h:02} v={},u={}i {}",
                (i * 7 + h * 3) % 5,
                (i + h) % 4,
                i * 10_000_000_000
            ));
        }
        if i % 3 == 0 {
            text.push_str(&format!("\npc v={} {}", i % 5, i * 10_000_000_000));
        }
    }
    load(&[&real.http, &ours], "q", &text);
    let queries = [
        "SELECT percentile(v, 50) FROM pc",
        "SELECT percentile(v, 95) FROM pc",
        "SELECT percentile(v, 5) FROM pc",
        "SELECT percentile(u, 50) FROM pc",
        "SELECT percentile(v, 50), max(v) FROM pc",
        "SELECT percentile(v, 33) FROM pc WHERE time > 500s AND time < 1500s",
        "SELECT percentile(v, 75) FROM pc GROUP BY h LIMIT 3",
        "SELECT percentile(v, 10) FROM pc WHERE time >= 0 AND time < 2000s GROUP BY time(70s)",
        "SHOW SHARD GROUPS",
        "SELECT v FROM r",
        "SELECT v FROM r ORDER BY time DESC",
        "SELECT v, w FROM r",
        "SELECT * FROM r",
        "SELECT w FROM r WHERE time >= 90h AND time < 200h",
        "SELECT derivative(v) FROM r",
        "SELECT difference(w) FROM r",
        "SELECT non_negative_derivative(v, 1h) FROM r",
        "SELECT non_negative_difference(v) FROM r ORDER BY time DESC",
        "SELECT moving_average(v, 3) FROM r",
        "SELECT cumulative_sum(w) FROM r",
        "SELECT elapsed(v, 1h) FROM r",
        "SELECT derivative(v), moving_average(v, 2) FROM r",
        "SELECT cumulative_sum(v), elapsed(v) FROM r",
        "SELECT cumulative_sum(v) FROM r LIMIT 7 OFFSET 3",
        "SELECT derivative(v) FROM r WHERE time > 100h",
        "SELECT derivative(v), mean(v) FROM r",
        "SELECT moving_average(v, 2) FROM r GROUP BY dc",
        "SELECT derivative(v) FROM r GROUP BY host",
        "SELECT integral(v) FROM r",
        "SELECT integral(w) FROM r",
        "SELECT integral(v) FROM r GROUP BY time(1d)",
        "SELECT integral(v), integral(w) FROM r GROUP BY time(5h) LIMIT 9 OFFSET 2",
        "SELECT integral(w) FROM r WHERE host = 'a' GROUP BY time(7h)",
        "SELECT integral(v) FROM r WHERE time >= 0 AND time < 30h GROUP BY time(2h) fill(0)",
        "SELECT integral(v), mean(v) FROM r GROUP BY time(1d) LIMIT 3",
        "SELECT integral(w, 1h) FROM r WHERE time >= 10h AND time < 300h GROUP BY time(17h)",
        "SELECT derivative(v) FROM x",
        "SELECT difference(v) FROM x",
        "SELECT moving_average(v, 2) FROM x ORDER BY time DESC",
        "SELECT cumulative_sum(v) FROM x",
        "SELECT elapsed(v) FROM x",
        "SELECT integral(v) FROM x GROUP BY time(15s)",
        "SELECT integral(v) FROM x WHERE time >= 0 AND time < 1m GROUP BY time(5s)",
        // Newest first: the reducer's windows run backward, and a window
        // can be emitted twice.
        "SELECT integral(v) FROM x WHERE time >= 0 AND time < 1m GROUP BY time(5s) ORDER BY time DESC",
        "SELECT integral(v) FROM x ORDER BY time DESC",
        "SELECT integral(v) FROM x WHERE host = 'a' GROUP BY time(15s) ORDER BY time DESC",
        "SELECT integral(v) FROM r GROUP BY time(1d) ORDER BY time DESC",
        "SELECT integral(w) FROM r GROUP BY time(7h) ORDER BY time DESC",
        "SELECT integral(v) FROM r ORDER BY time DESC",
    ];
    assert_same(&queries, |q| ask(&real.http, q), |q| ask(&ours, q));
}

/// `SLIMIT`/`SOFFSET`, which influxd applies in each shard group on its
/// own (to every series it holds, with the field read or not), and
/// subqueries under an outer `GROUP BY`, whose tags (and series limits)
/// reach the subquery's reads. Points over two weekly shard groups; some
/// series lack a tag or the field read.
#[test]
fn series_limits_and_subqueries_read_as_influxd() {
    let Some(real) = Influxd::start() else { return };
    let p = Procs::start(1, &[]);
    let ours = p.nodes[&p.leader()].http.clone();
    let s = 1_000_000_000i64;
    let day = 86_400 * s;
    let text = [
        format!("m,h=a v=1 {}", 5 * day),
        format!("m,h=b v=2 {}", 5 * day + s),
        format!("m,h=d w=9 {}", 5 * day + 2 * s),
        format!("m,h=a,k=x v=5 {}", 5 * day + 3 * s),
        format!("m,h=b v=3 {}", 12 * day),
        format!("m,h=c v=4 {}", 12 * day + s),
        format!("m,h=e w=1 {}", 12 * day + 2 * s),
        format!("n,h=a,dc=x v=1 {}", 5 * day),
        format!("n,h=b,dc=x v=2 {}", 5 * day + s),
        format!("n,h=c,dc=y v=3 {}", 5 * day + 2 * s),
        format!("n,h=a,dc=x v=4 {}", 5 * day + 10 * s),
        format!("n,h=c,dc=y v=7 {}", 12 * day),
    ]
    .join("\n");
    load(&[&real.http, &ours], "q", &text);
    let queries = [
        "SHOW SHARD GROUPS",
        "SELECT v FROM m GROUP BY h SLIMIT 1",
        "SELECT v FROM m GROUP BY h SLIMIT 1 SOFFSET 1",
        "SELECT v FROM m GROUP BY h SLIMIT 2 SOFFSET 2",
        "SELECT v FROM m GROUP BY h ORDER BY time DESC SLIMIT 1",
        "SELECT count(v) FROM m GROUP BY h SLIMIT 2",
        "SELECT count(v) FROM m GROUP BY h SOFFSET 2",
        "SELECT mean(v) FROM m GROUP BY h SLIMIT 3 SOFFSET 1",
        "SELECT v FROM m GROUP BY * SLIMIT 2",
        "SELECT v FROM m GROUP BY h, k SLIMIT 2",
        "SELECT v FROM m GROUP BY k SLIMIT 1",
        "SELECT v FROM m GROUP BY k SOFFSET 1",
        "SELECT v FROM m GROUP BY k SLIMIT 1 SOFFSET 1",
        "SELECT v FROM m SLIMIT 1",
        "SELECT v FROM m SOFFSET 1",
        "SELECT v FROM m WHERE h != 'a' GROUP BY h SLIMIT 1",
        "SELECT v FROM m WHERE v > 1 GROUP BY h SLIMIT 1",
        "SELECT v FROM m WHERE h = 'b' GROUP BY h SOFFSET 1",
        "SELECT v FROM m GROUP BY h SLIMIT 2 OFFSET 1",
        "SELECT top(v, 1) FROM m GROUP BY h SLIMIT 1",
        "SELECT count(v) FROM m WHERE time >= 5d AND time < 20d GROUP BY time(1d), h SLIMIT 1",
        "SELECT mean(v) FROM m WHERE time > 0 GROUP BY time(7d), h SLIMIT 1 fill(none)",
        "SELECT * FROM (SELECT v FROM m GROUP BY h) SLIMIT 1",
        "SELECT v FROM (SELECT v FROM m GROUP BY h) GROUP BY h SLIMIT 1",
        "SELECT v FROM (SELECT v FROM m GROUP BY h SLIMIT 1) GROUP BY h SLIMIT 1",
        "SELECT max(v) FROM (SELECT v FROM m GROUP BY h) GROUP BY h SOFFSET 1",
        "SELECT sum(v) FROM (SELECT v FROM m GROUP BY h SLIMIT 1) GROUP BY h",
        "SELECT sum(v) FROM (SELECT max(v) AS v FROM m GROUP BY h SLIMIT 2) SLIMIT 1",
        "SELECT v FROM (SELECT v, h FROM m) GROUP BY h SLIMIT 1",
        "SELECT v FROM (SELECT v, h FROM m) GROUP BY h",
        "SELECT v FROM (SELECT v FROM m) GROUP BY h",
        "SELECT sum(v) FROM (SELECT last(v) AS v FROM n GROUP BY h) GROUP BY dc",
        "SELECT sum(v) FROM (SELECT last(v) AS v FROM n) GROUP BY dc",
        "SELECT sum(v) FROM (SELECT last(v) AS v FROM n GROUP BY h) GROUP BY *",
        "SELECT sum(v) FROM (SELECT v FROM n) GROUP BY *",
        "SELECT * FROM (SELECT v FROM n) GROUP BY *",
        "SELECT * FROM (SELECT v FROM n GROUP BY h) GROUP BY *",
        "SELECT * FROM (SELECT last(v) AS v FROM n GROUP BY h)",
        "SELECT * FROM (SELECT last(v) AS v FROM n GROUP BY h) ORDER BY time DESC",
        "SELECT * FROM (SELECT last(v) AS v FROM n GROUP BY h) GROUP BY dc",
        "SELECT * FROM (SELECT last(v) AS v FROM n GROUP BY h, dc) GROUP BY dc",
        "SELECT * FROM (SELECT last(v) AS v, h FROM n GROUP BY dc)",
        "SELECT * FROM (SELECT last(v) AS v FROM n GROUP BY *)",
        "SELECT v * 2 FROM (SELECT last(v) AS v FROM n GROUP BY h)",
        "SELECT * FROM (SELECT max(v) AS v FROM n WHERE time > 0 GROUP BY time(1d), h fill(none))",
        "SELECT * FROM (SELECT max(v) AS v FROM n WHERE time > 0 GROUP BY time(1d), h fill(none)) LIMIT 2 OFFSET 1",
        "SELECT mean(v) FROM (SELECT max(v) AS v FROM n GROUP BY time(1d), h) WHERE time > 0 GROUP BY time(7d), dc",
        "SELECT * FROM (SELECT v FROM n) GROUP BY dc",
        "SELECT * FROM (SELECT v, h FROM n) GROUP BY dc",
        "SELECT v, h FROM (SELECT v FROM n) GROUP BY dc",
        "SELECT max(v) FROM (SELECT v FROM n GROUP BY *) GROUP BY dc",
        "SELECT count(v) FROM (SELECT v FROM (SELECT v FROM n) GROUP BY h) GROUP BY dc",
        "SELECT * FROM (SELECT mean(v) FROM n GROUP BY dc) GROUP BY h",
        "SELECT * FROM (SELECT derivative(v) FROM n GROUP BY h)",
        "SELECT * FROM (SELECT top(v, 3) FROM n)",
        "SELECT * FROM (SELECT top(v, h, 3) FROM n)",
        "SELECT * FROM (SELECT top(v, h, 3), dc FROM n)",
        "SELECT * FROM (SELECT bottom(v, dc, 3) AS b FROM n)",
        "SELECT h FROM (SELECT top(v, h, 3) FROM n)",
        "SELECT top, h FROM (SELECT top(v, h, 3) FROM n)",
        "SELECT max(top) FROM (SELECT top(v, h, 3) FROM n)",
        "SELECT count(*) FROM (SELECT top(v, h, 3) FROM n)",
        // A measurement named twice is read twice.
        "SELECT count(v) FROM m, m",
        "SELECT * FROM m, m",
        "SELECT v FROM m, m GROUP BY h LIMIT 3",
        "SELECT v FROM m, m ORDER BY time DESC LIMIT 4",
        "SELECT v FROM m, m WHERE v > 2",
        "SELECT v FROM m, n, m",
        "SELECT top(v, 2) FROM m, m",
        "SELECT max(v), h FROM m, m",
        "SELECT mean(v) FROM m, /m/ GROUP BY h",
        "SELECT count(v) FROM /m|n/, n",
        "SELECT sum(v), count(v) FROM m, m GROUP BY time(1d), h fill(none)",
        "SELECT sample(v, 100) FROM m, m",
        "SELECT distinct(v) FROM m, m",
        "SELECT percentile(v, 50) FROM m, m",
        "SELECT v FROM m, m GROUP BY h SLIMIT 1",
    ];
    assert_same(&queries, |q| ask(&real.http, q), |q| ask(&ours, q));
}

/// influxd's `max-select-series` and `max-select-buckets` (its
/// `max-select-point` is checked every few milliseconds while a query
/// runs, so a small one may pass it: not compared).
#[test]
fn select_limits_refuse_as_influxd() {
    let coordinator = "\n[coordinator]\n  max-select-series = 2\n  max-select-buckets = 4\n";
    let Some(real) = Influxd::start_sections("", coordinator) else {
        return;
    };
    let p = Procs::start(
        1,
        &["--max-select-series", "2", "--max-select-buckets", "4"],
    );
    let ours = p.nodes[&p.leader()].http.clone();
    let body = "m,h=a v=1 1\nm,h=a v=2 2\nm,h=b v=3 3\nm,h=c v=4 4\nm,h=c v=5 5\nn,h=a v=1 1\nn,h=a v=2 2000000000";
    load(&[&real.http, &ours], "q", body);
    let queries = [
        "SELECT * FROM m",
        "SELECT count(v) FROM m",
        "SELECT v FROM m WHERE h = 'a' OR h = 'b'",
        "SELECT count(v) FROM m GROUP BY h",
        "SELECT * FROM n",
        "SELECT count(v) FROM n WHERE time >= 0 AND time < 10s GROUP BY time(1s)",
        "SELECT count(v) FROM n WHERE time >= 0 AND time < 4s GROUP BY time(1s)",
        "SELECT count(v) FROM n WHERE time >= 0 AND time < 5s GROUP BY time(1s)",
        "SELECT count(v) FROM m WHERE h = 'c' AND time >= 0 AND time < 2s GROUP BY time(500ms)",
    ];
    assert_same(&queries, |q| ask(&real.http, q), |q| ask(&ours, q));
    // tsnode checks max-select-point on the points a statement reads.
    let p = Procs::start(1, &["--max-select-point", "3"]);
    let ours = p.nodes[&p.leader()].http.clone();
    ask(&ours, "CREATE DATABASE q");
    common::http::request(
        "POST",
        &ours,
        "/write",
        &[("db", "q")],
        &[],
        body.as_bytes(),
    );
    let (_, v) = ask(&ours, "SELECT * FROM m");
    assert_eq!(
        v["results"][0]["error"], "max-select-point limit exceeed: (5/3)",
        "{v}"
    );
    let (_, v) = ask(&ours, "SELECT * FROM n");
    assert_eq!(
        v["results"][0]["series"][0]["values"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "{v}"
    );
}
