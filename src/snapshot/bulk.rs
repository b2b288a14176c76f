//! Bulk file streams: the bytes of a snapshot (or staged) file sent as one
//! plain TCP stream on the gRPC port, instead of as gRPC messages.
//!
//! Over gRPC every byte is copied four or five times (read into a buffer,
//! encoded into HTTP/2 frames, sent, received, decoded), and two cores top
//! out near 650 MiB/s on loopback. A bulk stream is `sendfile(2)` from the
//! page cache on the sender and one `read(2)` into an aligned buffer on the
//! receiver, which checks it and writes it past the page cache (`O_DIRECT`).
//!
//! A connection whose first eight bytes are [`MAGIC`] is a bulk request;
//! any other is handed to the gRPC server ([`split_incoming`]). The request
//! names the reader (or staged set), the file and the offset, and carries
//! its own crc32c:
//!
//! ```text
//! request:  MAGIC · reader_id u64 · offset u64 · name_len u16 · name · crc32c u32
//! answer:   ANSWER_MAGIC · 0 · length u64 · the file's bytes from offset to its end
//!        or ANSWER_MAGIC · 1 · gRPC status code u8 · message_len u16 · message
//! ```
//!
//! All integers are big-endian. The sender does not checksum what it
//! sends: the receiver checks the whole file against the crc32c of the
//! meta table it fetched (itself crc-checked), and a file that fails is
//! fetched again, as over gRPC. Bulk streams are plain TCP, so a node with
//! TLS between nodes serves and fetches over gRPC only.

use std::io::{self, Read, Write};
use std::net::{TcpStream as StdTcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};
use tracing::{debug, warn};

use crate::snapshot::direct_io::{ALIGN, ChunkWriter};
use crate::snapshot::file_service::ReaderRegistry;
use crate::snapshot::throttle::SnapshotThrottle;

/// The first bytes of a bulk request.
pub const MAGIC: &[u8; 8] = b"RSNAPGF\x01";
/// The first bytes of its answer (a peer without bulk streams answers
/// something else, or nothing).
pub const ANSWER_MAGIC: &[u8; 8] = b"RSNAPGA\x01";
/// Longest file name a request may carry.
const MAX_NAME: usize = 1024;
/// How long a new connection may take to show its first bytes, and a bulk
/// request to arrive whole.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes handed to `sendfile` per call (and paced by the throttle).
const SEND_STEP: u64 = 1 << 20;
/// A receiver that takes nothing for this long is dropped (its send slot
/// freed).
const SEND_STALL: Duration = Duration::from_secs(60);
/// How often a blocked receive looks at its cancellation token.
const POLL: Duration = Duration::from_millis(200);

/// Serves bulk requests for the readers of a registry.
#[derive(Debug, Clone)]
pub struct BulkServer {
    registry: Arc<ReaderRegistry>,
    throttle: Arc<SnapshotThrottle>,
}

impl BulkServer {
    /// Serves `registry`'s readers and staged sets, paced by `throttle`.
    pub fn new(registry: Arc<ReaderRegistry>, throttle: Arc<SnapshotThrottle>) -> Self {
        Self { registry, throttle }
    }
}

/// Accepts on `listener`; bulk requests are served by `bulk` (when given),
/// every other connection is yielded for the gRPC server. Stops accepting
/// when the returned stream is dropped.
pub fn split_incoming(
    listener: TcpListener,
    bulk: Option<BulkServer>,
) -> ReceiverStream<io::Result<TcpStream>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = tx.closed() => return,
                a = listener.accept() => a,
            };
            let stream = match accepted {
                Ok((s, _)) => {
                    // Without it, a small answer written in two parts (a
                    // unary gRPC reply: headers, then data and trailers)
                    // waits out the peer's delayed ACK: 40 ms per call.
                    let _ = s.set_nodelay(true);
                    s
                }
                Err(e) => {
                    // Out of descriptors and the like: wait, not spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(bulk) = bulk.clone() else {
                if tx.send(Ok(stream)).await.is_err() {
                    return;
                }
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                if is_bulk(&stream).await {
                    let peer = stream
                        .peer_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    if let Err(e) = bulk.serve(stream).await {
                        debug!(peer, error = %e, "bulk stream ended early");
                    }
                } else {
                    let _ = tx.send(Ok(stream)).await;
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Whether the connection starts with [`MAGIC`] (without consuming it).
async fn is_bulk(stream: &TcpStream) -> bool {
    let deadline = tokio::time::Instant::now() + HEADER_TIMEOUT;
    let mut buf = [0u8; MAGIC.len()];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => return false,
        };
        if n == 0 || buf[..n] != MAGIC[..n] {
            return false;
        }
        if n == MAGIC.len() {
            return true;
        }
        // A prefix so far: wait for the rest (rare; requests are one write).
        tokio::time::sleep(Duration::from_millis(1)).await;
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
    }
}

/// One bulk request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Request {
    reader_id: u64,
    offset: u64,
    name: String,
}

impl Request {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(MAGIC.len() + 22 + self.name.len() + 4);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&self.reader_id.to_be_bytes());
        b.extend_from_slice(&self.offset.to_be_bytes());
        b.extend_from_slice(&(self.name.len() as u16).to_be_bytes());
        b.extend_from_slice(self.name.as_bytes());
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    }

    /// Reads a request after its magic (which the caller consumed).
    async fn read(s: &mut TcpStream) -> Result<Self, Status> {
        let mut head = [0u8; 18];
        s.read_exact(&mut head)
            .await
            .map_err(|e| Status::invalid_argument(format!("bulk request cut short: {e}")))?;
        let name_len = usize::from(u16::from_be_bytes([head[16], head[17]]));
        if name_len > MAX_NAME {
            return Err(Status::invalid_argument(format!(
                "bulk request names a file of {name_len} bytes (at most {MAX_NAME})"
            )));
        }
        let mut rest = vec![0u8; name_len + 4];
        s.read_exact(&mut rest)
            .await
            .map_err(|e| Status::invalid_argument(format!("bulk request cut short: {e}")))?;
        let (name, crc) = rest.split_at(name_len);
        let expected = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        let actual =
            crc32c::crc32c_append(crc32c::crc32c_append(crc32c::crc32c(MAGIC), &head), name);
        if expected != actual {
            return Err(Status::invalid_argument(format!(
                "bulk request failed its crc32c ({actual:08x}, carried {expected:08x})"
            )));
        }
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&head[i..i + 8]);
            u64::from_be_bytes(a)
        };
        let name = String::from_utf8(name.to_vec())
            .map_err(|_| Status::invalid_argument("bulk request: file name is not UTF-8"))?;
        Ok(Self {
            reader_id: u64_at(0),
            offset: u64_at(8),
            name,
        })
    }
}

fn error_answer(st: &Status) -> Vec<u8> {
    let msg = st.message().as_bytes();
    let msg = &msg[..msg.len().min(u16::MAX as usize)];
    let mut b = ANSWER_MAGIC.to_vec();
    b.extend_from_slice(&[1u8, st.code() as i32 as u8]);
    b.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    b.extend_from_slice(msg);
    b
}

impl BulkServer {
    /// Serves one bulk connection: one file from an offset to its end.
    async fn serve(&self, mut s: TcpStream) -> io::Result<()> {
        let mut magic = [0u8; MAGIC.len()];
        s.read_exact(&mut magic).await?;
        let req = match tokio::time::timeout(HEADER_TIMEOUT, Request::read(&mut s)).await {
            Ok(r) => r,
            Err(_) => Err(Status::deadline_exceeded("bulk request not sent in time")),
        };
        let opened = req.and_then(|req| {
            let (fm, path, guard) =
                self.registry
                    .open_stream(req.reader_id, &req.name, req.offset)?;
            let file = std::fs::File::open(&path)
                .map_err(|e| Status::data_loss(format!("open {}: {e}", fm.name)))?;
            Ok((req, fm, file, guard))
        });
        let (req, fm, file, guard) = match opened {
            Ok(o) => o,
            Err(st) => {
                s.write_all(&error_answer(&st)).await?;
                return s.shutdown().await;
            }
        };
        let mut head = [0u8; ANSWER_MAGIC.len() + 9];
        head[..ANSWER_MAGIC.len()].copy_from_slice(ANSWER_MAGIC);
        head[ANSWER_MAGIC.len() + 1..].copy_from_slice(&(fm.size - req.offset).to_be_bytes());
        s.write_all(&head).await?;
        // The file goes out on a blocking thread: a `sendfile` of bytes not
        // in the page cache waits for the disk, which must not hold a
        // runtime worker (raft RPCs are served on them). The socket turns
        // blocking, with the stall limit as its send timeout.
        let sock = s.into_std()?;
        sock.set_nonblocking(false)?;
        sock.set_write_timeout(Some(SEND_STALL))?;
        let (throttle, runtime) = (self.throttle.clone(), tokio::runtime::Handle::current());
        let (offset, size) = (req.offset, fm.size);
        tokio::task::spawn_blocking(move || {
            send_file(&sock, &file, (offset, size), &fm.name, |n| {
                runtime.block_on(throttle.sent(n));
                if let Some(g) = &guard {
                    g.registry.touch(g.id);
                }
            })?;
            sock.shutdown(std::net::Shutdown::Write)
        })
        .await
        .map_err(io::Error::other)?
    }
}

/// Sends `file` from `offset` to `size` on the blocking socket `sock`, a
/// [`SEND_STEP`] at a time, calling `pace` with each step's length before
/// it goes.
fn send_file(
    sock: &StdTcpStream,
    file: &std::fs::File,
    (mut offset, size): (u64, u64),
    name: &str,
    mut pace: impl FnMut(u64),
) -> io::Result<()> {
    while offset < size {
        let n = SEND_STEP.min(size - offset);
        pace(n);
        let end = offset + n;
        while offset < end {
            let left = (end - offset) as usize;
            match sendfile(sock, file, offset, left) {
                Ok(0) => {
                    // The file is shorter than its meta table says.
                    warn!(file = %name, offset, "snapshot file ended early");
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{name} ends at {offset}, listed as {size} bytes"),
                    ));
                }
                Ok(k) => offset += k as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The send timeout passed with nothing taken.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the receiver took nothing for {SEND_STALL:?}"),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// One `sendfile(2)` of up to `len` bytes of `file` at `offset`.
fn sendfile(s: &impl AsRawFd, file: &std::fs::File, offset: u64, len: usize) -> io::Result<usize> {
    let mut off = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
    // SAFETY: both descriptors are open for the call's duration and `off`
    // is a valid, exclusively borrowed off_t.
    let n = unsafe { libc::sendfile(s.as_raw_fd(), file.as_raw_fd(), &mut off, len) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Why a bulk fetch stopped.
#[derive(Debug)]
pub enum BulkFailure {
    /// The peer does not serve bulk streams (it closed the connection
    /// without an answer): fetch over gRPC instead.
    Unsupported,
    /// The peer answered with this status.
    Refused(Status),
    /// The transfer broke off (the bytes so far are written and counted).
    Interrupted(String),
    /// No byte arrived for this long.
    Idle(Duration),
    /// The caller cancelled.
    Cancelled,
    /// The local file could not be written.
    Write(io::Error),
}

/// A bulk fetch of one file, from `offset` to its end, into `out`.
pub struct BulkFetch<'a> {
    /// The peer's gRPC address (`host:port`).
    pub addr: &'a str,
    /// Reader (or staged set) id there.
    pub reader_id: u64,
    /// The file's name there.
    pub name: &'a str,
    /// The file's size.
    pub size: u64,
    /// Bytes per read and write (rounded up to 4 KiB).
    pub chunk_bytes: usize,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Give up after this long without a byte.
    pub idle_timeout: Duration,
    /// Checked between reads.
    pub cancel: &'a CancellationToken,
    /// Paces receives (with a runtime handle to wait on).
    pub throttle: Option<(&'a SnapshotThrottle, tokio::runtime::Handle)>,
}

impl BulkFetch<'_> {
    /// Fetches into `out` from `*offset`, advancing `*offset` and extending
    /// `*crc` (the crc32c of the bytes before `*offset`) chunk by chunk;
    /// `on_chunk` is told each chunk's length once it is written. Blocking.
    pub fn run(
        &self,
        out: &mut ChunkWriter,
        offset: &mut u64,
        crc: &mut u32,
        on_chunk: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(), BulkFailure> {
        let addr = self
            .addr
            .to_socket_addrs()
            .map_err(|e| BulkFailure::Interrupted(format!("resolve {}: {e}", self.addr)))?
            .next()
            .ok_or_else(|| {
                BulkFailure::Interrupted(format!("{} resolves to nothing", self.addr))
            })?;
        let mut s = StdTcpStream::connect_timeout(&addr, self.connect_timeout)
            .map_err(|e| BulkFailure::Interrupted(format!("connect: {e}")))?;
        let _ = s.set_nodelay(true);
        s.set_read_timeout(Some(POLL))
            .map_err(|e| BulkFailure::Interrupted(format!("socket: {e}")))?;
        let req = Request {
            reader_id: self.reader_id,
            offset: *offset,
            name: self.name.to_string(),
        };
        s.write_all(&req.encode())
            .map_err(|e| BulkFailure::Interrupted(format!("send request: {e}")))?;
        let mut idle = Idle::new(self.idle_timeout, self.cancel);
        let mut magic = [0u8; ANSWER_MAGIC.len() + 1];
        match read_full(&mut s, &mut magic, &mut idle) {
            Ok(()) if magic[..ANSWER_MAGIC.len()] == ANSWER_MAGIC[..] => {}
            Ok(()) | Err(BulkFailure::Interrupted(_)) => return Err(BulkFailure::Unsupported),
            Err(e) => return Err(e),
        }
        if magic[ANSWER_MAGIC.len()] != 0 {
            let mut head = [0u8; 3];
            read_full(&mut s, &mut head, &mut idle)?;
            let mut msg = vec![0u8; usize::from(u16::from_be_bytes([head[1], head[2]]))];
            read_full(&mut s, &mut msg, &mut idle)?;
            return Err(BulkFailure::Refused(Status::new(
                Code::from_i32(i32::from(head[0])),
                String::from_utf8_lossy(&msg).into_owned(),
            )));
        }
        let mut len = [0u8; 8];
        read_full(&mut s, &mut len, &mut idle)?;
        let len = u64::from_be_bytes(len);
        if offset.checked_add(len) != Some(self.size) {
            return Err(BulkFailure::Refused(Status::failed_precondition(format!(
                "the peer sends {len} bytes from {offset} of {}, listed as {} bytes",
                self.name, self.size
            ))));
        }
        let chunk = self.chunk_bytes.max(ALIGN).next_multiple_of(ALIGN);
        // The socket is read on this thread while a writer thread writes
        // the chunks before it, so the disk always has writes in flight.
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<(AlignedBuf, usize)>(WRITE_DEPTH);
        let (empty_tx, empty_rx) = std::sync::mpsc::channel::<AlignedBuf>();
        for _ in 0..=WRITE_DEPTH {
            let _ = empty_tx.send(AlignedBuf::take(chunk));
        }
        let size = self.size;
        let mut at = *offset;
        std::thread::scope(|sc| {
            let writer = sc.spawn(move || -> io::Result<()> {
                for (buf, n) in full_rx {
                    let data = &buf.as_slice()[..n];
                    out.write_at(data, *offset)?;
                    *crc = crc32c::crc32c_append(*crc, data);
                    *offset += n as u64;
                    on_chunk(n as u64);
                    let _ = empty_tx.send(buf);
                }
                Ok(())
            });
            let read = (|| {
                while at < size {
                    // A buffer back from the writer, or the writer stopped.
                    let Ok(mut buf) = empty_rx.recv() else {
                        return Ok(());
                    };
                    let want = chunk.min((size - at) as usize);
                    let mut got = 0;
                    let mut result = Ok(());
                    while got < want {
                        match read_some(&mut s, &mut buf.as_mut_slice()[got..want], &mut idle) {
                            Ok(0) => {
                                result = Err(BulkFailure::Interrupted(format!(
                                    "stream ended at {} of {size} bytes",
                                    at + got as u64
                                )));
                                break;
                            }
                            Ok(n) => got += n,
                            Err(e) => {
                                result = Err(e);
                                break;
                            }
                        }
                    }
                    if got > 0 {
                        if let Some((t, h)) = &self.throttle
                            && t.recv_limiter().is_some()
                        {
                            h.block_on(t.received(got as u64));
                        }
                        at += got as u64;
                        if full_tx.send((buf, got)).is_err() {
                            return Ok(());
                        }
                    }
                    result?;
                }
                Ok(())
            })();
            drop(full_tx);
            // The buffers go back to the pool (the writer has dropped its
            // end once it returns).
            let wrote = writer
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the writer thread panicked")));
            // A write error is the cause when both failed.
            for buf in empty_rx.try_iter() {
                buf.give_back();
            }
            wrote.map_err(BulkFailure::Write)?;
            read
        })
    }
}

/// Chunks handed to the writer thread and not yet written (besides the
/// one being read): the disk's queue depth per stream.
const WRITE_DEPTH: usize = 2;

/// A 4 KiB-aligned buffer (for `O_DIRECT`).
struct AlignedBuf {
    raw: Vec<u8>,
    pad: usize,
    len: usize,
}

/// Buffers kept for the next streams: fresh ones cost a page fault and a
/// zeroed page per 4 KiB (a third of an install's system time).
static POOL: std::sync::Mutex<Vec<AlignedBuf>> = std::sync::Mutex::new(Vec::new());
/// Bytes of buffers the pool keeps at most.
const POOL_BYTES: usize = 16 << 20;

impl AlignedBuf {
    /// A buffer of `len` bytes, from the pool when it holds one.
    fn take(len: usize) -> Self {
        let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        match pool.iter().position(|b| b.len == len) {
            Some(i) => pool.swap_remove(i),
            None => Self::new(len),
        }
    }

    /// Returns the buffer to the pool (or frees it when the pool is full).
    fn give_back(self) {
        let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        let held: usize = pool.iter().map(|b| b.len).sum();
        if held + self.len <= POOL_BYTES {
            pool.push(self);
        }
    }

    fn new(len: usize) -> Self {
        let raw = vec![0u8; len + ALIGN];
        let pad = raw.as_ptr().align_offset(ALIGN);
        Self { raw, pad, len }
    }

    fn as_slice(&self) -> &[u8] {
        &self.raw[self.pad..self.pad + self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.pad..self.pad + self.len]
    }
}

/// Time without bytes, and the cancellation to look at while waiting.
struct Idle<'a> {
    limit: Duration,
    since: Instant,
    cancel: &'a CancellationToken,
}

impl<'a> Idle<'a> {
    fn new(limit: Duration, cancel: &'a CancellationToken) -> Self {
        Self {
            limit,
            since: Instant::now(),
            cancel,
        }
    }
}

/// One read; waits out read timeouts until the idle limit or cancellation.
fn read_some(s: &mut StdTcpStream, buf: &mut [u8], idle: &mut Idle) -> Result<usize, BulkFailure> {
    loop {
        if idle.cancel.is_cancelled() {
            return Err(BulkFailure::Cancelled);
        }
        match s.read(buf) {
            Ok(n) => {
                idle.since = Instant::now();
                return Ok(n);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                if idle.since.elapsed() >= idle.limit {
                    return Err(BulkFailure::Idle(idle.limit));
                }
            }
            Err(e) => return Err(BulkFailure::Interrupted(e.to_string())),
        }
    }
}

fn read_full(s: &mut StdTcpStream, buf: &mut [u8], idle: &mut Idle) -> Result<(), BulkFailure> {
    let mut got = 0;
    while got < buf.len() {
        match read_some(s, &mut buf[got..], idle)? {
            0 => return Err(BulkFailure::Interrupted("answer cut short".into())),
            n => got += n,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_reads_back_as_sent_and_a_damaged_one_is_refused() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let req = Request {
            reader_id: 7,
            offset: 1 << 33,
            name: "shard/1/000001.tsm".into(),
        };
        for damage in [None, Some(20usize), Some(30)] {
            let mut bytes = req.encode();
            if let Some(i) = damage {
                bytes[i] ^= 0x40;
            }
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(&bytes).await.unwrap();
            let (mut s, _) = l.accept().await.unwrap();
            let mut magic = [0u8; 8];
            s.read_exact(&mut magic).await.unwrap();
            assert_eq!(&magic, MAGIC);
            let got = Request::read(&mut s).await;
            match damage {
                None => assert_eq!(got.unwrap(), req),
                Some(_) => {
                    let st = got.unwrap_err();
                    assert!(st.message().contains("crc32c"), "{st:?}");
                }
            }
        }
    }

    #[tokio::test]
    async fn an_oversized_name_is_refused_before_it_is_read() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[0u8; 16]);
        bytes.extend_from_slice(&u16::MAX.to_be_bytes());
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(&bytes).await.unwrap();
        let (mut s, _) = l.accept().await.unwrap();
        let mut magic = [0u8; 8];
        s.read_exact(&mut magic).await.unwrap();
        let st = Request::read(&mut s).await.unwrap_err();
        assert!(st.message().contains("at most 1024"), "{st:?}");
    }
}
