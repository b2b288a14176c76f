//! The node's gRPC service: raft message batches, snapshot installs (fetched
//! here, off the raft loop), forwarded proposals and membership changes.

use crate::raft::peer_tls;
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use tokio::sync::watch;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::proto::file::InstallPayload;
use crate::proto::raft::raft_server::{Raft, RaftServer};
use crate::proto::raft::{
    Ack, InstallFailure, InstallSnapshotRequest, InstallSnapshotResponse, MembershipRequest,
    MembershipResponse, OfferSnapshotRequest, OfferSnapshotResponse, ProposeRequest,
    ProposeResponse, RaftBatch, StageRequest, StageResponse,
};
use crate::raft::fsm::{NodeFsm, Peers, ReplicatedStateMachine};
use crate::raft::membership::MembershipChange;
use crate::raft::ready_loop::{Inbound, LoopTx, ask};
use crate::raft::snapshot_source::{SnapshotSource, is_member};
use crate::raft::transport::{MAX_RPC_BYTES, learn_unknown_peer};
use crate::snapshot::{SnapshotError, SnapshotExecutor, meta_table};

pub(crate) struct RaftRpc<S: ReplicatedStateMachine> {
    pub id: u64,
    pub to_loop: LoopTx,
    pub exec: Arc<SnapshotExecutor<NodeFsm<S>>>,
    pub peers: Peers,
    pub members: crate::raft::fsm::Members,
    pub applied_rx: watch::Receiver<u64>,
    pub proposal_timeout: Duration,
    pub source: Arc<SnapshotSource>,
    pub staging: Option<Arc<crate::snapshot::StagingArea>>,
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl<S: ReplicatedStateMachine> RaftRpc<S> {
    pub(crate) fn into_server(self) -> RaftServer<Self> {
        RaftServer::new(self)
            .max_decoding_message_size(MAX_RPC_BYTES)
            .max_encoding_message_size(MAX_RPC_BYTES)
    }
}

fn bad(peer: u64, reason: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("from node {peer}: {reason}"))
}

impl<S: ReplicatedStateMachine> RaftRpc<S> {
    /// Learns the address a request gives for its sender: only for a
    /// member (or anyone while this node has no configuration, joining),
    /// and never replacing an address already known.
    fn learn(&self, from: u64, addr: &str) {
        let ok = self
            .members
            .read()
            .is_ok_and(|m| m.is_empty() || m.contains(&from));
        if ok {
            learn_unknown_peer(&self.peers, from, addr);
        }
    }

    /// `Ok` when `from` is another member whose known address is on the
    /// host the request came from.
    fn member_at(&self, from: u64, remote: Option<std::net::SocketAddr>) -> Result<(), Status> {
        let member = self.members.read().is_ok_and(|m| m.contains(&from));
        let addr = self
            .peers
            .read()
            .ok()
            .and_then(|p| p.get(&from).cloned())
            .filter(|_| member && from != 0 && from != self.id);
        match addr {
            Some(a) if same_host(remote, &a) => Ok(()),
            Some(a) => Err(Status::permission_denied(format!(
                "node {from} is at {a}, not at {}",
                remote.map_or("?".to_string(), |r| r.ip().to_string())
            ))),
            None => Err(Status::permission_denied(format!(
                "node {from} is not a member"
            ))),
        }
    }
}

/// True unless `addr`'s host is an IP address other than `remote`'s (a
/// host name is not resolved here; an unknown remote passes).
pub(crate) fn same_host(remote: Option<std::net::SocketAddr>, addr: &str) -> bool {
    let Some(remote) = remote else { return true };
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => {
            let canon = |i: std::net::IpAddr| match i {
                std::net::IpAddr::V6(v6) => v6
                    .to_ipv4_mapped()
                    .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
                v4 => v4,
            };
            let r = canon(remote.ip());
            canon(ip) == r || (ip.is_unspecified())
        }
        Err(_) => true,
    }
}

#[tonic::async_trait]
impl<S: ReplicatedStateMachine> Raft for RaftRpc<S> {
    async fn send(&self, req: Request<RaftBatch>) -> Result<Response<Ack>, Status> {
        peer_tls::check_sender(&req, req.get_ref().from)?;
        let b = req.into_inner();
        self.learn(b.from, &b.from_addr);
        for bytes in b.messages {
            let m = Message::parse_from_bytes(&bytes).map_err(|e| bad(b.from, e))?;
            if m.get_msg_type() == MessageType::MsgSnapshot {
                return Err(bad(b.from, "snapshots go through InstallSnapshot"));
            }
            // With certificates the batch's sender is proven: a message in
            // it from another node is a forgery.
            if m.from != b.from && peer_tls::current().is_some() {
                return Err(Status::permission_denied(format!(
                    "node {} sent a message from node {}",
                    b.from, m.from
                )));
            }
            self.to_loop
                .send(Inbound::Raft(Box::new(m)))
                .map_err(|_| Status::unavailable("node stopping"))?;
        }
        Ok(Response::new(Ack {}))
    }

    async fn install_snapshot(
        &self,
        req: Request<InstallSnapshotRequest>,
    ) -> Result<Response<InstallSnapshotResponse>, Status> {
        peer_tls::check_sender(&req, req.get_ref().from)?;
        let r = req.into_inner();
        self.learn(r.from, &r.from_addr);
        let msg = Message::parse_from_bytes(&r.message).map_err(|e| bad(r.from, e))?;
        if msg.get_msg_type() != MessageType::MsgSnapshot {
            return Err(bad(r.from, "not a MsgSnapshot"));
        }
        let snap = msg.get_snapshot();
        let md = snap.get_metadata();
        let payload = InstallPayload::decode(&snap.data[..])
            .map_err(|e| bad(r.from, format!("install payload: {e}")))?;
        let table = meta_table::decode(&payload.meta_table)
            .map_err(|e| bad(r.from, format!("meta table: {e}")))?;
        let tm = table.meta.clone().unwrap_or_default();
        if (tm.last_included_index, tm.last_included_term) != (md.index, md.term) {
            return Err(bad(
                r.from,
                format!(
                    "meta table is for {}/{} but the message for {}/{}",
                    tm.last_included_index, tm.last_included_term, md.index, md.term
                ),
            ));
        }
        let index = md.index;
        if !is_member(&tm, self.id) {
            // raft-rs would ignore it: do not fetch it, and say why at once.
            return Err(Status::failed_precondition(format!(
                "snapshot {index} does not include node {} in its membership",
                self.id
            )));
        }
        // Fetched only from the sender's own address as this node knows
        // it, never from another one the request names.
        let known = self.peers.read().ok().and_then(|p| p.get(&r.from).cloned());
        let from_uri =
            crate::snapshot::SnapshotUri::parse(&payload.uri).map_err(|e| bad(r.from, e))?;
        if known.as_deref() != Some(from_uri.addr.as_str()) || msg.from != r.from {
            return Err(Status::permission_denied(format!(
                "snapshot {index} is served from {}, not from node {}'s address ({})",
                from_uri.addr,
                r.from,
                known.as_deref().unwrap_or("unknown")
            )));
        }
        info!(snapshot_index = index, from = r.from, uri = %payload.uri, "installing snapshot");
        let have = self
            .exec
            .storage()
            .latest_meta()
            .is_some_and(|m| m.last_included_index >= index);
        let alternates = if have {
            Vec::new()
        } else {
            crate::raft::peer_sources::gather(self.id, &payload, &table).await
        };
        match self
            .exec
            .fetch_from(&payload.uri, &table, &alternates)
            .await
        {
            Ok(f) => drop(f),
            Err(e) => {
                warn!(snapshot_index = index, error = %e, "snapshot fetch failed");
                let msg = format!("install of snapshot {index}: {e}");
                // A file that fails its checksum after refetching: tell the
                // source which one, so it can check its own copy.
                if let SnapshotError::Checksum {
                    index,
                    file,
                    expected,
                    actual,
                    ..
                } = &e
                {
                    let claim = InstallFailure {
                        snapshot_index: *index,
                        file: file.clone(),
                        expected_crc32c: *expected,
                        actual_crc32c: *actual,
                    };
                    return Err(Status::with_details(
                        tonic::Code::DataLoss,
                        msg,
                        claim.encode_to_vec().into(),
                    ));
                }
                return Err(Status::unavailable(msg));
            }
        }
        // Now hand the message to raft; the Ready that carries it loads it.
        self.to_loop
            .send(Inbound::Raft(Box::new(msg)))
            .map_err(|_| Status::unavailable("node stopping"))?;
        let mut rx = self.applied_rx.clone();
        let wait = self.proposal_timeout.max(Duration::from_secs(60));
        match tokio::time::timeout(wait, rx.wait_for(|a| *a >= index)).await {
            Ok(Ok(a)) => Ok(Response::new(InstallSnapshotResponse { applied_index: *a })),
            _ => Err(Status::deadline_exceeded(format!(
                "snapshot {index} fetched but not applied within {wait:?}"
            ))),
        }
    }

    async fn offer_snapshot(
        &self,
        req: Request<OfferSnapshotRequest>,
    ) -> Result<Response<OfferSnapshotResponse>, Status> {
        peer_tls::check_sender(&req, req.get_ref().from)?;
        // Snapshots are offered to members only (an installing learner is
        // one).
        self.member_at(req.get_ref().from, req.remote_addr())?;
        let r = req.into_inner();
        self.learn(r.from, &r.from_addr);
        if r.as_source {
            return match self.source.offer_as_source() {
                Some(p) => Ok(Response::new(OfferSnapshotResponse {
                    payload: p.encode_to_vec(),
                })),
                None => Err(Status::unavailable("no snapshot here yet")),
            };
        }
        match self.source.offer(r.min_index) {
            Some(p) => {
                info!(
                    peer = r.from,
                    min_index = r.min_index,
                    "offering a snapshot to a member repairing its state"
                );
                Ok(Response::new(OfferSnapshotResponse {
                    payload: p.encode_to_vec(),
                }))
            }
            None => Err(Status::unavailable(format!(
                "no snapshot of index {} or newer yet; saving one, ask again",
                r.min_index
            ))),
        }
    }

    async fn propose(
        &self,
        req: Request<ProposeRequest>,
    ) -> Result<Response<ProposeResponse>, Status> {
        peer_tls::check_sender(&req, req.get_ref().from)?;
        let remote = req.remote_addr();
        let r = req.into_inner();
        self.member_at(r.from, remote)?;
        let command = r.command;
        let (index, result) = ask(&self.to_loop, self.proposal_timeout, |reply| {
            Inbound::Propose { command, reply }
        })
        .await?;
        Ok(Response::new(ProposeResponse { index, result }))
    }

    async fn change_membership(
        &self,
        req: Request<MembershipRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        peer_tls::check_sender(&req, req.get_ref().from)?;
        let remote = req.remote_addr();
        let r = req.into_inner();
        // A member may change the membership; a node not yet in it may
        // only ask to add itself, from the host it names.
        if self.member_at(r.from, remote).is_err()
            && !(r.op == 0 && r.id == r.from && r.id != 0 && same_host(remote, &r.addr))
        {
            return Err(Status::permission_denied(format!(
                "node {} may not change the membership: not a member (a joining node may only add itself, from its own host)",
                r.from
            )));
        }
        let change = match r.op {
            0 if !r.addr.is_empty() => MembershipChange::Add {
                id: r.id,
                addr: r.addr,
            },
            0 => {
                return Err(Status::invalid_argument(
                    "adding a member needs its address",
                ));
            }
            1 => MembershipChange::Remove { id: r.id },
            op => {
                return Err(Status::invalid_argument(format!(
                    "unknown membership op {op}"
                )));
            }
        };
        if r.id == 0 {
            return Err(Status::invalid_argument("member id must be non-zero"));
        }
        let (index, _) = ask(&self.to_loop, self.proposal_timeout, |reply| {
            Inbound::Membership { change, reply }
        })
        .await?;
        Ok(Response::new(MembershipResponse { index }))
    }

    async fn stage(&self, req: Request<StageRequest>) -> Result<Response<StageResponse>, Status> {
        peer_tls::check_sender(&req, req.get_ref().from)?;
        let r = req.into_inner();
        let Some(staging) = &self.staging else {
            return Err(Status::unimplemented("this node keeps no staged files"));
        };
        if !crate::snapshot::staging::is_staging_id(r.id) {
            return Err(bad(r.from, format!("{:#x} is not a staging id", r.id)));
        }
        // Fetched only from a member's known address, never from one the
        // request names.
        let addr = self
            .peers
            .read()
            .ok()
            .and_then(|p| p.get(&r.from).cloned())
            .filter(|_| r.from != self.id)
            .ok_or_else(|| Status::permission_denied(format!("node {} is not a member", r.from)))?;
        let table = meta_table::decode(&r.manifest).map_err(|e| bad(r.from, e))?;
        let uri = crate::snapshot::SnapshotUri {
            addr,
            reader_id: r.id,
        };
        staging
            .fetch(r.id, &table.files, &[uri], &self.shutdown.child_token())
            .await
            .map_err(|e| match e {
                SnapshotError::Checksum { .. } => Status::data_loss(e.to_string()),
                e => Status::unavailable(e.to_string()),
            })?;
        Ok(Response::new(StageResponse {}))
    }
}
