//! HTTP/2 viewer connections: ALPN `h2` on the HTTPS listener, and prior knowledge
//! (the connection preface) on the plain one. The protocol is the `h2` crate's, driven
//! on this worker's monoio runtime through tokio's I/O traits (monoio-compat's
//! [`StreamWrapper`](monoio_compat::StreamWrapper)); no tokio runtime, task or timer is
//! involved: `h2` needs none.
//!
//! The connection's task polls the connection (which does all of its I/O) and accepts
//! streams; each stream gets a task of its own that runs the ordinary exchange on it
//! ([`super::h2_stream`]). The limits of `[http2]` are the connection's SETTINGS and
//! `h2`'s defences (rapid reset, MadeYouReset, CONTINUATION floods, header list size);
//! the connection preface must arrive within `limits.header_timeout`, a connection with
//! no stream for `limits.idle_timeout` is closed with GOAWAY, and a drain (shutdown)
//! sends GOAWAY at once and lets the streams in flight finish. A reload that changes
//! `[http2]` sends GOAWAY at the connection's next stream or wake-up (each stream already
//! runs on the config in force when it starts).

use std::{
    cell::Cell,
    net::SocketAddr,
    os::fd::RawFd,
    rc::Rc,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use bytes::Bytes;
use h2::{Reason, server::SendResponse};
use http::Response;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{
    client::serve_h2_stream,
    h2_stream::{H2Stream, Malformed},
    stream::Stream,
    worker::Worker,
};
use crate::config::Http2Settings;

/// The client connection preface (RFC 9113 §3.4): how a prior-knowledge client starts.
pub(super) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What an HTTP/2 connection needs to know about where it came from.
pub(super) struct Viewer {
    pub peer: SocketAddr,
    /// Over TLS (ALPN h2), not cleartext.
    pub tls: bool,
    /// The TCP socket underneath.
    pub fd: RawFd,
}

/// Serves an HTTP/2 connection (counted as open by whoever accepted it) until it ends.
pub(super) async fn serve_h2<IO>(worker: Rc<Worker>, io: Prefixed<IO>, from: Viewer)
where
    IO: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let read = Rc::clone(&io.read);
    let _active = worker.adopt_connection();
    let (settings, header_timeout, drain_timeout) = {
        let view = worker.view();
        view.metrics()
            .h2_connections
            .fetch_add(1, Ordering::Relaxed);
        let config = &view.snap.config;
        (
            config.http2.clone(),
            config.limits.header_timeout,
            config.listener.drain_timeout,
        )
    };
    let handshake = builder(&settings).handshake::<_, Bytes>(io);
    let mut conn = match monoio::time::timeout(header_timeout, handshake).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            record_error(&worker, &e);
            tracing::debug!(peer = %from.peer, error = %e, "HTTP/2 handshake failed");
            return;
        }
        Err(_elapsed) => {
            worker.view().metrics().h2_error(HANDSHAKE_TIMEOUT);
            tracing::debug!(peer = %from.peer, "HTTP/2 preface timed out");
            return;
        }
    };
    let streams = Rc::new(Streams {
        live: Cell::new(0),
        last_end: Cell::new(Instant::now()),
    });
    let mut closing: Option<Instant> = None;
    // The client's SETTINGS (the second half of its preface, RFC 9113 §3.4) are due
    // within the header timeout too; h2 does not wait for them in its handshake.
    let mut settings_due = Some(Instant::now() + header_timeout);
    loop {
        let now = Instant::now();
        if let Some(due) = settings_due {
            if read.get() >= SETTINGS_SEEN {
                settings_due = None;
            } else if now >= due {
                worker.view().metrics().h2_error(HANDSHAKE_TIMEOUT);
                tracing::debug!(peer = %from.peer, "HTTP/2 SETTINGS timed out");
                conn.abrupt_shutdown(Reason::SETTINGS_TIMEOUT);
                // Sends the GOAWAY; bounded, the client may not read.
                let _ = monoio::time::timeout(Duration::from_secs(1), conn.accept()).await;
                return;
            }
        }
        let (idle_timeout, settings_changed) = {
            let view = worker.view();
            let config = &view.snap.config;
            (config.limits.idle_timeout, config.http2 != settings)
        };
        if settings_changed && closing.is_none() {
            // A reload changed the [http2] limits: this connection's SETTINGS are the old
            // ones. GOAWAY: the client opens a new connection (with the new ones) for its
            // next requests; the streams in flight finish.
            conn.graceful_shutdown();
            closing = Some(Instant::now() + drain_timeout);
        }
        // Woken to look again: at the idle deadline, or every idle_timeout while
        // streams run (the last may end meanwhile), or when a drain starts.
        let mut wake = if streams.live.get() == 0 {
            (streams.last_end.get() + idle_timeout).max(now)
        } else {
            now + idle_timeout
        };
        if let Some(due) = settings_due {
            wake = wake.min(due);
        }
        let next = match closing {
            Some(deadline) => {
                match monoio::time::timeout_at(deadline.into(), conn.accept()).await {
                    Ok(next) => next,
                    Err(_elapsed) => {
                        tracing::debug!(peer = %from.peer, "HTTP/2 drain timed out");
                        break;
                    }
                }
            }
            None => {
                monoio::select! {
                    next = conn.accept() => next,
                    _ = worker.drain.wait_until(Some(wake)) => {
                        let idle = streams.live.get() == 0
                            && streams.last_end.get() + idle_timeout <= Instant::now();
                        if worker.drain.is_draining() {
                            // GOAWAY: no new streams; those in flight finish.
                            conn.graceful_shutdown();
                            closing = Some(Instant::now() + drain_timeout);
                        } else if idle {
                            // Nothing in flight: GOAWAY (a stream the client opens
                            // meanwhile is refused, so it may retry it) and close now.
                            conn.abrupt_shutdown(Reason::NO_ERROR);
                            closing = Some(Instant::now() + Duration::from_secs(1));
                        }
                        continue;
                    }
                }
            }
        };
        match next {
            Some(Ok((request, respond))) => {
                worker
                    .view()
                    .metrics()
                    .h2_streams
                    .fetch_add(1, Ordering::Relaxed);
                streams.live.set(streams.live.get() + 1);
                let stream = H2Stream::new(request, respond, from.tls, from.fd);
                // Each stream in a task of its own, under the panic guard like any
                // connection.
                monoio::spawn(super::task_guard::Guarded::new(
                    "http2 stream",
                    serve_stream(Rc::clone(&worker), stream, from.peer, Rc::clone(&streams)),
                ));
            }
            Some(Err(e)) => {
                record_error(&worker, &e);
                tracing::debug!(peer = %from.peer, error = %e, "HTTP/2 connection ended");
                break;
            }
            None => {
                tracing::debug!(peer = %from.peer, "HTTP/2 connection closed");
                break;
            }
        }
    }
}

/// A viewer's HTTP/2 connection as `h2` reads it: the bytes read already (to see the
/// preface on a plain connection) come first, and the bytes read are counted, which is
/// how lb knows the client's SETTINGS arrived (h2 does not say).
pub(super) struct Prefixed<IO> {
    prefix: Vec<u8>,
    at: usize,
    io: IO,
    read: Rc<Cell<u64>>,
}

impl<IO> Prefixed<IO> {
    pub fn new(prefix: Vec<u8>, io: IO) -> Self {
        Self {
            prefix,
            at: 0,
            io,
            read: Rc::new(Cell::new(0)),
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.at);
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            this.read.set(this.read.get() + n as u64);
            return std::task::Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut this.io).poll_read(cx, buf);
        this.read
            .set(this.read.get() + (buf.filled().len() - before) as u64);
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The streams of one connection: how many run, and when the last one ended.
struct Streams {
    live: Cell<usize>,
    last_end: Cell<Instant>,
}

/// Runs one stream's exchange (or answers a malformed one).
async fn serve_stream(
    worker: Rc<Worker>,
    stream: Result<H2Stream, (Malformed, SendResponse<Bytes>)>,
    peer: SocketAddr,
    streams: Rc<Streams>,
) {
    // Counted out however the task ends (a panic included).
    let _live = Live(streams);
    match stream {
        Ok(mut stream) => {
            let limit = worker.view().snap.config.failover.replay_body_limit;
            stream.take_whole_body(limit).await;
            serve_h2_stream(&worker, Stream::H2(Box::new(stream)), peer).await
        }
        Err((Malformed(reason), respond)) => refuse(respond, reason),
    }
}

/// One running stream of a connection; its end is recorded when this drops.
struct Live(Rc<Streams>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.live.set(self.0.live.get() - 1);
        self.0.last_end.set(Instant::now());
    }
}

/// 400 for a request HTTP/1.1 could not carry either (RFC 9113 §8.1.1: malformed).
fn refuse(mut respond: SendResponse<Bytes>, reason: &'static str) {
    let body = Bytes::from(format!("400 Bad Request: {reason}\n"));
    let response = Response::builder()
        .status(400)
        .header("content-type", "text/plain; charset=utf-8")
        .header("content-length", body.len())
        .body(())
        .expect("a static response is valid");
    if let Ok(mut send) = respond.send_response(response, false) {
        let _ = send.send_data(body, true);
    }
}

fn builder(s: &Http2Settings) -> h2::server::Builder {
    let mut b = h2::server::Builder::new();
    b.max_concurrent_streams(s.max_concurrent_streams)
        .max_header_list_size(s.max_header_list_size)
        .initial_window_size(s.stream_window)
        .initial_connection_window_size(s.connection_window)
        .max_frame_size(s.max_frame_size)
        .max_send_buffer_size(s.max_send_buffer)
        .max_concurrent_reset_streams(s.max_concurrent_reset_streams)
        .max_pending_accept_reset_streams(s.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(Some(s.max_local_error_reset_streams))
        .reset_stream_duration(Duration::from_secs(10));
    b
}

/// Bytes read once the client's first frame header has arrived after its 24-byte magic
/// (h2 refuses a first frame that is not SETTINGS).
const SETTINGS_SEEN: u64 = PREFACE.len() as u64 + 9;

/// Index of `handshake_timeout` in [`crate::metrics::H2_ERROR_LABELS`].
const HANDSHAKE_TIMEOUT: usize = 5;

/// Counts a connection lb ended for the client's error (not the client's own GOAWAY,
/// and not a vanished socket).
fn record_error(worker: &Worker, e: &h2::Error) {
    if e.is_io() || e.is_remote() {
        return;
    }
    let Some(reason) = e.reason() else {
        return;
    };
    let index = match reason {
        Reason::NO_ERROR => return,
        Reason::PROTOCOL_ERROR => 0,
        Reason::FLOW_CONTROL_ERROR => 1,
        Reason::FRAME_SIZE_ERROR => 2,
        Reason::COMPRESSION_ERROR => 3,
        Reason::ENHANCE_YOUR_CALM => 4,
        _ => 6,
    };
    worker.view().metrics().h2_error(index);
}
