//! `tsnode serve` configuration: every knob of DESIGN §5 as a flag
//! (`--knob-name`) and a TOML key (`knob_name`); flags win over the file.
//! Sizes take units (`64MiB`, `1GB`, `4096`), rates `100MiB/s`, durations
//! `30s` / `5m` / `1h` / `250ms`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::raft::NodeConfig;

/// Parses a size: a number with an optional unit (B, KB, KiB, MB, MiB, GB, GiB, TB, TiB).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1048576.0,
        "g" | "gb" => 1e9,
        "gib" => 1073741824.0,
        "t" | "tb" => 1e12,
        "tib" => 1099511627776.0,
        _ => return Err(format!("invalid size unit in {s:?}")),
    };
    let v = n * mult;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(format!("size {s:?} out of range"));
    }
    Ok(v as u64)
}

/// Parses a rate (`100MiB/s`); `unlimited`, `0` or empty = no limit.
pub fn parse_rate(s: &str) -> Result<Option<u64>, String> {
    let t = s.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("unlimited") || t == "0" {
        return Ok(None);
    }
    let v = parse_size(t.strip_suffix("/s").unwrap_or(t))?;
    Ok((v > 0).then_some(v))
}

/// Parses a duration (`250ms`, `30s`, `5m`, `1h`, `2d`; a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let ns = crate::tsdb::query::parse_duration(t)?;
    u64::try_from(ns)
        .map(Duration::from_nanos)
        .map_err(|_| format!("negative duration {s:?}"))
}

/// Parses `1=host:port,2=host:port`.
pub fn parse_peers(s: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("peer {part:?} is not id=host:port"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("peer id {id:?} is not a number"))?;
        if id == 0 || addr.trim().is_empty() {
            return Err(format!(
                "peer {part:?}: id must be non-zero and the address given"
            ));
        }
        if out.insert(id, addr.trim().to_string()).is_some() {
            return Err(format!("peer {id} given twice"));
        }
    }
    Ok(out)
}

/// The flags of `tsnode serve`. Every field is optional so the TOML file
/// (`--config`) can supply it; flags win.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// A TOML file with the same keys (underscores).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Node id (non-zero). Default 1.
    #[arg(long)]
    pub id: Option<u64>,
    /// Data directory. Default `./tsnode-<id>`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// gRPC address (raft, snapshots). Default 127.0.0.1:7000+id.
    #[arg(long)]
    pub raft_addr: Option<String>,
    /// HTTP API address. Default 127.0.0.1:8086 for id 1, 8086+10×(id−1) after.
    #[arg(long)]
    pub http_addr: Option<String>,
    /// InfluxDB snapshotter (backup) address. Default 127.0.0.1:8088 for id 1.
    #[arg(long)]
    pub snapshotter_addr: Option<String>,
    /// Snapshotter: time allowed for a request's header, and the longest a
    /// client may stall later (30s).
    #[arg(long)]
    pub snapshotter_timeout: Option<String>,
    /// Snapshotter: largest metastore upload of a restore (256MiB).
    #[arg(long)]
    pub snapshotter_max_upload: Option<String>,
    /// Largest /write body, as influxd's `max-body-size` (25000000 bytes;
    /// 0 = no limit); a larger one gets 413.
    #[arg(long)]
    pub max_body_size: Option<String>,
    /// HTTP connections held at once, as influxd's `max-connection-limit`
    /// (0 = bounded only by the open-file limit less a reserve for raft);
    /// one over it is closed at once.
    #[arg(long)]
    pub max_connection_limit: Option<u64>,
    /// Series a database may hold, as influxd's `max-series-per-database`
    /// (1000000; 0 = no limit): a write's points of new series past it are
    /// dropped with influxd's message.
    #[arg(long)]
    pub max_series_per_database: Option<u64>,
    /// Values a tag key of a measurement may have, as influxd's
    /// `max-values-per-tag` (100000; 0 = no limit).
    #[arg(long)]
    pub max_values_per_tag: Option<u64>,
    /// A query running longer is interrupted (`query-timeout limit
    /// exceeded`), as influxd's `query-timeout` (0 = never).
    #[arg(long)]
    pub query_timeout: Option<String>,
    /// Most points one SELECT may read, as influxd's `max-select-point`
    /// (0 = no limit).
    #[arg(long)]
    pub max_select_point: Option<u64>,
    /// Most series one SELECT may read, as influxd's `max-select-series`
    /// (0 = no limit).
    #[arg(long)]
    pub max_select_series: Option<u64>,
    /// Most `GROUP BY time` buckets one SELECT may ask for, as influxd's
    /// `max-select-buckets` (0 = no limit).
    #[arg(long)]
    pub max_select_buckets: Option<u64>,
    /// TSM files in a shard that start a background merge (4; 0 = never
    /// merge, which also leaves deleted points in their files, hidden by
    /// tombstones, until a merge runs).
    #[arg(long)]
    pub merge_files: Option<usize>,
    /// How often the leader drops the shard groups its retention policies
    /// no longer keep, as influxd's `[retention] check-interval` (30m;
    /// 0 = never).
    #[arg(long)]
    pub retention_check_interval: Option<String>,
    /// The longest a client may take to send a request's header, and the
    /// longest a body it is sending may stall (30s; 0 = no limit): slow
    /// clients are disconnected instead of holding connections.
    #[arg(long)]
    pub http_read_timeout: Option<String>,
    /// Writes served at once, as influxd's `max-concurrent-write-limit`
    /// (0 = no throttle).
    #[arg(long)]
    pub max_concurrent_write_limit: Option<usize>,
    /// Writes that may wait for a slot, as influxd's
    /// `max-enqueued-write-limit`; beyond it, 503 "queue full".
    #[arg(long)]
    pub max_enqueued_write_limit: Option<usize>,
    /// The longest a write waits for a slot (30s), as influxd's
    /// `enqueued-write-timeout`.
    #[arg(long)]
    pub enqueued_write_timeout: Option<String>,
    /// Ask for credentials and check users' privileges, as influxd's
    /// `auth-enabled` (users are created with InfluxQL; the first must be
    /// an admin).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub auth_enabled: Option<bool>,
    /// The secret that signs JWT bearer tokens, as influxd's
    /// `shared-secret` (unset: bearer tokens are refused).
    #[arg(long)]
    pub shared_secret: Option<String>,
    /// With authentication on, let snapshotter (backup/restore) clients
    /// connect from other hosts than this one (default: loopback only).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub snapshotter_allow_remote: Option<bool>,
    /// The cluster's CA (PEM): with `node_certificate` and
    /// `node_private_key`, nodes talk mutual TLS on the raft (gRPC) port
    /// and refuse peers whose certificate the CA did not sign.
    #[arg(long)]
    pub cluster_ca: Option<PathBuf>,
    /// This node's certificate (PEM chain, signed by `cluster_ca`), naming
    /// `tsnode` and `node-<id>` as DNS subject alternative names.
    #[arg(long)]
    pub node_certificate: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long)]
    pub node_private_key: Option<PathBuf>,
    /// Serve the HTTP API over TLS (HTTPS), as influxd's `https-enabled`.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub https_enabled: Option<bool>,
    /// PEM certificate chain for HTTPS.
    #[arg(long)]
    pub https_certificate: Option<PathBuf>,
    /// PEM private key for HTTPS (default: read from the certificate file).
    #[arg(long)]
    pub https_private_key: Option<PathBuf>,
    /// Initial cluster: `1=host:port,2=host:port` (gRPC addresses).
    #[arg(long)]
    pub peers: Option<String>,
    /// Join an existing cluster through any member's gRPC address.
    #[arg(long)]
    pub join: Option<String>,
    /// Applied entries since the last snapshot that trigger one (10000).
    #[arg(long)]
    pub snapshot_log_gap: Option<u64>,
    /// Raft log bytes since the last snapshot that trigger one (256MiB).
    #[arg(long)]
    pub snapshot_log_bytes: Option<String>,
    /// Snapshot timer (3600s; 0 = off).
    #[arg(long)]
    pub snapshot_interval: Option<String>,
    /// Fewest new entries for a save (1).
    #[arg(long)]
    pub snapshot_min_gap: Option<u64>,
    /// Entries kept behind a snapshot (5000).
    #[arg(long)]
    pub trailing_logs: Option<u64>,
    /// Snapshots kept (1).
    #[arg(long)]
    pub snapshot_retain: Option<usize>,
    /// Files fetched at once by an install (4).
    #[arg(long)]
    pub install_parallel_files: Option<usize>,
    /// Chunk size of an install (1MiB).
    #[arg(long)]
    pub install_chunk_bytes: Option<String>,
    /// Rate snapshots are served at (unlimited).
    #[arg(long)]
    pub snapshot_send_rate: Option<String>,
    /// Rate snapshots are fetched at (unlimited).
    #[arg(long)]
    pub snapshot_recv_rate: Option<String>,
    /// Snapshots served at once (4).
    #[arg(long)]
    pub max_concurrent_sends: Option<usize>,
    /// Snapshots installed at once (2).
    #[arg(long)]
    pub max_concurrent_installs: Option<usize>,
    /// Idle time before a served snapshot reader is released (300s).
    #[arg(long)]
    pub reader_idle_lease: Option<String>,
    /// Slowest install rate the install deadline allows (1MiB/s).
    #[arg(long)]
    pub install_min_rate: Option<String>,
    /// Time between background scrubs of snapshots and live files (24h; 0 = off).
    #[arg(long)]
    pub scrub_interval: Option<String>,
    /// Rate the scrub reads at (50MiB/s).
    #[arg(long)]
    pub scrub_rate: Option<String>,
}

/// The TOML file: the same keys as the flags.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    id: Option<u64>,
    data_dir: Option<PathBuf>,
    raft_addr: Option<String>,
    http_addr: Option<String>,
    snapshotter_addr: Option<String>,
    snapshotter_timeout: Option<toml::Value>,
    snapshotter_max_upload: Option<toml::Value>,
    max_body_size: Option<toml::Value>,
    max_connection_limit: Option<u64>,
    http_read_timeout: Option<toml::Value>,
    query_timeout: Option<toml::Value>,
    retention_check_interval: Option<toml::Value>,
    max_select_point: Option<u64>,
    max_select_series: Option<u64>,
    max_select_buckets: Option<u64>,
    merge_files: Option<usize>,
    max_series_per_database: Option<u64>,
    max_values_per_tag: Option<u64>,
    max_concurrent_write_limit: Option<usize>,
    max_enqueued_write_limit: Option<usize>,
    enqueued_write_timeout: Option<toml::Value>,
    auth_enabled: Option<bool>,
    shared_secret: Option<String>,
    snapshotter_allow_remote: Option<bool>,
    cluster_ca: Option<PathBuf>,
    node_certificate: Option<PathBuf>,
    node_private_key: Option<PathBuf>,
    https_enabled: Option<bool>,
    https_certificate: Option<PathBuf>,
    https_private_key: Option<PathBuf>,
    peers: Option<String>,
    join: Option<String>,
    snapshot_log_gap: Option<u64>,
    snapshot_log_bytes: Option<toml::Value>,
    snapshot_interval: Option<toml::Value>,
    snapshot_min_gap: Option<u64>,
    trailing_logs: Option<u64>,
    snapshot_retain: Option<usize>,
    install_parallel_files: Option<usize>,
    install_chunk_bytes: Option<toml::Value>,
    snapshot_send_rate: Option<toml::Value>,
    snapshot_recv_rate: Option<toml::Value>,
    max_concurrent_sends: Option<usize>,
    max_concurrent_installs: Option<usize>,
    reader_idle_lease: Option<toml::Value>,
    install_min_rate: Option<toml::Value>,
    scrub_interval: Option<toml::Value>,
    scrub_rate: Option<toml::Value>,
}

fn text(v: Option<toml::Value>) -> Option<String> {
    v.map(|v| match v {
        toml::Value::String(s) => s,
        other => other.to_string(),
    })
}

/// Everything `serve` needs, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The raft node's configuration.
    pub node: NodeConfig,
    /// HTTP API address.
    pub http_addr: String,
    /// Snapshotter address.
    pub snapshotter_addr: String,
    /// Snapshotter limits.
    pub snapshotter_limits: crate::snapshotter::server::Limits,
    /// HTTP API limits.
    pub http_limits: crate::server::http::HttpLimits,
    /// Authentication.
    pub auth: crate::server::auth::AuthConfig,
    /// Mutual TLS between nodes: (CA, certificate, key).
    pub peer_tls: Option<(PathBuf, PathBuf, PathBuf)>,
    /// HTTPS certificate (PEM chain), when HTTPS is enabled.
    pub https_certificate: Option<PathBuf>,
    /// HTTPS private key (PEM), when not in the certificate's file.
    pub https_private_key: Option<PathBuf>,
    /// Address to join through, if joining.
    pub join: Option<String>,
    /// How often the leader enforces retention (zero: never).
    pub retention_check_interval: std::time::Duration,
    /// TSM files in a shard that start a background merge (`None`: never).
    pub merge_files: Option<usize>,
}

impl ServeArgs {
    /// Merges the flags over the TOML file (if any) and the defaults.
    pub fn resolve(&self) -> Result<Settings, String> {
        let file: FileConfig = match &self.config {
            Some(p) => {
                let s =
                    std::fs::read_to_string(p).map_err(|e| format!("read {}: {e}", p.display()))?;
                toml::from_str(&s).map_err(|e| format!("{}: {e}", p.display()))?
            }
            None => FileConfig::default(),
        };
        let id = self.id.or(file.id).unwrap_or(1);
        let raft_addr = self
            .raft_addr
            .clone()
            .or(file.raft_addr)
            .unwrap_or_else(|| format!("127.0.0.1:{}", 7000 + id));
        let data_dir = self
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(format!("tsnode-{id}")));
        let mut n = NodeConfig::new(id, data_dir, raft_addr.clone());
        let join = self.join.clone().or(file.join);
        let peers = self.peers.clone().or(file.peers);
        n.peers = match (&peers, &join) {
            (Some(_), Some(_)) => return Err("give --peers or --join, not both".into()),
            (Some(p), None) => parse_peers(p)?,
            (None, Some(_)) => BTreeMap::new(),
            (None, None) => [(id, raft_addr.clone())].into(),
        };
        macro_rules! pick {
            ($field:ident) => {
                self.$field.clone().or(file.$field)
            };
            ($field:ident, text) => {
                self.$field.clone().or(text(file.$field))
            };
        }
        if let Some(v) = pick!(snapshot_log_gap) {
            n.snapshot_log_gap = v;
        }
        if let Some(v) = pick!(snapshot_log_bytes, text) {
            n.snapshot_log_bytes = parse_size(&v)?;
        }
        if let Some(v) = pick!(snapshot_interval, text) {
            n.snapshot_interval = parse_duration(&v)?;
        }
        if let Some(v) = pick!(snapshot_min_gap) {
            n.snapshot_min_gap = v;
        }
        if let Some(v) = pick!(trailing_logs) {
            n.trailing_logs = v;
        }
        if let Some(v) = pick!(snapshot_retain) {
            n.snapshot_retain = v;
        }
        if let Some(v) = pick!(install_parallel_files) {
            n.install_parallel_files = v;
        }
        if let Some(v) = pick!(install_chunk_bytes, text) {
            n.install_chunk_bytes = u32::try_from(parse_size(&v)?)
                .map_err(|_| "install_chunk_bytes over 4 GiB".to_string())?;
        }
        if let Some(v) = pick!(snapshot_send_rate, text) {
            n.snapshot_send_rate = parse_rate(&v)?;
        }
        if let Some(v) = pick!(snapshot_recv_rate, text) {
            n.snapshot_recv_rate = parse_rate(&v)?;
        }
        if let Some(v) = pick!(max_concurrent_sends) {
            n.max_concurrent_sends = v;
        }
        if let Some(v) = pick!(max_concurrent_installs) {
            n.max_concurrent_installs = v;
        }
        if let Some(v) = pick!(reader_idle_lease, text) {
            n.reader_idle_lease = parse_duration(&v)?;
        }
        if let Some(v) = pick!(install_min_rate, text) {
            n.install_min_rate =
                parse_rate(&v)?.ok_or("install_min_rate must be a positive rate")?;
        }
        if let Some(v) = pick!(scrub_interval, text) {
            n.scrub_interval = parse_duration(&v)?;
        }
        if let Some(v) = pick!(scrub_rate, text) {
            n.scrub_rate = parse_rate(&v)?.ok_or("scrub_rate must be a positive rate")?;
        }
        n.validate()?;
        let mut limits = crate::snapshotter::server::Limits::default();
        if let Some(v) = pick!(snapshotter_timeout, text) {
            limits.header_timeout = parse_duration(&v)?;
            if limits.header_timeout.is_zero() {
                return Err("snapshotter_timeout must be above 0".into());
            }
        }
        if let Some(v) = pick!(snapshotter_max_upload, text) {
            limits.max_upload = parse_size(&v)?;
        }
        let mut http_limits = crate::server::http::HttpLimits::default();
        if let Some(v) = pick!(max_body_size, text) {
            http_limits.max_body_size = parse_size(&v)?;
        }
        if let Some(v) = pick!(max_connection_limit) {
            http_limits.max_connection_limit = v;
        }
        if let Some(v) = pick!(max_series_per_database) {
            http_limits.series.max_series_per_database = v;
        }
        if let Some(v) = pick!(max_values_per_tag) {
            http_limits.series.max_values_per_tag = v;
        }
        if let Some(v) = pick!(max_select_point) {
            http_limits.select.max_select_point = v;
        }
        if let Some(v) = pick!(max_select_series) {
            http_limits.select.max_select_series = v;
        }
        if let Some(v) = pick!(max_select_buckets) {
            http_limits.select.max_select_buckets = v;
        }
        if let Some(v) = pick!(query_timeout, text) {
            http_limits.query_timeout = parse_duration(&v)?;
        }
        if let Some(v) = pick!(http_read_timeout, text) {
            http_limits.read_timeout = parse_duration(&v)?;
        }
        if let Some(v) = pick!(max_concurrent_write_limit) {
            http_limits.writes.max_concurrent = v;
        }
        if let Some(v) = pick!(max_enqueued_write_limit) {
            http_limits.writes.max_enqueued = v;
        }
        if let Some(v) = pick!(enqueued_write_timeout, text) {
            http_limits.writes.enqueued_timeout = parse_duration(&v)?;
        }
        let https_certificate = match pick!(https_enabled).unwrap_or(false) {
            false => None,
            true => Some(
                pick!(https_certificate)
                    .ok_or("https_enabled needs https_certificate (a PEM file)")?,
            ),
        };
        let https_private_key = pick!(https_private_key);
        let auth = crate::server::auth::AuthConfig {
            enabled: pick!(auth_enabled).unwrap_or(false),
            shared_secret: pick!(shared_secret).unwrap_or_default(),
        };
        let snapshotter_allow_remote =
            !auth.enabled || pick!(snapshotter_allow_remote).unwrap_or(false);
        limits.remote_allowed = snapshotter_allow_remote;
        let peer_tls = match (
            pick!(cluster_ca),
            pick!(node_certificate),
            pick!(node_private_key),
        ) {
            (None, None, None) => None,
            (Some(ca), Some(cert), Some(key)) => Some((ca, cert, key)),
            _ => {
                return Err(
                    "TLS between nodes needs all of cluster_ca, node_certificate and node_private_key"
                        .into(),
                );
            }
        };
        let retention_check_interval = match pick!(retention_check_interval, text) {
            Some(v) => parse_duration(&v)?,
            None => crate::server::retention::DEFAULT_CHECK_INTERVAL,
        };
        let merge_files = match pick!(merge_files) {
            Some(0) => None,
            Some(n) => Some(n),
            None => Some(crate::tsdb::fsm::DEFAULT_MERGE_FILES),
        };
        let port = |base: u64| base + 10 * (id - 1);
        Ok(Settings {
            merge_files,
            node: n,
            http_addr: self
                .http_addr
                .clone()
                .or(file.http_addr)
                .unwrap_or_else(|| format!("127.0.0.1:{}", port(8086))),
            snapshotter_addr: self
                .snapshotter_addr
                .clone()
                .or(file.snapshotter_addr)
                .unwrap_or_else(|| format!("127.0.0.1:{}", port(8088))),
            snapshotter_limits: limits,
            http_limits,
            auth,
            peer_tls,
            https_certificate,
            https_private_key,
            join,
            retention_check_interval,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("12 parsecs").is_err());
        assert_eq!(parse_rate("100MiB/s").unwrap(), Some(100 << 20));
        assert_eq!(parse_rate("unlimited").unwrap(), None);
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_peers("1=a:1, 2=b:2").unwrap().len(), 2);
        assert!(parse_peers("1=a:1,1=b:2").is_err());
        assert!(parse_peers("x=a:1").is_err());
    }

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("node.toml");
        std::fs::write(&f, "id = 2\npeers = \"1=127.0.0.1:7001,2=127.0.0.1:7002\"\nsnapshot_log_gap = 50\nsnapshot_recv_rate = \"10MiB/s\"\nsnapshot_interval = \"5m\"\ninstall_chunk_bytes = 65536\n").unwrap();
        let a = ServeArgs {
            config: Some(f.clone()),
            snapshot_log_gap: Some(70),
            ..Default::default()
        };
        let s = a.resolve().unwrap();
        assert_eq!(s.node.id, 2);
        assert_eq!(s.node.snapshot_log_gap, 70, "the flag wins");
        assert_eq!(s.node.snapshot_recv_rate, Some(10 << 20));
        assert_eq!(s.node.snapshot_interval, Duration::from_secs(300));
        assert_eq!(s.node.install_chunk_bytes, 65536);
        assert_eq!(s.node.trailing_logs, 5000, "default");
        assert_eq!(s.http_addr, "127.0.0.1:8096");
        assert_eq!(s.snapshotter_limits.max_upload, 256 << 20, "default");
        std::fs::write(&f, "idd = 2\n").unwrap();
        assert!(
            ServeArgs {
                config: Some(f),
                ..Default::default()
            }
            .resolve()
            .unwrap_err()
            .contains("unknown field")
        );
        let s = ServeArgs::default().resolve().unwrap();
        assert_eq!(s.node.peers.len(), 1, "alone it is a one-node cluster");
        assert!(
            ServeArgs {
                peers: Some("1=a:1".into()),
                join: Some("b:2".into()),
                ..Default::default()
            }
            .resolve()
            .is_err()
        );
    }
}
