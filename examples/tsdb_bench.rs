//! Time-series snapshot benchmark: apply `--points` points (default 20 M,
//! about 1 GiB as line protocol) to the time-series state machine, add a
//! small batch, and time a snapshot save — which should cost only the small
//! cache flush, the rest being hard links — against `cp` + `sync` of the same
//! TSM files. Then load the snapshot into an empty state machine and check
//! that queries answer identically.
//!
//! `cargo run --release --example tsdb_bench -- [--points 20000000] [--dir D]`

mod common;
use common::arg;

use std::time::Instant;

use raftsnap::proto::tsdb::{
    CreateDatabase, Field, Point, Tag, WritePoints, command::Cmd, field::Value,
};
use raftsnap::raft::ReplicatedStateMachine;
use raftsnap::snapshot::{
    ExecutorOptions, LocalSnapshotStorage, SaveOutcome, SnapshotExecutor, SnapshotMeta,
    StorageOptions, shared,
};
use raftsnap::tsdb::fsm::{Tsdb, command};
use raftsnap::tsdb::line_protocol::Precision;
use raftsnap::tsdb::query::{execute_read, parse};

fn batch(from: u64, n: u64) -> Cmd {
    let points = (from..from + n)
        .map(|i| Point {
            measurement: "cpu".into(),
            tags: vec![Tag {
                key: "host".into(),
                value: format!("server{:03}", i % 100),
            }],
            fields: vec![Field {
                key: "usage".into(),
                value: Some(Value::Float((i % 1000) as f64 / 10.0)),
            }],
            timestamp: 1_700_000_000_000_000_000 + (i / 100) as i64 * 1_000_000_000,
        })
        .collect();
    Cmd::Write(WritePoints {
        db: "bench".into(),
        rp: String::new(),
        points,
    })
}

fn main() {
    let points: u64 = arg("--points").map_or(20_000_000, |v| v.parse().expect("--points N"));
    let tmp = tempfile::tempdir_in(arg("--dir").unwrap_or_else(|| "/tmp".into())).unwrap();
    let (storage, _) =
        LocalSnapshotStorage::open(tmp.path().join("snapshots"), StorageOptions::default())
            .unwrap();
    let exec = SnapshotExecutor::new(
        storage,
        shared(Tsdb::open(tmp.path().join("data")).unwrap()),
        ExecutorOptions::default(),
    );
    let apply = |index: u64, cmd: Cmd| {
        let mut g = exec.state_machine().lock().unwrap();
        g.state_machine.apply(index, 1, command(cmd)).unwrap();
        g.applied = SnapshotMeta {
            last_included_index: index,
            last_included_term: 1,
            voters: vec![1],
            ..Default::default()
        };
    };
    apply(
        1,
        Cmd::CreateDatabase(CreateDatabase {
            name: "bench".into(),
        }),
    );
    let lp_bytes = points * "cpu,host=server042 usage=42.7 1700000000000000000\n".len() as u64;
    println!(
        "tsdb benchmark: {points} points (~{:.2} GiB as line protocol) in {}",
        lp_bytes as f64 / (1u64 << 30) as f64,
        tmp.path().display()
    );
    let t = Instant::now();
    let step = 100_000;
    let mut index = 1;
    let mut done = 0;
    while done < points {
        index += 1;
        let n = step.min(points - done);
        apply(index, batch(done, n));
        done += n;
    }
    // Everything but what a last small batch adds is already in TSM files.
    exec.state_machine()
        .lock()
        .unwrap()
        .state_machine
        .flush_all()
        .unwrap();
    let applied = t.elapsed();
    index += 1;
    apply(index, batch(points, 1000));
    let tsm_files: Vec<std::path::PathBuf> = walk(&tmp.path().join("data"));
    let tsm_bytes: u64 = tsm_files
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    println!(
        "  applied in {applied:.1?} ({:.0} points/s); {} TSM files, {:.1} MiB",
        points as f64 / applied.as_secs_f64(),
        tsm_files.len(),
        tsm_bytes as f64 / 1048576.0
    );

    let t = Instant::now();
    let SaveOutcome::Saved(meta) = exec.do_snapshot().unwrap() else {
        panic!("nothing saved")
    };
    let save = t.elapsed().as_secs_f64();

    let cp = common::cp_sync(&[&tmp.path().join("data")], &tmp.path().join("cp")).as_secs_f64();
    println!(
        "  snapshot save (flush 1000 points + hard links + meta)  {:>8.3} s",
        save
    );
    println!(
        "  cp -r + sync of the data directory (baseline)           {:>8.3} s",
        cp
    );
    println!(
        "  save / baseline                                         {:>8.3}",
        save / cp
    );

    let queries = [
        "SELECT count(usage) FROM cpu",
        "SELECT sum(usage) FROM cpu WHERE host = 'server007'",
        "SELECT max(usage) FROM cpu",
    ];
    let run = |t: &mut Tsdb| {
        let t = t.view();
        queries
            .iter()
            .map(|q| {
                execute_read(
                    &t,
                    "bench",
                    &parse(q, 0).unwrap()[0],
                    Some(Precision::Nanoseconds),
                )
            })
            .collect::<Vec<_>>()
    };
    let before = run(&mut exec.state_machine().lock().unwrap().state_machine);
    drop(exec);
    let (s2, _) =
        LocalSnapshotStorage::open(tmp.path().join("snapshots"), StorageOptions::default())
            .unwrap();
    let exec2 = SnapshotExecutor::new(
        s2,
        shared(Tsdb::open(tmp.path().join("data2")).unwrap()),
        ExecutorOptions::default(),
    );
    let t = Instant::now();
    let loaded = exec2.load_latest(1).unwrap().unwrap();
    let load = t.elapsed();
    let after = run(&mut exec2.state_machine().lock().unwrap().state_machine);
    assert_eq!(loaded, meta);
    assert_eq!(before, after, "answers differ after the load");
    println!(
        "  load into an empty state machine (verify crc32c + links) {load:>8.2?}; answers identical: {}",
        before == after
    );
    println!("  count: {}", before[0]["series"][0]["values"][0][1]);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "tsm") {
            out.push(p);
        }
    }
    out
}
