//! `SELECT … INTO` and the continuous queries that run it: the SELECT
//! reads this node's state, its rows are written back through raft as
//! points of the target measurement.

use crate::proto::tsdb::CommandResult;
use crate::raft::{NodeHandle, RaftError, ReadConsistency};
use crate::server::subscriber::{Subscriber, route_of};
use crate::tsdb::fsm::{Tsdb, command};
use crate::tsdb::line_protocol::Precision;
use crate::tsdb::query::{self, Select, Statement};

/// Points per proposal of the rows written.
const POINTS_PER_PROPOSAL: usize = 5_000;

/// Why an INTO wrote nothing, or not everything.
#[derive(Debug, thiserror::Error)]
pub enum IntoError {
    /// The SELECT failed (its statement error).
    #[error("{0}")]
    Statement(String),
    /// A write was refused.
    #[error("{0}")]
    Write(String),
    /// Raft could not serve the read or the write.
    #[error(transparent)]
    Raft(#[from] RaftError),
}

/// Runs `s` (which has an INTO) with `db` as the request's database;
/// returns the points written.
pub async fn select_into(
    node: &NodeHandle<Tsdb>,
    db: &str,
    s: &Select,
    consistency: ReadConsistency,
    forwarder: &Subscriber,
) -> Result<u64, IntoError> {
    let Some(into) = s.into.clone() else {
        return Err(IntoError::Statement("SELECT without INTO".into()));
    };
    let from_db = s.db.clone().unwrap_or_else(|| db.to_string());
    let to_db = into.db.clone().unwrap_or_else(|| from_db.clone());
    let to_rp = into.rp.clone().unwrap_or_default();
    let stmt = Statement::Select(Box::new(s.clone()));
    let result = node
        .read(consistency, move |t, _| {
            query::with_typed_floats(|| {
                query::execute_read(t, &from_db, &stmt, Some(Precision::Nanoseconds))
            })
        })
        .await?;
    if let Some(e) = result.get("error").and_then(|e| e.as_str()) {
        return Err(IntoError::Statement(e.to_string()));
    }
    let target = (!into.each_source).then_some(into.measurement.as_str());
    let mut points = query::into_points(&result, target);
    let mut written = 0u64;
    // The rows written are forwarded to the target's subscriptions, as
    // any write is.
    let route = route_of(node, &to_db, &to_rp).await;
    while !points.is_empty() {
        let rest = points.split_off(points.len().min(POINTS_PER_PROPOSAL));
        let n = points.len() as u64;
        let forward = route.as_ref().map(|r| r.batch(&points));
        let cmd = crate::tsdb::write_batch::write_command(&to_db, &to_rp, points);
        let (_, r): (u64, CommandResult) = node.propose(&command(cmd)).await?;
        if r.database_not_found {
            return Err(IntoError::Write(format!("database not found: {to_db}")));
        }
        if let (Some(batch), Some(route)) = (forward, &route) {
            forwarder.forward(route, batch);
        }
        if !r.error.is_empty() && r.written == 0 {
            return Err(IntoError::Write(r.error));
        }
        written += n - r.dropped.min(n);
        points = rest;
    }
    Ok(written)
}
