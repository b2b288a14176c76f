//! The contract of a state machine replicated through raft: the one trait an
//! application implements (with [`StateMachine`] for snapshots). It lives
//! here, beside the snapshot contract, so that a state machine depends on
//! the snapshot subsystem only, never on the raft layer.

use crate::snapshot::{BoxError, StateMachine};

/// Why a command was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The command cannot be applied, and no replica would apply it: the
    /// proposer gets [`ReplicatedStateMachine::rejected`] with this reason,
    /// the state is unchanged, and the node goes on. Must be deterministic
    /// (decided by the command and the state alone).
    #[error("{0}")]
    Rejected(String),
    /// This replica cannot go on (its disk failed): the node stops serving
    /// rather than diverge from the others.
    #[error("{0}")]
    Fatal(BoxError),
}

impl From<BoxError> for ApplyError {
    fn from(e: BoxError) -> Self {
        Self::Fatal(e)
    }
}

impl From<std::io::Error> for ApplyError {
    fn from(e: std::io::Error) -> Self {
        Self::Fatal(Box::new(e))
    }
}

/// A state machine replicated through raft.
///
/// Correctness requirements:
/// - `apply` is deterministic: every replica applies the same commands in the
///   same order and reaches the same state and the same answers;
/// - `apply` is total: a command that cannot be applied is refused with
///   [`ApplyError::Rejected`] *before* it changes anything, so that a bad
///   command never stops a node, blocks a snapshot or a compaction;
/// - only a local failure (I/O) is [`ApplyError::Fatal`].
pub trait ReplicatedStateMachine: StateMachine {
    /// A command, as proposed (a protobuf message).
    type Command: prost::Message + Default + Send + 'static;
    /// The answer to a command's proposer (a protobuf message).
    type Answer: prost::Message + Default + Send + 'static;
    /// What reads see: the state at one applied index, readable without
    /// the state machine (queries never hold the lock that apply takes).
    type View: Send + Sync + 'static;

    /// Applies a committed command at `index` (of `term`).
    fn apply(
        &mut self,
        index: u64,
        term: u64,
        command: Self::Command,
    ) -> Result<Self::Answer, ApplyError>;

    /// A read view of the state as it is now. Called under the apply lock:
    /// it must be cheap (share immutable parts, freeze what changes), never
    /// a copy of the data.
    fn view(&mut self) -> Self::View;

    /// The staged set an encoded command needs before it can apply (see
    /// [`crate::snapshot::staging`]), found without decoding the whole
    /// command when it needs none. The node obtains the set (locally, or
    /// from a holder) before taking the apply lock.
    fn staged_need(_command: &[u8]) -> Option<crate::snapshot::StagedNeed> {
        None
    }

    /// The answer for a command that was not applied (it did not decode,
    /// or `apply` rejected it), naming why.
    fn rejected(reason: String) -> Self::Answer;
}
