//! The time-series state machine (DESIGN §4): line protocol, InfluxDB 1.x's
//! TSM file format, and (to come) the metastore, shards and queries.

pub mod fsm;
pub mod line_protocol;
pub mod meta;
pub mod query;
pub mod shard;
pub mod timefmt;
pub mod tsm;
