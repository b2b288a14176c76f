//! # raftsnap
//!
//! A Raft-integrated snapshot subsystem and `tsnode`, the clustered
//! time-series node built on it. See `DESIGN.md` (the contract between the
//! parts) and `README.md`.
//!
//! - [`snapshot`]: the meta table, refcounted local storage, writer/reader,
//!   the executor that drives save, install and load, the remote file
//!   copier with its gRPC service and [`snapshot::bulk`] streams (files
//!   sent with `sendfile` on the gRPC port), the throttle, and the contract a
//!   replicated state machine implements ([`snapshot::ReplicatedStateMachine`]:
//!   typed commands and answers, a total `apply`, read views), and
//!   [`snapshot::integrity`] (files re-read against their recorded crc32c,
//!   at a paced rate), [`snapshot::direct_io`] (installs written past the
//!   page cache), [`snapshot::yield_to_log`] (sends paced while the raft
//!   log syncs) and [`snapshot::staging`] (bulk data that travels by file:
//!   staged sets served to, and fetched from, any replica that holds them).
//! - [`raft`]: raft-rs glue. [`raft::wal`] is the durable log (segments,
//!   crc32c per record, `fdatasync` as the commit point); [`raft::handle`]
//!   the one door to a node (`propose`, `read`); [`raft::ready_loop`] the
//!   raft loop on its own thread with the sync thread ([`raft::persist`]),
//!   read-index rounds, membership and compaction beside it;
//!   [`raft::bootstrap`] starts a node (past snapshots that fail
//!   verification); [`raft::repair`] heals damaged snapshots and live files
//!   from sound snapshots, found by installs, [`raft::scrub`], backups and
//!   queries; [`raft::snapshot_source`] offers snapshots and backs off
//!   failing installs; `raft::peer_sources` finds the other members'
//!   snapshots an install also fetches from; `raft::sender_check` decides
//!   which raft messages are stepped, by sender; [`raft::peer_tls`] is
//!   mutual TLS between nodes (the certificate names the sender).
//! - [`tsdb`]: the time-series state machine: line protocol, TSM files
//!   and their tombstone files ([`tsdb::tsm::tombstone`]: deletes),
//!   metastore, shards (cache segments + immutable files), read views,
//!   [`tsdb::query`] (InfluxQL: lexer, parser, AST, conditions, the scan
//!   planned on the series index, aggregates, transformations, deletes,
//!   `INTO`), [`tsdb::key_index`] (the series index of one TSM file or
//!   cache segment: measurement → fields, tag keys, tag value → keys),
//!   [`tsdb::write_batch`] (writes proposed grouped by series),
//!   [`tsdb::ingest`] (TSM files checked whole and linked into a shard by
//!   one `IngestFiles` command), [`tsdb::users`] and [`tsdb::authorize`]
//!   (users, privileges and what each statement requires, as influxd's),
//!   [`tsdb::series_index`] (series and tag values per database, for
//!   influxd's cardinality limits) and [`tsdb::statistics`] (influxd's
//!   statistic: module, tags, values).
//! - [`snapshotter`]: InfluxDB 1.x's backup protocol (server, client,
//!   portable format) and restores through raft.
//! - [`server`], [`cli`], [`demo`]: `tsnode serve`, the HTTP API (with
//!   [`server::auth`], credentials as influxd's; [`server::serve`], the
//!   accept loop with its header deadline; [`server::import`], TSM files
//!   imported by file; [`server::process`], the open-file limit;
//!   [`server::retention`] and [`server::continuous_queries`], the leader's
//!   services; [`server::select_into`], `SELECT … INTO`;
//!   [`server::stats`], `SHOW STATS`, `/debug/vars` and `SHOW
//!   DIAGNOSTICS`), the CLI.
#![deny(missing_docs)]

pub mod batch_store;
pub mod cli;
pub mod demo;
pub mod progress;
pub mod proto;
pub mod raft;
pub mod server;
pub mod snapshot;
pub mod snapshotter;
pub mod tsdb;
