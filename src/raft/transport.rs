//! Outgoing raft traffic over gRPC: one sender task per peer that batches
//! messages into `Send` RPCs, and `MsgSnapshot` as a unary `InstallSnapshot`
//! RPC whose deadline grows with the snapshot's size. Failures come back to
//! the raft loop as `report_unreachable` / `report_snapshot(Failure)`.

use std::collections::HashMap;
use std::time::Duration;

use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info, warn};

use crate::proto::raft::raft_client::RaftClient;
use crate::proto::raft::{InstallFailure, InstallSnapshotRequest, RaftBatch};
use crate::raft::fsm::Peers;
use crate::raft::ready_loop::{Inbound, LoopTx};
use crate::raft::repair::Finding;
use crate::raft::snapshot_source::SnapshotSource;
use std::sync::Arc;

/// gRPC message limit between nodes.
pub const MAX_RPC_BYTES: usize = 64 << 20;
const QUEUE: usize = 4096;
const BATCH_MSGS: usize = 256;

/// A lazily connecting client to `addr`.
/// Over mutual TLS when this process has a peer identity
/// ([`crate::raft::peer_tls`]).
pub fn client(addr: &str) -> Option<RaftClient<Channel>> {
    let mut ep = Endpoint::from_shared(crate::raft::peer_tls::url(addr))
        .ok()?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true);
    if let Some(tls) = crate::raft::peer_tls::current() {
        ep = ep.tls_config(tls.client()).ok()?;
    }
    Some(
        RaftClient::new(ep.connect_lazy())
            .max_decoding_message_size(MAX_RPC_BYTES)
            .max_encoding_message_size(MAX_RPC_BYTES),
    )
}

pub(crate) struct Transport {
    pub id: u64,
    pub advertise: String,
    pub peers: Peers,
    pub queues: HashMap<u64, (String, mpsc::Sender<Message>)>,
    pub to_loop: LoopTx,
    /// The slowest rate an install's deadline allows.
    pub install_min_rate: u64,
    pub shutdown: CancellationToken,
    /// Told how each install to a peer ended (backoff, `/status`).
    pub source: Arc<SnapshotSource>,
    /// Where a peer's claim that a file of ours is damaged goes.
    pub findings: mpsc::UnboundedSender<Finding>,
}

/// What kind of failure an InstallSnapshot status is (for the backoff,
/// `/status` and `/metrics`).
fn failure_kind(st: &tonic::Status) -> &'static str {
    match st.code() {
        tonic::Code::DataLoss => "checksum",
        tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument => "refused",
        tonic::Code::DeadlineExceeded => "timeout",
        tonic::Code::Unavailable => "unavailable",
        _ => "other",
    }
}

impl Transport {
    fn addr_of(&self, to: u64) -> Option<String> {
        self.peers.read().ok()?.get(&to).cloned()
    }

    /// Sends messages; never blocks (a full queue drops and reports).
    pub(crate) fn send(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            let to = m.to;
            let Some(addr) = self.addr_of(to) else {
                debug!(peer = to, "no address for peer; message dropped");
                let _ = self.to_loop.send(Inbound::Unreachable(to));
                continue;
            };
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.send_snapshot(to, addr, m);
                continue;
            }
            let stale = self
                .queues
                .get(&to)
                .is_none_or(|(a, tx)| a != &addr || tx.is_closed());
            if stale {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(peer_sender(
                    self.id,
                    self.advertise.clone(),
                    to,
                    addr.clone(),
                    rx,
                    self.to_loop.clone(),
                    self.shutdown.clone(),
                ));
                self.queues.insert(to, (addr, tx));
            }
            if let Some((_, tx)) = self.queues.get(&to)
                && tx.try_send(m).is_err()
            {
                let _ = self.to_loop.send(Inbound::Unreachable(to));
            }
        }
    }

    fn send_snapshot(&self, to: u64, addr: String, m: Message) {
        let bytes = snapshot_bytes(&m);
        let deadline = Duration::from_secs(60).max(Duration::from_secs_f64(
            bytes as f64 / self.install_min_rate as f64,
        ));
        let index = m.get_snapshot().get_metadata().index;
        let req = InstallSnapshotRequest {
            from: self.id,
            from_addr: self.advertise.clone(),
            message: match m.write_to_bytes() {
                Ok(b) => b,
                Err(e) => {
                    warn!(peer = to, error = %e, "could not encode a snapshot message");
                    let _ = self.to_loop.send(Inbound::ReportSnapshot { to, ok: false });
                    return;
                }
            },
        };
        let to_loop = self.to_loop.clone();
        let shutdown = self.shutdown.clone();
        info!(
            peer = to,
            snapshot_index = index,
            bytes,
            ?deadline,
            "sending snapshot"
        );
        let (source, findings) = (self.source.clone(), self.findings.clone());
        tokio::spawn(async move {
            let result: Result<(), (&'static str, String)> = match client(&addr) {
                None => Err(("other", format!("bad peer address {addr}"))),
                Some(mut c) => {
                    let call = tokio::time::timeout(deadline, c.install_snapshot(req));
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        r = call => match r {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err(st)) => {
                                warn!(peer = to, snapshot_index = index, status = %st, "snapshot install failed");
                                // The receiver names a file that failed its
                                // checksum: have our own copy checked.
                                if st.code() == tonic::Code::DataLoss
                                    && let Ok(claim) = <InstallFailure as prost::Message>::decode(st.details())
                                {
                                    let _ = findings.send(Finding::PeerClaim { peer: to, claim });
                                }
                                Err((failure_kind(&st), st.message().to_string()))
                            }
                            Err(_) => {
                                warn!(peer = to, snapshot_index = index, ?deadline, "snapshot install timed out");
                                Err(("timeout", format!("no answer within {deadline:?}")))
                            }
                        },
                    }
                }
            };
            let ok = result.is_ok();
            source.record_install(to, index, result);
            let _ = to_loop.send(Inbound::ReportSnapshot { to, ok });
        });
    }
}

/// Total bytes of the snapshot a MsgSnapshot offers (0 if unreadable).
fn snapshot_bytes(m: &Message) -> u64 {
    use prost::Message as _;
    crate::proto::file::InstallPayload::decode(&m.get_snapshot().data[..])
        .ok()
        .and_then(|p| crate::snapshot::meta_table::decode(&p.meta_table).ok())
        .map_or(0, |t| t.files.iter().map(|f| f.size).sum())
}

async fn peer_sender(
    id: u64,
    advertise: String,
    to: u64,
    addr: String,
    mut rx: mpsc::Receiver<Message>,
    to_loop: LoopTx,
    shutdown: CancellationToken,
) {
    let Some(mut c) = client(&addr) else {
        warn!(peer = to, %addr, "bad peer address");
        return;
    };
    let mut failures = 0u32;
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            m = rx.recv() => match m { Some(m) => m, None => return },
        };
        let mut batch = vec![first];
        while batch.len() < BATCH_MSGS {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let messages: Vec<Vec<u8>> = batch
            .iter()
            .filter_map(|m| m.write_to_bytes().ok())
            .collect();
        let req = RaftBatch {
            from: id,
            from_addr: advertise.clone(),
            messages,
        };
        let sent = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(Duration::from_secs(5), c.send(req)) => matches!(r, Ok(Ok(_))),
        };
        if sent {
            failures = 0;
        } else {
            failures += 1;
            let _ = to_loop.send(Inbound::Unreachable(to));
            // Back off, dropping what queued meanwhile: raft resends.
            let pause = Duration::from_millis((50 * u64::from(failures)).min(1000));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            while rx.try_recv().is_ok() {}
        }
    }
}

/// Learns `id`'s address from a request that cannot prove who sent it:
/// only an id this node knows no address for yet is added (a member's
/// known address, from the log or the initial peers, is never replaced).
pub(crate) fn learn_unknown_peer(peers: &Peers, id: u64, addr: &str) {
    if id == 0 || addr.is_empty() {
        return;
    }
    if let Ok(mut p) = peers.write() {
        p.entry(id).or_insert_with(|| addr.to_string());
    }
}

/// Records `id`'s address (from the log: a membership change, a snapshot).
pub(crate) fn learn_peer(peers: &Peers, id: u64, addr: &str) {
    if id == 0 || addr.is_empty() {
        return;
    }
    if let Ok(mut p) = peers.write()
        && p.get(&id).is_none_or(|a| a != addr)
    {
        p.insert(id, addr.to_string());
    }
}
