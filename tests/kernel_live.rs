//! The kernel programs attached for real: XDP on `lo` in generic mode and in native mode
//! on a veth whose peer lives in a network namespace the test creates (and removes), and
//! the socket-event tracepoints, which see what the kernel's TCP state machine concluded
//! about the same connections (refused, unreachable, SYN retransmitted, stalled).

use std::{
    io::ErrorKind,
    net::{SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use lb_tests::{LoopbackXdpLock, netns::VethNamespace, process::wait_for, require_root};
use lb_userspace::kernel::{
    LoadedProgram, OriginRegistration, SignalsView, XdpAttachMode, plan_attachments,
};

fn registrations(origins: &[(&str, SocketAddr)]) -> Vec<OriginRegistration> {
    origins
        .iter()
        .enumerate()
        .map(|(slot, (label, address))| OriginRegistration {
            slot: slot as u32,
            label: (*label).into(),
            address: *address,
        })
        .collect()
}

/// Loads the program, registers `origins` and attaches where they route.
/// Returns the program (keep it alive: dropping it detaches), its view and the plan used.
fn attach_for(
    origins: &[OriginRegistration],
    mode: XdpAttachMode,
) -> (LoadedProgram, SignalsView, String, aya::programs::XdpMode) {
    let mut program = LoadedProgram::load().expect("load the XDP program");
    program
        .register_origins(origins)
        .expect("fill ORIGIN_INDEX");
    let addresses: Vec<_> = origins.iter().map(|o| o.address).collect();
    let plan = plan_attachments(&addresses, &[], mode).expect("plan attachments");
    assert_eq!(
        plan.len(),
        1,
        "all test origins route through one interface: {plan:?}"
    );
    let used = program.attach(&plan[0]).expect("attach XDP");
    program
        .start_socket_events()
        .expect("attach the socket-event tracepoints");
    let view = program.signals_view().expect("mmap ORIGIN_SIGNALS");
    (program, view, plan[0].interface.clone(), used)
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2))
}

fn closed_port(ip: &str) -> SocketAddr {
    let l = TcpListener::bind(format!("{ip}:0")).expect("bind ephemeral");
    l.local_addr().unwrap()
}

#[test]
fn loopback_closed_port_raises_rst_and_open_port_raises_syn_ack() {
    if !require_root("loopback_closed_port_raises_rst_and_open_port_raises_syn_ack") {
        return;
    }
    let _lo = LoopbackXdpLock::acquire();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap();
    let closed = closed_port("127.0.0.1");
    let origins = registrations(&[("closed", closed), ("open", open)]);
    let (_program, view, interface, mode) = attach_for(&origins, XdpAttachMode::Auto);
    assert_eq!(interface, "lo");
    assert_eq!(mode, aya::programs::XdpMode::Skb);

    for _ in 0..3 {
        let err = connect(closed).expect_err("nothing listens on the closed port");
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    }
    let s = wait_for(
        "3 RSTs from the closed port",
        Duration::from_secs(2),
        || view.get(0).filter(|s| s.rst_packets >= 3),
    );
    assert_eq!(s.syn_ack_packets, 0, "a closed port never sends a SYN-ACK");
    // The same refusals as the kernel's TCP stack concluded them, after its checks.
    let s = wait_for("3 refused connects", Duration::from_secs(2), || {
        view.get(0).filter(|s| s.connects_refused >= 3)
    });
    assert_eq!(s.connects_established, 0);
    assert_eq!(s.last_connect_errno, 111, "ECONNREFUSED");
    assert!(s.connect_refused_last_ns > 0);

    let client = connect(open).expect("connect to the listening origin");
    let (_server, _) = listener.accept().unwrap();
    let s = wait_for(
        "a SYN-ACK from the open port",
        Duration::from_secs(2),
        || view.get(1).filter(|s| s.syn_ack_packets >= 1),
    );
    assert_eq!(s.rst_packets, 0);
    let s = wait_for("an established connect", Duration::from_secs(2), || {
        view.get(1).filter(|s| s.connects_established >= 1)
    });
    assert_eq!((s.connects_refused, s.syn_retransmits), (0, 0));
    drop(client);
}

#[test]
fn loopback_ipv6_closed_port_raises_rst() {
    if !require_root("loopback_ipv6_closed_port_raises_rst") {
        return;
    }
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED loopback_ipv6_closed_port_raises_rst: no ::1 on this host");
        return;
    }
    let _lo = LoopbackXdpLock::acquire();
    let closed = closed_port("[::1]");
    let origins = registrations(&[("closed6", closed)]);
    let (_program, view, interface, _) = attach_for(&origins, XdpAttachMode::Auto);
    assert_eq!(interface, "lo");
    let _ = connect(closed).expect_err("nothing listens");
    let s = wait_for("an RST from [::1]", Duration::from_secs(2), || {
        view.get(0).filter(|s| s.rst_packets >= 1)
    });
    assert_eq!(s.syn_ack_packets, 0);
}

#[test]
fn veth_native_xdp_sees_origin_in_namespace() {
    if !require_root("veth_native_xdp_sees_origin_in_namespace") {
        return;
    }
    let ns = VethNamespace::create();
    let open: SocketAddr = SocketAddr::new(ns.ns_ip.into(), 8080);
    let closed: SocketAddr = SocketAddr::new(ns.ns_ip.into(), 8081);
    // The origin server lives inside the namespace.
    let listener =
        ns.run_inside(move || TcpListener::bind(open).expect("bind inside the namespace"));
    let origins = registrations(&[("ns-closed", closed), ("ns-open", open)]);
    let (_program, view, interface, mode) = attach_for(&origins, XdpAttachMode::Native);
    assert_eq!(
        interface, ns.host_if,
        "the route to the namespace picks its veth"
    );
    assert_eq!(
        mode,
        aya::programs::XdpMode::Driver,
        "veth supports native XDP"
    );

    let err = connect(closed).expect_err("nothing listens on 8081 in the namespace");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    let s = wait_for("an RST over the veth", Duration::from_secs(2), || {
        view.get(0).filter(|s| s.rst_packets >= 1)
    });
    assert_eq!(s.syn_ack_packets, 0);

    let _client = connect(open).expect("connect to the origin in the namespace");
    let _server = listener.accept().unwrap();
    let s = wait_for("a SYN-ACK over the veth", Duration::from_secs(2), || {
        view.get(1).filter(|s| s.syn_ack_packets >= 1)
    });
    assert_eq!(s.rst_packets, 0);
}

/// A host the namespace cannot route to: the namespace answers our SYN with ICMP host
/// unreachable, which the program attributes to the origin named in the quoted header.
#[test]
fn veth_icmp_unreachable_is_counted_for_the_quoted_origin() {
    if !require_root("veth_icmp_unreachable_is_counted_for_the_quoted_origin") {
        return;
    }
    let ns = VethNamespace::create();
    // An address routed into the namespace, where a route marks it unreachable.
    let gone = std::net::Ipv4Addr::from(u32::from(ns.host_ip) + 100);
    lb_tests::netns::ip(&[
        "route",
        "add",
        &format!("{gone}/32"),
        "via",
        &ns.ns_ip.to_string(),
    ]);
    ns.exec(&format!(
        "echo 1 > /proc/sys/net/ipv4/ip_forward && ip route add unreachable {gone}/32"
    ));
    let origin = SocketAddr::new(gone.into(), 80);
    let origins = registrations(&[("unreachable", origin)]);
    let (_program, view, interface, _) = attach_for(&origins, XdpAttachMode::Auto);
    assert_eq!(interface, ns.host_if);
    let err = connect(origin).expect_err("the namespace rejects the route");
    const EHOSTUNREACH: i32 = 113;
    assert_eq!(
        err.raw_os_error(),
        Some(EHOSTUNREACH),
        "expected EHOSTUNREACH, got {err}"
    );
    let s = wait_for(
        "an ICMP unreachable over the veth",
        Duration::from_secs(2),
        || view.get(0).filter(|s| s.icmp_unreachable_packets >= 1),
    );
    assert_eq!((s.rst_packets, s.syn_ack_packets), (0, 0));
    // The kernel matched the ICMP error to the SYN it sent and failed the connect.
    // That first ICMP error arrived while the connecting thread still held its socket
    // (veth delivers it within the connect call), so the kernel only noted it and
    // reported it through the socket error. A blocking connect waits for the SYN's
    // retransmit, whose ICMP error ends the connect in the kernel itself: the
    // tracepoint sees that (lb's workers record the first kind from the socket error).
    let err = TcpStream::connect(origin).expect_err("still unreachable");
    assert_eq!(err.raw_os_error(), Some(EHOSTUNREACH));
    let s = wait_for("an unreachable connect", Duration::from_secs(2), || {
        view.get(0).filter(|s| s.connects_unreachable >= 1)
    });
    assert_eq!(s.last_connect_errno, EHOSTUNREACH as u64);
    assert_eq!(s.connects_refused, 0);
    // The host route goes away with the veth when `ns` is dropped.
}

/// A black hole: the namespace drops what the origin would send back (a blackhole route
/// to lb's side). The kernel retransmits the SYN after its initial RTO (1 s), and on an
/// established connection retransmits unacknowledged request bytes; TCP_INFO on that
/// connection then shows the retransmission timeout.
#[test]
fn veth_black_hole_shows_syn_retransmits_and_stalls() {
    if !require_root("veth_black_hole_shows_syn_retransmits_and_stalls") {
        return;
    }
    let ns = VethNamespace::create();
    let origin: SocketAddr = SocketAddr::new(ns.ns_ip.into(), 8080);
    let listener =
        ns.run_inside(move || TcpListener::bind(origin).expect("bind inside the namespace"));
    let origins = registrations(&[("holed", origin)]);
    let (_program, view, _, _) = attach_for(&origins, XdpAttachMode::Auto);
    // An established connection first, then the hole opens.
    let mut established = connect(origin).expect("connect before the hole");
    let (_server, _) = listener.accept().unwrap();
    ns.exec(&format!("ip route add blackhole {}/32", ns.host_ip));
    let started = std::time::Instant::now();
    let connecting = std::thread::spawn(move || {
        TcpStream::connect_timeout(&origin, Duration::from_millis(2500))
    });
    use std::io::Write as _;
    established
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let s = wait_for("a retransmitted SYN", Duration::from_secs(3), || {
        view.get(0).filter(|s| s.syn_retransmits >= 1)
    });
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_millis(2000),
        "the first SYN retransmit comes after the initial RTO of 1 s: {waited:?}"
    );
    assert_eq!(s.connects_refused + s.connects_unreachable, 0);
    assert!(
        s.retransmits >= 1,
        "the request bytes were retransmitted: {s:?}"
    );
    let progress =
        lb_userspace::kernel::tcp_progress(std::os::fd::AsRawFd::as_raw_fd(&established))
            .expect("TCP_INFO");
    assert!(
        progress.stalled(),
        "RTO with unacknowledged bytes: {progress:?}"
    );
    assert!(
        connecting.join().unwrap().is_err(),
        "the hole swallows the connect"
    );
}
