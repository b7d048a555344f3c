//! Waiting for a response head while the kernel watches the connection, and hedging a
//! stalled one.
//!
//! While an exchange waits for its head, the worker's [`KernelWatch`] wakes it if the
//! kernel retransmits anything to that origin. The exchange then asks `TCP_INFO` about
//! its own connection: a retransmission timeout with request bytes unacknowledged means
//! the origin (or the path to it) went silent. Every worker then avoids that origin
//! ([`HealthTable::record_stall`](crate::health::HealthTable::record_stall)). A request
//! the origin did acknowledge is treated the same once the kernel's evidence from other
//! connections stands against the origin (their stall, a SYN without answer). A
//! GET/HEAD/OPTIONS whose body can be replayed is then *hedged*: the same request goes to
//! the next member while the stalled attempt keeps waiting, and the first final head
//! wins; the other attempt is dropped (its connection closed). A request that cannot be
//! hedged keeps waiting for its own answer, up to the response timeout: a stall is no
//! reason to give up on a request that may not be repeated.

use std::{os::fd::AsRawFd, pin::pin, time::Instant};

use super::{
    conn::{BufferedStream, write_all},
    kernel_watch::{KernelWatch, Trouble},
    upstream::{RequestProgress, UpstreamError, UpstreamErrorKind, connect},
    worker::{View, Worker},
};
use crate::{
    http::{MAX_HEADERS, parse_response_head},
    kernel::tcp_progress,
};

/// How a wait for a response head ended.
pub(super) enum HeadWait {
    /// A complete head is in the stream's buffer: its status and length.
    Own { status: u16, head_len: usize },
    /// The hedge answered first: its connection, holding a final head, and its status.
    Hedged {
        index: usize,
        origin: BufferedStream,
        status: u16,
    },
}

/// The member a stalled attempt may be hedged to, and how to build its request.
pub(super) struct HedgeTarget<'a> {
    pub index: usize,
    /// Builds the request for a member: its head (its custom headers, its origin path)
    /// and the replayable body.
    pub request: &'a dyn Fn(usize) -> Vec<u8>,
    /// Whether that member is reached over TLS.
    pub tls: bool,
}

/// Waits until `up` holds a complete response head. With kernel signals, a confirmed
/// stall of `up`'s connection is recorded against origin `index` and, given a `hedge`
/// target, raced against the same request on that member.
#[allow(clippy::too_many_arguments)]
pub(super) async fn wait_head(
    worker: &Worker,
    view: &View,
    up: &mut BufferedStream,
    index: usize,
    deadline: Instant,
    max_head: usize,
    since_ns: u64,
    hedge: Option<HedgeTarget<'_>>,
) -> Result<HeadWait, UpstreamErrorKind> {
    let watching = worker.kernel_watch.active() && view.snap.config.health.use_kernel_signals;
    let fd = up.stream.as_raw_fd();
    let mut own = pin!(read_response_head(up, deadline, max_head));
    if !watching {
        return own
            .await
            .map(|(status, head_len)| HeadWait::Own { status, head_len });
    }
    let mut alarm = worker
        .kernel_watch
        .alarm(index, since_ns, Trouble::Retransmit);
    loop {
        monoio::select! {
            biased;
            head = &mut own => {
                return head.map(|(status, head_len)| HeadWait::Own { status, head_len });
            }
            () = &mut alarm => {
                if tcp_progress(fd).is_some_and(|p| p.stalled()) {
                    view.snap.health.record_stall(index);
                    tracing::debug!(origin = %view.snap.config.origins[index].id, "connection stalled: request unacknowledged after a retransmission timeout");
                    break;
                }
                // The origin acknowledged this request, but other connections show it
                // went silent since (a stall, a SYN without answer): the answer to this
                // one may never come either.
                if view.snap.health.kernel_verdict(index, worker.kernel.as_deref()).is_some() {
                    break;
                }
                // Another connection's loss probe or fast retransmit: keep waiting.
                alarm.rearm();
            }
        }
    }
    let Some(target) = hedge else {
        return own
            .await
            .map(|(status, head_len)| HeadWait::Own { status, head_len });
    };
    let request = (target.request)(target.index);
    let mut other = pin!(hedge_attempt(
        worker,
        view,
        target.index,
        request,
        target.tls
    ));
    monoio::select! {
        biased;
        head = &mut own => head.map(|(status, head_len)| HeadWait::Own { status, head_len }),
        answer = &mut other => match answer {
            Ok((origin, status)) => Ok(HeadWait::Hedged { index: target.index, origin, status }),
            // The hedge failed: the stalled attempt is all that is left.
            Err(e) => {
                if e.source() == super::upstream::ErrorSource::Origin {
                    view.snap.health.record_failure(target.index, crate::health::now_ms());
                }
                own.await.map(|(status, head_len)| HeadWait::Own { status, head_len })
            }
        },
    }
}

/// The hedge: `request` to member `index` on a pooled or fresh connection, then the wait
/// for a final head. Interim (1xx) heads are skipped: the client never sees them from a
/// hedge.
async fn hedge_attempt(
    worker: &Worker,
    view: &View,
    index: usize,
    mut request: Vec<u8>,
    tls: bool,
) -> Result<(BufferedStream, u16), UpstreamError> {
    let origin = &view.snap.config.origins[index];
    let sent = |kind| UpstreamError::new(kind, RequestProgress::Sent);
    let pooled = worker.pool.borrow_mut().checkout(
        index,
        tls,
        origin.keepalive_timeout,
        view.snap.addresses.epoch(index),
    );
    let stream = match pooled {
        Some(s) => s,
        None => {
            let tls_config = tls.then_some(&view.snap.tls.origin);
            connect(origin, &view.snap.addresses, index, tls_config).await?
        }
    };
    let mut up = BufferedStream::with_buffer(stream, worker.buffers.take());
    match monoio::time::timeout(
        view.snap.config.limits.body_timeout,
        write_all(&mut up.stream, &mut request),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(sent(UpstreamErrorKind::WriteFailed(e.kind()))),
        Err(_) => return Err(sent(UpstreamErrorKind::WriteTimeout)),
    }
    let deadline = Instant::now() + origin.response_timeout;
    let max_head = view.snap.config.limits.max_response_head;
    loop {
        let (status, head_len) = read_response_head(&mut up, deadline, max_head)
            .await
            .map_err(sent)?;
        if !(100..200).contains(&status) || status == 101 {
            return Ok((up, status));
        }
        up.consume(head_len);
    }
}

/// Reads until `up` holds a complete, valid response head (not consumed); returns its
/// status and length.
pub(super) async fn read_response_head(
    up: &mut BufferedStream,
    deadline: Instant,
    max_head: usize,
) -> Result<(u16, usize), UpstreamErrorKind> {
    loop {
        if up.has_data() {
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match parse_response_head(up.data(), max_head, &mut slots, false) {
                Ok(Some(r)) => return Ok((r.status, r.head_len)),
                Ok(None) => {}
                Err(e) => {
                    return Err(UpstreamErrorKind::MalformedResponse(match e {
                        crate::http::ResponseHeadError::Malformed(why) => why,
                        crate::http::ResponseHeadError::TooLarge(_) => "response head too large",
                    }));
                }
            }
        }
        match monoio::time::timeout_at(deadline.into(), up.fill()).await {
            Err(_) => return Err(UpstreamErrorKind::ResponseTimeout),
            Ok(Ok(0)) | Ok(Err(_)) if !up.has_data() => {
                return Err(UpstreamErrorKind::ClosedBeforeResponse);
            }
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Err(UpstreamErrorKind::MalformedResponse(
                    "connection closed inside the response head",
                ));
            }
            Ok(Ok(_)) => {}
        }
    }
}

/// Whether `KernelWatch` can act for this view (kernel signals loaded and in use).
pub(super) fn watching(worker: &Worker, view: &View) -> bool {
    worker.kernel_watch.active() && view.snap.config.health.use_kernel_signals
}

/// The time from which kernel trouble counts for a wait starting now.
pub(super) fn now_ns() -> u64 {
    KernelWatch::now()
}
