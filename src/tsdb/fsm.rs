//! `Tsdb`: the time-series state machine. Raft commands change the
//! metastore and write points into shard caches; caches flush into
//! immutable TSM files. A snapshot is the shards' TSM files (hard-linked,
//! with the crc32c computed when written) plus `meta`, the metastore backup
//! blob — i.e. the same content as an InfluxDB backup.
//!
//! State after a restart is the snapshot plus the log replayed: `open`
//! drops whatever the data directory holds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use prost::Message;

use super::line_protocol::{FieldValue, Point, series_key};
use super::meta::Metastore;
use super::series_index::SeriesIndex;
use super::shard::{MergeJob, Shard, ShardView, TombstoneFile};
use super::statistics::Statistic;
use super::tsm::KEY_FIELD_SEPARATOR;
use crate::proto::tsdb::{
    self as pb, Command, CommandResult, command::Cmd, field::Value as PbValue,
};
use crate::snapshot::staging::DEFAULT_ORPHAN_TTL;
use crate::snapshot::{
    ApplyError, BoxError, LiveFile, ReplicatedStateMachine, SnapshotMeta, SnapshotReader,
    SnapshotWriter, StagingArea, StateMachine,
};

/// The snapshot file holding the metastore backup.
pub const META_FILE: &str = "meta";
/// Cache bytes of a shard that trigger a flush (64 MiB).
pub const DEFAULT_FLUSH_BYTES: u64 = 64 << 20;

/// Points by series key, then by field: the result of [`TsdbView::scan`].
pub type SeriesPoints = BTreeMap<String, BTreeMap<String, Vec<(i64, FieldValue)>>>;

/// Files in a shard that start a background merge.
pub const DEFAULT_MERGE_FILES: usize = 4;

type MergeResult = (MergeJob, Result<super::shard::ShardFile, String>);

/// The background merger: jobs in, results out (absorbed by the state
/// machine at its next command or save; it never takes the state lock).
struct Merger {
    jobs: std::sync::mpsc::Sender<MergeJob>,
    done: Arc<Mutex<Vec<MergeResult>>>,
    running: BTreeSet<u64>,
}

impl Merger {
    fn start() -> std::io::Result<Self> {
        let (jobs, rx) = std::sync::mpsc::channel::<MergeJob>();
        let done: Arc<Mutex<Vec<MergeResult>>> = Arc::new(Mutex::new(Vec::new()));
        let out = done.clone();
        std::thread::Builder::new()
            .name("tsm-merge".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    let r = job.run().map_err(|e| e.to_string());
                    out.lock().unwrap_or_else(|p| p.into_inner()).push((job, r));
                }
            })?;
        Ok(Self {
            jobs,
            done,
            running: BTreeSet::new(),
        })
    }
}

/// The time-series state machine.
pub struct Tsdb {
    root: PathBuf,
    scratch: PathBuf,
    meta: Arc<Metastore>,
    shards: BTreeMap<u64, Shard>,
    flush_bytes: u64,
    merge_files: usize,
    merger: Merger,
    /// Staged TSM files (bulk data by file), in `<root>.staging`.
    staging: Option<Arc<StagingArea>>,
    /// Series and tag values per database (cardinality limits).
    series: Arc<RwLock<SeriesIndex>>,
}

/// A point as a raft command carries it.
pub fn point_to_pb(p: &Point) -> pb::Point {
    point_into_pb(p.clone())
}

/// A point as a raft command carries it (moved, not copied).
pub fn point_into_pb(p: Point) -> pb::Point {
    pb::Point {
        measurement: p.measurement,
        tags: p
            .tags
            .into_iter()
            .map(|(key, value)| pb::Tag { key, value })
            .collect(),
        fields: p
            .fields
            .into_iter()
            .map(|(key, v)| pb::Field {
                key,
                value: Some(match v {
                    FieldValue::Float(f) => PbValue::Float(f),
                    FieldValue::Integer(i) => PbValue::Integer(i),
                    FieldValue::Unsigned(u) => PbValue::Unsigned(u),
                    FieldValue::String(s) => PbValue::String(s),
                    FieldValue::Boolean(b) => PbValue::Boolean(b),
                }),
            })
            .collect(),
        timestamp: p.timestamp,
    }
}

/// Wraps one command for a proposal.
pub fn command(cmd: Cmd) -> Command {
    Command { cmd: Some(cmd) }
}

impl Tsdb {
    /// A state machine over `root`, emptied (the snapshot and log rebuild it).
    /// Its scratch directory (`<root>.scratch`, for exports and uploads in
    /// flight) is emptied too.
    pub fn open(root: PathBuf) -> std::io::Result<Self> {
        let staging = StagingArea::open(root.with_extension("staging"), DEFAULT_ORPHAN_TTL)
            .map_err(std::io::Error::other)?;
        Self::emptied(root, true, Some(staging))
    }

    /// An empty state machine over `root`; the scratch directory is
    /// emptied only at startup (a snapshot load leaves the files of exports
    /// and uploads in flight alone).
    fn emptied(
        root: PathBuf,
        clear_scratch: bool,
        staging: Option<Arc<StagingArea>>,
    ) -> std::io::Result<Self> {
        let scratch = root.with_extension("scratch");
        for (d, clear) in [(&root, true), (&scratch, clear_scratch)] {
            if clear && d.exists() {
                std::fs::remove_dir_all(d)?;
            }
            std::fs::create_dir_all(d)?;
        }
        Ok(Self {
            root,
            scratch,
            meta: Arc::default(),
            shards: BTreeMap::new(),
            flush_bytes: DEFAULT_FLUSH_BYTES,
            merge_files: DEFAULT_MERGE_FILES,
            merger: Merger::start()?,
            staging,
            series: Arc::default(),
        })
    }

    /// A fresh path in the scratch directory (for a transient file).
    pub fn scratch_path(&self, what: &str) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.scratch.join(format!("{what}-{n}"))
    }

    /// Sets how many files in a shard start a background merge
    /// (`usize::MAX`: no background merges at all, so files, and their
    /// tombstones, stay as written).
    pub fn with_merge_files(mut self, files: usize) -> Self {
        self.merge_files = files.max(2);
        self
    }

    /// Puts finished background merges in place; returns how many.
    pub fn absorb_merges(&mut self) -> usize {
        let done: Vec<MergeResult> =
            std::mem::take(&mut *self.merger.done.lock().unwrap_or_else(|p| p.into_inner()));
        let mut n = 0;
        let mut touched = Vec::new();
        for (job, r) in done {
            self.merger.running.remove(&job.shard_id);
            match (r, self.shards.get_mut(&job.shard_id)) {
                (Ok(out), Some(shard)) => {
                    if shard.install_merge(&job.inputs, out) {
                        n += 1;
                    }
                    // Planned again when refused too: a delete that
                    // tombstoned an input while it ran left work to do.
                    touched.push(job.shard_id);
                }
                (Ok(out), None) => {
                    let _ = std::fs::remove_file(&out.path);
                }
                (Err(e), _) => {
                    tracing::warn!(shard = job.shard_id, error = %e, "background TSM merge failed");
                    let _ = std::fs::remove_file(&job.out_path);
                }
            }
        }
        // Flushes while a merge ran planned nothing for its shard: plan
        // the next one now, so that files keep being merged after the
        // writes stop (not after a failure, which would only repeat).
        for shard_id in touched {
            self.maybe_merge(shard_id);
        }
        n
    }

    /// Background merges not yet absorbed.
    pub fn merges_running(&self) -> usize {
        self.merger.running.len()
    }

    fn maybe_merge(&mut self, shard_id: u64) {
        if self.merge_files == usize::MAX || self.merger.running.contains(&shard_id) {
            return;
        }
        if let Some(job) = self
            .shards
            .get_mut(&shard_id)
            .and_then(|s| s.plan_merge(self.merge_files))
            && self.merger.jobs.send(job).is_ok()
        {
            self.merger.running.insert(shard_id);
        }
    }

    /// Sets the cache size that triggers a flush.
    pub fn with_flush_bytes(mut self, bytes: u64) -> Self {
        self.flush_bytes = bytes.max(1);
        self
    }

    /// The metastore.
    pub fn meta(&self) -> &Metastore {
        &self.meta
    }

    /// The metastore, shared (no copy).
    pub fn meta_arc(&self) -> Arc<Metastore> {
        self.meta.clone()
    }

    /// The series index (the same one for the life of the state machine:
    /// a snapshot load replaces its contents).
    pub fn series_index(&self) -> Arc<RwLock<SeriesIndex>> {
        self.series.clone()
    }

    /// The shard group duration of `db`/`rp` (`rp` empty: the default), if
    /// they exist.
    /// The shard groups no retention policy keeps at `now` (ns): (db, rp,
    /// group id) of each live group that ended before `now` less its
    /// policy's duration, as influxd's retention service finds them.
    pub fn expired_shard_groups(&self, now: i64) -> Vec<(String, String, u64)> {
        let mut out = Vec::new();
        for d in self.meta.databases.values() {
            for p in d.rps.values().filter(|p| p.duration > 0) {
                let oldest = now.saturating_sub(p.duration);
                for g in p
                    .shard_groups
                    .iter()
                    .filter(|g| g.deleted_at == 0 && g.end < oldest)
                {
                    out.push((d.name.clone(), p.name.clone(), g.id));
                }
            }
        }
        out
    }

    /// How long `db`'s retention policy `rp` (`""`: the default) keeps
    /// points (0: forever), if both exist.
    pub fn retention_duration(&self, db: &str, rp: &str) -> Option<i64> {
        let rp = self.meta.resolve_rp(db, rp).ok()?;
        Some(self.meta.databases.get(db)?.rps.get(rp)?.duration)
    }

    /// The subscriptions of `db`'s retention policy `rp` (`""`: the
    /// default) with its resolved name, if both exist.
    pub fn subscriptions(
        &self,
        db: &str,
        rp: &str,
    ) -> Option<(String, Vec<crate::tsdb::meta::Subscription>)> {
        let rp = self.meta.resolve_rp(db, rp).ok()?;
        let p = self.meta.databases.get(db)?.rps.get(rp)?;
        Some((rp.to_string(), p.subscriptions.clone()))
    }

    /// The shard group duration of `db`'s retention policy `rp` (`""`: the
    /// default), if both exist.
    pub fn shard_group_duration(&self, db: &str, rp: &str) -> Option<i64> {
        let rp = self.meta.resolve_rp(db, rp).ok()?;
        Some(
            self.meta
                .databases
                .get(db)?
                .rps
                .get(rp)?
                .shard_group_duration,
        )
    }

    /// The metastore, to change (copied first if a read view shares it).
    fn meta_mut(&mut self) -> &mut Metastore {
        Arc::make_mut(&mut self.meta)
    }

    /// A read view of the whole store as it is now: the metastore and every
    /// shard's files and cache, readable without the state machine's lock
    /// (taking it costs one freeze of the points written since the last
    /// view, not a copy of the data).
    pub fn view(&mut self) -> TsdbView {
        self.absorb_merges();
        TsdbView {
            meta: self.meta.clone(),
            shards: self
                .shards
                .iter_mut()
                .map(|(id, s)| (*id, s.view()))
                .collect(),
        }
    }

    /// A shard, if it holds anything.
    pub fn shard(&self, id: u64) -> Option<&Shard> {
        self.shards.get(&id)
    }

    fn shard_dir(&self, db: &str, rp: &str, id: u64) -> PathBuf {
        self.root.join(db).join(rp).join(id.to_string())
    }

    fn drop_shards(&mut self, ids: &[u64]) {
        for id in ids {
            if let Some(s) = self.shards.remove(id) {
                let _ = std::fs::remove_dir_all(s.dir());
            }
        }
    }

    /// Flushes every shard's cache into TSM files.
    pub fn flush_all(&mut self) -> Result<(), BoxError> {
        for s in self.shards.values_mut() {
            s.flush()?;
        }
        Ok(())
    }

    /// Executes a command. Refusals go in the result; `Err` is an I/O
    /// failure that must stop the node.
    pub fn execute(&mut self, cmd: Command) -> Result<CommandResult, BoxError> {
        self.absorb_merges();
        let mut res = CommandResult::default();
        let err = |e: super::meta::MetaError| CommandResult {
            error: e.to_string(),
            ..Default::default()
        };
        let Some(cmd) = cmd.cmd else {
            res.error = "empty command".into();
            return Ok(res);
        };
        match cmd {
            Cmd::Write(w) => return self.write(w),
            Cmd::WriteSeries(w) => return self.write_series_rows(w),
            Cmd::IngestFiles(c) => return self.ingest(c),
            Cmd::CreateDatabase(c) => {
                if let Err(e) = self.meta_mut().create_database(&c.name) {
                    return Ok(err(e));
                }
            }
            Cmd::DropDatabase(c) => {
                let ids = self.meta_mut().drop_database(&c.name);
                self.drop_shards(&ids);
                self.series
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .drop_database(&c.name);
                let _ = std::fs::remove_dir_all(self.root.join(&c.name));
            }
            Cmd::CreateRetentionPolicy(c) => {
                if let Err(e) = self.meta_mut().create_retention_policy(
                    &c.db,
                    &c.name,
                    c.duration,
                    c.shard_group_duration,
                    c.replica_n,
                    c.make_default,
                ) {
                    return Ok(err(e));
                }
            }
            Cmd::AlterRetentionPolicy(c) => {
                if let Err(e) = self.meta_mut().alter_retention_policy(
                    &c.db,
                    &c.name,
                    c.duration,
                    c.shard_group_duration,
                    c.replica_n,
                    c.make_default,
                ) {
                    return Ok(err(e));
                }
            }
            Cmd::DropRetentionPolicy(c) => {
                match self.meta_mut().drop_retention_policy(&c.db, &c.name) {
                    Ok(ids) => self.drop_shards(&ids),
                    Err(e) => return Ok(err(e)),
                }
            }
            Cmd::DeleteShardGroup(c) => {
                match self
                    .meta_mut()
                    .delete_shard_group(&c.db, &c.rp, c.id, c.deleted_at)
                {
                    Ok(ids) => self.drop_shards(&ids),
                    Err(e) => return Ok(err(e)),
                }
            }
            Cmd::WriteShard(w) => return self.write_shard(w),
            Cmd::DeleteSeries(c) => return self.delete_series(c),
            Cmd::CreateContinuousQuery(c) => {
                if let Err(e) = self
                    .meta_mut()
                    .create_continuous_query(&c.db, &c.name, &c.query)
                {
                    return Ok(err(e));
                }
            }
            Cmd::DropContinuousQuery(c) => {
                if let Err(e) = self.meta_mut().drop_continuous_query(&c.db, &c.name) {
                    return Ok(err(e));
                }
            }
            Cmd::CreateSubscription(c) => {
                if let Err(e) = self.meta_mut().create_subscription(
                    &c.db,
                    &c.rp,
                    &c.name,
                    &c.mode,
                    &c.destinations,
                ) {
                    return Ok(err(e));
                }
            }
            Cmd::DropSubscription(c) => {
                if let Err(e) = self.meta_mut().drop_subscription(&c.db, &c.rp, &c.name) {
                    return Ok(err(e));
                }
            }
            Cmd::CreateUser(c) => {
                if let Err(e) = self.meta_mut().create_user(&c.name, &c.hash, c.admin) {
                    return Ok(err(e));
                }
            }
            Cmd::DropUser(c) => {
                if let Err(e) = self.meta_mut().drop_user(&c.name) {
                    return Ok(err(e));
                }
            }
            Cmd::SetPassword(c) => {
                if let Err(e) = self.meta_mut().set_password(&c.name, &c.hash) {
                    return Ok(err(e));
                }
            }
            Cmd::SetPrivilege(c) => {
                let Some(p) = super::users::Privilege::from_i32(c.privilege) else {
                    res.error = format!("privilege {} is not one of 0..=3", c.privilege);
                    return Ok(res);
                };
                if let Err(e) = self.meta_mut().set_privilege(&c.name, &c.db, p, c.revoke) {
                    return Ok(err(e));
                }
            }
            Cmd::SetAdmin(c) => {
                if let Err(e) = self.meta_mut().set_admin(&c.name, c.admin) {
                    return Ok(err(e));
                }
            }
            Cmd::ImportMetastore(c) => {
                let src = match crate::proto::meta::Data::decode(&c.data[..]) {
                    Ok(d) => match Metastore::from_proto(&d) {
                        Ok(m) => m,
                        Err(e) => return Ok(err(e)),
                    },
                    Err(e) => {
                        return Ok(CommandResult {
                            error: format!("meta.Data does not decode: {e}"),
                            ..Default::default()
                        });
                    }
                };
                match self
                    .meta_mut()
                    .import(&src, &c.db, &c.newdb, &c.rp, &c.newrp)
                {
                    Ok(map) => {
                        res.mapping = map
                            .into_iter()
                            .map(|(old_id, new_id)| pb::ShardMapping { old_id, new_id })
                            .collect()
                    }
                    Err(e) => return Ok(err(e)),
                }
            }
        }
        Ok(res)
    }

    /// DELETE, DROP SERIES, DROP MEASUREMENT: the points of the series the
    /// command reaches in its time range leave every shard of the database
    /// whose group overlaps the range — from the cache, and from the TSM
    /// files that hold any (rewritten without them), so that snapshots,
    /// installs and backups carry the deletion.
    fn delete_series(&mut self, c: pb::DeleteSeries) -> Result<CommandResult, BoxError> {
        if !self.meta.databases.contains_key(&c.db) {
            return Ok(Self::rejected(format!("database not found: {}", c.db)));
        }
        let ids: Vec<u64> = self
            .meta
            .shards()
            .into_iter()
            .filter(|(db, _, _, start, end)| {
                db == &c.db && *end > c.min_time && *start <= c.max_time
            })
            .map(|(_, _, id, _, _)| id)
            .collect();
        // influxd refuses a condition it cannot apply shard by shard,
        // naming the first shard.
        let reach = match super::query::SeriesMatch::new(&c) {
            Ok(m) => m,
            Err(e) => match ids.first() {
                Some(id) => return Ok(Self::rejected(format!("shard {id}: {e}"))),
                None => return Ok(CommandResult::default()),
            },
        };
        let matches = |key: &str| {
            let series = key.split(KEY_FIELD_SEPARATOR).next().unwrap_or(key);
            reach.matches(series)
        };
        let mut keys_gone = 0;
        for id in ids {
            if let Some(shard) = self.shards.get_mut(&id) {
                let done = shard.delete(&matches, c.min_time, c.max_time)?;
                keys_gone += done.keys_gone;
                // Tombstoned files are rewritten without the deleted
                // points in the background.
                if done.tombstoned > 0 {
                    self.maybe_merge(id);
                }
            }
        }
        if keys_gone > 0 {
            self.recount_series(&c.db);
        }
        Ok(CommandResult::default())
    }

    /// Rebuilds the series index of `db` from what its shards hold now, on
    /// a thread of its own (deleted series stop counting toward
    /// `max-series-per-database` once it is done; series written
    /// meanwhile count again at the next rebuild or load, as the limits
    /// may let a few more series in, never fewer).
    fn recount_series(&mut self, db: &str) {
        let ids: Vec<u64> = self
            .meta
            .shards()
            .into_iter()
            .filter(|s| s.0 == db)
            .map(|s| s.2)
            .collect();
        let views: Vec<ShardView> = ids
            .iter()
            .filter_map(|id| self.shards.get_mut(id).map(Shard::view))
            .collect();
        let (index, db) = (self.series.clone(), db.to_string());
        let spawned = std::thread::Builder::new()
            .name("series-recount".into())
            .spawn(move || {
                let mut fresh = SeriesIndex::default();
                for v in &views {
                    v.for_each_key(|k| fresh.add_keys(&db, [k]));
                }
                index
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .replace_database(&db, fresh);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the series recount after a delete");
        }
    }

    fn write(&mut self, w: pb::WritePoints) -> Result<CommandResult, BoxError> {
        let mut res = CommandResult::default();
        let rp = match self.write_rp(&w.db, &w.rp) {
            Ok(rp) => rp,
            Err(refused) => return Ok(refused),
        };
        let mut touched = Vec::new();
        let mut refusal: Option<String> = None;
        let mut key = String::new();
        let index = self.series.clone();
        let mut index = index.write().unwrap_or_else(|p| p.into_inner());
        for p in w.points {
            let mut tags: Vec<(String, String)> =
                p.tags.into_iter().map(|t| (t.key, t.value)).collect();
            tags.sort();
            let series = series_key(&p.measurement, &tags);
            // Checked before anything changes: a point no replica can store
            // is dropped alike everywhere (and never reaches a TSM flush).
            let names: Vec<&str> = p.fields.iter().map(|f| f.key.as_str()).collect();
            if let Err(why) = check_point(&p.measurement, &tags, &names, p.timestamp, series.len())
            {
                res.dropped += 1;
                refusal.get_or_insert(why);
                continue;
            }
            let shard_id = match self.shard_for_write(&w.db, &rp, p.timestamp)? {
                Ok(id) => id,
                Err(e) => {
                    res.error = e;
                    return Ok(res);
                }
            };
            let Some(shard) = self.shards.get_mut(&shard_id) else {
                continue;
            };
            index.add(&w.db, &p.measurement, &tags);
            let mut ok = true;
            let mut conflict: Option<String> = None;
            for f in p.fields {
                let v = match f.value {
                    Some(PbValue::Float(x)) if x.is_finite() => FieldValue::Float(x),
                    Some(PbValue::Integer(x)) => FieldValue::Integer(x),
                    Some(PbValue::Unsigned(x)) => FieldValue::Unsigned(x),
                    Some(PbValue::String(x)) => FieldValue::String(x),
                    Some(PbValue::Boolean(x)) => FieldValue::Boolean(x),
                    _ => {
                        ok = false;
                        continue;
                    }
                };
                key.clear();
                key.push_str(&series);
                key.push_str(KEY_FIELD_SEPARATOR);
                key.push_str(&f.key);
                let new = super::shard::block_type(&v);
                if let Err(old) = shard.try_write(&key, p.timestamp, v) {
                    ok = false;
                    conflict.get_or_insert_with(|| type_conflict(&p.measurement, &f.key, new, old));
                }
            }
            if ok {
                res.written += 1;
            } else {
                res.dropped += 1;
                let why = conflict
                    .take()
                    .unwrap_or_else(|| "field type conflict".into());
                refusal.get_or_insert(why);
            }
            touched.push(shard_id);
        }
        if res.dropped > 0 {
            res.error = format!(
                "partial write: {} dropped={}",
                refusal.unwrap_or_default(),
                res.dropped
            );
        }
        drop(index);
        touched.dedup();
        self.flush_full(touched)?;
        Ok(res)
    }

    /// Applies a write grouped by series ([`pb::WriteSeries`]) with the
    /// outcome [`write`](Self::write) gives for the same points: every
    /// point checked before anything changes, per-field type conflicts,
    /// counts per point, and the reason of the first refused point.
    fn write_series_rows(&mut self, w: pb::WriteSeries) -> Result<CommandResult, BoxError> {
        let mut res = CommandResult::default();
        let rp = match self.write_rp(&w.db, &w.rp) {
            Ok(rp) => rp,
            Err(refused) => return Ok(refused),
        };
        let mut touched = std::collections::BTreeSet::new();
        // (order of the point, why) of the first refused point.
        let mut refusal: Option<(u32, String)> = None;
        let mut refuse = |order: u32, why: &dyn Fn() -> String| {
            if refusal.as_ref().is_none_or(|(o, _)| order < *o) {
                refusal = Some((order, why()));
            }
        };
        let mut key = String::new();
        let index = self.series.clone();
        let mut index = index.write().unwrap_or_else(|p| p.into_inner());
        for mut sr in w.series {
            let n = sr.timestamps.len();
            let mut tags: Vec<(String, String)> = std::mem::take(&mut sr.tags)
                .into_iter()
                .map(|t| (t.key, t.value))
                .collect();
            tags.sort();
            let series = series_key(&sr.measurement, &tags);
            let malformed = sr.order.len() != n
                || sr.fields.iter().any(|c| {
                    c.rows.windows(2).any(|w| w[0] >= w[1])
                        || c.rows.iter().any(|r| *r as usize >= n)
                });
            if malformed {
                res.dropped += n as u64;
                refuse(sr.order.iter().copied().min().unwrap_or(0), &|| {
                    "malformed series in a write".into()
                });
                continue;
            }
            // Each point's field names, then its checks (before any write).
            let mut names: Vec<Vec<&str>> = vec![Vec::new(); n];
            for c in &sr.fields {
                for r in &c.rows {
                    names[*r as usize].push(c.key.as_str());
                }
            }
            let mut shard_of: Vec<Option<u64>> = vec![None; n];
            let mut failed = vec![false; n];
            let mut conflicts: Vec<Option<String>> = vec![None; n];
            for r in 0..n {
                let (ts, order) = (sr.timestamps[r], sr.order[r]);
                if let Err(why) = check_point(&sr.measurement, &tags, &names[r], ts, series.len()) {
                    res.dropped += 1;
                    refuse(order, &|| why.clone());
                    continue;
                }
                let id = match self.shard_for_write(&w.db, &rp, ts)? {
                    Ok(id) => id,
                    Err(e) => {
                        res.error = e;
                        return Ok(res);
                    }
                };
                shard_of[r] = Some(id);
                touched.insert(id);
            }
            drop(names);
            if shard_of.iter().any(Option::is_some) {
                index.add(&w.db, &sr.measurement, &tags);
            }
            for mut c in std::mem::take(&mut sr.fields) {
                let values = super::write_batch::column_values(&mut c);
                key.clear();
                key.push_str(&series);
                key.push_str(KEY_FIELD_SEPARATOR);
                key.push_str(&c.key);
                let Some(values) = values else {
                    for r in &c.rows {
                        failed[*r as usize] = true;
                    }
                    continue;
                };
                for (r, v) in c.rows.iter().zip(values) {
                    let r = *r as usize;
                    let Some(id) = shard_of[r] else { continue };
                    let finite = !matches!(v, FieldValue::Float(x) if !x.is_finite());
                    let new = super::shard::block_type(&v);
                    let Some(shard) = self.shards.get_mut(&id) else {
                        failed[r] = true;
                        continue;
                    };
                    let written = if finite {
                        shard.try_write(&key, sr.timestamps[r], v)
                    } else {
                        Err(None)
                    };
                    if let Err(old) = written
                        && conflicts[r].is_none()
                        && finite
                    {
                        conflicts[r] = Some(type_conflict(&sr.measurement, &c.key, new, old));
                    }
                    failed[r] |= written.is_err();
                }
            }
            for r in 0..n {
                if shard_of[r].is_none() {
                    continue; // refused by its checks, counted above
                }
                if failed[r] {
                    res.dropped += 1;
                    let why = conflicts[r].take();
                    refuse(sr.order[r], &|| {
                        why.clone().unwrap_or_else(|| "field type conflict".into())
                    });
                } else {
                    res.written += 1;
                }
            }
        }
        if res.dropped > 0 {
            res.error = format!(
                "partial write: {} dropped={}",
                refusal.map(|(_, why)| why).unwrap_or_default(),
                res.dropped
            );
        }
        drop(index);
        self.flush_full(touched)?;
        Ok(res)
    }

    /// The retention policy a write goes to, or the answer refusing it.
    fn write_rp(&self, db: &str, rp: &str) -> Result<String, CommandResult> {
        self.meta
            .resolve_rp(db, rp)
            .map(str::to_string)
            .map_err(|e| CommandResult {
                database_not_found: matches!(e, super::meta::MetaError::DatabaseNotFound(_)),
                error: e.to_string(),
                ..Default::default()
            })
    }

    /// The shard of `db`/`rp` holding time `ts`, created if needed (its
    /// shard group too); `Ok(Err)` is the metastore's refusal.
    fn shard_for_write(
        &mut self,
        db: &str,
        rp: &str,
        ts: i64,
    ) -> Result<Result<u64, String>, BoxError> {
        let id = match self.meta_mut().shard_for(db, rp, ts) {
            Ok(id) => id,
            Err(e) => return Ok(Err(e.to_string())),
        };
        if !self.shards.contains_key(&id) {
            let dir = self.shard_dir(db, rp, id);
            self.shards.insert(id, Shard::create(id, dir)?);
        }
        Ok(Ok(id))
    }

    /// Flushes (and maybe merges) each of these shards whose cache is full.
    fn flush_full(&mut self, ids: impl IntoIterator<Item = u64>) -> Result<(), BoxError> {
        for id in ids {
            if let Some(s) = self.shards.get_mut(&id)
                && s.cache_bytes() >= self.flush_bytes
            {
                s.flush()?;
                self.maybe_merge(id);
            }
        }
        Ok(())
    }

    fn write_shard(&mut self, w: pb::WriteShard) -> Result<CommandResult, BoxError> {
        let mut res = CommandResult::default();
        if !self
            .meta
            .shards()
            .iter()
            .any(|s| s.0 == w.db && s.1 == w.rp && s.2 == w.shard_id)
        {
            res.error = format!("shard {} not found in {}/{}", w.shard_id, w.db, w.rp);
            return Ok(res);
        }
        if !self.shards.contains_key(&w.shard_id) {
            let dir = self.shard_dir(&w.db, &w.rp, w.shard_id);
            self.shards
                .insert(w.shard_id, Shard::create(w.shard_id, dir)?);
        }
        let Some(shard) = self.shards.get_mut(&w.shard_id) else {
            return Ok(res);
        };
        for s in w.series {
            let n = s.timestamps.len();
            let valid = s.key.contains(KEY_FIELD_SEPARATOR)
                && !super::shard::measurement_of(&s.key).is_empty();
            let values = valid
                .then(|| {
                    super::write_batch::typed_values(
                        n,
                        s.floats,
                        s.integers,
                        s.unsigneds,
                        s.strings,
                        s.booleans,
                    )
                })
                .flatten();
            let Some(values) = values else {
                res.dropped += n as u64;
                continue;
            };
            let (keep, bad): (Vec<_>, Vec<_>) = s
                .timestamps
                .into_iter()
                .zip(values)
                .partition(|(_, v)| !matches!(v, FieldValue::Float(f) if !f.is_finite()));
            res.dropped += bad.len() as u64;
            let n = keep.len() as u64;
            self.series
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .add_keys(&w.db, [s.key.as_str()]);
            let refused = shard.write_series(&s.key, keep) as u64;
            res.written += n - refused;
            res.dropped += refused;
        }
        if res.dropped > 0 {
            res.error = format!("partial write: dropped={}", res.dropped);
        }
        self.flush_full([w.shard_id])?;
        Ok(res)
    }

    /// Links the TSM files of a staged set into a shard (see
    /// [`super::ingest`]). The set must be held here (the node obtains it
    /// before applying); refusals (no such shard, files outside the shard's
    /// time range, a field type conflict) are decided alike everywhere.
    fn ingest(&mut self, c: pb::IngestFiles) -> Result<CommandResult, BoxError> {
        let refuse = |error: String| {
            Ok(CommandResult {
                error,
                ..Default::default()
            })
        };
        let Some(staging) = self.staging.clone() else {
            return Err("this node keeps no staged files".into());
        };
        let files = super::ingest::files_of(&c);
        let Some(set) = staging.get(c.staging_id) else {
            return Err(format!("staged set {:016x} is not held here", c.staging_id).into());
        };
        if set.files() != files.as_slice() {
            return Err(format!(
                "staged set {:016x} holds other files than the command names",
                c.staging_id
            )
            .into());
        }
        if c.files.is_empty() {
            return refuse("an ingest of no files".into());
        }
        let min = c.files.iter().map(|f| f.min_time).min().unwrap_or(0);
        let max = c.files.iter().map(|f| f.max_time).max().unwrap_or(0);
        let (rp, shard_id) = if c.shard_id == 0 {
            let rp = match self.write_rp(&c.db, &c.rp) {
                Ok(rp) => rp,
                Err(refused) => return Ok(refused),
            };
            match self.shard_for_write(&c.db, &rp, min)? {
                Ok(id) => (rp, id),
                Err(e) => return refuse(e),
            }
        } else {
            (c.rp.clone(), c.shard_id)
        };
        let Some((_, _, _, start, end)) = self
            .meta
            .shards()
            .into_iter()
            .find(|s| s.0 == c.db && s.1 == rp && s.2 == shard_id)
        else {
            return refuse(format!("shard {shard_id} not found in {}/{rp}", c.db));
        };
        if c.shard_id == 0 && (min < start || max >= end) {
            return refuse(format!(
                "the files span {min}..={max}, beyond one shard group ({start}..{end})"
            ));
        }
        if !self.shards.contains_key(&shard_id) {
            let dir = self.shard_dir(&c.db, &rp, shard_id);
            self.shards.insert(shard_id, Shard::create(shard_id, dir)?);
        }
        let Some(shard) = self.shards.get_mut(&shard_id) else {
            return refuse(format!("shard {shard_id} not found"));
        };
        let mut readers = Vec::with_capacity(files.len());
        for f in &files {
            readers.push(super::tsm::TsmReader::open(&set.path_of(&f.name))?);
        }
        let keys: Vec<Vec<(String, super::tsm::BlockType)>> = readers
            .iter()
            .map(|r| r.keys().map(|(k, t)| (k.to_string(), t)).collect())
            .collect();
        if let Err(e) =
            super::ingest::check_types(keys.iter().map(Vec::as_slice), |k| shard.type_of(k))
        {
            return refuse(e);
        }
        drop(readers);
        // Everything cached before is older than the ingested files.
        shard.flush()?;
        for f in &files {
            shard.ingest_file(&set.path_of(&f.name), f.size, f.crc32c)?;
        }
        self.series
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .add_keys(&c.db, keys.iter().flatten().map(|(k, _)| k.as_str()));
        self.maybe_merge(shard_id);
        Ok(CommandResult {
            written: c.files.iter().map(|f| f.values).sum(),
            shard_id,
            ..Default::default()
        })
    }

    /// The type `key` holds in shard `id`, if any.
    pub fn stored_type(&self, id: u64, key: &str) -> Option<super::tsm::BlockType> {
        self.shards.get(&id).and_then(|s| s.type_of(key))
    }

    /// For a shard backup or export: flushes the shard's cache and returns
    /// its db, rp and TSM files (their open readers keep them readable after
    /// a merge removes them). `None` if the shard is not here.
    pub fn shard_files(
        &mut self,
        id: u64,
    ) -> Result<Option<(String, String, Vec<super::shard::ShardFile>)>, BoxError> {
        self.absorb_merges();
        let Some((db, rp, ..)) = self.meta.shards().into_iter().find(|s| s.2 == id) else {
            return Ok(None);
        };
        let files = match self.shards.get_mut(&id) {
            Some(shard) => {
                shard.flush()?;
                shard.files().to_vec()
            }
            None => Vec::new(),
        };
        Ok(Some((db, rp, files)))
    }

    /// `db/rp/id` of every shard of `db` (all databases if empty) and `rp`
    /// (all if empty), as the snapshotter's info requests list them.
    pub fn shard_paths(&self, db: &str, rp: &str) -> Vec<String> {
        self.meta
            .shards()
            .into_iter()
            .filter(|s| (db.is_empty() || s.0 == db) && (rp.is_empty() || s.1 == rp))
            .map(|s| format!("{}/{}/{}", s.0, s.1, s.2))
            .collect()
    }
}

/// The store as a read view saw it (see [`Tsdb::view`]).
#[derive(Debug, Clone)]
pub struct TsdbView {
    meta: Arc<Metastore>,
    shards: BTreeMap<u64, ShardView>,
}

impl TsdbView {
    /// The metastore.
    pub fn meta(&self) -> &Metastore {
        &self.meta
    }

    /// The points of every series of `measurement` in shards of `db`/`rp`
    /// within `[min, max]`: series key → field → points.
    pub fn scan(
        &self,
        db: &str,
        rp: &str,
        measurement: &str,
        min: i64,
        max: i64,
    ) -> Result<SeriesPoints, BoxError> {
        let shards: Vec<&ShardView> = self
            .shards_in(db, rp, min, max)?
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        let mut series = BTreeMap::new();
        for shard in &shards {
            shard.series(measurement, &[], &mut series);
        }
        let mut out = SeriesPoints::new();
        for (key, fields) in series {
            let one = out.entry(key.clone()).or_default();
            for field in fields {
                let tsm_key = format!("{key}{KEY_FIELD_SEPARATOR}{field}");
                let pts = one.entry(field).or_default();
                for shard in &shards {
                    pts.extend(shard.read(&tsm_key, min, max)?);
                }
            }
        }
        Ok(out)
    }

    /// influxd's `database` statistics (measurements and series of each
    /// database) and `shard` statistics (size on disk, files, series and
    /// cached values of each shard) of this view.
    pub fn statistics(&self) -> Vec<Statistic> {
        let mut out = Vec::new();
        for db in self.meta.databases.keys() {
            let mut series = Vec::new();
            let mut shards = Vec::new();
            for (sdb, rp, id, _, _) in self.meta.shards() {
                let Some(shard) = self.shards.get(&id).filter(|_| &sdb == db) else {
                    continue;
                };
                let here = shard.series_lists();
                let (disk, files, cached) = shard.sizes();
                shards.push(Statistic::new(
                    "shard",
                    &[
                        ("database", db),
                        ("engine", "tsm1"),
                        ("id", &id.to_string()),
                        ("retentionPolicy", &rp),
                    ],
                    &[
                        ("diskBytes", disk),
                        ("numFiles", files as u64),
                        ("numSeries", super::shard::count_union(&here) as u64),
                        ("cachedValues", cached as u64),
                    ],
                ));
                series.extend(here);
            }
            let distinct = super::shard::count_union(&series) as u64;
            out.push(Statistic::new(
                "database",
                &[("database", db)],
                &[
                    ("numMeasurements", self.measurements(db).len() as u64),
                    ("numSeries", distinct),
                ],
            ));
            out.extend(shards);
        }
        out
    }

    /// Every shard of `db` (all retention policies) held here.
    pub fn shards_of(&self, db: &str) -> Vec<&ShardView> {
        self.meta
            .shards()
            .into_iter()
            .filter(|s| s.0 == db)
            .filter_map(|s| self.shards.get(&s.2))
            .collect()
    }

    /// The shards of `db` and retention policy `rp` (its default when
    /// empty) whose time range meets `[min, max]`, oldest first, each with
    /// the time it starts at.
    pub fn shards_in(
        &self,
        db: &str,
        rp: &str,
        min: i64,
        max: i64,
    ) -> Result<Vec<(i64, &ShardView)>, BoxError> {
        Ok(self
            .meeting(db, rp, min, max)?
            .into_iter()
            .filter_map(|(start, id)| Some((start, self.shards.get(&id)?)))
            .collect())
    }

    /// The ids of the shards [`TsdbView::shards_in`] lists, in its order.
    pub fn shard_ids_in(&self, db: &str, rp: &str, min: i64, max: i64) -> Vec<u64> {
        self.meeting(db, rp, min, max)
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, id)| self.shards.contains_key(id))
            .map(|(_, id)| id)
            .collect()
    }

    /// (start, id) of the shards of `db`.`rp` whose time range meets
    /// `[min, max]`, oldest first.
    fn meeting(&self, db: &str, rp: &str, min: i64, max: i64) -> Result<Vec<(i64, u64)>, BoxError> {
        let rp = self.meta.resolve_rp(db, rp)?.to_string();
        let mut shards: Vec<(i64, u64)> = self
            .meta
            .shards()
            .into_iter()
            .filter(|(sdb, srp, _, start, end)| {
                *sdb == db && *srp == rp && *end > min && *start <= max
            })
            .map(|(_, _, id, start, _)| (start, id))
            .collect();
        shards.sort_by_key(|(start, _)| *start);
        Ok(shards)
    }

    /// Measurements of `db`.
    pub fn measurements(&self, db: &str) -> Vec<String> {
        let mut out = BTreeSet::new();
        for (sdb, _, id, _, _) in self.meta.shards() {
            if sdb == db
                && let Some(s) = self.shards.get(&id)
            {
                out.extend(s.measurements());
            }
        }
        out.into_iter().collect()
    }
}

/// influxd's message for a write whose field has another type than the one
/// stored.
fn type_conflict(
    measurement: &str,
    field: &str,
    new: super::tsm::BlockType,
    old: Option<super::tsm::BlockType>,
) -> String {
    match old {
        Some(old) => format!(
            "field type conflict: input field \"{field}\" on measurement \"{measurement}\" is type {}, already exists as type {}",
            new.type_name(),
            old.type_name()
        ),
        None => "field type conflict".into(),
    }
}

/// Why InfluxDB would refuse to store a point, if it would (`series_len`:
/// the length of its series key).
fn check_point(
    measurement: &str,
    tags: &[(String, String)],
    fields: &[&str],
    timestamp: i64,
    series_len: usize,
) -> Result<(), String> {
    use super::line_protocol::{check_key_length, check_time};
    if measurement.is_empty() || fields.is_empty() {
        return Err("point without a measurement or fields".into());
    }
    check_time(timestamp)?;
    if let Some((k, _)) = tags.iter().find(|(k, _)| k == "time") {
        return Err(format!(
            "invalid tag key: input tag \"{k}\" on measurement \"{measurement}\" is invalid"
        ));
    }
    if let Some(f) = fields.iter().find(|f| **f == "time" || f.is_empty()) {
        return Err(format!(
            "invalid field name: input field \"{f}\" on measurement \"{measurement}\" is invalid"
        ));
    }
    check_key_length(series_len, fields.iter().copied())
}

impl ReplicatedStateMachine for Tsdb {
    type Command = Command;
    type Answer = CommandResult;
    type View = TsdbView;

    fn view(&mut self) -> TsdbView {
        Tsdb::view(self)
    }

    fn apply(
        &mut self,
        _index: u64,
        _term: u64,
        cmd: Command,
    ) -> Result<CommandResult, ApplyError> {
        Ok(self.execute(cmd)?)
    }

    fn staged_need(command: &[u8]) -> Option<crate::snapshot::StagedNeed> {
        super::ingest::staged_need(command)
    }

    fn rejected(reason: String) -> CommandResult {
        CommandResult {
            error: reason,
            ..Default::default()
        }
    }
}

impl StateMachine for Tsdb {
    fn on_snapshot_save(
        &mut self,
        w: &mut SnapshotWriter,
        meta: &SnapshotMeta,
    ) -> Result<(), BoxError> {
        self.flush_all()?;
        let shards = self.meta.shards();
        for (db, rp, id, _, _) in shards {
            let Some(s) = self.shards.get(&id) else {
                continue;
            };
            for f in s.files() {
                w.add_file_link(
                    &format!("data/{db}/{rp}/{id}/{}", f.name),
                    &f.path,
                    f.crc32c,
                )?;
                if let Some(t) = f.tombstone() {
                    w.add_file_link(
                        &format!("data/{db}/{rp}/{id}/{}", t.name),
                        &t.path,
                        t.crc32c,
                    )?;
                }
            }
        }
        w.write_file(
            META_FILE,
            &self
                .meta
                .backup_blob(meta.last_included_term, meta.last_included_index),
        )?;
        Ok(())
    }

    fn on_snapshot_load(&mut self, r: &SnapshotReader) -> Result<(), BoxError> {
        let meta = Metastore::from_backup_blob(&std::fs::read(r.path_of(META_FILE)?)?)?;
        let fresh = Tsdb::emptied(self.root.clone(), false, self.staging.clone())?;
        let mut shards: BTreeMap<u64, Shard> = BTreeMap::new();
        // Tombstones are attached once their TSM files are all added.
        let mut tombstones: Vec<(u64, TombstoneFile)> = Vec::new();
        for f in r.files() {
            let Some(rest) = f.name.strip_prefix("data/") else {
                continue;
            };
            let parts: Vec<&str> = rest.split('/').collect();
            let [db, rp, id, name] = parts[..] else {
                return Err(format!("unexpected snapshot file {:?}", f.name).into());
            };
            let id: u64 = id
                .parse()
                .map_err(|_| format!("bad shard id in {:?}", f.name))?;
            let dir = fresh.shard_dir(db, rp, id);
            let shard = match shards.entry(id) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(Shard::create(id, dir.clone())?)
                }
            };
            let dst = dir.join(name);
            std::fs::hard_link(r.path_of(&f.name)?, &dst)?;
            if name.ends_with(".tombstone") {
                tombstones.push((
                    id,
                    TombstoneFile {
                        name: name.to_string(),
                        path: dst,
                        size: f.size,
                        crc32c: f.crc32c,
                    },
                ));
                continue;
            }
            shard.add_file(name, dst, f.size, f.crc32c)?;
        }
        for (id, t) in tombstones {
            let name = t.name.clone();
            let attached = match shards.get_mut(&id) {
                Some(shard) => shard.add_tombstone(t)?,
                None => false,
            };
            if !attached {
                tracing::warn!(shard = id, file = %name, "snapshot tombstone file without its TSM file left out");
            }
        }
        let mut index = SeriesIndex::default();
        for (db, _, id, ..) in meta.shards() {
            if let Some(s) = shards.get(&id) {
                index.add_keys(&db, s.keys().iter().map(String::as_str));
            }
        }
        *self.series.write().unwrap_or_else(|p| p.into_inner()) = index;
        *self = Tsdb {
            meta: Arc::new(meta),
            series: self.series.clone(),
            shards,
            ..fresh
                .with_flush_bytes(self.flush_bytes)
                .with_merge_files(self.merge_files)
        };
        // Files loaded with tombstones are rewritten without their deleted
        // points in the background.
        let tombstoned: Vec<u64> = self
            .shards
            .iter()
            .filter(|(_, s)| s.files().iter().any(|f| f.tombstone().is_some()))
            .map(|(id, _)| *id)
            .collect();
        for id in tombstoned {
            self.maybe_merge(id);
        }
        Ok(())
    }

    fn staging(&self) -> Option<Arc<StagingArea>> {
        self.staging.clone()
    }

    fn live_files(&self) -> Vec<LiveFile> {
        self.shards
            .values()
            .flat_map(|s| s.files())
            .flat_map(|f| {
                let tomb = f.tombstone().map(|t| LiveFile {
                    path: t.path.clone(),
                    size: t.size,
                    crc32c: t.crc32c,
                });
                std::iter::once(LiveFile {
                    path: f.path.clone(),
                    size: f.size,
                    crc32c: f.crc32c,
                })
                .chain(tomb)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t: &mut Tsdb, cmd: Cmd) -> CommandResult {
        t.execute(Command { cmd: Some(cmd) }).unwrap()
    }

    fn series(key: &str, ts: Vec<i64>, floats: Vec<f64>) -> pb::SeriesValues {
        pb::SeriesValues {
            key: key.into(),
            timestamps: ts,
            floats,
            ..Default::default()
        }
    }

    fn points(m: &str, from: i64, n: i64) -> Cmd {
        Cmd::Write(pb::WritePoints {
            db: "db".into(),
            rp: String::new(),
            points: (from..from + n)
                .map(|i| pb::Point {
                    measurement: m.into(),
                    tags: vec![pb::Tag {
                        key: "h".into(),
                        value: format!("h{}", i % 3),
                    }],
                    fields: vec![pb::Field {
                        key: "v".into(),
                        value: Some(PbValue::Float(i as f64)),
                    }],
                    timestamp: i * 1_000_000_000,
                })
                .collect(),
        })
    }

    fn total(v: &TsdbView, m: &str) -> usize {
        v.scan("db", "", m, i64::MIN, i64::MAX)
            .unwrap()
            .values()
            .flat_map(|f| f.values())
            .map(Vec::len)
            .sum()
    }

    #[test]
    fn a_read_view_keeps_its_point_in_time_through_writes_and_flushes() {
        let d = tempfile::tempdir().unwrap();
        let mut t = Tsdb::open(d.path().join("tsdb")).unwrap();
        run(
            &mut t,
            Cmd::CreateDatabase(pb::CreateDatabase { name: "db".into() }),
        );
        run(&mut t, points("m", 0, 100));
        let v1 = t.view();
        run(&mut t, points("m", 100, 50));
        // Overwrites of old timestamps too: the view must not see them.
        run(&mut t, points("m", 0, 10));
        let v2 = t.view();
        t.flush_all().unwrap();
        run(&mut t, points("m", 150, 25));
        let v3 = t.view();
        assert_eq!(total(&v1, "m"), 100);
        assert_eq!(total(&v2, "m"), 150);
        assert_eq!(total(&v3, "m"), 175);
        assert_eq!(v1.measurements("db"), vec!["m".to_string()]);
        // Many views (one per query) keep the segments few and reads exact.
        for i in 0..200 {
            run(&mut t, points("m", 175 + i, 1));
            let v = t.view();
            assert_eq!(total(&v, "m"), 176 + i as usize);
        }
        let shard = t.meta().shards()[0].2;
        assert!(t.shard(shard).unwrap().frozen_segments() <= 17);
    }

    #[test]
    fn shard_writes_need_the_shard_and_drop_what_is_invalid() {
        let d = tempfile::tempdir().unwrap();
        let mut t = Tsdb::open(d.path().join("tsdb")).unwrap();
        run(
            &mut t,
            Cmd::CreateDatabase(pb::CreateDatabase { name: "db".into() }),
        );
        let id = t.meta_mut().shard_for("db", "", 1_000).unwrap();
        let w = |shard_id, series| {
            Cmd::WriteShard(pb::WriteShard {
                db: "db".into(),
                rp: "autogen".into(),
                shard_id,
                series,
            })
        };
        let r = run(
            &mut t,
            w(id + 7, vec![series("m#!~#v", vec![1], vec![1.0])]),
        );
        assert!(r.error.contains("not found"), "{r:?}");
        let r = run(
            &mut t,
            w(
                id,
                vec![
                    series("m,host=a#!~#v", vec![1, 2, 3], vec![1.0, f64::NAN, 3.0]),
                    series("no separator", vec![1], vec![1.0]),
                    series("m#!~#v", vec![1, 2], vec![1.0]),
                    pb::SeriesValues {
                        key: "m,host=a#!~#v".into(),
                        timestamps: vec![9],
                        integers: vec![9],
                        ..Default::default()
                    },
                ],
            ),
        );
        assert_eq!((r.written, r.dropped), (2, 1 + 1 + 2 + 1), "{r:?}");
        let got = t.view().scan("db", "", "m", i64::MIN, i64::MAX).unwrap();
        assert_eq!(
            got["m,host=a"]["v"],
            vec![(1, FieldValue::Float(1.0)), (3, FieldValue::Float(3.0))]
        );
    }

    #[test]
    fn exports_hold_exactly_the_range_and_later_files_win() {
        let d = tempfile::tempdir().unwrap();
        let mut t = Tsdb::open(d.path().join("tsdb")).unwrap();
        run(
            &mut t,
            Cmd::CreateDatabase(pb::CreateDatabase { name: "db".into() }),
        );
        let id = t.meta_mut().shard_for("db", "", 0).unwrap();
        let write = |t: &mut Tsdb, ts: Vec<i64>, v: f64| {
            let n = ts.len();
            run(
                t,
                Cmd::WriteShard(pb::WriteShard {
                    db: "db".into(),
                    rp: "autogen".into(),
                    shard_id: id,
                    series: vec![series("m#!~#v", ts, vec![v; n])],
                }),
            )
        };
        write(&mut t, (0..1000).collect(), 1.0);
        t.flush_all().unwrap();
        write(&mut t, vec![500], 2.0);
        let (db, rp, files) = t.shard_files(id).unwrap().unwrap();
        assert_eq!(
            (db.as_str(), rp.as_str(), files.len()),
            ("db", "autogen", 2)
        );
        let out = t.scratch_path("export");
        let m = crate::tsdb::shard::write_merged(&files, &out, 100, 599).unwrap();
        assert_eq!(m.values, 500);
        let r = crate::tsdb::tsm::TsmReader::open(&out).unwrap();
        let (ts, v) = r.read("m#!~#v").unwrap().unwrap();
        assert_eq!((ts[0], ts[499]), (100, 599));
        let crate::tsdb::tsm::Values::Float(v) = v else {
            panic!("floats")
        };
        assert_eq!(
            (v[399], v[400], v[401]),
            (1.0, 2.0, 1.0),
            "the later file wins"
        );
        let empty = t.scratch_path("export");
        assert_eq!(
            crate::tsdb::shard::write_merged(&files, &empty, 5000, 6000)
                .unwrap()
                .values,
            0
        );
    }
}
