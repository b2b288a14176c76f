//! `tsnode serve`: assembles a node — the time-series state machine, the raft
//! node with its gRPC server, and the HTTP API — and runs it until shutdown.

pub mod auth;
pub mod config;
pub mod conn_budget;
pub mod continuous_queries;
pub mod http;
pub mod import;
pub mod process;
pub mod queries;
pub(crate) mod query_format;
pub(crate) mod query_stream;
pub mod retention;
pub mod select_into;
pub mod serve;
pub mod stats;
pub mod subscriber;
pub mod tls;
pub mod write_throttle;

use std::future::Future;
use std::time::Duration;

use tracing::{info, warn};

use crate::raft::NodeHandle;
use crate::tsdb::fsm::Tsdb;
use config::Settings;

/// Runs a node until `shutdown` resolves; returns a message on failure.
pub async fn run(
    s: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let nofile = process::raise_open_files_limit();
    if let Some((ca, cert, key)) = &s.peer_tls {
        let tls = crate::raft::peer_tls::PeerTls::load(s.node.id, ca, cert, key)
            .map_err(|e| e.to_string())?;
        crate::raft::peer_tls::install(tls);
    }
    std::fs::create_dir_all(&s.node.data_dir)
        .map_err(|e| format!("create {}: {e}", s.node.data_dir.display()))?;
    let raft_listener = std::net::TcpListener::bind(&s.node.advertise_addr)
        .map_err(|e| format!("bind raft address {}: {e}", s.node.advertise_addr))?;
    let http_listener = tokio::net::TcpListener::bind(&s.http_addr)
        .await
        .map_err(|e| format!("bind HTTP address {}: {e}", s.http_addr))?;
    let snap_listener = tokio::net::TcpListener::bind(&s.snapshotter_addr)
        .await
        .map_err(|e| format!("bind snapshotter address {}: {e}", s.snapshotter_addr))?;
    let tsdb = Tsdb::open(s.node.data_dir.join("tsdb"))
        .map_err(|e| format!("open the time-series store: {e}"))?
        .with_merge_files(s.merge_files.unwrap_or(usize::MAX));
    let id = s.node.id;
    let node = NodeHandle::start(s.node.clone(), tsdb, raft_listener)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(join) = &s.join {
        join_cluster(join, id, &s.node.advertise_addr).await?;
    }
    // Writes, INTO and continuous queries forward to subscriptions.
    let forwarder = std::sync::Arc::new(subscriber::Subscriber::new());
    tokio::spawn(continuous_queries::run(node.clone(), forwarder.clone()));
    if !s.retention_check_interval.is_zero() {
        tokio::spawn(retention::run(node.clone(), s.retention_check_interval));
    }
    tokio::spawn(crate::snapshotter::server::serve(
        snap_listener,
        node.clone(),
        s.snapshotter_limits.clone(),
    ));
    eprintln!(
        "tsnode {id}: raft {} http {} snapshotter {} data {}",
        s.node.advertise_addr,
        s.http_addr,
        s.snapshotter_addr,
        s.node.data_dir.display()
    );
    let app = http::router(
        node.clone(),
        s.http_limits.clone(),
        std::sync::Arc::new(auth::Authenticator::new(s.auth.clone())),
        forwarder,
    );
    let budget = conn_budget::budget(s.http_limits.max_connection_limit, nofile);
    info!(budget, open_file_limit = nofile, "HTTP connection budget");
    let mut http_listener = conn_budget::BudgetedListener::new(http_listener, budget);
    if let Some(cert) = &s.https_certificate {
        let acceptor =
            tls::acceptor(cert, s.https_private_key.as_deref()).map_err(|e| e.to_string())?;
        http_listener = http_listener.with_tls(acceptor);
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let read_timeout = s.http_limits.read_timeout;
    let server = tokio::spawn(serve::serve(http_listener, app, read_timeout, async {
        let _ = rx.await;
    }));
    // Fail-stop: a node that hit a fatal error (its log cannot be written
    // or synced, its state machine cannot apply) exits non-zero with the
    // reason, for a supervisor to see, instead of lingering half-alive.
    let fatal = tokio::select! {
        _ = shutdown => None,
        _ = node.stopped() => node.fault(),
    };
    info!("shutting down");
    // However the parts below behave, the process is gone within 5 s.
    let _watchdog = std::thread::Builder::new()
        .name("shutdown-watchdog".into())
        .spawn(|| {
            std::thread::sleep(Duration::from_millis(4500));
            eprintln!("tsnode: shutdown took over 4.5 s; exiting now");
            std::process::exit(2);
        });
    let _ = tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), node.shutdown()).await;
    match fatal {
        Some(f) => Err(format!("node {id} stopped after a fatal error: {f}")),
        None => Ok(()),
    }
}

/// Asks the cluster (through any member's gRPC address) to add this node;
/// retries while the cluster elects a leader.
async fn join_cluster(via: &str, id: u64, addr: &str) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..30 {
        let Some(mut c) = crate::raft::transport_client(via) else {
            return Err(format!("bad --join address {via}"));
        };
        let req = crate::proto::raft::MembershipRequest {
            op: 0,
            id,
            addr: addr.to_string(),
            from: id,
        };
        match c.change_membership(req).await {
            Ok(_) => {
                info!(via, "joined the cluster as a learner");
                return Ok(());
            }
            Err(st) => {
                // A forwarded error names the leader's address: ask it directly.
                last = st.message().to_string();
                if let Some(l) = st
                    .metadata()
                    .get("leader-addr")
                    .and_then(|v| v.to_str().ok())
                {
                    let req = crate::proto::raft::MembershipRequest {
                        op: 0,
                        id,
                        addr: addr.to_string(),
                        from: id,
                    };
                    if let Some(mut lc) = crate::raft::transport_client(l)
                        && lc.change_membership(req).await.is_ok()
                    {
                        return Ok(());
                    }
                }
                warn!(attempt, error = %last, "join failed; retrying");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("could not join through {via}: {last}"))
}

/// Resolves on SIGINT or SIGTERM.
pub async fn signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}
