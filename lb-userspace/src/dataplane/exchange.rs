//! One client connection: read a request head, run the exchange with the origin, repeat
//! while the connection is kept alive. Requests on a connection are handled strictly in
//! order, which is what makes pipelining safe: bytes of the next request simply wait in
//! the read buffer until the current response is complete.

use std::{net::SocketAddr, rc::Rc, time::Instant};

use monoio::net::TcpStream;

use super::{
    body::{self, BodyError, BodyErrorKind, BodyPlan, Encoding, Side, Source},
    conn::{BufferedStream, READ_CHUNK, write_all},
    error_response,
    request_head::RequestHead,
    tunnel::tunnel,
    upstream::{RequestProgress, UpstreamError, UpstreamErrorKind, connect},
    worker::Worker,
};
use crate::http::{
    BodyFraming, ForwardedFor, HeaderRewrite, MAX_HEADERS, Method, ResponseConnection,
    ResponseFraming, httparse_headers, parse_request_head, parse_response_head,
};

/// Largest body lb sends in the same write as its head.
const INLINE_BODY_MAX: usize = 64 * 1024;

/// Per-connection state, allocated once and reused for every request.
pub(super) struct ClientConn {
    io: BufferedStream,
    peer: SocketAddr,
    head: RequestHead,
    /// Heads lb writes (upstream request, client response).
    out: Vec<u8>,
    /// Chunk re-encoding space.
    scratch: Vec<u8>,
    /// The origin side's read buffer, recycled across exchanges.
    upstream_buf: Vec<u8>,
}

pub(super) async fn serve_client(worker: Rc<Worker>, stream: TcpStream, peer: SocketAddr) {
    let _active = worker.track_connection();
    let _ = stream.set_nodelay(true);
    let mut conn = ClientConn {
        io: BufferedStream::new(stream),
        peer,
        head: RequestHead::default(),
        out: Vec::with_capacity(4096),
        scratch: Vec::new(),
        upstream_buf: Vec::with_capacity(READ_CHUNK),
    };
    loop {
        if !read_request(&worker, &mut conn).await {
            return;
        }
        match exchange(&worker, &mut conn).await {
            Next::KeepAlive if !worker.drain.is_draining() => {}
            Next::KeepAlive | Next::Close => return,
            Next::Upgrade(origin) => {
                let ClientConn { io, .. } = conn;
                tunnel(io, origin).await;
                return;
            }
        }
    }
}

/// Reads and validates the next request head into `conn.head`. false: close.
async fn read_request(worker: &Worker, conn: &mut ClientConn) -> bool {
    let limits = &worker.config.limits;
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
enum Next {
    KeepAlive,
    Close,
    Upgrade(BufferedStream),
}

/// What an attempt produced before the response head was committed to the client.
struct ResponseStart {
    origin: BufferedStream,
}

async fn exchange(worker: &Worker, conn: &mut ClientConn) -> Next {
    let config = &worker.config;
    let method = conn.head.method();
    let framing = conn.head.framing();
    if let BodyFraming::ContentLength(n) = framing
        && n > config.limits.max_request_body
    {
        let reason = crate::http::RejectReason::BodyTooLarge.text();
        reply_error(conn, 413, reason, true).await;
        return Next::Close;
    }
    let origin_index = config.default_target;
    let origin = &config.origins[origin_index];
    let mut retried_stale = false;
    let start = loop {
        match attempt(worker, conn, origin_index).await {
            Ok(start) => break start,
            Err(Failure::Upstream(e, reused)) => {
                // A pooled connection can die between the liveness check and our write;
                // one fresh retry is safe when nothing unrepeatable was sent.
                let replayable =
                    matches!(framing, BodyFraming::None | BodyFraming::ContentLength(0));
                if reused && !retried_stale && replayable && e.retry_safe(method) {
                    retried_stale = true;
                    continue;
                }
                tracing::debug!(origin = %origin.id, outcome = e.label(), "attempt failed");
                let close = !conn.head.keep_alive
                    || e.progress == RequestProgress::Sent && framing != BodyFraming::None;
                reply_error(conn, e.status(), &e.reason(&origin.id), close).await;
                return if close { Next::Close } else { Next::KeepAlive };
            }
            Err(Failure::Body(e)) => {
                let (status, reason) = body_error_reply(&e);
                reply_error(conn, status, reason, true).await;
                return Next::Close;
            }
        }
    };
    respond(worker, conn, origin_index, start).await
}

enum Failure {
    /// Upstream failed before a response head; `bool`: the connection came from the pool.
    Upstream(UpstreamError, bool),
    /// The request body could not be forwarded.
    Body(BodyError),
}

/// Sends the request to origin `index` and waits for a final (non-1xx) response head.
async fn attempt(
    worker: &Worker,
    conn: &mut ClientConn,
    index: usize,
) -> Result<ResponseStart, Failure> {
    let config = &worker.config;
    let origin = &config.origins[index];
    let pooled = worker
        .pool
        .borrow_mut()
        .checkout(index, origin.keepalive_timeout);
    let reused = pooled.is_some();
    let stream = match pooled {
        Some(s) => s,
        None => {
            let s = connect(origin)
                .await
                .map_err(|e| Failure::Upstream(e, false))?;
            worker.pool.borrow_mut().opened += 1;
            s
        }
    };
    let mut up = BufferedStream::with_buffer(stream, std::mem::take(&mut conn.upstream_buf));
    let head = &conn.head;
    let framing = head.framing();
    let (length, chunked) = match framing {
        BodyFraming::None => (None, false),
        BodyFraming::ContentLength(n) => (Some(n), false),
        BodyFraming::Chunked => (None, true),
    };
    HeaderRewrite::request(
        &mut conn.out,
        head.method_str(),
        head.path(),
        head.host(),
        head.fields(),
        ForwardedFor(conn.peer.ip()),
        "http",
        length,
        chunked,
        head.upgrade(),
        &[],
    );
    // A small body that already arrived goes out with the head in one write.
    let mut body_sent = matches!(framing, BodyFraming::None);
    if let BodyFraming::ContentLength(n) = framing
        && (n as usize) <= INLINE_BODY_MAX
        && conn.io.data().len() >= n as usize
    {
        conn.out.extend_from_slice(&conn.io.data()[..n as usize]);
        conn.io.consume(n as usize);
        body_sent = true;
    }
    if let Err(e) = write_all(&mut up.stream, &mut conn.out).await {
        conn.upstream_buf = Vec::new();
        return Err(Failure::Upstream(
            UpstreamError::new(
                UpstreamErrorKind::WriteFailed(e.kind()),
                RequestProgress::Sent,
            ),
            reused,
        ));
    }
    if !body_sent {
        if conn.head.expect_continue && !conn.io.has_data() {
            conn.out.clear();
            conn.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            if write_all(&mut conn.io.stream, &mut conn.out).await.is_err() {
                return Err(Failure::Body(BodyError {
                    side: Side::Client,
                    kind: BodyErrorKind::Io,
                }));
            }
        }
        let source = match framing {
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
        let (status, head_len) =
            read_response_head(&mut up, deadline, config.limits.max_response_head)
                .await
                .map_err(|kind| {
                    Failure::Upstream(UpstreamError::new(kind, RequestProgress::Sent), reused)
                })?;
        if !(100..200).contains(&status) || status == 101 {
            return Ok(ResponseStart { origin: up });
        }
        let len = head_len;
        conn.out.clear();
        conn.out.extend_from_slice(&up.data()[..len]);
        up.consume(len);
        if write_all(&mut conn.io.stream, &mut conn.out).await.is_err() {
            return Err(Failure::Body(BodyError {
                side: Side::Client,
                kind: BodyErrorKind::Io,
            }));
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
/// connections.
async fn respond(
    worker: &Worker,
    conn: &mut ClientConn,
    index: usize,
    start: ResponseStart,
) -> Next {
    let config = &worker.config;
    let ResponseStart { mut origin } = start;
    let method = conn.head.method();
    let client_http10 = conn.head.is_http10();
    let wants_upgrade = conn.head.upgrade().is_some();
    let mut keep_alive = conn.head.keep_alive && !worker.drain.is_draining();
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
            return Next::Close;
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
        HeaderRewrite::response(
            &mut conn.out,
            r.status,
            r.reason,
            httparse_headers(r.headers),
            length,
            chunked,
            connection,
            &[],
        );
        (r.framing, r.reusable(), r.head_len, upgrade)
    };
    origin.consume(head_len);
    if upgrade {
        if write_all(&mut conn.io.stream, &mut conn.out).await.is_err() {
            return Next::Close;
        }
        return Next::Upgrade(origin);
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
    if write_all(&mut conn.io.stream, &mut conn.out).await.is_err() {
        return Next::Close;
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
            return Next::Close;
        }
    }
    if reusable && !origin.has_data() {
        let (stream, buf) = origin.into_parts();
        worker.pool.borrow_mut().checkin(index, stream);
        conn.upstream_buf = buf;
    }
    if keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

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

async fn reply_error(conn: &mut ClientConn, status: u16, reason: &str, close: bool) {
    error_response::write(&mut conn.out, status, reason, close);
    let _ = write_all(&mut conn.io.stream, &mut conn.out).await;
}
