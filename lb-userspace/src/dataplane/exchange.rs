//! One client connection: read a request head, run the exchange, repeat while the
//! connection is kept alive. Requests on a connection are handled strictly in order, which
//! is what makes pipelining safe: bytes of the next request wait in the read buffer until
//! the current response is complete.
//!
//! An exchange picks the behavior for the path, then tries the target's members in order
//! (the failover contract, README "Failover"): a failover status, a connect failure, a
//! response timeout or a reset before any response byte moves a GET/HEAD/OPTIONS request
//! on; other methods move on only if no request byte was written. Nothing is retried once
//! a response byte has reached the client.

use std::{net::SocketAddr, rc::Rc, time::Instant};

use monoio::io::AsyncWriteRent;

use super::{
    access_log::{AccessEntry, AttemptRecord, Outcome, write_attempts},
    body::{self, BodyError, BodyErrorKind, BodyPlan, Encoding, Side, Source},
    conn::{BufferedStream, READ_CHUNK, write_all},
    error_pages,
    request_head::RequestHead,
    selection::Plan,
    stream::Stream,
    tunnel::tunnel,
    upstream::{RequestProgress, UpstreamError, UpstreamErrorKind, connect},
    worker::{View, Worker},
};
use crate::{
    config::{Target, ViewerProtocolPolicy},
    health::now_ms,
    http::{
        BodyFraming, ForwardedFor, HeaderRewrite, MAX_HEADERS, Method, ResponseConnection,
        ResponseFraming, httparse_headers, parse_request_head, parse_response_head,
    },
    metrics::FailoverReason,
};

/// Per-connection state, allocated once and reused for every request.
pub(super) struct ClientConn {
    pub(super) io: BufferedStream,
    peer: SocketAddr,
    /// The current request is a HEAD: lb's own answers carry no body.
    head_request: bool,
    /// Longest a write to the client may stall (the body timeout of the config in force).
    write_timeout: std::time::Duration,
    head: RequestHead,
    /// Heads lb writes (upstream request, client response).
    out: Vec<u8>,
    /// Chunk re-encoding space.
    scratch: Vec<u8>,
    /// The origin side's read buffer, recycled across exchanges.
    upstream_buf: Vec<u8>,
    /// A request body held for replay to the next member.
    replay: Vec<u8>,
    /// This request's attempts, for the access log and the attempts header.
    attempts: Vec<AttemptRecord>,
}

/// Serves one client connection (TCP accepted, TLS handshake done) until it closes.
pub(super) async fn serve_client(worker: Rc<Worker>, stream: Stream, peer: SocketAddr) {
    let _active = worker.track_connection();
    let mut conn = ClientConn {
        head_request: false,
        write_timeout: worker.view().snap.config.limits.body_timeout,
        io: BufferedStream::new(stream),
        peer,
        head: RequestHead::default(),
        out: Vec::with_capacity(4096),
        scratch: Vec::new(),
        upstream_buf: Vec::with_capacity(READ_CHUNK),
        replay: Vec::new(),
        attempts: Vec::with_capacity(4),
    };
    loop {
        if !read_request(&worker, &mut conn).await {
            break;
        }
        let started = Instant::now();
        // The snapshot this exchange runs on, even if a reload happens meanwhile.
        let view = worker.view();
        view.metrics()
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (next, status) = exchange(&worker, &view, &mut conn).await;
        view.metrics().response(status);
        worker.access_log.record(
            &AccessEntry {
                client: conn.peer.ip(),
                method: conn.head.method_str(),
                path: conn.head.path(),
                status,
                total_ms: started.elapsed().as_millis().min(u32::MAX as u128) as u32,
                attempts: &conn.attempts,
            },
            &view.snap.config.origins,
        );
        match next {
            Next::KeepAlive if !worker.drain.is_draining() => {}
            Next::KeepAlive | Next::Close => break,
            Next::Abort => return,
            Next::Upgrade(origin) => {
                let ClientConn { io, .. } = conn;
                tunnel(io, origin).await;
                return;
            }
        }
    }
    if conn.tls() {
        // close_notify before the FIN, so a TLS client can tell an orderly end (and the
        // end of an HTTP/1.0 body) from a truncation. Bounded: the peer may be gone.
        let _ = monoio::time::timeout(CLOSE_NOTIFY_TIMEOUT, conn.io.stream.shutdown()).await;
    }
}

/// How long lb spends sending a TLS close_notify before simply closing.
const CLOSE_NOTIFY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(200);

/// Reads and validates the next request head into `conn.head`. false: close.
async fn read_request(worker: &Worker, conn: &mut ClientConn) -> bool {
    conn.head_request = false;
    let view = worker.view();
    let limits = &view.snap.config.limits;
    conn.write_timeout = limits.body_timeout;
    // The header timeout runs from the first byte of the request.
    let mut deadline = conn
        .io
        .has_data()
        .then(|| Instant::now() + limits.header_timeout);
    loop {
        if conn.io.has_data() {
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match parse_request_head(conn.io.data(), &limits.head, &mut slots) {
                Ok(Some(parsed)) => {
                    let head_len = parsed.head_len;
                    conn.head.capture(&parsed, conn.io.data());
                    conn.io.consume(head_len);
                    conn.head_request = conn.head.method() == Method::Head;
                    return true;
                }
                Ok(None) => {}
                Err(e) => {
                    reply_error(conn, e.status, e.reason.text(), true).await;
                    return false;
                }
            }
        }
        let read = match deadline {
            Some(at) => monoio::time::timeout_at(at.into(), conn.io.fill()).await,
            None => {
                if worker.drain.is_draining() {
                    return false;
                }
                monoio::select! {
                    r = monoio::time::timeout(limits.idle_timeout, conn.io.fill()) => r,
                    _ = worker.drain.wait() => return false,
                }
            }
        };
        match read {
            Err(_elapsed) => {
                if deadline.is_some() {
                    reply_error(conn, 408, "timed out reading the request head", true).await;
                }
                return false;
            }
            Ok(Ok(0)) | Ok(Err(_)) => return false,
            Ok(Ok(_)) => {
                deadline.get_or_insert_with(|| Instant::now() + limits.header_timeout);
            }
        }
    }
}

/// What the client connection does after an exchange.
pub(super) enum Next {
    KeepAlive,
    /// An orderly close (with close_notify on TLS).
    Close,
    /// The response was cut short (its head is out): close without close_notify, so a TLS
    /// client sees a truncation rather than a clean end.
    Abort,
    Upgrade(BufferedStream),
}

/// A final or failover-status response head is in `origin`'s buffer.
struct ResponseStart {
    origin: BufferedStream,
    status: u16,
}

enum Failure {
    /// Upstream failed before a response head.
    Upstream(UpstreamError),
    /// The request body could not be forwarded.
    Body(BodyError),
}

/// Where the request body is while attempts run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyMode {
    None,
    /// Entirely in `conn.replay`: can be sent again.
    Buffered,
    /// Streamed from the client during the first attempt that gets that far.
    Stream,
}

async fn exchange(worker: &Worker, view: &View, conn: &mut ClientConn) -> (Next, u16) {
    let config = &*view.snap.config;
    conn.attempts.clear();
    let method = conn.head.method();
    let framing = conn.head.framing();
    let behavior = config.behavior_for(conn.head.path());
    if !behavior.allowed_methods.allows(conn.head.method_str()) {
        // CloudFront answers methods a behavior does not allow with 403.
        let close = framing != BodyFraming::None;
        reply_error(conn, 403, "method not allowed for this path", close).await;
        return (next_after(conn, close), 403);
    }
    if !conn.tls() && behavior.viewer_protocol_policy != ViewerProtocolPolicy::AllowAll {
        return viewer_policy_reply(worker, conn, behavior.viewer_protocol_policy).await;
    }
    if let BodyFraming::ContentLength(n) = framing
        && n > config.limits.max_request_body
    {
        let reason = crate::http::RejectReason::BodyTooLarge.text();
        reply_error(conn, 413, reason, true).await;
        return (Next::Close, 413);
    }
    let body_mode = match framing {
        BodyFraming::None => BodyMode::None,
        BodyFraming::ContentLength(n) if n as usize <= config.failover.replay_body_limit => {
            if let Err(e) = buffer_body(view, conn, n as usize).await {
                let (status, reason) = body_error_reply(&e);
                reply_error(conn, status, reason, true).await;
                return (Next::Close, status);
            }
            BodyMode::Buffered
        }
        _ => BodyMode::Stream,
    };
    let group_index = match behavior.target {
        Target::Group(g) => Some(g),
        Target::Origin(_) => None,
    };
    let group = group_index.map(|g| &config.groups[g]);
    let order = match view.selector.plan(
        config,
        &view.snap.health,
        worker.kernel.as_deref(),
        behavior.target,
    ) {
        Plan::Try(order) => order,
        Plan::NoneUsable => {
            if let Some(custom) = error_pages::lookup(config, 503) {
                return error_pages::serve(worker, view, conn, custom, 503).await;
            }
            let reason = format!(
                "no healthy origin in group {}",
                group.map_or("", |g| g.id.as_str())
            );
            let close = body_mode == BodyMode::Stream;
            reply_error(conn, 503, &reason, close).await;
            return (next_after(conn, close), 503);
        }
    };
    let mut streamed = false;
    let mut last_error: Option<(UpstreamError, usize)> = None;
    for (k, &index) in order.iter().enumerate() {
        let is_last = k + 1 == order.len();
        let replayable = body_mode != BodyMode::Stream || !streamed;
        let t0 = Instant::now();
        let counters = view.metrics().origin(index);
        counters
            .attempts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let in_flight = InFlight::start(view, index);
        let result = attempt(worker, view, conn, index, body_mode, &mut streamed).await;
        let elapsed = t0.elapsed();
        let ms = elapsed.as_millis().min(u32::MAX as u128) as u32;
        match result {
            Ok(start) => {
                let status = start.status;
                conn.attempts.push(AttemptRecord {
                    origin: index,
                    outcome: Outcome::Status(status),
                    ms,
                });
                let failover_status = group.is_some_and(|g| g.failover_statuses.contains(status));
                counters.observe_latency(elapsed);
                view.selector.observe(index, elapsed);
                if failover_status {
                    counters.error(FailoverReason::Status);
                    view.snap.health.record_failure(index, now_ms());
                } else {
                    view.snap.health.record_success(index);
                }
                let may_move = method.fails_over() && replayable && body_mode != BodyMode::Stream;
                if failover_status && !is_last && may_move {
                    if let Some(g) = group_index {
                        view.metrics().failover(g, FailoverReason::Status);
                    }
                    // The failed response's body is not needed: close rather than drain.
                    drop(in_flight);
                    continue;
                }
                if status >= 400
                    && let Some(custom) = error_pages::lookup(config, status)
                {
                    drop(start);
                    drop(in_flight);
                    return error_pages::serve(worker, view, conn, custom, status).await;
                }
                let result = respond(worker, view, conn, index, start).await;
                drop(in_flight);
                return result;
            }
            Err(Failure::Upstream(e)) => {
                conn.attempts.push(AttemptRecord {
                    origin: index,
                    outcome: Outcome::Error(e.label()),
                    ms,
                });
                counters.error(failover_reason(&e));
                view.snap.health.record_failure(index, now_ms());
                drop(in_flight);
                let may_move = e.progress == RequestProgress::NotSent
                    || (method.fails_over()
                        && body_mode != BodyMode::Stream
                        && e.retry_safe(method));
                last_error = Some((e, index));
                if !is_last && may_move {
                    if let Some(g) = group_index {
                        view.metrics().failover(g, failover_reason(&e));
                    }
                    continue;
                }
                break;
            }
            Err(Failure::Body(e)) => {
                drop(in_flight);
                let (status, reason) = body_error_reply(&e);
                reply_error(conn, status, reason, true).await;
                return (Next::Close, status);
            }
        }
    }
    let (e, index) = last_error.expect("the loop only ends without a response after an error");
    let status = e.status();
    if let Some(custom) = error_pages::lookup(config, status) {
        return error_pages::serve(worker, view, conn, custom, status).await;
    }
    let close = !conn.head.keep_alive || (body_mode == BodyMode::Stream && streamed);
    let reason = e.reason(&config.origins[index].id);
    reply_error(conn, status, &reason, close).await;
    (next_after(conn, close), status)
}

impl ClientConn {
    /// Whether the viewer connected over HTTPS.
    fn tls(&self) -> bool {
        self.io.stream.is_tls()
    }

    /// Whether the current request's client wants its connection kept.
    pub(super) fn keep_alive(&self) -> bool {
        self.head.keep_alive
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
}

/// An attempt in progress on one origin, counted in flight (for the selector's
/// least-outstanding and peak-EWMA choices, and the in-flight gauge) until dropped: an
/// attempt ended by a panic or a dropped task cannot leave its origin looking busy.
struct InFlight<'a> {
    view: &'a View,
    index: usize,
}

impl<'a> InFlight<'a> {
    fn start(view: &'a View, index: usize) -> Self {
        view.metrics()
            .origin(index)
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        view.selector.started(index);
        Self { view, index }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.view.selector.finished(self.index);
        self.view
            .metrics()
            .origin(self.index)
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn next_after(conn: &ClientConn, close: bool) -> Next {
    if close || !conn.head.keep_alive {
        Next::Close
    } else {
        Next::KeepAlive
    }
}

fn failover_reason(e: &UpstreamError) -> FailoverReason {
    match e.kind {
        UpstreamErrorKind::ConnectRefused => FailoverReason::ConnectRefused,
        UpstreamErrorKind::ConnectTimeout => FailoverReason::ConnectTimeout,
        UpstreamErrorKind::ConnectFailed(_) => FailoverReason::ConnectError,
        UpstreamErrorKind::TlsHandshake(_) => FailoverReason::TlsHandshake,
        UpstreamErrorKind::ClosedBeforeResponse => FailoverReason::Reset,
        UpstreamErrorKind::ResponseTimeout => FailoverReason::ResponseTimeout,
        UpstreamErrorKind::MalformedResponse(_) => FailoverReason::BadResponse,
        UpstreamErrorKind::WriteFailed(_) => FailoverReason::WriteError,
    }
}

/// Reads a Content-Length body of `n` bytes into `conn.replay`.
async fn buffer_body(view: &View, conn: &mut ClientConn, n: usize) -> Result<(), BodyError> {
    conn.replay.clear();
    if conn.head.expect_continue && conn.io.data().len() < n {
        conn.out.clear();
        conn.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        conn.send_out().await.map_err(|_| BodyError {
            side: Side::Client,
            kind: BodyErrorKind::Io,
        })?;
    }
    while conn.replay.len() < n {
        if !conn.io.has_data() {
            match monoio::time::timeout(view.snap.config.limits.body_timeout, conn.io.fill()).await
            {
                Err(_) => {
                    return Err(BodyError {
                        side: Side::Client,
                        kind: BodyErrorKind::Timeout,
                    });
                }
                Ok(Ok(0)) => {
                    return Err(BodyError {
                        side: Side::Client,
                        kind: BodyErrorKind::Closed,
                    });
                }
                Ok(Err(_)) => {
                    return Err(BodyError {
                        side: Side::Client,
                        kind: BodyErrorKind::Io,
                    });
                }
                Ok(Ok(_)) => {}
            }
        }
        let take = (n - conn.replay.len()).min(conn.io.data().len());
        conn.replay.extend_from_slice(&conn.io.data()[..take]);
        conn.io.consume(take);
    }
    Ok(())
}

/// Sends the request to origin `index` and waits for a final (non-1xx) response head.
/// A pooled connection that turns out dead is replaced once by a fresh one when nothing
/// unrepeatable was sent on it.
async fn attempt(
    worker: &Worker,
    view: &View,
    conn: &mut ClientConn,
    index: usize,
    body_mode: BodyMode,
    streamed: &mut bool,
) -> Result<ResponseStart, Failure> {
    let config = &view.snap.config;
    let origin = &config.origins[index];
    let tls = origin.uses_tls(conn.tls());
    let mut fresh_retry = true;
    loop {
        // The retry after a dead pooled connection always uses a fresh one.
        let pooled = if fresh_retry {
            worker
                .pool
                .borrow_mut()
                .checkout(index, tls, origin.keepalive_timeout)
        } else {
            None
        };
        let reused = pooled.is_some();
        let stream = match pooled {
            Some(s) => s,
            None => {
                let address = view.snap.addresses.get(index);
                let address = SocketAddr::new(address.ip(), origin.port(tls));
                let s = connect(origin, address, tls.then_some(&view.snap.tls.origin))
                    .await
                    .map_err(Failure::Upstream)?;
                view.metrics()
                    .upstream_connections_opened
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                s
            }
        };
        let mut up = BufferedStream::with_buffer(stream, std::mem::take(&mut conn.upstream_buf));
        let head = &conn.head;
        let (length, chunked) = match (body_mode, head.framing()) {
            (BodyMode::None, _) => (None, false),
            (BodyMode::Buffered, _) => (Some(conn.replay.len() as u64), false),
            (BodyMode::Stream, BodyFraming::ContentLength(n)) => (Some(n), false),
            (BodyMode::Stream, _) => (None, true),
        };
        let scheme = if conn.tls() { "https" } else { "http" };
        HeaderRewrite::request(
            &mut conn.out,
            head.method_str(),
            &origin.origin_path,
            head.path(),
            head.host(),
            head.fields(),
            ForwardedFor(conn.peer.ip()),
            scheme,
            length,
            chunked,
            head.upgrade(),
            &origin.custom_headers,
        );
        if body_mode == BodyMode::Buffered {
            conn.out.extend_from_slice(&conn.replay);
        }
        let replayable = body_mode != BodyMode::Stream;
        let idempotent = head.method().is_idempotent();
        if let Err(e) = write_all(&mut up.stream, &mut conn.out).await {
            if reused && fresh_retry && replayable && idempotent {
                fresh_retry = false;
                continue;
            }
            return Err(Failure::Upstream(UpstreamError::new(
                UpstreamErrorKind::WriteFailed(e.kind()),
                RequestProgress::Sent,
            )));
        }
        if body_mode == BodyMode::Stream {
            *streamed = true;
            if conn.head.expect_continue && !conn.io.has_data() {
                conn.out.clear();
                conn.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                if conn.send_out().await.is_err() {
                    return Err(Failure::Body(BodyError {
                        side: Side::Client,
                        kind: BodyErrorKind::Io,
                    }));
                }
            }
            let source = match conn.head.framing() {
                BodyFraming::ContentLength(n) => Source::Length(n),
                _ => Source::Chunked,
            };
            let plan = BodyPlan {
                source,
                encoding: Encoding::Chunked,
                src_side: Side::Client,
                idle: config.limits.body_timeout,
                limit: config.limits.max_request_body,
            };
            body::forward(&mut conn.io, &mut up.stream, plan, &mut conn.scratch)
                .await
                .map_err(Failure::Body)?;
        }
        // Wait for the response head, forwarding interim (1xx) responses as they come.
        let deadline = Instant::now() + origin.response_timeout;
        loop {
            match read_response_head(&mut up, deadline, config.limits.max_response_head).await {
                Ok((status, head_len)) => {
                    if !(100..200).contains(&status) || status == 101 {
                        return Ok(ResponseStart { origin: up, status });
                    }
                    conn.out.clear();
                    conn.out.extend_from_slice(&up.data()[..head_len]);
                    up.consume(head_len);
                    if conn.send_out().await.is_err() {
                        return Err(Failure::Body(BodyError {
                            side: Side::Client,
                            kind: BodyErrorKind::Io,
                        }));
                    }
                }
                Err(UpstreamErrorKind::ClosedBeforeResponse)
                    if reused && fresh_retry && replayable && idempotent =>
                {
                    fresh_retry = false;
                    break;
                }
                Err(kind) => {
                    return Err(Failure::Upstream(UpstreamError::new(
                        kind,
                        RequestProgress::Sent,
                    )));
                }
            }
        }
    }
}

/// Reads until `up` holds a complete, valid response head (not consumed); returns its
/// status and length.
async fn read_response_head(
    up: &mut BufferedStream,
    deadline: Instant,
    max_head: usize,
) -> Result<(u16, usize), UpstreamErrorKind> {
    loop {
        if up.has_data() {
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match parse_response_head(up.data(), max_head, &mut slots, false) {
                Ok(Some(r)) => return Ok((r.status, r.head_len)),
                Ok(None) => {}
                Err(e) => {
                    return Err(UpstreamErrorKind::MalformedResponse(match e {
                        crate::http::ResponseHeadError::Malformed(why) => why,
                        crate::http::ResponseHeadError::TooLarge(_) => "response head too large",
                    }));
                }
            }
        }
        match monoio::time::timeout_at(deadline.into(), up.fill()).await {
            Err(_) => return Err(UpstreamErrorKind::ResponseTimeout),
            Ok(Ok(0)) | Ok(Err(_)) if !up.has_data() => {
                return Err(UpstreamErrorKind::ClosedBeforeResponse);
            }
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Err(UpstreamErrorKind::MalformedResponse(
                    "connection closed inside the response head",
                ));
            }
            Ok(Ok(_)) => {}
        }
    }
}

/// Commits the response to the client: head, then body; then decides about both
/// connections. Returns what to do next and the status sent.
async fn respond(
    worker: &Worker,
    view: &View,
    conn: &mut ClientConn,
    index: usize,
    start: ResponseStart,
) -> (Next, u16) {
    let config = &view.snap.config;
    let ResponseStart { mut origin, status } = start;
    let method = conn.head.method();
    let client_http10 = conn.head.is_http10();
    let wants_upgrade = conn.head.upgrade().is_some();
    let mut keep_alive = conn.head.keep_alive && !worker.drain.is_draining();
    let mut attempts_value = Vec::new();
    if config.observability.attempts_header {
        write_attempts(&mut attempts_value, &conn.attempts, &config.origins);
    }
    // Parse the head once more (it is complete and valid) and write the client's head.
    let (framing, reusable, head_len, upgrade) = {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let Ok(Some(r)) = parse_response_head(
            origin.data(),
            usize::MAX,
            &mut slots,
            method == Method::Head,
        ) else {
            unreachable!("read_response_head validated this head");
        };
        if r.status == 101 && !wants_upgrade {
            reply_error(
                conn,
                502,
                "origin switched protocols without being asked",
                true,
            )
            .await;
            return (Next::Close, 502);
        }
        let upgrade = r.status == 101;
        let (length, chunked) = match r.framing {
            ResponseFraming::ContentLength(n) => (Some(n), false),
            ResponseFraming::None => (passthrough_length(&r), false),
            ResponseFraming::Chunked | ResponseFraming::CloseDelimited if client_http10 => {
                keep_alive = false; // the body ends with the connection
                (None, false)
            }
            ResponseFraming::Chunked | ResponseFraming::CloseDelimited => (None, true),
        };
        let upgrade_value = r
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("upgrade"))
            .map(|h| h.value);
        let connection = match (upgrade, keep_alive, client_http10) {
            (true, _, _) => ResponseConnection::Upgrade(upgrade_value.unwrap_or(b"websocket")),
            (false, false, _) => ResponseConnection::Close,
            (false, true, true) => ResponseConnection::KeepAlive,
            (false, true, false) => ResponseConnection::Default,
        };
        let extra: &[(&str, &[u8])] = if attempts_value.is_empty() {
            &[]
        } else {
            &[("x-lb-attempts", &attempts_value)]
        };
        HeaderRewrite::response(
            &mut conn.out,
            r.status,
            r.reason,
            httparse_headers(r.headers),
            length,
            chunked,
            connection,
            extra,
        );
        (r.framing, r.reusable(), r.head_len, upgrade)
    };
    origin.consume(head_len);
    if upgrade {
        if conn.send_out().await.is_err() {
            return (Next::Close, status);
        }
        return (Next::Upgrade(origin), status);
    }
    let (source, encoding) = match framing {
        ResponseFraming::None => (None, Encoding::Raw),
        ResponseFraming::ContentLength(n) => (Some(Source::Length(n)), Encoding::Raw),
        ResponseFraming::Chunked => (
            Some(Source::Chunked),
            if client_http10 {
                Encoding::Raw
            } else {
                Encoding::Chunked
            },
        ),
        ResponseFraming::CloseDelimited => (
            Some(Source::UntilClose),
            if client_http10 {
                Encoding::Raw
            } else {
                Encoding::Chunked
            },
        ),
    };
    // A small Content-Length body already in the buffer rides with the head.
    let mut source = source;
    if let Some(Source::Length(n)) = source
        && (n as usize) <= INLINE_BODY_MAX
        && origin.data().len() >= n as usize
    {
        conn.out.extend_from_slice(&origin.data()[..n as usize]);
        origin.consume(n as usize);
        source = None;
    }
    if conn.send_out().await.is_err() {
        return (Next::Abort, status);
    }
    if let Some(source) = source {
        let plan = BodyPlan {
            source,
            encoding,
            src_side: Side::Origin,
            idle: config.limits.body_timeout,
            limit: u64::MAX,
        };
        let result = body::forward(&mut origin, &mut conn.io.stream, plan, &mut conn.scratch).await;
        if let Err(e) = result {
            // The head is out: the only honest signal left is closing the connection,
            // which the client sees as a truncated body.
            tracing::debug!(origin = %config.origins[index].id, side = ?e.side, kind = ?e.kind, "response body aborted");
            return (Next::Abort, status);
        }
    }
    // A connection opened under an older config (a reload happened meanwhile) is not
    // pooled: its address, SNI name or trust settings may have changed.
    if reusable && !origin.has_data() && view.is_current(worker) {
        let (stream, buf) = origin.into_parts();
        worker.pool.borrow_mut().checkin(index, stream);
        conn.upstream_buf = buf;
    }
    (
        if keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        },
        status,
    )
}

/// Largest body lb sends in the same write as its head.
const INLINE_BODY_MAX: usize = 64 * 1024;

/// The origin's Content-Length for bodiless responses that still state one (HEAD, 304).
fn passthrough_length(r: &crate::http::ParsedResponse<'_, '_>) -> Option<u64> {
    if r.status == 204 || (100..200).contains(&r.status) {
        return None;
    }
    r.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse().ok())
}

/// A plain-HTTP request to a behavior that wants HTTPS: CloudFront answers
/// redirect-to-https with 301 to the same host and path (the HTTPS listener's port when it
/// is not 443), and https-only with 403. The request body, if any, is not read: the
/// connection closes after the answer.
async fn viewer_policy_reply(
    worker: &Worker,
    conn: &mut ClientConn,
    policy: ViewerProtocolPolicy,
) -> (Next, u16) {
    let close = conn.head.framing() != BodyFraming::None;
    if policy == ViewerProtocolPolicy::HttpsOnly {
        reply_error(conn, 403, "this path is served over HTTPS only", close).await;
        return (next_after(conn, close), 403);
    }
    let https_port = worker.https_port;
    let host = conn.head.host().map(host_without_port).unwrap_or_default();
    if host.is_empty() {
        reply_error(conn, 400, "the HTTPS redirect needs a Host header", true).await;
        return (Next::Close, 400);
    }
    let mut location = Vec::with_capacity(16 + host.len() + conn.head.path().len());
    location.extend_from_slice(b"https://");
    location.extend_from_slice(host);
    if https_port != 443 {
        location.extend_from_slice(format!(":{https_port}").as_bytes());
    }
    // `OPTIONS *` has no path to keep: redirect to the root.
    let path = match conn.head.path() {
        "*" => "/",
        p => p,
    };
    location.extend_from_slice(path.as_bytes());
    let keep_alive = conn.head.keep_alive && !close;
    super::error_response::write_redirect(&mut conn.out, 301, &location, !keep_alive);
    without_body_for_head(conn);
    if conn.send_out().await.is_err() {
        return (Next::Close, 301);
    }
    (next_after(conn, close), 301)
}

/// `host[:port]` or `[v6][:port]` without the port.
fn host_without_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(colon) => &host[..colon],
        None => host,
    }
}

fn body_error_reply(e: &BodyError) -> (u16, &'static str) {
    match (e.side, e.kind) {
        (_, BodyErrorKind::TooLarge) => (413, crate::http::RejectReason::BodyTooLarge.text()),
        (Side::Client, BodyErrorKind::Framing(_)) => (400, "invalid chunked request body"),
        (Side::Client, BodyErrorKind::Timeout) => (408, "timed out reading the request body"),
        (Side::Client, _) => (400, "request body ended early"),
        (Side::Origin, BodyErrorKind::Timeout) => (504, "origin stopped reading the request body"),
        (Side::Origin, _) => (502, "origin failed while receiving the request body"),
    }
}

pub(super) async fn reply_error(conn: &mut ClientConn, status: u16, reason: &str, close: bool) {
    super::error_response::write(&mut conn.out, status, reason, close);
    without_body_for_head(conn);
    let _ = conn.send_out().await;
}

/// A response to HEAD keeps its headers (Content-Length included) and drops the body, so
/// the next response on the connection is not misread.
fn without_body_for_head(conn: &mut ClientConn) {
    if conn.head_request
        && let Some(end) = conn.out.windows(4).position(|w| w == b"\r\n\r\n")
    {
        conn.out.truncate(end + 4);
    }
}

/// Sends a complete response lb built itself (custom error pages).
pub(super) async fn reply_page(
    conn: &mut ClientConn,
    status: u16,
    content_type: &[u8],
    body: &[u8],
) -> Next {
    let keep_alive = conn.head.keep_alive;
    super::error_response::write_page(&mut conn.out, status, content_type, body, !keep_alive);
    without_body_for_head(conn);
    if conn.send_out().await.is_err() || !keep_alive {
        Next::Close
    } else {
        Next::KeepAlive
    }
}
