//! Ingest throughput: the same line-protocol bodies into a real influxd
//! 1.6.7, a one-node tsnode and a three-node tsnode (through its leader),
//! interleaved, several rounds, medians, ratios against influxd.
//!
//! Defaults: 1000 series × 2000 points (2 M points) in 5000-point bodies,
//! sent from 4 keep-alive connections; the bodies are built before timing.
//!
//! ```sh
//! cargo build --release && cargo run --release --example ingest_bench -- --rounds 3
//! ```
//! (needs Debian's `influxdb` package.)

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use common::query;

fn num(name: &str, default: u64) -> u64 {
    common::arg(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Sends every body from `conns` connections; (seconds, failed bodies).
fn ingest(http: &str, db: &str, bodies: &Arc<Vec<String>>, conns: usize) -> (f64, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let (bodies, next, failed) = (bodies.clone(), next.clone(), failed.clone());
            let url = format!("http://{http}/write?db={db}");
            std::thread::spawn(move || {
                let agent = common::keep_alive_agent();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(b) = bodies.get(i) else { break };
                    match agent.post(&url).send(b.as_str()) {
                        Ok(r) if r.status() == 204 => {}
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for th in threads {
        let _ = th.join();
    }
    (t.elapsed().as_secs_f64(), failed.load(Ordering::Relaxed))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let series = num("--series", 1000);
    let per_series = num("--points-per-series", 2000);
    let body_points = num("--body-points", 5000);
    let rounds = num("--rounds", 3);
    let conns = num("--connections", 4) as usize;
    let points = series * per_series;

    // Bodies: points in time order, every series once per timestamp.
    let base = 1_700_000_000_000_000_000u64;
    let mut bodies = Vec::new();
    let mut body = String::new();
    let mut n = 0;
    for t in 0..per_series {
        for s in 0..series {
            let v = ((t * 31 + s * 17) % 1000) as f64 / 10.0;
            body.push_str(&format!(
                "cpu,host=h{s:04},region=r{} usage={v} {}\n",
                s % 8,
                base + t * 10_000_000_000
            ));
            n += 1;
            if n == body_points {
                bodies.push(std::mem::take(&mut body));
                n = 0;
            }
        }
    }
    if !body.is_empty() {
        bodies.push(body);
    }
    let bodies = Arc::new(bodies);
    println!(
        "{points} points ({series} series × {per_series}), {} bodies of {body_points}, {conns} connections, {rounds} rounds",
        bodies.len()
    );

    if let Some(http) = common::arg("--only") {
        // One server already running (for profiling): one round into it.
        query(&http, "", "CREATE DATABASE ingest");
        let (secs, failed) = ingest(&http, "ingest", &bodies, conns);
        println!(
            "{http}: {secs:.2} s, {:.0} points/s, {failed} failed",
            points as f64 / secs
        );
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let (_influxd, ihttp, _) = common::start_influxd(&w.join("influxd"));
    let (_one, one_http, _) = common::start_tsnodes(1, &w.join("one"), &[]);
    let (_three, three_http, _) = common::start_tsnodes(3, &w.join("three"), &[]);
    let one = common::leader_of(&one_http);
    let three = common::leader_of(&three_http);
    let targets = [
        ("influxd 1.6.7", ihttp.clone()),
        ("tsnode 1 node", one),
        ("tsnode 3 nodes", three),
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    for r in 0..rounds {
        for (i, (name, http)) in targets.iter().enumerate() {
            let db = format!("ingest{r}");
            query(http, "", &format!("CREATE DATABASE {db}"));
            let (secs, failed) = ingest(http, &db, &bodies, conns);
            let rate = points as f64 / secs;
            println!(
                "  round {r} {name:<15} {secs:>7.2} s {:>9.0} points/s{}",
                rate,
                if failed > 0 {
                    format!("  ({failed} bodies failed)")
                } else {
                    String::new()
                }
            );
            rates[i].push(rate);
        }
    }
    let med: Vec<f64> = rates.iter_mut().map(|v| median(v)).collect();
    println!("medians (points/s):");
    for (i, (name, _)) in targets.iter().enumerate() {
        println!(
            "  {name:<15} {:>9.0}   ratio to influxd {:.2}",
            med[i],
            med[i] / med[0]
        );
    }
}
