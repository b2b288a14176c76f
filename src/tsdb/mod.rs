//! The time-series state machine (DESIGN §4): line protocol, InfluxDB 1.x's
//! TSM file format, the metastore, shards, queries, and the write command.

pub mod authorize;
pub mod fsm;
pub mod ingest;
pub mod key_index;
pub mod line_protocol;
pub mod meta;
pub mod query;
pub mod series_index;
pub mod shard;
pub mod statistics;
pub mod timefmt;
pub mod tsm;
pub mod users;
pub mod write_batch;
