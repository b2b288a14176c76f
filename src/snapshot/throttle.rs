//! `SnapshotThrottle`: token buckets for snapshot bytes sent and received
//! (`snapshot_send_rate`, `snapshot_recv_rate`; unlimited by default) and
//! limits on concurrent sends (`max_concurrent_sends`, 4) and installs
//! (`max_concurrent_installs`, 2) that answer `Throttled` with a retry hint.
//!
//! The buckets run on tokio's clock, so tests drive them with a paused clock
//! and check the rate from the bucket's own accounting, not from wall time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::snapshot::error::SnapshotError;

/// A token bucket over bytes. A caller may take more than the burst at once
/// (a big chunk); the bucket then goes into debt and the caller sleeps until
/// the debt would have been earned, so the long-run rate holds exactly.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    first_grant: Option<Instant>,
    granted: u64,
}

/// What a [`RateLimiter`] has granted, by its own clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateStats {
    /// Bytes granted.
    pub granted_bytes: u64,
    /// Time from the first grant to the moment the last grant is paid for.
    pub span: Duration,
}

impl RateLimiter {
    /// A bucket of `bytes_per_sec`, holding at most 100 ms of tokens.
    pub fn new(bytes_per_sec: u64) -> Self {
        let rate = bytes_per_sec.max(1) as f64;
        Self {
            rate,
            burst: (rate / 10.0).max(1.0),
            state: Mutex::new(Bucket {
                tokens: 0.0,
                last: Instant::now(),
                first_grant: None,
                granted: 0,
            }),
        }
    }

    /// The configured rate in bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate as u64
    }

    /// Takes `n` bytes' worth of tokens, sleeping as long as the rate requires.
    pub async fn acquire(&self, n: u64) {
        let wait = {
            let mut b = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let earned = now.saturating_duration_since(b.last).as_secs_f64() * self.rate;
            b.tokens = (b.tokens + earned).min(self.burst);
            b.last = now;
            b.first_grant.get_or_insert(now);
            b.tokens -= n as f64;
            b.granted += n;
            if b.tokens < 0.0 {
                Duration::from_secs_f64(-b.tokens / self.rate)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Bytes granted so far and the span they were paid over.
    pub fn stats(&self) -> RateStats {
        let b = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let span = match b.first_grant {
            None => Duration::ZERO,
            Some(first) => {
                let debt = if b.tokens < 0.0 {
                    -b.tokens / self.rate
                } else {
                    0.0
                };
                b.last.saturating_duration_since(first) + Duration::from_secs_f64(debt)
            }
        };
        RateStats {
            granted_bytes: b.granted,
            span,
        }
    }
}

/// Options of a [`SnapshotThrottle`].
#[derive(Debug, Clone)]
pub struct ThrottleOptions {
    /// Bytes per second served to followers (`None` = unlimited).
    pub send_rate: Option<u64>,
    /// Bytes per second fetched from leaders (`None` = unlimited).
    pub recv_rate: Option<u64>,
    /// Snapshots served at once (default 4).
    pub max_concurrent_sends: usize,
    /// Snapshots installed at once (default 2).
    pub max_concurrent_installs: usize,
    /// The retry hint given when a limit is reached (default 1 s).
    pub retry_after: Duration,
}

impl Default for ThrottleOptions {
    fn default() -> Self {
        Self {
            send_rate: None,
            recv_rate: None,
            max_concurrent_sends: 4,
            max_concurrent_installs: 2,
            retry_after: Duration::from_secs(1),
        }
    }
}

/// Rate and concurrency limits for snapshot transfer, shared by the file
/// service (sends) and the copier (receives).
#[derive(Debug)]
pub struct SnapshotThrottle {
    send: Option<RateLimiter>,
    recv: Option<RateLimiter>,
    sends: Arc<Semaphore>,
    served: std::sync::atomic::AtomicU64,
    installs: Arc<Semaphore>,
    opts: ThrottleOptions,
    /// Sends yield to the raft log's syncs.
    pub log: crate::snapshot::yield_to_log::YieldToLog,
}

impl Default for SnapshotThrottle {
    fn default() -> Self {
        Self::new(ThrottleOptions::default())
    }
}

impl SnapshotThrottle {
    /// A throttle with these limits.
    pub fn new(opts: ThrottleOptions) -> Self {
        Self {
            send: opts.send_rate.map(RateLimiter::new),
            recv: opts.recv_rate.map(RateLimiter::new),
            sends: Arc::new(Semaphore::new(opts.max_concurrent_sends.max(1))),
            installs: Arc::new(Semaphore::new(opts.max_concurrent_installs.max(1))),
            served: std::sync::atomic::AtomicU64::new(0),
            opts,
            log: Default::default(),
        }
    }

    /// Waits until `n` more bytes may be sent.
    pub async fn sent(&self, n: u64) {
        self.served
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        if let Some(l) = &self.send {
            l.acquire(n).await;
        }
        let wait = self.log.pace(n);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Bytes the file service has served (snapshots and staged sets).
    pub fn served_bytes(&self) -> u64 {
        self.served.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until `n` more bytes may be received.
    pub async fn received(&self, n: u64) {
        if let Some(l) = &self.recv {
            l.acquire(n).await;
        }
    }

    /// The send bucket, if limited.
    pub fn send_limiter(&self) -> Option<&RateLimiter> {
        self.send.as_ref()
    }

    /// The receive bucket, if limited.
    pub fn recv_limiter(&self) -> Option<&RateLimiter> {
        self.recv.as_ref()
    }

    /// A slot for serving one more snapshot, or `Throttled`.
    pub fn try_start_send(&self) -> Result<OwnedSemaphorePermit, SnapshotError> {
        self.sends
            .clone()
            .try_acquire_owned()
            .map_err(|_| SnapshotError::Throttled {
                what: "snapshot sends",
                limit: self.opts.max_concurrent_sends,
                retry_after: self.opts.retry_after,
            })
    }

    /// A slot for one more install, or `Throttled`.
    pub fn try_start_install(&self) -> Result<OwnedSemaphorePermit, SnapshotError> {
        self.installs
            .clone()
            .try_acquire_owned()
            .map_err(|_| SnapshotError::Throttled {
                what: "snapshot installs",
                limit: self.opts.max_concurrent_installs,
                retry_after: self.opts.retry_after,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_bucket_holds_its_rate_by_its_own_accounting() {
        let l = Arc::new(RateLimiter::new(10 << 20)); // 10 MiB/s
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let l = l.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..50 {
                    l.acquire(1 << 20).await; // 1 MiB chunks, bigger than the burst
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let s = l.stats();
        assert_eq!(s.granted_bytes, 200 << 20);
        let rate = s.granted_bytes as f64 / s.span.as_secs_f64();
        let want = (10 << 20) as f64;
        assert!(
            (rate - want).abs() / want < 0.02,
            "rate {rate:.0} B/s vs {want:.0}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn small_grants_after_idle_use_at_most_one_burst() {
        let l = RateLimiter::new(1 << 20);
        tokio::time::sleep(Duration::from_secs(10)).await; // idle: tokens cap at the burst
        let start = Instant::now();
        for _ in 0..100 {
            l.acquire(32 << 10).await;
        }
        // 3.2 MiB at 1 MiB/s, less one burst (0.1 s) saved while idle.
        let took = start.elapsed().as_secs_f64();
        assert!((took - 3.025).abs() < 0.01, "took {took}");
    }

    #[test]
    fn concurrency_limits_answer_throttled_with_a_hint() {
        let t = SnapshotThrottle::new(ThrottleOptions {
            max_concurrent_installs: 2,
            max_concurrent_sends: 1,
            ..Default::default()
        });
        let a = t.try_start_install().unwrap();
        let _b = t.try_start_install().unwrap();
        match t.try_start_install() {
            Err(SnapshotError::Throttled {
                limit: 2,
                retry_after,
                ..
            }) => {
                assert_eq!(retry_after, Duration::from_secs(1))
            }
            other => panic!("{other:?}"),
        }
        drop(a);
        let _c = t.try_start_install().unwrap();
        let _s = t.try_start_send().unwrap();
        assert!(t.try_start_send().is_err());
    }
}
