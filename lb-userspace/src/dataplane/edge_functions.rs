//! A behavior's functions on the request path: `viewer-request` before the cache and
//! the origins (it may change the request or answer it), `origin-response` on the final
//! origin answer (it may change its status and headers, or replace it). The engine runs
//! on this worker's thread; a function that throws, runs out of time or memory, or
//! answers something invalid gets the client the 502 CloudFront gives, named in the log
//! and counted in `lb_function_errors_total`.

use super::{
    client::ClientConn,
    fate::{self, Next, Written},
    respond,
    worker::{View, Worker},
};
use crate::{
    functions::{
        FunctionError, FunctionKind, FunctionSpec, cff,
        edge::{self, EdgeRequest, Generated, RequestOutcome, ResponseOutcome},
        engine,
    },
    http::{HeaderRewrite, MAX_HEADERS, parse_response_head},
};

/// The request as a viewer-request function left it: what the origin receives.
#[derive(Debug)]
pub(super) struct FnRequest {
    /// Path and query.
    pub target: String,
    /// Every request field, the function's Host among them.
    pub headers: Vec<(String, String)>,
}

impl FnRequest {
    pub fn host(&self) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.as_bytes())
    }

    pub fn fields(&self) -> impl Iterator<Item = (&str, &[u8])> + Clone {
        self.headers
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("host"))
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
    }
}

/// The head an origin-response function gave the origin's answer.
#[derive(Debug)]
pub(super) struct FnHead {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
}

impl FnHead {
    pub fn fields(&self) -> impl Iterator<Item = (&str, &[u8])> + Clone {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()))
    }
}

/// The viewer as functions see it: its address (through trusted proxies, as rules see
/// it) and, with `[geo]`, its country.
fn viewer<'v>(view: &'v View, conn: &ClientConn) -> (std::net::IpAddr, Option<&'v str>) {
    let config = &*view.snap.config;
    let client = config
        .client_address
        .resolve(conn.peer.ip(), conn.head.fields());
    let country = config
        .geo
        .country
        .as_ref()
        .and_then(|db| db.country(client));
    (client, country)
}

fn failed(view: &View, spec: &FunctionSpec, e: &FunctionError) -> String {
    view.metrics().function_error(e);
    tracing::warn!(function = %spec.name, reason = e.label(), error = %e, "function failed; answering 502");
    format!("function {} failed ({})", spec.name, e.label())
}

/// Runs the viewer-request function: `Some` when the request was answered (by the
/// function, or with 502 because it failed).
pub(super) async fn viewer_request(
    worker: &Worker,
    view: &View,
    conn: &mut ClientConn,
    spec: &FunctionSpec,
) -> Option<(Next, u16)> {
    view.metrics()
        .function_runs
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (client, country) = viewer(view, conn);
    let request = EdgeRequest {
        client,
        method: conn.head.method_str(),
        target: conn.head.path(),
        fields: conn.head.fields(),
        country,
    };
    let limits = view.snap.config.function_limits;
    let outcome = match spec.kind {
        FunctionKind::LambdaEdge => {
            let event = edge::viewer_request_event(request);
            engine::invoke(&spec.source, spec.kind, limits, &event)
                .and_then(|json| edge::parse_request_result(&json))
        }
        FunctionKind::CloudFrontFunction => {
            let event = cff::viewer_request_event(request);
            engine::invoke(&spec.source, spec.kind, limits, &event)
                .and_then(|json| cff::parse_request_result(&json))
        }
    };
    match outcome {
        Ok(RequestOutcome::Forward { target, headers }) => {
            conn.fn_request = Some(Box::new(FnRequest { target, headers }));
            None
        }
        Ok(RequestOutcome::Respond(generated)) => Some(answer(worker, conn, &generated).await),
        Err(e) => {
            let reason = failed(view, spec, &e);
            Some(respond::error(worker, conn, 502, &reason).await)
        }
    }
}

/// Runs the origin-request function before an attempt at origin `index`: `Err` carries
/// the answer the client gets instead (the function's own, or 502 when it failed).
pub(super) fn origin_request(
    view: &View,
    conn: &ClientConn,
    spec: &FunctionSpec,
    index: usize,
) -> Result<FnRequest, Result<Generated, String>> {
    view.metrics()
        .function_runs
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let origin = &view.snap.config.origins[index];
    let tls = origin.uses_tls(conn.tls());
    let host = origin
        .host
        .clone()
        .unwrap_or_else(|| origin.address.ip().to_string());
    let edge_origin = edge::EdgeOrigin {
        domain_name: &host,
        port: origin.port(tls),
        protocol: if tls { "https" } else { "http" },
        path: &origin.origin_path,
        custom_headers: &origin.custom_headers,
        keepalive_timeout: origin.keepalive_timeout.as_secs(),
        read_timeout: origin.response_timeout.as_secs(),
    };
    // The request as the viewer-request function left it, if one ran.
    let (client, country) = viewer(view, conn);
    let event = match &conn.fn_request {
        Some(changed) => {
            let host = changed.host().map(|h| ("host", h));
            edge::origin_request_event(
                EdgeRequest {
                    client,
                    method: conn.head.method_str(),
                    target: &changed.target,
                    fields: host.into_iter().chain(changed.fields()),
                    country,
                },
                &edge_origin,
            )
        }
        None => edge::origin_request_event(
            EdgeRequest {
                client,
                method: conn.head.method_str(),
                target: conn.head.path(),
                fields: conn.head.fields(),
                country,
            },
            &edge_origin,
        ),
    };
    let limits = view.snap.config.function_limits;
    match engine::invoke(&spec.source, spec.kind, limits, &event)
        .and_then(|json| edge::parse_request_result(&json))
    {
        Ok(RequestOutcome::Forward { target, headers }) => Ok(FnRequest { target, headers }),
        Ok(RequestOutcome::Respond(g)) => Err(Ok(g)),
        Err(e) => Err(Err(failed(view, spec, &e))),
    }
}

/// Runs the origin-response function on the final answer whose head is in `head`.
pub(super) fn origin_response(
    view: &View,
    conn: &ClientConn,
    spec: &FunctionSpec,
    head: &[u8],
) -> Result<ResponseOutcome, String> {
    view.metrics()
        .function_runs
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let Ok(Some(r)) = parse_response_head(head, usize::MAX, &mut slots, conn.head_request) else {
        unreachable!("the attempt validated this head");
    };
    let (client, country) = viewer(view, conn);
    let event = edge::origin_response_event(
        EdgeRequest {
            client,
            method: conn.head.method_str(),
            target: conn.head.path(),
            fields: conn.head.fields(),
            country,
        },
        r.status,
        r.reason,
        r.headers.iter().map(|h| (h.name, h.value)),
    );
    let limits = view.snap.config.function_limits;
    engine::invoke(&spec.source, spec.kind, limits, &event)
        .and_then(|json| edge::parse_response_result(&json))
        .map_err(|e| failed(view, spec, &e))
}

/// Runs the viewer-response function on the head about to be sent: the head it leaves.
pub(super) fn viewer_response<'r>(
    view: &View,
    conn: &ClientConn,
    spec: &FunctionSpec,
    status: u16,
    reason: &str,
    fields: impl Iterator<Item = (&'r str, &'r [u8])> + Clone,
) -> Result<FnHead, String> {
    view.metrics()
        .function_runs
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (client, country) = viewer(view, conn);
    let request = EdgeRequest {
        client,
        method: conn.head.method_str(),
        target: conn.head.path(),
        fields: conn.head.fields(),
        country,
    };
    let limits = view.snap.config.function_limits;
    let head = match spec.kind {
        FunctionKind::LambdaEdge => {
            let event = edge::response_event(
                crate::functions::Trigger::ViewerResponse,
                request,
                status,
                reason,
                fields,
            );
            engine::invoke(&spec.source, spec.kind, limits, &event)
                .and_then(|json| edge::parse_response_result(&json))
                .and_then(|outcome| match outcome {
                    ResponseOutcome::Head {
                        status,
                        reason,
                        headers,
                    } => Ok((status, reason, headers)),
                    ResponseOutcome::Replace(_) => Err(FunctionError::Invalid(
                        "a viewer-response function cannot set a body".into(),
                    )),
                })
        }
        FunctionKind::CloudFrontFunction => {
            let event = cff::viewer_response_event(request, status, reason, fields);
            engine::invoke(&spec.source, spec.kind, limits, &event)
                .and_then(|json| cff::parse_response_result(&json))
        }
    };
    match head {
        Ok((status, reason, headers)) => Ok(FnHead {
            status,
            reason,
            headers,
        }),
        Err(e) => Err(failed(view, spec, &e)),
    }
}

/// What a response rule made of the final answer.
pub(super) enum RuleOutcome {
    /// A new head; the origin's body follows.
    Head(FnHead),
    /// A new answer with the rule's body.
    Replace(Generated),
}

/// Runs the response rules on the final answer from origin `origin` (head in `head`, or
/// as an origin-response function left it).
pub(super) fn response_rules(
    view: &View,
    conn: &ClientConn,
    origin: usize,
    head: &[u8],
) -> Option<RuleOutcome> {
    let rules = &view.snap.config.response_rules;
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let Ok(Some(r)) = parse_response_head(head, usize::MAX, &mut slots, conn.head_request) else {
        unreachable!("the attempt validated this head");
    };
    let (status, reason) = match &conn.fn_response {
        Some(fh) => (fh.status, fh.reason.as_str()),
        None => (r.status, r.reason),
    };
    let origin_fields = r.headers.iter().map(|h| (h.name, h.value));
    let fn_fields = conn.fn_response.as_ref().map(|fh| fh.fields());
    let (rule, (new_status, headers)) = match fn_fields {
        Some(fields) => {
            let rule = rules.first_match(&crate::rules::response::RuleResponse {
                status,
                origin,
                target: conn.head.path(),
                fields: fields.clone(),
            })?;
            (rule, rule.apply(status, fields))
        }
        None => {
            let rule = rules.first_match(&crate::rules::response::RuleResponse {
                status,
                origin,
                target: conn.head.path(),
                fields: origin_fields.clone(),
            })?;
            (rule, rule.apply(status, origin_fields))
        }
    };
    let reason = if new_status == status {
        reason.to_owned()
    } else {
        super::error_response::canonical_reason(new_status).to_owned()
    };
    Some(match &rule.body {
        Some(body) => RuleOutcome::Replace(Generated {
            status: new_status,
            reason,
            headers,
            body: body.clone(),
        }),
        None => RuleOutcome::Head(FnHead {
            status: new_status,
            reason,
            headers,
        }),
    })
}

/// Writes a response a function made (headers only for HEAD), framed by lb.
pub(super) async fn answer(worker: &Worker, conn: &mut ClientConn, g: &Generated) -> (Next, u16) {
    fate::settle_chunked_body(worker, conn).await;
    let keep = fate::keep_alive_intent(worker, conn);
    let connection = fate::connection_field(conn, keep);
    let bodiless = matches!(g.status, 204 | 304);
    HeaderRewrite::response(
        &mut conn.out,
        g.status,
        &g.reason,
        g.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
        (!bodiless).then_some(g.body.len() as u64),
        false,
        connection,
        &[],
    );
    if !bodiless && !conn.head_request {
        conn.out.extend_from_slice(&g.body);
    }
    let written = match conn.send_out().await {
        Ok(()) => Written::Complete,
        Err(_) => Written::Broken,
    };
    conn.response_started = true;
    (fate::conclude(worker, conn, keep, written).await, g.status)
}
