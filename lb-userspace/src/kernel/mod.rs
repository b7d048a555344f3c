//! Everything that touches the kernel's BPF machinery: loading and attaching the XDP
//! program, pinning its maps, filling the origin index, and the zero-syscall mmap view
//! of the per-origin signal counters.
//!
//! All `unsafe` code of lb lives in this module (mmap of the signal array and the
//! reinterpretation of its words); each block carries a `SAFETY:` comment.
//!
//! Minimum kernel: 5.5 for `BPF_F_MMAPABLE` arrays; bpf_link-based XDP attach needs 5.9.
//! Needs root, or CAP_BPF + CAP_NET_ADMIN (CAP_SYS_ADMIN on kernels before 5.8).

mod bpffs;
mod error;
mod interfaces;
mod loader;
mod object;
mod pinned;
mod program_log;
mod signals;
mod signals_view;

pub use bpffs::ensure_bpffs_mounted;
pub use error::KernelError;
pub use interfaces::{AttachPlan, XdpAttachMode, plan_attachments};
pub use loader::{LoadedProgram, OriginRegistration, ProgramStatsTotal};
pub use pinned::{PinnedMaps, PinnedOrigin, SignalsReport, key_address};
pub use program_log::{ProgramLogReader, forward_program_logs};
pub use signals::{AttachedInterface, KernelSettings, KernelSignals, KernelStatus};
pub use signals_view::{SignalsView, monotonic_now_ns};

/// Origins lb can register with the kernel program (one slot each).
pub const MAX_ORIGINS: usize = lb_common::MAX_ORIGIN_SLOTS as usize;
