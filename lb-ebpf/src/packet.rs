//! Bounds-checked access to packet bytes and the few header fields the program reads.
//!
//! Every read goes through [`Packet::bytes`], which checks `offset + N <= data_end` before
//! handing out a pointer, in the shape the verifier can follow. Multi-byte fields are read
//! as byte arrays, so no read assumes alignment.

use aya_ebpf::programs::XdpContext;

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPV4_MIN_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;
pub const ICMP_HLEN: usize = 8;
pub const ICMP_DEST_UNREACH: u8 = 3;
/// ICMPv4 "fragmentation needed": path-MTU discovery, not a sign of a dead origin.
pub const ICMP_FRAG_NEEDED: u8 = 4;
pub const ICMPV6_DEST_UNREACH: u8 = 1;
pub const TCP_FLAG_RST: u8 = 0x04;
pub const TCP_FLAG_SYN: u8 = 0x02;
pub const TCP_FLAG_ACK: u8 = 0x10;

/// A packet failed a bounds check: it ended before a header the program needed.
pub struct Truncated;

pub struct Packet<'a> {
    ctx: &'a XdpContext,
}

impl<'a> Packet<'a> {
    pub fn new(ctx: &'a XdpContext) -> Self {
        Self { ctx }
    }

    /// `N` bytes at `offset`, or `Truncated` if the packet is shorter.
    #[inline(always)]
    pub fn bytes<const N: usize>(&self, offset: usize) -> Result<[u8; N], Truncated> {
        let start = self.ctx.data();
        let end = self.ctx.data_end();
        if start + offset + N > end {
            return Err(Truncated);
        }
        // SAFETY: the check above keeps [start+offset, start+offset+N) inside the packet,
        // which the kernel guarantees readable for the program's lifetime; read_unaligned
        // makes no alignment assumption.
        Ok(unsafe { core::ptr::read_unaligned((start + offset) as *const [u8; N]) })
    }

    #[inline(always)]
    pub fn be16_at(&self, offset: usize) -> Result<u16, Truncated> {
        Ok(u16::from_be_bytes(self.bytes::<2>(offset)?))
    }
}
