//! influxd's write throttle: `max-concurrent-write-limit` writes run at
//! once, `max-enqueued-write-limit` more may wait, each for at most
//! `enqueued-write-timeout`. A write that finds the queue full, or waits
//! too long, is answered `503` in influxd's words (plain text) before its
//! body is read. A limit of 0 turns the throttle off, as in influxd.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The throttle's knobs.
#[derive(Debug, Clone, Copy)]
pub struct WriteLimits {
    /// Writes served at once (0 = no throttle).
    pub max_concurrent: usize,
    /// Writes that may wait for a slot (beyond: "queue full").
    pub max_enqueued: usize,
    /// The longest a write waits for a slot.
    pub enqueued_timeout: Duration,
}

impl Default for WriteLimits {
    fn default() -> Self {
        Self {
            max_concurrent: 0,
            max_enqueued: 0,
            enqueued_timeout: Duration::from_secs(30),
        }
    }
}

/// Admits writes under [`WriteLimits`].
#[derive(Debug)]
pub struct WriteThrottle {
    limits: WriteLimits,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// A write's place: held until its answer is ready.
#[derive(Debug)]
pub struct Admitted {
    _slot: Option<OwnedSemaphorePermit>,
}

impl WriteThrottle {
    /// A throttle with these limits.
    pub fn new(limits: WriteLimits) -> Self {
        Self {
            limits,
            slots: Arc::new(Semaphore::new(
                limits.max_concurrent.clamp(1, Semaphore::MAX_PERMITS),
            )),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Admits a write, waiting in the queue if there is room; otherwise
    /// influxd's 503.
    pub async fn admit(&self) -> Result<Admitted, Response> {
        if self.limits.max_concurrent == 0 {
            return Ok(Admitted { _slot: None });
        }
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Ok(Admitted { _slot: Some(p) });
        }
        let queued = self.waiting.fetch_add(1, Ordering::AcqRel);
        struct Leave<'a>(&'a AtomicUsize);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _leave = Leave(&self.waiting);
        if queued >= self.limits.max_enqueued {
            return Err(throttled("request throttled, queue full"));
        }
        match tokio::time::timeout(
            self.limits.enqueued_timeout,
            self.slots.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(p)) => Ok(Admitted { _slot: Some(p) }),
            Ok(Err(_)) | Err(_) => Err(throttled("request throttled, exceeds timeout")),
        }
    }
}

/// influxd's answer (Go's `http.Error`: plain text and a newline).
fn throttled(msg: &str) -> Response {
    let mut r = (StatusCode::SERVICE_UNAVAILABLE, format!("{msg}\n")).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        "X-Content-Type-Options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(r: Response) -> (u16, String) {
        let status = r.status().as_u16();
        let b = axum::body::to_bytes(r.into_body(), 1 << 10).await.unwrap();
        (status, String::from_utf8_lossy(&b).into_owned())
    }

    #[tokio::test(start_paused = true)]
    async fn one_runs_one_waits_the_rest_are_refused_and_the_wait_is_bounded() {
        let t = Arc::new(WriteThrottle::new(WriteLimits {
            max_concurrent: 1,
            max_enqueued: 1,
            enqueued_timeout: Duration::from_secs(1),
        }));
        let first = t.admit().await.unwrap();
        let t2 = t.clone();
        let waiting = tokio::spawn(async move { t2.admit().await.map(|_| ()) });
        tokio::task::yield_now().await;
        let full = t.admit().await.unwrap_err();
        assert_eq!(
            body(full).await,
            (503, "request throttled, queue full\n".into())
        );
        let late = waiting.await.unwrap().unwrap_err();
        assert_eq!(
            body(late).await,
            (503, "request throttled, exceeds timeout\n".into())
        );
        drop(first);
        assert!(t.admit().await.is_ok());
        // Off: no limit at all.
        let off = WriteThrottle::new(WriteLimits::default());
        let held: Vec<_> = futures::future::join_all((0..100).map(|_| off.admit())).await;
        assert!(held.iter().all(Result::is_ok));
    }
}
