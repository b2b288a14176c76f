//! A `chunked=true` answer written as it is read: the SELECT of raw points
//! that ends a request is answered a page at a time
//! ([`crate::tsdb::query::stream_select`]) and each chunk goes to the
//! client once the next is known, so memory follows a page and a few
//! chunks in flight, not the answer. A client that goes away stops the
//! read at its next chunk.

use std::io::Write;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use std::sync::Arc;

use super::queries::{QueryGuard, QueryRegistry};
use super::query_format::{Chunker, Format, Outcome, chunk_lines, json_text};
use crate::tsdb::fsm::TsdbView;
use crate::tsdb::line_protocol::Precision;
use crate::tsdb::query::{self, Interrupt, Select, SelectLimits};

/// Chunks in flight between the read and the client.
const CHUNKS_IN_FLIGHT: usize = 4;

/// What the streamed statement reads, and of which request.
pub(crate) struct Streamed {
    /// The results of the request's statements before it.
    pub before: Vec<Outcome>,
    /// Its `statement_id`.
    pub id: usize,
    /// The SELECT.
    pub select: Select,
    /// The request's database.
    pub db: String,
    /// `epoch`.
    pub epoch: Option<Precision>,
    /// The request's limits and interrupt.
    pub limits: SelectLimits,
    /// The request, registered for SHOW QUERIES and KILL QUERY until the
    /// answer ends.
    pub guard: QueryGuard,
    /// Where reads stopped early are counted.
    pub registry: Arc<QueryRegistry>,
}

/// The answer: a 200 whose body is written by a blocking task reading
/// `view`. `report` hears of a damaged block met on the way.
pub(crate) fn stream_answer(
    format: Format,
    size: usize,
    view: TsdbView,
    st: Streamed,
    report: impl FnOnce(String) + Send + 'static,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNKS_IN_FLIGHT);
    // The read stops as soon as its client is gone, not at its next chunk.
    let closed = tx.clone();
    let mut sink = Sink::new(tx, format.pretty, format.gzip);
    tokio::task::spawn_blocking(move || {
        let Streamed {
            before,
            id,
            select,
            db,
            epoch,
            mut limits,
            guard,
            registry,
        } = st;
        let killed = limits.interrupt.clone();
        limits.interrupt = Interrupt::new(move || killed.is_set() || closed.is_closed());
        for o in &before {
            for c in chunk_lines(o, size) {
                if !sink.line(&c) {
                    return;
                }
            }
        }
        let mut chunker = Chunker::new(json!(id), size);
        let mut gone = false;
        let r = query::stream_select(&view, &db, &select, epoch, &limits, size, &mut |s| {
            chunker.push(s);
            for c in chunker.take() {
                if !sink.line(&c) {
                    gone = true;
                    return false;
                }
            }
            true
        });
        let stopped = gone || matches!(&r, Err(e) if e == "query interrupted");
        if stopped {
            registry.read_interrupted();
        }
        if gone {
            return;
        }
        let last = match r {
            Ok(()) => chunker.finish(),
            Err(e) => {
                if e.contains(crate::tsdb::tsm::file::BLOCK_CRC_FAILURE) {
                    report(e.clone());
                }
                // A query stopped for its timeout says so.
                let e = match guard.interrupted() {
                    Some(why) if e == "query interrupted" => why.to_string(),
                    _ => e,
                };
                let mut out = chunker.cut_short();
                out.push(json!({ "statement_id": id, "error": e }));
                out
            }
        };
        for c in last {
            if !sink.line(&c) {
                return;
            }
        }
        sink.finish();
        drop(guard);
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut r = (StatusCode::OK, Body::from_stream(stream)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if format.gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    r
}

/// Where the chunks go: each a line of JSON (`{"results": [chunk]}`),
/// gzip-compressed and flushed line by line when the client accepts it.
struct Sink {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    pretty: bool,
    gz: Option<flate2::write::GzEncoder<Vec<u8>>>,
}

impl Sink {
    fn new(tx: mpsc::Sender<Result<Bytes, std::io::Error>>, pretty: bool, gzip: bool) -> Self {
        let gz =
            gzip.then(|| flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        Sink { tx, pretty, gz }
    }

    /// Sends one chunk; false once the client is gone.
    fn line(&mut self, chunk: &Value) -> bool {
        let mut text = json_text(&json!({ "results": [chunk] }), self.pretty);
        text.push('\n');
        let bytes = match &mut self.gz {
            None => text.into_bytes(),
            Some(gz) => {
                if gz.write_all(text.as_bytes()).is_err() || gz.flush().is_err() {
                    return false;
                }
                std::mem::take(gz.get_mut())
            }
        };
        self.tx.blocking_send(Ok(Bytes::from(bytes))).is_ok()
    }

    /// Ends the gzip stream.
    fn finish(self) {
        if let Some(gz) = self.gz
            && let Ok(rest) = gz.finish()
        {
            let _ = self.tx.blocking_send(Ok(Bytes::from(rest)));
        }
    }
}
