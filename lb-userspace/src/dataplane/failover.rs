//! One exchange: pick the behavior for the (normalised) path, then try the target's
//! members in order (the failover contract, README "Failover"). A failover status, a
//! connect failure, a response timeout or a reset before any response byte moves a
//! GET/HEAD/OPTIONS request on; other methods move on only if no request byte was
//! written. Nothing is retried once a response byte (a 1xx included) reached the client.
//! lb's own resource failures (out of file descriptors or ports) are not the origin's:
//! they are counted apart, never recorded against the origin's health, and answered 503.

use std::{sync::atomic::Ordering, time::Instant};

use super::{
    access_log::{AttemptRecord, Outcome},
    attempt::{self, BodyMode, Failure},
    body::{BodyError, BodyErrorKind, Side},
    cached::{self, Decision},
    client::ClientConn,
    edge_functions, error_pages,
    fate::{BodyState, Next},
    respond::{self, body_error_reply},
    selection::Plan,
    upstream::{ErrorSource, RequestProgress, UpstreamError, UpstreamErrorKind},
    worker::{View, Worker},
};
use crate::{
    config::{Target, ViewerProtocolPolicy},
    functions::{Trigger, edge::ResponseOutcome},
    health::now_ms,
    http::BodyFraming,
    metrics::CacheEvent,
    metrics::FailoverReason,
    rules::{DirectAnswer, RuleRef, RuleScope, RuleSet},
};

pub(super) async fn exchange(worker: &Worker, view: &View, conn: &mut ClientConn) -> (Next, u16) {
    let config = &*view.snap.config;
    conn.attempts.clear();
    conn.rule = None;
    conn.fn_request = None;
    conn.fn_origin_request = None;
    conn.fn_viewer_response = false;
    conn.fn_response = None;
    // Request rules run first, on the request as received: an answer of their own, or a
    // route and edits that the attempts below apply.
    if !config.rules.is_empty()
        && let Some(r) = apply_rules(worker, view, conn, &config.rules, RuleScope::Global).await
    {
        return r;
    }
    let method = conn.head.method();
    let framing = conn.head.framing();
    let (behavior, scope) = config.behavior_and_scope(conn.match_path());
    if !behavior.allowed_methods.allows(conn.head.method_str()) {
        // CloudFront answers methods a behavior does not allow with 403.
        return respond::error(worker, conn, 403, "method not allowed for this path").await;
    }
    if !conn.tls() && behavior.viewer_protocol_policy != ViewerProtocolPolicy::AllowAll {
        return respond::viewer_policy_reply(worker, conn, behavior.viewer_protocol_policy).await;
    }
    // The behavior's own rules, when no global rule matched.
    if conn.rule.is_none()
        && !behavior.rules.is_empty()
        && let Some(r) = apply_rules(worker, view, conn, &behavior.rules, scope).await
    {
        return r;
    }
    let target = conn
        .rule
        .and_then(|r| config.rule(r))
        .and_then(|rule| rule.actions.route.as_ref())
        .map_or(behavior.target, |(t, _)| *t);
    conn.fn_viewer_response = behavior.function(Trigger::ViewerResponse).is_some();
    if let Some(f) = behavior.function(Trigger::ViewerRequest)
        && let Some(r) = edge_functions::viewer_request(worker, view, conn, f).await
    {
        return r;
    }
    // The cache answers before any origin is asked: a fresh copy at once, a stale one at
    // once when every member of the target is down. (A request a viewer-request function
    // changed bypasses it: its key is the client's request.)
    let cache_policy = behavior
        .cache
        .as_ref()
        .filter(|_| conn.fn_request.is_none());
    let mut lookup = None;
    if let Some(policy) = cache_policy {
        let down = || target_down(view, worker, target);
        let mode = cached::LookupMode {
            collapse: true,
            disk: true,
        };
        let mut decision = cached::lookup(worker, policy, conn, down, mode);
        if let Some(Decision::Disk(key, file)) = decision {
            // io_uring reads the file (a blocking read under the legacy epoll driver);
            // what it held goes back into memory and the lookup runs again.
            let bytes = monoio::fs::read(&file).await;
            worker.cache.load(&key, &file, bytes);
            let down = || target_down(view, worker, target);
            let mode = cached::LookupMode {
                collapse: true,
                disk: false,
            };
            decision = cached::lookup(worker, policy, conn, down, mode);
        }
        if let Some(Decision::Wait(filled)) = decision {
            // Collapsed forwarding: a concurrent miss of this key is asking the origins.
            // Its answer is in the store when it is done (or it was not storable: then
            // this request asks itself, without waiting again).
            let _ = monoio::time::timeout(policy.collapse_wait, filled).await;
            let down = || target_down(view, worker, target);
            let mode = cached::LookupMode {
                collapse: false,
                disk: false,
            };
            decision = cached::lookup(worker, policy, conn, down, mode);
            if let Some(Decision::Serve(obj, status, CacheEvent::Hit)) = decision {
                let status = format!("{status}; collapsed");
                return cached::serve(worker, view, conn, &obj, &status, CacheEvent::Collapsed)
                    .await;
            }
        }
        match decision {
            Some(Decision::Serve(obj, status, event)) => {
                return cached::serve(worker, view, conn, &obj, &status, event).await;
            }
            Some(Decision::Revalidate(obj, status, found)) => {
                let fields = conn
                    .head
                    .fields()
                    .map(|(n, v)| (Box::from(n), Box::from(v)))
                    .collect();
                let refresh = super::refresh::Refresh {
                    lookup: found,
                    policy: policy.clone(),
                    target,
                    rule: conn.rule,
                    host: conn.head.host().map(<[u8]>::to_vec),
                    fields,
                    tls: conn.tls(),
                };
                super::refresh::spawn(worker, view, refresh);
                let event = CacheEvent::StaleWhileRevalidate;
                return cached::serve(worker, view, conn, &obj, &status, event).await;
            }
            Some(Decision::Forward(found)) => lookup = Some(found),
            Some(Decision::Wait(_) | Decision::Disk(..)) | None => {}
        }
    }
    let cached = cache_policy.zip(lookup.as_ref());
    if let BodyFraming::ContentLength(n) = framing
        && n > config.limits.max_request_body
    {
        let reason = crate::http::RejectReason::BodyTooLarge.text();
        conn.body = BodyState::Refused;
        return respond::error(worker, conn, 413, reason).await;
    }
    let body_mode = match framing {
        BodyFraming::None => BodyMode::None,
        BodyFraming::ContentLength(n) if n as usize <= config.failover.replay_body_limit => {
            if let Err(e) = buffer_body(view, conn, n as usize).await {
                conn.body = BodyState::Lost;
                let (status, reason) = body_error_reply(&e);
                return respond::error(worker, conn, status, reason).await;
            }
            BodyMode::Buffered
        }
        _ => BodyMode::Stream,
    };
    let group_index = match target {
        Target::Group(g) => Some(g),
        Target::Origin(_) => None,
    };
    let group = group_index.map(|g| &config.groups[g]);
    let order =
        match view
            .selector
            .plan(config, &view.snap.health, worker.kernel.as_deref(), target)
        {
            Plan::Try(order) => order,
            Plan::NoneUsable => {
                if let Some(r) = serve_stale(worker, view, conn, cached, 503).await {
                    return r;
                }
                if let Some(custom) = error_pages::lookup(config, 503) {
                    return error_pages::serve(worker, view, conn, custom, 503).await;
                }
                let reason = format!(
                    "no healthy origin in group {}",
                    group.map_or("", |g| g.id.as_str())
                );
                return respond::error(worker, conn, 503, &reason).await;
            }
        };
    // Whether any request byte was written to any connection: sticks across members and
    // across the retry after a dead pooled connection.
    let mut sent = false;
    let mut last_error: Option<(UpstreamError, usize)> = None;
    for (k, &planned) in order.iter().enumerate() {
        if conn.attempts.iter().any(|a| a.origin == planned) {
            // Already tried, as the hedge of a stalled attempt.
            continue;
        }
        let is_last = k + 1 == order.len();
        let t0 = Instant::now();
        view.metrics()
            .origin(planned)
            .attempts
            .fetch_add(1, Ordering::Relaxed);
        if let Some(f) = behavior.function(Trigger::OriginRequest) {
            // Once per attempt, so again on failover, seeing this member's custom headers.
            match edge_functions::origin_request(view, conn, f, planned) {
                Ok(changed) => conn.fn_origin_request = Some(Box::new(changed)),
                Err(Ok(generated)) => {
                    return edge_functions::answer(worker, conn, &generated).await;
                }
                Err(Err(reason)) => return respond::error(worker, conn, 502, &reason).await,
            }
        }
        let in_flight = InFlight::start(view, planned);
        // A hedge would send another member the request made for this one.
        let hedge_to = order
            .get(k + 1)
            .copied()
            .filter(|_| conn.fn_origin_request.is_none());
        let result = attempt::attempt(
            worker, view, conn, planned, body_mode, &mut sent, hedge_to, cached,
        )
        .await;
        let elapsed = t0.elapsed();
        let ms = elapsed.as_millis().min(u32::MAX as u128) as u32;
        // Where a request may still go: GET/HEAD/OPTIONS whose body can be sent again, and
        // nothing of any response has reached the client.
        let may_move_sent =
            method.fails_over() && body_mode != BodyMode::Stream && !conn.response_started;
        // The origin that answered: the planned one, or the member its stall was hedged to.
        let index = match &result {
            Ok(start) if start.from != planned => {
                hedged(view, conn, planned, start.from, group_index, ms);
                start.from
            }
            _ => planned,
        };
        let is_last = is_last || (index != planned && k + 2 >= order.len());
        let counters = view.metrics().origin(index);
        match result {
            Ok(start) => {
                let status = start.status;
                conn.attempts.push(AttemptRecord {
                    origin: index,
                    outcome: Outcome::Status(status),
                    ms,
                });
                // A gRPC call the server refused to run (a trailers-only UNAVAILABLE by
                // default) may move on whatever its method, if its request can be sent
                // again and nothing reached the client yet.
                let grpc_refused = group.is_some_and(|g| {
                    grpc_status(conn, start.origin.data())
                        .is_some_and(|s| g.failover_grpc_statuses.contains(&s))
                });
                let may_move_sent = may_move_sent
                    || (grpc_refused && body_mode != BodyMode::Stream && !conn.response_started);
                let failover_status =
                    grpc_refused || group.is_some_and(|g| g.failover_statuses.contains(status));
                counters.observe_latency(elapsed);
                view.selector.observe(index, elapsed);
                if failover_status {
                    counters.error(FailoverReason::Status);
                    view.snap.health.record_failure(index, now_ms());
                } else {
                    view.snap.health.record_success(index);
                }
                if failover_status && !is_last && may_move_sent {
                    if let Some(g) = group_index {
                        view.metrics().failover(g, FailoverReason::Status);
                    }
                    // The failed response's body is not needed: close rather than drain.
                    drop(in_flight);
                    continue;
                }
                if status == 304
                    && !conn.response_started
                    && let Some((policy, lookup)) = cached
                    && lookup.stale.is_some()
                {
                    drop(in_flight);
                    return revalidated(worker, view, conn, index, start, policy, lookup).await;
                }
                if (failover_status || matches!(status, 500 | 502 | 503 | 504))
                    && !conn.response_started
                    && let Some(r) = serve_stale(worker, view, conn, cached, status).await
                {
                    return r;
                }
                let mut status = status;
                if let Some(f) = behavior.function(Trigger::OriginResponse)
                    && !conn.response_started
                {
                    match edge_functions::origin_response(view, conn, f, start.origin.data()) {
                        Ok(ResponseOutcome::Replace(generated)) => {
                            // The origin's body is not wanted: close rather than drain.
                            drop(start);
                            drop(in_flight);
                            return edge_functions::answer(worker, conn, &generated).await;
                        }
                        Ok(ResponseOutcome::Head {
                            status: s,
                            reason,
                            headers,
                        }) => {
                            status = s;
                            conn.fn_response = Some(Box::new(edge_functions::FnHead {
                                status: s,
                                reason,
                                headers,
                            }));
                        }
                        Err(reason) => {
                            drop(start);
                            drop(in_flight);
                            return respond::error(worker, conn, 502, &reason).await;
                        }
                    }
                }
                // Response rules see the answer as any origin-response function left it;
                // custom error responses then see the rules' status.
                if !config.response_rules.is_empty()
                    && !conn.response_started
                    && let Some(outcome) =
                        edge_functions::response_rules(view, conn, index, start.origin.data())
                {
                    match outcome {
                        edge_functions::RuleOutcome::Replace(generated) => {
                            drop(start);
                            drop(in_flight);
                            return edge_functions::answer(worker, conn, &generated).await;
                        }
                        edge_functions::RuleOutcome::Head(head) => {
                            status = head.status;
                            conn.fn_response = Some(Box::new(head));
                        }
                    }
                }
                if status >= 400
                    && !conn.response_started
                    && let Some(custom) = error_pages::lookup(config, status)
                {
                    drop(start);
                    drop(in_flight);
                    return error_pages::serve(worker, view, conn, custom, status).await;
                }
                let result = respond::respond(worker, view, conn, index, start, cached).await;
                drop(in_flight);
                return result;
            }
            Err(Failure::Upstream(e)) if e.source() == ErrorSource::Local => {
                // lb itself is out of resources: not the origin's failure, and another
                // member would fail the same way.
                drop(in_flight);
                if let UpstreamErrorKind::LocalResource(r) = e.kind {
                    view.metrics().local_error(r);
                }
                worker.log_local_error(&e);
                conn.attempts.push(AttemptRecord {
                    origin: index,
                    outcome: Outcome::Error(e.label()),
                    ms,
                });
                let reason = e.reason(&config.origins[index].id);
                return respond::error(worker, conn, 503, &reason).await;
            }
            Err(Failure::Upstream(e)) => {
                conn.attempts.push(AttemptRecord {
                    origin: index,
                    outcome: Outcome::Error(e.label()),
                    ms,
                });
                counters.error(failover_reason(&e));
                if e.kind != UpstreamErrorKind::Unresolved {
                    // An unresolved name is down already; nothing was tried on it.
                    view.snap.health.record_failure(index, now_ms());
                }
                if let UpstreamErrorKind::ConnectFailed(
                    std::io::ErrorKind::HostUnreachable | std::io::ErrorKind::NetworkUnreachable,
                ) = e.kind
                {
                    view.snap.health.record_unreachable(index);
                }
                drop(in_flight);
                let may_move = if e.progress == RequestProgress::NotSent && !sent {
                    !conn.response_started
                } else {
                    may_move_sent && e.retry_safe(method)
                };
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
                conn.body = BodyState::Lost;
                let (status, reason) = body_error_reply(&e);
                return respond::error(worker, conn, status, reason).await;
            }
        }
    }
    let (e, index) = last_error.expect("the loop only ends without a response after an error");
    let status = e.status();
    if !conn.response_started
        && let Some(r) = serve_stale(worker, view, conn, cached, status).await
    {
        return r;
    }
    if !conn.response_started
        && let Some(custom) = error_pages::lookup(config, status)
    {
        return error_pages::serve(worker, view, conn, custom, status).await;
    }
    let reason = e.reason(&config.origins[index].id);
    respond::error(worker, conn, status, &reason).await
}

/// The origin answered lb's revalidation of an expired copy with 304: the copy is
/// refreshed, stored again and served.
async fn revalidated(
    worker: &Worker,
    view: &View,
    conn: &mut ClientConn,
    index: usize,
    start: respond::ResponseStart,
    policy: &crate::config::BehaviorCache,
    lookup: &cached::Lookup,
) -> (Next, u16) {
    let refreshed = respond::consume_bodiless(worker, view, conn, index, start, |r| {
        cached::refreshed(lookup, policy, r)
    });
    let Some(obj) = refreshed else {
        let reason = "the origin answered 304, but its answer may not be stored";
        return respond::error(worker, conn, 502, reason).await;
    };
    let obj = std::sync::Arc::new(obj);
    worker
        .cache
        .insert_shared(&lookup.key, std::sync::Arc::clone(&obj));
    let status = format!(
        "lb; fwd=stale; fwd-status=304; ttl={}",
        obj.lifetime.as_secs()
    );
    let event = crate::metrics::CacheEvent::Revalidated;
    cached::serve(worker, view, conn, &obj, &status, event).await
}

/// Whether every member of `target` is down now (the cache then answers stale at once).
/// Runs the request rules: `Some` when the matching rule answered the request itself
/// (a redirect or a fixed response); otherwise records the matching rule, if any, in
/// `conn.rule` for the route and the request edits.
async fn apply_rules(
    worker: &Worker,
    view: &View,
    conn: &mut ClientConn,
    rules: &RuleSet,
    scope: RuleScope,
) -> Option<(Next, u16)> {
    let config = &*view.snap.config;
    let index = {
        let request = crate::rules::RuleRequest {
            method: conn.head.method_str(),
            host: conn.head.host(),
            target: conn.head.path(),
            fields: conn.head.fields(),
            client: config
                .client_address
                .resolve(conn.peer.ip(), conn.head.fields()),
            geo: &config.geo,
        };
        rules.first_match(&request)?.0
    };
    let rule = &rules.rules[index];
    match &rule.actions.answer {
        None => {
            conn.rule = u16::try_from(index)
                .ok()
                .map(|index| RuleRef { scope, index });
            None
        }
        Some(DirectAnswer::Redirect { status, location }) => {
            let location = DirectAnswer::location(
                location,
                conn.head.host().unwrap_or_default(),
                conn.head.path(),
            );
            let answer = respond::Answer::Redirect {
                status: *status,
                location: &location,
            };
            Some((respond::answer(worker, conn, answer).await, *status))
        }
        Some(DirectAnswer::Respond {
            status,
            content_type,
            headers,
            body,
        }) => {
            let answer = respond::Answer::Page {
                status: *status,
                content_type: content_type.as_bytes(),
                headers,
                body,
            };
            Some((respond::answer(worker, conn, answer).await, *status))
        }
    }
}

fn target_down(view: &View, worker: &Worker, target: Target) -> bool {
    let config = &view.snap.config;
    let now = now_ms();
    config.members(target).0.iter().all(|&m| {
        view.snap
            .health
            .availability(m, now, worker.kernel.as_deref())
            == crate::health::Availability::Down
    })
}

/// Serves the cached copy instead of an error (`status`: the last member's, or lb's own),
/// when there is one and its stale-if-error allowance covers it.
async fn serve_stale(
    worker: &Worker,
    view: &View,
    conn: &mut ClientConn,
    cached: Option<(&crate::config::BehaviorCache, &cached::Lookup)>,
    status: u16,
) -> Option<(Next, u16)> {
    let (policy, lookup) = cached?;
    let (obj, cache_status) = cached::stale_on_error(lookup, policy, status)?;
    Some(
        cached::serve(
            worker,
            view,
            conn,
            &obj,
            &cache_status,
            crate::metrics::CacheEvent::StaleIfError,
        )
        .await,
    )
}

/// Accounts for an attempt on `stalled` that the kernel showed stalled and whose hedge on
/// `winner` answered first: the stalled attempt is a failed one.
fn hedged(
    view: &View,
    conn: &mut ClientConn,
    stalled: usize,
    winner: usize,
    group: Option<usize>,
    ms: u32,
) {
    conn.attempts.push(AttemptRecord {
        origin: stalled,
        outcome: Outcome::Error("stall"),
        ms,
    });
    view.metrics().origin(stalled).error(FailoverReason::Stall);
    view.snap.health.record_failure(stalled, now_ms());
    if let Some(g) = group {
        view.metrics().failover(g, FailoverReason::Stall);
    }
    view.metrics()
        .origin(winner)
        .attempts
        .fetch_add(1, Ordering::Relaxed);
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
            .fetch_add(1, Ordering::Relaxed);
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
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// The `grpc-status` of a trailers-only gRPC answer (the status in the response head),
/// for a gRPC request; `None` otherwise.
fn grpc_status(conn: &ClientConn, response_head: &[u8]) -> Option<u32> {
    let grpc_request = conn.head.fields().any(|(name, value)| {
        name.eq_ignore_ascii_case("content-type") && value.starts_with(b"application/grpc")
    });
    if !grpc_request {
        return None;
    }
    let mut slots = [httparse::EMPTY_HEADER; crate::http::MAX_HEADERS];
    let mut response = httparse::Response::new(&mut slots);
    response.parse(response_head).ok()?;
    let value = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("grpc-status"))?
        .value;
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

fn failover_reason(e: &UpstreamError) -> FailoverReason {
    match e.kind {
        UpstreamErrorKind::ConnectRefused => FailoverReason::ConnectRefused,
        UpstreamErrorKind::ConnectTimeout => FailoverReason::ConnectTimeout,
        UpstreamErrorKind::ConnectFailed(_) | UpstreamErrorKind::LocalResource(_) => {
            FailoverReason::ConnectError
        }
        UpstreamErrorKind::TlsHandshake(_) => FailoverReason::TlsHandshake,
        UpstreamErrorKind::ClosedBeforeResponse => FailoverReason::Reset,
        UpstreamErrorKind::ResponseTimeout => FailoverReason::ResponseTimeout,
        UpstreamErrorKind::MalformedResponse(_) => FailoverReason::BadResponse,
        UpstreamErrorKind::WriteFailed(_) | UpstreamErrorKind::WriteTimeout => {
            FailoverReason::WriteError
        }
        UpstreamErrorKind::SynRetransmitted => FailoverReason::SynRetransmit,
        UpstreamErrorKind::StreamRefused => FailoverReason::RefusedStream,
        UpstreamErrorKind::Unresolved => FailoverReason::Dns,
    }
}

/// Reads a Content-Length body of `n` bytes into `conn.replay`.
async fn buffer_body(view: &View, conn: &mut ClientConn, n: usize) -> Result<(), BodyError> {
    conn.replay.clear();
    if conn.head.expect_continue && conn.io.data().len() < n {
        attempt::send_continue(conn).await?;
    }
    let client_error = |kind| BodyError {
        side: Side::Client,
        kind,
    };
    while conn.replay.len() < n {
        if !conn.io.has_data() {
            match monoio::time::timeout(view.snap.config.limits.body_timeout, conn.io.fill()).await
            {
                Err(_) => return Err(client_error(BodyErrorKind::Timeout)),
                Ok(Ok(0)) => return Err(client_error(BodyErrorKind::Closed)),
                Ok(Err(_)) => return Err(client_error(BodyErrorKind::Io)),
                Ok(Ok(_)) => {}
            }
        }
        let take = (n - conn.replay.len()).min(conn.io.data().len());
        conn.replay.extend_from_slice(&conn.io.data()[..take]);
        conn.io.consume(take);
    }
    conn.body = BodyState::Consumed;
    Ok(())
}
