//! One client connection, from accept to close: read a request head, run the exchange
//! ([`super::failover`]), let [`super::fate`] decide what the connection does next, and
//! repeat while it is kept alive. Requests on a connection are handled strictly in order,
//! which is what makes pipelining safe: bytes of the next request wait in the read buffer
//! until the current response is complete and the current request body is consumed.
//!
//! While a connection is idle between requests it holds only its stream, a small read
//! buffer and a wait slot: its buffers go back to the worker's
//! [`BufferPool`](super::buffers::BufferPool), and the per-request state lives in a boxed
//! future only while a request runs. An idle keep-alive connection costs its socket and
//! well under 2 KiB.

use std::{net::SocketAddr, rc::Rc, time::Instant};

use super::{
    access_log::{AccessEntry, AttemptRecord},
    conn::{BufferedStream, write_all},
    failover,
    fate::{self, BodyState, Next},
    parking::Parked,
    request_head::RequestHead,
    respond::{self, Answer},
    stream::Stream,
    tunnel::tunnel,
    worker::Worker,
};
use crate::{
    config::UnderscoreHeaders,
    http::{BodyFraming, HeadScan, MAX_HEADERS, Method, parse_request_head},
};

/// Per-connection state. The buffers in it are taken from the worker's pool when a
/// request arrives and returned when its exchange ends.
pub(super) struct ClientConn {
    pub(super) io: BufferedStream,
    pub(super) peer: SocketAddr,
    /// The current request is a HEAD: lb's own answers carry no body.
    pub(super) head_request: bool,
    /// Longest a write to the client may stall (the body timeout of the config in force).
    pub(super) write_timeout: std::time::Duration,
    pub(super) head: RequestHead,
    /// Where the current request's body is: what decides whether the connection can carry
    /// another request.
    pub(super) body: BodyState,
    /// lb answered `Expect: 100-continue` (the client was told to send its body).
    pub(super) continue_sent: bool,
    /// Some byte of the response (an origin's 1xx included) reached the client: nothing
    /// may be retried any more.
    pub(super) response_started: bool,
    /// Heads lb writes (upstream request, client response).
    pub(super) out: Vec<u8>,
    /// Chunk re-encoding space.
    pub(super) scratch: Vec<u8>,
    /// The origin side's read buffer, recycled across attempts.
    pub(super) upstream_buf: Vec<u8>,
    /// A request body held for replay to the next member.
    pub(super) replay: Vec<u8>,
    /// This request's attempts, for the access log and the attempts header.
    pub(super) attempts: Vec<AttemptRecord>,
    /// The request path as behaviors match it (dot segments resolved, unreserved bytes
    /// decoded), when it differs from the path as received.
    pub(super) match_path: String,
    /// The request rule that matched (global or the behavior's): its route and request
    /// edits apply to every attempt.
    pub(super) rule: Option<crate::rules::RuleRef>,
    /// The request as a viewer-request function left it.
    pub(super) fn_request: Option<Box<super::edge_functions::FnRequest>>,
    /// The request an origin-request function made for the current attempt.
    pub(super) fn_origin_request: Option<Box<super::edge_functions::FnRequest>>,
    /// The behavior has a viewer-response function (looked up again when the head is
    /// written; nothing is looked up when this is false).
    pub(super) fn_viewer_response: bool,
    /// The head an origin-response function gave the final answer.
    pub(super) fn_response: Option<Box<super::edge_functions::FnHead>>,
}

/// Serves one client connection (TCP accepted and counted, TLS handshake done) until it
/// closes.
/// Between requests the task holds only the stream (and no buffer) and its idle wait;
/// everything a request needs lives in [`turn`]'s boxed state while the request runs.
pub(super) async fn serve_client(worker: Rc<Worker>, stream: Stream, peer: SocketAddr) {
    let io = BufferedStream::with_buffer(stream, Vec::new());
    serve(worker, io, peer, Pace::default(), None).await;
}

/// Runs the exchange of one HTTP/2 stream ([`super::h2_stream`]): the stream reads as a
/// connection carrying one request. Its connection is counted by the connection's task.
pub(super) async fn serve_h2_stream(worker: &Worker, stream: Stream, peer: SocketAddr) {
    let io = BufferedStream::with_buffer(stream, Vec::new());
    if let Some(mut io) = Box::pin(turn(worker, io, peer)).await {
        // Kept alive: there is no next request on a stream; it ends in order.
        let _ = monoio::io::AsyncWriteRent::shutdown(&mut io.stream).await;
    }
}

/// Gives a parked connection ([`super::parking`]) whose socket became readable a task
/// again: it reads what came (or finds the client gone) and goes on as before.
pub(super) async fn resume_client(worker: Rc<Worker>, parked: Parked) {
    let io = BufferedStream::with_buffer(Stream::Plain(parked.stream), Vec::new());
    serve(worker, io, parked.peer, parked.pace, Some(parked.since)).await;
}

/// The connection loop (the connection was counted as open at its accept).
/// `parked_since`: it comes back from parking, its socket readable or hung up.
async fn serve(
    worker: Rc<Worker>,
    mut io: BufferedStream,
    peer: SocketAddr,
    mut pace: Pace,
    parked_since: Option<Instant>,
) {
    let active = worker.adopt_connection();
    if let Some(since) = parked_since {
        if !matches!(Box::pin(io.fill_idle()).await, Ok(n) if n > 0) {
            // The client closed (or reset) while parked.
            return;
        }
        pace.waited(since.elapsed());
    }
    // A connection that has not sent anything yet (not one back from parking).
    let mut fresh = parked_since.is_none();
    loop {
        if !io.has_data() {
            if !pace.hot() {
                io.shed_idle_buffer();
                if !worker.drain.is_draining() && !io.stream.is_tls() {
                    match park(&worker, io, peer, pace) {
                        Ok(()) => {
                            // The connection stays open without this task.
                            active.hand_over();
                            return;
                        }
                        Err(back) => io = back,
                    }
                }
            }
            let started = Instant::now();
            if !idle_wait(&worker, &mut io, pace.hot(), fresh).await {
                // Closed by the client, idle too long, or draining: an orderly end.
                Box::pin(fate::close(&worker, &mut io, BodyState::Consumed)).await;
                return;
            }
            pace.waited(started.elapsed());
        }
        if std::mem::take(&mut fresh)
            && !io.stream.is_tls()
            && worker.view().snap.config.http2.cleartext
        {
            // A prior-knowledge HTTP/2 client opens with the connection preface.
            match prior_knowledge(&worker, &mut io).await {
                Preface::Http2 => {
                    active.hand_over();
                    serve_cleartext_h2(worker, io, peer).await;
                    return;
                }
                Preface::Http1 => {}
                Preface::Gone => return,
            }
        }
        match Box::pin(turn(&worker, io, peer)).await {
            Some(kept) => io = kept,
            None => return,
        }
    }
}

/// What the first bytes of a plain connection say it speaks.
enum Preface {
    Http2,
    Http1,
    /// Closed, or timed out, before saying.
    Gone,
}

/// Reads until the connection's first bytes either are the HTTP/2 preface or cannot be
/// (an HTTP/1 request line differs from it by its fifth byte at the latest), within the
/// header timeout. Nothing read is consumed.
async fn prior_knowledge(worker: &Worker, io: &mut BufferedStream) -> Preface {
    use super::h2_viewer::PREFACE;
    let deadline = Instant::now() + worker.view().snap.config.limits.header_timeout;
    loop {
        let data = io.data();
        let n = data.len().min(PREFACE.len());
        if data[..n] != PREFACE[..n] {
            return Preface::Http1;
        }
        if n == PREFACE.len() {
            return Preface::Http2;
        }
        match monoio::time::timeout_at(deadline.into(), io.fill_from(&worker.buffers)).await {
            Ok(Ok(read)) if read > 0 => {}
            _ => return Preface::Gone,
        }
    }
}

/// Hands a plain connection that opened with the HTTP/2 preface (still unread) to the
/// HTTP/2 server.
async fn serve_cleartext_h2(worker: Rc<Worker>, io: BufferedStream, peer: SocketAddr) {
    let (stream, buf) = io.into_parts_keeping_data();
    let Stream::Plain(tcp) = stream else {
        return;
    };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
    let io = super::h2_viewer::Prefixed::new(buf, monoio_compat::StreamWrapper::new(tcp));
    let from = super::h2_viewer::Viewer {
        peer,
        tls: false,
        fd,
    };
    super::h2_viewer::serve_h2(worker, io, from).await;
}

/// Parks a cold plain-TCP connection with nothing buffered; gives it back if it cannot be.
fn park(
    worker: &Worker,
    io: BufferedStream,
    peer: SocketAddr,
    pace: Pace,
) -> Result<(), BufferedStream> {
    let (stream, buf) = io.into_parts();
    let Stream::Plain(stream) = stream else {
        return Err(BufferedStream::with_buffer(stream, buf));
    };
    let conn = Parked {
        stream,
        peer,
        pace,
        since: Instant::now(),
    };
    match worker.parking.park(conn) {
        None => Ok(()),
        Some(conn) => Err(BufferedStream::with_buffer(Stream::Plain(conn.stream), buf)),
    }
}

/// One request on the connection, from its head to what the connection does next:
/// `Some(stream)` when it is kept for another request.
async fn turn(worker: &Worker, io: BufferedStream, peer: SocketAddr) -> Option<BufferedStream> {
    // Everything from the worker's pools: no allocation per request once warm.
    let pool = &worker.buffers;
    let (head, attempts) = pool.take_head();
    let mut conn = ClientConn {
        head_request: false,
        write_timeout: std::time::Duration::ZERO, // set from the config in force
        io,
        peer,
        head,
        body: BodyState::Consumed,
        continue_sent: false,
        response_started: false,
        out: pool.take(),
        scratch: Vec::new(),
        upstream_buf: pool.take(),
        replay: Vec::new(),
        attempts,
        match_path: String::new(),
        rule: None,
        fn_request: None,
        fn_origin_request: None,
        fn_viewer_response: false,
        fn_response: None,
    };
    let next = one_request(worker, &mut conn).await;
    conn.release_buffers(worker);
    match next {
        Next::KeepAlive if !worker.drain.is_draining() => Some(conn.io),
        Next::KeepAlive | Next::Close => {
            fate::close(worker, &mut conn.io, conn.body).await;
            None
        }
        Next::Abort => None,
        Next::Upgrade(origin) => {
            tunnel(worker, conn.io, *origin).await;
            None
        }
    }
}

/// Reads one request, runs its exchange, and logs it.
async fn one_request(worker: &Worker, conn: &mut ClientConn) -> Next {
    if let Some(next) = read_request(worker, conn).await {
        return next;
    }
    let started = Instant::now();
    // The snapshot this exchange runs on, even if a reload happens meanwhile.
    let view = worker.view();
    view.metrics()
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (next, status) = failover::exchange(worker, &view, conn).await;
    view.metrics().response(status);
    let format = view.snap.config.observability.access_log_format;
    let field = |name: &str| {
        if format == crate::config::AccessLogFormat::Lb {
            return None;
        }
        conn.head
            .fields()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    worker.access_log.record(
        &AccessEntry {
            client: conn.peer.ip(),
            method: conn.head.method_str(),
            path: conn.head.path(),
            status,
            total_ms: started.elapsed().as_millis().min(u32::MAX as u128) as u32,
            attempts: &conn.attempts,
            protocol: conn.protocol(),
            host: conn
                .head
                .host()
                .filter(|_| format != crate::config::AccessLogFormat::Lb),
            referer: field("referer"),
            user_agent: field("user-agent"),
        },
        &view.snap.config.origins,
        format,
    );
    next
}

/// Reads and validates the next request head into `conn.head`. `None`: a request is
/// ready; `Some(next)`: the connection ends (closed by the client, idle, timed out, or a
/// refused head that lb has answered).
async fn read_request(worker: &Worker, conn: &mut ClientConn) -> Option<Next> {
    conn.head_request = false;
    conn.continue_sent = false;
    conn.response_started = false;
    let view = worker.view();
    let limits = &view.snap.config.limits;
    let http = &view.snap.config.http;
    conn.write_timeout = limits.body_timeout;
    // The header timeout runs from the first byte of the request (idle_wait read it).
    let deadline = Instant::now() + limits.header_timeout;
    // How far the search for the end of the head got (no rescans on split reads).
    let mut scan = HeadScan::default();
    loop {
        if scan.before_request_line() {
            // RFC 9112 §2.2: empty lines before the request line are ignored.
            let skip = leading_empty_lines(conn.io.data());
            if skip > 0 {
                conn.io.consume(skip);
                scan = HeadScan::default();
            }
        }
        let end = match scan.find_end(conn.io.data(), &limits.head) {
            Ok(end) => end,
            Err(e) => return Some(refuse(worker, conn, e.status, e.reason.text()).await),
        };
        if let Some(end) = end {
            if let Some(line_end) = scan.request_line_end() {
                crate::http::downgrade_minor_version(&mut conn.io.data_mut()[..=line_end]);
            }
            // Parsed in a function of its own: the header slots must not live across an
            // await, or every idle connection's task would carry them.
            return match take_head(conn, end, &limits.head, http) {
                Ok(()) => None,
                Err((status, reason)) => Some(refuse(worker, conn, status, reason).await),
            };
        }
        let read =
            monoio::time::timeout_at(deadline.into(), conn.io.fill_from(&worker.buffers)).await;
        match read {
            Err(_elapsed) => {
                let reason = "timed out reading the request head";
                return Some(refuse(worker, conn, 408, reason).await);
            }
            Ok(Ok(0)) | Ok(Err(_)) => return Some(Next::Abort),
            Ok(Ok(_)) => {}
        }
    }
}

/// Parses the complete head of `end` bytes into `conn.head` and consumes it, or says
/// why it is refused.
fn take_head(
    conn: &mut ClientConn,
    end: usize,
    limits: &crate::http::HeadLimits,
    http: &crate::config::HttpSettings,
) -> Result<(), (u16, &'static str)> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let parsed = match parse_request_head(&conn.io.data()[..end], limits, &mut slots) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => unreachable!("the head's end was found"),
        Err(e) => return Err((e.status, e.reason.text())),
    };
    if http.underscore_headers == UnderscoreHeaders::Reject
        && parsed.headers.iter().any(|h| h.name.contains('_'))
    {
        return Err((400, "header names with underscores are not accepted"));
    }
    let head_len = parsed.head_len;
    conn.head.capture(&parsed, conn.io.data(), http);
    conn.io.consume(head_len);
    conn.head_request = conn.head.method() == Method::Head;
    conn.body = match conn.head.framing() {
        BodyFraming::None | BodyFraming::ContentLength(0) => BodyState::Consumed,
        framing => BodyState::Unread(framing),
    };
    crate::http::normalize_path(conn.head.path(), &mut conn.match_path);
    Ok(())
}

/// How a connection waits for its next request, from how soon its requests came so far.
///
/// A *hot* connection (its last [`HOT_AFTER`] requests each came within [`HOT_GAP`] of
/// the previous response: a busy client) waits with a read already pending into a small
/// buffer of its own: one io_uring operation per request. A *cold* one waits for
/// readability and holds no buffer at all; the read into a pooled buffer follows: two
/// operations (measured at about 3 us of CPU per request), paid only by connections that
/// are idle most of the time, where memory is what counts. (A pending read cannot be
/// turned into a readability wait later: cancelling it could lose the bytes it read.)
///
/// A connection's first request is awaited hot: clients send it right after connecting,
/// and a connection that carries one request pays no second operation.
///
/// A cold connection with plain TCP does not even keep its task: it is parked
/// ([`super::parking`]) and gets a new task when its socket becomes readable.
#[derive(Clone, Copy)]
pub(super) struct Pace {
    first: bool,
    quick: u8,
    /// The socket is in the worker's epoll set already (parked before).
    pub(super) parked_before: bool,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            first: true,
            quick: 0,
            parked_before: false,
        }
    }
}

/// Requests in a row, each within [`HOT_GAP`] of the previous answer, that make a
/// connection hot.
const HOT_AFTER: u8 = 3;
/// The longest wait for a next request that still counts as a busy client.
const HOT_GAP: std::time::Duration = std::time::Duration::from_millis(100);

impl Pace {
    fn hot(&self) -> bool {
        self.first || self.quick >= HOT_AFTER
    }

    fn waited(&mut self, idle: std::time::Duration) {
        if std::mem::take(&mut self.first) {
            // From connect to first request says nothing about the pace of requests.
            return;
        }
        self.quick = if idle < HOT_GAP {
            self.quick.saturating_add(1)
        } else {
            0
        };
    }
}

/// Waits between requests until the client sends something: false if it closed, stayed
/// idle for `limits.idle_timeout`, or the worker started draining. A hot connection's
/// pending read holds only a small buffer (`BufferedStream::fill_idle`), a cold one's
/// readability wait none (see [`Pace`]); both live in boxed futures, so that an idle
/// connection's task does not carry the read's state while it waits for readability.
/// The idle timeout is a deadline in the worker's wait registry, not a timer of its own
/// (a timer is 640 bytes in every future that holds one). A read dropped when the wait
/// ends loses nothing: the connection closes.
async fn idle_wait(worker: &Worker, io: &mut BufferedStream, hot: bool, fresh: bool) -> bool {
    if worker.drain.is_draining() {
        return fresh && first_request_while_draining(worker, io).await;
    }
    let deadline = Instant::now() + worker.view().snap.config.limits.idle_timeout;
    // TLS connections may hold decrypted bytes in rustls: only a read can tell.
    if hot || io.stream.is_tls() {
        monoio::select! {
            r = Box::pin(io.fill_idle()) => return matches!(r, Ok(n) if n > 0),
            _ = worker.drain.wait_until(Some(deadline)) => {}
        }
    } else {
        monoio::select! {
            r = io.stream.readable() => {
                return r.is_ok() && matches!(Box::pin(io.fill_idle()).await, Ok(n) if n > 0);
            }
            _ = worker.drain.wait_until(Some(deadline)) => {}
        }
    }
    // The idle timeout, or a drain: a connection that never sent its first request was
    // accepted as the drain began (an upgrade's last accepts) and is owed an answer.
    fresh && worker.drain.is_draining() && first_request_while_draining(worker, io).await
}

/// A connection accepted just before the drain: its first request is read within the
/// header timeout and answered (then the connection closes), not dropped unanswered.
async fn first_request_while_draining(worker: &Worker, io: &mut BufferedStream) -> bool {
    let limit = worker.view().snap.config.limits.header_timeout;
    matches!(
        monoio::time::timeout(limit, Box::pin(io.fill_idle())).await,
        Ok(Ok(n)) if n > 0
    )
}

/// Answers a request head lb refuses; the connection then closes (where the next request
/// would start is unknown).
async fn refuse(worker: &Worker, conn: &mut ClientConn, status: u16, reason: &str) -> Next {
    conn.body = BodyState::Lost;
    // Boxed: an idle connection's read_request state must not carry an answer's.
    Box::pin(respond::answer(
        worker,
        conn,
        Answer::Error { status, reason },
    ))
    .await
}

/// Length of the CRLF / LF lines at the start of `data` (complete lines only).
fn leading_empty_lines(data: &[u8]) -> usize {
    let mut i = 0;
    loop {
        match data.get(i..) {
            Some([b'\n', ..]) => i += 1,
            Some([b'\r', b'\n', ..]) => i += 2,
            _ => return i,
        }
    }
}

impl ClientConn {
    /// Whether the viewer connected over HTTPS.
    pub(super) fn tls(&self) -> bool {
        self.io.stream.is_tls()
    }

    /// The viewer's protocol, as the access log names it.
    pub(super) fn protocol(&self) -> &'static str {
        if self.io.stream.is_h2() {
            "HTTP/2.0"
        } else if self.head.is_http10() {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        }
    }

    /// The path behaviors match: normalised when that differs from the received one.
    pub(super) fn match_path(&self) -> &str {
        if self.match_path.is_empty() {
            self.head.path()
        } else {
            &self.match_path
        }
    }

    /// Writes `out` (a head lb built, maybe with a small body) to the client, within the
    /// write timeout: a client that stops reading cannot hold the exchange forever. Any
    /// error, the timeout included, means the connection must close.
    pub(super) async fn send_out(&mut self) -> std::io::Result<()> {
        match monoio::time::timeout(
            self.write_timeout,
            write_all(&mut self.io.stream, &mut self.out),
        )
        .await
        {
            Ok(result) => result,
            Err(_elapsed) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    /// Gives this request's buffers back to the worker (a pipelined request already
    /// buffered keeps the read buffer; a closing connection's read buffer is kept for
    /// its lingering close).
    fn release_buffers(&mut self, worker: &Worker) {
        let pool = &worker.buffers;
        self.io.release(pool);
        pool.put(std::mem::take(&mut self.out));
        pool.put(std::mem::take(&mut self.scratch));
        pool.put(std::mem::take(&mut self.upstream_buf));
        pool.put(std::mem::take(&mut self.replay));
        pool.put_head(
            std::mem::take(&mut self.head),
            std::mem::take(&mut self.attempts),
        );
    }
}
