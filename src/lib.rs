//! # raftsnap
//!
//! A Raft-integrated snapshot subsystem and `tsnode`, the clustered
//! time-series node built on it. See `DESIGN.md` (the contract between the
//! parts) and `README.md`.
//!
//! - [`snapshot`]: the meta table, refcounted local storage, writer/reader and
//!   the executor that drives save and load.
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
