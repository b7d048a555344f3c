//! The control plane's half of the health engine: it runs each origin's active HTTP
//! checks and evaluates every origin's state every `TICK`. Workers see the result through
//! the shared [`HealthTable`].

use std::{sync::Arc, time::Duration};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    config::HealthCheck,
    health::{HealthState, HealthTable, evaluate, now_ms},
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
        let snap = current.load();
        if current.generation() != generation {
            // A reload: the checkers follow the new origins.
            generation = current.generation();
            checkers.drain(..).for_each(|c| c.abort());
            for (index, origin) in snap.config.origins.iter().enumerate() {
                if let Some(check) = origin.health_check.clone() {
                    checkers.push(tokio::spawn(checker(
                        Arc::clone(&snap.health),
                        Arc::clone(&snap.addresses),
                        index,
                        check,
                        origin
                            .host
                            .clone()
                            .unwrap_or_else(|| origin.address.to_string()),
                        origin.origin_path.clone(),
                    )));
                }
            }
        }
        let now = now_ms();
        for (index, origin) in snap.config.origins.iter().enumerate() {
            if let Some((state, reason)) = evaluate(
                &snap.health,
                index,
                origin.health_check.as_ref(),
                kernel.as_deref(),
                now,
            ) {
                if state == HealthState::Down {
                    tracing::warn!(origin = %origin.id, state = state.as_str(), reason = reason.text(), "origin state changed");
                } else {
                    tracing::info!(origin = %origin.id, state = state.as_str(), reason = reason.text(), "origin state changed");
                }
            }
        }
    }
}

/// Checks one origin forever: faster while it is not healthy, with jitter so checks of
/// many origins do not line up.
async fn checker(
    table: Arc<HealthTable>,
    addresses: Arc<OriginAddresses>,
    index: usize,
    check: HealthCheck,
    host: String,
    origin_path: String,
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
        let target = format!("{origin_path}{}", check.path);
        let status =
            tokio::time::timeout(check.timeout, probe(addresses.get(index), &host, &target))
                .await
                .ok()
                .flatten()
                .unwrap_or(0);
        table.record_check(index, status == check.expected_status, status, now_ms());
    }
}

/// One `GET path` on a fresh connection; the status, or `None` if there was no valid
/// response head.
async fn probe(addr: std::net::SocketAddr, host: &str, path: &str) -> Option<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: lb-health-check\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.ok()?;
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
