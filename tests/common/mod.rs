//! Shared test helpers: an in-memory KV state machine that persists into its
//! snapshot (proving the snapshot layer works with any state machine), and a
//! snapshot-serving gRPC endpoint.
#![allow(dead_code)]

pub mod file_server;
pub mod kv_fsm;
