//! What a SELECT reads, planned on the series index (tag equalities pick
//! the series, only the fields used are read, `LIMIT` stops the reads
//! early), answered as a real influxd 1.6.7 answers: the same points written
//! to both, in two writes with a snapshot between them on tsnode (so the
//! reads merge TSM files with the cache and the last write of a time wins),
//! over three shard groups, then the same queries sent to both (and the
//! `SHOW … CARDINALITY` statements over the same data).

mod common;

use common::differential::{assert_same, load};
use common::influxd::Influxd;
use common::procs::Procs;

const DAY: i64 = 86_400_000_000_000;
const HOUR: i64 = 3_600_000_000_000;

/// Points in three weekly shard groups; `w` only in the first week.
fn first_write() -> String {
    let mut out = String::new();
    for (i, t) in [0, HOUR, 2 * HOUR, 8 * DAY, 8 * DAY + HOUR, 16 * DAY]
        .into_iter()
        .enumerate()
    {
        for (h, dc) in [("a", "x"), ("b", "x"), ("c", "y")] {
            let v = (i * 3 + h.len() + dc.len()) as f64 + 0.5;
            out.push_str(&format!("s,host={h},dc={dc} v={v} {t}\n"));
            if t < DAY {
                out.push_str(&format!("s,host={h},dc={dc} w={i}i {}\n", t + 1));
            }
        }
        out.push_str(&format!("s,host=d v={i} {t}\n"));
        out.push_str(&format!("s2,host=a v={i} {t}\n"));
        out.push_str(&format!("s\\,x,host=a v={i} {t}\n"));
    }
    out
}

/// Overwrites of some times (the last write wins) and new points, written
/// after tsnode flushed the first write to TSM files.
const SECOND_WRITE: &str = "s,host=a,dc=x v=100 0\n\
s,host=a,dc=x v=101 3600000000000\n\
s,host=b,dc=x v=102 691200000000000\n\
s,host=a,dc=x v=103 30\n\
s,host=c,dc=y s=\"late\" 1382400000000000\n";

#[test]
fn selects_planned_on_the_series_index_answer_as_influxd() {
    let Some(real) = Influxd::start() else { return };
    let p = Procs::start(1, &[]);
    let leader = p.leader();
    let ours = p.nodes[&leader].http.clone();
    load(&[&real.http, &ours], "sc", &first_write());
    p.snapshot(leader);
    for http in [&real.http, &ours] {
        let (code, v) = common::http::request(
            "POST",
            http,
            "/write",
            &[("db", "sc")],
            &[],
            SECOND_WRITE.as_bytes(),
        );
        assert_eq!(code, 204, "{http}: {v}");
    }
    let week2 = format!("time >= {} AND time < {}", 8 * DAY, 9 * DAY);
    let early = format!("time >= 0 AND time < {}", 90 * 60 * 1_000_000_000i64);
    let queries: Vec<String> = vec![
        "SELECT * FROM s".into(),
        "SELECT * FROM s LIMIT 1".into(),
        "SELECT * FROM s LIMIT 2 OFFSET 1".into(),
        "SELECT * FROM s ORDER BY time DESC LIMIT 2".into(),
        "SELECT * FROM s ORDER BY time DESC LIMIT 3 OFFSET 2".into(),
        "SELECT * FROM s GROUP BY * LIMIT 1".into(),
        "SELECT v FROM s GROUP BY host ORDER BY time DESC LIMIT 1 OFFSET 1".into(),
        "SELECT v FROM s GROUP BY host LIMIT 2 SLIMIT 2 SOFFSET 1".into(),
        "SELECT v FROM s WHERE host = 'a'".into(),
        "SELECT v FROM s WHERE host = 'a' LIMIT 1".into(),
        "SELECT v, w FROM s WHERE host = 'a' AND dc = 'x' LIMIT 3".into(),
        "SELECT v FROM s WHERE host = 'a' AND dc = 'y'".into(),
        "SELECT v FROM s WHERE host = 'a' OR host = 'c' LIMIT 3".into(),
        "SELECT v FROM s WHERE (host = 'a' OR host = 'b') AND dc = 'x' ORDER BY time DESC LIMIT 2"
            .into(),
        "SELECT v FROM s WHERE host = 'zz'".into(),
        "SELECT v FROM s WHERE zz = 'a'".into(),
        "SELECT v FROM s WHERE dc = ''".into(),
        "SELECT v FROM s WHERE dc = '' AND host = 'd'".into(),
        "SELECT v FROM s WHERE host != 'a' LIMIT 4".into(),
        "SELECT v FROM s WHERE host =~ /a|c/ LIMIT 2".into(),
        "SELECT v FROM s WHERE v > 8 LIMIT 2".into(),
        "SELECT v FROM s WHERE host = 'a' AND v > 8 ORDER BY time DESC LIMIT 1".into(),
        format!("SELECT * FROM s WHERE {week2}"),
        format!("SELECT * FROM s WHERE {week2} GROUP BY *"),
        format!("SELECT w FROM s WHERE {week2}"),
        format!("SELECT * FROM s WHERE {early} LIMIT 2"),
        format!("SELECT * FROM s WHERE {early} AND host = 'a' ORDER BY time DESC LIMIT 2"),
        "SELECT count(v) FROM s WHERE host = 'a'".into(),
        "SELECT count(*) FROM s WHERE dc = 'x'".into(),
        "SELECT mean(v), max(w) FROM s GROUP BY host".into(),
        "SELECT last(s) FROM s".into(),
        "SELECT v * 2 FROM s WHERE host = 'b' LIMIT 2".into(),
        "SELECT host, v FROM s LIMIT 2".into(),
        "SELECT host, dc FROM s LIMIT 2".into(),
        "SELECT * FROM s2".into(),
        // Every series has every tag: only the series whose points come
        // first are read.
        "SELECT * FROM s WHERE dc = 'x' LIMIT 2 OFFSET 1".into(),
        "SELECT * FROM s WHERE dc != '' ORDER BY time DESC LIMIT 3".into(),
        "SELECT * FROM s WHERE dc != '' GROUP BY dc LIMIT 2".into(),
        "SELECT dc, host, v FROM s WHERE dc =~ /x|y/ LIMIT 4 OFFSET 2".into(),
        format!("SELECT * FROM s WHERE dc != '' AND {week2} LIMIT 2"),
        "SELECT * FROM \"s,x\" LIMIT 2".into(),
        "SELECT * FROM s, s2 WHERE host = 'a' LIMIT 1".into(),
        "SELECT * FROM /^s/ WHERE host = 'a' ORDER BY time DESC LIMIT 1".into(),
        "SHOW MEASUREMENTS".into(),
        "SHOW SERIES CARDINALITY".into(),
        "SHOW SERIES EXACT CARDINALITY".into(),
        "SHOW SERIES EXACT CARDINALITY FROM s".into(),
        "SHOW SERIES CARDINALITY WHERE host = 'a'".into(),
        "SHOW SERIES CARDINALITY ON sc FROM s2".into(),
        "SHOW MEASUREMENT CARDINALITY".into(),
        "SHOW MEASUREMENT EXACT CARDINALITY ON sc".into(),
        "SHOW MEASUREMENT CARDINALITY ON nodb".into(),
        "SHOW TAG KEY CARDINALITY".into(),
        "SHOW TAG KEY EXACT CARDINALITY FROM s".into(),
        "SHOW TAG VALUES CARDINALITY WITH KEY = \"host\"".into(),
        "SHOW TAG VALUES EXACT CARDINALITY FROM s WITH KEY = \"dc\"".into(),
        "SHOW FIELD KEY CARDINALITY".into(),
        "SHOW FIELD KEY EXACT CARDINALITY FROM s".into(),
    ];
    let ask = |http: &str, q: &String| {
        common::http::request(
            "POST",
            http,
            "/query",
            &[("db", "sc"), ("q", q), ("epoch", "ns")],
            &[],
            b"",
        )
    };
    assert_same(&queries, |q| ask(&real.http, q), |q| ask(&ours, q));
}
