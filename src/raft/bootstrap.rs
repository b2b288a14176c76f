//! Starting a node: open the snapshot storage and the raft log, bootstrap a
//! new cluster's membership, load the latest snapshot (finishing an install
//! that a crash interrupted), then start the raft loop, the persistence and
//! apply threads and the gRPC server.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use raft::RawNode;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::raft::apply::{ApplyTask, ApplyWorker, Proposals};
use crate::raft::config::NodeConfig;
use crate::raft::error::RaftError;
use crate::raft::fsm::{NodeFsm, Peers, ReplicatedStateMachine};
use crate::raft::handle::{HandleInner, NodeHandle};
use crate::raft::log_store::{LogStore, RaftStorage, WalLogStore};
use crate::raft::read_index::Reads;
use crate::raft::ready_loop::{Fault, Loop, RaftCounters};
use crate::raft::snapshot_source::{SnapshotSource, conf_state_of, set_membership};
use crate::raft::transport::{Transport, learn_peer};
use crate::snapshot::{
    CopierOptions, ExecutorOptions, LocalFileLookup, LocalSnapshotStorage, ReaderRegistry,
    RemoteFileCopier, SnapshotError, SnapshotExecutor, SnapshotFileService, SnapshotThrottle,
    StateMachine as _, StorageOptions, ThrottleOptions, shared,
};

fn spawn_thread(
    name: String,
    f: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, RaftError> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .map_err(|e| RaftError::Internal(format!("cannot start thread {name}: {e}")))
}

type Executor<S> = Arc<SnapshotExecutor<NodeFsm<S>>>;

/// Opens the snapshot storage and builds the executor over the state machine.
fn open_executor<S: ReplicatedStateMachine>(
    cfg: &NodeConfig,
    state_machine: S,
    peers: Peers,
    throttle: Arc<SnapshotThrottle>,
    lookup: Option<Arc<dyn LocalFileLookup>>,
) -> Result<(LocalSnapshotStorage, Executor<S>), RaftError> {
    let (storage, report) = LocalSnapshotStorage::open(
        cfg.data_dir.join("snapshots"),
        StorageOptions {
            retain: cfg.snapshot_retain,
        },
    )?;
    if !report.broken.is_empty() {
        warn!(broken = ?report.broken, "snapshots failed validation at startup");
    }
    let mut exec = SnapshotExecutor::new(
        storage.clone(),
        shared(NodeFsm::new(state_machine, peers)),
        ExecutorOptions {
            snapshot_min_gap: cfg.snapshot_min_gap,
            copier: CopierOptions {
                parallel_files: cfg.install_parallel_files,
                chunk_bytes: cfg.install_chunk_bytes,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .with_throttle(throttle);
    if let Some(l) = lookup {
        exec = exec.with_lookup(l);
    }
    Ok((storage, Arc::new(exec)))
}

/// Files of a staged set a member fetches at once.
pub const STAGED_PARALLEL_FILES: usize = 2;

/// Largest chunk of a staged set's fetch: every member fetches from the
/// node that received the set at once, and that node holds each stream's
/// read-ahead chunks in memory.
pub const STAGED_CHUNK_BYTES: u32 = 256 << 10;

/// Where a new cluster's log starts: the initial membership stands at this
/// index and term.
pub const BOOTSTRAP_INDEX: u64 = 1;

/// Loads the latest snapshot and brings the log in line with it; returns
/// the applied index to start from.
async fn load_state<S: ReplicatedStateMachine>(
    cfg: &NodeConfig,
    storage: &LocalSnapshotStorage,
    exec: &Arc<SnapshotExecutor<NodeFsm<S>>>,
    log: &Arc<WalLogStore>,
) -> Result<u64, RaftError> {
    let mut state = log.initial_state()?;
    let fresh = state.hard_state == Default::default()
        && state.conf_state.voters.is_empty()
        && log.last_index() == 0;
    if fresh && !cfg.peers.is_empty() && storage.latest_index() == 0 {
        state.conf_state.voters = cfg.peers.keys().copied().collect();
        // The initial membership is the log's starting point (index 1,
        // term 1), as if a snapshot held it: it is in no entry, so a member
        // added later must start from a snapshot (which carries it), never
        // by replaying the log from its first entry (it would apply the
        // membership changes to an empty configuration).
        log.apply_snapshot(BOOTSTRAP_INDEX, BOOTSTRAP_INDEX, &state.conf_state)?;
        log.flush()?;
        info!(voters = ?state.conf_state.voters, "bootstrapped a new cluster");
    }
    let loaded = load_sound_snapshot(cfg, storage, exec, log).await?;
    Ok(match &loaded {
        Some(m) => {
            let commit = log.initial_state()?.hard_state.commit;
            if m.last_included_index > commit {
                // An install committed this snapshot but the process stopped
                // before raft applied it to the log: do it now, as raft-rs's
                // restore would have (the snapshot is the leader's committed
                // state, already verified).
                warn!(
                    snapshot_index = m.last_included_index,
                    commit, "finishing an install interrupted before raft applied it"
                );
                log.apply_snapshot(
                    m.last_included_index,
                    m.last_included_term,
                    &conf_state_of(m),
                )?;
            } else {
                // The log's conf state is the one as of the loaded snapshot;
                // replaying the entries after it rebuilds the current one.
                log.set_conf_state(&conf_state_of(m))?;
            }
            log.flush()?;
            m.last_included_index
        }
        None => {
            let mut fsm = exec
                .state_machine()
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            set_membership(&mut fsm.applied, &state.conf_state);
            0
        }
    })
}

/// How long a node whose snapshots all failed verification keeps asking the
/// members for a sound one at startup.
const RECOVER_AT_STARTUP_FOR: Duration = Duration::from_secs(300);

/// Loads the newest local snapshot that passes verification: one that fails
/// is renamed `*.broken` and the next older is tried. When none is left and
/// the log does not reach back to the beginning, the state comes from a
/// member's snapshot (fetched and verified as an install is); the raft log
/// and hard state (term, vote) are kept as they are.
async fn load_sound_snapshot<S: ReplicatedStateMachine>(
    cfg: &NodeConfig,
    storage: &LocalSnapshotStorage,
    exec: &Arc<SnapshotExecutor<NodeFsm<S>>>,
    log: &Arc<WalLogStore>,
) -> Result<Option<crate::snapshot::SnapshotMeta>, RaftError> {
    let started = std::time::Instant::now();
    loop {
        let exec2 = exec.clone();
        let first = log.first_index();
        // A log that starts right after the bootstrap point needs no
        // snapshot: the membership it starts from is in its conf state.
        let first = if first == BOOTSTRAP_INDEX + 1
            && crate::raft::log_store::LogStore::term(log.as_ref(), BOOTSTRAP_INDEX).ok()
                == Some(BOOTSTRAP_INDEX)
        {
            BOOTSTRAP_INDEX
        } else {
            first
        };
        let res = tokio::task::spawn_blocking(move || exec2.load_latest(first))
            .await
            .map_err(|e| RaftError::Internal(format!("snapshot load task failed: {e}")))?;
        match res {
            Ok(loaded) => return Ok(loaded),
            Err(SnapshotError::Verify { dir, bad }) => {
                let index = storage.latest_index();
                let reason = bad
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                error!(snapshot_index = index, dir = %dir.display(), %reason, "snapshot failed verification at startup; renaming it *.broken and trying an older one");
                storage.quarantine(index, &reason)?;
            }
            Err(SnapshotError::LogGap { .. }) => {
                let mut members = cfg.peers.clone();
                members.extend(peers_of_broken_snapshots(storage.root()));
                members.remove(&cfg.id);
                if members.is_empty() {
                    return Err(res.err().map_or_else(
                        || RaftError::Internal("no snapshot".into()),
                        RaftError::from,
                    ));
                }
                let min = first.saturating_sub(1);
                warn!(
                    first_log_index = first,
                    ?members,
                    "no sound local snapshot reaches the raft log; recovering the state from a member"
                );
                loop {
                    match crate::raft::repair::fetch_from_member(
                        exec,
                        cfg.id,
                        &cfg.advertise_addr,
                        &members,
                        min,
                    )
                    .await
                    {
                        Ok((reader, source)) => {
                            info!(%source, "recovered a sound snapshot from a member");
                            drop(reader);
                            break;
                        }
                        Err(e) if started.elapsed() < RECOVER_AT_STARTUP_FOR => {
                            warn!(error = %e, "no sound snapshot from a member yet; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        Err(e) => {
                            return Err(RaftError::Internal(format!(
                                "no sound local snapshot and none from a member within {RECOVER_AT_STARTUP_FOR:?}: {e}"
                            )));
                        }
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Member addresses listed in the `raft/peers.json` of snapshots renamed
/// `*.broken` (the file itself may still be readable).
fn peers_of_broken_snapshots(root: &std::path::Path) -> BTreeMap<u64, String> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(root) else {
        return out;
    };
    for e in dir.flatten() {
        if !e.file_name().to_string_lossy().ends_with(".broken") {
            continue;
        }
        let Ok(bytes) = std::fs::read(e.path().join(crate::raft::fsm::PEERS_FILE)) else {
            continue;
        };
        if let Ok(p) = serde_json::from_slice::<BTreeMap<u64, String>>(&bytes) {
            out.extend(p);
        }
    }
    out
}

/// Starts a node (see [`NodeHandle::start`]).
pub(crate) async fn start<S: ReplicatedStateMachine>(
    cfg: NodeConfig,
    state_machine: S,
    listener: std::net::TcpListener,
    lookup: Option<Arc<dyn LocalFileLookup>>,
) -> Result<NodeHandle<S>, RaftError> {
    cfg.validate().map_err(RaftError::Invalid)?;
    let id = cfg.id;
    let span = info_span!("node", id);
    let addr = listener
        .local_addr()
        .map_err(|e| RaftError::Invalid(format!("listener: {e}")))?;
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| RaftError::Store {
        what: "create data directory",
        path: cfg.data_dir.clone(),
        source,
    })?;
    let throttle = Arc::new(SnapshotThrottle::new(ThrottleOptions {
        send_rate: cfg.snapshot_send_rate,
        recv_rate: cfg.snapshot_recv_rate,
        max_concurrent_sends: cfg.max_concurrent_sends,
        max_concurrent_installs: cfg.max_concurrent_installs,
        ..Default::default()
    }));
    let peers: Peers = Arc::new(RwLock::new(cfg.peers.clone()));
    let members: crate::raft::fsm::Members = Arc::default();
    learn_peer(&peers, id, &cfg.advertise_addr);
    let (storage, exec) =
        open_executor(&cfg, state_machine, peers.clone(), throttle.clone(), lookup)?;
    let log = Arc::new(WalLogStore::open(&cfg.data_dir.join("raft"))?);
    let applied = load_state(&cfg, &storage, &exec, &log).await?;
    info!(
        applied,
        first_log_index = log.first_index(),
        last_log_index = log.last_index(),
        "node starting"
    );

    let (to_loop, inbox) = std::sync::mpsc::channel();
    let (apply_tx, apply_rx) = std::sync::mpsc::channel();
    let (persist_tx, persist_rx) = std::sync::mpsc::channel();
    let registry = ReaderRegistry::new(cfg.reader_idle_lease, throttle.clone());
    let save_tx = apply_tx.clone();
    let source = Arc::new(SnapshotSource::new(
        storage,
        registry.clone(),
        cfg.advertise_addr.clone(),
        peers.clone(),
        Box::new(move || {
            let _ = save_tx.send(ApplyTask::Save);
        }),
    ));
    let rcfg = raft::Config {
        id,
        election_tick: cfg.election_tick,
        heartbeat_tick: cfg.heartbeat_tick,
        applied,
        max_size_per_msg: 1 << 20,
        max_inflight_msgs: 256,
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    };
    let raw = RawNode::new(
        &rcfg,
        RaftStorage {
            log: log.clone(),
            snapshots: source.clone(),
        },
        &crate::raft::slog_bridge::logger(id),
    )?;
    let fault: Fault = Arc::new(Mutex::new(None));
    let (applied_tx, applied_rx) = watch::channel(applied);
    let proposals: Proposals = Arc::new(Mutex::new(HashMap::new()));
    let counters = Arc::new(Mutex::new(RaftCounters::default()));
    let saving = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();

    let shutdown = CancellationToken::new();
    let staging = exec
        .state_machine()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .state_machine
        .staging();
    if let Some(st) = &staging {
        let copier = Arc::new(RemoteFileCopier::new(
            exec.storage().clone(),
            CopierOptions {
                // Every member fetches a staged set from the node that
                // received it at once: fewer streams each bound what that
                // node holds in flight.
                parallel_files: STAGED_PARALLEL_FILES.min(cfg.install_parallel_files),
                chunk_bytes: cfg.install_chunk_bytes.min(STAGED_CHUNK_BYTES),
                ..Default::default()
            },
            throttle.clone(),
        ));
        let members = peers.clone();
        st.attach(
            copier,
            tokio::runtime::Handle::current(),
            id,
            Box::new(move || members.read().map(|p| p.clone()).unwrap_or_default()),
        );
        registry.serve_staging(st.clone());
    }
    let worker = ApplyWorker {
        exec: exec.clone(),
        proposals: proposals.clone(),
        to_loop: to_loop.clone(),
        applied_tx,
        log_gap: cfg.snapshot_log_gap,
        log_bytes: cfg.snapshot_log_bytes,
        saving: saving.clone(),
        log: log.clone(),
        staging: staging.clone(),
        shutdown: shutdown.clone(),
    };
    let sp = span.clone();
    threads.push(spawn_thread(format!("apply-{id}"), move || {
        let _g = sp.enter();
        worker.run(apply_rx)
    })?);

    let (plog, pto_loop, papply, pthrottle) = (
        log.clone(),
        to_loop.clone(),
        apply_tx.clone(),
        throttle.clone(),
    );
    let sp = span.clone();
    threads.push(spawn_thread(format!("raft-sync-{id}"), move || {
        let _g = sp.enter();
        crate::raft::persist::run(plog, persist_rx, pto_loop, papply, pthrottle)
    })?);

    let (findings_tx, findings_rx) = tokio::sync::mpsc::unbounded_channel();
    let repair_status = crate::raft::repair::SharedRepairStatus::default();
    let scrub_status = crate::raft::scrub::SharedScrubStatus::default();
    let transport = Transport {
        id,
        advertise: cfg.advertise_addr.clone(),
        peers: peers.clone(),
        queues: HashMap::new(),
        to_loop: to_loop.clone(),
        install_min_rate: cfg.install_min_rate,
        shutdown: shutdown.clone(),
        source: source.clone(),
        findings: findings_tx.clone(),
    };
    let repairer = crate::raft::repair::Repairer {
        id,
        advertise: cfg.advertise_addr.clone(),
        exec: exec.clone(),
        source: source.clone(),
        log: log.clone(),
        peers: peers.clone(),
        apply_tx: apply_tx.clone(),
        applied_rx: applied_rx.clone(),
        status: repair_status.clone(),
        shutdown: shutdown.clone(),
    };
    let mut tasks = vec![tokio::spawn(
        repairer.run(findings_rx).instrument(span.clone()),
    )];
    let (sexec, sstatus, sshutdown) = (exec.clone(), scrub_status.clone(), shutdown.clone());
    let (sinterval, srate) = (cfg.scrub_interval, cfg.scrub_rate);
    let sfindings = findings_tx.clone();
    let sp = span.clone();
    threads.push(spawn_thread(format!("scrub-{id}"), move || {
        let _g = sp.enter();
        crate::raft::scrub::run(sexec, sinterval, srate, sstatus, sfindings, sshutdown)
    })?);
    let node_loop = Loop {
        id,
        cfg: cfg.clone(),
        raw,
        log: log.clone(),
        inbox,
        apply_tx,
        persist_tx,
        transport,
        source: source.clone(),
        exec: exec.clone(),
        proposals,
        peers: peers.clone(),
        members: members.clone(),
        next_proposal: 0,
        promote: BTreeMap::new(),
        counters: counters.clone(),
        compacting: Arc::new(AtomicBool::new(false)),
        shutdown: shutdown.clone(),
        fault: fault.clone(),
        reads: Reads::default(),
        was_leader: false,
        repair: repair_status,
        scrub: scrub_status,
    };
    // The loop's own OS thread; it enters the runtime so that the transport
    // can spawn its per-peer sender tasks.
    let rt = tokio::runtime::Handle::current();
    let sp = span.clone();
    threads.push(spawn_thread(format!("raft-loop-{id}"), move || {
        let _rt = rt.enter();
        let _g = sp.enter();
        node_loop.run()
    })?);

    tasks.push(registry.spawn_sweeper(Duration::from_secs(5)));
    let handle_peers = peers.clone();
    let service = crate::raft::service::RaftRpc {
        id,
        members: members.clone(),
        to_loop: to_loop.clone(),
        exec: exec.clone(),
        peers,
        applied_rx: applied_rx.clone(),
        proposal_timeout: cfg.proposal_timeout,
        source: source.clone(),
        staging: staging.clone(),
        shutdown: shutdown.clone(),
    };
    listener
        .set_nonblocking(true)
        .map_err(|e| RaftError::Invalid(format!("listener: {e}")))?;
    let files = SnapshotFileService::new(registry, throttle);
    // Bulk file streams are plain TCP: only without TLS between nodes.
    let bulk = crate::raft::peer_tls::current()
        .is_none()
        .then(|| files.bulk());
    let files = files.into_server();
    let sd = shutdown.clone();
    tasks.push(tokio::spawn(
        async move {
            let incoming = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => crate::snapshot::split_incoming(l, bulk),
                Err(e) => {
                    error!(error = %e, "cannot serve gRPC");
                    return;
                }
            };
            let mut server = tonic::transport::Server::builder();
            if let Some(tls) = crate::raft::peer_tls::current() {
                server = match server.tls_config(tls.server()) {
                    Ok(s) => s,
                    Err(e) => {
                        error!(error = %e, "cannot serve gRPC over TLS");
                        return;
                    }
                };
            }
            let res = server
                .add_service(service.into_server())
                .add_service(files)
                .serve_with_incoming_shutdown(incoming, sd.cancelled())
                .await;
            if let Err(e) = res {
                error!(error = %e, "gRPC server stopped");
            }
        }
        .instrument(span),
    ));
    Ok(NodeHandle {
        inner: Arc::new(HandleInner {
            id,
            addr,
            cfg,
            to_loop,
            exec,
            applied_rx,
            log: Mutex::new(Some(log)),
            counters,
            saving,
            shutdown,
            fault,
            tasks: Mutex::new(tasks),
            threads: Mutex::new(threads),
            findings: findings_tx,
            staging,
            peers: handle_peers,
        }),
    })
}
