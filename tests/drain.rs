//! Graceful shutdown: on SIGTERM lb stops accepting, finishes in-flight requests within
//! the drain timeout, closes idle keep-alive connections, and exits 0.

use std::{
    net::TcpStream,
    time::{Duration, Instant},
};

use lb_origin::Origin;
use lb_tests::{
    http::Client,
    process::{LbConfig, LbServer},
};

#[test]
fn sigterm_drains_in_flight_requests_and_refuses_new_connections() {
    let origin = Origin::start("primary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let mut lb = LbServer::start(
        &LbConfig::new()
            .workers(2)
            .listener("drain_timeout = \"5s\"")
            .origin("primary", origin.addr(), ""),
    );
    // An idle keep-alive connection, and a request that takes 1.5 s at the origin.
    let mut idle = Client::connect(lb.addr);
    assert_eq!(
        idle.request("GET /warm HTTP/1.1\r\nHost: t\r\n\r\n").status,
        200
    );
    let addr = lb.addr;
    let in_flight = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        c.request("GET /slow?delay_ms=1500 HTTP/1.1\r\nHost: t\r\n\r\n")
    });
    std::thread::sleep(Duration::from_millis(300));
    let pid = nix::unistd::Pid::from_raw(lb.pid() as i32);
    let signalled = Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();

    // The idle connection is closed promptly, not after the drain timeout.
    assert!(idle.closed_by_peer(), "idle keep-alive connection closed");
    assert!(signalled.elapsed() < Duration::from_secs(1));
    // New connections are refused once the listeners are gone.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "no new connections during drain"
    );
    // The in-flight request still completes.
    let r = in_flight.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "primary GET /slow\n");
    assert_eq!(
        r.header("connection"),
        Some("close"),
        "a draining lb closes after the response"
    );
    assert!(
        lb.process.terminate(Duration::from_secs(5)),
        "lb exits 0 after draining:\n{}",
        lb.stderr()
    );
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "drain took {took:?}; it should end when the last request does"
    );
}

#[test]
fn drain_timeout_bounds_the_wait_for_stuck_requests() {
    let origin = Origin::start("primary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let mut lb = LbServer::start(
        &LbConfig::new()
            .listener("drain_timeout = \"700ms\"")
            .origin("primary", origin.addr(), ""),
    );
    let addr = lb.addr;
    let stuck = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        c.send(b"GET /x?fail=hang HTTP/1.1\r\nHost: t\r\n\r\n");
        c.closed_by_peer()
    });
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    assert!(
        lb.process.terminate(Duration::from_secs(5)),
        "lb exits 0:\n{}",
        lb.stderr()
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(3),
        "exit after the drain timeout, took {took:?}"
    );
    assert!(
        stuck.join().unwrap(),
        "the stuck request's connection is closed"
    );
    assert!(lb.stderr().contains("drain timeout"), "{}", lb.stderr());
}

#[test]
fn sigterm_during_start_up_waits_for_the_handlers_then_exits_cleanly() {
    use lb_tests::process::{LbProcess, TestDir, lb_binary, wait_for};
    let origin = Origin::start("primary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let dir = TestDir::new();
    let cfg = dir.write(
        "lb.toml",
        &LbConfig::new()
            .workers(2)
            .origin("primary", origin.addr(), "")
            .to_toml(),
    );
    let mut lb = LbProcess::spawn_with_log(
        &lb_binary(),
        &["run", "--config", cfg.to_str().unwrap()],
        dir.path.join("stderr"),
        "debug",
    );
    // The first log line comes after lb holds its signals and before it is running: a
    // SIGTERM now must not kill it with the default action.
    wait_for("lb's first log line", Duration::from_secs(10), || {
        (!lb.stderr().is_empty()).then_some(())
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(lb.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    // One signal only: it must be the one that stops lb.
    let status = wait_for("lb to exit", Duration::from_secs(10), || {
        lb.child.try_wait().unwrap()
    });
    assert!(
        status.success(),
        "lb exits 0 after a SIGTERM during start-up ({status}):\n{}",
        lb.stderr()
    );
    assert!(
        lb.stderr().contains("shutdown requested"),
        "{}",
        lb.stderr()
    );
}
