//! The health view the failover loop consults until the health engine exists: per worker
//! (no locks), an origin is skipped while it is ejected after consecutive failed attempts,
//! or while the kernel shows its port closed (a run of RSTs newer than its last SYN-ACK).
//! Reads are plain loads; the kernel part is the mmap'd `ORIGIN_SIGNALS`.

use std::{
    cell::Cell,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::kernel::{SignalsView, monotonic_now_ns};

/// Consecutive failed attempts that eject an origin.
const EJECT_AFTER: u32 = 3;
/// How long an ejection lasts; a request after it probes the origin again.
const EJECT_FOR: Duration = Duration::from_secs(2);
/// RSTs in a row (no SYN-ACK since) that mean nothing listens on the origin's port.
const KERNEL_RST_RUN: u64 = 2;
/// Kernel evidence older than this is ignored.
const KERNEL_FRESH_NS: u64 = 2_000_000_000;

#[derive(Default)]
struct OriginState {
    consecutive_failures: Cell<u32>,
    ejected_until: Cell<Option<Instant>>,
}

pub(super) struct PassiveHealth {
    origins: Vec<OriginState>,
    kernel: Option<Arc<SignalsView>>,
}

impl PassiveHealth {
    pub fn new(origins: usize, kernel: Option<Arc<SignalsView>>) -> Self {
        Self {
            origins: (0..origins).map(|_| OriginState::default()).collect(),
            kernel,
        }
    }

    /// Whether origin `index` should be skipped for now.
    pub fn is_down(&self, index: usize, now: Instant) -> bool {
        let Some(state) = self.origins.get(index) else {
            return false;
        };
        if state.ejected_until.get().is_some_and(|until| now < until) {
            return true;
        }
        self.kernel_says_closed(index)
    }

    fn kernel_says_closed(&self, index: usize) -> bool {
        let Some(view) = &self.kernel else {
            return false;
        };
        let Some(s) = view.get(index as u32) else {
            return false;
        };
        s.rst_run >= KERNEL_RST_RUN
            && s.rst_last_ns > s.syn_ack_last_ns
            && monotonic_now_ns().saturating_sub(s.rst_last_ns) < KERNEL_FRESH_NS
    }

    pub fn record_success(&self, index: usize) {
        if let Some(state) = self.origins.get(index) {
            state.consecutive_failures.set(0);
            state.ejected_until.set(None);
        }
    }

    pub fn record_failure(&self, index: usize, now: Instant) {
        if let Some(state) = self.origins.get(index) {
            let n = state.consecutive_failures.get() + 1;
            state.consecutive_failures.set(n);
            if n >= EJECT_AFTER {
                state.ejected_until.set(Some(now + EJECT_FOR));
            }
        }
    }
}
