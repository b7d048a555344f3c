//! The XDP entry point and the classification of packets from origins.
//!
//! What it counts is what a packet *claims*: the source address and port of an RST or a
//! SYN-ACK, the destination quoted in an ICMP error. Nothing here is checked against a
//! connection, so these counts are shown (`lb maps`, `/origins`, metrics) and never
//! decide an origin's health; `socket_events` provides the validated evidence.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use aya_log_ebpf::debug;
use lb_common::{OriginKey, ProgramStats};

use crate::{
    counters::{bump_stat, count, now_ns, origin_signals, stats},
    packet::*,
};

/// What a packet says about the origin it came from (or, for ICMP, was headed to).
#[derive(Clone, Copy)]
enum Signal {
    Rst,
    SynAck,
    Unreachable,
}

#[xdp]
pub fn lb_origin_signals(ctx: XdpContext) -> u32 {
    let stats = stats();
    bump_stat(stats, |s| &mut s.packets);
    match classify(&ctx, stats) {
        Ok(Some((key, signal))) => record(&ctx, stats, &key, signal),
        Ok(None) => {}
        Err(Truncated) => bump_stat(stats, |s| &mut s.truncated),
    }
    // Observe only: never drop, redirect or modify.
    xdp_action::XDP_PASS
}

/// Finds the origin a packet concerns and what it signals, or `None` for any packet that
/// says nothing about origin health (which is almost all of them).
#[inline(always)]
fn classify(
    ctx: &XdpContext,
    stats: Option<*mut ProgramStats>,
) -> Result<Option<(OriginKey, Signal)>, Truncated> {
    let pkt = Packet::new(ctx);
    let mut l3 = ETH_HLEN;
    let mut ether_type = pkt.be16_at(12)?;
    if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        ether_type = pkt.be16_at(16)?;
        l3 += 4;
    }
    match ether_type {
        ETH_P_IPV4 => classify_ipv4(&pkt, l3, stats),
        ETH_P_IPV6 => classify_ipv6(&pkt, l3, stats),
        _ => Ok(None),
    }
}

#[inline(always)]
fn classify_ipv4(
    pkt: &Packet,
    l3: usize,
    stats: Option<*mut ProgramStats>,
) -> Result<Option<(OriginKey, Signal)>, Truncated> {
    let header = pkt.bytes::<IPV4_MIN_HLEN>(l3)?;
    let ihl = ((header[0] & 0x0f) as usize) * 4;
    if header[0] >> 4 != 4 || ihl < IPV4_MIN_HLEN {
        return Ok(None);
    }
    // Non-first fragments carry no transport header.
    if u16::from_be_bytes([header[6], header[7]]) & 0x1fff != 0 {
        return Ok(None);
    }
    let src = [header[12], header[13], header[14], header[15]];
    let l4 = l3 + ihl;
    match header[9] {
        IPPROTO_TCP => {
            bump_stat(stats, |s| &mut s.tcp_seen);
            let tcp = pkt.bytes::<TCP_FLAGS_END>(l4)?;
            let Some(signal) = tcp_signal(&tcp) else {
                return Ok(None);
            };
            Ok(Some((OriginKey::v4(src, tcp_source_port(&tcp)), signal)))
        }
        IPPROTO_ICMP => {
            // ICMP header, then the quoted IPv4 header of the datagram we sent: its
            // destination is the origin.
            let icmp = pkt.bytes::<{ ICMP_HLEN + IPV4_MIN_HLEN }>(l4)?;
            if icmp[0] != ICMP_DEST_UNREACH || icmp[1] == ICMP_FRAG_NEEDED {
                return Ok(None);
            }
            let q = ICMP_HLEN;
            let inner_ihl = ((icmp[q] & 0x0f) as usize) * 4;
            if icmp[q] >> 4 != 4 || inner_ihl < IPV4_MIN_HLEN || icmp[q + 9] != IPPROTO_TCP {
                return Ok(None);
            }
            bump_stat(stats, |s| &mut s.icmp_unreachable_seen);
            let dst = [icmp[q + 16], icmp[q + 17], icmp[q + 18], icmp[q + 19]];
            // The quoted TCP ports follow the quoted header's options, if any.
            let port = pkt.be16_at(l4 + ICMP_HLEN + inner_ihl + 2)?;
            Ok(Some((OriginKey::v4(dst, port), Signal::Unreachable)))
        }
        _ => Ok(None),
    }
}

#[inline(always)]
fn classify_ipv6(
    pkt: &Packet,
    l3: usize,
    stats: Option<*mut ProgramStats>,
) -> Result<Option<(OriginKey, Signal)>, Truncated> {
    let header = pkt.bytes::<IPV6_HLEN>(l3)?;
    if header[0] >> 4 != 6 {
        return Ok(None);
    }
    let l4 = l3 + IPV6_HLEN;
    match header[6] {
        IPPROTO_TCP => {
            bump_stat(stats, |s| &mut s.tcp_seen);
            let tcp = pkt.bytes::<TCP_FLAGS_END>(l4)?;
            let Some(signal) = tcp_signal(&tcp) else {
                return Ok(None);
            };
            let src = ipv6_address(&header, 8);
            Ok(Some((OriginKey::v6(src, tcp_source_port(&tcp)), signal)))
        }
        IPPROTO_ICMPV6 => {
            // ICMPv6 header, then the quoted IPv6 header, then the quoted TCP ports.
            let icmp = pkt.bytes::<{ ICMP_HLEN + IPV6_HLEN + 4 }>(l4)?;
            if icmp[0] != ICMPV6_DEST_UNREACH {
                return Ok(None);
            }
            let quoted = ICMP_HLEN;
            if icmp[quoted] >> 4 != 6 || icmp[quoted + 6] != IPPROTO_TCP {
                return Ok(None);
            }
            bump_stat(stats, |s| &mut s.icmp_unreachable_seen);
            let dst = ipv6_address(&icmp, quoted + 24);
            let ports = quoted + IPV6_HLEN;
            let port = u16::from_be_bytes([icmp[ports + 2], icmp[ports + 3]]);
            Ok(Some((OriginKey::v6(dst, port), Signal::Unreachable)))
        }
        _ => Ok(None),
    }
}

/// The TCP header up to and including the flags byte.
const TCP_FLAGS_END: usize = 14;

/// RST or SYN-ACK from a TCP header prefix; `None` for every other segment.
#[inline(always)]
fn tcp_signal(tcp: &[u8; TCP_FLAGS_END]) -> Option<Signal> {
    let flags = tcp[13];
    if flags & TCP_FLAG_RST != 0 {
        Some(Signal::Rst)
    } else if flags & (TCP_FLAG_SYN | TCP_FLAG_ACK) == (TCP_FLAG_SYN | TCP_FLAG_ACK) {
        Some(Signal::SynAck)
    } else {
        None
    }
}

#[inline(always)]
fn tcp_source_port(tcp: &[u8; TCP_FLAGS_END]) -> u16 {
    u16::from_be_bytes([tcp[0], tcp[1]])
}

/// 16 address bytes starting at `at` (callers pass constant offsets inside `bytes`).
#[inline(always)]
fn ipv6_address<const N: usize>(bytes: &[u8; N], at: usize) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = bytes[at + i];
        i += 1;
    }
    out
}

/// Counts `signal` against the origin's slot, if `key` is a registered origin. These are
/// packet counts only: userspace shows them but never turns them into a verdict.
#[inline(always)]
fn record(ctx: &XdpContext, stats: Option<*mut ProgramStats>, key: &OriginKey, signal: Signal) {
    let Some((slot, s)) = origin_signals(key) else {
        return;
    };
    bump_stat(stats, |s| &mut s.matched);
    let now = now_ns();
    // SAFETY: `s` points at a live array element (lookup succeeded); the fields are
    // 8-byte-aligned words of it.
    unsafe {
        match signal {
            Signal::Rst => count(
                &raw mut (*s).rst_packets,
                &raw mut (*s).rst_packets_last_ns,
                now,
            ),
            Signal::SynAck => count(
                &raw mut (*s).syn_ack_packets,
                &raw mut (*s).syn_ack_packets_last_ns,
                now,
            ),
            Signal::Unreachable => {
                debug!(
                    ctx,
                    "origin slot {}: ICMP destination unreachable packet", slot
                );
                count(
                    &raw mut (*s).icmp_unreachable_packets,
                    &raw mut (*s).icmp_unreachable_packets_last_ns,
                    now,
                )
            }
        }
    }
}
