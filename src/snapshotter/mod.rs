//! InfluxDB 1.x backup interoperability: the snapshotter service (the
//! backup and restore protocol `influxd backup`/`restore` speak), its
//! client, and the portable backup format `tsnode backup`/`restore` write
//! and read.

pub mod client;
pub mod portable;
pub mod restore;
pub mod server;
pub mod wire;
