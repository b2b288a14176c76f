//! The HTTP API (DESIGN §5), on InfluxDB 1.x's paths where one exists.
//! Errors are InfluxDB-shaped JSON (`{"error": "…"}`) with matching codes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::proto::tsdb::{CommandResult, command::Cmd};
use crate::raft::{MembershipChange, NodeHandle, RaftError, ReadConsistency};
use crate::server::auth::{Authenticator, Caller, UrlCredentials};
use crate::server::queries::QueryRegistry;
use crate::server::query_format::{Format, Outcome, render};
use crate::server::select_into::{IntoError, select_into};
use crate::server::subscriber::{self, Subscriber};
use crate::tsdb::authorize::{authorize_query, authorize_write};
use crate::tsdb::fsm::{Tsdb, command};
use crate::tsdb::line_protocol::{self, Precision};
use crate::tsdb::query;

/// The version reported in `X-Influxdb-Version` (the InfluxDB API we follow).
pub const INFLUX_VERSION: &str = "1.6.7-tsnode";
/// Bad lines a /write answer names at most.
const MAX_PARSE_ERRORS: usize = 1_000;
/// Points per raft proposal of a write.
const POINTS_PER_PROPOSAL: usize = 5_000;
/// influxd's default `max-body-size`: the largest /write body, in bytes.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 25_000_000;
/// Largest body of the other endpoints (a /query form, a membership
/// change).
const MAX_OTHER_BODY: usize = 64 << 20;

/// Limits of the HTTP API.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest /write body (0 = no limit), as influxd's `max-body-size`.
    pub max_body_size: u64,
    /// Connections held at once (0 = only the open-file budget), as
    /// influxd's `max-connection-limit`.
    pub max_connection_limit: u64,
    /// influxd's write throttle.
    pub writes: crate::server::write_throttle::WriteLimits,
    /// The longest a request's header may take to arrive, and the longest
    /// its body may stall (zero: no limit).
    pub read_timeout: Duration,
    /// influxd's cardinality limits.
    pub series: crate::tsdb::series_index::SeriesLimits,
    /// A query running longer is interrupted, as influxd's `query-timeout`
    /// (zero: never).
    pub query_timeout: Duration,
    /// influxd's `max-select-point`, `max-select-series`,
    /// `max-select-buckets`.
    pub select: query::SelectLimits,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            max_connection_limit: 0,
            writes: Default::default(),
            read_timeout: crate::server::serve::DEFAULT_READ_TIMEOUT,
            series: Default::default(),
            query_timeout: Duration::ZERO,
            select: query::SelectLimits::default(),
        }
    }
}

/// The router for a node.
pub fn router(
    node: NodeHandle<Tsdb>,
    limits: HttpLimits,
    auth: Arc<Authenticator>,
    forwarder: Arc<Subscriber>,
) -> Router {
    super::stats::mark_started();
    let max_body = usize::try_from(limits.max_body_size).unwrap_or(usize::MAX);
    let read_timeout = limits.read_timeout;
    let series_limits = limits.series;
    let series_index: SeriesIndexCell = Arc::default();
    let queries_forwarder = forwarder.clone();
    let throttle = Arc::new(crate::server::write_throttle::WriteThrottle::new(
        limits.writes,
    ));
    // The node's own endpoints: admins only when authentication is on.
    let admin = Router::new()
        .route("/status", get(status))
        .route("/snapshot", post(snapshot))
        .route("/members", post(add_member))
        .route("/members/{id}", delete(remove_member))
        .route("/metrics", get(metrics))
        .route("/debug/vars", get(debug_vars))
        .route(
            "/import",
            post(super::import::import).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            (node.clone(), auth.clone()),
            admin_only,
        ));
    Router::new()
        .route("/ping", get(ping).head(ping))
        .route(
            "/write",
            post(move |node, auth, url, q, headers, body| async move {
                // Admitted (or refused) before the body is read, as influxd.
                match throttle.admit().await {
                    Ok(_admitted) => {
                        let limits = (
                            max_body,
                            read_timeout,
                            (series_limits, series_index.clone()),
                            forwarder.clone(),
                        );
                        write(node, auth, url, q, headers, body, limits).await
                    }
                    Err(refused) => refused,
                }
            })
            .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/query", get(query_handler).post(query_handler))
        .merge(admin)
        .layer(axum::Extension(auth))
        .layer(axum::Extension(queries_forwarder))
        .layer(axum::Extension(Arc::new(QueryRegistry::new(
            limits.query_timeout,
        ))))
        .layer(axum::Extension(limits.select))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_OTHER_BODY))
        .layer(axum::middleware::from_fn(influx_headers))
        .with_state(node)
}

/// Lets only admins through when authentication is on.
async fn admin_only(
    State((node, auth)): State<(NodeHandle<Tsdb>, Arc<Authenticator>)>,
    Query(url): Query<UrlCredentials>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let what = req.uri().path().to_string();
    match auth.admin(&node, &url, req.headers(), &what).await {
        Ok(()) => next.run(req).await,
        Err(refused) => refused,
    }
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    let msg = msg.into();
    let mut r = (code, Json(json!({ "error": msg }))).into_response();
    // influxd repeats the error in a header (on one line).
    if let Ok(v) = HeaderValue::from_str(&msg.replace(['\r', '\n'], " ")) {
        r.headers_mut().insert("X-Influxdb-Error", v);
    }
    r
}

/// influxd's headers on every answer: its version and build, and a request
/// id (the client's `Request-Id` / `X-Request-Id` if it sent one).
async fn influx_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let given = ["Request-Id", "X-Request-Id"]
        .iter()
        .find_map(|h| req.headers().get(*h).cloned());
    let mut r = next.run(req).await;
    let id = given.unwrap_or_else(|| {
        HeaderValue::from_str(&request_id()).unwrap_or(HeaderValue::from_static("0"))
    });
    let h = r.headers_mut();
    h.insert(
        "X-Influxdb-Version",
        HeaderValue::from_static(INFLUX_VERSION),
    );
    h.insert("X-Influxdb-Build", HeaderValue::from_static("OSS"));
    h.insert("Request-Id", id.clone());
    h.insert("X-Request-Id", id);
    r
}

/// A random UUID (version 4) for a request.
fn request_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let word = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_i64(now_ns());
        h.finish()
    };
    let (a, b) = (word(), word());
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// The HTTP answer to a raft error.
pub(crate) fn raft_error(e: RaftError) -> Response {
    let code = match &e {
        RaftError::NotLeader { .. }
        | RaftError::LeadershipLost
        | RaftError::Shutdown
        | RaftError::Fenced(_)
        | RaftError::NoQuorum(_)
        | RaftError::MembershipBusy(_)
        | RaftError::BadLeaderAddress(_) => StatusCode::SERVICE_UNAVAILABLE,
        RaftError::Forward { status, .. } => match status.code() {
            tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
            tonic::Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            tonic::Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        },
        RaftError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(code, e.to_string())
}

async fn ping(State(node): State<NodeHandle<Tsdb>>) -> Response {
    match node.fault() {
        // A fenced node is not alive to a supervisor probing /ping.
        Some(f) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("node stopped after a fatal error: {f}"),
        ),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// Now, in nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Reads a request body of at most `max` bytes (0 = no limit), as influxd
/// does: a declared `Content-Length` over the limit is refused at once
/// (413, before any byte is read); a chunked body is read up to the limit,
/// then refused.
/// A body that stalls for `stall` (zero: never) is refused with 408.
async fn read_limited(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
    max: usize,
    stall: Duration,
) -> Result<Bytes, Response> {
    use futures::StreamExt;
    let max = if max == 0 { usize::MAX } else { max };
    let too_large = || error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut stream = body.into_data_stream();
    let mut buf = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    loop {
        let next = if stall.is_zero() {
            stream.next().await
        } else {
            match tokio::time::timeout(stall, stream.next()).await {
                Ok(n) => n,
                Err(_) => {
                    return Err(error(
                        StatusCode::REQUEST_TIMEOUT,
                        format!("request body stalled for {stall:?}"),
                    ));
                }
            }
        };
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| error(StatusCode::BAD_REQUEST, format!("read body: {e}")))?;
        if buf.len() + chunk.len() > max {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// A gzip body may inflate to this many times `max_body_size` (influxd
/// sets no bound; one keeps a small body from inflating without end).
const GZIP_EXPANSION_CAP: usize = 16;

/// Inflates a gzip body (Telegraf's default), with influxd's messages for a
/// bad one (Go's `compress/gzip`): `unexpected EOF`, `gzip: invalid
/// header`, `gzip: invalid checksum`. Over `cap` bytes inflated: 413.
fn gunzip(body: &[u8], cap: usize) -> Result<Vec<u8>, (StatusCode, String)> {
    use std::io::Read;
    let bad = |m: &str| (StatusCode::BAD_REQUEST, m.to_string());
    if body.len() < 10 {
        return Err(bad("unexpected EOF"));
    }
    if body[..3] != [0x1f, 0x8b, 8] {
        return Err(bad("gzip: invalid header"));
    }
    // The trailer's size (mod 2^32) of the last member: one allocation of
    // the right size, not doublings that briefly hold three times a large
    // body (a wrong trailer only costs a regrowth).
    let isize = body[body.len() - 4..]
        .try_into()
        .map(u32::from_le_bytes)
        .unwrap_or(0) as usize;
    let mut out = Vec::with_capacity(isize.min(cap).saturating_add(1));
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::MultiGzDecoder::new(body)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => bad("unexpected EOF"),
            _ if e.to_string().contains("checksum") => bad("gzip: invalid checksum"),
            _ => bad(&format!("gzip: {e}")),
        })?;
    if out.len() > cap {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request Entity Too Large".to_string(),
        ));
    }
    Ok(out)
}

async fn propose(node: &NodeHandle<Tsdb>, cmd: Cmd) -> Result<CommandResult, Response> {
    let (_, answer) = node.propose(&command(cmd)).await.map_err(raft_error)?;
    Ok(answer)
}

async fn write(
    State(node): State<NodeHandle<Tsdb>>,
    Extension(auth): Extension<Arc<Authenticator>>,
    Query(url): Query<UrlCredentials>,
    Query(q): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
    (max_body, read_timeout, (series_limits, series_index), forwarder): (
        usize,
        Duration,
        (crate::tsdb::series_index::SeriesLimits, SeriesIndexCell),
        Arc<Subscriber>,
    ),
) -> Response {
    // As influxd: credentials, then the database, then the privilege,
    // before a byte of the body is read.
    let caller = match auth.caller(&node, &url, &headers).await {
        Ok(c) => c,
        Err(refused) => return refused,
    };
    let db = q.get("db").cloned().unwrap_or_default();
    if db.is_empty() {
        return error(StatusCode::BAD_REQUEST, "database is required");
    }
    if let Some(Caller { user, meta }) = &caller {
        if !meta.has_database(&db) {
            return error(
                StatusCode::NOT_FOUND,
                format!("database not found: \"{db}\""),
            );
        }
        if let Err(e) = authorize_write(user.as_ref(), &db) {
            return error(StatusCode::FORBIDDEN, e);
        }
    }
    let body = match read_limited(&headers, body, max_body, read_timeout).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    // influxd's write precisions are n, u, ms, s, m and h; any other
    // (`us` too) is nanoseconds.
    let precision = match q.get("precision").map_or("", String::as_str) {
        "us" | "µ" => Precision::Nanoseconds,
        p => Precision::parse(p).unwrap_or(Precision::Nanoseconds),
    };
    let gzipped = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let body = if gzipped {
        let cap = match max_body {
            0 => usize::MAX,
            n => n.saturating_mul(GZIP_EXPANSION_CAP),
        };
        // Inflating up to 16× a 25 MB body is seconds of CPU: not on a
        // runtime worker that also serves other clients.
        match tokio::task::spawn_blocking(move || gunzip(&body, cap)).await {
            Ok(Ok(b)) => Bytes::from(b),
            Ok(Err((code, msg))) => return error(code, msg),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    } else {
        body
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return error(StatusCode::BAD_REQUEST, "body is not UTF-8");
    };
    let rp = q.get("rp").cloned().unwrap_or_default();
    let now = now_ns();
    // The body is parsed and proposed a chunk of lines at a time: a large
    // body is never held as points all at once.
    let limits = (series_limits, &series_index);
    let check = match series_check(&node, &body, &db, &rp, precision, now, limits).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    // Points older than the retention policy keeps are refused, as
    // influxd's (by this node's clock, before they are proposed).
    // (And, in the same look, the subscriptions the points go on to.)
    let (retention, route) = {
        let (node, d, rp) = (node.clone(), db.clone(), rp.clone());
        let (retention, found) = tokio::task::spawn_blocking(move || {
            node.local(|t, _| (t.retention_duration(&d, &rp), t.subscriptions(&d, &rp)))
        })
        .await
        .unwrap_or_default();
        (retention, subscriber::Route::new(&db, found))
    };
    let oldest = match retention {
        Some(d) if d > 0 => now.saturating_sub(d),
        _ => i64::MIN,
    };
    let mut expired = 0u64;
    let mut errors: Vec<line_protocol::ParseError> = Vec::new();
    let mut parsed = 0u64;
    let mut dropped = 0u64;
    let mut limited: Option<String> = None;
    let mut conflict = String::new();
    let mut chunks = line_protocol::chunks(text, POINTS_PER_PROPOSAL).peekable();
    // At least one proposal: a body without a single point is still
    // checked against the database, as influxd answers 404 before parsing.
    loop {
        let (first_line, chunk) = chunks.next().unwrap_or((0, ""));
        let (mut points, errs) = line_protocol::parse(chunk, precision, now);
        parsed += points.len() as u64;
        // Every bad line is named, as influxd names them (up to a bound).
        let room = MAX_PARSE_ERRORS.saturating_sub(errors.len());
        errors.extend(errs.into_iter().take(room).map(|mut e| {
            e.line += first_line;
            e
        }));
        if oldest > i64::MIN {
            let before = points.len();
            points.retain(|p| p.timestamp >= oldest);
            expired += (before - points.len()) as u64;
        }
        if let Some((check, index, group_of)) = &check {
            let v = {
                let ix = index.read().unwrap_or_else(|p| p.into_inner());
                check.filter(&ix, &db, &points, group_of)
            };
            if v.dropped > 0 {
                dropped += v.dropped;
                if limited.is_none() {
                    limited = v.reason;
                }
                let mut keep = v.drop.iter().map(|d| !d);
                points.retain(|_| keep.next().unwrap_or(true));
            }
        }
        let forward = route.as_ref().map(|r| r.batch(&points));
        let cmd = crate::tsdb::write_batch::write_command(&db, &rp, points);
        let proposed = propose(&node, cmd).await;
        if let (Ok(r), Some(batch), Some(route)) = (&proposed, forward, &route)
            && !r.database_not_found
        {
            forwarder.forward(route, batch);
        }
        match proposed {
            Ok(r) if r.database_not_found => {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("database not found: \"{db}\""),
                );
            }
            Ok(r) => {
                dropped += r.dropped;
                if !r.error.is_empty() {
                    if r.written == 0 && r.dropped == 0 {
                        return error(StatusCode::BAD_REQUEST, r.error);
                    }
                    if conflict.is_empty() {
                        conflict = r.error;
                    }
                }
            }
            Err(resp) => return resp,
        }
        if chunks.peek().is_none() {
            break;
        }
    }
    if expired > 0 {
        return error(
            StatusCode::BAD_REQUEST,
            format!("partial write: points beyond retention policy dropped={expired}"),
        );
    }
    if !errors.is_empty() {
        let all = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        // Nothing parsed: the lines' errors alone; else a partial write
        // counting the points the write itself dropped.
        return error(
            StatusCode::BAD_REQUEST,
            if parsed == 0 {
                all
            } else {
                format!("partial write: {all} dropped={dropped}")
            },
        );
    }
    if let Some(why) = limited {
        return error(
            StatusCode::BAD_REQUEST,
            format!("partial write: {why} dropped={dropped}"),
        );
    }
    if !conflict.is_empty() {
        return error(StatusCode::BAD_REQUEST, conflict);
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn query_handler(
    State(node): State<NodeHandle<Tsdb>>,
    Extension(auth): Extension<Arc<Authenticator>>,
    Extension(queries): Extension<Arc<QueryRegistry>>,
    Query(url): Query<UrlCredentials>,
    Query(mut q): Query<HashMap<String, String>>,
    request: axum::http::request::Parts,
    body: Bytes,
) -> Response {
    let select_limits = request
        .extensions
        .get::<query::SelectLimits>()
        .cloned()
        .unwrap_or_default();
    let forwarder = request
        .extensions
        .get::<Arc<Subscriber>>()
        .cloned()
        .unwrap_or_default();
    let (method, headers) = (request.method, request.headers);
    let caller = match auth.caller(&node, &url, &headers).await {
        Ok(c) => c,
        Err(refused) => return refused,
    };
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form && let Ok(extra) = serde_urlencoded_pairs(&body) {
        for (k, v) in extra {
            q.entry(k).or_insert(v);
        }
    }
    let Some(text) = q.get("q").filter(|s| !s.trim().is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "missing required parameter \"q\"");
    };
    let db = q.get("db").cloned().unwrap_or_default();
    let format = Format::of(&q, &headers);
    let epoch = match q.get("epoch").map(String::as_str) {
        // CSV writes times as nanoseconds unless asked otherwise.
        None | Some("") if format.csv => Some(Precision::Nanoseconds),
        None | Some("") => None,
        Some(e) => match Precision::parse(e) {
            Some(p) => Some(p),
            None => return error(StatusCode::BAD_REQUEST, format!("invalid epoch {e:?}")),
        },
    };
    // Linearizable unless the client opts into this node's possibly stale
    // state with `stale=true`.
    let consistency = match q.get("stale").map(String::as_str) {
        None | Some("" | "false") => ReadConsistency::Linearizable,
        Some("true") => ReadConsistency::Stale,
        Some(v) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid stale value {v:?} (true or false)"),
            );
        }
    };
    // `params`: values bound to the query's `$name`s (a JSON object).
    let params = match q.get("params").map(|p| serde_json::from_str::<Value>(p)) {
        None => None,
        Some(Ok(Value::Object(m))) => Some(m),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "error parsing query parameters: not a JSON object",
            );
        }
    };
    let stmts = match query::parse_bound(text, now_ns(), params.as_ref()) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("error parsing query: {e}")),
    };
    if let Some(Caller { user, meta }) = &caller
        && let Err(e) = authorize_query(meta, user.as_ref(), &stmts, &db)
    {
        return error(
            StatusCode::FORBIDDEN,
            format!("error authorizing query: {e}"),
        );
    }
    let user = caller.and_then(|c| c.user);
    let text: Vec<&str> = stmts.iter().map(|(_, t)| t.as_str()).collect();
    let running = queries.register(text.join(";\n"), db.clone());
    let mut results: Vec<Outcome> = Vec::new();
    let mut cut_short = false;
    for (i, (stmt, text)) in stmts.iter().enumerate() {
        let select = matches!(stmt, query::Statement::Select(_));
        if let Some(why) = running.interrupted() {
            results.push(Outcome {
                result: json!({ "statement_id": i, "error": why }),
                select,
            });
            break;
        }
        // The SELECT of raw points that ends a chunked request is written
        // as it is read.
        if let (Some(size), false, query::Statement::Select(sel)) =
            (format.chunked, format.csv, stmt)
            && i + 1 == stmts.len()
            && query::streamable(stmt, &select_limits)
        {
            let view = match node.read(consistency, |t, _| t.clone()).await {
                Ok(v) => v,
                Err(e) => return raft_error(e),
            };
            let limits = query::SelectLimits {
                interrupt: running.interrupt(),
                ..select_limits.clone()
            };
            let damaged = node.clone();
            let streamed = super::query_stream::Streamed {
                before: results,
                id: i,
                select: (**sel).clone(),
                db: db.clone(),
                epoch,
                limits,
                guard: running,
                registry: queries.clone(),
            };
            return super::query_stream::stream_answer(format, size, view, streamed, move |e| {
                damaged.report_damage("a query", vec![e]);
            });
        }
        // (influxd runs DELETE from a GET without the warning it gives
        // other statements that change state.)
        let writes = !matches!(stmt, query::Statement::Delete { .. })
            && (stmt.password().is_some() || stmt.command(&db).is_some());
        let exec = async {
            Ok::<Value, Response>(if stmt.password().is_some() {
                password_statement(&node, &auth, stmt).await?
            } else if let Some(cmd) = stmt.command(&db) {
                match cmd {
                    Err(e) => json!({ "error": e }),
                    Ok(cmd) => match propose(&node, cmd).await? {
                        res if res.error.is_empty() => json!({}),
                        res => json!({ "error": res.error }),
                    },
                }
            } else {
                match stmt {
                    query::Statement::Select(s) if s.into.is_some() => {
                        match select_into(&node, &db, s, consistency, &forwarder).await {
                            Ok(n) => {
                                let t = match epoch {
                                    Some(_) => json!(0),
                                    None => json!("1970-01-01T00:00:00Z"),
                                };
                                json!({"series": [{"name": "result", "columns": ["time", "written"], "values": [[t, n]]}]})
                            }
                            Err(IntoError::Raft(e)) => return Err(raft_error(e)),
                            Err(e) => json!({ "error": e.to_string() }),
                        }
                    }
                    query::Statement::ShowQueries => queries.show(),
                    query::Statement::ShowStats(module) => {
                        let stats = super::stats::statistics(&node, &queries, &forwarder)
                            .await
                            .map_err(raft_error)?;
                        super::stats::show_stats(&stats, module.as_deref())
                    }
                    query::Statement::ShowDiagnostics => super::stats::show_diagnostics(&node)
                        .await
                        .map_err(raft_error)?,
                    query::Statement::KillQuery(id) => match queries.kill(*id) {
                        Ok(()) => json!({}),
                        Err(e) => json!({ "error": e }),
                    },
                    _ => {
                        let (db, stmt, user) = (db.clone(), stmt.clone(), user.clone());
                        let limits = query::SelectLimits {
                            interrupt: running.interrupt(),
                            ..select_limits.clone()
                        };
                        let counts = queries.clone();
                        let v = node
                            .read(consistency, move |t, _| {
                                let stop = limits.interrupt.clone();
                                let v = query::execute_read_as(
                                    t,
                                    &db,
                                    &stmt,
                                    epoch,
                                    user.as_ref(),
                                    limits,
                                );
                                if stop.is_set() && v["error"] == "query interrupted" {
                                    counts.read_interrupted();
                                }
                                v
                            })
                            .await
                            .map_err(raft_error)?;
                        // A damaged block is never answered; the node repairs it.
                        if let Some(e) = v["error"].as_str()
                            && e.contains(crate::tsdb::tsm::file::BLOCK_CRC_FAILURE)
                        {
                            node.report_damage("a query", vec![e.to_string()]);
                        }
                        v
                    }
                }
            })
        };
        let (mut r, stop) = tokio::select! {
            r = exec => match r {
                Ok(v) => (v, false),
                Err(resp) => return resp,
            },
            why = running.until_interrupted() => (json!({ "error": why }), true),
        };
        if let Value::Object(m) = &mut r {
            let mut o = serde_json::Map::new();
            o.insert("statement_id".into(), json!(i));
            // influxd runs a statement that changes state from a GET, and
            // warns.
            if writes && method == axum::http::Method::GET && !m.contains_key("error") {
                let text = warning_text(&node, stmt, text).await;
                o.insert(
                    "messages".into(),
                    json!([{"level": "warning", "text": format!(
                        "deprecated use of '{text}' in a read only context, please use a POST request instead"
                    )}]),
                );
            }
            o.extend(std::mem::take(m));
            r = Value::Object(o);
        }
        // influxd stops at the first statement that fails.
        let failed = r.get("error").is_some();
        results.push(Outcome { result: r, select });
        if stop || failed {
            cut_short = failed && !stop && i + 1 < stmts.len();
            break;
        }
    }
    render(format, results, cut_short)
}

/// The state machine's series index, fetched by the first write.
type SeriesIndexCell =
    Arc<std::sync::OnceLock<Arc<std::sync::RwLock<crate::tsdb::series_index::SeriesIndex>>>>;

/// The cardinality check of a write (see `tsdb::series_index`), when the
/// limits could be passed by it: the first pass over the body (counting
/// new series per shard group, a chunk at a time, on a blocking thread),
/// the index, and the write's map from time to shard group. `None` when no
/// check is needed (or the database does not exist: the write says so).
type SeriesCheck = (
    crate::tsdb::series_index::WriteCheck,
    Arc<std::sync::RwLock<crate::tsdb::series_index::SeriesIndex>>,
    Box<dyn Fn(i64) -> i64 + Send + Sync>,
);

async fn series_check(
    node: &NodeHandle<Tsdb>,
    body: &Bytes,
    db: &str,
    rp: &str,
    precision: Precision,
    now: i64,
    (limits, cell): (crate::tsdb::series_index::SeriesLimits, &SeriesIndexCell),
) -> Result<Option<SeriesCheck>, Response> {
    use crate::tsdb::series_index::WriteCheck;
    if limits.max_series_per_database == 0 && limits.max_values_per_tag == 0 {
        return Ok(None);
    }
    // The index is the state machine's for its whole life: fetched once
    // (under the apply lock), then read under its own lock only.
    let index = match cell.get() {
        Some(i) => i.clone(),
        None => {
            let n = node.clone();
            let i = tokio::task::spawn_blocking(move || n.local(|t, _| t.series_index()))
                .await
                .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            cell.get_or_init(|| i).clone()
        }
    };
    let lines = body.iter().filter(|b| **b == b'\n').count() as u64 + 1;
    let needed = {
        let ix = index.read().unwrap_or_else(|p| p.into_inner());
        WriteCheck::needed(&ix, db, limits, lines)
    };
    if !needed {
        return Ok(None);
    }
    let (node, body, db, rp) = (node.clone(), body.clone(), db.to_string(), rp.to_string());
    let run = move || -> Option<SeriesCheck> {
        let dur = node.local(|t, _| t.shard_group_duration(&db, &rp));
        let dur = dur.filter(|d| *d > 0)?;
        let text = std::str::from_utf8(&body).ok()?;
        let group_of = move |t: i64| crate::tsdb::meta::aligned_group(t, dur).0;
        let mut check = {
            let ix = index.read().unwrap_or_else(|p| p.into_inner());
            WriteCheck::new(&ix, &db, limits, lines)
        };
        // Small chunks: this pass keeps nothing of them but hashes.
        for (_, chunk) in line_protocol::chunks(text, 1_000) {
            let (points, _) = line_protocol::parse(chunk, precision, now);
            let ix = index.read().unwrap_or_else(|p| p.into_inner());
            check.count(&ix, &db, &points, group_of);
        }
        check.decide();
        Some((check, index, Box::new(group_of)))
    };
    tokio::task::spawn_blocking(run)
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `CREATE USER` and `SET PASSWORD`: the password is hashed here (the
/// command carries only the hash). As influxd, creating a user that exists
/// with the same password and admin flag changes nothing and succeeds.
/// A statement's text for influxd's read-only warning: a continuous
/// query's as stored, its unnamed retention policies the database's
/// default.
async fn warning_text(node: &NodeHandle<Tsdb>, stmt: &query::Statement, text: &str) -> String {
    let query::Statement::CreateContinuousQuery { db, .. } = stmt else {
        return text.to_string();
    };
    let db = db.clone();
    let rp = node
        .read(ReadConsistency::Stale, move |t, _| {
            t.meta().resolve_rp(&db, "").map(str::to_string).ok()
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| crate::tsdb::meta::DEFAULT_RP.to_string());
    text.replace(
        &query::quote_ident(query::DEFAULT_RP_MARK),
        &query::quote_ident(&rp),
    )
}

async fn password_statement(
    node: &NodeHandle<Tsdb>,
    auth: &Arc<Authenticator>,
    stmt: &query::Statement,
) -> Result<Value, Response> {
    let password = stmt.password().unwrap_or_default().to_string();
    if let query::Statement::CreateUser { name, admin, .. } = stmt {
        let (name, admin) = (name.clone(), *admin);
        let existing = node
            .read(ReadConsistency::Stale, move |t, _| {
                t.meta().user(&name).cloned()
            })
            .await
            .map_err(raft_error)?;
        if let Some(u) = existing {
            let (auth, pw) = (auth.clone(), password.clone());
            let same = u.admin == admin
                && tokio::task::spawn_blocking(move || auth.password_matches(&u, &pw))
                    .await
                    .unwrap_or(false);
            return Ok(if same {
                json!({})
            } else {
                json!({ "error": crate::tsdb::meta::MetaError::UserExists.to_string() })
            });
        }
    }
    let hash =
        match tokio::task::spawn_blocking(move || crate::server::auth::password::hash(&password))
            .await
        {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => return Ok(json!({ "error": e })),
            Err(e) => return Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        };
    let Some(cmd) = stmt.password_command(hash) else {
        return Ok(json!({ "error": "not a password statement" }));
    };
    Ok(match propose(node, cmd).await? {
        r if r.error.is_empty() => json!({}),
        r => json!({ "error": r.error }),
    })
}

/// Decodes an `application/x-www-form-urlencoded` body.
fn serde_urlencoded_pairs(body: &[u8]) -> Result<Vec<(String, String)>, ()> {
    let s = std::str::from_utf8(body).map_err(|_| ())?;
    let dec = |x: &str| -> Result<String, ()> {
        let b = x.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let h = std::str::from_utf8(b.get(i + 1..i + 3).ok_or(())?).map_err(|_| ())?;
                    out.push(u8::from_str_radix(h, 16).map_err(|_| ())?);
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).map_err(|_| ())
    };
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((dec(k)?, dec(v)?))
        })
        .collect()
}

async fn status(State(node): State<NodeHandle<Tsdb>>) -> Response {
    match node.status().await {
        Ok(s) => Json(s).into_response(),
        Err(e) => raft_error(e),
    }
}

async fn snapshot(State(node): State<NodeHandle<Tsdb>>) -> Response {
    match node.snapshot_now().await {
        Ok(m) => Json(json!({ "index": m.last_included_index, "term": m.last_included_term }))
            .into_response(),
        Err(e) => raft_error(e),
    }
}

#[derive(serde::Deserialize)]
struct AddMember {
    id: u64,
    addr: String,
}

async fn add_member(State(node): State<NodeHandle<Tsdb>>, body: Bytes) -> Response {
    let req: AddMember = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"id\": n, \"addr\": \"host:port\"}}: {e}"),
            );
        }
    };
    if req.id == 0 || req.addr.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "id must be non-zero and addr given",
        );
    }
    match node
        .change_membership(MembershipChange::Add {
            id: req.id,
            addr: req.addr,
        })
        .await
    {
        Ok(index) => Json(json!({ "index": index })).into_response(),
        Err(e) => raft_error(e),
    }
}

async fn remove_member(State(node): State<NodeHandle<Tsdb>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("member id {id:?} is not a number"),
        );
    };
    match node
        .change_membership(MembershipChange::Remove { id })
        .await
    {
        Ok(index) => Json(json!({ "index": index })).into_response(),
        Err(e) => raft_error(e),
    }
}

/// `/debug/vars`: the node's statistics as influxd's expvar document
/// (what Telegraf's `influxdb` input reads).
async fn debug_vars(
    State(node): State<NodeHandle<Tsdb>>,
    Extension(queries): Extension<Arc<QueryRegistry>>,
    Extension(forwarder): Extension<Arc<Subscriber>>,
) -> Response {
    match super::stats::statistics(&node, &queries, &forwarder).await {
        Ok(stats) => Json(super::stats::debug_vars(&stats)).into_response(),
        Err(e) => raft_error(e),
    }
}

async fn metrics(
    State(node): State<NodeHandle<Tsdb>>,
    Extension(queries): Extension<Arc<QueryRegistry>>,
) -> Response {
    let s = match tokio::time::timeout(Duration::from_secs(5), node.status()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return raft_error(e),
        Err(_) => return error(StatusCode::SERVICE_UNAVAILABLE, "raft loop did not answer"),
    };
    let x = node.snapshot_stats();
    let c = node.counters();
    let mut out = String::new();
    let mut put = |name: &str, kind: &str, help: &str, v: f64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
        ));
    };
    put(
        "raftsnap_snapshot_saves_total",
        "counter",
        "Snapshots saved.",
        x.saves_total as f64,
    );
    put(
        "raftsnap_snapshot_save_failures_total",
        "counter",
        "Snapshot saves that failed.",
        x.save_failures_total as f64,
    );
    put(
        "raftsnap_snapshot_save_seconds_total",
        "counter",
        "Time spent saving snapshots.",
        x.save_seconds_total,
    );
    put(
        "raftsnap_snapshot_installs_total",
        "counter",
        "Snapshots installed from a leader.",
        x.installs_total as f64,
    );
    put(
        "raftsnap_snapshot_install_failures_total",
        "counter",
        "Snapshot installs that failed.",
        x.install_failures_total as f64,
    );
    put(
        "raftsnap_snapshot_install_seconds_total",
        "counter",
        "Time spent installing snapshots.",
        x.install_seconds_total,
    );
    put(
        "raftsnap_snapshot_install_bytes_total",
        "counter",
        "Bytes fetched over the network by installs.",
        x.install_bytes_total as f64,
    );
    put(
        "raftsnap_snapshot_served_bytes_total",
        "counter",
        "Bytes this node served to members (snapshot and staged files).",
        x.served_bytes_total as f64,
    );
    put(
        "raftsnap_snapshot_reused_bytes_total",
        "counter",
        "Bytes installs reused by hard link.",
        x.reused_bytes_total as f64,
    );
    put(
        "raftsnap_scrub_bytes_total",
        "counter",
        "Bytes the background scrub re-read.",
        s.scrub.bytes_total as f64,
    );
    put(
        "raftsnap_scrub_corrupt_files_total",
        "counter",
        "Files the scrub found failing their checksums.",
        s.scrub.corrupt_files_total as f64,
    );
    put(
        "raftsnap_repairs_total",
        "counter",
        "Repairs that replaced a damaged live state from a sound snapshot.",
        s.repair.repairs_total as f64,
    );
    put(
        "raftsnap_broken_snapshots",
        "gauge",
        "Snapshots renamed *.broken since the process started.",
        s.repair.broken_snapshots.len() as f64,
    );
    put(
        "raftsnap_raft_compactions_total",
        "counter",
        "Raft log compactions.",
        c.compactions_total as f64,
    );
    put(
        "raftsnap_raft_compacted_entries_total",
        "counter",
        "Entries removed by compaction.",
        c.compacted_entries_total as f64,
    );
    put(
        "raftsnap_query_reads_interrupted_total",
        "counter",
        "Query reads stopped early: their query was killed, timed out, or its client went away.",
        queries.reads_interrupted() as f64,
    );
    put(
        "raftsnap_read_index_rounds_total",
        "counter",
        "Read-index rounds (each serves every read queued with it).",
        c.read_index_rounds_total as f64,
    );
    put(
        "raftsnap_read_index_reads_total",
        "counter",
        "Linearizable reads served through a read-index round.",
        c.read_index_reads_total as f64,
    );
    put(
        "raftsnap_raft_dropped_messages_total",
        "counter",
        "Raft messages dropped unstepped: not for this node, MsgTimeoutNow not from the leader, or from a non-member while a leader is heard.",
        c.dropped_messages_total as f64,
    );
    put(
        "raftsnap_raft_term",
        "gauge",
        "Current term.",
        s.term as f64,
    );
    put(
        "raftsnap_raft_commit_index",
        "gauge",
        "Commit index.",
        s.commit_index as f64,
    );
    put(
        "raftsnap_raft_applied_index",
        "gauge",
        "Applied index.",
        s.applied_index as f64,
    );
    put(
        "raftsnap_raft_first_log_index",
        "gauge",
        "First index in the raft log.",
        s.first_log_index as f64,
    );
    put(
        "raftsnap_raft_last_log_index",
        "gauge",
        "Last index in the raft log.",
        s.last_log_index as f64,
    );
    put(
        "raftsnap_raft_is_leader",
        "gauge",
        "1 on the leader.",
        f64::from(u8::from(s.role == "leader")),
    );
    put(
        "raftsnap_snapshot_last_index",
        "gauge",
        "Index of the latest snapshot.",
        s.snapshot.last_index as f64,
    );
    put(
        "raftsnap_snapshot_bytes",
        "gauge",
        "Bytes of the latest snapshot.",
        s.snapshot.bytes as f64,
    );
    let name = "raftsnap_snapshot_send_failures_total";
    out.push_str(&format!(
        "# HELP {name} Installs from this node to a peer that failed, by kind.\n# TYPE {name} counter\n"
    ));
    for kind in ["checksum", "refused", "timeout", "unavailable", "other"] {
        let v = s
            .snapshot
            .peer_install_failures_total
            .get(kind)
            .copied()
            .unwrap_or(0);
        out.push_str(&format!("{name}{{kind=\"{kind}\"}} {v}\n"));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gzip_body_that_inflates_past_the_cap_is_refused() {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![b'\n'; 1 << 20]).unwrap();
        let small = e.finish().unwrap();
        assert!(small.len() < 4096);
        assert_eq!(gunzip(&small, 1 << 20).unwrap().len(), 1 << 20);
        let (code, _) = gunzip(&small, (1 << 20) - 1).unwrap_err();
        assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
