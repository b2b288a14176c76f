//! `tsnode backup` and `tsnode restore`: InfluxDB's portable backup format
//! over the snapshotter protocol, against tsnode or a real `influxd`.
//! Shards move in parallel; restore reports a shard done only when the
//! server confirms its values applied (tsnode does; influxd confirms
//! nothing and applies on its own, which is said).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::snapshotter::client::{Client, UploadAck};
use crate::snapshotter::portable::{self, Manifest, ManifestFile, PortableError};
use crate::snapshotter::wire::parse_time;

/// Arguments of `tsnode backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Snapshotter address of the node to back up.
    #[arg(long, default_value = "127.0.0.1:8088")]
    pub host: String,
    /// Database (all when absent).
    #[arg(long)]
    pub db: Option<String>,
    /// Retention policy (needs --db).
    #[arg(long)]
    pub rp: Option<String>,
    /// One shard (needs --db and --rp).
    #[arg(long)]
    pub shard: Option<u64>,
    /// Only shard files modified after this time (RFC3339), as InfluxDB.
    #[arg(long, conflicts_with_all = ["start", "end"])]
    pub since: Option<String>,
    /// Export points from this time on (RFC3339, inclusive).
    #[arg(long)]
    pub start: Option<String>,
    /// Export points up to this time (RFC3339, inclusive).
    #[arg(long)]
    pub end: Option<String>,
    /// Shards fetched at once.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Network timeout per read or write (seconds).
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Directory to write the backup into (created if missing).
    pub dir: PathBuf,
}

/// Arguments of `tsnode restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// Snapshotter address of the node to restore into.
    #[arg(long, default_value = "127.0.0.1:8088")]
    pub host: String,
    /// Database of the backup to restore (all when absent).
    #[arg(long)]
    pub db: Option<String>,
    /// Name to restore the database as (needs --db; it must not exist).
    #[arg(long, requires = "db")]
    pub newdb: Option<String>,
    /// Retention policy of the backup to restore (needs --db).
    #[arg(long, requires = "db")]
    pub rp: Option<String>,
    /// Name to restore the retention policy as (needs --rp).
    #[arg(long, requires = "rp")]
    pub newrp: Option<String>,
    /// One shard of the backup (needs --db and --rp).
    #[arg(long, requires_all = ["db", "rp"])]
    pub shard: Option<u64>,
    /// Shards uploaded at once.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Network timeout per read or write (seconds).
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Directory holding the portable backup.
    pub dir: PathBuf,
}

fn time_arg(flag: &str, v: &Option<String>) -> Result<Option<i64>, String> {
    match v {
        None => Ok(None),
        Some(s) => parse_time(s)
            .map_err(|e| format!("--{flag}: {e}"))?
            .ok_or_else(|| format!("--{flag}: {s:?} is not a usable time"))
            .map(Some),
    }
}

/// Runs `items` through `work` on up to `parallel` threads, showing how
/// many are done; results in order.
fn parallel<T: Sync, R: Send>(
    items: &[T],
    parallel: usize,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let progress = Mutex::new(crate::progress::Progress::items(
        "shards",
        items.len() as u64,
    ));
    let done = std::sync::atomic::AtomicU64::new(0);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..parallel.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = work(item);
                    out.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
                    let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    progress.lock().unwrap_or_else(|p| p.into_inner()).set(n);
                }
            });
        }
    });
    progress
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .finish();
    out.into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

/// `tsnode backup`: returns the process exit code.
pub fn backup(a: &BackupArgs) -> i32 {
    match run_backup(a) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("backup failed: {e}");
            1
        }
    }
}

fn run_backup(a: &BackupArgs) -> Result<(), String> {
    let db = a.db.clone().unwrap_or_default();
    let rp = a.rp.clone().unwrap_or_default();
    if !rp.is_empty() && db.is_empty() {
        return Err("--rp needs --db".into());
    }
    if a.shard.is_some() && (db.is_empty() || rp.is_empty()) {
        return Err("--shard needs --db and --rp".into());
    }
    let since = time_arg("since", &a.since)?;
    let start = time_arg("start", &a.start)?;
    let end = time_arg("end", &a.end)?;
    let range = (start.is_some() || end.is_some())
        .then(|| (start.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX)));
    if let Some((s, e)) = range
        && s > e
    {
        return Err("--start is after --end".into());
    }
    let began = Instant::now();
    let client = Client::new(&a.host, Duration::from_secs(a.timeout.max(1)));
    let meta = client.metastore().map_err(|e| e.to_string())?;
    let paths = match a.shard {
        Some(id) => vec![format!("{db}/{rp}/{id}")],
        None => client.shard_paths(&db, &rp).map_err(|e| e.to_string())?,
    };
    let mut shards = Vec::new();
    for p in &paths {
        let parts: Vec<&str> = p.split('/').collect();
        match parts[..] {
            [d, r, id] => match id.parse::<u64>() {
                Ok(id) => shards.push((d.to_string(), r.to_string(), id)),
                Err(_) => return Err(format!("the server listed a bad shard path {p:?}")),
            },
            _ => return Err(format!("the server listed a bad shard path {p:?}")),
        }
    }
    std::fs::create_dir_all(&a.dir).map_err(|e| format!("create {}: {e}", a.dir.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let ts = portable::backup_timestamp(now);
    eprintln!(
        "backing up {} shard(s) from {} into {}",
        shards.len(),
        a.host,
        a.dir.display()
    );
    let meta_entry = portable::write_meta(&a.dir, &ts, &meta).map_err(|e| e.to_string())?;
    let results = parallel(&shards, a.parallel, |(d, r, id)| {
        portable::write_shard_archive(&a.dir, &ts, d, r, *id, |w| {
            client
                .shard_tar(d, r, *id, since, range, w)
                .map_err(|e| PortableError::Invalid {
                    path: a.dir.clone(),
                    reason: e.to_string(),
                })
        })
    });
    let mut files: Vec<ManifestFile> = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(f) => files.push(f),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        return Err(format!(
            "{} of {} shard(s) failed (no manifest written):\n  {}",
            errors.len(),
            shards.len(),
            errors.join("\n  ")
        ));
    }
    let bytes: u64 = files.iter().map(|f| f.size).sum();
    let manifest = Manifest {
        meta: meta_entry,
        limited: range.is_some(),
        files,
    };
    portable::write_manifest(&a.dir, &ts, &manifest).map_err(|e| e.to_string())?;
    let secs = began.elapsed().as_secs_f64();
    println!(
        "backup complete: {} shard(s), {:.1} MiB of TSM data (uncompressed), metastore {} bytes, {:.2} s → {}/{ts}.manifest",
        manifest.files.len(),
        bytes as f64 / (1 << 20) as f64,
        manifest.meta.size,
        secs,
        a.dir.display()
    );
    Ok(())
}

/// `tsnode restore`: returns the process exit code.
pub fn restore(a: &RestoreArgs) -> i32 {
    match run_restore(a) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("restore failed: {e}");
            1
        }
    }
}

/// Copies the tar at `gz` into `out`, renaming `db/rp/old/f` entries to
/// `db/rp/new/f` (only `.tsm` files travel; tombstones and others are
/// left out, as InfluxDB's server would drop them).
fn rewrite_tar(
    gz: &std::path::Path,
    target: &str,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let f = std::fs::File::open(gz)?;
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(f)));
    let mut tb = tar::Builder::new(out);
    for e in ar.entries()? {
        let mut e = e?;
        let path = e.path()?.into_owned();
        let parts: Vec<String> = path
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.len() < 4 {
            return Err(std::io::Error::other(format!(
                "{}: tar entry {} has fewer than 4 path components",
                gz.display(),
                path.display()
            )));
        }
        let Some(name) = parts.last().filter(|n| n.ends_with(".tsm")) else {
            continue;
        };
        let mut h = tar::Header::new_ustar();
        h.set_size(e.size());
        h.set_mode(0o644);
        h.set_mtime(e.header().mtime().unwrap_or(0));
        h.set_cksum();
        tb.append_data(&mut h, format!("{target}/{name}"), &mut e)?;
    }
    tb.finish()
}

fn run_restore(a: &RestoreArgs) -> Result<(), String> {
    let began = Instant::now();
    let set = portable::read_backup(&a.dir).map_err(|e| e.to_string())?;
    let db = a.db.clone().unwrap_or_default();
    let rp = a.rp.clone().unwrap_or_default();
    let newdb = a.newdb.clone().unwrap_or_default();
    let newrp = a.newrp.clone().unwrap_or_else(|| rp.clone());
    let client = Client::new(&a.host, Duration::from_secs(a.timeout.max(1)));
    let map = client
        .import_metastore(&set.meta, &db, &newdb, &rp, &newrp)
        .map_err(|e| e.to_string())?;
    let shards: Vec<(ManifestFile, u64)> = set
        .files
        .iter()
        .filter(|f| {
            (db.is_empty() || f.database == db)
                && (rp.is_empty() || f.policy == rp)
                && a.shard.is_none_or(|s| s == f.shard_id)
        })
        .filter_map(|f| {
            map.iter()
                .find(|(old, _)| *old == f.shard_id)
                .map(|(_, new)| (f.clone(), *new))
        })
        .collect();
    eprintln!(
        "metastore imported ({} shard(s) mapped); uploading {} shard(s) to {}",
        map.len(),
        shards.len(),
        a.host
    );
    let results = parallel(&shards, a.parallel, |(f, new_id)| {
        let tdb = if newdb.is_empty() {
            f.database.clone()
        } else {
            newdb.clone()
        };
        let trp = if !rp.is_empty() && !newrp.is_empty() {
            newrp.clone()
        } else {
            f.policy.clone()
        };
        let target = format!("{tdb}/{trp}/{new_id}");
        let gz = a.dir.join(&f.file_name);
        client
            .upload_shard(*new_id, |w| rewrite_tar(&gz, &target, w))
            .map_err(|e| format!("{}: {e}", f.file_name))
    });
    let (mut written, mut dropped, mut unconfirmed, mut errors) = (0, 0, 0, Vec::new());
    for r in results {
        match r {
            Ok(Some(UploadAck {
                written: w,
                dropped: d,
            })) => {
                written += w;
                dropped += d;
            }
            Ok(None) => unconfirmed += 1,
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(format!(
            "{} of {} shard(s) failed:\n  {}",
            errors.len(),
            shards.len(),
            errors.join("\n  ")
        ));
    }
    let secs = began.elapsed().as_secs_f64();
    if unconfirmed > 0 {
        println!(
            "restore sent: {} shard(s) in {secs:.2} s; {unconfirmed} not confirmed by the server (an influxd applies uploads in the background)",
            shards.len()
        );
    } else {
        println!(
            "restore complete: {} shard(s), {written} values applied through raft{}, {secs:.2} s",
            shards.len(),
            if dropped > 0 {
                format!(", {dropped} refused (type conflicts or NaN)")
            } else {
                String::new()
            }
        );
    }
    Ok(())
}
