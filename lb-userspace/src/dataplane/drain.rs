//! Per-worker drain signal: idle keep-alive connections wait on it so a shutdown closes
//! them at once, while busy ones finish their exchange and then see `is_draining`.
//! Single-threaded (Rc/Cell), so no locks. Each waiting connection owns one slot, freed
//! when its wait ends, so the registry never grows beyond the open connections.

use std::{
    cell::{Cell, RefCell},
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
};

#[derive(Default)]
pub(super) struct Drain {
    draining: Cell<bool>,
    slots: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

impl Drain {
    pub fn start(&self) {
        self.draining.set(true);
        for w in self.slots.borrow_mut().iter_mut().filter_map(Option::take) {
            w.wake();
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Resolves once draining has started.
    pub fn wait(&self) -> DrainWait<'_> {
        DrainWait {
            drain: self,
            slot: None,
        }
    }
}

pub(super) struct DrainWait<'a> {
    drain: &'a Drain,
    slot: Option<usize>,
}

impl Future for DrainWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.drain.draining.get() {
            return Poll::Ready(());
        }
        let waker = Some(cx.waker().clone());
        match self.slot {
            Some(i) => self.drain.slots.borrow_mut()[i] = waker,
            None => {
                let mut slots = self.drain.slots.borrow_mut();
                let i = match self.drain.free.borrow_mut().pop() {
                    Some(i) => {
                        slots[i] = waker;
                        i
                    }
                    None => {
                        slots.push(waker);
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
        assert!(w.as_mut().poll(&mut cx).is_ready());
        assert!(drain.is_draining());
    }
}
