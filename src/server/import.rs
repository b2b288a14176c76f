//! `POST /import?db=<db>[&rp=<rp>]`: TSM files (a tar of them, streamed)
//! ingested by file (DESIGN §3 "Bulk data by file"). Each file is staged
//! and read whole; a file whose points span several shard groups of the
//! retention policy is split at the groups' bounds; each group's files are
//! fetched by the other members and linked into its shard by one
//! `IngestFiles` command. `tsnode import` is the client.

use std::collections::BTreeMap;
use std::io::Read;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use futures::TryStreamExt;
use serde_json::json;
use tracing::info;

use crate::raft::NodeHandle;
use crate::snapshot::{StageWriter, StagingArea};
use crate::snapshotter::restore::{MAX_UPLOAD_TSM, checked_entry, ingest_stage};
use crate::tsdb::fsm::Tsdb;
use crate::tsdb::ingest::{self, CheckedFile};
use crate::tsdb::shard::{ShardFile, write_merged};

/// The query parameters of `/import`.
#[derive(Debug, serde::Deserialize)]
pub struct ImportParams {
    db: Option<String>,
    rp: Option<String>,
}

/// What an import did.
#[derive(Debug, Default, serde::Serialize)]
pub struct ImportReport {
    /// TSM files received.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Shard groups they went to.
    pub shard_groups: u64,
    /// Values ingested.
    pub values: u64,
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(json!({ "error": msg.into() }))).into_response()
}

/// One shard group's staged files.
struct Group {
    stage: StageWriter,
    checked: Vec<CheckedFile>,
}

/// Reads the tar, staging every `*.tsm` entry into the set of the shard
/// group(s) its points fall in (`bounds`: the group holding a time).
fn stage_upload(
    input: &mut dyn Read,
    staging: &StagingArea,
    bounds: &dyn Fn(i64) -> Result<(i64, i64), String>,
    report: &mut ImportReport,
) -> Result<BTreeMap<i64, Group>, String> {
    let mut groups: BTreeMap<i64, Group> = BTreeMap::new();
    let raw = staging.begin().map_err(|e| e.to_string())?;
    let r = (|| {
        let mut raw = raw;
        let mut ar = tar::Archive::new(input);
        for entry in ar.entries().map_err(|e| format!("reading the tar: {e}"))? {
            let (mut entry, name) = checked_entry(entry)?;
            if !entry.header().entry_type().is_file() || !name.ends_with(".tsm") {
                continue;
            }
            if entry.size() > MAX_UPLOAD_TSM {
                return Err(format!(
                    "{name}: {} bytes, over the {MAX_UPLOAD_TSM}-byte limit of a TSM file",
                    entry.size()
                ));
            }
            let n = report.files;
            let fm = raw
                .add(&format!("raw-{n:06}.tsm"), &mut entry)
                .map_err(|e| format!("{name}: {e}"))?;
            let src = raw
                .path_for_checking(&fm.name)
                .map_err(|e| format!("{name}: {e}"))?;
            let c = ingest::check_tsm(&src).map_err(|e| format!("{name}: {e}"))?;
            report.files += 1;
            report.bytes += fm.size;
            // The pieces of [min, max] in each shard group.
            let mut pieces = Vec::new();
            let mut t = c.min_time;
            loop {
                let (start, end) = bounds(t)?;
                pieces.push((start, t, c.max_time.min(end.saturating_sub(1))));
                if end > c.max_time || end <= t {
                    break;
                }
                t = end;
            }
            let staged = format!("{n:06}.tsm");
            let whole = pieces.len() == 1;
            let input = if whole {
                None
            } else {
                Some(ShardFile::open(&src, fm.crc32c).map_err(|e| format!("{name}: {e}"))?)
            };
            for (start, lo, hi) in pieces {
                let g = match groups.entry(start) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(e) => e.insert(Group {
                        stage: staging.begin().map_err(|e| e.to_string())?,
                        checked: Vec::new(),
                    }),
                };
                let dst = g.stage.path_for(&staged).map_err(|e| e.to_string())?;
                match &input {
                    None => {
                        std::fs::hard_link(&src, &dst)
                            .map_err(|e| format!("{name}: staging: {e}"))?;
                        g.stage.record(&staged, fm.size, fm.crc32c);
                        g.checked.push(c.clone());
                    }
                    Some(file) => {
                        let m = write_merged(std::slice::from_ref(file), &dst, lo, hi)
                            .map_err(|e| format!("{name}: splitting: {e}"))?;
                        if m.values == 0 {
                            let _ = std::fs::remove_file(&dst);
                            continue;
                        }
                        g.stage.record(&staged, m.size, m.crc32c);
                        g.checked
                            .push(ingest::check_tsm(&dst).map_err(|e| format!("{name}: {e}"))?);
                    }
                }
            }
        }
        raw.abort();
        Ok(())
    })();
    match r {
        Ok(()) => Ok(groups),
        Err(e) => {
            for (_, g) in groups {
                g.stage.abort();
            }
            Err(e)
        }
    }
}

/// The `/import` handler.
pub async fn import(
    State(node): State<NodeHandle<Tsdb>>,
    Query(p): Query<ImportParams>,
    body: Body,
) -> Response {
    let Some(db) = p.db.filter(|d| !d.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "database is required");
    };
    let rp = p.rp.unwrap_or_default();
    let resolved = node.local(|t, _| t.meta().resolve_rp(&db, &rp).map(str::to_string));
    let rp = match resolved {
        Ok(rp) => rp,
        Err(e) => return error(StatusCode::NOT_FOUND, e.to_string()),
    };
    let Some(staging) = node.staging().cloned() else {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "this node keeps no staged files",
        );
    };
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(stream);
    let (n2, db2, rp2) = (node.clone(), db.clone(), rp.clone());
    let staged = tokio::task::spawn_blocking(move || {
        let mut input = tokio_util::io::SyncIoBridge::new(reader);
        let bounds = |t: i64| {
            n2.local(|ts, _| ts.meta().group_bounds(&db2, &rp2, t))
                .map_err(|e| e.to_string())
        };
        let mut report = ImportReport::default();
        let groups = stage_upload(&mut input, &staging, &bounds, &mut report);
        // Drain what follows the tar's end so the client reads the answer.
        let _ = std::io::copy(&mut input.take(1 << 20), &mut std::io::sink());
        groups.map(|g| (g, report))
    })
    .await;
    let (groups, mut report) = match staged {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut groups = groups.into_iter();
    while let Some((_, g)) = groups.next() {
        match ingest_stage(&node, 0, &db, &rp, g.stage, g.checked).await {
            Ok(values) => {
                report.values += values;
                report.shard_groups += 1;
            }
            Err(e) => {
                for (_, g) in groups {
                    g.stage.abort();
                }
                let msg = format!(
                    "{e} (after {} shard group(s), {} values ingested)",
                    report.shard_groups, report.values
                );
                return error(StatusCode::BAD_REQUEST, msg);
            }
        }
    }
    info!(%db, %rp, files = report.files, bytes = report.bytes, groups = report.shard_groups, values = report.values, "import ingested");
    (StatusCode::OK, Json(report)).into_response()
}
