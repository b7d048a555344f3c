//! lb's XDP program: watches packets coming *from* origins and counts, per origin slot,
//! the TCP RSTs, TCP SYN-ACKs and ICMP destination-unreachable messages that reveal an
//! origin's health before any userspace timeout could.
//!
//! It only observes: every path returns `XDP_PASS` and no packet byte is modified.
//! Minimum kernel: 5.5 (`BPF_F_MMAPABLE` arrays); generic XDP on `lo` needs 4.12.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
// atomic_xadd is the only way to emit BPF_ATOMIC_ADD without a fetch; see program::add.
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod packet;
#[cfg(target_arch = "bpf")]
mod program;

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
