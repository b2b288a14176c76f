//! The HTTP API's share of the process's file descriptors.
//!
//! Every HTTP connection holds a descriptor until it closes. Without a
//! bound, idle or slow clients can take every descriptor the process may
//! open: the raft port then cannot accept its peers, nor open connections
//! to them, and a write outage spreads to the whole cluster. The HTTP
//! listener therefore holds a budget of connections: the
//! `max_connection_limit` knob (influxd's `max-connection-limit`), and in
//! any case the open-file limit less a reserve for raft, snapshots and TSM
//! files. A connection over the budget is closed at once, as influxd's
//! limit does; the others, and the raft port, are unaffected.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

/// Descriptors kept out of the HTTP budget (raft peers, snapshot and TSM
/// files, the log): a quarter of the limit, at least this many.
pub const MIN_RESERVED_FDS: u64 = 256;

/// The connections HTTP may hold: `limit` when set (non-zero), and never
/// more than the open-file limit `nofile` less the reserve.
pub fn budget(limit: u64, nofile: u64) -> usize {
    let reserve = (nofile / 4).max(MIN_RESERVED_FDS);
    let by_fds = nofile.saturating_sub(reserve).max(16);
    let b = if limit == 0 {
        by_fds
    } else {
        limit.min(by_fds)
    };
    usize::try_from(b).unwrap_or(usize::MAX)
}

/// A TCP listener that holds at most a budget of open connections.
pub struct BudgetedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    refused: Arc<AtomicU64>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for BudgetedListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetedListener")
            .field("available", &self.permits.available_permits())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl BudgetedListener {
    /// Accepts on `inner`, holding at most `budget` connections at once.
    pub fn new(inner: TcpListener, budget: usize) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(budget.clamp(1, Semaphore::MAX_PERMITS))),
            refused: Arc::new(AtomicU64::new(0)),
            tls: None,
        }
    }

    /// Serves TLS (HTTPS) on every connection, the handshake on the
    /// connection's own task.
    pub fn with_tls(mut self, acceptor: tokio_rustls::TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self
    }

    /// Connections closed at once because the budget was spent (shared).
    pub fn refused(&self) -> Arc<AtomicU64> {
        self.refused.clone()
    }
}

impl axum::serve::Listener for BudgetedListener {
    type Io = Budgeted;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(c) => c,
                Err(e) => {
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) {
                        // Out of descriptors despite the budget (another
                        // part of the process holds them): wait a little.
                        warn!(error = %e, "HTTP accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
            };
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let io = match &self.tls {
                        Some(a) => Conn::Tls(crate::server::tls::TlsConn::new(a, stream)),
                        None => Conn::Plain(stream),
                    };
                    return (
                        Budgeted {
                            io,
                            _permit: permit,
                        },
                        addr,
                    );
                }
                Err(_) => {
                    let n = self.refused.fetch_add(1, Ordering::Relaxed);
                    if n.is_power_of_two() {
                        warn!(peer = %addr, refused = n + 1, "HTTP connection budget spent; closing new connections");
                    }
                    drop(stream);
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection counted against the budget until it is dropped.
#[derive(Debug)]
pub struct Budgeted {
    io: Conn,
    _permit: OwnedSemaphorePermit,
}

#[derive(Debug)]
enum Conn {
    Plain(TcpStream),
    Tls(crate::server::tls::TlsConn),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.io {
            Conn::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Conn::Tls($s) => {
                let $s = Pin::new($s);
                $e
            }
        }
    };
}

impl AsyncRead for Budgeted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Budgeted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::serve::Listener as _;

    #[test]
    fn the_budget_leaves_a_reserve_and_honours_the_knob() {
        assert_eq!(budget(0, 1024), 768);
        assert_eq!(budget(0, 1 << 20), 786_432);
        assert_eq!(budget(100, 1024), 100);
        assert_eq!(budget(5000, 1024), 768);
        assert_eq!(budget(0, 100), 16);
    }

    #[tokio::test]
    async fn connections_over_the_budget_are_closed_and_a_freed_slot_is_reused() {
        use tokio::io::AsyncReadExt;
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut bl = BudgetedListener::new(l, 1);
        let refused = bl.refused();
        let c1 = TcpStream::connect(addr).await.unwrap();
        let (a1, _) = bl.accept().await;
        // Over the budget: accepted and closed at once (accept goes on
        // waiting for one it may keep).
        let mut c2 = TcpStream::connect(addr).await.unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(300), bl.accept()).await;
        assert!(waited.is_err(), "nothing to keep yet");
        let mut b = [0u8; 1];
        assert_eq!(c2.read(&mut b).await.unwrap(), 0, "closed");
        assert_eq!(refused.load(Ordering::Relaxed), 1);
        // A freed slot is taken by the next connection.
        drop((c1, a1));
        let _c3 = TcpStream::connect(addr).await.unwrap();
        let (_a3, _) = bl.accept().await;
        assert_eq!(refused.load(Ordering::Relaxed), 1);
    }
}
