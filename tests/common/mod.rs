//! Shared test helpers: an in-memory KV state machine that persists into its
//! snapshot, proving the snapshot layer works with any state machine.
#![allow(dead_code)]

pub mod kv_fsm;
