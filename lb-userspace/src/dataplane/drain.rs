//! Per-worker registry of waiting connections: idle keep-alive connections wait on it so
//! that a shutdown closes them at once, and so that their idle timeout costs no timer of
//! their own. A monoio timer is 640 bytes inside every future that holds one; an idle
//! connection here holds a slot of a few dozen bytes (its waker and deadline) instead, and one
//! sweeper per worker ([`Drain::expire`], run every [`Drain::sweep_interval`]) wakes those
//! past their deadline. Busy connections finish their exchange and then see
//! `is_draining`. Single-threaded (Rc/Cell), so no locks. Each waiting connection owns one
//! slot, freed when its wait ends, so the registry never grows beyond the open
//! connections.

use std::{
    cell::{Cell, RefCell},
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

#[derive(Default)]
pub(super) struct Drain {
    draining: Cell<bool>,
    slots: RefCell<Vec<Option<Slot>>>,
    free: RefCell<Vec<usize>>,
}

struct Slot {
    waker: Waker,
    /// None: no deadline (waits for the drain only).
    deadline: Option<Instant>,
    expired: bool,
}

/// Why a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WaitEnd {
    Draining,
    /// The deadline passed (seen by the sweeper, so up to one sweep interval late).
    Expired,
}

impl Drain {
    pub fn start(&self) {
        self.draining.set(true);
        for s in self
            .slots
            .borrow_mut()
            .iter_mut()
            .filter_map(Option::as_mut)
        {
            s.waker.wake_by_ref();
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Resolves once draining has started.
    pub fn wait(&self) -> DrainWait<'_> {
        self.wait_until(None)
    }

    /// Resolves once draining has started or `deadline` has passed.
    pub fn wait_until(&self, deadline: Option<Instant>) -> DrainWait<'_> {
        DrainWait {
            drain: self,
            slot: None,
            deadline,
        }
    }

    /// Wakes the waits whose deadline is before `now`.
    pub fn expire(&self, now: Instant) {
        for s in self
            .slots
            .borrow_mut()
            .iter_mut()
            .filter_map(Option::as_mut)
        {
            if !s.expired && s.deadline.is_some_and(|d| d <= now) {
                s.expired = true;
                s.waker.wake_by_ref();
            }
        }
    }

    /// How often the sweeper should run for deadlines `timeout` ahead: a quarter of it,
    /// between 50 ms and 1 s.
    pub fn sweep_interval(timeout: Duration) -> Duration {
        (timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

pub(super) struct DrainWait<'a> {
    drain: &'a Drain,
    slot: Option<usize>,
    deadline: Option<Instant>,
}

impl Future for DrainWait<'_> {
    type Output = WaitEnd;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<WaitEnd> {
        if self.drain.draining.get() {
            return Poll::Ready(WaitEnd::Draining);
        }
        let mut slots = self.drain.slots.borrow_mut();
        match self.slot {
            Some(i) => {
                let slot = slots[i].as_mut().expect("a registered wait owns its slot");
                if slot.expired {
                    return Poll::Ready(WaitEnd::Expired);
                }
                if !slot.waker.will_wake(cx.waker()) {
                    slot.waker = cx.waker().clone();
                }
            }
            None => {
                let slot = Some(Slot {
                    waker: cx.waker().clone(),
                    deadline: self.deadline,
                    expired: false,
                });
                let i = match self.drain.free.borrow_mut().pop() {
                    Some(i) => {
                        slots[i] = slot;
                        i
                    }
                    None => {
                        slots.push(slot);
                        slots.len() - 1
                    }
                };
                drop(slots);
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for DrainWait<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            self.drain.slots.borrow_mut()[i] = None;
            self.drain.free.borrow_mut().push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_and_start_wakes_waiters() {
        let drain = Drain::default();
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        for _ in 0..100 {
            let mut w = std::pin::pin!(drain.wait());
            assert!(w.as_mut().poll(&mut cx).is_pending());
            assert!(w.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(drain.slots.borrow().len(), 1, "one slot, reused");
        let mut w = std::pin::pin!(drain.wait());
        assert!(w.as_mut().poll(&mut cx).is_pending());
        drain.start();
        assert_eq!(w.as_mut().poll(&mut cx), Poll::Ready(WaitEnd::Draining));
        assert!(drain.is_draining());
    }

    #[test]
    fn deadlines_expire_when_swept() {
        let drain = Drain::default();
        let mut cx = Context::from_waker(Waker::noop());
        let now = Instant::now();
        let mut soon = std::pin::pin!(drain.wait_until(Some(now + Duration::from_millis(10))));
        let mut later = std::pin::pin!(drain.wait_until(Some(now + Duration::from_secs(60))));
        assert!(soon.as_mut().poll(&mut cx).is_pending());
        assert!(later.as_mut().poll(&mut cx).is_pending());
        drain.expire(now);
        assert!(soon.as_mut().poll(&mut cx).is_pending(), "not yet");
        drain.expire(now + Duration::from_millis(20));
        assert_eq!(soon.as_mut().poll(&mut cx), Poll::Ready(WaitEnd::Expired));
        assert!(later.as_mut().poll(&mut cx).is_pending());
    }
}
