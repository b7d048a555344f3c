//! Counting into `ORIGIN_SIGNALS` and `PROGRAM_STATS`, shared by the XDP program and the
//! tracepoint programs.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::helpers::bpf_ktime_get_ns;
use lb_common::{OriginKey, OriginSignals, ProgramStats};

use crate::maps::{ORIGIN_INDEX, ORIGIN_SIGNALS, PROGRAM_STATS};

/// This CPU's statistics entry.
#[inline(always)]
pub fn stats() -> Option<*mut ProgramStats> {
    PROGRAM_STATS.get_ptr_mut(0)
}

#[inline(always)]
pub fn bump_stat(
    stats: Option<*mut ProgramStats>,
    field: impl FnOnce(&mut ProgramStats) -> &mut u64,
) {
    if let Some(stats) = stats {
        // SAFETY: per-CPU map value of this CPU; nothing else writes it while we run.
        unsafe {
            let f = field(&mut *stats);
            *f += 1;
        }
    }
}

/// The slot number and counters of a registered origin, or `None` for any other endpoint.
#[inline(always)]
pub fn origin_signals(key: &OriginKey) -> Option<(u32, *mut OriginSignals)> {
    // SAFETY: the map value is only read (the slot number) and stays valid for the
    // duration of this program run (RCU).
    let entry = unsafe { ORIGIN_INDEX.get(key) }?;
    let slot = entry.slot;
    ORIGIN_SIGNALS.get_ptr_mut(slot).map(|s| (slot, s))
}

/// CLOCK_MONOTONIC nanoseconds, the clock userspace compares stamps against.
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: a BPF helper without arguments or preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// Counts one event: `count += 1`, then `stamp = now`.
///
/// # Safety
/// Both pointers must point at 8-byte-aligned words of a live `ORIGIN_SIGNALS` value.
#[inline(always)]
pub unsafe fn count(count: *mut u64, stamp: *mut u64, now: u64) {
    // SAFETY: the caller's contract; counters change only through atomic adds and aligned
    // 8-byte stores, which is what lets userspace read each word with an atomic load.
    unsafe {
        add(count);
        core::ptr::write_volatile(stamp, now);
    }
}

/// An atomic `+= 1` whose result is not used, so it compiles to `BPF_ATOMIC_ADD`, which
/// every kernel with BPF atomics accepts (unlike the fetching variant).
///
/// # Safety
/// `counter` must point at an 8-byte-aligned u64 inside a map value.
#[inline(always)]
pub unsafe fn add(counter: *mut u64) {
    // SAFETY: the caller passes a pointer to an 8-byte-aligned u64 inside a map value.
    unsafe {
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, 1);
    }
}
