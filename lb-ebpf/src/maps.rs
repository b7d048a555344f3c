//! Every map the XDP program uses, in one place.
//!
//! None is pinned by the object file itself: userspace pins them after loading, so that a
//! stale pin left by a crashed `lb` is replaced rather than silently reused.

use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use lb_common::{MAX_ORIGIN_SLOTS, OriginKey, OriginSignals, OriginSlot, ProgramStats};

/// Origin endpoint → slot. Filled by the control plane; read-only here.
#[map(name = "ORIGIN_INDEX")]
pub static ORIGIN_INDEX: HashMap<OriginKey, OriginSlot> =
    HashMap::with_max_entries(MAX_ORIGIN_SLOTS, 0);

/// Per-slot signal counters. `BPF_F_MMAPABLE` so the data plane reads them with plain
/// loads from shared memory instead of a lookup syscall.
#[map(name = "ORIGIN_SIGNALS")]
pub static ORIGIN_SIGNALS: Array<OriginSignals> =
    Array::with_max_entries(MAX_ORIGIN_SLOTS, BPF_F_MMAPABLE);

/// The program's own statistics, per CPU so updates never contend.
#[map(name = "PROGRAM_STATS")]
pub static PROGRAM_STATS: PerCpuArray<ProgramStats> = PerCpuArray::with_max_entries(1, 0);
