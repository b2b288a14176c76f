//! Save benchmark: prints figures and ratios measured in one run.
//!
//! 1. A save of `--gib` GiB in 256 files by hard link vs by copy (crc32c
//!    computed while copying), with `cp` + `sync` of the same files as the
//!    baseline for the copy.
//! 2. Hard-link save time with 256 files holding `--gib` GiB vs `--big-gib`
//!    GiB: it must not grow with the data size (only with the file count).
//!
//! `cargo run --release --example save_bench -- [--gib 1] [--big-gib 4] [--dir D]`

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use raftsnap::snapshot::{LocalSnapshotStorage, SnapshotMeta, StorageOptions};

const FILES: usize = 256;

fn arg(name: &str, default: &str) -> String {
    common::arg(name).unwrap_or_else(|| default.to_string())
}

/// Writes `FILES` files totalling `bytes` under `dir`; returns (path, crc32c).
fn make_live_files(dir: &Path, bytes: u64) -> Vec<(PathBuf, u32)> {
    fs::create_dir_all(dir).unwrap();
    let per = (bytes / FILES as u64) as usize;
    let mut block = vec![0u8; 1 << 20];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::new();
    for i in 0..FILES {
        let p = dir.join(format!("{i:05}.tsm"));
        let mut f = std::io::BufWriter::new(fs::File::create(&p).unwrap());
        let mut crc = 0;
        let mut left = per;
        while left > 0 {
            for b in block.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let n = left.min(block.len());
            f.write_all(&block[..n]).unwrap();
            crc = crc32c::crc32c_append(crc, &block[..n]);
            left -= n;
        }
        f.into_inner().unwrap().sync_all().unwrap();
        out.push((p, crc));
    }
    out
}

fn save(root: &Path, files: &[(PathBuf, u32)], index: u64, link: bool) -> Duration {
    let (storage, _) = LocalSnapshotStorage::open(root, StorageOptions::default()).unwrap();
    let t = Instant::now();
    let mut w = storage
        .create_writer(SnapshotMeta {
            last_included_index: index,
            last_included_term: 1,
            ..Default::default()
        })
        .unwrap();
    for (p, crc) in files {
        let name = format!("data/{}", p.file_name().unwrap().to_string_lossy());
        if link {
            w.add_file_link(&name, p, *crc).unwrap();
        } else {
            let fm = w.add_file_copy(&name, p).unwrap();
            assert_eq!(fm.crc32c, *crc);
        }
    }
    storage.close_writer(w).unwrap();
    t.elapsed()
}

fn cp_sync(files: &[(PathBuf, u32)], dst: &Path) -> Duration {
    let srcs: Vec<&Path> = files.iter().map(|f| f.0.as_path()).collect();
    common::cp_sync(&srcs, dst)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let gib: u64 = arg("--gib", "1").parse().expect("--gib N");
    let big: u64 = arg("--big-gib", "4").parse().expect("--big-gib N");
    let tmp = tempfile::tempdir_in(arg("--dir", "/tmp")).unwrap();
    let base = tmp.path();
    println!(
        "save benchmark: {FILES} files, {gib} GiB and {big} GiB, in {}",
        base.display()
    );

    let small = make_live_files(&base.join("live1"), gib << 30);
    let root = base.join("snap1");
    let link = median((1..=5).map(|i| save(&root, &small, i, true)).collect());
    let copy = save(&root, &small, 100, false);
    let cp = cp_sync(&small, &base.join("cp1"));
    fs::remove_dir_all(&root).unwrap();
    let gb = (gib << 30) as f64;
    println!("\n1. save of {gib} GiB in {FILES} files");
    println!("   by hard link        {:>10.2?}", link);
    println!(
        "   by copy (+crc32c)   {:>10.2?}  {:>7.0} MiB/s",
        copy,
        gb / copy.as_secs_f64() / 1048576.0
    );
    println!(
        "   cp + sync baseline  {:>10.2?}  {:>7.0} MiB/s",
        cp,
        gb / cp.as_secs_f64() / 1048576.0
    );
    println!(
        "   copy / hard link    {:>10.1}x",
        copy.as_secs_f64() / link.as_secs_f64()
    );
    println!(
        "   copy-save / cp+sync {:>10.2}",
        copy.as_secs_f64() / cp.as_secs_f64()
    );

    let large = make_live_files(&base.join("live4"), big << 30);
    let root4 = base.join("snap4");
    let root1 = base.join("snap1b");
    // Interleave the runs so that drift on the machine hits both sides.
    let mut l1 = Vec::new();
    let mut l4 = Vec::new();
    for i in 1..=7 {
        l1.push(save(&root1, &small, i, true));
        l4.push(save(&root4, &large, i, true));
    }
    let (l1, l4) = (median(l1), median(l4));
    println!("\n2. hard-link save, {FILES} files (median of 7)");
    println!("   {gib} GiB of data       {:>10.2?}", l1);
    println!("   {big} GiB of data       {:>10.2?}", l4);
    println!(
        "   {big} GiB / {gib} GiB       {:>10.2}",
        l4.as_secs_f64() / l1.as_secs_f64()
    );
}
