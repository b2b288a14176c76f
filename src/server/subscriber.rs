//! Subscriptions (`CREATE SUBSCRIPTION`): the points of each write a node
//! accepts are sent on to the destinations of its retention policy's
//! subscriptions, as influxd's subscriber service sends them (Kapacitor
//! subscribes so).
//!
//! - `http://…`, `https://…`: a `POST /write?db=…&rp=…&precision=ns` of the
//!   points as line protocol.
//! - `udp://…`: one datagram per point.
//! - `ALL` sends every write to every destination; `ANY` to one, in turn.
//!
//! The node that accepted the write forwards it (once, whichever node of
//! the cluster that is), after the write was committed, to the
//! subscriptions that node has applied when the write arrived (one created
//! through another node applies here as soon as this node applies it from
//! the log, normally within milliseconds). Delivery is best
//! effort, as influxd's: each destination has its own queue of
//! [`QUEUE_BATCHES`] writes and its own thread, so a slow or dead
//! destination delays nothing else; a write that finds the queue full is
//! dropped and counted, and a failed send is logged and counted.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::tsdb::meta::Subscription;

/// Writes a destination's queue holds (influxd's `write-buffer-size`).
pub const QUEUE_BATCHES: usize = 1000;

/// How long an HTTP destination may take to answer (influxd's
/// `http-timeout`).
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// One write to forward: its database, retention policy and points as
/// line protocol (one point per line, nanosecond times).
#[derive(Debug)]
pub struct Batch {
    /// Database.
    pub db: String,
    /// Retention policy (resolved: never empty).
    pub rp: String,
    /// The points, one per line.
    pub lines: String,
}

/// What has been forwarded, for `/debug/vars` and tests.
#[derive(Debug, Default)]
pub struct SubscriberStats {
    /// Writes sent to a destination.
    pub writes_ok: AtomicU64,
    /// Sends that failed.
    pub write_failures: AtomicU64,
    /// Writes dropped because a destination's queue was full.
    pub dropped: AtomicU64,
}

/// The node's forwarder: a queue and a thread per destination.
#[derive(Default)]
pub struct Subscriber {
    /// Per destination URL: its queue.
    queues: Mutex<HashMap<String, SyncSender<Arc<Batch>>>>,
    /// `ANY` subscriptions' turns, per `db.rp.name`.
    turns: Mutex<HashMap<String, usize>>,
    /// Counters.
    pub stats: Arc<SubscriberStats>,
}

impl Subscriber {
    /// A forwarder with no destinations yet (their threads start with
    /// their first write).
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `batch` for the destinations of `subs` (the subscriptions of
    /// its retention policy): never blocks.
    pub fn forward(&self, subs: &[Subscription], batch: Batch) {
        if subs.is_empty() || batch.lines.is_empty() {
            return;
        }
        let batch = Arc::new(batch);
        for s in subs {
            let chosen: Vec<&String> = if s.mode == "ANY" && !s.destinations.is_empty() {
                let key = format!("{}.{}.{}", batch.db, batch.rp, s.name);
                let mut turns = self.turns.lock().unwrap_or_else(|p| p.into_inner());
                let turn = turns.entry(key).or_insert(0);
                let d = &s.destinations[*turn % s.destinations.len()];
                *turn = turn.wrapping_add(1);
                vec![d]
            } else {
                s.destinations.iter().collect()
            };
            for d in chosen {
                self.enqueue(d, batch.clone());
            }
        }
    }

    /// Puts `batch` on `dest`'s queue, starting its thread if needed.
    fn enqueue(&self, dest: &str, batch: Arc<Batch>) {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let tx = queues.entry(dest.to_string()).or_insert_with(|| {
            let (tx, rx) = sync_channel(QUEUE_BATCHES);
            let (dest, stats) = (dest.to_string(), self.stats.clone());
            let spawned = std::thread::Builder::new()
                .name("subscriber".into())
                .spawn(move || send_loop(&dest, &rx, &stats));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "subscriber: no thread for a destination");
            }
            tx
        });
        match tx.try_send(batch) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                // The thread is gone: the next write starts another.
                queues.remove(dest);
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A write's points as line protocol, one per line.
pub fn lines_of(points: &[crate::tsdb::line_protocol::Point]) -> String {
    let mut lines = String::new();
    for p in points {
        crate::tsdb::line_protocol::encode_line(&mut lines, p);
    }
    lines
}

/// The subscriptions writes to `db`.`rp` (`""`: the default) go to, with
/// the retention policy's name, as this node has applied them; None when
/// there are none.
pub async fn subscriptions_of(
    node: &crate::raft::NodeHandle<crate::tsdb::fsm::Tsdb>,
    db: &str,
    rp: &str,
) -> Option<(String, Vec<Subscription>)> {
    let (node, db, rp) = (node.clone(), db.to_string(), rp.to_string());
    tokio::task::spawn_blocking(move || node.local(|t, _| t.subscriptions(&db, &rp)))
        .await
        .ok()
        .flatten()
        .filter(|(_, s)| !s.is_empty())
}

/// Sends each queued write to `dest` until the forwarder is dropped.
fn send_loop(dest: &str, rx: &Receiver<Arc<Batch>>, stats: &SubscriberStats) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(HTTP_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    while let Ok(batch) = rx.recv() {
        let sent = if let Some(addr) = dest.strip_prefix("udp://") {
            send_udp(addr, &batch)
        } else {
            send_http(&agent, dest, &batch)
        };
        match sent {
            Ok(()) => stats.writes_ok.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!(destination = dest, db = %batch.db, rp = %batch.rp, error = %e,
                    "subscriber: write not forwarded");
                stats.write_failures.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// One datagram per point, as influxd's UDP subscriber.
fn send_udp(addr: &str, batch: &Batch) -> Result<(), String> {
    let addr = addr.trim_end_matches('/');
    let sock = UdpSocket::bind(if addr.starts_with('[') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    })
    .map_err(|e| format!("bind: {e}"))?;
    sock.connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    for line in batch.lines.lines() {
        sock.send(line.as_bytes())
            .map_err(|e| format!("{addr}: {e}"))?;
    }
    Ok(())
}

/// A `POST /write` of the points.
fn send_http(agent: &ureq::Agent, dest: &str, batch: &Batch) -> Result<(), String> {
    let url = format!("{}/write", dest.trim_end_matches('/'));
    let resp = agent
        .post(&url)
        .query("db", &batch.db)
        .query("rp", &batch.rp)
        .query("precision", "ns")
        .send(batch.lines.as_bytes())
        .map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("{url}: status {status}"))
    }
}
