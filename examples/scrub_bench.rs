//! What the background scrub costs writers: a one-node tsnode holding
//! about 1 GiB of TSM (incompressible strings), scrubbing every
//! `--interval` seconds at its default rate (50 MiB/s), while 4 keep-alive
//! connections write small float points without pause. Throughput is
//! sampled in 2 s windows, each labelled by whether a scrub pass ran
//! throughout it or not at all; the medians are compared. Before each pass
//! the page cache is dropped (when run as root), so the scrub reads from
//! the disk.
//!
//! ```sh
//! cargo build --release && cargo run --release --example scrub_bench -- --gib 1 --seconds 150
//! ```

mod common;
use common::status;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn num(name: &str, default: f64) -> f64 {
    common::arg(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn post(http: &str, path: &str, body: &str) -> u16 {
    ureq::post(&format!("http://{http}{path}"))
        .config()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .send(body)
        .map_or(0, |r| r.status().as_u16())
}

fn drop_caches() -> bool {
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let gib = num("--gib", 1.0);
    let seconds = num("--seconds", 150.0);
    let interval = num("--interval", 30.0) as u64;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_procs, http, _) = common::start_tsnodes(
        1,
        dir.path(),
        &[
            "--scrub-interval",
            &format!("{interval}s"),
            "--snapshot-interval",
            "0",
        ],
    );
    let http = common::leader_of(&http);
    common::query(&http, "", "CREATE DATABASE db");

    // ~1 KiB of pseudo-random text per point barely compresses.
    let points = (gib * f64::from(1u32 << 30) / 1024.0) as u64;
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let t = Instant::now();
    let mut body = String::new();
    for i in 0..points {
        let s: String = (0..1000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (b'a' + (x % 26) as u8) as char
            })
            .collect();
        body.push_str(&format!(
            "big,s=s{} v=\"{s}\" {}\n",
            i % 16,
            (i + 1) * 1_000_000_000
        ));
        if body.len() > 4 << 20 || i + 1 == points {
            assert_eq!(post(&http, "/write?db=db", &body), 204, "load failed");
            body.clear();
        }
    }
    assert_eq!(post(&http, "/snapshot", ""), 200, "snapshot failed");
    let bytes = status(&http)["snapshot"]["bytes"].as_u64().unwrap_or(0);
    eprintln!(
        "loaded {points} points, {:.2} GiB of snapshot, in {:.1} s",
        bytes as f64 / f64::from(1u32 << 30),
        t.elapsed().as_secs_f64()
    );

    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let (written, stop, url) = (
                written.clone(),
                stop.clone(),
                format!("http://{http}/write?db=db"),
            );
            std::thread::spawn(move || {
                let agent = common::keep_alive_agent();
                let mut ts = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    let body: String = (0..1000)
                        .map(|i| {
                            ts += 1;
                            format!("small,w=w{w},h=h{} v={i} {ts}\n", i % 50)
                        })
                        .collect();
                    if matches!(agent.post(&url).send(body.as_str()), Ok(r) if r.status() == 204) {
                        written.fetch_add(1000, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    let (mut during, mut idle) = (Vec::new(), Vec::new());
    let dropped = drop_caches();
    let mut was_running = false;
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    while Instant::now() < end {
        let s0 = status(&http)["scrub"].clone();
        let w0 = written.load(Ordering::Relaxed);
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs(2));
        let rate = (written.load(Ordering::Relaxed) - w0) as f64 / t0.elapsed().as_secs_f64();
        let s1 = status(&http)["scrub"].clone();
        let same_pass = s0["passes_total"] == s1["passes_total"];
        let running = (s0["running"].as_bool(), s1["running"].as_bool());
        match running {
            (Some(true), Some(true)) if same_pass => during.push(rate),
            (Some(false), Some(false)) if same_pass => idle.push(rate),
            _ => {}
        }
        // A pass just ended: drop the cache so the next one reads the disk.
        if was_running && running.1 == Some(false) && dropped {
            drop_caches();
        }
        was_running = running.1 == Some(true);
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.join();
    }
    let sc = status(&http)["scrub"].clone();
    let (n_during, n_idle) = (during.len(), idle.len());
    let (md, mi) = (median(&mut during), median(&mut idle));
    println!(
        "scrub passes {}, {:.2} GiB read; last pass {} ms for {} bytes ({:.1} MiB/s)",
        sc["passes_total"],
        sc["bytes_total"].as_f64().unwrap_or(0.0) / f64::from(1u32 << 30),
        sc["last"]["duration_ms"],
        sc["last"]["bytes"],
        sc["last"]["bytes"].as_f64().unwrap_or(0.0)
            / (sc["last"]["duration_ms"].as_f64().unwrap_or(1.0) / 1000.0)
            / f64::from(1u32 << 20)
    );
    println!(
        "writes/s: during a scrub {md:.0} (median of {n_during} windows), without {mi:.0} (median of {n_idle}); ratio {:.3}; page cache dropped before passes: {dropped}",
        md / mi
    );
}
