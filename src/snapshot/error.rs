//! Errors of the snapshot layer. Every variant says what failed and where
//! (which file, which snapshot), so an operator can act on the message alone.

use std::io;
use std::path::PathBuf;

/// A boxed error returned by a state machine's snapshot hooks.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a meta table (`__raft_snapshot_meta`) could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetaTableError {
    /// Fewer bytes than the fixed framing needs.
    #[error("meta table is {len} bytes, shorter than the {min}-byte framing")]
    TooShort {
        /// Bytes present.
        len: usize,
        /// Bytes the framing needs at least.
        min: usize,
    },
    /// The first 8 bytes are not `RSNAPMT1`.
    #[error("bad magic {found:02x?}, expected \"RSNAPMT1\"")]
    BadMagic {
        /// The 8 bytes found.
        found: [u8; 8],
    },
    /// The length field does not match the bytes present.
    #[error("length field says {declared} payload bytes but {actual} are present")]
    LengthMismatch {
        /// Payload length in the header.
        declared: u64,
        /// Payload bytes actually present.
        actual: u64,
    },
    /// The trailing crc32c does not match the payload.
    #[error("crc32c mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// The crc stored after the payload.
        stored: u32,
        /// The crc computed over the payload.
        computed: u32,
    },
    /// The payload is not a valid `SnapshotMetaTable` protobuf.
    #[error("payload does not decode as SnapshotMetaTable: {0}")]
    Decode(String),
    /// The table has no `meta` message.
    #[error("the table has no snapshot meta")]
    MissingMeta,
    /// `last_included_index` is 0, which no raft snapshot can have.
    #[error("last_included_index is 0")]
    ZeroIndex,
    /// A file name is not a relative path of normal components.
    #[error("bad file name {name:?}: {reason}")]
    BadFileName {
        /// The offending name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two entries share a name.
    #[error("duplicate file name {0:?}")]
    DuplicateName(String),
    /// The file is larger than any meta table we write.
    #[error("meta table is {len} bytes, over the {max}-byte limit")]
    TooLarge {
        /// Size found.
        len: u64,
        /// The limit.
        max: u64,
    },
}

/// A file of a snapshot that failed verification, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFile {
    /// The file's name in the meta table.
    pub name: String,
    /// What is wrong with it.
    pub problem: FileProblem,
}

/// What is wrong with a snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    /// The file is listed but absent.
    Missing,
    /// The file's size differs from the meta table's.
    SizeMismatch {
        /// Size in the meta table.
        expected: u64,
        /// Size on disk.
        actual: u64,
    },
    /// The file's crc32c differs from the meta table's.
    CrcMismatch {
        /// crc32c in the meta table.
        expected: u32,
        /// crc32c of the bytes on disk.
        actual: u32,
    },
    /// The file could not be read.
    Unreadable(String),
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileProblem::Missing => write!(f, "missing"),
            FileProblem::SizeMismatch { expected, actual } => write!(
                f,
                "size {actual} bytes, recorded {expected} (truncated or extended)"
            ),
            FileProblem::CrcMismatch { expected, actual } => {
                write!(f, "crc32c {actual:#010x}, recorded {expected:#010x}")
            }
            FileProblem::Unreadable(e) => write!(f, "unreadable: {e}"),
        }
    }
}

impl std::fmt::Display for BadFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.problem)
    }
}

/// An error of the snapshot layer.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// An I/O operation on a path failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("fsync", "rename", ...).
        op: &'static str,
        /// The path it was done on.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A meta table on disk does not decode.
    #[error("meta table {path}: {source}")]
    MetaTable {
        /// The meta table file (or snapshot directory).
        path: PathBuf,
        /// Why it does not decode.
        #[source]
        source: MetaTableError,
    },
    /// A file name given to a writer or reader is not acceptable.
    #[error("file name {name:?} rejected: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The operation conflicts with one already running.
    #[error("snapshot executor busy: {0}")]
    Busy(&'static str),
    /// A snapshot writer is already open on this storage.
    #[error("a snapshot writer is already open in {0}")]
    WriterActive(PathBuf),
    /// The snapshot being committed is not newer than the latest one.
    #[error("snapshot {index} is not newer than the latest snapshot {latest}")]
    Stale {
        /// Index of the snapshot being committed.
        index: u64,
        /// Index of the latest snapshot.
        latest: u64,
    },
    /// No snapshot with this index is available.
    #[error("no snapshot at index {0}")]
    NotFound(u64),
    /// The state machine's save or load hook failed.
    #[error("state machine {op} of snapshot {index} failed: {source}")]
    StateMachine {
        /// "save" or "load".
        op: &'static str,
        /// The snapshot index.
        index: u64,
        /// The state machine's error.
        #[source]
        source: BoxError,
    },
    /// Files of a snapshot do not match its meta table.
    #[error("snapshot {dir} failed verification: {}", list_bad(.bad))]
    Verify {
        /// The snapshot directory.
        dir: PathBuf,
        /// Every bad file.
        bad: Vec<BadFile>,
    },
    /// The raft log does not reach the newest usable snapshot.
    #[error(
        "the newest usable snapshot ends at index {snapshot_index} but the raft log starts at \
         {first_log_index}: entries in between are lost. {hint}"
    )]
    LogGap {
        /// Index of the snapshot that would be loaded (0 = none).
        snapshot_index: u64,
        /// First index the raft log still holds.
        first_log_index: u64,
        /// What the operator can do.
        hint: String,
    },
    /// A concurrency limit of the throttle is reached; retry later.
    #[error("too many {what} (limit {limit}); retry in {retry_after:?}")]
    Throttled {
        /// What is limited.
        what: &'static str,
        /// The limit.
        limit: usize,
        /// When to retry.
        retry_after: std::time::Duration,
    },
    /// A snapshot URI does not parse.
    #[error("bad snapshot uri {uri:?}: {reason}")]
    BadUri {
        /// The URI.
        uri: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Could not connect to the peer serving a snapshot.
    #[error("connect to {peer}: {source}")]
    Connect {
        /// The peer address.
        peer: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// A snapshot RPC failed.
    #[error("{what} from {peer}: {status}")]
    Rpc {
        /// The peer address.
        peer: String,
        /// Which call, and on which file.
        what: String,
        /// The gRPC status.
        status: Box<tonic::Status>,
    },
    /// The remote meta table does not decode.
    #[error("meta table from {peer}: {source}")]
    RemoteMeta {
        /// The peer address.
        peer: String,
        /// Why it does not decode.
        #[source]
        source: MetaTableError,
    },
    /// The peer serves a different snapshot than the install asked for.
    #[error(
        "{peer} serves snapshot {served} but the install is for snapshot {expected}, or their meta tables differ"
    )]
    MetaMismatch {
        /// The peer address.
        peer: String,
        /// Index served.
        served: u64,
        /// Index expected.
        expected: u64,
    },
    /// A fetched file's crc32c does not match the meta table, every attempt.
    #[error(
        "file {file} of snapshot {index} from {peer}: crc32c {actual:#010x}, meta table says {expected:#010x}, after {attempts} fetches"
    )]
    Checksum {
        /// The peer address.
        peer: String,
        /// Snapshot index.
        index: u64,
        /// The file.
        file: String,
        /// crc32c in the meta table.
        expected: u32,
        /// crc32c of the bytes received.
        actual: u32,
        /// How many times it was fetched.
        attempts: u32,
    },
    /// The peer broke the transfer protocol (gap, overrun, bad chunk).
    #[error("file {file} from {peer}: {reason}")]
    Protocol {
        /// The peer address.
        peer: String,
        /// The file.
        file: String,
        /// What went wrong.
        reason: String,
    },
    /// No data arrived on a stream for too long.
    #[error("file {file} from {peer}: no data for {after:?}")]
    IdleTimeout {
        /// The peer address.
        peer: String,
        /// The file.
        file: String,
        /// The idle timeout.
        after: std::time::Duration,
    },
    /// The install was cancelled (a newer snapshot, or shutdown).
    #[error("install of snapshot {index} cancelled")]
    Cancelled {
        /// Snapshot index.
        index: u64,
    },
    /// An install this call joined failed.
    #[error("install of snapshot {index} failed: {reason}")]
    InstallFailed {
        /// Snapshot index.
        index: u64,
        /// The error of the install.
        reason: String,
    },
    /// A set of staged files (bulk data by file) is missing or unusable.
    #[error("staged files {id:016x}: {reason}")]
    Staged {
        /// The staging id.
        id: u64,
        /// What is wrong.
        reason: String,
    },
    /// A failpoint injected this error (tests only).
    #[error("injected failure at {0}")]
    Injected(&'static str),
}

fn list_bad(bad: &[BadFile]) -> String {
    bad.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Attaches the operation and path to an `io::Result`.
pub(crate) trait IoContext<T> {
    /// Wraps an I/O error as [`SnapshotError::Io`] naming `op` and `path`.
    fn at(self, op: &'static str, path: &std::path::Path) -> Result<T, SnapshotError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, op: &'static str, path: &std::path::Path) -> Result<T, SnapshotError> {
        self.map_err(|source| SnapshotError::Io {
            op,
            path: path.to_path_buf(),
            source,
        })
    }
}
