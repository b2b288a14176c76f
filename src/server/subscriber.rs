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
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::tsdb::meta::Subscription;

/// Writes a destination's queue holds (influxd's `write-buffer-size`).
pub const QUEUE_BATCHES: usize = 1000;

/// How long an HTTP destination may take to answer (influxd's
/// `http-timeout`).
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// A destination's thread that had nothing to send for this long ends (a
/// dropped subscription leaves no thread behind); the next write to it
/// starts another.
const IDLE_EXIT: Duration = Duration::from_secs(600);

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
    /// How many points (lines) that is.
    pub points: u64,
}

/// Where one request's writes go: their database, the retention policy
/// (resolved) and its subscriptions, looked up once per request.
#[derive(Debug)]
pub struct Route {
    db: String,
    rp: String,
    subs: Vec<Subscription>,
}

impl Route {
    /// The route of writes to `db` given its retention policy's name and
    /// subscriptions (`Tsdb::subscriptions`); None when there are none.
    pub fn new(db: &str, found: Option<(String, Vec<Subscription>)>) -> Option<Route> {
        let (rp, subs) = found.filter(|(_, s)| !s.is_empty())?;
        Some(Route {
            db: db.to_string(),
            rp,
            subs,
        })
    }

    /// `points` as the batch to forward once they are committed.
    pub fn batch(&self, points: &[crate::tsdb::line_protocol::Point]) -> Batch {
        let mut lines = String::new();
        for p in points {
            crate::tsdb::line_protocol::encode_line(&mut lines, p);
        }
        Batch {
            db: self.db.clone(),
            rp: self.rp.clone(),
            lines,
            points: points.len() as u64,
        }
    }
}

/// What has been forwarded, for `/debug/vars` and tests.
#[derive(Debug, Default)]
pub struct SubscriberStats {
    /// Writes sent to a destination.
    pub writes_ok: AtomicU64,
    /// Points in them.
    pub points_written: AtomicU64,
    /// Sends that failed.
    pub write_failures: AtomicU64,
    /// Writes dropped because a destination's queue was full.
    pub dropped: AtomicU64,
}

/// The destinations' queues, each with the number of its thread.
type Queues = Arc<Mutex<HashMap<String, (u64, SyncSender<Arc<Batch>>)>>>;

/// The node's forwarder: a queue and a thread per destination.
pub struct Subscriber {
    /// Per destination URL: its queue (and the number of the thread
    /// serving it).
    queues: Queues,
    /// Threads started.
    started: AtomicU64,
    /// How long a destination's thread waits for a write before it ends.
    idle: Duration,
    /// `ANY` subscriptions' turns, per `db.rp.name`.
    turns: Mutex<HashMap<String, usize>>,
    /// Counters.
    pub stats: Arc<SubscriberStats>,
}

impl Default for Subscriber {
    fn default() -> Self {
        Self {
            queues: Queues::default(),
            turns: Mutex::default(),
            stats: Arc::default(),
            started: AtomicU64::new(0),
            idle: IDLE_EXIT,
        }
    }
}

impl Subscriber {
    /// A forwarder with no destinations yet (their threads start with
    /// their first write).
    pub fn new() -> Self {
        Self::default()
    }

    /// Destinations with a thread now.
    pub fn destinations(&self) -> usize {
        self.queues.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Queues `batch` for the destinations of `route`'s subscriptions:
    /// never blocks.
    pub fn forward(&self, route: &Route, batch: Batch) {
        if batch.lines.is_empty() {
            return;
        }
        let batch = Arc::new(batch);
        for s in &route.subs {
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
        let (_, tx) = queues.entry(dest.to_string()).or_insert_with(|| {
            let n = self.started.fetch_add(1, Ordering::Relaxed);
            (n, self.start_destination(dest, n))
        });
        match tx.try_send(batch) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                // Its thread could not start: the next write tries again.
                queues.remove(dest);
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A queue for `dest` and the thread (number `n`) that sends what it
    /// holds.
    fn start_destination(&self, dest: &str, n: u64) -> SyncSender<Arc<Batch>> {
        let (tx, rx) = sync_channel(QUEUE_BATCHES);
        let (dest, stats, queues) = (dest.to_string(), self.stats.clone(), self.queues.clone());
        let idle = self.idle;
        let spawned = std::thread::Builder::new()
            .name("subscriber".into())
            .spawn(move || send_loop((&dest, n, idle), &rx, &stats, &queues));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "subscriber: no thread for a destination");
        }
        tx
    }
}

/// The route of writes to `db`.`rp` (`""`: the default) as this node has
/// applied its subscriptions; None when there are none.
pub async fn route_of(
    node: &crate::raft::NodeHandle<crate::tsdb::fsm::Tsdb>,
    db: &str,
    rp: &str,
) -> Option<Route> {
    let (node, db, rp) = (node.clone(), db.to_string(), rp.to_string());
    let found = tokio::task::spawn_blocking({
        let db = db.clone();
        move || node.local(|t, _| t.subscriptions(&db, &rp))
    })
    .await
    .ok()
    .flatten();
    Route::new(&db, found)
}

/// Sends each queued write to `dest` until the forwarder is dropped or
/// nothing came for [`IDLE_EXIT`] (then the thread, number `n`, takes its
/// queue out of `queues` with nothing in it, under the lock writers queue
/// under: no write is left behind).
fn send_loop(
    (dest, n, idle): (&str, u64, Duration),
    rx: &Receiver<Arc<Batch>>,
    stats: &SubscriberStats,
    queues: &Queues,
) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(HTTP_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    loop {
        let batch = match rx.recv_timeout(idle) {
            Ok(b) => b,
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                let mut q = queues.lock().unwrap_or_else(|p| p.into_inner());
                match rx.try_recv() {
                    Ok(b) => b,
                    Err(_) => {
                        if q.get(dest).is_some_and(|(m, _)| *m == n) {
                            q.remove(dest);
                        }
                        return;
                    }
                }
            }
        };
        let sent = if let Some(addr) = dest.strip_prefix("udp://") {
            send_udp(addr, &batch)
        } else {
            send_http(&agent, dest, &batch)
        };
        match sent {
            Ok(()) => {
                stats
                    .points_written
                    .fetch_add(batch.points, Ordering::Relaxed);
                stats.writes_ok.fetch_add(1, Ordering::Relaxed)
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(mode: &str, destinations: Vec<String>) -> Route {
        let s = Subscription {
            name: "s".into(),
            mode: mode.into(),
            destinations,
        };
        Route::new("db", Some(("autogen".into(), vec![s]))).unwrap()
    }

    fn batch(lines: &str) -> Batch {
        Batch {
            db: "db".into(),
            rp: "autogen".into(),
            lines: lines.into(),
            points: lines.lines().count() as u64,
        }
    }

    fn recv(sock: &UdpSocket) -> String {
        let mut buf = [0u8; 1024];
        let n = sock.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn points_go_out_one_datagram_each_and_an_idle_thread_ends_without_losing_writes() {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let dest = format!("udp://{}", sock.local_addr().unwrap());
        let f = Subscriber {
            idle: Duration::from_millis(20),
            ..Subscriber::default()
        };
        let subs = sub("ALL", vec![dest]);
        f.forward(&subs, batch("a v=1 1\nb v=2 2\n"));
        assert_eq!(
            (recv(&sock), recv(&sock)),
            ("a v=1 1".into(), "b v=2 2".into())
        );
        // The thread ends once idle and takes its queue with it...
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while f.destinations() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the idle thread did not end"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // ...and the next write starts another.
        f.forward(&subs, batch("c v=3 3\n"));
        assert_eq!(recv(&sock), "c v=3 3");
        // (Counted once the send returned, which may be after the
        // datagram arrived.)
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while f.stats.writes_ok.load(Ordering::Relaxed) < 2 {
            assert!(std::time::Instant::now() < deadline, "sends not counted");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(f.stats.writes_ok.load(Ordering::Relaxed), 2);
        assert_eq!(f.stats.dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn any_takes_turns_and_a_dead_destination_is_counted() {
        let (a, b) = (
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        for s in [&a, &b] {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        }
        let d = |s: &UdpSocket| format!("udp://{}", s.local_addr().unwrap());
        let f = Subscriber::new();
        let subs = sub("ANY", vec![d(&a), d(&b)]);
        for i in 0..4 {
            f.forward(&subs, batch(&format!("m v={i} {i}\n")));
        }
        assert_eq!((recv(&a), recv(&a)), ("m v=0 0".into(), "m v=2 2".into()));
        assert_eq!((recv(&b), recv(&b)), ("m v=1 1".into(), "m v=3 3".into()));
        // Nothing listens on port 1 over HTTP: the send fails and is
        // counted, and nothing else is held up.
        let dead = sub("ALL", vec!["http://127.0.0.1:1".into()]);
        f.forward(&dead, batch("m v=9 9\n"));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while f.stats.write_failures.load(Ordering::Relaxed) == 0 {
            assert!(std::time::Instant::now() < deadline, "no failure counted");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
