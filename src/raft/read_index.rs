//! Linearizable reads: read-index rounds on the raft loop. Every read that
//! arrives while no round is pending joins the next one, so concurrent
//! queries share one heartbeat round with a quorum. A round's answer is the
//! leader's commit index; the reader then waits until this node has applied
//! up to it. raft-rs drops a request silently when there is no leader or the
//! leader has not yet committed an entry of its term, so a round without an
//! answer is asked again every few ticks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use raft::RawNode;
use raft::ReadState;
use tokio::sync::oneshot;

use crate::raft::error::RaftError;
use crate::raft::log_store::RaftStorage;
use crate::raft::ready_loop::{RaftCounters, lock};

/// The answer to a read-index request: the index to wait for.
pub(crate) type ReadReply = oneshot::Sender<Result<u64, RaftError>>;

/// Ticks after which a round without an answer is asked again.
const RETRY_TICKS: u32 = 3;

struct Round {
    waiters: Vec<ReadReply>,
    ticks: u32,
}

/// Reads queued and rounds in flight.
#[derive(Default)]
pub(crate) struct Reads {
    next_ctx: u64,
    queued: Vec<ReadReply>,
    rounds: HashMap<u64, Round>,
}

impl Reads {
    /// Queues a read for the next round.
    pub(crate) fn queue(&mut self, reply: ReadReply) {
        self.queued.push(reply);
    }

    /// Starts one round for every read queued since the last one.
    pub(crate) fn start_round(
        &mut self,
        raw: &mut RawNode<RaftStorage>,
        counters: &Arc<Mutex<RaftCounters>>,
    ) {
        self.queued.retain(|w| !w.is_closed());
        if self.queued.is_empty() {
            return;
        }
        self.next_ctx += 1;
        let ctx = self.next_ctx;
        raw.read_index(ctx.to_be_bytes().to_vec());
        lock(counters).read_index_rounds_total += 1;
        self.rounds.insert(
            ctx,
            Round {
                waiters: std::mem::take(&mut self.queued),
                ticks: 0,
            },
        );
    }

    /// Answers the rounds raft has read states for.
    pub(crate) fn complete(&mut self, states: Vec<ReadState>, counters: &Arc<Mutex<RaftCounters>>) {
        for rs in states {
            let Ok(ctx) = <[u8; 8]>::try_from(&rs.request_ctx[..]) else {
                continue;
            };
            if let Some(round) = self.rounds.remove(&u64::from_be_bytes(ctx)) {
                lock(counters).read_index_reads_total += round.waiters.len() as u64;
                for w in round.waiters {
                    let _ = w.send(Ok(rs.index));
                }
            }
        }
    }

    /// Asks again for rounds without an answer; forgets abandoned ones.
    pub(crate) fn on_tick(&mut self, raw: &mut RawNode<RaftStorage>) {
        self.rounds.retain(|_, r| {
            r.waiters.retain(|w| !w.is_closed());
            !r.waiters.is_empty()
        });
        for (ctx, r) in &mut self.rounds {
            r.ticks += 1;
            if r.ticks.is_multiple_of(RETRY_TICKS) {
                raw.read_index(ctx.to_be_bytes().to_vec());
            }
        }
    }

    /// Fails every waiting read (the node stops).
    pub(crate) fn fail_all(&mut self, err: impl Fn() -> RaftError) {
        for w in self.queued.drain(..) {
            let _ = w.send(Err(err()));
        }
        for (_, r) in self.rounds.drain() {
            for w in r.waiters {
                let _ = w.send(Err(err()));
            }
        }
    }
}
