//! The snapshot subsystem (DESIGN §2–§3): meta table, local storage with
//! refcounts, writer/reader, and the executor that drives save and load.
//! It knows nothing of raft-rs or of time series.

pub mod bulk;
pub mod copier;
pub mod direct_io;
pub mod error;
pub mod executor;
pub mod file_service;
pub(crate) mod fsutil;
pub mod integrity;
pub mod meta_table;
pub mod reader;
pub mod replicated;
pub mod staging;
pub mod storage;
pub mod throttle;
pub mod writer;
pub mod yield_to_log;

pub use crate::proto::snapshot::{FileMeta, FileSource, SnapshotMeta, SnapshotMetaTable};
pub use bulk::{BulkServer, split_incoming};
pub use copier::{
    AlternateSource, CopierOptions, InstallProgress, LocalFileLookup, ProgressSnapshot,
    RemoteFileCopier, SnapshotUri,
};
pub use error::{BadFile, BoxError, FileProblem, MetaTableError, SnapshotError};
pub use executor::{
    AppliedState, ExecutorOptions, ExecutorStats, Fetched, InstallFailureRecord, InstallOutcome,
    InstallStatus, LiveFile, Phase, SaveOutcome, SharedStateMachine, SnapshotExecutor,
    StateMachine, shared,
};
pub use file_service::{ReaderRegistry, SnapshotFileService};
pub use fsutil::CrcWriter as CrcSink;
pub use reader::{SnapshotReader, verify_dir};
pub use replicated::{ApplyError, ReplicatedStateMachine};
pub use staging::{StageWriter, StagedNeed, StagedSet, StagingArea};
pub use storage::{LocalSnapshotStorage, OpenReport, SnapshotInfo, StorageOptions};
pub use throttle::{SnapshotThrottle, ThrottleOptions};
pub use writer::{SnapshotFileSink, SnapshotWriter};

/// crc32c of a whole file (test helper for state machines' own files).
#[cfg(test)]
pub(crate) fn fsutil_crc(path: &std::path::Path) -> u32 {
    std::fs::read(path).map_or(0, |b| crc32c::crc32c(&b))
}
