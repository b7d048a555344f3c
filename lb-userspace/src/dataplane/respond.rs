//! Writing the response to the client: an origin's (head rewritten, body streamed and
//! re-framed), or one lb makes itself (errors, custom error pages, redirects). Both end
//! in [`fate::conclude`], the one place that decides what the connection does next.

use super::{
    access_log::write_attempts,
    attempt::Cached,
    body::{self, BodyError, BodyErrorKind, BodyPlan, Capture, Encoding, Side, Source},
    cached,
    client::ClientConn,
    conn::BufferedStream,
    error_response,
    fate::{self, Next, Written},
    worker::{View, Worker},
};
use crate::{
    config::ViewerProtocolPolicy,
    http::{
        HeaderRewrite, MAX_HEADERS, Method, ResponseConnection, ResponseFraming, httparse_headers,
        parse_response_head,
    },
    metrics::CacheEvent,
};

/// A response lb makes itself.
pub(super) enum Answer<'a> {
    /// `text/plain` with `lb: <reason>` as the body.
    Error {
        status: u16,
        reason: &'a str,
    },
    /// A custom error page, or a rule's fixed answer (with its own fields).
    Page {
        status: u16,
        content_type: &'a [u8],
        headers: &'a [(String, String)],
        body: &'a [u8],
    },
    Redirect {
        status: u16,
        location: &'a [u8],
    },
}

/// Writes one of lb's own responses (without a body for HEAD), then lets
/// [`fate::conclude`] decide the connection's fate.
pub(super) async fn answer(worker: &Worker, conn: &mut ClientConn, answer: Answer<'_>) -> Next {
    fate::settle_chunked_body(worker, conn).await;
    let keep = fate::keep_alive_intent(worker, conn);
    let connection = fate::connection_field(conn, keep);
    match answer {
        Answer::Error { status, reason } => {
            error_response::write(&mut conn.out, status, reason, connection)
        }
        Answer::Page {
            status,
            content_type,
            headers,
            body,
        } => error_response::write_page(
            &mut conn.out,
            status,
            content_type,
            headers,
            body,
            connection,
        ),
        Answer::Redirect { status, location } => {
            error_response::write_redirect(&mut conn.out, status, location, connection)
        }
    }
    without_body_for_head(conn);
    let written = match conn.send_out().await {
        Ok(()) => Written::Complete,
        Err(_) => Written::Broken,
    };
    conn.response_started = true;
    fate::conclude(worker, conn, keep, written).await
}

/// [`answer`] with lb's error text, returning the status for the access log.
pub(super) async fn error(
    worker: &Worker,
    conn: &mut ClientConn,
    status: u16,
    reason: &str,
) -> (Next, u16) {
    (
        answer(worker, conn, Answer::Error { status, reason }).await,
        status,
    )
}

/// A final or failover-status response head is in `origin`'s buffer.
pub(super) struct ResponseStart {
    pub origin: BufferedStream,
    pub status: u16,
    /// The origin that answered: the attempt's own, or the member it was hedged to.
    pub from: usize,
}

/// Commits an origin's response to the client: head, then body; then decides about
/// both connections. Returns what to do next and the status sent. For a request the cache
/// handles (`cached`), a storable answer is kept as it streams (up to the store's object
/// size limit) and stored once complete.
pub(super) async fn respond(
    worker: &Worker,
    view: &View,
    conn: &mut ClientConn,
    index: usize,
    start: ResponseStart,
    cached: Cached<'_>,
) -> (Next, u16) {
    let config = &view.snap.config;
    let ResponseStart {
        mut origin, status, ..
    } = start;
    // What the client is told (an origin-response function may have changed it).
    let mut status = conn.fn_response.as_ref().map_or(status, |f| f.status);
    let method = conn.head.method();
    let client_http10 = conn.head.is_http10();
    let wants_upgrade = conn.head.upgrade().is_some();
    let mut keep = fate::keep_alive_intent(worker, conn);
    let mut attempts_value = Vec::new();
    if config.observability.attempts_header {
        write_attempts(&mut attempts_value, &conn.attempts, &config.origins);
    }
    let mut fill = None;
    let mut cache_status = String::new();
    // Parse the head once more (it is complete and valid) and write the client's head.
    let (framing, reuse, head_len, upgrade) = {
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
            return error(
                worker,
                conn,
                502,
                "origin switched protocols without being asked",
            )
            .await;
        }
        let upgrade = r.status == 101;
        let (length, chunked) = match r.framing {
            ResponseFraming::ContentLength(n) => (Some(n), false),
            ResponseFraming::None => (passthrough_length(&r), false),
            ResponseFraming::Chunked | ResponseFraming::CloseDelimited if client_http10 => {
                keep = false; // the body ends with the connection
                (None, false)
            }
            ResponseFraming::Chunked | ResponseFraming::CloseDelimited => (None, true),
        };
        let upgrade_value = r
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("upgrade"))
            .map(|h| h.value);
        let connection = if upgrade {
            ResponseConnection::Upgrade(upgrade_value.unwrap_or(b"websocket"))
        } else {
            fate::connection_field(conn, keep)
        };
        // A head an origin-response function changed is not the origin's: not stored.
        if let Some((policy, lookup)) = cached.filter(|_| conn.fn_response.is_none()) {
            let plan = cached::plan_fill(lookup, policy, conn.head_request, &r);
            cache_status = cached::miss_status(lookup, &plan);
            view.metrics().cache(if plan.is_ok() {
                CacheEvent::MissStored
            } else {
                CacheEvent::MissNotStored
            });
            fill = plan.ok();
        }
        let mut extra: Vec<(&str, &[u8])> = Vec::with_capacity(2);
        if !attempts_value.is_empty() {
            extra.push(("x-lb-attempts", &attempts_value));
        }
        if !cache_status.is_empty() {
            extra.push(("cache-status", cache_status.as_bytes()));
        }
        // The viewer-response function sees the head the client would get (after any
        // origin-response change; what the cache stores was decided above).
        if conn.fn_viewer_response
            && let Some(spec) = config
                .behavior_for(conn.match_path())
                .function(crate::functions::Trigger::ViewerResponse)
        {
            let head = match &conn.fn_response {
                Some(fh) => super::edge_functions::viewer_response(
                    view,
                    conn,
                    spec,
                    fh.status,
                    &fh.reason,
                    fh.fields(),
                ),
                None => super::edge_functions::viewer_response(
                    view,
                    conn,
                    spec,
                    r.status,
                    r.reason,
                    httparse_headers(r.headers),
                ),
            };
            match head {
                Ok(head) => {
                    status = head.status;
                    conn.fn_response = Some(Box::new(head));
                }
                Err(reason) => return error(worker, conn, 502, &reason).await,
            }
        }
        let edits = super::attempt::response_edits(view, conn.rule);
        extra.extend(
            edits
                .into_iter()
                .flat_map(crate::rules::Actions::added_response_fields),
        );
        match &conn.fn_response {
            // The origin's body follows the head an origin-response function gave it
            // (framing stays lb's, from the origin's).
            Some(fh) => HeaderRewrite::response(
                &mut conn.out,
                fh.status,
                &fh.reason,
                fh.fields()
                    .filter(|(n, _)| super::attempt::kept_response_field(edits, n)),
                length,
                chunked,
                connection,
                &extra,
            ),
            None => HeaderRewrite::response(
                &mut conn.out,
                r.status,
                r.reason,
                httparse_headers(r.headers)
                    .filter(|(n, _)| super::attempt::kept_response_field(edits, n)),
                length,
                chunked,
                connection,
                &extra,
            ),
        }
        (r.framing, r.reuse(), r.head_len, upgrade)
    };
    origin.consume(head_len);
    conn.response_started = true;
    if upgrade {
        if conn.send_out().await.is_err() {
            return (Next::Abort, status);
        }
        return (Next::Upgrade(Box::new(origin)), status);
    }
    let client_encoding = if client_http10 {
        Encoding::Raw
    } else {
        Encoding::Chunked
    };
    let mut source = match framing {
        ResponseFraming::None => None,
        ResponseFraming::ContentLength(n) => Some((Source::Length(n), Encoding::Raw)),
        ResponseFraming::Chunked => Some((Source::Chunked, client_encoding)),
        ResponseFraming::CloseDelimited => Some((Source::UntilClose, client_encoding)),
    };
    let expected = match source {
        Some((Source::Length(n), _)) => Some(n),
        None => Some(0),
        _ => None,
    };
    let mut capture = fill.as_ref().map(|_| {
        let limit = view
            .snap
            .config
            .cache
            .max_object_bytes
            .min(usize::MAX as u64) as usize;
        Capture::new(limit, expected)
    });
    // A small Content-Length body already in the buffer rides with the head.
    if let Some((Source::Length(n), _)) = source
        && (n as usize) <= INLINE_BODY_MAX
        && origin.data().len() >= n as usize
    {
        conn.out.extend_from_slice(&origin.data()[..n as usize]);
        if let Some(c) = capture.as_mut() {
            c.take(&origin.data()[..n as usize]);
        }
        origin.consume(n as usize);
        source = None;
    }
    if source.is_none()
        && let (Some(plan), Some(capture), Some((_, lookup))) =
            (fill.take(), capture.take(), cached)
        && !capture.overflowed
    {
        // The whole body is in hand: stored before the client sees it, so the client's
        // next request finds it.
        plan.finish(worker, lookup, conn, capture.bytes);
    }
    if conn.send_out().await.is_err() {
        return (Next::Abort, status);
    }
    if let Some((source, encoding)) = source {
        let plan = BodyPlan {
            source,
            encoding,
            src_side: Side::Origin,
            idle: config.limits.body_timeout,
            limit: u64::MAX,
        };
        let result = body::forward(
            &mut origin,
            &mut conn.io.stream,
            plan,
            &mut conn.scratch,
            capture.as_mut(),
        )
        .await;
        if let Err(e) = result {
            // The head is out: the only honest signal left is closing the connection,
            // which the client sees as a truncated body.
            tracing::debug!(origin = %config.origins[index].id, side = ?e.side, kind = ?e.kind, "response body aborted");
            return (Next::Abort, status);
        }
    }
    // The whole body went out: store it (a response cut short is never stored).
    if let (Some(plan), Some(capture), Some((_, lookup))) = (fill, capture, cached)
        && !capture.overflowed
    {
        plan.finish(worker, lookup, conn, capture.bytes);
    }
    // Bytes beyond the response's end mean the origin's framing cannot be trusted; a
    // connection opened under an older config (a reload happened meanwhile) is not
    // pooled either: its address, SNI name or trust settings may have changed.
    if reuse.allowed() && !origin.has_data() && view.is_current(worker) {
        let (stream, buf) = origin.into_parts();
        worker.pool.borrow_mut().checkin(
            index,
            stream,
            reuse == crate::http::Reuse::AfterCheck,
            view.snap.addresses.epoch(index),
        );
        conn.upstream_buf = buf;
    } else {
        let (_, buf) = origin.into_parts();
        conn.upstream_buf = buf;
    }
    (
        fate::conclude(worker, conn, keep, Written::Complete).await,
        status,
    )
}

/// An origin's bodiless answer that lb does not forward as it is (a 304 to lb's own
/// revalidation): `read` sees its head, then the connection goes back to the pool if it
/// may carry another request.
pub(super) fn consume_bodiless<T>(
    worker: &Worker,
    view: &View,
    conn: &mut ClientConn,
    index: usize,
    start: ResponseStart,
    read: impl FnOnce(&crate::http::ParsedResponse<'_, '_>) -> T,
) -> T {
    let mut origin = start.origin;
    let (out, reuse, head_len) = {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let Ok(Some(r)) = parse_response_head(origin.data(), usize::MAX, &mut slots, true) else {
            unreachable!("read_response_head validated this head");
        };
        (read(&r), r.reuse(), r.head_len)
    };
    origin.consume(head_len);
    if reuse.allowed() && !origin.has_data() && view.is_current(worker) {
        let (stream, buf) = origin.into_parts();
        worker.pool.borrow_mut().checkin(
            index,
            stream,
            reuse == crate::http::Reuse::AfterCheck,
            view.snap.addresses.epoch(index),
        );
        conn.upstream_buf = buf;
    }
    out
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
/// is not 443), and https-only with 403. The request body, if any, is not forwarded.
pub(super) async fn viewer_policy_reply(
    worker: &Worker,
    conn: &mut ClientConn,
    policy: ViewerProtocolPolicy,
) -> (Next, u16) {
    if policy == ViewerProtocolPolicy::HttpsOnly {
        return error(worker, conn, 403, "this path is served over HTTPS only").await;
    }
    let https_port = worker.https_port;
    let host = conn.head.host().map(host_without_port).unwrap_or_default();
    if host.is_empty() {
        return error(worker, conn, 400, "the HTTPS redirect needs a Host header").await;
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
    let redirect = Answer::Redirect {
        status: 301,
        location: &location,
    };
    (answer(worker, conn, redirect).await, 301)
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

/// The status and reason a client gets when a request body could not be moved.
pub(super) fn body_error_reply(e: &BodyError) -> (u16, &'static str) {
    match (e.side, e.kind) {
        (_, BodyErrorKind::TooLarge) => (413, crate::http::RejectReason::BodyTooLarge.text()),
        (Side::Client, BodyErrorKind::Framing(_)) => (400, "invalid chunked request body"),
        (Side::Client, BodyErrorKind::Timeout) => (408, "timed out reading the request body"),
        (Side::Client, _) => (400, "request body ended early"),
        (Side::Origin, BodyErrorKind::Timeout) => (504, "origin stopped reading the request body"),
        (Side::Origin, _) => (502, "origin failed while receiving the request body"),
    }
}

/// A response to HEAD keeps its headers (Content-Length included) and drops the body, so
/// the next response on the connection is not misread.
fn without_body_for_head(conn: &mut ClientConn) {
    if conn.head_request
        && let Some(end) = memchr::memmem::find(&conn.out, b"\r\n\r\n")
    {
        conn.out.truncate(end + 4);
    }
}
