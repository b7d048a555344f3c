//! The admin API (hyper on the control plane) under hostile clients: 1,000 connections
//! that send half a request head and stall do not keep it from answering others, and
//! are closed at the header timeout; `/metrics` stays valid Prometheus text.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::{Duration, Instant},
};

use lb_origin::Origin;
use lb_tests::{
    free_port,
    http::get,
    process::{LbServer, wait_for},
};

/// Soft descriptor limit up to the hard one: the test holds 1,000 sockets.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

#[test]
fn a_thousand_slow_clients_do_not_take_the_admin_api_down() {
    raise_fd_limit();
    let origin = Origin::start("o", "127.0.0.1:0".parse().unwrap()).unwrap();
    let admin = free_port();
    let lb = LbServer::start_file(
        "lb.toml",
        &format!(
            "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n[admin]\naddress = \"{admin}\"\n\
             [[origins]]\nid = \"o\"\naddress = \"{}\"\n[kernel]\nenabled = false\n",
            origin.addr()
        ),
        &[],
        "info",
    );
    let opened = Instant::now();
    let mut slow: Vec<TcpStream> = (0..1_000)
        .map(|_| {
            let mut s = TcpStream::connect(admin).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    // Others are answered at once meanwhile.
    for _ in 0..20 {
        let started = Instant::now();
        let r = get(admin, "/healthz");
        assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    let metrics = get(admin, "/metrics").text();
    let parsed = prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_owned())))
        .expect("valid Prometheus text");
    // The names dashboards use, as before prometheus-client wrote them.
    for name in [
        "lb_requests_total",
        "lb_responses_total",
        "lb_upstream_connections_opened_total",
        "lb_tls_handshakes_total",
        "lb_http2_connections_total",
        "lb_client_connections",
        "lb_accept_errors_total",
        "lb_local_errors_total",
        "lb_function_runs_total",
        "lb_cache_requests_total",
        "lb_cache_objects",
        "lb_cache_bytes",
        "lb_cache_budget_bytes",
        "lb_access_log_lines_total",
        "lb_access_log_dropped_lines_total",
        "lb_origin_attempts_total",
        "lb_origin_errors_total",
        "lb_origin_in_flight",
        "lb_origin_state",
        "lb_origin_response_seconds_count",
    ] {
        assert!(
            parsed.samples.iter().any(|s| s.metric == name),
            "{name} missing:\n{metrics}"
        );
    }
    for line in metrics.lines().filter(|l| l.starts_with("# TYPE ")) {
        let family = line.split_whitespace().nth(2).unwrap();
        assert_eq!(
            metrics.matches(&format!("# TYPE {family} ")).count(),
            1,
            "{family} typed twice"
        );
    }
    assert_eq!(get(lb.addr, "/through").text(), "o GET /through\n");
    // The stalled ones are closed at the header timeout (5 s after lb accepted them),
    // not held.
    for s in &mut slow {
        let left = Duration::from_secs(15).saturating_sub(opened.elapsed());
        s.set_read_timeout(Some(left.max(Duration::from_millis(10))))
            .unwrap();
        let mut buf = [0u8; 512];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue, // a 408 before the close is fine
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("a slow client still open after {:?}: {e}", opened.elapsed()),
            }
        }
    }
    // And everything is as before.
    let r = wait_for("the admin API", Duration::from_secs(2), || {
        let r = get(admin, "/healthz");
        (r.status == 200).then_some(r)
    });
    assert_eq!(r.text(), "ok\n");
}
