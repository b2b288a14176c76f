//! The raft log on disk: a segmented, append-only write-ahead log (the shape
//! of etcd's wal and hashicorp's raft-wal) holding entries, the hard state,
//! the conf state and the truncation point, in one file stream so that one
//! `fdatasync` makes a whole Ready durable.
//!
//! ```text
//! <dir>/00000000000000000001.wal   segment: b"RSNAPWAL" | u32 version (LE) | record*
//! record: u32 payload length (LE) | u32 crc32c(kind ‖ payload) (LE) | u8 kind | payload
//! ```
//!
//! Kinds: an entry (`index u64 | term u64 | raft Entry protobuf`), the hard
//! state, the conf state (raft protobufs), `Compact(index, term)` (entries up
//! to `index` dropped) and `Reset(index, term)` (every entry dropped: an
//! installed snapshot). Replaying the records in order rebuilds the state: an
//! entry at index `i` drops every entry at `i` and after (a new leader's
//! conflicting tail), later metadata records win.
//!
//! Durability: records are written with `pwrite` as they come; [`Wal::sync`]
//! (`fdatasync`) is the commit point — nothing is acknowledged before it. A
//! segment is rotated only after it is synced; the new one starts with a
//! checkpoint (truncation point, hard state, conf state), is fsynced, and the
//! directory is fsynced. A torn record at the end of the newest segment (a
//! crash mid-write) is cut off at open; a bad record anywhere else is
//! corruption and the store refuses to open, naming the file and offset.
//! Segments whose entries are all compacted away are deleted after the
//! `Compact` record that covers them is synced.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState};
use tracing::{info, warn};

use crate::raft::error::RaftError;

const MAGIC: &[u8; 8] = b"RSNAPWAL";
const VERSION: u32 = 1;
const SEGMENT_HEADER: u64 = 12;
const RECORD_HEADER: u64 = 9;
/// The largest record a replay accepts (an entry is at most a few MiB).
const MAX_RECORD: u64 = 1 << 30;
/// Segment size past which the log rotates (after a sync).
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    Entry = 1,
    HardState = 2,
    ConfState = 3,
    Compact = 4,
    Reset = 5,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Entry,
            2 => Self::HardState,
            3 => Self::ConfState,
            4 => Self::Compact,
            5 => Self::Reset,
            _ => return None,
        })
    }
}

/// Where an entry's protobuf bytes are.
#[derive(Debug, Clone, Copy)]
struct Loc {
    seg: u64,
    offset: u64,
    len: u32,
    term: u64,
}

struct Segment {
    seq: u64,
    path: PathBuf,
    file: Arc<File>,
    size: u64,
    /// Highest entry index written in it (0: none).
    max_index: u64,
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RaftError + use<> {
    let path = path.to_path_buf();
    move |source| RaftError::Store { what, path, source }
}

/// Appends a record whose payload `fill` writes straight into `buf` (no
/// intermediate copy: entries are up to a few MiB and this runs on the
/// raft loop).
fn put_record_with(
    buf: &mut Vec<u8>,
    kind: Kind,
    fill: impl FnOnce(&mut Vec<u8>) -> Result<(), RaftError>,
) -> Result<(), RaftError> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; RECORD_HEADER as usize]);
    fill(buf)?;
    let payload = &buf[start + RECORD_HEADER as usize..];
    let len = payload.len() as u32;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&[kind as u8]), payload);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    buf[start + 8] = kind as u8;
    Ok(())
}

/// Appends a record holding a protobuf message.
fn put_pb(buf: &mut Vec<u8>, kind: Kind, m: &impl protobuf::Message) -> Result<(), RaftError> {
    put_record_with(buf, kind, |b| {
        m.write_to_vec(b)
            .map_err(|e| RaftError::Internal(format!("cannot encode a raft record: {e}")))
    })
}

fn put_record(buf: &mut Vec<u8>, kind: Kind, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut crc = crc32c::crc32c(&[kind as u8]);
    for p in parts {
        crc = crc32c::crc32c_append(crc, p);
    }
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.push(kind as u8);
    for p in parts {
        buf.extend_from_slice(p);
    }
}

fn pair(a: u64, b: u64) -> [u8; 16] {
    let mut x = [0u8; 16];
    x[..8].copy_from_slice(&a.to_le_bytes());
    x[8..].copy_from_slice(&b.to_le_bytes());
    x
}

fn read_pair(p: &[u8]) -> Option<(u64, u64)> {
    let a = u64::from_le_bytes(p.get(..8)?.try_into().ok()?);
    let b = u64::from_le_bytes(p.get(8..16)?.try_into().ok()?);
    Some((a, b))
}

/// fsyncs a directory (a new or removed file's name is durable after it).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), RaftError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync directory", dir))
}

/// The replay state while a log is opened.
#[derive(Default)]
struct Replay {
    map: BTreeMap<u64, Loc>,
    trunc: (u64, u64),
    hs: HardState,
    cs: ConfState,
}

/// A record that does not verify, and where.
struct BadRecord {
    offset: u64,
    reason: String,
}

/// The write-ahead log. Not thread-safe by itself: the log store wraps it in
/// a mutex.
pub struct Wal {
    dir: PathBuf,
    segments: Vec<Segment>,
    entries: VecDeque<Loc>,
    trunc_index: u64,
    trunc_term: u64,
    hs: HardState,
    cs: ConfState,
    segment_bytes: u64,
    /// Writes made so far (a counter), and how many of them a completed
    /// `fdatasync` covers: a flusher returns only once its own writes are
    /// synced, even while another flusher's sync is still in flight.
    written: u64,
    synced: u64,
}

impl Wal {
    /// Opens (creating) the log in `dir`, replaying every segment.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<Self, RaftError> {
        std::fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        let mut seqs: Vec<u64> = std::fs::read_dir(dir)
            .map_err(io_err("list", dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".wal")?.parse::<u64>().ok()
            })
            .collect();
        seqs.sort_unstable();
        if seqs.is_empty() && (dir.join("conf").exists() || dir.join("db").exists()) {
            // Never start over an older log format as if it were empty: the
            // node would forget its vote and entries it acknowledged.
            return Err(RaftError::Corrupt {
                what: format!("raft log in {}", dir.display()),
                reason: "it is in the old sled format, which this version does not read; \
                         remove this node from the cluster (DELETE /members/<id>), empty its \
                         data directory and add it back (--join): it installs a snapshot"
                    .into(),
            });
        }
        let mut r = Replay::default();
        let mut segments = Vec::new();
        let count = seqs.len();
        for (i, seq) in seqs.into_iter().enumerate() {
            let last = i + 1 == count;
            let path = dir.join(format!("{seq:020}.wal"));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_err("open segment", &path))?;
            let len = file
                .metadata()
                .map_err(io_err("stat segment", &path))?
                .len();
            let mut header = [0u8; SEGMENT_HEADER as usize];
            let header_ok = len >= SEGMENT_HEADER
                && file.read_exact_at(&mut header, 0).is_ok()
                && &header[..8] == MAGIC
                && header[8..12] == VERSION.to_le_bytes();
            if !header_ok {
                if last {
                    // Created but not yet synced when the process stopped:
                    // nothing in it was ever acknowledged.
                    warn!(path = %path.display(), "removing a half-created raft log segment");
                    std::fs::remove_file(&path).map_err(io_err("remove segment", &path))?;
                    sync_dir(dir)?;
                    continue;
                }
                return Err(RaftError::Corrupt {
                    what: format!("raft log segment {}", path.display()),
                    reason: "bad segment header".into(),
                });
            }
            let mut seg = Segment {
                seq,
                path,
                file: Arc::new(file),
                size: len,
                max_index: 0,
            };
            match replay_segment(&mut seg, len, &mut r)? {
                None => {}
                Some(bad) if last => {
                    warn!(
                        path = %seg.path.display(),
                        offset = bad.offset,
                        reason = %bad.reason,
                        "cutting a torn record off the end of the raft log (never acknowledged)"
                    );
                    seg.file
                        .set_len(bad.offset)
                        .and_then(|()| seg.file.sync_all())
                        .map_err(io_err("truncate torn tail", &seg.path))?;
                    seg.size = bad.offset;
                }
                Some(bad) => {
                    return Err(RaftError::Corrupt {
                        what: format!(
                            "raft log segment {} at offset {}",
                            seg.path.display(),
                            bad.offset
                        ),
                        reason: bad.reason,
                    });
                }
            }
            segments.push(seg);
        }
        let (trunc_index, trunc_term) = r.trunc;
        let mut entries = VecDeque::with_capacity(r.map.len());
        for (expect, (i, loc)) in (trunc_index + 1..).zip(r.map.range(trunc_index + 1..)) {
            if *i != expect {
                return Err(RaftError::Corrupt {
                    what: format!("raft log in {}", dir.display()),
                    reason: format!("entries {expect}..{i} are missing"),
                });
            }
            entries.push_back(*loc);
        }
        let mut wal = Self {
            dir: dir.to_path_buf(),
            segments,
            entries,
            trunc_index,
            trunc_term,
            hs: r.hs,
            cs: r.cs,
            segment_bytes: segment_bytes.max(SEGMENT_HEADER + 1),
            written: 0,
            synced: 0,
        };
        if wal.segments.is_empty() {
            wal.new_segment(1)?;
        }
        Ok(wal)
    }

    fn active(&self) -> &Segment {
        // `open` always leaves at least one segment.
        &self.segments[self.segments.len() - 1]
    }

    /// Creates segment `seq` starting with a checkpoint, fsyncs it and the
    /// directory, and makes it the active one.
    fn new_segment(&mut self, seq: u64) -> Result<(), RaftError> {
        let path = self.dir.join(format!("{seq:020}.wal"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err("create segment", &path))?;
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&VERSION.to_le_bytes());
        put_record(
            &mut buf,
            Kind::Compact,
            &[&pair(self.trunc_index, self.trunc_term)],
        );
        put_pb(&mut buf, Kind::HardState, &self.hs)?;
        put_pb(&mut buf, Kind::ConfState, &self.cs)?;
        let res = file
            .write_all_at(&buf, 0)
            .and_then(|()| file.sync_all())
            .map_err(io_err("write segment header", &path))
            .and_then(|()| {
                fail::fail_point!("wal::after_segment_created", |_| Err(RaftError::Internal(
                    "failpoint wal::after_segment_created".into()
                )));
                sync_dir(&self.dir)
            });
        if let Err(e) = res {
            // A segment that is not used must not stay: at the next start
            // its checkpoint (this moment's hard and conf state) would be
            // replayed after, and so over, the newer records that go on
            // into the current segment.
            let _ = std::fs::remove_file(&path);
            let _ = sync_dir(&self.dir);
            return Err(e);
        }
        self.segments.push(Segment {
            seq,
            path,
            file: Arc::new(file),
            size: buf.len() as u64,
            max_index: 0,
        });
        Ok(())
    }

    /// Writes `buf` at the end of the active segment. On failure the segment
    /// is cut back to its previous size (no torn record left behind).
    fn write(&mut self, buf: &[u8]) -> Result<u64, RaftError> {
        let n = self.segments.len() - 1;
        let seg = &mut self.segments[n];
        let at = seg.size;
        fail::fail_point!("wal::write", |_| Err(RaftError::Store {
            what: "append",
            path: seg.path.clone(),
            source: std::io::Error::from_raw_os_error(28),
        }));
        if let Err(e) = seg.file.write_all_at(buf, at) {
            let _ = seg.file.set_len(at);
            return Err(io_err("append", &seg.path)(e));
        }
        seg.size += buf.len() as u64;
        self.written += 1;
        Ok(at)
    }

    /// Appends entries (those at or below the truncation point are skipped),
    /// replacing any conflicting tail.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), RaftError> {
        let entries: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.index > self.trunc_index)
            .collect();
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index > self.last_index() + 1 {
            return Err(RaftError::Internal(format!(
                "append at {} leaves a gap after {}",
                first.index,
                self.last_index()
            )));
        }
        let mut buf = Vec::with_capacity(entries.iter().map(|e| e.data.len() + 64).sum());
        let mut locs = Vec::with_capacity(entries.len());
        for e in &entries {
            let at = buf.len() as u64 + RECORD_HEADER + 16;
            put_record_with(&mut buf, Kind::Entry, |b| {
                b.extend_from_slice(&pair(e.index, e.term));
                e.write_to_vec(b).map_err(|err| {
                    RaftError::Internal(format!("cannot encode entry {}: {err}", e.index))
                })
            })?;
            let len = (buf.len() as u64 - at) as u32;
            locs.push((e.index, at, len, e.term));
        }
        let base = self.write(&buf)?;
        let n = self.segments.len() - 1;
        let seq = self.segments[n].seq;
        let keep = (first.index - self.trunc_index - 1) as usize;
        self.entries.truncate(keep);
        for (index, at, len, term) in locs {
            self.entries.push_back(Loc {
                seg: seq,
                offset: base + at,
                len,
                term,
            });
            self.segments[n].max_index = self.segments[n].max_index.max(index);
        }
        Ok(())
    }

    /// Stores the hard state.
    pub fn set_hard_state(&mut self, hs: &HardState) -> Result<(), RaftError> {
        let mut buf = Vec::new();
        put_pb(&mut buf, Kind::HardState, hs)?;
        self.write(&buf)?;
        self.hs = hs.clone();
        Ok(())
    }

    /// Stores the conf state.
    pub fn set_conf_state(&mut self, cs: &ConfState) -> Result<(), RaftError> {
        let mut buf = Vec::new();
        put_pb(&mut buf, Kind::ConfState, cs)?;
        self.write(&buf)?;
        self.cs = cs.clone();
        Ok(())
    }

    /// Replaces the log with an installed snapshot's position: every entry
    /// dropped, truncated at (index, term), conf state set, commit raised.
    pub fn apply_snapshot(
        &mut self,
        index: u64,
        term: u64,
        cs: &ConfState,
    ) -> Result<(), RaftError> {
        let mut hs = self.hs.clone();
        hs.commit = hs.commit.max(index);
        hs.term = hs.term.max(term);
        let mut buf = Vec::new();
        put_record(&mut buf, Kind::Reset, &[&pair(index, term)]);
        put_pb(&mut buf, Kind::HardState, &hs)?;
        put_pb(&mut buf, Kind::ConfState, cs)?;
        self.write(&buf)?;
        // Every entry written so far is dropped: no segment holds one that
        // is still needed (they go once the Reset is synced).
        for s in &mut self.segments {
            s.max_index = s.max_index.min(index);
        }
        self.entries.clear();
        self.trunc_index = index;
        self.trunc_term = term;
        self.hs = hs;
        self.cs = cs.clone();
        Ok(())
    }

    /// Drops entries before `index` (a `Compact` record, synced), then
    /// deletes the segments that hold only dropped entries. Returns how
    /// many entries were dropped.
    pub fn compact(&mut self, index: u64) -> Result<u64, RaftError> {
        let Some((trunc, term)) = self.write_compact(index)? else {
            return Ok(0);
        };
        self.sync()?;
        self.finish_compact(trunc, term)
    }

    /// The first half of [`compact`](Self::compact): writes the `Compact`
    /// record (not synced yet); `None` if there is nothing to drop.
    pub fn write_compact(&mut self, index: u64) -> Result<Option<(u64, u64)>, RaftError> {
        if index <= self.trunc_index + 1 {
            return Ok(None);
        }
        if index > self.last_index() + 1 {
            return Err(RaftError::Internal(format!(
                "compact to {index} past the last index {}",
                self.last_index()
            )));
        }
        let new_trunc = index - 1;
        let term = self
            .term_of(new_trunc)
            .ok_or_else(|| RaftError::Internal(format!("entry {new_trunc} is not in the log")))?;
        let mut buf = Vec::new();
        put_record(&mut buf, Kind::Compact, &[&pair(new_trunc, term)]);
        self.write(&buf)?;
        Ok(Some((new_trunc, term)))
    }

    /// The second half, once the `Compact` record is synced: drops the
    /// entries and the segments that hold nothing else. Returns how many
    /// entries were dropped (none if an installed snapshot got there first).
    pub fn finish_compact(&mut self, new_trunc: u64, term: u64) -> Result<u64, RaftError> {
        if new_trunc <= self.trunc_index {
            return Ok(0);
        }
        let dropped = (new_trunc - self.trunc_index).min(self.entries.len() as u64);
        self.entries.drain(..dropped as usize);
        self.trunc_index = new_trunc;
        self.trunc_term = term;
        fail::fail_point!("wal::before_segments_removed", |_| Err(
            RaftError::Internal("failpoint wal::before_segments_removed".into())
        ));
        self.remove_obsolete_segments()?;
        Ok(dropped)
    }

    fn remove_obsolete_segments(&mut self) -> Result<(), RaftError> {
        let mut removed = 0;
        while self.segments.len() > 1 && self.segments[0].max_index <= self.trunc_index {
            let seg = self.segments.remove(0);
            std::fs::remove_file(&seg.path).map_err(io_err("remove segment", &seg.path))?;
            removed += 1;
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
            info!(removed, "raft log segments removed after compaction");
        }
        Ok(())
    }

    /// What a sync outside the lock must do to cover every record written
    /// so far: the file to `fdatasync`, its path, and the write count to
    /// pass to [`mark_synced`](Self::mark_synced) once it returned; `None`
    /// if a completed sync already covers them. Appends go on meanwhile; a
    /// rotation syncs the old segment itself first, so later records are
    /// never stranded unsynced in a rotated-out segment.
    pub fn sync_target(&self) -> Option<(Arc<File>, PathBuf, u64)> {
        if self.synced >= self.written {
            return None;
        }
        let seg = self.active();
        Some((seg.file.clone(), seg.path.clone(), self.written))
    }

    /// Records that a sync covering the first `written` writes completed.
    pub fn mark_synced(&mut self, written: u64) {
        self.synced = self.synced.max(written);
    }

    /// Rotates the active segment if it is full (syncing it first).
    pub fn maybe_rotate(&mut self) -> Result<(), RaftError> {
        if self.active().size >= self.segment_bytes {
            self.sync()?;
        }
        Ok(())
    }

    /// Makes every record written so far durable (`fdatasync`), then rotates
    /// the active segment if it is full.
    pub fn sync(&mut self) -> Result<(), RaftError> {
        if self.synced < self.written {
            let seg = self.active();
            fail::fail_point!("wal::sync", |_| Err(RaftError::Store {
                what: "fdatasync",
                path: seg.path.clone(),
                source: std::io::Error::from_raw_os_error(5),
            }));
            seg.file
                .sync_data()
                .map_err(io_err("fdatasync", &seg.path))?;
            self.synced = self.written;
        }
        if self.active().size >= self.segment_bytes {
            let next = self.active().seq + 1;
            self.new_segment(next)?;
            // Segments made obsolete by an installed snapshot or a
            // compaction can go now that the checkpoint is durable.
            self.remove_obsolete_segments()?;
        }
        Ok(())
    }

    /// Hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hs
    }

    /// Conf state.
    pub fn conf_state(&self) -> &ConfState {
        &self.cs
    }

    /// First index held (truncation index + 1).
    pub fn first_index(&self) -> u64 {
        self.trunc_index + 1
    }

    /// Last index held (the truncation index when empty).
    pub fn last_index(&self) -> u64 {
        self.trunc_index + self.entries.len() as u64
    }

    /// The truncation point (index, term).
    pub fn truncated(&self) -> (u64, u64) {
        (self.trunc_index, self.trunc_term)
    }

    /// Term of entry `idx`, if held (the truncation point included).
    pub fn term_of(&self, idx: u64) -> Option<u64> {
        if idx == self.trunc_index {
            return Some(self.trunc_term);
        }
        if idx < self.trunc_index || idx > self.last_index() {
            return None;
        }
        self.entries
            .get((idx - self.trunc_index - 1) as usize)
            .map(|l| l.term)
    }

    /// Reads entry `idx` (which must be held).
    pub fn entry(&self, idx: u64) -> Result<Entry, RaftError> {
        let loc = idx
            .checked_sub(self.trunc_index + 1)
            .and_then(|i| self.entries.get(i as usize))
            .ok_or_else(|| RaftError::Internal(format!("entry {idx} is not in the log")))?;
        let seg = self
            .segments
            .iter()
            .find(|s| s.seq == loc.seg)
            .ok_or_else(|| RaftError::Corrupt {
                what: format!("raft log entry {idx}"),
                reason: format!("its segment {} is gone", loc.seg),
            })?;
        let mut buf = vec![0u8; loc.len as usize];
        seg.file
            .read_exact_at(&mut buf, loc.offset)
            .map_err(io_err("read entry", &seg.path))?;
        Entry::parse_from_bytes(&buf).map_err(|e| RaftError::Corrupt {
            what: format!("raft log entry {idx} in {}", seg.path.display()),
            reason: e.to_string(),
        })
    }

    /// Bytes the protobuf of entry `idx` takes (for size limits).
    pub fn entry_len(&self, idx: u64) -> Option<u64> {
        idx.checked_sub(self.trunc_index + 1)
            .and_then(|i| self.entries.get(i as usize))
            .map(|l| u64::from(l.len))
    }
}

/// Replays one segment's records into `r`; returns the first bad record.
fn replay_segment(
    seg: &mut Segment,
    len: u64,
    r: &mut Replay,
) -> Result<Option<BadRecord>, RaftError> {
    // Read the whole segment at once (segments are bounded in size).
    let mut data = vec![0u8; len as usize];
    seg.file
        .read_exact_at(&mut data, 0)
        .map_err(io_err("read segment", &seg.path))?;
    let mut at = SEGMENT_HEADER;
    while at < len {
        let bad = |reason: &str| {
            Ok(Some(BadRecord {
                offset: at,
                reason: reason.to_string(),
            }))
        };
        if len - at < RECORD_HEADER {
            return bad("record header cut short");
        }
        let h = &data[at as usize..(at + RECORD_HEADER) as usize];
        let plen = u64::from(u32::from_le_bytes([h[0], h[1], h[2], h[3]]));
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let kind_byte = h[8];
        if plen > MAX_RECORD || len - at - RECORD_HEADER < plen {
            return bad("record cut short");
        }
        let start = (at + RECORD_HEADER) as usize;
        let payload = &data[start..start + plen as usize];
        let actual = crc32c::crc32c_append(crc32c::crc32c(&[kind_byte]), payload);
        if actual != crc {
            return bad(&format!("crc32c {actual:#010x}, record says {crc:#010x}"));
        }
        let Some(kind) = Kind::from_u8(kind_byte) else {
            return bad(&format!("unknown record kind {kind_byte}"));
        };
        let corrupt = |what: &str| RaftError::Corrupt {
            what: format!("raft log segment {} at offset {at}", seg.path.display()),
            reason: what.to_string(),
        };
        match kind {
            Kind::Entry => {
                let (index, term) = read_pair(payload).ok_or_else(|| corrupt("short entry"))?;
                if index > r.trunc.0 {
                    r.map.split_off(&index);
                    r.map.insert(
                        index,
                        Loc {
                            seg: seg.seq,
                            offset: at + RECORD_HEADER + 16,
                            len: (plen - 16) as u32,
                            term,
                        },
                    );
                }
                seg.max_index = seg.max_index.max(index);
            }
            Kind::HardState => {
                r.hs = HardState::parse_from_bytes(payload)
                    .map_err(|e| corrupt(&format!("hard state: {e}")))?;
            }
            Kind::ConfState => {
                r.cs = ConfState::parse_from_bytes(payload)
                    .map_err(|e| corrupt(&format!("conf state: {e}")))?;
            }
            Kind::Compact => {
                let (index, term) = read_pair(payload).ok_or_else(|| corrupt("short compact"))?;
                if index > r.trunc.0 {
                    r.trunc = (index, term);
                    r.map = r.map.split_off(&(index + 1));
                }
            }
            Kind::Reset => {
                let (index, term) = read_pair(payload).ok_or_else(|| corrupt("short reset"))?;
                r.trunc = (index, term);
                r.map.clear();
            }
        }
        at += RECORD_HEADER + plen;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(index: u64, term: u64, size: usize) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; size].into(),
            ..Default::default()
        }
    }

    fn ents(lo: u64, hi: u64, term: u64) -> Vec<Entry> {
        (lo..=hi).map(|i| ent(i, term, 100)).collect()
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "wal"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn appends_conflicts_and_metadata_survive_reopen() {
        let t = tempfile::tempdir().unwrap();
        let mut w = Wal::open(t.path(), DEFAULT_SEGMENT_BYTES).unwrap();
        w.append(&ents(1, 10, 1)).unwrap();
        w.append(&[ent(6, 2, 50), ent(7, 2, 50)]).unwrap();
        let hs = HardState {
            term: 2,
            vote: 3,
            commit: 7,
            ..Default::default()
        };
        w.set_hard_state(&hs).unwrap();
        w.set_conf_state(&ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        })
        .unwrap();
        w.sync().unwrap();
        drop(w);
        let w = Wal::open(t.path(), DEFAULT_SEGMENT_BYTES).unwrap();
        assert_eq!((w.first_index(), w.last_index()), (1, 7));
        assert_eq!(w.term_of(5), Some(1));
        assert_eq!(w.term_of(7), Some(2));
        assert_eq!(w.entry(6).unwrap().data.len(), 50);
        assert_eq!(w.entry(3).unwrap().data.len(), 100);
        assert_eq!(w.hard_state(), &hs);
        assert_eq!(w.conf_state().voters, vec![1, 2, 3]);
    }

    #[test]
    fn rotation_compaction_and_snapshot_remove_old_segments() {
        let t = tempfile::tempdir().unwrap();
        let mut w = Wal::open(t.path(), 4096).unwrap();
        for i in 1..=200 {
            w.append(&[ent(i, 1, 100)]).unwrap();
            w.sync().unwrap();
        }
        let before = segment_files(t.path()).len();
        assert!(before > 3, "{before} segments");
        assert_eq!(w.compact(150).unwrap(), 149);
        let after = segment_files(t.path()).len();
        assert!(after < before, "{after} < {before}");
        drop(w);
        let mut w = Wal::open(t.path(), 4096).unwrap();
        assert_eq!((w.first_index(), w.last_index()), (150, 200));
        assert_eq!(w.term_of(149), Some(1));
        assert_eq!(w.entry(150).unwrap().index, 150);
        w.apply_snapshot(
            500,
            3,
            &ConfState {
                voters: vec![1],
                ..Default::default()
            },
        )
        .unwrap();
        w.sync().unwrap();
        for i in 501..=600 {
            w.append(&[ent(i, 3, 100)]).unwrap();
            w.sync().unwrap();
        }
        drop(w);
        let w = Wal::open(t.path(), 4096).unwrap();
        assert_eq!((w.first_index(), w.last_index()), (501, 600));
        assert_eq!(w.hard_state().commit, 500);
        assert!(segment_files(t.path()).len() <= 5, "old segments removed");
    }

    #[test]
    fn a_torn_tail_is_cut_and_a_bad_middle_record_refuses_to_open() {
        let t = tempfile::tempdir().unwrap();
        let mut w = Wal::open(t.path(), DEFAULT_SEGMENT_BYTES).unwrap();
        w.append(&ents(1, 5, 1)).unwrap();
        w.sync().unwrap();
        drop(w);
        let seg = segment_files(t.path()).pop().unwrap();
        let full = std::fs::metadata(&seg).unwrap().len();
        // Cut in the middle of the last record: entries 1..4 remain.
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(full - 20).unwrap();
        drop(f);
        let mut w = Wal::open(t.path(), DEFAULT_SEGMENT_BYTES).unwrap();
        assert_eq!(w.last_index(), 4);
        w.append(&ents(5, 6, 1)).unwrap();
        w.sync().unwrap();
        drop(w);
        let w = Wal::open(t.path(), DEFAULT_SEGMENT_BYTES).unwrap();
        assert_eq!(w.last_index(), 6);
        drop(w);
        // A flipped byte inside a synced, non-final segment is corruption.
        let mut w = Wal::open(t.path(), 300).unwrap();
        w.append(&ents(7, 20, 1)).unwrap();
        w.sync().unwrap();
        w.append(&ents(21, 22, 1)).unwrap();
        w.sync().unwrap();
        drop(w);
        let files = segment_files(t.path());
        assert!(files.len() >= 2);
        let mut bytes = std::fs::read(&files[0]).unwrap();
        bytes[40] ^= 0xff;
        std::fs::write(&files[0], &bytes).unwrap();
        let err = Wal::open(t.path(), 300).err().expect("refused");
        assert!(
            err.to_string().contains("crc32c") || err.to_string().contains("decode"),
            "{err}"
        );
    }

    #[test]
    fn an_old_sled_log_is_refused_not_mistaken_for_an_empty_one() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("conf"), b"sled").unwrap();
        let err = Wal::open(t.path(), DEFAULT_SEGMENT_BYTES)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("old sled format"), "{err}");
    }

    /// A rotation that fails once its new segment is on disk must not leave
    /// that segment behind: its checkpoint would be replayed over the newer
    /// hard state written into the old segment afterwards.
    #[cfg(feature = "failpoints")]
    #[test]
    fn a_failed_rotation_leaves_no_segment_that_would_replay_stale_state() {
        let t = tempfile::tempdir().unwrap();
        let mut w = Wal::open(t.path(), 300).unwrap();
        w.append(&ents(1, 2, 1)).unwrap();
        let before = segment_files(t.path()).len();
        fail::cfg("wal::after_segment_created", "return").unwrap();
        w.append(&ents(3, 10, 1)).unwrap();
        assert!(w.sync().is_err(), "the rotation fails");
        fail::remove("wal::after_segment_created");
        assert_eq!(segment_files(t.path()).len(), before, "no new segment left");
        // The node goes on (or restarts): newer state lands in the old segment.
        let hs = HardState {
            term: 5,
            vote: 2,
            commit: 10,
            ..Default::default()
        };
        w.set_hard_state(&hs).unwrap();
        w.sync().unwrap();
        drop(w);
        let w = Wal::open(t.path(), DEFAULT_SEGMENT_BYTES).unwrap();
        assert_eq!(w.hard_state(), &hs);
        assert_eq!(w.last_index(), 10);
    }

    /// Two flushers (the sync thread and a compaction): the second must not
    /// return "synced" while the first one's fdatasync is still running.
    #[test]
    fn a_sync_in_flight_does_not_count_for_another_flusher() {
        let t = tempfile::tempdir().unwrap();
        let mut w = Wal::open(t.path(), DEFAULT_SEGMENT_BYTES).unwrap();
        w.append(&ents(1, 3, 1)).unwrap();
        let (file, _, upto) = w.sync_target().expect("unsynced writes");
        // The first flusher has not finished: the second still has work.
        assert!(w.sync_target().is_some());
        file.sync_data().unwrap();
        w.mark_synced(upto);
        assert!(w.sync_target().is_none());
        // A write after the target is not covered by that sync.
        let (_, _, upto) = {
            w.append(&ents(4, 4, 1)).unwrap();
            w.sync_target().expect("the new write")
        };
        w.mark_synced(upto - 1);
        assert!(w.sync_target().is_some());
    }

    #[test]
    fn a_half_created_last_segment_is_dropped() {
        let t = tempfile::tempdir().unwrap();
        let mut w = Wal::open(t.path(), DEFAULT_SEGMENT_BYTES).unwrap();
        w.append(&ents(1, 3, 1)).unwrap();
        w.sync().unwrap();
        drop(w);
        std::fs::write(t.path().join(format!("{:020}.wal", 2)), b"RSN").unwrap();
        let w = Wal::open(t.path(), DEFAULT_SEGMENT_BYTES).unwrap();
        assert_eq!(w.last_index(), 3);
        assert_eq!(segment_files(t.path()).len(), 1);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any cut of the newest segment opens: the log is a prefix of what
        /// was written, and everything synced before the cut point is there.
        #[test]
        fn any_cut_of_the_tail_opens_to_a_prefix(cut in 0u64..4000) {
            let t = tempfile::tempdir().unwrap();
            let mut w = Wal::open(t.path(), DEFAULT_SEGMENT_BYTES).unwrap();
            for i in 1..=30 {
                w.append(&[ent(i, 1, 60 + i as usize)]).unwrap();
            }
            w.sync().unwrap();
            drop(w);
            let seg = segment_files(t.path()).pop().unwrap();
            let full = std::fs::metadata(&seg).unwrap().len();
            let f = OpenOptions::new().write(true).open(&seg).unwrap();
            f.set_len(full.saturating_sub(cut).max(SEGMENT_HEADER)).unwrap();
            drop(f);
            let w = Wal::open(t.path(), DEFAULT_SEGMENT_BYTES).unwrap();
            let last = w.last_index();
            proptest::prop_assert!(last <= 30);
            for i in 1..=last {
                proptest::prop_assert_eq!(w.entry(i).unwrap().data.len(), 60 + i as usize);
            }
        }
    }
}
