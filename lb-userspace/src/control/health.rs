//! The control plane's half of the health engine: it runs each origin's active HTTP
//! checks (or, for origins without them, TCP connect probes while they are not healthy)
//! and evaluates every origin's state every `TICK`. Workers see the result through the
//! shared [`HealthTable`]. Checks of https-only origins run over TLS, verified like the
//! data plane's connections, so a bad certificate marks the origin down.

use std::{sync::Arc, time::Duration};

use rustls::{ClientConfig, pki_types::ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{
    config::HealthCheck,
    health::{Checks, HealthState, HealthTable, evaluate, now_ms},
    kernel::SignalsView,
    resolver::OriginAddresses,
    snapshot::Current,
};

/// How often states are re-evaluated. Request-path reactions (ejection, the kernel's
/// signal) do not wait for it; it decides recovery and what the admin API shows.
const TICK: Duration = Duration::from_millis(20);

pub(super) async fn run(current: Arc<Current>, kernel: Option<Arc<SignalsView>>) {
    let mut generation = u64::MAX;
    let mut checkers: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Generation first: a reload in between is seen again at the next tick.
        let seen = current.generation();
        let snap = current.load();
        if seen != generation {
            // A reload: the checkers follow the new origins.
            generation = seen;
            checkers.drain(..).for_each(|c| c.abort());
            for (index, origin) in snap.config.origins.iter().enumerate() {
                if origin.health_check.is_none() {
                    let settings = &snap.config.health;
                    checkers.push(tokio::spawn(tcp_prober(
                        Arc::clone(&snap.health),
                        Arc::clone(&snap.addresses),
                        index,
                        origin.port(origin.uses_tls(false)),
                        settings.tcp_probe_interval,
                        settings.tcp_probe_timeout.min(origin.connect_timeout),
                    )));
                }
                if let Some(check) = origin.health_check.clone() {
                    // match-viewer origins are checked over plain HTTP.
                    let tls = origin.uses_tls(false);
                    let client = if origin.http_version.is_h2() {
                        &snap.tls.origin_h2
                    } else {
                        &snap.tls.origin
                    };
                    let tls = match ServerName::try_from(origin.tls_server_name.clone()) {
                        Ok(name) if tls => Some((Arc::clone(client), name)),
                        Ok(_) => None,
                        Err(_) if !tls => None,
                        Err(_) => {
                            // Config loading validates names; never check an HTTPS origin
                            // over plain HTTP instead.
                            tracing::error!(origin = %origin.id, name = %origin.tls_server_name, "invalid TLS server name: no active checks");
                            continue;
                        }
                    };
                    let target = Target {
                        port: origin.port(tls.is_some()),
                        tls,
                        host: origin.own_request_host(),
                        path_prefix: origin.origin_path.clone(),
                        path: check.path.clone(),
                        custom_headers: origin.custom_headers.clone(),
                        http2: origin.http_version.is_h2(),
                    };
                    checkers.push(tokio::spawn(checker(
                        Arc::clone(&snap.health),
                        Arc::clone(&snap.addresses),
                        index,
                        check,
                        target,
                    )));
                }
            }
        }
        let now = now_ms();
        for (index, origin) in snap.config.origins.iter().enumerate() {
            let checks = Some(
                origin
                    .health_check
                    .as_ref()
                    .map_or(Checks::TcpConnect, Checks::Http),
            );
            if let Some((state, reason)) =
                evaluate(&snap.health, index, checks, kernel.as_deref(), now)
            {
                if state == HealthState::Down {
                    tracing::warn!(origin = %origin.id, state = state.as_str(), reason = reason.text(), "origin state changed");
                } else {
                    tracing::info!(origin = %origin.id, state = state.as_str(), reason = reason.text(), "origin state changed");
                }
            }
        }
    }
}

/// Where and how one origin is checked.
struct Target {
    port: u16,
    /// For HTTPS: the client config and the name the certificate must match.
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    host: String,
    /// The origin's path prefix, then the check's path.
    path_prefix: String,
    path: String,
    /// The origin's custom headers: an origin that requires one (`X-Origin-Verify`)
    /// would fail checks without it.
    custom_headers: Vec<(String, String)>,
    /// The origin speaks HTTP/2 (`protocol_version` h2 or h2c): checks do too.
    http2: bool,
}

/// What one check found.
enum Probe {
    /// A response head with this status.
    Status(u16),
    /// No valid response in time: a failed check.
    Failed,
    /// lb could not even open a socket (out of file descriptors): says nothing about
    /// the origin, so nothing is recorded.
    LocalShortage,
}

/// Checks one origin forever: faster while it is not healthy, with jitter so checks of
/// many origins do not line up.
async fn checker(
    table: Arc<HealthTable>,
    addresses: Arc<OriginAddresses>,
    index: usize,
    check: HealthCheck,
    target: Target,
) {
    let mut rng = (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ now_ms();
    loop {
        let base = if table.state(index) == HealthState::Healthy {
            check.interval
        } else {
            check.fast_interval
        };
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let spread = (rng % 2001) as f64 / 1000.0 - 1.0; // -1.0..=1.0
        tokio::time::sleep(base.mul_f64((1.0 + spread * check.jitter).max(0.05))).await;
        let Some(address) = addresses.first(index, target.port) else {
            // Nothing to check until the name resolves (the origin is down for DNS).
            continue;
        };
        let status = match tokio::time::timeout(check.timeout, probe(address, &target)).await {
            Ok(Probe::Status(status)) => status,
            Ok(Probe::Failed) | Err(_) => 0,
            Ok(Probe::LocalShortage) => {
                tracing::debug!(origin = index, "health check skipped: lb is out of sockets");
                continue;
            }
        };
        table.record_check(index, status == check.expected_status, status, now_ms());
    }
}

/// TCP connect probes of an origin without HTTP checks, while it is not healthy: a
/// connect that completes is a pass, anything else a failure. They give a down origin a
/// way back that no client request pays for, and keep a black-holed one down.
async fn tcp_prober(
    table: Arc<HealthTable>,
    addresses: Arc<OriginAddresses>,
    index: usize,
    port: u16,
    interval: std::time::Duration,
    timeout: std::time::Duration,
) {
    loop {
        tokio::time::sleep(interval).await;
        if table.state(index) == HealthState::Healthy {
            continue;
        }
        let Some(address) = addresses.first(index, port) else {
            continue;
        };
        let ok = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await
        {
            Ok(Ok(_)) => true,
            Ok(Err(e)) if crate::local_resource::LocalResource::classify(&e).is_some() => {
                tracing::debug!(origin = index, "TCP probe skipped: lb is out of sockets");
                continue;
            }
            Ok(Err(_)) | Err(_) => false,
        };
        table.record_check(index, ok, 0, now_ms());
    }
}

/// One `GET path` on a fresh connection (TLS-verified for HTTPS origins); the status, or
/// `None` if there was no valid response head.
async fn probe(addr: std::net::SocketAddr, target: &Target) -> Probe {
    let tcp = match tokio::net::TcpStream::connect(addr).await {
        Ok(tcp) => tcp,
        Err(e) if crate::local_resource::LocalResource::classify(&e).is_some() => {
            return Probe::LocalShortage;
        }
        Err(_) => return Probe::Failed,
    };
    let _ = tcp.set_nodelay(true);
    let status = match &target.tls {
        None if target.http2 => exchange_h2(tcp, target, "http").await,
        None => exchange(tcp, target).await,
        Some((config, name)) => {
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
            match connector.connect(name.clone(), tcp).await {
                // The config offers only h2 by ALPN for HTTP/2 origins.
                Ok(stream) if target.http2 => {
                    if stream.get_ref().1.alpn_protocol() != Some(crate::tls::H2) {
                        return Probe::Failed;
                    }
                    exchange_h2(stream, target, "https").await
                }
                Ok(stream) => exchange(stream, target).await,
                Err(_) => None,
            }
        }
    };
    status.map_or(Probe::Failed, Probe::Status)
}

/// The check over HTTP/2 (the h2 crate on the control plane's tokio runtime): one
/// stream, the response's status.
async fn exchange_h2<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    target: &Target,
    scheme: &str,
) -> Option<u16> {
    let (send, connection) = h2::client::handshake(stream).await.ok()?;
    // The connection's I/O runs beside the request; it ends when both are dropped.
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let result = async {
        let mut send = send.ready().await.ok()?;
        let mut request = http::Request::get(format!(
            "{scheme}://{}{}{}",
            target.host, target.path_prefix, target.path
        ))
        .header("user-agent", "lb-health-check");
        for (name, value) in &target.custom_headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let (response, _) = send.send_request(request.body(()).ok()?, true).ok()?;
        Some(response.await.ok()?.status().as_u16())
    }
    .await;
    driver.abort();
    result
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    target: &Target,
) -> Option<u16> {
    let mut request = Vec::with_capacity(256);
    crate::http::HeaderRewrite::lb_request(
        &mut request,
        &target.path_prefix,
        &target.path,
        &target.host,
        &target.custom_headers,
        "lb-health-check",
    );
    stream.write_all(&request).await.ok()?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut slots = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut slots);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => return resp.code,
            Ok(httparse::Status::Partial) if buf.len() < 16 * 1024 => {}
            _ => return None,
        }
    }
}
