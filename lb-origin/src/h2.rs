//! The origin over HTTP/2 (cleartext with prior knowledge, or TLS with ALPN `h2`), for
//! lb's tests of HTTP/2 origins: the same paths and query parameters as HTTP/1.1, each
//! stream answered by its own task. Faults act on the stream: `reset` answers with
//! RST_STREAM(INTERNAL_ERROR), `close` and `fail=refuse` with RST_STREAM(REFUSED_STREAM)
//! (the stream was not processed), `hang` never answers; `fail=goaway` sends a GOAWAY
//! that refuses the stream. `trailers=1` ends the body with trailers; `/trailers`
//! answers with the request's trailer fields.

use std::{sync::Arc, sync::atomic::Ordering, time::Duration};

use bytes::Bytes;
use h2::{Reason, RecvStream, server::SendResponse};
use http::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{PATTERN, Shared};

pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    shared: Arc<Shared>,
) {
    let Ok(mut conn) = h2::server::Builder::new()
        .max_concurrent_streams(1000)
        .handshake::<_, Bytes>(stream)
        .await
    else {
        return;
    };
    if shared.forced_fault.load(Ordering::Relaxed) == crate::Fault::GoAway as u8 {
        // Going away before any stream: every stream of this connection is refused.
        conn.abrupt_shutdown(Reason::NO_ERROR);
        while conn.accept().await.is_some() {}
        return;
    }
    while let Some(next) = conn.accept().await {
        let Ok((request, respond)) = next else {
            return;
        };
        shared.requests.fetch_add(1, Ordering::Relaxed);
        let param =
            |k: &str| query_param(request.uri().query().unwrap_or(""), k).map(str::to_owned);
        if param("fail").as_deref() == Some("goaway") {
            // Streams up to this one are processed; this and later ones are refused.
            conn.graceful_shutdown();
            drop((request, respond));
            continue;
        }
        tokio::spawn(answer(request, respond, Arc::clone(&shared)));
    }
}

fn query_param<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then_some(v)
    })
}

async fn answer(
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    shared: Arc<Shared>,
) {
    let (parts, mut body) = request.into_parts();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let param = |k: &str| query_param(&query, k);
    let path = parts.uri.path().to_owned();
    let ordinary = path != "/health" && !path.starts_with("/_control");
    let forced_delay = shared.forced_delay_ms.load(Ordering::Relaxed);
    let delay = param("delay_ms")
        .and_then(|v| v.parse().ok())
        .or((ordinary && forced_delay > 0).then_some(forced_delay));
    // The request body, whole (echo) or counted.
    let mut received = Vec::new();
    let mut count = 0u64;
    while let Some(Ok(chunk)) = body.data().await {
        count += chunk.len() as u64;
        let _ = body.flow_control().release_capacity(chunk.len());
        if path.ends_with("/echo") {
            received.extend_from_slice(&chunk);
        }
    }
    let request_trailers = body.trailers().await.ok().flatten();
    shared.completed.fetch_add(1, Ordering::Relaxed);
    if let Some(ms) = delay {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let forced_fault = match shared.forced_fault.load(Ordering::Relaxed) {
        1 if ordinary => Some("reset"),
        2 if ordinary => Some("close"),
        3 if ordinary => Some("hang"),
        _ => None,
    };
    match param("fail").or(forced_fault) {
        Some("reset") => return respond.send_reset(Reason::INTERNAL_ERROR),
        Some("close") | Some("refuse") => return respond.send_reset(Reason::REFUSED_STREAM),
        Some("hang") => {
            // Until the client resets the stream.
            let _ = std::future::poll_fn(|cx| respond.poll_reset(cx)).await;
            return;
        }
        _ => {}
    }
    let forced = shared.forced_status.load(Ordering::Relaxed);
    let status = if path == "/health" {
        shared.health_status.load(Ordering::Relaxed)
    } else if ordinary && forced != 0 {
        forced
    } else {
        param("status").and_then(|s| s.parse().ok()).unwrap_or(200)
    };
    let payload: Bytes = if path.ends_with("/echo") {
        received.into()
    } else if path.ends_with("/trailers") {
        // The request's trailer fields, a line each.
        let mut text = String::new();
        for (name, value) in request_trailers.iter().flatten() {
            text.push_str(&format!(
                "{name}: {}\n",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        text.into()
    } else if path.ends_with("/count") {
        format!("received {count} bytes\n").into()
    } else if path.ends_with("/headers") {
        let mut text = format!("{} {} HTTP/2\r\n", parts.method, parts.uri);
        for (name, value) in &parts.headers {
            text.push_str(&format!(
                "{name}: {}\r\n",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        text.into()
    } else if let Some(size) = param("size").and_then(|s| s.parse::<usize>().ok()) {
        let mut b = Vec::with_capacity(size);
        while b.len() < size {
            let n = (size - b.len()).min(PATTERN.len());
            b.extend_from_slice(&PATTERN[..n]);
        }
        b.into()
    } else {
        format!("{} {} {}\n", shared.name, parts.method, path).into()
    };
    let trailers = param("trailers") == Some("1");
    let chunked = param("chunked") == Some("1") || trailers;
    let mut response = Response::builder()
        .status(status)
        .header("x-origin", shared.name.as_str())
        .header("content-type", "text/plain")
        .header(
            "x-served",
            shared.requests.load(Ordering::Relaxed).to_string(),
        );
    if !chunked {
        response = response.header("content-length", payload.len());
    }
    let Ok(response) = response.body(()) else {
        return;
    };
    let head_only = parts.method == http::Method::HEAD || payload.is_empty() && !trailers;
    let Ok(mut send) = respond.send_response(response, head_only) else {
        return;
    };
    if head_only {
        return;
    }
    let mut rest = payload;
    while !rest.is_empty() {
        send.reserve_capacity(rest.len());
        let Some(Ok(n)) = std::future::poll_fn(|cx| send.poll_capacity(cx)).await else {
            return;
        };
        let n = n.min(rest.len());
        if n == 0 {
            continue;
        }
        let piece = rest.split_to(n);
        let last = rest.is_empty() && !trailers;
        if send.send_data(piece, last).is_err() {
            return;
        }
    }
    if trailers {
        let mut map = http::HeaderMap::new();
        map.insert("x-trailer", http::HeaderValue::from_static("end"));
        let _ = send.send_trailers(map);
    }
}
