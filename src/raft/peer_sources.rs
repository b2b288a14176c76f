//! Other members' snapshots an install also fetches from.
//!
//! A follower told to install the leader's snapshot asks the other members
//! the leader names (`InstallPayload.members`, kept only if the snapshot's
//! membership lists them) for their latest snapshot, as it is
//! (`OfferSnapshot` with `as_source`). Files whose size and crc32c equal a
//! file of the leader's table (files ingested by `IngestFiles`, or a
//! snapshot installed from the same leader, are byte-identical on every
//! replica) may then be fetched from those members too, so that two
//! members catching up at once do not both weigh on the leader. Every byte
//! is still checked against the leader's table. A member that does not
//! answer within [`ASK_TIMEOUT`] is simply not used.

use std::time::Duration;

use futures::future::join_all;
use prost::Message as _;
use tracing::{debug, info};

use crate::proto::file::InstallPayload;
use crate::proto::raft::OfferSnapshotRequest;
use crate::proto::snapshot::SnapshotMetaTable;
use crate::raft::snapshot_source::is_member;
use crate::raft::transport::client;
use crate::snapshot::{AlternateSource, SnapshotUri, meta_table};

/// How long the members are given to offer their snapshot.
pub const ASK_TIMEOUT: Duration = Duration::from_millis(500);

/// Below this many bytes to fetch, the leader alone serves the install.
pub const MIN_SHARED_BYTES: u64 = 1 << 20;

/// The other members' snapshots that hold some of `table`'s files; `me` is
/// the installing node, `payload` what the leader sent.
pub(crate) async fn gather(
    me: u64,
    payload: &InstallPayload,
    table: &SnapshotMetaTable,
) -> Vec<AlternateSource> {
    let total: u64 = table.files.iter().map(|f| f.size).sum();
    let (Ok(primary), Some(meta)) = (SnapshotUri::parse(&payload.uri), table.meta.as_ref()) else {
        return Vec::new();
    };
    if total < MIN_SHARED_BYTES {
        return Vec::new();
    }
    let asks = payload
        .members
        .iter()
        .filter(|m| m.id != me && m.addr != primary.addr && is_member(meta, m.id))
        .map(|m| async move {
            let r = ask(me, &m.addr).await;
            if let Err(e) = &r {
                debug!(peer = m.id, error = %e, "member is no source for this install");
            }
            (m.id, r.ok())
        });
    let mut out = Vec::new();
    for (peer, alt) in join_all(asks).await {
        let Some(alt) = alt else { continue };
        let shared: u64 = table
            .files
            .iter()
            .filter(|f| alt.holds(f).is_some())
            .map(|f| f.size)
            .sum();
        if shared == 0 {
            debug!(peer, uri = %alt.uri, "member holds none of this install's files");
            continue;
        }
        info!(
            peer,
            uri = %alt.uri,
            shared_bytes = shared,
            total_bytes = total,
            "a member holds files of this install; fetching from it too"
        );
        out.push(alt);
    }
    out
}

/// Asks the member at `addr` for its latest snapshot; it must be served
/// from that same address.
async fn ask(me: u64, addr: &str) -> Result<AlternateSource, String> {
    let mut c = client(addr).ok_or_else(|| format!("bad address {addr}"))?;
    let req = OfferSnapshotRequest {
        from: me,
        from_addr: String::new(),
        min_index: 0,
        as_source: true,
    };
    let resp = tokio::time::timeout(ASK_TIMEOUT, c.offer_snapshot(req))
        .await
        .map_err(|_| format!("no answer within {ASK_TIMEOUT:?}"))?
        .map_err(|s| s.message().to_string())?
        .into_inner();
    let p = InstallPayload::decode(&resp.payload[..]).map_err(|e| format!("bad offer: {e}"))?;
    let uri = SnapshotUri::parse(&p.uri).map_err(|e| e.to_string())?;
    if uri.addr != addr {
        return Err(format!("offer served from {} rather than {addr}", uri.addr));
    }
    let table = meta_table::decode(&p.meta_table).map_err(|e| format!("bad meta table: {e}"))?;
    meta_table::validate(&table).map_err(|e| format!("bad meta table: {e}"))?;
    Ok(AlternateSource { uri, table })
}
