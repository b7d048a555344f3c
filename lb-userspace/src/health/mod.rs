//! The health model both planes share.
//!
//! Workers write passive results (failures, successes, ejections) and read verdicts; the
//! control plane writes active-check results and moves each origin between states. All of
//! it is atomics in one cache-line-aligned block per origin: the request path reads health
//! with plain loads (and the kernel's mmap'd counters), never a syscall or a lock.
//!
//! States: `healthy` → (a failure) `suspect` → (thresholds, ejection or a kernel verdict)
//! `down` → (healthy_threshold passing checks after it went down: HTTP checks, or TCP
//! connect probes for origins without them) `recovering`, which ramps its share of traffic
//! over `slow_start` → `healthy`. Repeated ejections double the ejection time (hysteresis:
//! a flapping origin gets less and less traffic).

mod evaluate;
pub mod state_file;
mod table;

pub use evaluate::{Checks, evaluate};
pub use table::{
    Availability, HealthState, HealthTable, KERNEL_FRESH_MS, OriginHealth, OriginSnapshot, Reason,
    kernel_verdict, now_ms,
};
