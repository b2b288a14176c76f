//! Query execution at scale against a real `influxd` 1.6.7 fed the same
//! bodies, in the same run: a measurement of `--series` series (default
//! 1 M, one point each) and one of 20 series × 30 days at a point a minute.
//! Timed, in interleaved rounds (medians), with every answer compared:
//!
//! - 40 one-series queries (`WHERE host = … AND id = …`) on the big one;
//! - `SELECT * … LIMIT 1` over all its series;
//! - `count()` over all its series (and the node's peak RSS growth);
//! - 10 one-hour `mean() … GROUP BY host` windows over the 30 days;
//! - the schema statements a dashboard's editor sends (`SHOW MEASUREMENTS`,
//!   `SHOW TAG KEYS`, `SHOW FIELD KEYS`, `SHOW TAG VALUES`);
//! - Grafana's panels over `--points` points (default 10 M: 100 hosts, a
//!   point every 10 s): the mean by 10 s by host over the last hour, the
//!   max by host over 7 days, `count(*)` over everything, the host
//!   variable's `SHOW TAG VALUES`, the 95th percentile over a day.
//!
//! `cargo build --release && cargo run --release --example query_bench --
//! [--series 1000000] [--points 10000000] [--rounds 3]` (needs Debian's
//! `influxdb` package).

mod common;

use std::time::{Duration, Instant};

use common::{Kill, arg, query};

const DAY: i64 = 86_400_000_000_000;
const BASE: i64 = 1_700_000_000_000_000_000;

/// Writes `body`; the time it took.
fn write(http: &str, body: &str) -> Duration {
    let t = Instant::now();
    let r = ureq::post(&format!("http://{http}/write"))
        .query("db", "bench")
        .send(body);
    assert!(r.is_ok(), "write to {http}: {r:?}");
    t.elapsed()
}

/// Peak RSS (VmHWM) and current RSS of `pid`, in KiB.
fn rss(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Resets `pid`'s peak RSS to its current RSS.
fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let n: u64 = arg("--series")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: usize = arg("--rounds").and_then(|v| v.parse().ok()).unwrap_or(3);
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let unlimited = "  max-series-per-database = 0\n  max-values-per-tag = 0\n";
    let (real, ihttp, _) = common::start_influxd_with(&w.join("influxd"), unlimited);
    let (nodes, http, _) = common::start_tsnodes(
        1,
        &w.join("tsnode"),
        &[
            "--max-series-per-database",
            "0",
            "--max-values-per-tag",
            "0",
        ],
    );
    let thttp = http[0].clone();
    common::create_database_when_elected(&thttp, "bench");
    query(&ihttp, "", "CREATE DATABASE bench");

    let mut took = [Duration::ZERO; 2];
    let batch = 20_000u64;
    let mut i = 0;
    while i < n {
        let body: String = (i..(i + batch).min(n))
            .map(|j| {
                format!(
                    "big,host=h{},id={} v={}i,u={} {}\n",
                    j / 1000,
                    j % 1000,
                    j,
                    j as f64 / 8.0,
                    BASE + (j % 3600) as i64 * 1_000_000_000
                )
            })
            .collect();
        took[0] += write(&ihttp, &body);
        took[1] += write(&thttp, &body);
        i += batch;
    }
    // Grafana's data: 100 hosts, a point every 10 s, ending at BASE.
    let points: i64 = arg("--points")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let per_host = points / 100;
    let start = BASE - per_host * 10_000_000_000;
    let mut k = 0;
    while k < per_host {
        let upto = (k + 200).min(per_host);
        let body: String = (k..upto)
            .flat_map(|i| {
                (0..100).map(move |h| {
                    format!(
                        "cpu,host=web{h:02} usage={} {}\n",
                        ((i * 37 + h * 11) % 1000) as f64 / 10.0,
                        start + i * 10_000_000_000
                    )
                })
            })
            .collect();
        took[0] += write(&ihttp, &body);
        took[1] += write(&thttp, &body);
        k = upto;
    }
    let minutes = 30 * 24 * 60;
    for host in 0..20 {
        let body: String = (0..minutes)
            .map(|m| {
                format!(
                    "long,host=l{host} v={} {}\n",
                    (m * 7 + host) % 101,
                    BASE + m * 60_000_000_000
                )
            })
            .collect();
        took[0] += write(&ihttp, &body);
        took[1] += write(&thttp, &body);
    }
    println!(
        "{n} series + 20 × {minutes} points + {points} points of 100 hosts written: influxd {:.1} s, tsnode {:.1} s",
        took[0].as_secs_f64(),
        took[1].as_secs_f64()
    );

    let one_series: Vec<String> = (0..40u64)
        .map(|k| {
            let j = (k * 2_654_435_761) % n;
            format!(
                "SELECT v, u FROM big WHERE host = 'h{}' AND id = '{}'",
                j / 1000,
                j % 1000
            )
        })
        .collect();
    let windows: Vec<String> = (0..10i64)
        .map(|k| {
            let from = BASE + (k * 3 + 1) * DAY;
            format!(
                "SELECT mean(v) FROM long WHERE time >= {from} AND time < {} GROUP BY host",
                from + DAY / 24
            )
        })
        .collect();
    let hour = 3_600_000_000_000i64;
    let grafana: Vec<(&str, String)> = vec![
        (
            "mean by 10s by host, 1h",
            format!(
                "SELECT mean(usage) FROM cpu WHERE time >= {} AND time < {BASE} GROUP BY time(10s), host",
                BASE - hour
            ),
        ),
        (
            "max by host, 7 days",
            format!(
                "SELECT max(usage) FROM cpu WHERE time >= {} AND time < {BASE} GROUP BY time(1h), host",
                BASE - 7 * DAY
            ),
        ),
        ("count(*) over all", "SELECT count(*) FROM cpu".into()),
        (
            "SHOW TAG VALUES (host)",
            "SHOW TAG VALUES FROM cpu WITH KEY = host".into(),
        ),
        (
            "95th percentile, 1 day",
            format!(
                "SELECT percentile(usage, 95) FROM cpu WHERE time >= {} AND time < {BASE}",
                BASE - DAY
            ),
        ),
    ];
    // count() first: its RSS growth is measured in the first round, before
    // any other query grew the node.
    let mut sets: Vec<(&str, Vec<String>)> = vec![
        ("count() over all", vec!["SELECT count(v) FROM big".into()]),
        ("40 one-series queries", one_series),
        ("SELECT * LIMIT 1", vec!["SELECT * FROM big LIMIT 1".into()]),
        ("10 one-hour windows", windows),
        (
            "schema (Grafana's SHOWs)",
            vec![
                "SHOW MEASUREMENTS".into(),
                "SHOW TAG KEYS FROM big".into(),
                "SHOW FIELD KEYS FROM big".into(),
                "SHOW TAG VALUES FROM big WITH KEY = host".into(),
                "SHOW TAG VALUES FROM long WITH KEY = host".into(),
            ],
        ),
    ];
    sets.extend(grafana.into_iter().map(|(name, q)| (name, vec![q])));
    let pids = [("influxd", real.0.id()), ("tsnode", nodes[0].0.id())];
    let servers = [("influxd", ihttp.as_str()), ("tsnode", thttp.as_str())];
    let mut times = vec![[Vec::new(), Vec::new()]; sets.len()];
    let mut growth = [Vec::new(), Vec::new()];
    let mut unequal = 0;
    // Telegraf's `influxdb` input polls /debug/vars (every 10 s by default).
    let mut vars = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (si, (_, qs)) in sets.iter().enumerate() {
            let mut answers = [Vec::new(), Vec::new()];
            // Interleaved: who goes first alternates by round.
            for k in 0..2 {
                let s = (k + round) % 2;
                reset_peak(pids[s].1);
                let before = rss(pids[s].1).1;
                let t = Instant::now();
                for q in qs {
                    answers[s].push(query(servers[s].1, "bench", q));
                }
                times[si][s].push(t.elapsed().as_secs_f64());
                if si == 0 && round == 0 {
                    growth[s].push(rss(pids[s].1).0.saturating_sub(before) as f64 / 1024.0);
                }
            }
            for (q, (a, b)) in qs.iter().zip(answers[0].iter().zip(&answers[1])) {
                if a != b && round == 0 {
                    unequal += 1;
                    let cut =
                        |v: &serde_json::Value| v.to_string().chars().take(300).collect::<String>();
                    println!(
                        "  differs: {q}\n    influxd {}\n    tsnode  {}",
                        cut(a),
                        cut(b)
                    );
                }
            }
        }
        // After the queries: the first count() above runs on a fresh node.
        for k in 0..2 {
            let s = (k + round) % 2;
            let t = Instant::now();
            let mut r = ureq::get(&format!("http://{}/debug/vars", servers[s].1))
                .call()
                .expect("/debug/vars");
            let body = r.body_mut().read_to_string().expect("body");
            vars[s].push(t.elapsed().as_secs_f64());
            assert!(
                body.contains("\"database\""),
                "{}: {body:.200}",
                servers[s].0
            );
        }
    }
    println!("medians of {rounds} interleaved rounds:");
    for (si, (name, _)) in sets.iter().enumerate() {
        let (i, t) = (median(times[si][0].clone()), median(times[si][1].clone()));
        println!(
            "  {name:<24} influxd {i:>8.3} s   tsnode {t:>8.3} s   ratio tsnode/influxd {:.2}",
            t / i
        );
    }
    let (i, t) = (median(vars[0].clone()), median(vars[1].clone()));
    println!(
        "  {:<24} influxd {i:>8.3} s   tsnode {t:>8.3} s   ratio tsnode/influxd {:.2}",
        "GET /debug/vars",
        t / i
    );
    println!(
        "  peak RSS growth during the first count(): influxd {:.0} MiB, tsnode {:.0} MiB",
        median(growth[0].clone()),
        median(growth[1].clone())
    );
    println!("answers that differ from influxd's: {unequal}");
    drop::<Vec<Kill>>(nodes);
}
