//! One attempt on one origin: a pooled or new connection, the request head (and body),
//! then the wait for a final response head. Interim (1xx) responses are passed to the
//! client as they come (hop-by-hop fields removed, never to HTTP/1.0 clients, at most
//! [`MAX_INTERIM`] of them). A pooled connection that turns out dead is replaced once by a
//! fresh one when nothing unrepeatable was sent on it; whether request bytes were sent
//! is recorded in `sent` for the failover loop, across that retry too.
//!
//! With kernel signals, a connect is given up as soon as the kernel retransmits a SYN to
//! the origin (nothing answers there), and a wait for the head watches for a stall of the
//! connection, hedging to `hedge_to` when the request may be repeated (see `hedge`).

use std::time::Instant;

use super::{
    body::{self, BodyError, BodyErrorKind, BodyPlan, Encoding, Side, Source},
    cached::Lookup,
    client::ClientConn,
    conn::{BufferedStream, write_all},
    fate::BodyState,
    hedge::{self, HeadWait, HedgeTarget},
    kernel_watch::Trouble,
    respond::ResponseStart,
    upstream::{RequestProgress, UpstreamError, UpstreamErrorKind, connect},
    worker::{View, Worker},
};
use crate::http::{
    BodyFraming, ForwardedFor, HeaderRewrite, MAX_HEADERS, OnBehalfOf, ResponseConnection,
    UpstreamRequest, httparse_headers, parse_response_head,
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

/// The cache's view of a request it handles: the behavior's policy (what the origin may
/// see) and the lookup (the target and cookies that reach it).
pub(super) type Cached<'a> = Option<(&'a crate::config::BehaviorCache, &'a Lookup)>;

/// Sends the request to origin `index` and waits for a final (non-1xx) response head.
/// `hedge_to` is the member a stalled attempt may be hedged to; the answer says which
/// origin it came from. A request the cache handles reaches the origin with only what is
/// in its key.
#[allow(clippy::too_many_arguments)]
pub(super) async fn attempt(
    worker: &Worker,
    view: &View,
    conn: &mut ClientConn,
    index: usize,
    body_mode: BodyMode,
    sent: &mut bool,
    hedge_to: Option<usize>,
    cached: Cached<'_>,
) -> Result<ResponseStart, Failure> {
    let config = &view.snap.config;
    let origin = &config.origins[index];
    let tls = origin.uses_tls(conn.tls());
    let replayable = body_mode != BodyMode::Stream;
    let idempotent = conn.head.method().is_idempotent();
    let mut fresh_retry = true;
    if origin.http_version.is_h2() {
        return attempt_h2(worker, view, conn, index, body_mode, sent, cached).await;
    }
    loop {
        // The retry after a dead pooled connection always uses a fresh one.
        let pooled = if fresh_retry {
            worker.pool.borrow_mut().checkout(
                index,
                tls,
                origin.keepalive_timeout,
                view.snap.addresses.epoch(index),
            )
        } else {
            None
        };
        let reused = pooled.is_some();
        let stream = match pooled {
            Some(s) => s,
            None => {
                let s = connect_watched(worker, view, index, tls)
                    .await
                    .map_err(|e| Failure::Upstream(e.after(*sent)))?;
                view.metrics()
                    .upstream_connections_opened
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                s
            }
        };
        let mut up = BufferedStream::with_buffer(stream, std::mem::take(&mut conn.upstream_buf));
        let written_ns = if hedge::watching(worker, view) {
            hedge::now_ns()
        } else {
            0
        };
        let write_error = write_request(view, conn, &mut up, index, body_mode, cached).await;
        // From here on, bytes of this request may have reached the origin.
        *sent = true;
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
        let hedge_to = hedge_to.filter(|_| {
            replayable && conn.head.method().fails_over() && hedge::watching(worker, view)
        });
        let how = Head { body_mode, cached };
        match read_final_head(
            worker, view, conn, &mut up, index, written_ns, hedge_to, how,
        )
        .await
        {
            Ok(FinalHead::Own(status)) => {
                return Ok(ResponseStart {
                    origin: up,
                    status,
                    from: index,
                });
            }
            Ok(FinalHead::Hedged {
                index: hedged,
                origin,
                status,
            }) => {
                // The stalled connection is dropped: its read was cut short.
                return Ok(ResponseStart {
                    origin,
                    status,
                    from: hedged,
                });
            }
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

/// [`attempt`] on an HTTP/2 origin: a new stream on the origin's shared connection. No
/// pooled-connection retry (a stream is never reused) and no hedging of a stalled
/// response (the connection's TCP state belongs to every stream on it). A stream the
/// origin refused unprocessed fails over like a connect failure.
async fn attempt_h2(
    worker: &Worker,
    view: &View,
    conn: &mut ClientConn,
    index: usize,
    body_mode: BodyMode,
    sent: &mut bool,
    cached: Cached<'_>,
) -> Result<ResponseStart, Failure> {
    let config = &view.snap.config;
    let origin = &config.origins[index];
    let tls = origin.uses_tls(conn.tls());
    let mut opened = false;
    let opening = worker.h2_origins.stream(
        origin,
        index,
        &view.snap.addresses,
        tls.then_some(&view.snap.tls.origin_h2),
        &mut opened,
    );
    // As for HTTP/1.1: a connect is given up at the kernel's first SYN retransmit to the
    // origin (a black hole); a stream on an established connection is not a connect, but
    // a retransmitted SYN to the origin meanwhile says the same of it.
    let stream = until_syn_retransmit(worker, view, index, opening)
        .await
        .map_err(|e| Failure::Upstream(e.after(*sent)))?;
    if opened {
        view.metrics()
            .upstream_connections_opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let sent_before = *sent;
    // The origin refused the stream unprocessed: as if nothing was sent, unless a body
    // streamed from the client is gone with it (then it cannot go anywhere else).
    let refused = |up: &BufferedStream, sent: &mut bool| {
        let unsent = body_mode != BodyMode::Stream && !sent_before;
        up.stream.refused_by_origin().then(|| {
            *sent = !unsent;
            Failure::Upstream(
                UpstreamError::new(UpstreamErrorKind::StreamRefused, RequestProgress::NotSent)
                    .after(!unsent),
            )
        })
    };
    let mut up = BufferedStream::with_buffer(stream, std::mem::take(&mut conn.upstream_buf));
    let write_error = write_request(view, conn, &mut up, index, body_mode, cached).await;
    *sent = true;
    match write_error {
        None => {}
        Some(kind @ UpstreamErrorKind::WriteTimeout) => {
            return Err(Failure::Upstream(UpstreamError::new(
                kind,
                RequestProgress::Sent,
            )));
        }
        Some(kind) => {
            return Err(
                refused(&up, sent).unwrap_or(Failure::Upstream(UpstreamError::new(
                    kind,
                    RequestProgress::Sent,
                ))),
            );
        }
    }
    if body_mode == BodyMode::Stream {
        if let Err(e) = stream_body(view, conn, &mut up).await {
            return Err(refused(&up, sent).unwrap_or(e));
        }
    }
    let how = Head { body_mode, cached };
    match read_final_head(worker, view, conn, &mut up, index, 0, None, how).await {
        Ok(FinalHead::Own(status)) => Ok(ResponseStart {
            origin: up,
            status,
            from: index,
        }),
        Ok(FinalHead::Hedged { .. }) => unreachable!("HTTP/2 attempts are never hedged"),
        Err(e) => Err(refused(&up, sent).unwrap_or(e)),
    }
}

/// Connects to origin `index`, giving up at once (nothing was sent) if the kernel
/// retransmits a SYN to it meanwhile: the origin is a black hole, and waiting out
/// `connection_attempts` × `connect_timeout` would only hold the client.
async fn connect_watched(
    worker: &Worker,
    view: &View,
    index: usize,
    tls: bool,
) -> Result<super::stream::Stream, UpstreamError> {
    let origin = &view.snap.config.origins[index];
    let connecting = connect(
        origin,
        &view.snap.addresses,
        index,
        tls.then_some(&view.snap.tls.origin),
    );
    until_syn_retransmit(worker, view, index, connecting).await
}

/// Runs `connecting` (a connect to origin `index`, or a wait for its HTTP/2 connection)
/// unless, with kernel signals, the kernel retransmits a SYN to the origin meanwhile:
/// then it is given up, nothing sent.
async fn until_syn_retransmit<T>(
    worker: &Worker,
    view: &View,
    index: usize,
    connecting: impl std::future::Future<Output = Result<T, UpstreamError>>,
) -> Result<T, UpstreamError> {
    if !hedge::watching(worker, view) {
        return connecting.await;
    }
    let alarm = worker
        .kernel_watch
        .alarm(index, hedge::now_ns(), Trouble::SynRetransmit);
    monoio::select! {
        biased;
        connected = connecting => connected,
        () = alarm => Err(UpstreamError::new(
            UpstreamErrorKind::SynRetransmitted,
            RequestProgress::NotSent,
        )),
    }
}

/// Writes the request head for origin `index` (and a replayable body) to `up` within the
/// body timeout; the error, if the write failed.
async fn write_request(
    view: &View,
    conn: &mut ClientConn,
    up: &mut BufferedStream,
    index: usize,
    body_mode: BodyMode,
    cached: Cached<'_>,
) -> Option<UpstreamErrorKind> {
    write_request_head(view, conn, index, body_mode, cached);
    if body_mode == BodyMode::Buffered {
        conn.out.extend_from_slice(&conn.replay);
    }
    let write = monoio::time::timeout(
        view.snap.config.limits.body_timeout,
        write_all(&mut up.stream, &mut conn.out),
    )
    .await;
    match write {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(UpstreamErrorKind::WriteFailed(e.kind())),
        Err(_elapsed) => Some(UpstreamErrorKind::WriteTimeout),
    }
}

/// The request head for origin `index` (its custom headers, its origin path) in
/// `conn.out`.
fn write_request_head(
    view: &View,
    conn: &mut ClientConn,
    index: usize,
    body_mode: BodyMode,
    cached: Cached<'_>,
) {
    let mut out = std::mem::take(&mut conn.out);
    request_head_into(view, conn, index, Head { body_mode, cached }, &mut out);
    conn.out = out;
}

/// How the request head for an origin is made: the body's mode and, for a request the
/// cache handles, what of the request may reach the origin.
#[derive(Clone, Copy)]
struct Head<'a> {
    body_mode: BodyMode,
    cached: Cached<'a>,
}

/// The whole request for origin `index`, head and replayable body, in a buffer of its
/// own: what a hedge sends while `conn.out` belongs to the stalled attempt.
fn hedge_request(view: &View, conn: &ClientConn, index: usize, how: Head<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 + conn.replay.len());
    request_head_into(view, conn, index, how, &mut out);
    if how.body_mode == BodyMode::Buffered {
        out.extend_from_slice(&conn.replay);
    }
    out
}

fn request_head_into(
    view: &View,
    conn: &ClientConn,
    index: usize,
    how: Head<'_>,
    out: &mut Vec<u8>,
) {
    let origin = &view.snap.config.origins[index];
    let head = &conn.head;
    let body_mode = how.body_mode;
    let (length, chunked) = match (body_mode, head.framing()) {
        (BodyMode::None, _) => (None, false),
        (BodyMode::Buffered, _) => (Some(conn.replay.len() as u64), false),
        (BodyMode::Stream, BodyFraming::ContentLength(n)) => (Some(n), false),
        (BodyMode::Stream, _) => (None, true),
    };
    let scheme = if conn.tls() { "https" } else { "http" };
    let on_behalf_of = OnBehalfOf::Client {
        address: ForwardedFor(conn.peer.ip()),
        proto: scheme,
    };
    let edits = rule_edits(view, conn.rule);
    if let Some(changed) = conn.fn_origin_request.as_ref().or(conn.fn_request.as_ref()) {
        // An origin-request or viewer-request function's request (a viewer-request
        // change bypasses the cache; an origin-request one applies to the miss, and
        // then only keyed fields go, as without it); request rules' edits still apply.
        let keyed = how.cached;
        let keyed_cookie = keyed
            .filter(|(_, lookup)| !lookup.origin_cookie.is_empty())
            .map(|(_, lookup)| ("cookie", &lookup.origin_cookie[..]));
        let validators = keyed
            .map(|(_, lookup)| super::cached::validators(lookup))
            .into_iter()
            .flatten()
            .flatten();
        HeaderRewrite::request(
            out,
            &UpstreamRequest {
                method: head.method_str(),
                path_prefix: &origin.origin_path,
                path: &edited_path(edits, &changed.target),
                host: edited_host(edits, origin, changed.host()),
                fields: changed
                    .fields()
                    .filter(|(n, _)| {
                        kept_field(edits, n)
                            && keyed.is_none_or(|(policy, _)| policy.key.forwards_header(n))
                    })
                    .chain(added_fields(edits))
                    .chain(keyed_cookie)
                    .chain(validators),
                on_behalf_of,
                length,
                chunked,
                upgrade: head.upgrade().filter(|_| keyed.is_none()),
                origin_headers: &origin.custom_headers,
            },
        );
        return;
    }
    let Some((policy, lookup)) = how.cached else {
        HeaderRewrite::request(
            out,
            &UpstreamRequest {
                method: head.method_str(),
                path_prefix: &origin.origin_path,
                path: &edited_path(edits, head.path()),
                host: edited_host(edits, origin, head.host()),
                fields: head
                    .fields()
                    .filter(|(n, _)| kept_field(edits, n))
                    .chain(added_fields(edits)),
                on_behalf_of,
                length,
                chunked,
                upgrade: head.upgrade(),
                origin_headers: &origin.custom_headers,
            },
        );
        return;
    };
    // Only what is in the cache key reaches the origin (CloudFront's ForwardedValues):
    // no unkeyed header, cookie or query parameter can change a stored response.
    let cookie =
        (!lookup.origin_cookie.is_empty()).then_some(("cookie", &lookup.origin_cookie[..]));
    // An expired copy with validators is revalidated: a 304 refreshes it.
    let validators = super::cached::validators(lookup).into_iter().flatten();
    HeaderRewrite::request(
        out,
        &UpstreamRequest {
            method: head.method_str(),
            path_prefix: &origin.origin_path,
            path: &edited_path(edits, &lookup.origin_target),
            host: edited_host(edits, origin, head.host()),
            fields: head
                .fields()
                .filter(|(n, _)| policy.key.forwards_header(n) && kept_field(edits, n))
                .chain(added_fields(edits))
                .chain(cookie)
                .chain(validators),
            on_behalf_of,
            length,
            chunked,
            upgrade: None,
            origin_headers: &origin.custom_headers,
        },
    );
}

/// The request edits of the rule that matched, if it has any.
pub(super) fn rule_edits(
    view: &View,
    rule: Option<crate::rules::RuleRef>,
) -> Option<&crate::rules::Actions> {
    let actions = &view.snap.config.rule(rule?)?.actions;
    actions.edits_request().then_some(actions)
}

/// The response edits of the rule that matched, if it has any.
pub(super) fn response_edits(
    view: &View,
    rule: Option<crate::rules::RuleRef>,
) -> Option<&crate::rules::Actions> {
    let actions = &view.snap.config.rule(rule?)?.actions;
    actions.edits_response().then_some(actions)
}

/// Whether a response field reaches the client.
pub(super) fn kept_response_field(edits: Option<&crate::rules::Actions>, name: &str) -> bool {
    edits.is_none_or(|e| !e.drops_response_field(name))
}

/// The target (path and query) the origin receives.
pub(super) fn edited_path<'t>(
    edits: Option<&crate::rules::Actions>,
    target: &'t str,
) -> std::borrow::Cow<'t, str> {
    match edits.and_then(|e| e.rewrite_path.as_ref()) {
        Some(rewrite) => rewrite.apply(target),
        None => std::borrow::Cow::Borrowed(target),
    }
}

/// The Host an origin receives: a rule's, else the origin's own `host_header` (an S3
/// bucket answers only to its domain), else the client's.
pub(super) fn edited_host<'a>(
    edits: Option<&'a crate::rules::Actions>,
    origin: &'a crate::config::Origin,
    host: Option<&'a [u8]>,
) -> Option<&'a [u8]> {
    match edits.and_then(|e| e.set_host.as_deref()) {
        Some(h) => Some(h.as_bytes()),
        None => origin.host_header.as_deref().map(str::as_bytes).or(host),
    }
}

/// Whether a client field reaches the origin (a rule may remove or replace it).
pub(super) fn kept_field(edits: Option<&crate::rules::Actions>, name: &str) -> bool {
    edits.is_none_or(|e| !e.drops_field(name))
}

pub(super) fn added_fields(
    edits: Option<&crate::rules::Actions>,
) -> impl Iterator<Item = (&str, &[u8])> + Clone {
    edits
        .into_iter()
        .flat_map(crate::rules::Actions::added_fields)
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
    body::forward(&mut conn.io, &mut up.stream, plan, &mut conn.scratch, None)
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

/// A final response head, from the attempt's own origin or from its hedge.
enum FinalHead {
    Own(u16),
    Hedged {
        index: usize,
        origin: BufferedStream,
        status: u16,
    },
}

/// Waits for the final response head (left unconsumed in `up`), passing interim
/// responses on.
#[allow(clippy::too_many_arguments)]
async fn read_final_head(
    worker: &Worker,
    view: &View,
    conn: &mut ClientConn,
    up: &mut BufferedStream,
    index: usize,
    written_ns: u64,
    hedge_to: Option<usize>,
    how: Head<'_>,
) -> Result<FinalHead, Failure> {
    let config = &view.snap.config;
    let deadline = Instant::now() + config.origins[index].response_timeout;
    let sent = |kind| Failure::Upstream(UpstreamError::new(kind, RequestProgress::Sent));
    let mut interim = 0;
    loop {
        // A hedge is possible until a byte of this attempt's response reached the client.
        let target = hedge_to.filter(|_| !conn.response_started);
        let waited = {
            let conn_ref: &ClientConn = conn;
            let build = |b: usize| hedge_request(view, conn_ref, b, how);
            let hedge = target.map(|b| HedgeTarget {
                index: b,
                request: &build,
                tls: config.origins[b].uses_tls(conn_ref.tls()),
            });
            hedge::wait_head(
                worker,
                view,
                up,
                index,
                deadline,
                config.limits.max_response_head,
                written_ns,
                hedge,
            )
            .await
            .map_err(sent)?
        };
        let (status, head_len) = match waited {
            HeadWait::Own { status, head_len } => (status, head_len),
            HeadWait::Hedged {
                index,
                origin,
                status,
            } => {
                return Ok(FinalHead::Hedged {
                    index,
                    origin,
                    status,
                });
            }
        };
        if !(100..200).contains(&status) || status == 101 {
            return Ok(FinalHead::Own(status));
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
