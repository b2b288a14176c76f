//! InfluxDB 1.x backup interoperability: the portable backup format (the
//! snapshotter service (in progress) and `tsnode backup`/`restore` come in Part 6).

pub mod portable;
pub mod server;
