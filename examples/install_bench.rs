//! Install benchmark: a follower installs a snapshot of `--gib` GiB in
//! `--files` files from a leader over loopback gRPC; the baseline is `cp` +
//! `sync` of the same files on the same disk, in the same run. Leader and
//! follower are separate processes, so the follower's peak RSS is its own.
//!
//! `cargo run --release --example install_bench -- [--gib 1 | --mib 256] [--files 64] [--rounds 3] [--dir D]`
//!
//! With several rounds, each round times `cp -r` + `sync` then an install
//! into an empty follower (interleaved); medians are reported.

mod common;
use common::arg;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftsnap::snapshot::{
    BoxError, CopierOptions, ExecutorOptions, InstallOutcome, LocalSnapshotStorage, ReaderRegistry,
    RemoteFileCopier, SnapshotExecutor, SnapshotFileService, SnapshotMeta, SnapshotReader,
    SnapshotThrottle, SnapshotUri, SnapshotWriter, StateMachine, StorageOptions, shared,
    split_incoming,
};

/// Peak and current resident set of this process, in KiB.
fn rss_kib() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// CPU seconds (user, system) used by this process so far.
fn cpu_secs() -> (f64, f64) {
    let (user, sys) = common::cpu_ticks("self");
    (user as f64 / 100.0, sys as f64 / 100.0)
}

/// A state machine that accepts any snapshot (the benchmark times the copy).
struct Sink;
impl StateMachine for Sink {
    fn on_snapshot_save(
        &mut self,
        _: &mut SnapshotWriter,
        _: &SnapshotMeta,
    ) -> Result<(), BoxError> {
        Ok(())
    }
    fn on_snapshot_load(&mut self, _: &SnapshotReader) -> Result<(), BoxError> {
        Ok(())
    }
}

fn make_snapshot(root: &Path, total: u64, files: u64) {
    let (storage, _) = LocalSnapshotStorage::open(root, StorageOptions::default()).unwrap();
    let mut w = storage
        .create_writer(SnapshotMeta {
            last_included_index: 1000,
            last_included_term: 1,
            voters: vec![1, 2],
            ..Default::default()
        })
        .unwrap();
    let per = total / files;
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut block = vec![0u8; 1 << 20];
    for i in 0..files {
        let mut sink = w
            .create_file(&format!("data/db/rp/{i}/000000001-000000001.tsm"))
            .unwrap();
        let mut left = per as usize;
        while left > 0 {
            for b in block.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
            }
            let n = left.min(block.len());
            sink.write_all(&block[..n]).unwrap();
            left -= n;
        }
        sink.finish().unwrap();
    }
    storage.close_writer(w).unwrap();
}

/// Child: serve the latest snapshot under `root`; print its URI; exit on stdin EOF.
fn serve(root: PathBuf) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (storage, _) = LocalSnapshotStorage::open(&root, StorageOptions::default()).unwrap();
        let throttle = Arc::new(SnapshotThrottle::default());
        let registry = ReaderRegistry::new(Duration::from_secs(300), throttle.clone());
        let id = registry.register(storage.open_reader().expect("a snapshot"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = SnapshotFileService::new(registry, throttle);
        let bulk = Some(svc.bulk());
        let svc = svc.into_server();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .initial_stream_window_size(Some(4 << 20))
                .initial_connection_window_size(Some(16 << 20))
                .add_service(svc)
                .serve_with_incoming(split_incoming(listener, bulk))
                .await
                .unwrap();
        });
        println!("raftsnap://{addr}/{id}");
        tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            while std::io::stdin()
                .read_line(&mut s)
                .map(|n| n > 0)
                .unwrap_or(false)
            {}
        })
        .await
        .unwrap();
    });
}

/// The copier's options; `INSTALL_PARALLEL_FILES`, `INSTALL_CHUNK_KIB` and
/// `INSTALL_GRPC=1` (gRPC messages instead of bulk streams) in the
/// environment override the defaults, for trying other settings.
fn copier_options() -> CopierOptions {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u32>().ok());
    let mut o = CopierOptions::default();
    if let Some(n) = env("INSTALL_PARALLEL_FILES") {
        o.parallel_files = n as usize;
    }
    if let Some(k) = env("INSTALL_CHUNK_KIB") {
        o.chunk_bytes = k << 10;
    }
    if env("INSTALL_GRPC") == Some(1) {
        o.bulk = false;
    }
    o
}

/// Child: install from `uri` into `root`; print seconds and RSS figures.
fn install(uri: String, root: PathBuf) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (hwm0, rss0) = rss_kib();
    rt.block_on(async {
        let (storage, _) = LocalSnapshotStorage::open(&root, StorageOptions::default()).unwrap();
        let throttle = Arc::new(SnapshotThrottle::default());
        let copier =
            RemoteFileCopier::new(storage.clone(), CopierOptions::default(), throttle.clone());
        let table = copier
            .fetch_meta(&SnapshotUri::parse(&uri).unwrap())
            .await
            .unwrap();
        let exec = Arc::new(
            SnapshotExecutor::new(
                storage,
                shared(Sink),
                ExecutorOptions {
                    verify_on_load: false,
                    copier: copier_options(),
                    ..Default::default()
                },
            )
            .with_throttle(throttle),
        );
        let (_, rss_ready) = rss_kib();
        let cpu0 = cpu_secs();
        let t = Instant::now();
        let out = exec.install(&uri, &table).await.unwrap();
        let secs = t.elapsed().as_secs_f64();
        let InstallOutcome::Installed { progress, .. } = out else {
            panic!("{out:?}")
        };
        let (hwm1, _) = rss_kib();
        let cpu1 = cpu_secs();
        println!(
            "{secs} {} {} {} {} {} {}",
            progress.fetched_bytes,
            rss_ready,
            hwm1,
            hwm0.max(rss0),
            cpu1.0 - cpu0.0,
            cpu1.1 - cpu0.1
        );
    });
}

fn main() {
    if let Some(root) = arg("--serve") {
        return serve(root.into());
    }
    if let (Some(uri), Some(root)) = (arg("--install"), arg("--into")) {
        return install(uri, root.into());
    }
    if let Some(root) = arg("--make") {
        // For profiling the two halves by hand.
        return make_snapshot(
            Path::new(&root),
            match arg("--mib") {
                Some(m) => m.parse::<u64>().expect("--mib N") << 20,
                None => arg("--gib").map_or(1, |v| v.parse::<u64>().expect("--gib N")) << 30,
            },
            64,
        );
    }
    let total: u64 = match arg("--mib") {
        Some(m) => m.parse::<u64>().expect("--mib N") << 20,
        None => arg("--gib").map_or(1, |v| v.parse::<u64>().expect("--gib N")) << 30,
    };
    let files: u64 = arg("--files").map_or(64, |v| v.parse().expect("--files N"));
    let rounds: usize = arg("--rounds").map_or(1, |v| v.parse().expect("--rounds N"));
    let tmp = tempfile::tempdir_in(arg("--dir").unwrap_or_else(|| "/tmp".into())).unwrap();
    let leader = tmp.path().join("leader");
    println!(
        "install benchmark: {} MiB in {files} files over loopback gRPC, {rounds} round(s), in {}",
        total >> 20,
        tmp.path().display()
    );
    make_snapshot(&leader, total, files);
    let snap = std::fs::read_dir(&leader)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("snapshot_"))
        .unwrap();
    let per = total / files * files;
    let bytes = per as f64;
    let mib = |s: f64| bytes / s / 1048576.0;
    let exe = std::env::current_exe().unwrap();
    let (mut cps, mut installs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let cp = common::cp_sync(&[&snap], &tmp.path().join("cp")).as_secs_f64();
        let _ = std::fs::remove_dir_all(tmp.path().join("cp"));
        let mut server = Command::new(&exe)
            .arg("--serve")
            .arg(&leader)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let uri = line.trim().to_string();
        let follower = tmp.path().join(format!("follower{round}"));
        let out = Command::new(&exe)
            .args(["--install", &uri, "--into"])
            .arg(&follower)
            .output()
            .unwrap();
        drop(server.stdin.take());
        let _ = server.wait();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_dir_all(&follower);
        let f: Vec<f64> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        let (secs, fetched, rss_ready, hwm, cpu_user, cpu_sys) =
            (f[0], f[1], f[2], f[3], f[5], f[6]);
        assert_eq!(fetched as u64, per);
        println!(
            "  round {round}: cp + sync {cp:.3} s ({:.0} MiB/s), install {secs:.3} s ({:.0} MiB/s), ratio {:.2}; follower CPU {cpu_user:.2} s user {cpu_sys:.2} s sys, RSS +{:.1} MiB",
            mib(cp),
            mib(secs),
            cp / secs,
            (hwm - rss_ready) / 1024.0
        );
        cps.push(cp);
        installs.push(secs);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (cp, secs) = (med(&mut cps), med(&mut installs));
    println!(
        "  median: cp + sync {cp:.3} s, install {secs:.3} s, install / baseline (throughput) {:.2}",
        cp / secs
    );
    std::io::stdout().flush().unwrap();
}
