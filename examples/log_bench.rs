//! The raft log's engine, chosen by measurement: the same entries appended
//! and made durable, one sync per batch (as one Ready), by
//! - the segmented write-ahead log tsnode uses (`pwrite` + `fdatasync`);
//! - sled 0.34 (`insert` batch + `flush`, then an `fdatasync` of its data
//!   file and of every blob file it wrote: `flush` alone only calls
//!   `sync_file_range`, which is not durable);
//! - the baseline: plain `write` + `fdatasync` of one file.
//!
//! Two shapes: big entries (5000-point writes, ~250 KiB) and small ones
//! (1 KiB), several rounds interleaved, medians.
//!
//! `cargo run --release --example log_bench -- --rounds 3`

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use protobuf::Message as _;
use raft::prelude::Entry;
use raftsnap::raft::LogStore;
use raftsnap::raft::log_store::WalLogStore;

fn entries(n: u64, size: usize) -> Vec<Entry> {
    (1..=n)
        .map(|i| Entry {
            index: i,
            term: 1,
            data: (0..size)
                .map(|b| (b as u64 ^ i) as u8)
                .collect::<Vec<u8>>()
                .into(),
            ..Default::default()
        })
        .collect()
}

fn wal(dir: &Path, es: &[Entry], batch: usize) -> f64 {
    let log = WalLogStore::open(dir).expect("open");
    let t = Instant::now();
    for chunk in es.chunks(batch) {
        log.append(chunk).expect("append");
        log.flush().expect("sync");
    }
    t.elapsed().as_secs_f64()
}

fn sync_blobs(dir: &Path) {
    let blobs = dir.join("blobs");
    if let Ok(rd) = std::fs::read_dir(&blobs) {
        for e in rd.flatten() {
            if let Ok(f) = std::fs::File::open(e.path()) {
                let _ = f.sync_data();
            }
        }
        if let Ok(d) = std::fs::File::open(&blobs) {
            let _ = d.sync_all();
        }
    }
}

fn sled(dir: &Path, es: &[Entry], batch: usize) -> f64 {
    let db = sled::Config::new()
        .path(dir)
        .flush_every_ms(None)
        .open()
        .expect("open");
    let tree = db.open_tree("raft").expect("tree");
    let data = std::fs::File::open(dir.join("db")).expect("sled's data file");
    let t = Instant::now();
    for chunk in es.chunks(batch) {
        let mut b = sled::Batch::default();
        for e in chunk {
            b.insert(&e.index.to_be_bytes(), e.write_to_bytes().expect("encode"));
        }
        tree.apply_batch(b).expect("batch");
        db.flush().expect("flush");
        data.sync_data().expect("fdatasync");
        sync_blobs(dir);
    }
    t.elapsed().as_secs_f64()
}

fn baseline(dir: &Path, es: &[Entry], batch: usize) -> f64 {
    std::fs::create_dir_all(dir).expect("dir");
    let mut f = std::fs::File::create(dir.join("plain")).expect("create");
    let t = Instant::now();
    for chunk in es.chunks(batch) {
        let mut buf = Vec::new();
        for e in chunk {
            buf.extend_from_slice(&e.write_to_bytes().expect("encode"));
        }
        f.write_all(&buf).expect("write");
        f.sync_data().expect("fdatasync");
    }
    t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = common::arg("--rounds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    for (label, n, size, batch) in [
        (
            "big entries: 400 × 250 KiB, 4 per sync",
            400u64,
            250 << 10,
            4usize,
        ),
        (
            "small entries: 20 000 × 1 KiB, 20 per sync",
            20_000,
            1 << 10,
            20,
        ),
    ] {
        let es = entries(n, size);
        let mb = (n as f64 * size as f64) / (1 << 20) as f64;
        let (mut w, mut s, mut b) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let t = tempfile::tempdir().expect("tempdir");
            b.push(baseline(&t.path().join("b"), &es, batch));
            w.push(wal(&t.path().join("w"), &es, batch));
            s.push(sled(&t.path().join("s"), &es, batch));
        }
        let (w, s, b) = (median(w), median(s), median(b));
        println!(
            "{label} ({mb:.0} MiB, {} syncs), medians of {rounds}:",
            n as usize / batch
        );
        println!("  write+fdatasync baseline {b:>7.3} s");
        println!(
            "  raftsnap WAL             {w:>7.3} s  ({:.2}× baseline)",
            w / b
        );
        println!(
            "  sled + fdatasync         {s:>7.3} s  ({:.2}× baseline)",
            s / b
        );
    }
}
