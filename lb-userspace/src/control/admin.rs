//! The admin API: a small HTTP/1.1 server on the control plane (loopback by default).
//! `GET /healthz` answers 200 while lb runs; `GET /metrics` is Prometheus text format.

use std::{fmt::Write as _, sync::Arc};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::{config::Config, metrics::Metrics};

pub(super) async fn serve(
    listener: std::net::TcpListener,
    metrics: Arc<Metrics>,
    config: Arc<Config>,
) {
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
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(handle(stream, Arc::clone(&metrics), Arc::clone(&config)));
    }
}

async fn handle(mut stream: TcpStream, metrics: Arc<Metrics>, config: Arc<Config>) {
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    let (method, path) = loop {
        let Ok(n) = stream.read(&mut buf[len..]).await else {
            return;
        };
        if n == 0 {
            return;
        }
        len += n;
        let mut slots = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut slots);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                break (
                    req.method.unwrap_or("").to_owned(),
                    req.path.unwrap_or("").to_owned(),
                );
            }
            Ok(httparse::Status::Partial) if len < buf.len() => continue,
            _ => {
                let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
                return;
            }
        }
    };
    let (status, content_type, body) = match (method.as_str(), path.as_str()) {
        ("GET", "/healthz") => (200, "text/plain", "ok\n".to_owned()),
        ("GET", "/metrics") => (
            200,
            "text/plain; version=0.0.4",
            render_metrics(&metrics, &config),
        ),
        _ => (404, "text/plain", "not found\n".to_owned()),
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        if status == 200 { "OK" } else { "Not Found" },
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
}

/// Prometheus text exposition (version 0.0.4).
fn render_metrics(metrics: &Metrics, config: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# HELP lb_requests_total Requests read from clients.");
    let _ = writeln!(out, "# TYPE lb_requests_total counter");
    let _ = writeln!(out, "lb_requests_total {}", metrics.requests());
    let _ = writeln!(
        out,
        "# HELP lb_responses_total Responses sent to clients, by status class."
    );
    let _ = writeln!(out, "# TYPE lb_responses_total counter");
    for (class, n) in metrics.responses() {
        let _ = writeln!(out, "lb_responses_total{{class=\"{class}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP lb_failovers_total Attempts that moved on to the next group member, by reason."
    );
    let _ = writeln!(out, "# TYPE lb_failovers_total counter");
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
        "# HELP lb_upstream_connections_opened_total Connections lb opened to origins."
    );
    let _ = writeln!(out, "# TYPE lb_upstream_connections_opened_total counter");
    let _ = writeln!(
        out,
        "lb_upstream_connections_opened_total {}",
        metrics.upstream_connections_opened()
    );
    let _ = writeln!(out, "# HELP lb_origins Origins in the running config.");
    let _ = writeln!(out, "# TYPE lb_origins gauge");
    let _ = writeln!(out, "lb_origins {}", config.origins.len());
    out
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
