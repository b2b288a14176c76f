//! The queries a node is running, as influxd's query manager keeps them:
//! `SHOW QUERIES` lists them (id, text, database, time so far, status),
//! `KILL QUERY <id>` interrupts one, and `query_timeout` interrupts any
//! that runs longer. An interrupted query answers influxd's errors (`query
//! interrupted`, `query-timeout limit exceeded`) for the statement it was
//! running, and runs no further statement.
//!
//! A statement is interrupted between statements and while it waits for
//! its read; the read itself, on a blocking thread, stops at its next
//! series once the query is interrupted or its client has gone away.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A running query's state.
const RUNNING: u8 = 0;
const KILLED: u8 = 1;
const TIMED_OUT: u8 = 2;

struct Running {
    text: String,
    db: String,
    started: Instant,
    state: Arc<AtomicU8>,
}

/// The queries running on this node.
#[derive(Default)]
pub struct QueryRegistry {
    next: AtomicU64,
    running: Mutex<BTreeMap<u64, Running>>,
    timeout: Duration,
    /// Reads that stopped early because their query was interrupted.
    reads_interrupted: AtomicU64,
    /// Queries finished (their guard dropped).
    finished: AtomicU64,
    /// Their summed durations, ns.
    duration_ns: AtomicU64,
}

/// A registered query; dropped when it ends (or its client goes away).
pub struct QueryGuard {
    registry: Arc<QueryRegistry>,
    id: u64,
    state: Arc<AtomicU8>,
    deadline: Option<Instant>,
}

impl QueryRegistry {
    /// A registry interrupting queries after `timeout` (zero: never).
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            ..Default::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a query (`text`: its statements as influxd prints them,
    /// joined by `;\n`) on `db`.
    pub fn register(self: &Arc<Self>, text: String, db: String) -> QueryGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let state = Arc::new(AtomicU8::new(RUNNING));
        self.lock().insert(
            id,
            Running {
                text,
                db,
                started: Instant::now(),
                state: state.clone(),
            },
        );
        QueryGuard {
            registry: self.clone(),
            id,
            state,
            deadline: (!self.timeout.is_zero()).then(|| Instant::now() + self.timeout),
        }
    }

    /// Counts a read that stopped early for an interrupted query.
    pub fn read_interrupted(&self) {
        self.reads_interrupted.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads that stopped early for an interrupted query.
    pub fn reads_interrupted(&self) -> u64 {
        self.reads_interrupted.load(Ordering::Relaxed)
    }

    /// (running, started, finished, summed duration in ns) of queries
    /// since the node started, as influxd's `queryExecutor` statistics.
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        let running = self.lock().len() as u64;
        (
            running,
            self.next.load(Ordering::Relaxed),
            self.finished.load(Ordering::Relaxed),
            self.duration_ns.load(Ordering::Relaxed),
        )
    }

    /// The `SHOW QUERIES` result.
    pub fn show(&self) -> Value {
        let values: Vec<Value> = self
            .lock()
            .iter()
            .map(|(id, r)| {
                let took = i64::try_from(r.started.elapsed().as_nanos()).unwrap_or(i64::MAX);
                let status = match r.state.load(Ordering::Relaxed) {
                    RUNNING => "running",
                    _ => "killed",
                };
                json!([
                    id,
                    r.text,
                    r.db,
                    crate::tsdb::timefmt::go_duration(took),
                    status
                ])
            })
            .collect();
        json!({"series": [{"columns": ["qid", "query", "database", "duration", "status"], "values": values}]})
    }

    /// `KILL QUERY id`.
    pub fn kill(&self, id: u64) -> Result<(), String> {
        match self.lock().get(&id) {
            Some(r) => {
                let _ =
                    r.state
                        .compare_exchange(RUNNING, KILLED, Ordering::Relaxed, Ordering::Relaxed);
                Ok(())
            }
            None => Err(format!("no such query id: {id}")),
        }
    }
}

impl QueryGuard {
    /// Why the query must stop, if it must (influxd's messages).
    pub fn interrupted(&self) -> Option<&'static str> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = self.state.compare_exchange(
                RUNNING,
                TIMED_OUT,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        match self.state.load(Ordering::Relaxed) {
            RUNNING => None,
            KILLED => Some("query interrupted"),
            _ => Some("query-timeout limit exceeded"),
        }
    }

    /// The check a read running for this query makes (on its own thread):
    /// set once the query is killed, times out, or ends (its client gone).
    pub fn interrupt(&self) -> crate::tsdb::query::Interrupt {
        let (state, deadline) = (self.state.clone(), self.deadline);
        crate::tsdb::query::Interrupt::new(move || {
            state.load(Ordering::Relaxed) != RUNNING
                || deadline.is_some_and(|d| Instant::now() >= d)
        })
    }

    /// Resolves once the query must stop (polled every 20 ms).
    pub async fn until_interrupted(&self) -> &'static str {
        loop {
            if let Some(why) = self.interrupted() {
                return why;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for QueryGuard {
    fn drop(&mut self) {
        // A read still running for it (its client gone) stops.
        self.state.store(KILLED, Ordering::Relaxed);
        if let Some(r) = self.registry.lock().remove(&self.id) {
            let ns = u64::try_from(r.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.registry.finished.fetch_add(1, Ordering::Relaxed);
            self.registry.duration_ns.fetch_add(ns, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_prints_them() {
        use crate::tsdb::timefmt::go_duration;
        assert_eq!(go_duration(140_000), "140µs");
        assert_eq!(go_duration(1_500_000), "1.5ms");
        assert_eq!(go_duration(999), "999ns");
        assert_eq!(go_duration(2_250_000_000), "2.25s");
        assert_eq!(go_duration(63_000_000_000), "1m3s");
    }

    #[test]
    fn queries_are_listed_killed_and_timed_out() {
        let r = Arc::new(QueryRegistry::new(Duration::ZERO));
        let a = r.register("SELECT * FROM m".into(), "db".into());
        let b = r.register("SHOW QUERIES".into(), "db".into());
        let shown = r.show();
        assert_eq!(shown["series"][0]["values"][0][0], json!(a.id));
        assert_eq!(shown["series"][0]["values"][1][1], json!("SHOW QUERIES"));
        assert_eq!(r.kill(a.id), Ok(()));
        assert_eq!(a.interrupted(), Some("query interrupted"));
        assert_eq!(b.interrupted(), None);
        drop(a);
        assert_eq!(r.kill(1), Err("no such query id: 1".into()));
        let t = Arc::new(QueryRegistry::new(Duration::from_millis(1)));
        let q = t.register("x".into(), String::new());
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(q.interrupted(), Some("query-timeout limit exceeded"));
    }
}
