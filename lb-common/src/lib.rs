//! Map key and value types shared by lb's XDP program and its userspace.
//!
//! Everything here is `#[repr(C)]`, padding-free and `Copy`, because the same bytes are
//! written by one side and read by the other: the kernel program compares keys byte for
//! byte, and userspace maps `ORIGIN_SIGNALS` straight into its address space.
//!
//! With the `user` feature the types also implement [`aya::Pod`], so userspace can use them
//! as typed map keys and values.
#![no_std]

/// How many origin slots the kernel maps hold. Slots are dense indexes the control plane
/// hands out (the Katran pattern), so this bounds the number of distinct origin endpoints.
pub const MAX_ORIGIN_SLOTS: u32 = 1024;

/// `OriginKey::family` for IPv4.
pub const FAMILY_IPV4: u8 = 4;
/// `OriginKey::family` for IPv6.
pub const FAMILY_IPV6: u8 = 6;

/// Names of the maps, as the object file declares them and as they are pinned.
pub mod map_names {
    /// Origin endpoint → slot.
    pub const ORIGIN_INDEX: &str = "ORIGIN_INDEX";
    /// Per-slot packet counters, `BPF_F_MMAPABLE`.
    pub const ORIGIN_SIGNALS: &str = "ORIGIN_SIGNALS";
    /// The program's own per-CPU statistics.
    pub const PROGRAM_STATS: &str = "PROGRAM_STATS";
}

/// An origin endpoint as it appears on the wire: the address and port are stored in
/// network byte order, exactly as the packet carries them, so the kernel program can
/// build a key by copying bytes without any conversion.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OriginKey {
    /// IPv4 addresses use the first 4 bytes; the rest stay zero.
    pub addr: [u8; 16],
    /// TCP port, big-endian.
    pub port: [u8; 2],
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    /// Always zero: keys are compared as raw bytes by the kernel.
    pub pad: u8,
}

impl OriginKey {
    /// Key for an IPv4 endpoint.
    pub const fn v4(addr: [u8; 4], port: u16) -> Self {
        let mut full = [0u8; 16];
        full[0] = addr[0];
        full[1] = addr[1];
        full[2] = addr[2];
        full[3] = addr[3];
        Self {
            addr: full,
            port: port.to_be_bytes(),
            family: FAMILY_IPV4,
            pad: 0,
        }
    }

    /// Key for an IPv6 endpoint.
    pub const fn v6(addr: [u8; 16], port: u16) -> Self {
        Self {
            addr,
            port: port.to_be_bytes(),
            family: FAMILY_IPV6,
            pad: 0,
        }
    }

    /// The port in host byte order.
    pub const fn port(&self) -> u16 {
        u16::from_be_bytes(self.port)
    }
}

/// Length of the human-readable origin label stored next to each slot.
pub const ORIGIN_LABEL_LEN: usize = 52;

/// Value of `ORIGIN_INDEX`. The kernel program reads only `slot`; the label lets another
/// process (`lb maps`) name what it prints without talking to the running `lb`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OriginSlot {
    /// Index into `ORIGIN_SIGNALS`, below [`MAX_ORIGIN_SLOTS`].
    pub slot: u32,
    /// The origin's id from the config, NUL-padded UTF-8, truncated if longer.
    pub label: [u8; ORIGIN_LABEL_LEN],
}

impl OriginSlot {
    /// Builds a slot entry, truncating the label at a character boundary if needed.
    pub fn new(slot: u32, label: &str) -> Self {
        let mut bytes = [0u8; ORIGIN_LABEL_LEN];
        let mut end = label.len().min(ORIGIN_LABEL_LEN);
        while !label.is_char_boundary(end) {
            end -= 1;
        }
        bytes[..end].copy_from_slice(&label.as_bytes()[..end]);
        Self { slot, label: bytes }
    }

    /// The label as text, up to the first NUL.
    pub fn label(&self) -> &str {
        let end = self
            .label
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(ORIGIN_LABEL_LEN);
        match core::str::from_utf8(&self.label[..end]) {
            Ok(s) => s,
            Err(e) => {
                // Only reachable if another writer stored invalid UTF-8; show the valid prefix.
                let valid = e.valid_up_to();
                core::str::from_utf8(&self.label[..valid]).unwrap_or("")
            }
        }
    }
}

/// Value of `ORIGIN_SIGNALS`: what the kernel saw coming from one origin slot.
///
/// Exactly one 64-byte cache line. Every field is a `u64` that the kernel program updates
/// with single atomic adds or aligned 8-byte stores, so userspace may read each field with
/// a relaxed atomic load from the mmap'd array. Fields are not a consistent snapshot as a
/// group; each is individually exact.
///
/// Timestamps are `bpf_ktime_get_ns()`, i.e. `CLOCK_MONOTONIC` nanoseconds, which userspace
/// can compare against its own `clock_gettime(CLOCK_MONOTONIC)`. Zero means "never".
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OriginSignals {
    /// TCP segments with RST set, sent by the origin.
    pub rst: u64,
    /// When the last RST was seen.
    pub rst_last_ns: u64,
    /// TCP SYN-ACKs sent by the origin: proof its listener accepts connections.
    pub syn_ack: u64,
    /// When the last SYN-ACK was seen.
    pub syn_ack_last_ns: u64,
    /// ICMP/ICMPv6 destination-unreachable whose quoted packet was headed to the origin.
    pub unreachable: u64,
    /// When the last such ICMP was seen.
    pub unreachable_last_ns: u64,
    /// RSTs since the last SYN-ACK. A run that keeps growing means nothing accepts
    /// connections on the origin's port any more (the process died or the port closed).
    pub rst_run: u64,
    /// Reserved; keeps the value one cache line long.
    pub reserved: u64,
}

/// Number of `u64` fields in [`OriginSignals`]; userspace reads the mmap'd array as words.
pub const ORIGIN_SIGNALS_WORDS: usize = 8;

/// Word offsets of each field inside [`OriginSignals`].
pub mod signal_word {
    pub const RST: usize = 0;
    pub const RST_LAST_NS: usize = 1;
    pub const SYN_ACK: usize = 2;
    pub const SYN_ACK_LAST_NS: usize = 3;
    pub const UNREACHABLE: usize = 4;
    pub const UNREACHABLE_LAST_NS: usize = 5;
    pub const RST_RUN: usize = 6;
}

/// Value of `PROGRAM_STATS` (per CPU, one entry): how the program classified packets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramStats {
    /// Every packet the program ran on.
    pub packets: u64,
    /// IPv4 or IPv6 TCP packets parsed far enough to look up the source.
    pub tcp_seen: u64,
    /// ICMP/ICMPv6 destination-unreachable messages parsed far enough to look up the inner destination.
    pub icmp_unreachable_seen: u64,
    /// Packets counted against an origin slot.
    pub matched: u64,
    /// Packets that ended before a header the program needed.
    pub truncated: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all four types are #[repr(C)], contain only integers and byte arrays, have no
    // implicit padding (checked by the size assertions below), and every bit pattern is valid.
    unsafe impl aya::Pod for super::OriginKey {}
    unsafe impl aya::Pod for super::OriginSlot {}
    unsafe impl aya::Pod for super::OriginSignals {}
    unsafe impl aya::Pod for super::ProgramStats {}
}

const _: () = {
    assert!(core::mem::size_of::<OriginKey>() == 20);
    assert!(core::mem::size_of::<OriginSlot>() == 4 + ORIGIN_LABEL_LEN);
    assert!(core::mem::size_of::<OriginSignals>() == 64);
    assert!(core::mem::size_of::<OriginSignals>() == ORIGIN_SIGNALS_WORDS * 8);
    assert!(core::mem::size_of::<ProgramStats>() == 40);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_key_keeps_wire_order_and_zero_tail() {
        let k = OriginKey::v4([127, 0, 0, 1], 8080);
        assert_eq!(&k.addr[..4], &[127, 0, 0, 1]);
        assert!(k.addr[4..].iter().all(|&b| b == 0));
        assert_eq!(k.port, [0x1f, 0x90]);
        assert_eq!(k.port(), 8080);
        assert_eq!(k.family, FAMILY_IPV4);
    }

    #[test]
    fn label_truncates_on_char_boundary() {
        let long = "é".repeat(40); // 80 bytes, 2 per char
        let s = OriginSlot::new(3, &long);
        assert_eq!(s.label().len(), 52);
        assert!(s.label().chars().all(|c| c == 'é'));
        assert_eq!(OriginSlot::new(1, "primary").label(), "primary");
    }
}
