//! `holt_winters()`, `holt_winters_with_fit()` and `sample()` answered as a
//! real influxd 1.6.7 answers: the same points written to both. Forecasts
//! must be the same floats (the same fit, step for step). A sample that
//! asks for at least as many points as a bucket holds is every point, so
//! it is compared exactly; a smaller one is random, so tsnode's is checked
//! to be that many of the bucket's real points.

mod common;

use std::collections::BTreeSet;

use common::differential::{assert_same, load};
use common::influxd::Influxd;
use common::procs::Procs;
use serde_json::Value;

const MIN: i64 = 60_000_000_000;

/// A daily-ish wave with a trend and noise (series `a`), a step series
/// with gaps (`b`), integers (`c`), strings and booleans.
fn points() -> String {
    let mut out = String::new();
    let mut noise = 7u64;
    for i in 0..600i64 {
        noise = noise
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let jitter = (noise >> 40) as f64 / (1u64 << 24) as f64;
        let wave = (i as f64 / 24.0 * std::f64::consts::TAU).sin() * 10.0;
        let t = i * 5 * MIN;
        out.push_str(&format!(
            "m,h=a v={} {t}\n",
            50.0 + i as f64 * 0.1 + wave + jitter
        ));
        if (i / 40) % 3 != 2 {
            out.push_str(&format!("m,h=b v={} {t}\n", ((i / 12) % 5) as f64 * 2.5));
        }
        if i % 2 == 0 {
            out.push_str(&format!("m,h=c n={}i {t}\n", (i * 7) % 23));
        }
        if i % 7 == 0 {
            out.push_str(&format!("m,h=d s=\"s{}\",ok={} {t}\n", i % 5, i % 3 == 0));
        }
    }
    out
}

/// A real influxd and a one-node tsnode holding [`points`] in `fs`: the
/// influxd, the tsnode processes and tsnode's HTTP address.
fn start() -> Option<(Influxd, Procs, String)> {
    let real = Influxd::start()?;
    let p = Procs::start(1, &[]);
    let ours = p.nodes[&p.leader()].http.clone();
    load(&[&real.http, &ours], "fs", &points());
    Some((real, p, ours))
}

fn ask(http: &str, q: &str) -> (u16, Value) {
    common::http::request(
        "POST",
        http,
        "/query",
        &[("db", "fs"), ("q", q), ("epoch", "ns")],
        &[],
        b"",
    )
}

#[test]
fn forecasts_and_samples_answer_as_influxd() {
    let Some((real, _p, ours)) = start() else {
        return;
    };
    let all = format!("time >= 0 AND time < {}", 600 * 5 * MIN);
    let half = format!("time >= {} AND time < {}", 100 * 5 * MIN, 400 * 5 * MIN);
    let queries: Vec<String> = vec![
        // Forecasts: seasonal and not, with the fit, over gaps, filled.
        format!(
            "SELECT holt_winters(mean(v), 10, 4) FROM m WHERE h = 'a' AND {all} GROUP BY time(30m)"
        ),
        format!(
            "SELECT holt_winters(mean(v), 5, 0) FROM m WHERE h = 'a' AND {all} GROUP BY time(1h)"
        ),
        format!(
            "SELECT holt_winters(mean(v), 5, 1) FROM m WHERE h = 'a' AND {half} GROUP BY time(1h)"
        ),
        format!(
            "SELECT holt_winters_with_fit(mean(v), 6, 6) FROM m WHERE h = 'a' AND {half} GROUP BY time(1h)"
        ),
        format!(
            "SELECT holt_winters_with_fit(max(v), 3, 0) FROM m WHERE {half} GROUP BY time(2h), h"
        ),
        format!(
            "SELECT holt_winters(mean(v), 4, 3) FROM m WHERE h = 'b' AND {all} GROUP BY time(1h)"
        ),
        format!(
            "SELECT holt_winters_with_fit(mean(v), 4, 3) FROM m WHERE h = 'b' AND {all} GROUP BY time(1h)"
        ),
        format!(
            "SELECT holt_winters(mean(v), 4, 3) FROM m WHERE h = 'b' AND {all} GROUP BY time(1h) fill(0)"
        ),
        format!("SELECT holt_winters(sum(n), 3, 2) FROM m WHERE {all} GROUP BY time(2h)"),
        format!("SELECT holt_winters(count(v), 2, 0) FROM m WHERE {half} GROUP BY time(3h)"),
        format!(
            "SELECT holt_winters(mean(v), 3, 0) AS f FROM m WHERE {half} GROUP BY time(1h) LIMIT 2"
        ),
        format!(
            "SELECT holt_winters(first(v), 2, 2), holt_winters(last(v), 2, 2) FROM m WHERE {half} GROUP BY time(4h)"
        ),
        format!(
            "SELECT holt_winters(mean(v), 3, 0) FROM m WHERE h = 'a' AND time >= 0 AND time < {} GROUP BY time(1h)",
            65 * MIN
        ),
        format!(
            "SELECT holt_winters(mean(v), 3, 30) FROM m WHERE h = 'a' AND {half} GROUP BY time(1h)"
        ),
        // Their errors.
        "SELECT holt_winters(mean(v), 3, 0) FROM m".into(),
        "SELECT holt_winters(v, 3, 0) FROM m".into(),
        "SELECT holt_winters(mean(v), 3) FROM m".into(),
        "SELECT holt_winters(mean(v), 0, 0) FROM m GROUP BY time(1h)".into(),
        "SELECT holt_winters(mean(v), 2, -1) FROM m GROUP BY time(1h)".into(),
        "SELECT holt_winters(mean(v), 2.5, 1) FROM m GROUP BY time(1h)".into(),
        "SELECT holt_winters_with_fit(mean(v), 2, 'x') FROM m GROUP BY time(1h)".into(),
        // Samples of at least a bucket's points: all of them.
        format!("SELECT sample(v, 1000) FROM m WHERE h = 'b' AND {half}"),
        format!("SELECT sample(v, 100) FROM m WHERE {half} GROUP BY time(2h), h LIMIT 5"),
        format!("SELECT sample(n, 50) FROM m WHERE {all} GROUP BY time(1h) LIMIT 7 OFFSET 3"),
        format!("SELECT sample(s, 200) FROM m WHERE {all}"),
        format!("SELECT sample(ok, 200) AS x FROM m WHERE {all} GROUP BY h"),
        format!(
            "SELECT sample(v, 500) FROM m WHERE time >= 0 AND time < {} GROUP BY time(10m)",
            60 * MIN
        ),
        // Beside other functions: zipped by time, filled as fill() says.
        format!("SELECT sample(v, 1000), max(v) FROM m WHERE h = 'b' AND {half}"),
        format!("SELECT max(n), sample(v, 1000) FROM m WHERE {half} GROUP BY h"),
        format!(
            "SELECT sample(v, 100), max(v), mean(v) FROM m WHERE h = 'a' AND {half} GROUP BY time(2h) LIMIT 20"
        ),
        format!("SELECT sample(v, 100), count(n) FROM m WHERE {half} GROUP BY time(1h), h fill(0)"),
        format!(
            "SELECT sample(v, 100), last(v) FROM m WHERE h = 'b' AND {all} GROUP BY time(3h) fill(previous)"
        ),
        format!(
            "SELECT sample(v, 100), min(v) FROM m WHERE h = 'b' AND {all} GROUP BY time(3h) fill(-1.5)"
        ),
        format!(
            "SELECT sample(v, 100), min(v) FROM m WHERE h = 'b' AND {all} GROUP BY time(3h) fill(none)"
        ),
        format!("SELECT sample(v, 1000) AS s, sample(n, 1000) AS k, count(v) FROM m WHERE {half}"),
        format!("SELECT sample(v, 1000), max(nope) FROM m WHERE {half}"),
        format!("SELECT sample(nope, 10), first(v) FROM m WHERE {half} GROUP BY *"),
        format!("SELECT max(v) * 2, sample(v, 1000) FROM m WHERE h = 'a' AND {half}"),
        "SELECT sample(v, 10), top(v, 1) FROM m".into(),
        "SELECT sample(v, 10), max(v) FROM nope".into(),
        // Their errors.
        "SELECT sample(v) FROM m".into(),
        "SELECT sample(v, 0) FROM m".into(),
        "SELECT sample(v, -3) FROM m".into(),
        "SELECT sample(v, 1.5) FROM m".into(),
        "SELECT sample(v, h, 2) FROM m".into(),
        "SELECT sample(v, 2, 3) FROM m".into(),
    ];
    assert_same(&queries, |q| ask(&real.http, q), |q| ask(&ours, q));

    // Fewer than a bucket holds: as many of its real points (time and
    // value), in time order.
    for (q, raw) in [
        (
            format!("SELECT sample(v, 7) FROM m WHERE h = 'a' AND {half}"),
            format!("SELECT v FROM m WHERE h = 'a' AND {half}"),
        ),
        (
            format!("SELECT sample(v, 3) FROM m WHERE {half} GROUP BY time(2h), h"),
            format!("SELECT v FROM m WHERE {half} GROUP BY h"),
        ),
    ] {
        let rows = |v: &Value| -> Vec<(i64, String)> {
            let mut out = Vec::new();
            for s in v["results"][0]["series"].as_array().into_iter().flatten() {
                for r in s["values"].as_array().into_iter().flatten() {
                    out.push((r[0].as_i64().unwrap_or(-1), r[1].to_string()));
                }
            }
            out
        };
        let (code, theirs) = ask(&real.http, &q);
        let (code2, mine) = ask(&ours, &q);
        assert_eq!((code, code2), (200, 200), "{q}: {mine}");
        let (t, m) = (rows(&theirs), rows(&mine));
        assert_eq!(t.len(), m.len(), "{q}: influxd {theirs}, tsnode {mine}");
        let real_points: BTreeSet<(i64, String)> =
            rows(&ask(&real.http, &raw).1).into_iter().collect();
        assert!(m.iter().all(|p| real_points.contains(p)), "{q}: {mine}");
        // Each series' rows in time order.
        for s in mine["results"][0]["series"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let times: Vec<i64> = s["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| r[0].as_i64().unwrap_or(-1))
                .collect();
            assert!(times.windows(2).all(|w| w[0] <= w[1]), "{q}: {mine}");
        }
    }
}

#[test]
fn indicators_answer_as_influxd() {
    let Some((real, _p, ours)) = start() else {
        return;
    };
    let half = format!("time >= {} AND time < {}", 100 * 5 * MIN, 300 * 5 * MIN);
    let short = format!("time >= {} AND time < {}", 100 * 5 * MIN, 130 * 5 * MIN);
    let mut queries: Vec<String> = Vec::new();
    for f in [
        "exponential_moving_average",
        "double_exponential_moving_average",
        "triple_exponential_moving_average",
        "relative_strength_index",
        "triple_exponential_derivative",
        "kaufmans_efficiency_ratio",
        "kaufmans_adaptive_moving_average",
        "chande_momentum_oscillator",
    ] {
        queries.extend([
            format!("SELECT {f}(v, 4) FROM m WHERE h = 'a' AND {short}"),
            format!("SELECT {f}(v, 3) FROM m WHERE {short} GROUP BY h"),
            format!("SELECT {f}(mean(v), 5) FROM m WHERE {half} GROUP BY time(1h), h"),
            format!("SELECT {f}(mean(v), 3, 0) FROM m WHERE h = 'b' AND {half} GROUP BY time(1h)"),
            format!("SELECT {f}(max(v), 2, 1) FROM m WHERE {half} GROUP BY time(2h) fill(0)"),
            format!("SELECT {f}(n, 6, 2) FROM m WHERE {short}"),
            format!("SELECT {f}(v, 0) FROM m"),
            format!("SELECT {f}(v, 2.5) FROM m"),
            format!("SELECT {f}(v) FROM m"),
            format!("SELECT {f}(v, 2, -2) FROM m"),
            format!("SELECT {f}(v, 2, 'x') FROM m"),
            format!("SELECT {f}(mean(v), 2) FROM m"),
            format!("SELECT {f}(v, 2) FROM m WHERE {short} GROUP BY time(1h)"),
        ]);
        if !f.starts_with("kaufmans") {
            queries.extend([
                format!("SELECT {f}(v, 4, -1, 'simple') FROM m WHERE h = 'a' AND {short}"),
                format!(
                    "SELECT {f}(mean(v), 3, 1, 'simple') FROM m WHERE {half} GROUP BY time(1h)"
                ),
                format!("SELECT {f}(v, 2, 0, 'none') FROM m WHERE h = 'a' AND {short}"),
                format!("SELECT {f}(v, 2, 0, 3) FROM m"),
            ]);
        } else {
            queries.push(format!("SELECT {f}(v, 2, 0, 'simple') FROM m"));
        }
    }
    queries.push(format!(
        "SELECT chande_momentum_oscillator(v, 5, -1, 'exponential') FROM m WHERE h = 'a' AND {short}"
    ));
    queries.push(format!(
        "SELECT triple_exponential_derivative(v, 2, 0) FROM m WHERE {short}"
    ));
    assert_same(&queries, |q| ask(&real.http, q), |q| ask(&ours, q));
}

#[test]
fn percentiles_pick_the_point_influxd_picks_among_equal_values() {
    let Some((real, _p, ours)) = start() else {
        return;
    };
    let all = format!("time >= 0 AND time < {}", 600 * 5 * MIN);
    let half = format!("time >= {} AND time < {}", 100 * 5 * MIN, 400 * 5 * MIN);
    // Many equal values: the time answered is that of the point influxd's
    // (unstable) sort leaves at the percentile's place.
    let queries: Vec<String> = vec![
        format!("SELECT percentile(v, 50) FROM m WHERE h = 'b' AND {all}"),
        format!("SELECT percentile(v, 90) FROM m WHERE h = 'b' AND {half}"),
        format!("SELECT percentile(n, 90) FROM m WHERE {all}"),
        format!("SELECT percentile(n, 10) FROM m WHERE {half}"),
        format!("SELECT percentile(v, 95) FROM m WHERE {all}"),
        format!("SELECT percentile(v, 25) FROM m WHERE {half} GROUP BY h"),
        format!("SELECT percentile(v, 75) FROM m WHERE {half} GROUP BY time(6h)"),
        format!("SELECT percentile(n, 50) FROM m WHERE {all} GROUP BY time(12h)"),
    ];
    assert_same(&queries, |q| ask(&real.http, q), |q| ask(&ours, q));
}
