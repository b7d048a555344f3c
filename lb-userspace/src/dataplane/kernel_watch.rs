//! Waking exchanges that wait on an origin when the kernel reports trouble with it.
//!
//! An exchange waiting for a connect, or for a response head, would otherwise wait out
//! its timeout (CloudFront's defaults: 3 × 10 s to connect, 30 s for the head) on an
//! origin that went silent. The kernel knows much sooner: it retransmits the SYN after
//! an initial RTO of 1 s, and a request segment after at most a few hundred ms. Its
//! socket events land in the mmap'd `ORIGIN_SIGNALS`; one ticker per worker reads the
//! stamps of the origins that have waiters (atomic loads, no syscall) every [`TICK`] and
//! wakes the waiters whose origin shows a new event. The ticker sleeps while nobody waits.

use std::{
    cell::{Cell, RefCell},
    future::Future,
    pin::Pin,
    rc::Rc,
    sync::Arc,
    task::{Context, Poll, Waker},
    time::Duration,
};

use crate::kernel::{SignalsView, monotonic_now_ns};

/// How often the stamps of waited-on origins are read. A black hole is seen at the first
/// SYN retransmit (1 s), so 10 ms adds 1% to that.
const TICK: Duration = Duration::from_millis(10);

/// What a waiter waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Trouble {
    /// A SYN to the origin retransmitted: nothing answers connects (a black hole).
    SynRetransmit,
    /// Any retransmission to the origin (a segment on an established connection, or a
    /// SYN): maybe this exchange's own connection stalled (the waiter checks with
    /// TCP_INFO), or the origin went silent for everyone (its health says so).
    Retransmit,
}

struct Waiter {
    slot: u32,
    since_ns: u64,
    trouble: Trouble,
    waker: Waker,
}

/// One worker's watch list. Only this worker's thread touches it.
pub(super) struct KernelWatch {
    view: Option<Arc<SignalsView>>,
    waiters: RefCell<Vec<Option<Waiter>>>,
    free: RefCell<Vec<usize>>,
    count: Cell<usize>,
    ticker: RefCell<Option<Waker>>,
}

impl KernelWatch {
    pub fn new(view: Option<Arc<SignalsView>>) -> Self {
        Self {
            view,
            waiters: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            count: Cell::new(0),
            ticker: RefCell::new(None),
        }
    }

    /// Whether the kernel can say anything (socket events loaded).
    pub fn active(&self) -> bool {
        self.view.is_some()
    }

    fn fired(&self, slot: u32, since_ns: u64, trouble: Trouble) -> bool {
        let Some(view) = &self.view else {
            return false;
        };
        let stamp = match trouble {
            Trouble::SynRetransmit => view.evidence(slot).syn_retransmit_ns,
            Trouble::Retransmit => view
                .retransmit_ns(slot)
                .max(view.evidence(slot).syn_retransmit_ns),
        };
        stamp > since_ns
    }

    /// Resolves once the kernel reports `trouble` with origin `slot` after `since_ns`
    /// (CLOCK_MONOTONIC). Never resolves without kernel signals.
    pub fn alarm(&self, slot: usize, since_ns: u64, trouble: Trouble) -> Alarm<'_> {
        Alarm {
            watch: self,
            slot: slot as u32,
            since_ns,
            trouble,
            key: None,
        }
    }

    /// The time to pass as `since_ns` for trouble from now on.
    pub fn now() -> u64 {
        monotonic_now_ns()
    }

    fn register(&self, waiter: Waiter) -> usize {
        let mut waiters = self.waiters.borrow_mut();
        let key = match self.free.borrow_mut().pop() {
            Some(k) => {
                waiters[k] = Some(waiter);
                k
            }
            None => {
                waiters.push(Some(waiter));
                waiters.len() - 1
            }
        };
        self.count.set(self.count.get() + 1);
        if let Some(ticker) = self.ticker.borrow_mut().take() {
            ticker.wake();
        }
        key
    }

    fn unregister(&self, key: usize) {
        if let Some(slot) = self.waiters.borrow_mut().get_mut(key)
            && slot.take().is_some()
        {
            self.free.borrow_mut().push(key);
            self.count.set(self.count.get() - 1);
        }
    }

    /// The worker's ticker: while anyone waits, reads the stamps every [`TICK`] and
    /// wakes the waiters whose trouble arrived.
    pub async fn run(self: Rc<Self>, stop: impl Fn() -> bool) {
        if self.view.is_none() {
            return;
        }
        while !stop() {
            if self.count.get() == 0 {
                // Park until the first waiter registers (or the drain's next check).
                let parked = std::future::poll_fn(|cx| {
                    if self.count.get() > 0 {
                        Poll::Ready(())
                    } else {
                        *self.ticker.borrow_mut() = Some(cx.waker().clone());
                        Poll::Pending
                    }
                });
                let _ = monoio::time::timeout(Duration::from_secs(1), parked).await;
                continue;
            }
            monoio::time::sleep(TICK).await;
            let waiters = self.waiters.borrow();
            for w in waiters.iter().flatten() {
                if self.fired(w.slot, w.since_ns, w.trouble) {
                    w.waker.wake_by_ref();
                }
            }
        }
    }
}

/// See [`KernelWatch::alarm`].
pub(super) struct Alarm<'a> {
    watch: &'a KernelWatch,
    slot: u32,
    since_ns: u64,
    trouble: Trouble,
    key: Option<usize>,
}

impl Alarm<'_> {
    /// Waits for the next report only (after a report that turned out to be about
    /// another connection).
    pub fn rearm(&mut self) {
        self.since_ns = monotonic_now_ns();
    }
}

impl Future for Alarm<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if !this.watch.active() {
            return Poll::Pending;
        }
        if this.watch.fired(this.slot, this.since_ns, this.trouble) {
            if let Some(key) = this.key.take() {
                this.watch.unregister(key);
            }
            return Poll::Ready(());
        }
        match this.key {
            Some(key) => {
                if let Some(Some(w)) = this.watch.waiters.borrow_mut().get_mut(key) {
                    w.since_ns = this.since_ns;
                    if !w.waker.will_wake(cx.waker()) {
                        w.waker = cx.waker().clone();
                    }
                }
            }
            None => {
                this.key = Some(this.watch.register(Waiter {
                    slot: this.slot,
                    since_ns: this.since_ns,
                    trouble: this.trouble,
                    waker: cx.waker().clone(),
                }));
            }
        }
        Poll::Pending
    }
}

impl Drop for Alarm<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.watch.unregister(key);
        }
    }
}
