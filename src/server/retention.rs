//! Retention policy enforcement, as influxd's retention service: every
//! check interval the leader finds the shard groups whose end is older
//! than their policy keeps and proposes their deletion; every replica
//! drops them when it applies the command.

use std::time::Duration;

use tracing::{info, warn};

use crate::proto::tsdb::{DeleteShardGroup, command::Cmd};
use crate::raft::NodeHandle;
use crate::tsdb::fsm::{Tsdb, command};

/// influxd's default `check-interval`.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(30 * 60);

/// Runs until the node stops: one check per `every`.
pub async fn run(node: NodeHandle<Tsdb>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = node.stopped() => return,
        }
        if let Err(e) = check(&node).await {
            warn!(error = %e, "retention check");
        }
    }
}

/// One check: the leader proposes the deletion of each expired group
/// (others do nothing); the number proposed.
pub async fn check(node: &NodeHandle<Tsdb>) -> Result<usize, String> {
    let status = node.status().await.map_err(|e| e.to_string())?;
    if status.role != "leader" {
        return Ok(0);
    }
    let now = crate::server::http::now_ns();
    let n = node.clone();
    let expired = tokio::task::spawn_blocking(move || n.local(|t, _| t.expired_shard_groups(now)))
        .await
        .map_err(|e| e.to_string())?;
    for (db, rp, id) in &expired {
        let cmd = command(Cmd::DeleteShardGroup(DeleteShardGroup {
            db: db.clone(),
            rp: rp.clone(),
            id: *id,
            deleted_at: now,
        }));
        node.propose(&cmd).await.map_err(|e| e.to_string())?;
        info!(db = %db, rp = %rp, shard_group = id, "shard group expired: deleted");
    }
    Ok(expired.len())
}
