//! lb's kernel programs, per origin slot:
//!
//! - an XDP program (`program`) that counts the TCP RSTs, SYN-ACKs and ICMP
//!   destination-unreachable messages coming *from* origins: packets, shown but never a
//!   verdict, since anyone on the path can send them;
//! - two tracepoint programs (`socket_events`) that count what the kernel's TCP state
//!   machine concluded about connections to origins after its own checks: connects
//!   established, refused, unreachable, timed out; SYNs and segments retransmitted;
//!   connections reset. These are the evidence lb's health verdicts rest on.
//!
//! They only observe: the XDP program returns `XDP_PASS` on every path and modifies no
//! packet byte; the tracepoints return 0. Minimum kernel: 5.5 (`BPF_F_MMAPABLE` arrays);
//! generic XDP on `lo` needs 4.12; `inet_sock_set_state` needs 4.16.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
// atomic_xadd is the only way to emit BPF_ATOMIC_ADD without a fetch; see program::add.
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

#[cfg(target_arch = "bpf")]
mod counters;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod packet;
#[cfg(target_arch = "bpf")]
mod program;
#[cfg(target_arch = "bpf")]
mod socket_events;

/// On the host this crate builds to an empty binary, so `cargo check --workspace` works;
/// the real object is built for `bpfel-unknown-none` by lb-userspace's build script.
#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(all(target_arch = "bpf", not(test)))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// SAFETY: the kernel reads this symbol by name from the "license" section; it is a
// NUL-terminated string and nothing else defines the symbol.
#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
