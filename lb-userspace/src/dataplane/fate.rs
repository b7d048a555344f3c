//! The one decision about a client connection after lb writes a response: keep it for
//! the next request, close it, or abort it. Every response goes through here (proxied,
//! lb's own errors, custom error pages, redirects), so the rule is in one place:
//!
//! - a response that did not go out whole aborts the connection (the client sees a
//!   truncation, never a next response it could mistake for this one's end);
//! - a connection is kept only if the client wants it, lb is not draining, and the
//!   request body was consumed, or can be read and discarded within
//!   `limits.drain_body_max` bytes and `limits.lingering_timeout`; bytes of a body are
//!   never parsed as a request;
//! - a connection closed while the client may still be sending (an unread body,
//!   pipelined requests) gets a lingering close: lb shuts down its write side and reads
//!   and discards for a bounded time, so the client receives the response instead of a
//!   reset that would destroy it in the client's receive buffer.

use std::time::Instant;

use monoio::io::AsyncWriteRent;

use super::{client::ClientConn, conn::BufferedStream, worker::Worker};
use crate::http::{BodyFraming, ChunkedDecoder, ResponseConnection};

/// Where the current request's body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BodyState {
    /// No body, or every byte of it has been read.
    Consumed,
    /// Not touched yet: all of it still follows the head on the connection.
    Unread(BodyFraming),
    /// Partly read, or its framing broke: where the next request would start is unknown.
    Lost,
    /// lb will not read it (too large): the connection closes after the answer.
    Refused,
}

/// What the client connection does after an exchange.
pub(super) enum Next {
    KeepAlive,
    /// An orderly close (lingering when the client may still be sending; close_notify on
    /// TLS).
    Close,
    /// The response was cut short (its head is out) or the connection is broken: close
    /// at once, without close_notify, so a TLS client sees a truncation, not a clean end.
    Abort,
    /// 101 Switching Protocols went out: the connection becomes a tunnel to this origin
    /// connection (boxed: every connection's state has room for a `Next`).
    Upgrade(Box<BufferedStream>),
}

/// Whether the response lb is about to write may leave the connection open. Decided
/// before the head goes out, so the head's Connection field tells the truth.
pub(super) fn keep_alive_intent(worker: &Worker, conn: &ClientConn) -> bool {
    if !client_may_keep(worker, conn) {
        return false;
    }
    let limits = &worker.view().snap.config.limits;
    match conn.body {
        BodyState::Consumed => true,
        BodyState::Lost | BodyState::Refused => false,
        BodyState::Unread(_) if awaits_continue(conn) => false,
        BodyState::Unread(BodyFraming::ContentLength(n)) => n <= limits.drain_body_max,
        // Its size is unknown until read: see `settle_chunked_body`.
        BodyState::Unread(BodyFraming::Chunked) => false,
        BodyState::Unread(BodyFraming::None) => true,
    }
}

/// Before lb writes its own answer: an unread chunked body, whose size shows only while
/// it is read, is drained now (within the drain bounds), so the answer's Connection field
/// can say whether the connection stays. A Content-Length body is drained after the
/// answer instead.
pub(super) async fn settle_chunked_body(worker: &Worker, conn: &mut ClientConn) {
    if conn.body != BodyState::Unread(BodyFraming::Chunked)
        || !client_may_keep(worker, conn)
        || awaits_continue(conn)
    {
        return;
    }
    conn.body = if discard_body(worker, conn, BodyFraming::Chunked).await {
        BodyState::Consumed
    } else {
        BodyState::Lost
    };
}

/// The client wants its connection kept and lb is not draining.
fn client_may_keep(worker: &Worker, conn: &ClientConn) -> bool {
    conn.head.keep_alive && !worker.drain.is_draining()
}

/// A client told to wait for 100 Continue that never got it may or may not send its
/// body: nothing tells where its next request would start.
fn awaits_continue(conn: &ClientConn) -> bool {
    conn.head.expect_continue && !conn.continue_sent
}

/// The Connection field for a response written with `keep` as its intent.
pub(super) fn connection_field(conn: &ClientConn, keep: bool) -> ResponseConnection<'static> {
    match (keep, conn.head.is_http10()) {
        (false, _) => ResponseConnection::Close,
        (true, true) => ResponseConnection::KeepAlive,
        (true, false) => ResponseConnection::Default,
    }
}

/// Whether a response went out whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Written {
    Complete,
    /// A write failed or timed out, or the body was cut short.
    Broken,
}

/// After a response: what the connection does next, given the intent its head declared.
/// An unread body is drained here (bounded); one that cannot be drained closes the
/// connection.
pub(super) async fn conclude(
    worker: &Worker,
    conn: &mut ClientConn,
    keep: bool,
    written: Written,
) -> Next {
    if written == Written::Broken {
        return Next::Abort;
    }
    if !keep {
        return Next::Close;
    }
    match conn.body {
        BodyState::Consumed => Next::KeepAlive,
        BodyState::Lost | BodyState::Refused => Next::Close,
        BodyState::Unread(framing) => {
            if discard_body(worker, conn, framing).await {
                conn.body = BodyState::Consumed;
                Next::KeepAlive
            } else {
                conn.body = BodyState::Lost;
                Next::Close
            }
        }
    }
}

/// Reads and discards an unread request body within the drain bounds. true: the body
/// ended and the connection is positioned at the next request.
async fn discard_body(worker: &Worker, conn: &mut ClientConn, framing: BodyFraming) -> bool {
    let limits = &worker.view().snap.config.limits;
    let deadline = Instant::now() + limits.lingering_timeout;
    let max = limits.drain_body_max;
    let mut seen = 0u64;
    let mut chunked = ChunkedDecoder::new();
    let mut left = match framing {
        BodyFraming::ContentLength(n) if n > max => return false,
        BodyFraming::ContentLength(n) => n,
        BodyFraming::None => return true,
        BodyFraming::Chunked => u64::MAX,
    };
    loop {
        if conn.io.has_data() {
            let data = conn.io.data();
            let (used, done) = if framing == BodyFraming::Chunked {
                conn.scratch.clear();
                match chunked.decode(data, &mut conn.scratch) {
                    Ok(p) => (p.consumed, p.done),
                    Err(_) => return false,
                }
            } else {
                let take = (data.len() as u64).min(left) as usize;
                left -= take as u64;
                (take, left == 0)
            };
            conn.io.consume(used);
            seen += used as u64;
            if seen > max {
                return false;
            }
            if done {
                return true;
            }
        }
        match monoio::time::timeout_at(deadline.into(), conn.io.fill_from(&worker.buffers)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return false,
        }
    }
}

/// How long lb spends sending a TLS close_notify before simply closing.
const CLOSE_NOTIFY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(200);

/// Ends a connection after a complete response. When the client may still be sending (an
/// unread body, pipelined bytes), this is a lingering close: the write side is shut down
/// (with close_notify on TLS), then input is read and discarded until the client closes,
/// `limits.lingering_timeout` passes or `limits.lingering_max_bytes` arrive. Closing a
/// socket with unread input makes the kernel send a reset, which can destroy the response
/// before the client has read it.
pub(super) async fn close(worker: &Worker, io: &mut BufferedStream, body: BodyState) {
    if io.stream.is_h2() {
        // The stream ends; its connection and the client's other streams go on. An
        // unread request body is refused by the stream's reset (h2 sends it when the
        // stream is dropped with its body unread).
        let _ = io.stream.shutdown().await;
        return;
    }
    let may_send = body != BodyState::Consumed || io.has_data();
    if !may_send && !io.stream.is_tls() {
        return;
    }
    // close_notify (TLS) and FIN; bounded: the peer may be gone.
    if monoio::time::timeout(CLOSE_NOTIFY_TIMEOUT, io.stream.shutdown())
        .await
        .is_err()
        || !may_send
    {
        return;
    }
    let (timeout, max) = {
        let view = worker.view();
        let limits = &view.snap.config.limits;
        (limits.lingering_timeout, limits.lingering_max_bytes)
    };
    let deadline = Instant::now() + timeout;
    let mut discarded = 0u64;
    loop {
        let pending = io.data().len();
        io.consume(pending);
        discarded += pending as u64;
        if discarded > max {
            return;
        }
        match monoio::time::timeout_at(deadline.into(), io.fill_from(&worker.buffers)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
    }
}
