//! The time-series state machine through the snapshot executor: commands
//! applied, a snapshot saved (hard-linked TSM files + metastore backup), and
//! loaded into an empty state machine with identical results.

use std::os::unix::fs::MetadataExt;

use raftsnap::proto::tsdb::{
    CommandResult, CreateDatabase, CreateRetentionPolicy, WritePoints, command::Cmd,
};
use raftsnap::raft::ReplicatedStateMachine;
use raftsnap::snapshot::{
    ExecutorOptions, LocalSnapshotStorage, SaveOutcome, SnapshotExecutor, SnapshotMeta,
    StorageOptions, shared,
};
use raftsnap::tsdb::fsm::{Tsdb, command, point_to_pb};
use raftsnap::tsdb::line_protocol::{Precision, parse};

fn apply(exec: &SnapshotExecutor<Tsdb>, index: u64, cmd: Cmd) -> CommandResult {
    let mut g = exec.state_machine().lock().unwrap();
    let out = g.state_machine.apply(index, 1, command(cmd)).unwrap();
    g.applied = SnapshotMeta {
        last_included_index: index,
        last_included_term: 1,
        voters: vec![1],
        ..Default::default()
    };
    out
}

fn write(exec: &SnapshotExecutor<Tsdb>, index: u64, db: &str, body: &str) -> CommandResult {
    let (points, errors) = parse(body, Precision::Nanoseconds, 0);
    assert!(errors.is_empty(), "{errors:?}");
    apply(
        exec,
        index,
        Cmd::Write(WritePoints {
            db: db.into(),
            rp: String::new(),
            points: points.iter().map(point_to_pb).collect(),
        }),
    )
}

fn scan_all(t: &mut Tsdb, db: &str, m: &str) -> raftsnap::tsdb::fsm::SeriesPoints {
    t.view().scan(db, "", m, i64::MIN, i64::MAX).unwrap()
}

#[test]
fn a_snapshot_is_the_shards_and_metastore_and_loads_into_an_empty_state_machine() {
    let t = tempfile::tempdir().unwrap();
    let (storage, _) =
        LocalSnapshotStorage::open(t.path().join("snapshots"), StorageOptions::default()).unwrap();
    let exec = SnapshotExecutor::new(
        storage,
        shared(
            Tsdb::open(t.path().join("data"))
                .unwrap()
                .with_flush_bytes(64 << 10),
        ),
        ExecutorOptions::default(),
    );
    assert!(
        apply(
            &exec,
            1,
            Cmd::CreateDatabase(CreateDatabase { name: "db".into() })
        )
        .error
        .is_empty()
    );
    let r = apply(
        &exec,
        2,
        Cmd::CreateRetentionPolicy(CreateRetentionPolicy {
            db: "db".into(),
            name: "week".into(),
            duration: 168 * 3_600_000_000_000,
            shard_group_duration: 0,
            replica_n: 1,
            make_default: false,
        }),
    );
    assert!(r.error.is_empty(), "{}", r.error);
    let mut body = String::new();
    for i in 0..5000i64 {
        body.push_str(&format!(
            "cpu,host=h{} usage={},n={}i,up=t,note=\"x{}\" {}\n",
            i % 3,
            i as f64 * 0.5,
            i,
            i % 7,
            1_700_000_000_000_000_000 + i * 1_000_000_000
        ));
    }
    let r = write(&exec, 3, "db", &body);
    assert_eq!((r.written, r.dropped), (5000, 0));
    // A field type conflict is refused deterministically, reported.
    let r = write(
        &exec,
        4,
        "db",
        "cpu,host=h0 usage=\"text\" 1700000000000000000\n",
    );
    assert_eq!(r.dropped, 1);
    assert!(r.error.contains("field type conflict"));
    let before = scan_all(
        &mut exec.state_machine().lock().unwrap().state_machine,
        "db",
        "cpu",
    );
    assert_eq!(before.len(), 3);
    assert_eq!(before["cpu,host=h0"]["usage"].len(), 1667);

    let SaveOutcome::Saved(m) = exec.do_snapshot().unwrap() else {
        panic!()
    };
    let reader = exec.storage().open_reader().unwrap();
    reader.verify().unwrap();
    let names: Vec<&str> = reader.files().iter().map(|f| f.name.as_str()).collect();
    assert!(names.contains(&"meta"));
    assert!(
        names
            .iter()
            .all(|n| *n == "meta" || (n.starts_with("data/db/autogen/") && n.ends_with(".tsm"))),
        "{names:?}"
    );
    // The TSM files are hard links of the live files.
    let f = reader
        .files()
        .iter()
        .find(|f| f.name.ends_with(".tsm"))
        .unwrap();
    let live = {
        let g = exec.state_machine().lock().unwrap();
        let id: u64 = f.name.split('/').nth(3).unwrap().parse().unwrap();
        g.state_machine
            .shard(id)
            .unwrap()
            .files()
            .iter()
            .find(|x| f.name.ends_with(&x.name))
            .unwrap()
            .path
            .clone()
    };
    assert_eq!(
        std::fs::metadata(&live).unwrap().ino(),
        std::fs::metadata(reader.path_of(&f.name).unwrap())
            .unwrap()
            .ino()
    );
    // `meta` is InfluxDB's metastore backup blob.
    let blob = std::fs::read(reader.path_of("meta").unwrap()).unwrap();
    let ms = raftsnap::tsdb::meta::Metastore::from_backup_blob(&blob).unwrap();
    assert!(ms.databases["db"].rps.contains_key("week"));
    drop(reader);

    // Load into an empty state machine elsewhere: identical results.
    let t2 = tempfile::tempdir().unwrap();
    let (s2, _) =
        LocalSnapshotStorage::open(t.path().join("snapshots"), StorageOptions::default()).unwrap();
    drop(exec);
    let exec2 = SnapshotExecutor::new(
        s2,
        shared(Tsdb::open(t2.path().join("data")).unwrap()),
        ExecutorOptions::default(),
    );
    assert_eq!(exec2.load_latest(1).unwrap().unwrap(), m);
    let mut g = exec2.state_machine().lock().unwrap();
    assert_eq!(scan_all(&mut g.state_machine, "db", "cpu"), before);
    assert_eq!(g.state_machine.meta(), &ms);
    assert_eq!(
        g.state_machine.view().measurements("db"),
        vec!["cpu".to_string()]
    );
}

#[test]
fn a_second_save_after_a_few_writes_costs_only_the_cache_flush() {
    let t = tempfile::tempdir().unwrap();
    let (storage, _) =
        LocalSnapshotStorage::open(t.path().join("snapshots"), StorageOptions { retain: 2 })
            .unwrap();
    let exec = SnapshotExecutor::new(
        storage,
        shared(Tsdb::open(t.path().join("data")).unwrap()),
        ExecutorOptions::default(),
    );
    apply(
        &exec,
        1,
        Cmd::CreateDatabase(CreateDatabase { name: "db".into() }),
    );
    let mut body = String::new();
    for i in 0..20_000i64 {
        body.push_str(&format!("m v={i} {}\n", i * 1_000_000));
    }
    write(&exec, 2, "db", &body);
    assert!(matches!(exec.do_snapshot().unwrap(), SaveOutcome::Saved(_)));
    write(&exec, 3, "db", "m v=1 999999999999\n");
    assert!(matches!(exec.do_snapshot().unwrap(), SaveOutcome::Saved(_)));
    let list = exec.storage().list();
    let (a, b) = (
        exec.storage()
            .open_reader_at(list[0].meta.last_included_index)
            .unwrap(),
        exec.storage()
            .open_reader_at(list[1].meta.last_included_index)
            .unwrap(),
    );
    let tsm = |r: &raftsnap::snapshot::SnapshotReader| -> Vec<(String, u64)> {
        r.files()
            .iter()
            .filter(|f| f.name.ends_with(".tsm"))
            .map(|f| {
                (
                    f.name.clone(),
                    std::fs::metadata(r.path_of(&f.name).unwrap())
                        .unwrap()
                        .ino(),
                )
            })
            .collect()
    };
    let (ta, tb) = (tsm(&a), tsm(&b));
    // The big file is the same inode in both snapshots; the second adds one small file.
    assert_eq!(tb.len(), ta.len() + 1);
    assert!(ta.iter().all(|f| tb.contains(f)));
}

#[test]
fn the_influxql_subset_answers_like_influxdb_and_identically_after_a_load() {
    use raftsnap::tsdb::query::{execute_read, parse as parse_q};
    use serde_json::json;

    let t = tempfile::tempdir().unwrap();
    let (storage, _) =
        LocalSnapshotStorage::open(t.path().join("snapshots"), StorageOptions::default()).unwrap();
    let exec = SnapshotExecutor::new(
        storage,
        shared(Tsdb::open(t.path().join("data")).unwrap()),
        ExecutorOptions::default(),
    );
    for (i, stmt) in parse_q(
        "CREATE DATABASE db; CREATE RETENTION POLICY short ON db DURATION 2d REPLICATION 1",
        0,
    )
    .unwrap()
    .iter()
    .enumerate()
    {
        let r = apply(&exec, i as u64 + 1, stmt.command("").unwrap().unwrap());
        assert!(r.error.is_empty(), "{}", r.error);
    }
    let t0 = 1_700_000_000_000_000_000i64;
    let mut body = String::new();
    for i in 0..300i64 {
        body.push_str(&format!(
            "cpu,host=h{} usage={}.5,n={}i,note=\"n{}\",up={} {}\n",
            i % 3,
            i,
            i,
            i,
            i % 2 == 0,
            t0 + i * 1_000_000_000
        ));
    }
    write(&exec, 3, "db", &body);
    let q = |exec: &SnapshotExecutor<Tsdb>, q: &str, epoch: bool| {
        let mut g = exec.state_machine().lock().unwrap();
        let stmt = &parse_q(q, t0 + 1_000_000_000_000).unwrap()[0];
        execute_read(
            &g.state_machine.view(),
            "db",
            stmt,
            epoch.then_some(Precision::Nanoseconds),
        )
    };
    assert_eq!(
        q(&exec, "SHOW DATABASES", false),
        json!({"series":[{"name":"databases","columns":["name"],"values":[["db"]]}]})
    );
    assert_eq!(
        q(&exec, "SHOW MEASUREMENTS", false)["series"][0]["values"],
        json!([["cpu"]])
    );
    assert_eq!(
        q(&exec, "SHOW RETENTION POLICIES ON db", false)["series"][0]["values"],
        json!([
            ["autogen", "0s", "168h0m0s", 1, true],
            ["short", "48h0m0s", "24h0m0s", 1, false]
        ])
    );
    assert_eq!(
        q(&exec, "SELECT count(usage) FROM cpu", false)["series"][0],
        json!({"name":"cpu","columns":["time","count"],"values":[["1970-01-01T00:00:00Z", 300]]})
    );
    let want_sum: i64 = (0..300).filter(|i| i % 3 == 0).sum();
    assert_eq!(
        q(&exec, "SELECT sum(n) FROM cpu WHERE host = 'h0'", true)["series"][0]["values"][0][1],
        json!(want_sum)
    );
    assert_eq!(
        q(&exec, "SELECT max(usage) FROM cpu", true)["series"][0]["values"],
        json!([[t0 + 299_000_000_000, 299.5]])
    );
    assert_eq!(
        q(
            &exec,
            "SELECT mean(usage) FROM cpu WHERE host != 'h1' AND host != 'h2'",
            true
        )["series"][0]["values"][0][1],
        json!(149)
    );
    assert_eq!(
        q(&exec, "SELECT count(*) FROM cpu", true)["series"][0]["columns"],
        json!(["time", "count_n", "count_note", "count_up", "count_usage"])
    );
    let rows = q(
        &exec,
        &format!(
            "SELECT usage FROM cpu WHERE time >= {} AND time <= {} LIMIT 2",
            t0 + 10_000_000_000,
            t0 + 20_000_000_000
        ),
        true,
    );
    assert_eq!(
        rows["series"][0]["values"],
        json!([[t0 + 10_000_000_000, 10.5], [t0 + 11_000_000_000, 11.5]])
    );
    let star = q(&exec, "SELECT * FROM cpu LIMIT 1", false);
    assert_eq!(
        star["series"][0]["columns"],
        json!(["time", "host", "n", "note", "up", "usage"])
    );
    assert_eq!(
        star["series"][0]["values"],
        json!([["2023-11-14T22:13:20Z", "h0", 0, "n0", true, 0.5]])
    );
    assert_eq!(q(&exec, "SELECT usage FROM nothing", false), json!({}));
    // influxd's words for a numeric function on a string field.
    assert_eq!(
        q(&exec, "SELECT sum(note) FROM cpu", false)["error"],
        "unsupported sum iterator type: *query.stringInterruptIterator"
    );
    {
        let mut g = exec.state_machine().lock().unwrap();
        let stmt = &parse_q("SELECT * FROM cpu", 0).unwrap()[0];
        assert_eq!(
            execute_read(&g.state_machine.view(), "nope", stmt, None),
            json!({"error": "database not found: nope"})
        );
    }

    // After a snapshot and a load elsewhere, every answer is identical.
    let queries = [
        "SELECT count(*) FROM cpu",
        "SELECT * FROM cpu",
        "SELECT last(note) FROM cpu WHERE host = 'h2'",
        "SHOW RETENTION POLICIES ON db",
    ];
    let before: Vec<_> = queries.iter().map(|s| q(&exec, s, true)).collect();
    assert!(matches!(exec.do_snapshot().unwrap(), SaveOutcome::Saved(_)));
    let t2 = tempfile::tempdir().unwrap();
    let (s2, _) =
        LocalSnapshotStorage::open(t.path().join("snapshots"), StorageOptions::default()).unwrap();
    drop(exec);
    let exec2 = SnapshotExecutor::new(
        s2,
        shared(Tsdb::open(t2.path().join("data")).unwrap()),
        ExecutorOptions::default(),
    );
    exec2.load_latest(1).unwrap();
    let after: Vec<_> = queries.iter().map(|s| q(&exec2, s, true)).collect();
    assert_eq!(before, after);
}

#[test]
fn small_files_are_merged_in_the_background_without_changing_answers() {
    use raftsnap::tsdb::query::{execute_read, parse as parse_q};
    let t = tempfile::tempdir().unwrap();
    let (storage, _) =
        LocalSnapshotStorage::open(t.path().join("snapshots"), StorageOptions::default()).unwrap();
    let fsm = Tsdb::open(t.path().join("data"))
        .unwrap()
        .with_flush_bytes(8 << 10)
        .with_merge_files(3);
    let exec = SnapshotExecutor::new(storage, shared(fsm), ExecutorOptions::default());
    apply(
        &exec,
        1,
        Cmd::CreateDatabase(CreateDatabase { name: "db".into() }),
    );
    for b in 0..40i64 {
        let mut body = String::new();
        for i in 0..500i64 {
            // Overlapping rewrites of earlier points: the newest must win after merges.
            let ts = (b * 250 + i) * 1_000_000_000;
            body.push_str(&format!("m,host=h{} v={} {ts}\n", i % 2, b * 1000 + i));
        }
        write(&exec, 2 + b as u64, "db", &body);
    }
    settle_merges(&exec);
    let mut g = exec.state_machine().lock().unwrap();
    let id = g.state_machine.meta().shards()[0].2;
    let files = g.state_machine.shard(id).unwrap().files().len();
    assert!(
        files < 10,
        "{files} files after 40 flushes: merges did not run"
    );
    let view = g.state_machine.view();
    let q = |s: &str| {
        execute_read(
            &view,
            "db",
            &parse_q(s, 0).unwrap()[0],
            Some(Precision::Nanoseconds),
        )
    };
    // Timestamps 0..(39*250+499) s, each written last by the highest batch covering it.
    let distinct = 39 * 250 + 500;
    assert_eq!(
        q("SELECT count(v) FROM m")["series"][0]["values"][0][1],
        serde_json::json!(distinct)
    );
    let last = q("SELECT last(v) FROM m");
    assert_eq!(last["series"][0]["values"][0][1], serde_json::json!(39_499));
    let early = q("SELECT v FROM m WHERE time = 250000000000");
    assert_eq!(
        early["series"][0]["values"][0][1],
        serde_json::json!(1000),
        "batch 1 rewrote t=250 s over batch 0"
    );
}

/// An executor of `fsm` over the snapshots in `dir/snapshots`.
fn over_snapshots(dir: &std::path::Path, fsm: Tsdb) -> SnapshotExecutor<Tsdb> {
    let (storage, _) =
        LocalSnapshotStorage::open(dir.join("snapshots"), StorageOptions::default()).unwrap();
    SnapshotExecutor::new(storage, shared(fsm), ExecutorOptions::default())
}

fn settle_merges(exec: &SnapshotExecutor<Tsdb>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let mut g = exec.state_machine().lock().unwrap();
        g.state_machine.absorb_merges();
        if g.state_machine.merges_running() == 0 {
            return;
        }
        drop(g);
        assert!(
            std::time::Instant::now() < deadline,
            "merges never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn deletes_are_tombstones_that_snapshots_carry_and_merges_apply() {
    use raftsnap::proto::tsdb::DeleteSeries;
    use raftsnap::tsdb::query::{execute_read, parse as parse_q};
    let t = tempfile::tempdir().unwrap();
    // No background merges: the tombstones stay until the test asks.
    let fsm = Tsdb::open(t.path().join("data"))
        .unwrap()
        .with_merge_files(usize::MAX);
    let exec = over_snapshots(t.path(), fsm);
    apply(
        &exec,
        1,
        Cmd::CreateDatabase(CreateDatabase { name: "db".into() }),
    );
    let mut body = String::new();
    for i in 0..3000i64 {
        body.push_str(&format!(
            "cpu,host=h{} v={i} {}\n",
            i % 3,
            i * 1_000_000_000
        ));
    }
    write(&exec, 2, "db", &body);
    assert!(matches!(exec.do_snapshot().unwrap(), SaveOutcome::Saved(_)));
    let inode_before = {
        let g = exec.state_machine().lock().unwrap();
        let id = g.state_machine.meta().shards()[0].2;
        let f = &g.state_machine.shard(id).unwrap().files()[0];
        std::fs::metadata(&f.path).unwrap().ino()
    };
    // DROP SERIES of h0; DELETE of h1 before 1000 s.
    let del = |measurements: Vec<String>, condition: &str, min: i64, max: i64| {
        Cmd::DeleteSeries(DeleteSeries {
            db: "db".into(),
            measurements,
            measurement_regexes: vec![],
            condition: condition.into(),
            min_time: min,
            max_time: max,
        })
    };
    let r = apply(
        &exec,
        3,
        del(vec!["cpu".into()], "host = 'h0'", i64::MIN, i64::MAX),
    );
    assert!(r.error.is_empty(), "{}", r.error);
    let r = apply(
        &exec,
        4,
        del(vec!["cpu".into()], "host = 'h1'", i64::MIN, 999_999_999_999),
    );
    assert!(r.error.is_empty(), "{}", r.error);
    let answers = |exec: &SnapshotExecutor<Tsdb>| {
        let mut g = exec.state_machine().lock().unwrap();
        let view = g.state_machine.view();
        let q = |s: &str| {
            execute_read(
                &view,
                "db",
                &parse_q(s, 0).unwrap()[0],
                Some(Precision::Nanoseconds),
            )
        };
        (
            q("SELECT count(v) FROM cpu GROUP BY host"),
            q("SHOW SERIES"),
            q("SELECT first(v) FROM cpu WHERE host = 'h1'"),
        )
    };
    // The dropped series stops counting toward max-series-per-database
    // (recounted on a thread of its own).
    let index = exec
        .state_machine()
        .lock()
        .unwrap()
        .state_machine
        .series_index();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while index.read().unwrap().series_count("db") != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "series never recounted: {}",
            index.read().unwrap().series_count("db")
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let expected = answers(&exec);
    let counts: Vec<_> = expected.0["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["tags"]["host"].clone(), s["values"][0][1].clone()))
        .collect();
    assert_eq!(
        counts,
        vec![
            (serde_json::json!("h1"), serde_json::json!(667)),
            (serde_json::json!("h2"), serde_json::json!(1000)),
        ]
    );
    assert_eq!(
        expected.1["series"][0]["values"],
        serde_json::json!([["cpu,host=h1"], ["cpu,host=h2"]])
    );
    assert_eq!(
        expected.2["series"][0]["values"][0][1],
        serde_json::json!(1000)
    );
    // The TSM file was not rewritten: a tombstone file lies beside it.
    let (shard_id, tomb) = {
        let g = exec.state_machine().lock().unwrap();
        let id = g.state_machine.meta().shards()[0].2;
        let f = &g.state_machine.shard(id).unwrap().files()[0];
        assert_eq!(std::fs::metadata(&f.path).unwrap().ino(), inode_before);
        (id, f.tombstone().unwrap().name.clone())
    };
    // A snapshot carries the tombstone; a load elsewhere answers the same.
    assert!(matches!(exec.do_snapshot().unwrap(), SaveOutcome::Saved(_)));
    let reader = exec.storage().open_reader().unwrap();
    reader.verify().unwrap();
    assert!(
        reader
            .files()
            .iter()
            .any(|f| f.name == format!("data/db/autogen/{shard_id}/{tomb}")),
        "{:?}",
        reader.files().iter().map(|f| &f.name).collect::<Vec<_>>()
    );
    drop(reader);
    let t2 = tempfile::tempdir().unwrap();
    let exec2 = over_snapshots(
        t.path(),
        Tsdb::open(t2.path().join("data"))
            .unwrap()
            .with_merge_files(usize::MAX),
    );
    exec2.load_latest(1).unwrap().unwrap();
    assert_eq!(answers(&exec2), expected);
    // A later write of a deleted series is kept.
    write(&exec, 5, "db", "cpu,host=h0 v=-1 5000000000000\n");
    let after = answers(&exec);
    assert_eq!(after.0["series"][0]["tags"]["host"], "h0");
    assert_eq!(after.0["series"][0]["values"][0][1], 1);
    // Loaded where merges run, the tombstoned file is rewritten without
    // the deleted points in the background, and the tombstone goes; the
    // answers stay.
    let t3 = tempfile::tempdir().unwrap();
    let exec3 = over_snapshots(t.path(), Tsdb::open(t3.path().join("data")).unwrap());
    exec3.load_latest(1).unwrap().unwrap();
    settle_merges(&exec3);
    {
        let g = exec3.state_machine().lock().unwrap();
        let shard = g.state_machine.shard(shard_id).unwrap();
        assert_eq!(shard.files().len(), 1);
        assert!(shard.files()[0].tombstone().is_none());
        let names: Vec<String> = std::fs::read_dir(shard.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| n.ends_with(".tsm")), "{names:?}");
    }
    assert_eq!(answers(&exec3), expected);
}
