//! Idle keep-alive connections parked without a task (`dataplane/parking.rs`): they serve
//! their next request, close at the idle timeout, stay counted against
//! `max_connections`, and notice a client that leaves, with io_uring and with epoll.

use std::{
    io::{Read, Write},
    net::Shutdown,
    time::{Duration, Instant},
};

use lb_origin::Origin;
use lb_tests::{
    free_port,
    http::{Client, get},
    process::{LbConfig, LbServer, wait_for},
};

fn start(io_driver: &str, listener_extra: &str, admin: std::net::SocketAddr) -> (Origin, LbServer) {
    let origin = Origin::start("o", "127.0.0.1:0".parse().unwrap()).unwrap();
    let config = LbConfig::new()
        .origin("o", origin.addr(), "")
        .listener(&format!("io_driver = \"{io_driver}\"\n{listener_extra}"))
        .limits("idle_timeout = \"1s\"");
    let lb = LbServer::start_file(
        "lb.toml",
        &config.to_toml(),
        &["--admin", &admin.to_string()],
        "info",
    );
    (origin, lb)
}

/// `lb_client_connections{state}` from the admin API's metrics.
fn connections_gauge(admin: std::net::SocketAddr, state: &str) -> u64 {
    let metrics = get(admin, "/metrics").text();
    let prefix = format!("lb_client_connections{{state=\"{state}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
}

const GET: &str = "GET /x HTTP/1.1\r\nHost: t\r\n\r\n";

/// A connection used slowly (parked between its requests) keeps serving, then closes
/// about one idle timeout after its last answer, with a FIN.
fn parked_connection_lifecycle(io_driver: &str) {
    let (_origin, lb) = start(io_driver, "", free_port());
    let mut c = Client::connect(lb.addr);
    for _ in 0..4 {
        assert_eq!(c.request(GET).status, 200);
        // Long enough between requests for the connection to be cold (parked).
        std::thread::sleep(Duration::from_millis(250));
    }
    // Pipelined requests written at once to a parked connection: both answered, in order.
    c.send(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response(false).status, 200);
    assert_eq!(c.read_response(false).status, 200);
    let idle_from = Instant::now();
    c.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(c.clean_eof(), "closed with a FIN");
    let took = idle_from.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "closed after {took:?} idle (idle_timeout 1s, swept every 250 ms)"
    );
}

#[test]
fn a_parked_connection_serves_and_times_out_with_io_uring() {
    parked_connection_lifecycle("io_uring");
}

#[test]
fn a_parked_connection_serves_and_times_out_with_epoll() {
    parked_connection_lifecycle("epoll");
}

/// Parked connections still count as open: with `max_connections = 3`, a fourth client
/// waits in the backlog until one of the parked ones leaves, and then is served.
#[test]
fn parked_connections_count_against_max_connections() {
    let admin = free_port();
    let (_origin, lb) = start("auto", "max_connections = 3\n", admin);
    let mut parked: Vec<Client> = (0..3)
        .map(|_| {
            let mut c = Client::connect(lb.addr);
            assert_eq!(c.request(GET).status, 200);
            c
        })
        .collect();
    // The gauges say so (sampled by the idle sweep, every 250 ms here).
    wait_for("3 open and 3 parked", Duration::from_secs(3), || {
        (connections_gauge(admin, "open") == 3 && connections_gauge(admin, "parked") == 3)
            .then_some(())
    });
    let mut fourth = std::net::TcpStream::connect(lb.addr).unwrap();
    fourth.write_all(GET.as_bytes()).unwrap();
    fourth
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 256];
    let waited = fourth.read(&mut buf);
    assert!(
        waited.is_err(),
        "the fourth client is not served while three are open: {waited:?}"
    );
    // One parked client leaves: lb notices (its socket hangs up) and frees the slot.
    let leaving = parked.pop().unwrap();
    leaving.stream.shutdown(Shutdown::Both).unwrap();
    drop(leaving);
    fourth
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let n = fourth.read(&mut buf).expect("served once a slot is free");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // The others still work.
    for c in &mut parked {
        assert_eq!(c.request(GET).status, 200);
    }
    drop(parked);
    drop(fourth);
    wait_for("all closed", Duration::from_secs(3), || {
        (connections_gauge(admin, "open") == 0 && connections_gauge(admin, "parked") == 0)
            .then_some(())
    });
}

/// A client that half-closes while parked gets its connection closed (nothing more can
/// come), and one that sends a partial head after parking gets a 408 at the header
/// timeout, not a hang.
#[test]
fn a_parked_connection_notices_half_close_and_partial_heads() {
    let origin = Origin::start("o", "127.0.0.1:0".parse().unwrap()).unwrap();
    let lb = LbServer::start(
        &LbConfig::new()
            .origin("o", origin.addr(), "")
            .limits("idle_timeout = \"10s\"\nheader_timeout = \"500ms\""),
    );
    let mut c = Client::connect(lb.addr);
    assert_eq!(c.request(GET).status, 200);
    std::thread::sleep(Duration::from_millis(200));
    c.stream.shutdown(Shutdown::Write).unwrap();
    c.stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    assert!(c.clean_eof(), "closed after the client's FIN");

    let mut c = Client::connect(lb.addr);
    assert_eq!(c.request(GET).status, 200);
    std::thread::sleep(Duration::from_millis(200));
    c.send(b"GET /slow HTTP/1.1\r\nHo");
    let started = Instant::now();
    let r = c.read_response(false);
    assert_eq!(r.status, 408);
    assert!(started.elapsed() < Duration::from_secs(3));
}
