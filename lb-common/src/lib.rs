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
    /// Per-slot packet counters and socket events, `BPF_F_MMAPABLE`.
    pub const ORIGIN_SIGNALS: &str = "ORIGIN_SIGNALS";
    /// Field offsets for the tracepoint programs, filled by userspace.
    pub const TRACE_LAYOUT: &str = "TRACE_LAYOUT";
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

/// Value of `ORIGIN_SIGNALS`: what the kernel saw of one origin slot.
///
/// Three 64-byte cache lines of `u64` words, each updated by the kernel programs with
/// single atomic adds or aligned 8-byte stores, so userspace may read each field with a
/// relaxed atomic load from the mmap'd array. Fields are not a consistent snapshot as a
/// group; each is individually exact.
///
/// The first line holds *packets* the XDP program saw coming from the origin's address
/// and port (or ICMP quoting it). They are shown, never used as a verdict: an RST also
/// ends a healthy keep-alive connection, and any host on the path can forge a packet.
/// The other two lines hold *socket events* the kernel's own TCP state machine produced
/// for connections from this host to the origin, after its sequence checks (tracepoints
/// `sock:inet_sock_set_state` and `tcp:tcp_retransmit_skb`). Only those are evidence.
///
/// Timestamps are `bpf_ktime_get_ns()`, i.e. `CLOCK_MONOTONIC` nanoseconds, which userspace
/// can compare against its own `clock_gettime(CLOCK_MONOTONIC)`. Zero means "never".
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OriginSignals {
    /// TCP segments with RST set from the origin's address and port (XDP).
    pub rst_packets: u64,
    pub rst_packets_last_ns: u64,
    /// TCP SYN-ACKs from the origin's address and port (XDP).
    pub syn_ack_packets: u64,
    pub syn_ack_packets_last_ns: u64,
    /// ICMP/ICMPv6 destination-unreachable whose quoted packet was headed to the origin (XDP).
    pub icmp_unreachable_packets: u64,
    pub icmp_unreachable_packets_last_ns: u64,
    pub reserved0: u64,
    pub reserved1: u64,

    /// Connects to the origin that reached ESTABLISHED (SYN_SENT -> ESTABLISHED): proof
    /// that the origin's port accepts connections.
    pub connects_established: u64,
    pub connect_established_last_ns: u64,
    /// Connects refused: SYN_SENT -> CLOSE with ECONNREFUSED, which the kernel sets only
    /// for an RST whose ACK matches the SYN it sent (or an ICMP port unreachable quoting it).
    pub connects_refused: u64,
    pub connect_refused_last_ns: u64,
    /// Connects ended by an ICMP error the kernel matched to the SYN it sent (host or
    /// network unreachable, ...): SYN_SENT -> CLOSE with that errno.
    pub connects_unreachable: u64,
    pub connect_unreachable_last_ns: u64,
    /// Connects whose SYN retries ran out (SYN_SENT -> CLOSE with ETIMEDOUT).
    pub connects_timed_out: u64,
    pub connect_timed_out_last_ns: u64,

    /// SYNs to the origin retransmitted by the kernel (`tcp_retransmit_skb` in SYN_SENT):
    /// nothing answered for an initial RTO (1 s), the mark of a black hole or of an
    /// origin dropping SYNs.
    pub syn_retransmits: u64,
    pub syn_retransmit_last_ns: u64,
    /// Segments retransmitted on connections past SYN_SENT (fast retransmits, loss
    /// probes and RTOs alike): a cue for lb to look at its own connections, not a verdict.
    pub retransmits: u64,
    pub retransmit_last_ns: u64,
    /// Connections past SYN_SENT that the origin reset (-> CLOSE with ECONNRESET/EPIPE):
    /// shown, never a verdict (servers reset idle keep-alive connections).
    pub resets_established: u64,
    pub reset_established_last_ns: u64,
    /// Connects given up by their owner before any answer (SYN_SENT -> CLOSE without
    /// error): lb's own connect timeout. Not evidence about the origin.
    pub connects_abandoned: u64,
    /// The errno of the last connect that failed (refused, unreachable or timed out).
    pub last_connect_errno: u64,
}

/// Number of `u64` fields in [`OriginSignals`]; userspace reads the mmap'd array as words.
pub const ORIGIN_SIGNALS_WORDS: usize = 24;

/// Word offsets of each field inside [`OriginSignals`].
pub mod signal_word {
    pub const RST_PACKETS: usize = 0;
    pub const RST_PACKETS_LAST_NS: usize = 1;
    pub const SYN_ACK_PACKETS: usize = 2;
    pub const SYN_ACK_PACKETS_LAST_NS: usize = 3;
    pub const ICMP_UNREACHABLE_PACKETS: usize = 4;
    pub const ICMP_UNREACHABLE_PACKETS_LAST_NS: usize = 5;
    pub const CONNECTS_ESTABLISHED: usize = 8;
    pub const CONNECT_ESTABLISHED_LAST_NS: usize = 9;
    pub const CONNECTS_REFUSED: usize = 10;
    pub const CONNECT_REFUSED_LAST_NS: usize = 11;
    pub const CONNECTS_UNREACHABLE: usize = 12;
    pub const CONNECT_UNREACHABLE_LAST_NS: usize = 13;
    pub const CONNECTS_TIMED_OUT: usize = 14;
    pub const CONNECT_TIMED_OUT_LAST_NS: usize = 15;
    pub const SYN_RETRANSMITS: usize = 16;
    pub const SYN_RETRANSMIT_LAST_NS: usize = 17;
    pub const RETRANSMITS: usize = 18;
    pub const RETRANSMIT_LAST_NS: usize = 19;
    pub const RESETS_ESTABLISHED: usize = 20;
    pub const RESET_ESTABLISHED_LAST_NS: usize = 21;
    pub const CONNECTS_ABANDONED: usize = 22;
    pub const LAST_CONNECT_ERRNO: usize = 23;
}

/// Value of `TRACE_LAYOUT` (one entry): where the tracepoint programs find the fields
/// they read. Userspace fills it at load time from the tracepoints' `format` files in
/// tracefs and from the kernel's BTF, so the programs need no compiled-in offsets and
/// no CO-RE. Until `ready` is nonzero the tracepoint programs do nothing.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceLayout {
    pub ready: u32,
    /// `sock:inet_sock_set_state` field offsets.
    pub state_skaddr: u32,
    pub state_oldstate: u32,
    pub state_newstate: u32,
    pub state_dport: u32,
    pub state_family: u32,
    pub state_protocol: u32,
    pub state_daddr: u32,
    pub state_daddr_v6: u32,
    /// `tcp:tcp_retransmit_skb` field offsets.
    pub retransmit_state: u32,
    pub retransmit_dport: u32,
    pub retransmit_family: u32,
    pub retransmit_daddr: u32,
    pub retransmit_daddr_v6: u32,
    /// Byte offset of `sk_err` in `struct sock` (from BTF); 0 when unknown, and then a
    /// failed connect cannot be told refused from unreachable from abandoned.
    pub sock_sk_err: u32,
    /// Byte offset of `sk_err_soft`: where the kernel keeps a validated ICMP error that
    /// arrived while the socket was locked by its owner (it then does not end the connect
    /// at once; the owner gives up on it later). 0 when unknown.
    pub sock_sk_err_soft: u32,
}

/// TCP states as the kernel numbers them (include/net/tcp_states.h).
pub mod tcp_state {
    pub const ESTABLISHED: u32 = 1;
    pub const SYN_SENT: u32 = 2;
    pub const CLOSE: u32 = 7;
}

/// Address families as tracepoints report them.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// Value of `PROGRAM_STATS` (per CPU, one entry): how the programs classified packets
/// and socket events.
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
    /// TCP state changes the `inet_sock_set_state` program saw (any socket).
    pub state_changes_seen: u64,
    /// Retransmissions the `tcp_retransmit_skb` program saw (any socket).
    pub retransmits_seen: u64,
    /// Socket events counted against an origin slot.
    pub socket_events_matched: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all five types are #[repr(C)], contain only integers and byte arrays, have no
    // implicit padding (checked by the size assertions below), and every bit pattern is valid.
    unsafe impl aya::Pod for super::OriginKey {}
    unsafe impl aya::Pod for super::OriginSlot {}
    unsafe impl aya::Pod for super::OriginSignals {}
    unsafe impl aya::Pod for super::ProgramStats {}
    unsafe impl aya::Pod for super::TraceLayout {}
}

const _: () = {
    assert!(core::mem::size_of::<OriginKey>() == 20);
    assert!(core::mem::size_of::<OriginSlot>() == 4 + ORIGIN_LABEL_LEN);
    assert!(core::mem::size_of::<OriginSignals>() == 192);
    assert!(core::mem::size_of::<TraceLayout>() == 64);
    assert!(core::mem::size_of::<OriginSignals>() == ORIGIN_SIGNALS_WORDS * 8);
    assert!(core::mem::size_of::<ProgramStats>() == 64);
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
