//! The XDP program on crafted packets, through `BPF_PROG_TEST_RUN` (aya `TestRun`).
//! Each test loads its own copy of the program, so its maps start empty.

use std::net::SocketAddr;

use lb_common::OriginSignals;
use lb_tests::{
    packets::{self, Flags},
    require_root,
};
use lb_userspace::kernel::{LoadedProgram, OriginRegistration, SignalsView, monotonic_now_ns};

const XDP_PASS: u32 = 2;

const V4_ORIGIN: &str = "10.0.0.1:8080";
const V6_ORIGIN: &str = "[2001:db8::1]:8443";
const LOOPBACK_ORIGIN: &str = "127.0.0.1:9000";
const V4_CLIENT: &str = "10.0.0.9:40000";
const V6_CLIENT: &str = "[2001:db8::9]:40000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

struct Harness {
    program: LoadedProgram,
    view: SignalsView,
}

impl Harness {
    /// Loads the program with three origins: slot 0 IPv4, slot 1 IPv6, slot 2 loopback.
    fn new(test: &str) -> Option<Self> {
        if !require_root(test) {
            return None;
        }
        let mut program = LoadedProgram::load().expect("load the XDP program");
        let origins = [V4_ORIGIN, V6_ORIGIN, LOOPBACK_ORIGIN]
            .iter()
            .enumerate()
            .map(|(slot, a)| OriginRegistration {
                slot: slot as u32,
                label: format!("origin{slot}"),
                address: addr(a),
            })
            .collect::<Vec<_>>();
        program
            .register_origins(&origins)
            .expect("fill ORIGIN_INDEX");
        let view = program.signals_view().expect("mmap ORIGIN_SIGNALS");
        Some(Self { program, view })
    }

    fn run(&mut self, frame: &[u8]) {
        let action = self.program.test_run(frame).expect("BPF_PROG_TEST_RUN");
        assert_eq!(action, XDP_PASS, "the program must always pass packets");
    }

    fn slot(&self, slot: u32) -> OriginSignals {
        self.view.get(slot).expect("slot in range")
    }

    fn all_slots(&self) -> Vec<OriginSignals> {
        (0..4).map(|s| self.slot(s)).collect()
    }
}

#[test]
fn ipv4_rst_and_syn_ack_count_on_the_origin_slot() {
    let Some(mut h) = Harness::new("ipv4_rst_and_syn_ack_count_on_the_origin_slot") else {
        return;
    };
    let before = monotonic_now_ns();
    h.run(&packets::tcp(addr(V4_ORIGIN), addr(V4_CLIENT), Flags::Rst));
    h.run(&packets::tcp(
        addr(V4_ORIGIN),
        addr(V4_CLIENT),
        Flags::RstAck,
    ));
    let s = h.slot(0);
    assert_eq!(
        (s.rst_packets, s.syn_ack_packets, s.icmp_unreachable_packets),
        (2, 0, 0)
    );
    let after = monotonic_now_ns();
    assert!(
        (before..=after).contains(&s.rst_packets_last_ns),
        "RST stamp {} must be CLOCK_MONOTONIC between {before} and {after}",
        s.rst_packets_last_ns
    );
    assert_eq!(s.syn_ack_packets_last_ns, 0);

    h.run(&packets::tcp(
        addr(V4_ORIGIN),
        addr(V4_CLIENT),
        Flags::SynAck,
    ));
    let s = h.slot(0);
    assert_eq!((s.rst_packets, s.syn_ack_packets), (2, 1));
    assert!(s.syn_ack_packets_last_ns >= s.rst_packets_last_ns);
    for other in [1, 2, 3] {
        assert_eq!(
            h.slot(other),
            OriginSignals::default(),
            "slot {other} untouched"
        );
    }
}

#[test]
fn ipv6_rst_and_syn_ack_count_on_the_origin_slot() {
    let Some(mut h) = Harness::new("ipv6_rst_and_syn_ack_count_on_the_origin_slot") else {
        return;
    };
    h.run(&packets::tcp(
        addr(V6_ORIGIN),
        addr(V6_CLIENT),
        Flags::SynAck,
    ));
    h.run(&packets::tcp(addr(V6_ORIGIN), addr(V6_CLIENT), Flags::Rst));
    h.run(&packets::tcp(addr(V6_ORIGIN), addr(V6_CLIENT), Flags::Rst));
    let s = h.slot(1);
    assert_eq!(
        (s.rst_packets, s.syn_ack_packets, s.icmp_unreachable_packets),
        (2, 1, 0)
    );
    assert!(s.rst_packets_last_ns > 0 && s.syn_ack_packets_last_ns > 0);
    assert_eq!(h.slot(0), OriginSignals::default());
}

#[test]
fn icmp_unreachable_quoting_the_origin_is_counted() {
    let Some(mut h) = Harness::new("icmp_unreachable_quoting_the_origin_is_counted") else {
        return;
    };
    h.run(&packets::icmpv4_unreachable(
        [10, 0, 0, 254],
        addr(V4_CLIENT),
        addr(V4_ORIGIN),
    ));
    h.run(&packets::icmpv6_unreachable(
        "2001:db8::fe"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
        addr(V6_CLIENT),
        addr(V6_ORIGIN),
    ));
    let v4 = h.slot(0);
    let v6 = h.slot(1);
    assert_eq!(
        (
            v4.icmp_unreachable_packets,
            v4.rst_packets,
            v4.syn_ack_packets
        ),
        (1, 0, 0)
    );
    assert_eq!(
        (
            v6.icmp_unreachable_packets,
            v6.rst_packets,
            v6.syn_ack_packets
        ),
        (1, 0, 0)
    );
    assert!(v4.icmp_unreachable_packets_last_ns > 0 && v6.icmp_unreachable_packets_last_ns > 0);
}

#[test]
fn ipv4_options_and_vlan_tags_do_not_hide_the_origin() {
    let Some(mut h) = Harness::new("ipv4_options_and_vlan_tags_do_not_hide_the_origin") else {
        return;
    };
    let rst = packets::tcp(addr(V4_ORIGIN), addr(V4_CLIENT), Flags::Rst);
    h.run(&packets::with_ipv4_options(&rst));
    h.run(&packets::vlan_tagged(&rst, 42));
    let icmp = packets::icmpv4_unreachable([10, 0, 0, 254], addr(V4_CLIENT), addr(V4_ORIGIN));
    h.run(&packets::vlan_tagged(&icmp, 7));
    let s = h.slot(0);
    assert_eq!((s.rst_packets, s.icmp_unreachable_packets), (2, 1));
}

#[test]
fn traffic_that_is_not_an_origin_signal_is_not_counted() {
    let Some(mut h) = Harness::new("traffic_that_is_not_an_origin_signal_is_not_counted") else {
        return;
    };
    let other_port = addr("10.0.0.1:8081");
    let other_host = addr("10.0.0.2:8080");
    let frames = [
        // RSTs and SYN-ACKs from endpoints that are not origins.
        packets::tcp(other_port, addr(V4_CLIENT), Flags::Rst),
        packets::tcp(other_host, addr(V4_CLIENT), Flags::SynAck),
        packets::tcp(addr("[2001:db8::1]:8444"), addr(V6_CLIENT), Flags::Rst),
        // Packets *to* an origin (our own SYNs and RSTs) say nothing about it.
        packets::tcp(addr(V4_CLIENT), addr(V4_ORIGIN), Flags::Rst),
        packets::tcp(addr(V4_CLIENT), addr(V4_ORIGIN), Flags::Syn),
        // Ordinary segments from an origin.
        packets::tcp(addr(V4_ORIGIN), addr(V4_CLIENT), Flags::Ack),
        packets::tcp(addr(V4_ORIGIN), addr(V4_CLIENT), Flags::FinAck),
        packets::tcp(addr(V6_ORIGIN), addr(V6_CLIENT), Flags::Ack),
        // A UDP datagram from the origin's address and port, and ARP.
        packets::udp(addr(V4_ORIGIN), addr(V4_CLIENT)),
        packets::arp(),
        // ICMP about someone else, and path-MTU discovery about the origin.
        packets::icmpv4_unreachable([10, 0, 0, 254], addr(V4_CLIENT), other_port),
        packets::icmpv4_frag_needed([10, 0, 0, 254], addr(V4_CLIENT), addr(V4_ORIGIN)),
    ];
    for f in &frames {
        h.run(f);
    }
    assert!(
        h.all_slots().iter().all(|s| *s == OriginSignals::default()),
        "nothing may be counted: {:?}",
        h.all_slots()
    );
    let stats = h.program.program_stats().unwrap();
    assert_eq!(stats.packets, frames.len() as u64);
    assert_eq!(stats.matched, 0);
}

/// Frames cut short anywhere before the last byte the program needs must pass and change
/// no counter; from that length on, the packet counts. `BPF_PROG_TEST_RUN` refuses XDP
/// input shorter than an Ethernet header, so cuts start at 14 bytes.
#[test]
fn truncated_packets_pass_and_change_nothing() {
    let Some(mut h) = Harness::new("truncated_packets_pass_and_change_nothing") else {
        return;
    };
    let v6_router = "2001:db8::fe"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    // (frame, bytes the program needs: Ethernet + IP header + what it reads after that)
    let cases: Vec<(&str, Vec<u8>, usize)> = vec![
        (
            "ipv4 rst",
            packets::tcp(addr(V4_ORIGIN), addr(V4_CLIENT), Flags::Rst),
            14 + 20 + 14,
        ),
        (
            "ipv6 syn-ack",
            packets::tcp(addr(V6_ORIGIN), addr(V6_CLIENT), Flags::SynAck),
            14 + 40 + 14,
        ),
        (
            "icmpv4 unreachable",
            packets::icmpv4_unreachable([10, 0, 0, 254], addr(V4_CLIENT), addr(V4_ORIGIN)),
            14 + 20 + 8 + 20 + 4,
        ),
        (
            "icmpv6 unreachable",
            packets::icmpv6_unreachable(v6_router, addr(V6_CLIENT), addr(V6_ORIGIN)),
            14 + 40 + 8 + 40 + 4,
        ),
    ];
    for (name, frame, needed) in cases {
        assert!(frame.len() >= needed, "{name}: crafted frame too short");
        for len in 14..needed {
            let before = h.all_slots();
            h.run(&frame[..len]);
            assert_eq!(
                h.all_slots(),
                before,
                "{name} cut at {len} bytes changed counters"
            );
        }
        let before = h.all_slots();
        h.run(&frame[..needed]);
        assert_ne!(
            h.all_slots(),
            before,
            "{name} with exactly {needed} bytes must count"
        );
    }
    assert!(h.program.program_stats().unwrap().truncated > 0);
    // Below an Ethernet header the kernel itself refuses to run the program.
    for len in 0..14 {
        let r = h.program.test_run(&vec![0u8; len]);
        assert!(r.is_err() || r.unwrap() == XDP_PASS, "{len}-byte frame");
    }
}

#[test]
fn mmap_view_matches_map_lookup() {
    let Some(mut h) = Harness::new("mmap_view_matches_map_lookup") else {
        return;
    };
    for i in 0..5 {
        h.run(&packets::tcp(addr(V4_ORIGIN), addr(V4_CLIENT), Flags::Rst));
        if i % 2 == 0 {
            h.run(&packets::tcp(
                addr(V6_ORIGIN),
                addr(V6_CLIENT),
                Flags::SynAck,
            ));
        }
    }
    h.run(&packets::icmpv4_unreachable(
        [10, 0, 0, 254],
        addr(V4_CLIENT),
        addr(LOOPBACK_ORIGIN),
    ));
    for slot in 0..4 {
        let mapped = h.view.get(slot).unwrap();
        let looked_up = h.program.lookup_signals(slot).unwrap();
        assert_eq!(
            mapped,
            OriginSignals {
                reserved0: 0,
                reserved1: 0,
                ..looked_up
            },
            "slot {slot}"
        );
    }
    assert_eq!(h.slot(0).rst_packets, 5);
    assert_eq!(h.slot(1).syn_ack_packets, 3);
    assert_eq!(h.slot(2).icmp_unreachable_packets, 1);
    assert!(
        h.view.get(h.view.slots()).is_none(),
        "reads past the end are refused"
    );
}

#[test]
fn re_registering_keeps_history_of_unchanged_origins_and_clears_moved_slots() {
    let Some(mut h) = Harness::new("re_registering_keeps_history") else {
        return;
    };
    h.run(&packets::tcp(addr(V4_ORIGIN), addr(V4_CLIENT), Flags::Rst));
    h.run(&packets::tcp(addr(V6_ORIGIN), addr(V6_CLIENT), Flags::Rst));
    // Reload: the IPv4 origin stays on slot 0, the IPv6 one is replaced on slot 1.
    h.program
        .register_origins(&[
            OriginRegistration {
                slot: 0,
                label: "origin0".into(),
                address: addr(V4_ORIGIN),
            },
            OriginRegistration {
                slot: 1,
                label: "new".into(),
                address: addr("[2001:db8::2]:80"),
            },
        ])
        .unwrap();
    assert_eq!(
        h.slot(0).rst_packets,
        1,
        "unchanged origin keeps its counters"
    );
    assert_eq!(
        h.slot(1),
        OriginSignals::default(),
        "reassigned slot starts clean"
    );
    h.run(&packets::tcp(addr(V6_ORIGIN), addr(V6_CLIENT), Flags::Rst));
    assert_eq!(
        h.slot(1).rst_packets,
        0,
        "the removed origin is no longer counted"
    );
}
