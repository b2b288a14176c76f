//! The node's statistics and diagnostics as influxd reports them:
//! `SHOW STATS [FOR 'module']`, `/debug/vars` (what Telegraf's `influxdb`
//! input reads) and `SHOW DIAGNOSTICS`. The `database` and `shard`
//! modules come from a read view of the store; `queryExecutor` from the
//! query registry; `raft`, `snapshot` and `runtime` are tsnode's own (the
//! raft log, snapshots, and the process as the kernel sees it).

use std::sync::OnceLock;
use std::time::Instant;

use serde_json::{Value, json};

use super::queries::QueryRegistry;
use crate::raft::{NodeHandle, RaftError, ReadConsistency};
use crate::tsdb::fsm::Tsdb;
use crate::tsdb::statistics::Statistic;
use crate::tsdb::timefmt::rfc3339_nano;

/// When the node's HTTP service started: (monotonic, ns since the epoch).
static STARTED: OnceLock<(Instant, i64)> = OnceLock::new();

/// Notes the start (the first call wins).
pub fn mark_started() {
    started();
}

fn started() -> (Instant, i64) {
    *STARTED.get_or_init(|| (Instant::now(), super::http::now_ns()))
}

/// Every statistic of the node now.
pub async fn statistics(
    node: &NodeHandle<Tsdb>,
    queries: &QueryRegistry,
    forwarder: &crate::server::subscriber::Subscriber,
) -> Result<Vec<Statistic>, RaftError> {
    let mut out = Vec::new();
    // influxd's subscriber figures (and the writes a full queue dropped).
    let f = &forwarder.stats;
    let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    out.push(Statistic::new(
        "subscriber",
        &[],
        &[
            ("createFailures", 0),
            ("pointsWritten", get(&f.points_written)),
            ("writeFailures", get(&f.write_failures)),
            ("writesDropped", get(&f.dropped)),
        ],
    ));
    let (running, executed, finished, duration) = queries.counts();
    out.push(Statistic::new(
        "queryExecutor",
        &[],
        &[
            ("queriesActive", running),
            ("queriesExecuted", executed),
            ("queriesFinished", finished),
            ("queryDurationNs", duration),
            ("recoveredPanics", 0),
        ],
    ));
    let status = node.status().await?;
    out.push(Statistic::new(
        "raft",
        &[("id", &status.id.to_string())],
        &[
            ("isLeader", u64::from(status.role == "leader")),
            ("leaderId", status.leader_id),
            ("term", status.term),
            ("commitIndex", status.commit_index),
            ("appliedIndex", status.applied_index),
            ("firstLogIndex", status.first_log_index),
            ("lastLogIndex", status.last_log_index),
            ("voters", status.voters.len() as u64),
            ("learners", status.learners.len() as u64),
        ],
    ));
    let x = node.snapshot_stats();
    out.push(Statistic::new(
        "snapshot",
        &[],
        &[
            ("saves", x.saves_total),
            ("saveFailures", x.save_failures_total),
            ("installs", x.installs_total),
            ("installFailures", x.install_failures_total),
            ("installBytes", x.install_bytes_total),
            ("servedBytes", x.served_bytes_total),
            ("reusedBytes", x.reused_bytes_total),
            ("lastIndex", status.snapshot.last_index),
        ],
    ));
    let (rss, threads) = process_figures();
    out.push(Statistic::new(
        "runtime",
        &[],
        &[("rssBytes", rss), ("threads", threads)],
    ));
    out.extend(
        node.read(ReadConsistency::Stale, |t, _| t.statistics())
            .await?,
    );
    Ok(out)
}

/// The `SHOW STATS [FOR 'module']` result (a module nobody reports: no
/// series, as influxd).
pub fn show_stats(stats: &[Statistic], module: Option<&str>) -> Value {
    let series: Vec<Value> = stats
        .iter()
        .filter(|s| module.is_none_or(|m| s.name == m))
        .map(Statistic::show_series)
        .collect();
    if series.is_empty() {
        return json!({});
    }
    json!({ "series": series })
}

/// The `/debug/vars` document: `system`, `cmdline`, then each statistic
/// under its key.
pub fn debug_vars(stats: &[Statistic]) -> Value {
    let (at, wall) = started();
    let mut doc = serde_json::Map::new();
    doc.insert(
        "system".into(),
        json!({
            "currentTime": rfc3339_nano(super::http::now_ns()),
            "started": rfc3339_nano(wall),
            "uptime": at.elapsed().as_secs(),
        }),
    );
    doc.insert(
        "cmdline".into(),
        json!(std::env::args().collect::<Vec<_>>()),
    );
    for s in stats {
        doc.insert(s.vars_key(), s.vars_value());
    }
    Value::Object(doc)
}

/// The `SHOW DIAGNOSTICS` result: `build`, `network`, `raft`, `runtime`
/// and `system`, one row each.
pub async fn show_diagnostics(node: &NodeHandle<Tsdb>) -> Result<Value, RaftError> {
    let status = node.status().await?;
    let (at, wall) = started();
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let one = |name: &str, columns: &[&str], row: Value| json!({"name": name, "columns": columns, "values": [row]});
    Ok(json!({ "series": [
        one(
            "build",
            &["Branch", "Build Time", "Commit", "Version"],
            json!(["", "", "", super::http::INFLUX_VERSION]),
        ),
        one("network", &["hostname"], json!([hostname()])),
        one(
            "raft",
            &["appliedIndex", "id", "leader", "role", "term", "voters"],
            json!([
                status.applied_index,
                status.id,
                status.leader_id,
                status.role,
                status.term,
                status.voters,
            ]),
        ),
        one(
            "runtime",
            &["arch", "cpus", "os", "version"],
            json!([
                std::env::consts::ARCH,
                cpus,
                std::env::consts::OS,
                env!("CARGO_PKG_VERSION"),
            ]),
        ),
        one(
            "system",
            &["PID", "currentTime", "started", "uptime"],
            json!([
                std::process::id(),
                rfc3339_nano(super::http::now_ns()),
                rfc3339_nano(wall),
                crate::tsdb::timefmt::go_duration(
                    i64::try_from(at.elapsed().as_nanos()).unwrap_or(i64::MAX)
                ),
            ]),
        ),
    ]}))
}

/// The machine's name, as the kernel has it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// (resident bytes, threads) of this process, from `/proc/self/status`
/// (0 where it cannot be read).
fn process_figures() -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string("/proc/self/status") else {
        return (0, 0);
    };
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:") * 1024, field("Threads:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_stats_filters_by_module_and_answers_nothing_for_an_unknown_one() {
        let stats = vec![
            Statistic::new("queryExecutor", &[], &[("queriesActive", 1)]),
            Statistic::new("database", &[("database", "d")], &[("numSeries", 2)]),
        ];
        let all = show_stats(&stats, None);
        assert_eq!(all["series"].as_array().map(Vec::len), Some(2));
        let one = show_stats(&stats, Some("database"));
        assert_eq!(one["series"][0]["tags"]["database"], "d");
        assert_eq!(show_stats(&stats, Some("nosuch")), json!({}));
        let vars = debug_vars(&stats);
        assert_eq!(vars["database:d"]["values"]["numSeries"], 2);
        assert!(vars["system"]["uptime"].is_u64());
    }

    #[test]
    fn this_process_has_a_resident_size_and_threads() {
        let (rss, threads) = process_figures();
        assert!(rss > 0 && threads > 0);
    }
}
