//! monoio does not catch panics in tasks: one would unwind through the worker's runtime
//! and take every connection on that core with it. Connection tasks run inside
//! [`Guarded`], so a panic (in lb or in a library on the request path) ends that one
//! connection, is logged, and the worker goes on.

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    task::{Context, Poll},
};

pub(super) struct Guarded<F> {
    inner: Pin<Box<F>>,
    what: &'static str,
}

impl<F: Future<Output = ()>> Guarded<F> {
    pub fn new(what: &'static str, inner: F) -> Self {
        Self {
            inner: Box::pin(inner),
            what,
        }
    }
}

impl<F: Future<Output = ()>> Future for Guarded<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // AssertUnwindSafe: after a panic the future is dropped, never polled again, so
        // no state it left half-updated is observed.
        match std::panic::catch_unwind(AssertUnwindSafe(|| this.inner.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(task = this.what, panic = %message, "task panicked; its connection is closed, the worker goes on");
                Poll::Ready(())
            }
        }
    }
}
