//! `tsnode demo` (local stage): one node's snapshot lifecycle end to end over
//! a small state machine that, like the time-series store, keeps its state in
//! immutable files: save by hard link, a reader holding an old snapshot, a
//! crash leftover swept at restart, corruption caught by verify, and a restart
//! that loads the snapshot and finds the same state.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cli::DemoArgs;
use crate::snapshot::{
    BoxError, ExecutorOptions, LocalSnapshotStorage, SaveOutcome, SnapshotExecutor, SnapshotMeta,
    SnapshotReader, SnapshotWriter, StateMachine, StorageOptions, shared,
};

/// A state machine whose state is a set of immutable batch files in `data/`,
/// each with the crc32c computed while it was written.
pub struct BatchStore {
    data: PathBuf,
    /// (file name, crc32c, records) of every batch.
    batches: Vec<(String, u32, u64)>,
}

impl BatchStore {
    /// A store over `data` (created if missing), empty.
    pub fn new(data: PathBuf) -> std::io::Result<Self> {
        fs::create_dir_all(&data)?;
        Ok(Self {
            data,
            batches: Vec::new(),
        })
    }

    /// Appends one batch of `n` generated records as a new immutable file.
    pub fn apply_batch(&mut self, seq: u64, n: u64) -> std::io::Result<()> {
        let name = format!("batch-{seq:08}.dat");
        let path = self.data.join(&name);
        let mut f = std::io::BufWriter::new(fs::File::create(&path)?);
        let mut crc = 0u32;
        for i in 0..n {
            let line = format!(
                "cpu,host=h{} value={} {}\n",
                i % 16,
                (seq * n + i) % 1000,
                seq * n + i
            );
            crc = crc32c::crc32c_append(crc, line.as_bytes());
            f.write_all(line.as_bytes())?;
        }
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        self.batches.push((name, crc, n));
        Ok(())
    }

    /// Total records.
    pub fn records(&self) -> u64 {
        self.batches.iter().map(|b| b.2).sum()
    }

    /// A digest of the state (xor of the batch crcs with their names).
    pub fn digest(&self) -> u32 {
        self.batches.iter().fold(0, |d, (n, c, _)| {
            d ^ crc32c::crc32c_append(*c, n.as_bytes())
        })
    }
}

impl StateMachine for BatchStore {
    fn on_snapshot_save(
        &mut self,
        w: &mut SnapshotWriter,
        _m: &SnapshotMeta,
    ) -> Result<(), BoxError> {
        let mut manifest = String::new();
        for (name, crc, n) in &self.batches {
            w.add_file_link(&format!("data/{name}"), &self.data.join(name), *crc)?;
            manifest.push_str(&format!("{name} {crc} {n}\n"));
        }
        w.write_file("manifest", manifest.as_bytes())?;
        Ok(())
    }

    fn on_snapshot_load(&mut self, r: &SnapshotReader) -> Result<(), BoxError> {
        let manifest = fs::read_to_string(r.path_of("manifest")?)?;
        let mut batches = Vec::new();
        for line in manifest.lines() {
            let mut it = line.split(' ');
            let (Some(name), Some(crc), Some(n)) = (it.next(), it.next(), it.next()) else {
                return Err(format!("bad manifest line {line:?}").into());
            };
            batches.push((name.to_string(), crc.parse()?, n.parse()?));
        }
        // Replace data/ with the snapshot's files, by hard link.
        for e in fs::read_dir(&self.data)? {
            fs::remove_file(e?.path())?;
        }
        for (name, _, _) in &batches {
            fs::hard_link(r.path_of(&format!("data/{name}"))?, self.data.join(name))?;
        }
        self.batches = batches;
        Ok(())
    }
}

fn step(n: &mut u32, what: &str) {
    *n += 1;
    println!("\n[{n}] {what}");
}

/// Runs the demo; prints what happens at each step.
pub fn run(args: &DemoArgs) -> Result<(), BoxError> {
    let tmp;
    let dir: &Path = match &args.dir {
        Some(d) => {
            fs::create_dir_all(d)?;
            d
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path()
        }
    };
    let started = Instant::now();
    let mut s = 0;
    let open = |dir: &Path| -> Result<_, BoxError> {
        let (storage, report) =
            LocalSnapshotStorage::open(dir.join("snapshots"), StorageOptions { retain: 1 })?;
        let fsm = shared(BatchStore::new(dir.join("data"))?);
        Ok((
            SnapshotExecutor::new(storage, fsm, ExecutorOptions::default()),
            report,
        ))
    };
    println!("raftsnap demo (local stage) in {}", dir.display());
    let (exec, _) = open(dir)?;

    step(
        &mut s,
        &format!(
            "apply 4 batches of {} records, then save a snapshot",
            args.points
        ),
    );
    let mut index = 0;
    let apply =
        |exec: &SnapshotExecutor<BatchStore>, index: &mut u64, n: u64| -> Result<(), BoxError> {
            let mut g = exec
                .state_machine()
                .lock()
                .map_err(|_| "state machine lock poisoned")?;
            *index += 1;
            g.state_machine.apply_batch(*index, n)?;
            g.applied = SnapshotMeta {
                last_included_index: *index,
                last_included_term: 1,
                voters: vec![1],
                ..Default::default()
            };
            Ok(())
        };
    for _ in 0..4 {
        apply(&exec, &mut index, args.points)?;
    }
    let t = Instant::now();
    let SaveOutcome::Saved(m1) = exec.do_snapshot()? else {
        return Err("first save skipped".into());
    };
    let info = &exec.storage().list()[0];
    println!(
        "    snapshot {} saved in {:.2?}: {} files, {} bytes, nothing copied (hard links)",
        m1.last_included_index,
        t.elapsed(),
        info.files,
        info.bytes
    );

    step(
        &mut s,
        "a reader (say, a follower's copy) holds it while two more batches and a save go by",
    );
    let held: SnapshotReader = exec.storage().open_reader().ok_or("no snapshot")?;
    for _ in 0..2 {
        apply(&exec, &mut index, args.points)?;
    }
    let SaveOutcome::Saved(m2) = exec.do_snapshot()? else {
        return Err("second save skipped".into());
    };
    println!(
        "    snapshot {} saved; snapshot {} still on disk while read: {}",
        m2.last_included_index,
        held.index(),
        held.dir().exists()
    );
    let old_dir = held.dir().to_path_buf();
    drop(held);
    println!(
        "    reader dropped; snapshot {} deleted: {}",
        m1.last_included_index,
        !old_dir.exists()
    );
    println!(
        "    a save with nothing new applied: {:?}",
        exec.do_snapshot()?
    );

    step(
        &mut s,
        "corrupt one byte of a copy of the snapshot; verify names the file",
    );
    let latest = exec.storage().open_reader().ok_or("no snapshot")?;
    let copy = dir.join("corrupt-copy");
    for f in latest.files() {
        let dst = copy.join(&f.name);
        fs::create_dir_all(dst.parent().ok_or("no parent")?)?;
        fs::copy(latest.path_of(&f.name)?, &dst)?;
    }
    fs::copy(
        latest.dir().join("__raft_snapshot_meta"),
        copy.join("__raft_snapshot_meta"),
    )?;
    let victim = copy.join(&latest.files()[1].name);
    let mut bytes = fs::read(&victim)?;
    bytes[7] ^= 0x20;
    fs::write(&victim, bytes)?;
    let (_, bad) = crate::snapshot::verify_dir(&copy)?;
    for b in &bad {
        println!("    verify: BAD {b}");
    }
    println!(
        "    the original verifies clean: {}",
        latest.verify().is_ok()
    );
    drop(latest);

    step(
        &mut s,
        "crash in the middle of a save (a half-written temp/), then restart and load",
    );
    let (records, digest) = {
        let g = exec.state_machine().lock().map_err(|_| "poisoned")?;
        (g.state_machine.records(), g.state_machine.digest())
    };
    drop(exec);
    fs::create_dir_all(dir.join("snapshots/temp/data"))?;
    fs::write(dir.join("snapshots/temp/data/half-written"), b"partial")?;
    let (exec, report) = open(dir)?;
    println!(
        "    startup removed temp/: {}; kept snapshots {:?}",
        report.removed_temp, report.kept
    );
    let t = Instant::now();
    let loaded = exec.load_latest(1)?.ok_or("nothing loaded")?;
    let g = exec.state_machine().lock().map_err(|_| "poisoned")?;
    let same = g.state_machine.records() == records && g.state_machine.digest() == digest;
    println!(
        "    loaded snapshot {} (verified) in {:.2?}: {} records, state identical: {same}",
        loaded.last_included_index,
        t.elapsed(),
        g.state_machine.records()
    );
    if !same || bad.len() != 1 {
        return Err("demo check failed".into());
    }
    println!("\ndone in {:.2?}: every step checked.", started.elapsed());
    Ok(())
}
