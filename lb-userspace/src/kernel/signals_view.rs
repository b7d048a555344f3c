//! The data plane's window onto `ORIGIN_SIGNALS`: the BPF array is mmap'd read-only, so
//! reading an origin's counters is a handful of atomic loads from shared memory, with no
//! syscall and no lock, from any thread.

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
        Some(OriginSignals {
            rst: self.word(slot, signal_word::RST)?,
            rst_last_ns: self.word(slot, signal_word::RST_LAST_NS)?,
            syn_ack: self.word(slot, signal_word::SYN_ACK)?,
            syn_ack_last_ns: self.word(slot, signal_word::SYN_ACK_LAST_NS)?,
            unreachable: self.word(slot, signal_word::UNREACHABLE)?,
            unreachable_last_ns: self.word(slot, signal_word::UNREACHABLE_LAST_NS)?,
            rst_run: self.word(slot, signal_word::RST_RUN)?,
            reserved: 0,
        })
    }

    /// RSTs since the origin's last SYN-ACK: the cheapest "is its port closed?" probe.
    #[inline]
    pub fn rst_run(&self, slot: u32) -> u64 {
        self.word(slot, signal_word::RST_RUN).unwrap_or(0)
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
