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

use std::sync::Arc;

use serde_json::json;
use tokio::net::TcpListener;

use super::reload::Reloader;
use crate::{
    health::now_ms,
    kernel::{SignalsReport, SignalsView, monotonic_now_ns},
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
        ("GET", "/metrics") => (
            200,
            "text/plain; version=0.0.4",
            super::exposition::render(state),
        ),
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
