//! The admin API: a small HTTP/1.1 server on the control plane (loopback by default).
//!
//! - `GET /healthz`: 200 while lb runs.
//! - `GET /origins`: JSON, one entry per origin: state and reason, kernel counters,
//!   passive and active results, in-flight requests.
//! - `GET /metrics`: Prometheus text format.
//! - `POST /reload`: re-read the config file.
//! - `GET /cache/stats[?keys=N]`: what the cache holds and did, as JSON.
//! - `POST /cache/purge?key=K` or `?path=PATTERN[&host=H]`: drop entries (like a
//!   CloudFront invalidation); JSON with the keys dropped.

use std::{fmt::Write as _, sync::Arc};

use serde_json::json;
use tokio::net::TcpListener;

use super::reload::Reloader;
use crate::{
    health::now_ms,
    kernel::{SignalsReport, SignalsView, monotonic_now_ns},
    metrics::{FailoverReason, LATENCY_BUCKETS},
    snapshot::Current,
};

/// Everything the admin API reads.
#[derive(Clone)]
pub(super) struct State {
    pub current: Arc<Current>,
    pub kernel: Option<Arc<SignalsView>>,
    pub reloader: Arc<Reloader>,
    pub cache: Arc<crate::cache::Store>,
    pub access_log: Option<Arc<crate::log_sink::LogSink>>,
}

/// Connections the admin API serves at once; more are closed at accept. Each costs a
/// descriptor and a task, so a flood of them cannot exhaust either.
const MAX_CONNECTIONS: usize = 1024;
/// A request head must arrive within this (a slow client is closed, not waited for).
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// The longest one admin connection may take, from accept to the end of the answer.
const CONNECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Request bodies are not used; anything sent is discarded up to this.
const MAX_BODY: usize = 64 * 1024;

pub(super) async fn serve(listener: std::net::TcpListener, state: State) {
    let addr = listener.local_addr().ok();
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "admin API cannot listen");
            return;
        }
    };
    if let Some(addr) = addr {
        tracing::info!(%addr, "admin API listening");
    }
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut last_warning: Option<std::time::Instant> = None;
    let mut warn_once_a_second = |what: &str, error: &dyn std::fmt::Display| {
        if last_warning.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1)) {
            tracing::warn!(%error, "admin API: {what}");
            last_warning = Some(std::time::Instant::now());
        }
    };
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    warn_once_a_second(
                        "connection refused",
                        &format!("{MAX_CONNECTIONS} connections open"),
                    );
                    drop(stream);
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(request, &state).await) }
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .max_buf_size(16 * 1024)
                        .keep_alive(true)
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    // A client that never finishes (or never reads the answer) cannot
                    // hold a task and a socket forever.
                    let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn_once_a_second("accept failed; backing off", &e);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

type Body = http_body_util::Full<bytes::Bytes>;

async fn handle(
    request: hyper::Request<hyper::body::Incoming>,
    state: &State,
) -> hyper::Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query: Vec<(String, String)> = request
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    // The body is not used: read (bounded) and dropped, so keep-alive stays usable.
    let _ = http_body_util::BodyExt::collect(http_body_util::Limited::new(
        request.into_body(),
        MAX_BODY,
    ))
    .await;
    let (status, content_type, body) = match (method.as_str(), path.as_str()) {
        ("GET", "/healthz") => (200, "text/plain", "ok\n".to_owned()),
        ("GET", "/origins") => (200, "application/json", origins_json(state)),
        ("GET", "/metrics") => (200, "text/plain; version=0.0.4", render_metrics(state)),
        ("GET", "/cache/stats") => (200, "application/json", cache_stats_json(state, query)),
        ("POST", "/cache/purge") => match purge_request(query) {
            Ok(purge) => {
                let gone = state.cache.purge(&purge);
                tracing::info!(?purge, purged = gone.len(), "cache purge");
                let body = json!({ "purged": gone.len(), "keys": gone });
                (200, "application/json", format!("{body}\n"))
            }
            Err(why) => (400, "text/plain", format!("{why}\n")),
        },
        ("POST", "/reload") => match state.reloader.reload() {
            Ok(summary) => (200, "text/plain", format!("{summary}\n")),
            Err(e) => {
                tracing::error!("reload refused, the running config keeps serving: {e}");
                (400, "text/plain", format!("reload refused: {e}\n"))
            }
        },
        _ => (404, "text/plain", "not found\n".to_owned()),
    };
    let mut response = hyper::Response::new(Body::new(bytes::Bytes::from(body)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

fn purge_request(query: Vec<(String, String)>) -> Result<crate::cache::Purge, String> {
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    match (get("key"), get("path")) {
        (Some(key), None) if !key.is_empty() => Ok(crate::cache::Purge::Key(key)),
        (None, Some(path)) if path.starts_with('/') => Ok(crate::cache::Purge::Path {
            pattern: crate::config::PathPattern::new(&path),
            host: get("host").filter(|h| !h.is_empty()),
        }),
        (None, Some(path)) => Err(format!(
            "path `{path}` must start with / (a CloudFront invalidation path such as /img/*)"
        )),
        _ => Err("give exactly one of key=KEY or path=PATTERN (with optional host=HOST)".into()),
    }
}

fn cache_stats_json(state: &State, query: Vec<(String, String)>) -> String {
    let stats = state.cache.stats();
    let snap = state.current.load();
    let requests: serde_json::Map<String, serde_json::Value> = snap
        .metrics
        .cache_events()
        .into_iter()
        .map(|(event, n)| (event.label().to_owned(), n.into()))
        .collect();
    let keys_limit = query
        .iter()
        .find(|(k, _)| k == "keys")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut doc = json!({
        "tiers": {
            "memory": {
                "objects": stats.objects,
                "bytes": stats.bytes,
                "budget_bytes": stats.budget_bytes,
                "evictions": stats.evictions,
            }
        },
        "filling": stats.filling,
        "requests": requests,
    });
    if let Some(disk) = &stats.disk {
        doc["tiers"]["disk"] = json!(disk);
    }
    if keys_limit > 0 {
        doc["keys"] = state.cache.keys(keys_limit).into();
    }
    format!("{doc}\n")
}

fn origins_json(state: &State) -> String {
    let snap = state.current.load();
    let (config, health, metrics) = (&snap.config, &snap.health, &snap.metrics);
    let now = now_ms();
    let mono = monotonic_now_ns();
    let origins: Vec<_> = config
        .origins
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let h = health.snapshot(i, now);
            let totals = metrics.origin(i);
            let kernel = state
                .kernel
                .as_ref()
                .and_then(|v| v.get(i as u32))
                .map(|s| SignalsReport::new(&s, mono));
            let verdict = health.kernel_verdict(i, state.kernel.as_deref());
            json!({
                "id": o.id,
                "address": snap
                    .addresses
                    .first(i, o.address.port())
                    .map_or_else(|| "unresolved".to_owned(), |a| a.to_string()),
                "dns": o.host.as_ref().map(|host| {
                    let r = snap.addresses.resolution(i);
                    json!({
                        "name": host,
                        "addresses": r.ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "ttl_s": r.ttl.map(|t| t.as_secs_f64()),
                        "error": r.error,
                    })
                }),
                "state": h.state,
                "reason": h.reason,
                "state_for_ms": h.state_for_ms,
                "in_flight": totals.in_flight,
                "kernel_verdict": verdict.map(|r| r.text()),
                "stall_ms_ago": h.stall_ms_ago,
                "kernel": kernel,
                "passive": {
                    "consecutive_failures": h.consecutive_failures,
                    "failures_total": h.failures_total,
                    "successes_total": h.successes_total,
                    "ejections": h.ejections,
                    "ejected_for_ms": h.ejected_for_ms,
                    "last_failure_ms_ago": h.last_failure_ms_ago,
                },
                "active": {
                    "enabled": o.health_check.is_some(),
                    "kind": if o.health_check.is_some() { "http" } else { "tcp-connect-while-unhealthy" },
                    "checks_total": h.checks_total,
                    "consecutive_ok": h.check_ok_run,
                    "consecutive_failed": h.check_fail_run,
                    "last_status": h.last_check_status,
                    "last_check_ms_ago": h.last_check_ms_ago,
                },
            })
        })
        .collect();
    serde_json::to_string_pretty(
        &json!({ "kernel_signals": state.kernel.is_some(), "origins": origins }),
    )
    .unwrap_or_default()
}

/// Prometheus text exposition (version 0.0.4).
fn render_metrics(state: &State) -> String {
    let snap = state.current.load();
    let (metrics, config) = (&snap.metrics, &snap.config);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP lb_requests_total Requests read from clients.\n# TYPE lb_requests_total counter"
    );
    let _ = writeln!(out, "lb_requests_total {}", metrics.requests());
    if let Some(log) = &state.access_log {
        let _ = writeln!(
            out,
            "# HELP lb_access_log_lines_total Access-log lines written.\n# TYPE lb_access_log_lines_total counter\n\
             lb_access_log_lines_total {}\n\
             # HELP lb_access_log_dropped_lines_total Access-log lines dropped: the writer did not keep up (a slow disk, a full pipe) or the write failed.\n# TYPE lb_access_log_dropped_lines_total counter\n\
             lb_access_log_dropped_lines_total {}",
            log.written(),
            log.dropped()
        );
    }
    let _ = writeln!(
        out,
        "# HELP lb_responses_total Responses sent to clients, by status class.\n# TYPE lb_responses_total counter"
    );
    for (class, n) in metrics.responses() {
        let _ = writeln!(out, "lb_responses_total{{class=\"{class}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP lb_failovers_total Attempts that moved on to the next group member, by reason.\n# TYPE lb_failovers_total counter"
    );
    for (group, reason, n) in metrics.failovers() {
        let _ = writeln!(
            out,
            "lb_failovers_total{{group=\"{}\",reason=\"{}\"}} {n}",
            escape(group),
            reason.label()
        );
    }
    let _ = writeln!(
        out,
        "# HELP lb_upstream_connections_opened_total Connections lb opened to origins.\n# TYPE lb_upstream_connections_opened_total counter"
    );
    let _ = writeln!(
        out,
        "lb_upstream_connections_opened_total {}",
        metrics.upstream_connections_opened()
    );
    if !snap.tls.certificates.is_empty() {
        let _ = writeln!(
            out,
            "# HELP lb_tls_certificate_expiry_timestamp_seconds When each listener certificate expires (Unix time).\n# TYPE lb_tls_certificate_expiry_timestamp_seconds gauge"
        );
        for (path, validity) in &snap.tls.certificates {
            if let Some(seconds) = validity
                .and_then(|v| v.not_after.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs())
            {
                let _ = writeln!(
                    out,
                    "lb_tls_certificate_expiry_timestamp_seconds{{cert=\"{}\"}} {seconds}",
                    escape(&path.display().to_string())
                );
            }
        }
    }
    let (tls_ok, tls_failed) = metrics.tls_handshakes();
    let _ = writeln!(
        out,
        "# HELP lb_tls_handshakes_total Viewer TLS handshakes on the HTTPS listener.\n# TYPE lb_tls_handshakes_total counter\nlb_tls_handshakes_total{{result=\"ok\"}} {tls_ok}\nlb_tls_handshakes_total{{result=\"failed\"}} {tls_failed}"
    );
    let (h2_connections, h2_streams, h2_errors) = metrics.h2_counts();
    let _ = writeln!(
        out,
        "# HELP lb_http2_connections_total HTTP/2 viewer connections (ALPN h2 and cleartext prior knowledge).\n# TYPE lb_http2_connections_total counter\nlb_http2_connections_total {h2_connections}\n# HELP lb_http2_streams_total HTTP/2 viewer streams accepted (each is one exchange).\n# TYPE lb_http2_streams_total counter\nlb_http2_streams_total {h2_streams}\n# HELP lb_http2_connection_errors_total HTTP/2 viewer connections lb ended for the client's error: the GOAWAY code sent (enhance_your_calm: a rapid-reset, MadeYouReset or flood limit tripped), or handshake_timeout.\n# TYPE lb_http2_connection_errors_total counter"
    );
    for (label, n) in h2_errors {
        let _ = writeln!(
            out,
            "lb_http2_connection_errors_total{{reason=\"{label}\"}} {n}"
        );
    }
    let (open, parked) = metrics.client_connections();
    let _ = writeln!(
        out,
        "# HELP lb_client_connections Client connections open, and those of them idle and parked without a task (sampled each idle sweep, at most 1 s old).\n# TYPE lb_client_connections gauge\nlb_client_connections{{state=\"open\"}} {open}\nlb_client_connections{{state=\"parked\"}} {parked}"
    );
    let _ = writeln!(
        out,
        "# HELP lb_accept_errors_total Failed accepts on the listeners (EMFILE and friends).\n# TYPE lb_accept_errors_total counter\nlb_accept_errors_total {}",
        metrics.accept_errors()
    );
    let _ = writeln!(
        out,
        "# HELP lb_local_errors_total Requests lb answered 503 because it ran out of a local resource (never counted against an origin).\n# TYPE lb_local_errors_total counter"
    );
    for (resource, n) in metrics.local_errors() {
        let _ = writeln!(
            out,
            "lb_local_errors_total{{resource=\"{}\"}} {n}",
            resource.label()
        );
    }
    let (runs, errors) = metrics.function_counts();
    let _ = writeln!(
        out,
        "# HELP lb_function_runs_total Function (Lambda@Edge-style) invocations.\n# TYPE lb_function_runs_total counter\nlb_function_runs_total {runs}\n\
         # HELP lb_function_errors_total Invocations that gave no usable answer (the client got 502), by reason.\n# TYPE lb_function_errors_total counter"
    );
    for (reason, n) in errors {
        let _ = writeln!(out, "lb_function_errors_total{{reason=\"{reason}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP lb_cache_requests_total Requests of cached behaviors, by what the cache did.\n# TYPE lb_cache_requests_total counter"
    );
    for (event, n) in metrics.cache_events() {
        let _ = writeln!(
            out,
            "lb_cache_requests_total{{result=\"{}\"}} {n}",
            event.label()
        );
    }
    let store = state.cache.stats();
    let _ = writeln!(
        out,
        "# HELP lb_cache_objects Objects in the cache's memory tier.\n# TYPE lb_cache_objects gauge\nlb_cache_objects{{tier=\"memory\"}} {}\n\
         # HELP lb_cache_bytes Bytes in the cache's memory tier, and its budget.\n# TYPE lb_cache_bytes gauge\n\
         lb_cache_bytes{{tier=\"memory\"}} {}\nlb_cache_budget_bytes{{tier=\"memory\"}} {}\n\
         # HELP lb_cache_evictions_total Keys evicted to stay within a tier's budget.\n# TYPE lb_cache_evictions_total counter\n\
         lb_cache_evictions_total{{tier=\"memory\"}} {}\n\
         # HELP lb_cache_filling Keys being filled by one request that concurrent misses wait for.\n# TYPE lb_cache_filling gauge\n\
         lb_cache_filling {}",
        store.objects, store.bytes, store.budget_bytes, store.evictions, store.filling
    );
    if let Some(disk) = &store.disk {
        let _ = writeln!(
            out,
            "lb_cache_objects{{tier=\"disk\"}} {}\nlb_cache_bytes{{tier=\"disk\"}} {}\n\
             lb_cache_budget_bytes{{tier=\"disk\"}} {}\nlb_cache_evictions_total{{tier=\"disk\"}} {}\n\
             # HELP lb_cache_disk_operations_total The disk tier's reads (on memory misses) and writes, by outcome.\n\
             # TYPE lb_cache_disk_operations_total counter\n\
             lb_cache_disk_operations_total{{op=\"read\",result=\"ok\"}} {}\n\
             lb_cache_disk_operations_total{{op=\"read\",result=\"error\"}} {}\n\
             lb_cache_disk_operations_total{{op=\"write\",result=\"ok\"}} {}\n\
             lb_cache_disk_operations_total{{op=\"write\",result=\"error\"}} {}\n\
             lb_cache_disk_operations_total{{op=\"write\",result=\"dropped\"}} {}",
            disk.objects,
            disk.bytes,
            disk.budget_bytes,
            disk.evictions,
            disk.reads,
            disk.read_errors,
            disk.writes,
            disk.write_errors,
            disk.dropped_writes
        );
    }
    let _ = writeln!(
        out,
        "# HELP lb_origin_attempts_total Attempts sent to each origin.\n# TYPE lb_origin_attempts_total counter"
    );
    let totals: Vec<_> = (0..config.origins.len())
        .map(|i| metrics.origin(i))
        .collect();
    for (o, t) in config.origins.iter().zip(&totals) {
        let _ = writeln!(
            out,
            "lb_origin_attempts_total{{origin=\"{}\"}} {}",
            escape(&o.id),
            t.attempts
        );
    }
    let _ = writeln!(
        out,
        "# HELP lb_origin_errors_total Failed attempts per origin, by kind.\n# TYPE lb_origin_errors_total counter"
    );
    for (o, t) in config.origins.iter().zip(&totals) {
        for (k, reason) in FailoverReason::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "lb_origin_errors_total{{origin=\"{}\",kind=\"{}\"}} {}",
                escape(&o.id),
                reason.label(),
                t.errors[k]
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP lb_origin_in_flight Requests in progress per origin.\n# TYPE lb_origin_in_flight gauge"
    );
    for (o, t) in config.origins.iter().zip(&totals) {
        let _ = writeln!(
            out,
            "lb_origin_in_flight{{origin=\"{}\"}} {}",
            escape(&o.id),
            t.in_flight
        );
    }
    let _ = writeln!(
        out,
        "# HELP lb_origin_state Health state per origin (1 for the current state).\n# TYPE lb_origin_state gauge"
    );
    for (i, o) in config.origins.iter().enumerate() {
        let current = snap.health.state(i).as_str();
        for s in ["healthy", "suspect", "down", "recovering"] {
            let _ = writeln!(
                out,
                "lb_origin_state{{origin=\"{}\",state=\"{s}\"}} {}",
                escape(&o.id),
                u8::from(s == current)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP lb_origin_kernel_packets_total Packets the XDP program counted per origin.\n# TYPE lb_origin_kernel_packets_total counter"
    );
    let _ = writeln!(
        out,
        "# HELP lb_origin_kernel_events_total Socket events the kernel's TCP stack reported per origin.\n# TYPE lb_origin_kernel_events_total counter"
    );
    if let Some(view) = &state.kernel {
        for (i, o) in config.origins.iter().enumerate() {
            if let Some(s) = view.get(i as u32) {
                for (kind, n) in [
                    ("rst", s.rst_packets),
                    ("syn_ack", s.syn_ack_packets),
                    ("icmp_unreachable", s.icmp_unreachable_packets),
                ] {
                    let _ = writeln!(
                        out,
                        "lb_origin_kernel_packets_total{{origin=\"{}\",kind=\"{kind}\"}} {n}",
                        escape(&o.id)
                    );
                }
                for (kind, n) in [
                    ("connect_established", s.connects_established),
                    ("connect_refused", s.connects_refused),
                    ("connect_unreachable", s.connects_unreachable),
                    ("connect_timed_out", s.connects_timed_out),
                    ("syn_retransmit", s.syn_retransmits),
                    ("retransmit", s.retransmits),
                    ("reset_established", s.resets_established),
                ] {
                    let _ = writeln!(
                        out,
                        "lb_origin_kernel_events_total{{origin=\"{}\",kind=\"{kind}\"}} {n}",
                        escape(&o.id)
                    );
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP lb_origin_response_seconds Time from sending a request to the origin's response head.\n# TYPE lb_origin_response_seconds histogram"
    );
    for (o, t) in config.origins.iter().zip(&totals) {
        let id = escape(&o.id);
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += t.latency[i];
            let _ = writeln!(
                out,
                "lb_origin_response_seconds_bucket{{origin=\"{id}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += t.latency[LATENCY_BUCKETS.len()];
        let _ = writeln!(
            out,
            "lb_origin_response_seconds_bucket{{origin=\"{id}\",le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "lb_origin_response_seconds_sum{{origin=\"{id}\"}} {}",
            t.latency_sum_secs
        );
        let _ = writeln!(
            out,
            "lb_origin_response_seconds_count{{origin=\"{id}\"}} {cumulative}"
        );
    }
    out
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
