//! The HTTP accept loop: each connection of the budgeted listener served
//! by hyper (HTTP/1.1 and HTTP/2) on its own task, with a deadline for a
//! request's header (`http_header_timeout`): a client that opens a
//! connection and trickles or withholds its header is disconnected, so
//! slow clients cannot hold connections (and open files) for ever. A
//! body that stalls is cut by `read_limited` in the handlers.
//!
//! On shutdown the listener stops and open connections finish the
//! requests they are serving (within the caller's grace period).

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;

use super::conn_budget::BudgetedListener;

/// The default `http_read_timeout` (influxd has none; hyper's header
/// deadline defaults to 30 s).
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve(
    mut listener: BudgetedListener,
    app: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout((!header_timeout.is_zero()).then_some(header_timeout));
    tokio::pin!(shutdown);
    loop {
        let (io, _peer) = tokio::select! {
            conn = listener.accept() => conn,
            _ = &mut shutdown => break,
        };
        let svc = TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(io), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, "HTTP connection ended");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
