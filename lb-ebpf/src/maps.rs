//! Every map lb's kernel programs use, in one place.
//!
//! None is pinned by the object file itself: userspace pins them after loading, so that a
//! stale pin left by a crashed `lb` is replaced rather than silently reused.

use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use lb_common::{
    MAX_ORIGIN_SLOTS, OriginKey, OriginSignals, OriginSlot, ProgramStats, TraceLayout,
};

/// Origin endpoint → slot. Filled by the control plane; read-only here.
#[map(name = "ORIGIN_INDEX")]
pub static ORIGIN_INDEX: HashMap<OriginKey, OriginSlot> =
    HashMap::with_max_entries(MAX_ORIGIN_SLOTS, 0);

/// Per-slot packet counters and socket events. `BPF_F_MMAPABLE` so the data plane reads them with plain
/// loads from shared memory instead of a lookup syscall.
#[map(name = "ORIGIN_SIGNALS")]
pub static ORIGIN_SIGNALS: Array<OriginSignals> =
    Array::with_max_entries(MAX_ORIGIN_SLOTS, BPF_F_MMAPABLE);

/// The program's own statistics, per CPU so updates never contend.
#[map(name = "PROGRAM_STATS")]
pub static PROGRAM_STATS: PerCpuArray<ProgramStats> = PerCpuArray::with_max_entries(1, 0);

/// Where the tracepoint programs find the fields they read (filled by userspace from the
/// tracepoints' format files and the kernel's BTF before they are attached).
#[map(name = "TRACE_LAYOUT")]
pub static TRACE_LAYOUT: Array<TraceLayout> = Array::with_max_entries(1, 0);
