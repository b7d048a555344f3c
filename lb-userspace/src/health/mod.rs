//! The health model both planes share.
//!
//! Workers write passive results (failures, successes, ejections) and read verdicts; the
//! control plane writes active-check results and moves each origin between states. All of
//! it is atomics in one cache-line-aligned block per origin: the request path reads health
//! with plain loads (and the kernel's mmap'd counters), never a syscall or a lock.
//!
//! States: `healthy` → (a failure) `suspect` → (thresholds, ejection or the kernel's
//! closed-port signal) `down` → (healthy_threshold passing checks, or the ejection ending
//! when there are no checks) `recovering`, which ramps its share of traffic over
//! `slow_start` → `healthy`. Repeated ejections double the ejection time (hysteresis: a
//! flapping origin gets less and less traffic).

mod evaluate;
mod table;

pub use evaluate::evaluate;
pub use table::{
    Availability, HealthState, HealthTable, OriginHealth, OriginSnapshot, Reason,
    kernel_says_closed, now_ms,
};
