//! Everything that touches the kernel's BPF machinery: loading and attaching the XDP
//! program and the socket-event tracepoints, pinning their maps, filling the origin
//! index, the zero-syscall mmap view of the per-origin signals, `TCP_INFO` on lb's
//! own connections, the epoll set idle client connections are parked in, and the copies
//! into and out of io_uring's owned buffers that in-memory streams need.
//!
//! All `unsafe` code of lb lives in this module (mmap of the signal array and the
//! reinterpretation of its words, `getsockopt(TCP_INFO)`, `epoll_ctl`, owned-buffer copies); each block carries a
//! `SAFETY:` comment.
//!
//! Minimum kernel: 5.5 for `BPF_F_MMAPABLE` arrays; bpf_link-based XDP attach needs 5.9;
//! the `sock:inet_sock_set_state` tracepoint 4.16; `sk_err`'s offset needs the kernel's
//! BTF (`/sys/kernel/btf/vmlinux`, 5.4+ with CONFIG_DEBUG_INFO_BTF). Needs root, or
//! CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON (CAP_SYS_ADMIN on kernels before 5.8).

mod bpffs;
mod btf;
mod error;
pub mod fd_passing;
mod interfaces;
mod loader;
mod object;
mod owned_buf;
mod pinned;
mod program_log;
mod readiness;
mod signals;
mod signals_view;
mod tcp_info;
mod tracefs;

pub use bpffs::ensure_bpffs_mounted;
pub use error::KernelError;
pub use interfaces::{AttachPlan, XdpAttachMode, plan_attachments};
pub use loader::{LoadedProgram, OriginRegistration, ProgramStatsTotal};
pub use owned_buf::{fill_owned, owned_bytes};
pub use pinned::{PinnedMaps, PinnedOrigin, SignalsReport, key_address};
pub use program_log::{ProgramLogReader, forward_program_logs};
pub use readiness::{READY_BATCH, ReadinessSet};
pub use signals::{AttachedInterface, KernelSettings, KernelSignals, KernelStatus};
pub use signals_view::{ConnectEvidence, KernelFinding, SignalsView, monotonic_now_ns};
pub use tcp_info::{TcpProgress, tcp_progress};

/// Origins lb can register with the kernel program (one slot each).
pub const MAX_ORIGINS: usize = lb_common::MAX_ORIGIN_SLOTS as usize;
