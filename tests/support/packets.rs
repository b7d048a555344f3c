//! Crafted frames for `BPF_PROG_TEST_RUN`: Ethernet + IPv4/IPv6 + TCP or ICMP, built with
//! etherparse so the bytes are what a real stack would send.

use std::net::{IpAddr, SocketAddr};

use etherparse::{
    Icmpv4Type, Icmpv6Type, PacketBuilder, TcpHeader, icmpv4::DestUnreachableHeader,
    icmpv6::DestUnreachableCode,
};

const SRC_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const DST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// TCP flags of a crafted segment.
#[derive(Clone, Copy, Debug)]
pub enum Flags {
    Rst,
    RstAck,
    SynAck,
    Syn,
    Ack,
    FinAck,
}

fn tcp_header(from: SocketAddr, to: SocketAddr, flags: Flags) -> TcpHeader {
    let mut h = TcpHeader::new(from.port(), to.port(), 1000, 65535);
    match flags {
        Flags::Rst => h.rst = true,
        Flags::RstAck => {
            h.rst = true;
            h.ack = true;
        }
        Flags::SynAck => {
            h.syn = true;
            h.ack = true;
        }
        Flags::Syn => h.syn = true,
        Flags::Ack => h.ack = true,
        Flags::FinAck => {
            h.fin = true;
            h.ack = true;
        }
    }
    h
}

/// An Ethernet frame carrying a TCP segment from `from` to `to`.
pub fn tcp(from: SocketAddr, to: SocketAddr, flags: Flags) -> Vec<u8> {
    let header = tcp_header(from, to, flags);
    let eth = PacketBuilder::ethernet2(SRC_MAC, DST_MAC);
    let mut out = Vec::new();
    match (from.ip(), to.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth
            .ipv4(s.octets(), d.octets(), 64)
            .tcp_header(header)
            .write(&mut out, &[])
            .unwrap(),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth
            .ipv6(s.octets(), d.octets(), 64)
            .tcp_header(header)
            .write(&mut out, &[])
            .unwrap(),
        _ => panic!("mixed address families"),
    }
    out
}

/// The first bytes of the datagram an ICMP error quotes: our SYN to the origin.
fn quoted_syn(client: SocketAddr, origin: SocketAddr) -> Vec<u8> {
    let header = tcp_header(client, origin, Flags::Syn);
    let mut out = Vec::new();
    match (client.ip(), origin.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64)
            .tcp_header(header)
            .write(&mut out, &[])
            .unwrap(),
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64)
            .tcp_header(header)
            .write(&mut out, &[])
            .unwrap(),
        _ => panic!("mixed address families"),
    }
    out
}

/// ICMPv4 destination unreachable (code: port) from `router` about our SYN from `client`
/// to `origin`. Like real routers, it quotes the IP header plus 8 bytes.
pub fn icmpv4_unreachable(router: [u8; 4], client: SocketAddr, origin: SocketAddr) -> Vec<u8> {
    icmpv4_with(router, client, origin, DestUnreachableHeader::Port)
}

/// ICMPv4 "fragmentation needed" (type 3 code 4), which is path-MTU discovery, not death.
pub fn icmpv4_frag_needed(router: [u8; 4], client: SocketAddr, origin: SocketAddr) -> Vec<u8> {
    icmpv4_with(
        router,
        client,
        origin,
        DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1280 },
    )
}

fn icmpv4_with(
    router: [u8; 4],
    client: SocketAddr,
    origin: SocketAddr,
    kind: DestUnreachableHeader,
) -> Vec<u8> {
    let IpAddr::V4(client_ip) = client.ip() else {
        panic!("IPv4 client expected")
    };
    let quoted = quoted_syn(client, origin);
    let quoted = &quoted[..28.min(quoted.len())];
    let mut out = Vec::new();
    PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
        .ipv4(router, client_ip.octets(), 64)
        .icmpv4(Icmpv4Type::DestinationUnreachable(kind))
        .write(&mut out, quoted)
        .unwrap();
    out
}

/// ICMPv6 destination unreachable (code: port) about our SYN to `origin`.
pub fn icmpv6_unreachable(router: [u8; 16], client: SocketAddr, origin: SocketAddr) -> Vec<u8> {
    let IpAddr::V6(client_ip) = client.ip() else {
        panic!("IPv6 client expected")
    };
    let quoted = quoted_syn(client, origin);
    let mut out = Vec::new();
    PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
        .ipv6(router, client_ip.octets(), 64)
        .icmpv6(Icmpv6Type::DestinationUnreachable(
            DestUnreachableCode::Port,
        ))
        .write(&mut out, &quoted)
        .unwrap();
    out
}

/// Inserts an 802.1Q tag after the MAC addresses.
pub fn vlan_tagged(frame: &[u8], vid: u16) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&0x8100u16.to_be_bytes());
    out.extend_from_slice(&vid.to_be_bytes());
    out.extend_from_slice(&frame[12..]);
    out
}

/// Adds 4 bytes of IPv4 options (NOPs) to an IPv4 frame, so the transport header moves.
pub fn with_ipv4_options(frame: &[u8]) -> Vec<u8> {
    assert_eq!(frame[14] >> 4, 4, "IPv4 frame expected");
    let mut out = frame[..34].to_vec();
    out.extend_from_slice(&[1, 1, 1, 1]);
    out.extend_from_slice(&frame[34..]);
    out[14] = 0x46; // version 4, IHL 6 words
    let total = u16::from_be_bytes([out[16], out[17]]) + 4;
    out[16..18].copy_from_slice(&total.to_be_bytes());
    out
}

/// A non-IP frame (ARP request), which the program must ignore.
pub fn arp() -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&[0xff; 6]);
    out.extend_from_slice(&SRC_MAC);
    out.extend_from_slice(&0x0806u16.to_be_bytes());
    out.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    out.extend_from_slice(&[0u8; 20]);
    out
}

/// A UDP datagram from `from`, which carries no TCP signal even from an origin's endpoint.
pub fn udp(from: SocketAddr, to: SocketAddr) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (from.ip(), to.ip()) else {
        panic!("IPv4 expected")
    };
    let mut out = Vec::new();
    PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
        .ipv4(s.octets(), d.octets(), 64)
        .udp(from.port(), to.port())
        .write(&mut out, b"hello")
        .unwrap();
    out
}
