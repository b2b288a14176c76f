//! Continuous queries, run as influxd's service runs them: the leader
//! checks every second; a query runs when a new interval of its `GROUP BY
//! time` (or of its `RESAMPLE EVERY`) has begun, over the interval that
//! just ended (or the `RESAMPLE FOR` before it), its rows written through
//! raft by `SELECT … INTO`.

use std::collections::HashMap;
use std::time::Duration;

use tracing::{info, warn};

use crate::raft::{NodeHandle, ReadConsistency};
use crate::server::http::now_ns;
use crate::server::select_into::select_into;
use crate::server::subscriber::Subscriber;
use crate::tsdb::fsm::Tsdb;
use crate::tsdb::query::{self, Statement};

/// How often the leader looks for queries to run (influxd's
/// `run-interval`).
pub const RUN_INTERVAL: Duration = Duration::from_secs(1);

/// One query's schedule: (its GROUP BY interval, offset, how often it
/// runs, the span it covers).
fn schedule(stmt: &Statement) -> Option<(i64, i64, i64, i64)> {
    let Statement::CreateContinuousQuery {
        every,
        for_,
        select,
        ..
    } = stmt
    else {
        return None;
    };
    let (iv, off) = select.group_time?;
    let every = every.filter(|e| *e > 0).unwrap_or(iv);
    let span = for_.filter(|f| *f > 0).unwrap_or(iv);
    Some((iv, off, every, span))
}

/// The start of the period of `every` (offset `off`) holding `t`.
fn floor(t: i64, every: i64, off: i64) -> i64 {
    (t - off).div_euclid(every) * every + off
}

/// Runs until the node stops.
pub async fn run(node: NodeHandle<Tsdb>, forwarder: std::sync::Arc<Subscriber>) {
    // Per (db, name): the start of the period the query last ran in.
    let mut last: HashMap<(String, String), i64> = HashMap::new();
    let mut tick = tokio::time::interval(RUN_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = node.stopped() => return,
        }
        let leader = node.status().await.is_ok_and(|s| s.role == "leader");
        if !leader {
            last.clear();
            continue;
        }
        let n = node.clone();
        let Ok(cqs) = tokio::task::spawn_blocking(move || {
            n.local(|t, _| {
                t.meta()
                    .databases
                    .values()
                    .flat_map(|d| {
                        d.cqs
                            .iter()
                            .map(|(n, q)| (d.name.clone(), n.clone(), q.clone()))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .await
        else {
            continue;
        };
        let now = now_ns();
        last.retain(|k, _| cqs.iter().any(|(d, n, _)| (d, n) == (&k.0, &k.1)));
        for (db, name, text) in cqs {
            if let Err(e) = run_one(&node, &forwarder, &mut last, &db, &name, &text, now).await {
                warn!(db = %db, query = %name, error = %e, "continuous query");
            }
        }
    }
}

/// Runs one query if a new period of it has begun since it last ran (a
/// query seen for the first time waits for the next period).
async fn run_one(
    node: &NodeHandle<Tsdb>,
    forwarder: &Subscriber,
    last: &mut HashMap<(String, String), i64>,
    db: &str,
    name: &str,
    text: &str,
    now: i64,
) -> Result<(), String> {
    let stmt = query::parse(text, now)?
        .into_iter()
        .next()
        .ok_or("an empty continuous query")?;
    // Without GROUP BY time there is no interval to run it on (influxd
    // takes such a query and never runs it either).
    let Some((iv, off, every, span)) = schedule(&stmt) else {
        return Ok(());
    };
    let Statement::CreateContinuousQuery { select, .. } = stmt else {
        return Ok(());
    };
    let period = floor(now, every, off);
    let key = (db.to_string(), name.to_string());
    match last.get(&key) {
        Some(p) if *p >= period => return Ok(()),
        None => {
            last.insert(key, period);
            return Ok(());
        }
        Some(_) => {}
    }
    last.insert(key, period);
    // The intervals that ended by now, `span` of them back.
    let end = floor(now, iv, off);
    let mut s = *select;
    s.min = end.saturating_sub(span);
    s.max = end.saturating_sub(1);
    s.has_min = true;
    let written = select_into(node, db, &s, ReadConsistency::Linearizable, forwarder)
        .await
        .map_err(|e| e.to_string())?;
    info!(db = %db, query = %name, written, start = s.min, end, "continuous query ran");
    Ok(())
}
