//! The data plane's window onto `ORIGIN_SIGNALS`: the BPF array is mmap'd read-only, so
//! reading an origin's counters and stamps is a handful of atomic loads from shared
//! memory, with no syscall and no lock, from any thread.

use std::{
    os::fd::AsFd,
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::MapData;
use lb_common::{ORIGIN_SIGNALS_WORDS, OriginSignals, signal_word};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};

use super::KernelError;

const BPF_F_MMAPABLE: u32 = 1 << 10;

/// A read-only mapping of the kernel's per-origin signal counters.
///
/// The mapping holds its own reference to the BPF map, so it stays valid after the map's
/// file descriptor is closed and even after the loading process detaches the program.
pub struct SignalsView {
    base: NonNull<AtomicU64>,
    slots: u32,
    len: usize,
}

// SAFETY: the view only performs atomic loads on memory that the kernel keeps mapped until
// `munmap` in Drop; nothing is written through it, so sharing it between threads is sound.
unsafe impl Send for SignalsView {}
// SAFETY: see `Send`: all access is `&self` atomic loads.
unsafe impl Sync for SignalsView {}

impl SignalsView {
    /// Maps `map`, which must be lb's `ORIGIN_SIGNALS` array (checked: value size, flags).
    pub(crate) fn new(map: &MapData) -> Result<Self, KernelError> {
        let info = map.info().map_err(|source| KernelError::Map {
            what: "reading ORIGIN_SIGNALS info".into(),
            source,
        })?;
        let value_size = core::mem::size_of::<OriginSignals>();
        if info.value_size() as usize != value_size || info.map_flags() & BPF_F_MMAPABLE == 0 {
            return Err(KernelError::NotPinned {
                path: "ORIGIN_SIGNALS".into(),
                reason: format!(
                    "map has value size {} and flags {:#x}; expected {value_size} and BPF_F_MMAPABLE \
                     (is it from another lb version?)",
                    info.value_size(),
                    info.map_flags()
                ),
            });
        }
        let slots = info.max_entries();
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .unwrap_or(4096) as usize;
        let len = (slots as usize * value_size).next_multiple_of(page);
        let Some(len_nz) = std::num::NonZeroUsize::new(len) else {
            return Err(KernelError::SlotOutOfRange { slot: 0, max: 0 });
        };
        // SAFETY: a fresh shared read-only mapping of a BPF_F_MMAPABLE array fd at offset 0;
        // the kernel lays the array's values out contiguously from offset 0, `len` covers
        // max_entries * value_size rounded up to a page, and nothing else aliases it mutably
        // from this process.
        let ptr = unsafe {
            mmap(
                None,
                len_nz,
                ProtFlags::PROT_READ,
                MapFlags::MAP_SHARED,
                map.fd().as_fd(),
                0,
            )
        }
        .map_err(|source| KernelError::Mmap { source })?;
        Ok(Self {
            base: ptr.cast(),
            slots,
            len,
        })
    }

    /// Number of slots in the array.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// One counter word of `slot`; `word` is a [`signal_word`] offset.
    #[inline]
    fn word(&self, slot: u32, word: usize) -> Option<u64> {
        if slot >= self.slots || word >= ORIGIN_SIGNALS_WORDS {
            return None;
        }
        let index = slot as usize * ORIGIN_SIGNALS_WORDS + word;
        // SAFETY: index < slots * ORIGIN_SIGNALS_WORDS, inside the mapping; the address is
        // 8-byte aligned (page-aligned base, 64-byte values); the kernel only updates these
        // words with atomic adds and aligned 8-byte stores, so an atomic load is race-free.
        let cell = unsafe { &*self.base.as_ptr().add(index) };
        Some(cell.load(Ordering::Relaxed))
    }

    /// All counters of `slot`, or `None` past the end. Fields are read one by one, so
    /// they are individually exact but not a single atomic snapshot.
    pub fn get(&self, slot: u32) -> Option<OriginSignals> {
        use signal_word as w;
        let word = |i| self.word(slot, i);
        Some(OriginSignals {
            rst_packets: word(w::RST_PACKETS)?,
            rst_packets_last_ns: word(w::RST_PACKETS_LAST_NS)?,
            syn_ack_packets: word(w::SYN_ACK_PACKETS)?,
            syn_ack_packets_last_ns: word(w::SYN_ACK_PACKETS_LAST_NS)?,
            icmp_unreachable_packets: word(w::ICMP_UNREACHABLE_PACKETS)?,
            icmp_unreachable_packets_last_ns: word(w::ICMP_UNREACHABLE_PACKETS_LAST_NS)?,
            reserved0: 0,
            reserved1: 0,
            connects_established: word(w::CONNECTS_ESTABLISHED)?,
            connect_established_last_ns: word(w::CONNECT_ESTABLISHED_LAST_NS)?,
            connects_refused: word(w::CONNECTS_REFUSED)?,
            connect_refused_last_ns: word(w::CONNECT_REFUSED_LAST_NS)?,
            connects_unreachable: word(w::CONNECTS_UNREACHABLE)?,
            connect_unreachable_last_ns: word(w::CONNECT_UNREACHABLE_LAST_NS)?,
            connects_timed_out: word(w::CONNECTS_TIMED_OUT)?,
            connect_timed_out_last_ns: word(w::CONNECT_TIMED_OUT_LAST_NS)?,
            syn_retransmits: word(w::SYN_RETRANSMITS)?,
            syn_retransmit_last_ns: word(w::SYN_RETRANSMIT_LAST_NS)?,
            retransmits: word(w::RETRANSMITS)?,
            retransmit_last_ns: word(w::RETRANSMIT_LAST_NS)?,
            resets_established: word(w::RESETS_ESTABLISHED)?,
            reset_established_last_ns: word(w::RESET_ESTABLISHED_LAST_NS)?,
            connects_abandoned: word(w::CONNECTS_ABANDONED)?,
            last_connect_errno: word(w::LAST_CONNECT_ERRNO)?,
        })
    }

    /// The stamps a health verdict rests on, in four loads: the request path's read.
    #[inline]
    pub fn evidence(&self, slot: u32) -> ConnectEvidence {
        use signal_word as w;
        let word = |i| self.word(slot, i).unwrap_or(0);
        ConnectEvidence {
            established_ns: word(w::CONNECT_ESTABLISHED_LAST_NS),
            refused_ns: word(w::CONNECT_REFUSED_LAST_NS),
            unreachable_ns: word(w::CONNECT_UNREACHABLE_LAST_NS),
            syn_retransmit_ns: word(w::SYN_RETRANSMIT_LAST_NS),
        }
    }

    /// When the kernel last retransmitted a segment on an established connection to
    /// `slot` (0: never): the cue for a waiting exchange to look at its own connection.
    #[inline]
    pub fn retransmit_ns(&self, slot: u32) -> u64 {
        self.word(slot, signal_word::RETRANSMIT_LAST_NS)
            .unwrap_or(0)
    }
}

/// When the kernel last saw each connect outcome for one origin (CLOCK_MONOTONIC ns, 0:
/// never). Only a failure newer than the last success means anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectEvidence {
    pub established_ns: u64,
    pub refused_ns: u64,
    pub unreachable_ns: u64,
    pub syn_retransmit_ns: u64,
}

/// What validated kernel evidence says is wrong with an origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFinding {
    /// A connect was refused: an RST answered the SYN (nothing listens on the port).
    ConnectRefused,
    /// A connect failed on an ICMP error matching its SYN (host or network gone).
    Unreachable,
    /// A SYN was retransmitted: nothing answered for an initial RTO (black hole).
    SynRetransmit,
    /// A worker found its connection stalled (retransmission timeout, request bytes
    /// unacknowledged), from TCP_INFO.
    Stall,
}

impl KernelFinding {
    pub fn label(self) -> &'static str {
        match self {
            Self::ConnectRefused => "connect_refused",
            Self::Unreachable => "unreachable",
            Self::SynRetransmit => "syn_retransmit",
            Self::Stall => "stall",
        }
    }
}

impl ConnectEvidence {
    /// The first failure that stands: newer than the last connect that worked and
    /// younger than `fresh_ns`. `stall_ns` is when a worker last confirmed a stall.
    pub fn finding(&self, stall_ns: u64, now_ns: u64, fresh_ns: u64) -> Option<KernelFinding> {
        let stands =
            |t: u64| t != 0 && t > self.established_ns && now_ns.saturating_sub(t) < fresh_ns;
        if stands(self.refused_ns) {
            Some(KernelFinding::ConnectRefused)
        } else if stands(self.unreachable_ns) {
            Some(KernelFinding::Unreachable)
        } else if stands(self.syn_retransmit_ns) {
            Some(KernelFinding::SynRetransmit)
        } else if stands(stall_ns) {
            Some(KernelFinding::Stall)
        } else {
            None
        }
    }
}

impl Drop for SignalsView {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly what mmap returned, and no reference derived
        // from the mapping outlives `self` (all reads copy values out).
        if let Err(e) = unsafe { munmap(self.base.cast(), self.len) } {
            tracing::warn!(error = %e, "munmap of ORIGIN_SIGNALS failed");
        }
    }
}

impl std::fmt::Debug for SignalsView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalsView")
            .field("slots", &self.slots)
            .finish()
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns`, so it can be compared
/// with the kernel's last-seen stamps. Served by the vDSO, so no syscall.
pub fn monotonic_now_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available on Linux");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn only_failures_newer_than_the_last_success_and_fresh_stand() {
        let fresh = 2 * S;
        let e = ConnectEvidence {
            established_ns: 10 * S,
            refused_ns: 9 * S,
            ..Default::default()
        };
        assert_eq!(e.finding(0, 10 * S, fresh), None, "a success came after");
        let e = ConnectEvidence {
            refused_ns: 11 * S,
            ..e
        };
        assert_eq!(
            e.finding(0, 12 * S, fresh),
            Some(KernelFinding::ConnectRefused)
        );
        assert_eq!(e.finding(0, 13 * S + 1, fresh), None, "stale after 2 s");
        let e = ConnectEvidence {
            established_ns: 10 * S,
            syn_retransmit_ns: 11 * S,
            ..Default::default()
        };
        assert_eq!(
            e.finding(0, 11 * S, fresh),
            Some(KernelFinding::SynRetransmit)
        );
        assert_eq!(
            ConnectEvidence::default().finding(11 * S, 12 * S, fresh),
            Some(KernelFinding::Stall)
        );
        assert_eq!(ConnectEvidence::default().finding(0, 12 * S, fresh), None);
    }
}
