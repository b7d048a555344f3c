//! Memory per idle keep-alive client connection: after a 64 KiB response, a connection
//! lb keeps open holds its socket and a parking slot (`dataplane/parking.rs`), not the
//! buffers the response grew (they go back to the worker's pool) nor a task. nginx holds
//! about 524 bytes and HAProxy 1,120, measured the same way (`cargo xtask bench
//! idle-memory`; README, "Memory per idle connection"): lb is held below both.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use lb_origin::Origin;
use lb_tests::process::{LbConfig, LbServer};

const CONNECTIONS: usize = 2000;
/// The bound the test holds lb to, per connection.
const MAX_BYTES_PER_CONNECTION: u64 = 512;

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kb * 1024
}

/// One keep-alive GET of a 64 KiB body on `c`, read whole.
fn get_64k(c: &mut TcpStream) {
    c.write_all(b"GET /big?size=65536 HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let mut got = Vec::with_capacity(70_000);
    let mut buf = [0u8; 65536];
    loop {
        let n = c.read(&mut buf).expect("read from lb");
        assert!(n > 0, "lb closed a keep-alive connection");
        got.extend_from_slice(&buf[..n]);
        if let Some(head_end) = got.windows(4).position(|w| w == b"\r\n\r\n")
            && got.len() >= head_end + 4 + 65536
        {
            assert!(got.starts_with(b"HTTP/1.1 200"), "{:?}", &got[..40]);
            return;
        }
    }
}

#[test]
fn an_idle_keep_alive_connection_holds_less_than_nginx_and_haproxy() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    let origin = Origin::start("o", "127.0.0.1:0".parse().unwrap()).unwrap();
    let lb = LbServer::start_with_log(
        &LbConfig::new()
            .origin("o", origin.addr(), "")
            .limits("idle_timeout = \"120s\""),
        "info",
    );
    // Warm up: pools, allocator arenas, the access log.
    for _ in 0..200 {
        get_64k(&mut TcpStream::connect(lb.addr).unwrap());
    }
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_bytes(lb.pid());
    let mut idle = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let mut c = TcpStream::connect(lb.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        get_64k(&mut c);
        idle.push(c);
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_bytes(lb.pid());
    let per_connection = after.saturating_sub(before) / CONNECTIONS as u64;
    eprintln!(
        "lb RSS {before} -> {after} bytes with {CONNECTIONS} idle connections: {per_connection} bytes each"
    );
    assert!(
        per_connection <= MAX_BYTES_PER_CONNECTION,
        "{per_connection} bytes per idle connection (bound {MAX_BYTES_PER_CONNECTION})"
    );
    // They are alive: each can still carry a request.
    for c in idle.iter_mut().step_by(400) {
        get_64k(c);
    }
}
