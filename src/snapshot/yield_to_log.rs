//! Snapshot sends yield to the raft log. While the node's log is syncing
//! (writes are being acknowledged), the bytes it serves to installing
//! followers are paced by a rate that adapts to the log's sync latency:
//! halved whenever a sync takes longer than twice its quiet-time baseline
//! (and at least 1 ms more), raised by 10% after each sync that does not. With no log activity for
//! 100 ms the pace is lifted, so a catch-up on a quiet cluster runs at full
//! speed. Without it, a 1 GiB install on a shared disk cut acknowledged
//! writes to 0.24–0.37 of their rate.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The slowest pace sends are held to while the log is busy.
pub const MIN_RATE: f64 = 8.0 * 1024.0 * 1024.0;
const MAX_RATE: f64 = 4.0 * 1024.0 * 1024.0 * 1024.0;
const START_RATE: f64 = 64.0 * 1024.0 * 1024.0;
/// Log activity older than this no longer paces sends.
const ACTIVE: Duration = Duration::from_millis(100);
/// Sends within this long count as "sending" (syncs then do not update the
/// quiet-time baseline).
const SENDING: Duration = Duration::from_millis(200);

#[derive(Debug)]
struct State {
    last_sync: Option<Instant>,
    last_send: Option<Instant>,
    /// Sync latency while nothing is sent (EWMA, seconds).
    baseline: f64,
    /// Bytes per second allowed while the log is busy.
    rate: f64,
    next_free: Instant,
}

/// Shared by the log's sync thread ([`log_synced`](Self::log_synced)) and
/// the file service ([`pace`](Self::pace)).
#[derive(Debug)]
pub struct YieldToLog {
    state: Mutex<State>,
}

impl Default for YieldToLog {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                last_sync: None,
                last_send: None,
                baseline: 0.001,
                rate: START_RATE,
                next_free: Instant::now(),
            }),
        }
    }
}

impl YieldToLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The log synced; it took `latency`.
    pub fn log_synced(&self, latency: Duration) {
        let now = Instant::now();
        let lat = latency.as_secs_f64();
        let mut st = self.lock();
        st.last_sync = Some(now);
        let sending = st
            .last_send
            .is_some_and(|t| now.duration_since(t) < SENDING);
        if !sending {
            st.baseline = 0.9 * st.baseline + 0.1 * lat;
            return;
        }
        let allowed = (st.baseline * 2.0).max(st.baseline + 0.001);
        st.rate = if lat > allowed {
            (st.rate * 0.5).max(MIN_RATE)
        } else {
            (st.rate * 1.1).min(MAX_RATE)
        };
    }

    /// How long a sender should wait before sending `n` more bytes (zero
    /// while the log is quiet).
    pub fn pace(&self, n: u64) -> Duration {
        let now = Instant::now();
        let mut st = self.lock();
        st.last_send = Some(now);
        let busy = st.last_sync.is_some_and(|t| now.duration_since(t) < ACTIVE);
        if !busy {
            st.next_free = now;
            return Duration::ZERO;
        }
        let start = st.next_free.max(now);
        st.next_free = start + Duration::from_secs_f64(n as f64 / st.rate);
        st.next_free.saturating_duration_since(now)
    }

    /// The current pace while the log is busy (bytes per second).
    pub fn rate(&self) -> f64 {
        self.lock().rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_log_never_paces_and_slow_syncs_while_sending_halve_the_rate() {
        let y = YieldToLog::default();
        assert_eq!(y.pace(1 << 20), Duration::ZERO, "no log activity");
        // Quiet-time syncs of 1 ms set the baseline (nothing sent lately
        // would be true after 200 ms; here a send just happened, so the
        // first slow sync already counts).
        let r0 = y.rate();
        y.log_synced(Duration::from_millis(10));
        assert!(y.rate() < r0, "a slow sync while sending slows sends");
        let d = y.pace(1 << 20);
        assert!(d > Duration::ZERO, "the log is busy: sends are paced");
        let slow = y.rate();
        for _ in 0..50 {
            y.log_synced(Duration::from_micros(500));
        }
        assert!(y.rate() > slow, "fast syncs raise the rate again");
        for _ in 0..100 {
            y.log_synced(Duration::from_millis(50));
        }
        assert_eq!(
            y.rate(),
            MIN_RATE,
            "slow syncs hold sends at the floor, not below"
        );
    }
}
