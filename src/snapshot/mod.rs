//! The snapshot subsystem (DESIGN §2–§3): meta table, local storage with
//! refcounts, writer/reader, and the executor that drives save and load.
//! It knows nothing of raft-rs or of time series.

pub mod error;
pub mod executor;
pub(crate) mod fsutil;
pub mod meta_table;
pub mod reader;
pub mod storage;
pub mod writer;

pub use crate::proto::snapshot::{FileMeta, FileSource, SnapshotMeta, SnapshotMetaTable};
pub use error::{BadFile, BoxError, FileProblem, MetaTableError, SnapshotError};
pub use executor::{
    AppliedState, ExecutorOptions, ExecutorStats, Phase, SaveOutcome, SharedStateMachine,
    SnapshotExecutor, StateMachine, shared,
};
pub use reader::{SnapshotReader, verify_dir};
pub use storage::{LocalSnapshotStorage, OpenReport, SnapshotInfo, StorageOptions};
pub use writer::{SnapshotFileSink, SnapshotWriter};
