//! One attempt on one origin: a pooled or new connection, the request head (and body),
//! then the wait for a final response head. Interim (1xx) responses are passed to the
//! client as they come (hop-by-hop fields removed, never to HTTP/1.0 clients, at most
//! [`MAX_INTERIM`] of them). A pooled connection that turns out dead is replaced once by a
//! fresh one when nothing unrepeatable was sent on it; whether request bytes were sent
//! is recorded in `sent` for the failover loop, across that retry too.

use std::{net::SocketAddr, time::Instant};

use super::{
    body::{self, BodyError, BodyErrorKind, BodyPlan, Encoding, Side, Source},
    client::ClientConn,
    conn::{BufferedStream, write_all},
    fate::BodyState,
    respond::ResponseStart,
    upstream::{RequestProgress, UpstreamError, UpstreamErrorKind, connect},
    worker::{View, Worker},
};
use crate::http::{
    BodyFraming, ForwardedFor, HeaderRewrite, MAX_HEADERS, ResponseConnection, httparse_headers,
    parse_response_head,
};

/// Interim responses accepted before a final one; more is a flood (502).
const MAX_INTERIM: usize = 8;

/// Where the request body is while attempts run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BodyMode {
    None,
    /// Entirely in `conn.replay`: can be sent again.
    Buffered,
    /// Streamed from the client during the first attempt that gets that far.
    Stream,
}

pub(super) enum Failure {
    /// Upstream failed before a final response head.
    Upstream(UpstreamError),
    /// The request body could not be forwarded.
    Body(BodyError),
}

/// Sends the request to origin `index` and waits for a final (non-1xx) response head.
pub(super) async fn attempt(
    worker: &Worker,
    view: &View,
    conn: &mut ClientConn,
    index: usize,
    body_mode: BodyMode,
    sent: &mut bool,
) -> Result<ResponseStart, Failure> {
    let config = &view.snap.config;
    let origin = &config.origins[index];
    let tls = origin.uses_tls(conn.tls());
    let replayable = body_mode != BodyMode::Stream;
    let idempotent = conn.head.method().is_idempotent();
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
                    .map_err(|e| Failure::Upstream(e.after(*sent)))?;
                view.metrics()
                    .upstream_connections_opened
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                s
            }
        };
        let mut up = BufferedStream::with_buffer(stream, std::mem::take(&mut conn.upstream_buf));
        write_request_head(view, conn, index, body_mode);
        if body_mode == BodyMode::Buffered {
            conn.out.extend_from_slice(&conn.replay);
        }
        let write = monoio::time::timeout(
            config.limits.body_timeout,
            write_all(&mut up.stream, &mut conn.out),
        )
        .await;
        // From here on, bytes of this request may have reached the origin.
        *sent = true;
        let write_error = match write {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(UpstreamErrorKind::WriteFailed(e.kind())),
            Err(_elapsed) => Some(UpstreamErrorKind::WriteTimeout),
        };
        if let Some(kind) = write_error {
            if reused && fresh_retry && replayable && idempotent {
                fresh_retry = false;
                conn.upstream_buf = up.into_parts().1;
                continue;
            }
            return Err(Failure::Upstream(UpstreamError::new(
                kind,
                RequestProgress::Sent,
            )));
        }
        if body_mode == BodyMode::Stream {
            stream_body(view, conn, &mut up).await?;
        }
        match read_final_head(view, conn, &mut up, index).await {
            Ok(status) => return Ok(ResponseStart { origin: up, status }),
            Err(Failure::Upstream(e))
                if e.kind == UpstreamErrorKind::ClosedBeforeResponse
                    && reused
                    && fresh_retry
                    && replayable
                    && idempotent
                    && !conn.response_started =>
            {
                fresh_retry = false;
                conn.upstream_buf = up.into_parts().1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The request head for origin `index` (its custom headers, its origin path) in
/// `conn.out`.
fn write_request_head(view: &View, conn: &mut ClientConn, index: usize, body_mode: BodyMode) {
    let origin = &view.snap.config.origins[index];
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
}

/// Streams the request body from the client to the origin.
async fn stream_body(
    view: &View,
    conn: &mut ClientConn,
    up: &mut BufferedStream,
) -> Result<(), Failure> {
    if conn.head.expect_continue && !conn.io.has_data() && !conn.continue_sent {
        send_continue(conn).await.map_err(Failure::Body)?;
    }
    let limits = &view.snap.config.limits;
    let source = match conn.head.framing() {
        BodyFraming::ContentLength(n) => Source::Length(n),
        _ => Source::Chunked,
    };
    let plan = BodyPlan {
        source,
        encoding: Encoding::Chunked,
        src_side: Side::Client,
        idle: limits.body_timeout,
        limit: limits.max_request_body,
    };
    // Until the body has been forwarded whole, the connection's position is unknown.
    conn.body = BodyState::Lost;
    body::forward(&mut conn.io, &mut up.stream, plan, &mut conn.scratch)
        .await
        .map_err(Failure::Body)?;
    conn.body = BodyState::Consumed;
    Ok(())
}

/// Tells a client that sent `Expect: 100-continue` to send its body.
pub(super) async fn send_continue(conn: &mut ClientConn) -> Result<(), BodyError> {
    conn.out.clear();
    conn.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
    conn.send_out().await.map_err(|_| BodyError {
        side: Side::Client,
        kind: BodyErrorKind::Io,
    })?;
    conn.continue_sent = true;
    Ok(())
}

/// Waits for the final response head (left unconsumed in `up`), passing interim
/// responses on.
async fn read_final_head(
    view: &View,
    conn: &mut ClientConn,
    up: &mut BufferedStream,
    index: usize,
) -> Result<u16, Failure> {
    let config = &view.snap.config;
    let deadline = Instant::now() + config.origins[index].response_timeout;
    let sent = |kind| Failure::Upstream(UpstreamError::new(kind, RequestProgress::Sent));
    let mut interim = 0;
    loop {
        let (status, head_len) = read_response_head(up, deadline, config.limits.max_response_head)
            .await
            .map_err(sent)?;
        if !(100..200).contains(&status) || status == 101 {
            return Ok(status);
        }
        interim += 1;
        if interim > MAX_INTERIM {
            return Err(sent(UpstreamErrorKind::MalformedResponse(
                "too many interim (1xx) responses",
            )));
        }
        // HTTP/1.0 clients do not understand 1xx (RFC 9110 §15.2).
        if !conn.head.is_http10() {
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let Ok(Some(r)) = parse_response_head(up.data(), usize::MAX, &mut slots, false) else {
                unreachable!("read_response_head validated this head");
            };
            HeaderRewrite::response(
                &mut conn.out,
                r.status,
                r.reason,
                httparse_headers(r.headers),
                None,
                false,
                ResponseConnection::Default,
                &[],
            );
            conn.response_started = true;
            if conn.send_out().await.is_err() {
                return Err(Failure::Body(BodyError {
                    side: Side::Client,
                    kind: BodyErrorKind::Io,
                }));
            }
        }
        up.consume(head_len);
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
