//! lb's own resource errors are lb's: under a file-descriptor limit that load exceeds, no
//! origin is marked down, the clients lb cannot serve get 503 from lb (never 502), the
//! warnings are rate-limited, and lb recovers when the load drops. With the default
//! connection cap (derived from the limit), excess clients wait in the backlog instead.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use lb_origin::Origin;
use lb_tests::{
    free_port,
    http::get,
    process::{LbServer, TestDir, wait_for},
};

const FD_LIMIT: u64 = 256;

/// The test process holds hundreds of client sockets.
fn raise_own_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

fn start(p: &Origin, s: &Origin, listener_extra: &str, admin: SocketAddr) -> LbServer {
    let toml = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n{listener_extra}\n\n\
         [health]\npassive_failures = 3\n\n\
         [[origins]]\nid = \"primary\"\naddress = \"{}\"\nconnection_attempts = 1\nconnect_timeout = \"1s\"\n\n\
         [[origins]]\nid = \"secondary\"\naddress = \"{}\"\nconnection_attempts = 1\nconnect_timeout = \"1s\"\n\n\
         [[origin_groups]]\nid = \"site\"\nmembers = [\"primary\", \"secondary\"]\nfailover_status_codes = [502, 503, 504]\n\n\
         [default_behavior]\ntarget = \"site\"\n\n[kernel]\nenabled = false\n",
        p.addr(),
        s.addr()
    );
    LbServer::start_limited(
        TestDir::new(),
        "lb.toml",
        &toml,
        &["--admin", &admin.to_string()],
        "info",
        Some(FD_LIMIT),
    )
}

/// What each of `n` concurrent clients got for a slow GET: a status, or None (no answer
/// within the deadline: still waiting in the backlog).
fn burst(lb: SocketAddr, n: usize) -> Vec<Option<(u16, String)>> {
    let clients: Vec<_> = (0..n)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = TcpStream::connect(lb).ok()?;
                c.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
                c.write_all(
                    b"GET /slow?delay_ms=1500 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                )
                .ok()?;
                let mut raw = Vec::new();
                let _ = c.read_to_end(&mut raw);
                let text = String::from_utf8_lossy(&raw).into_owned();
                let status = text.get(9..12)?.parse().ok()?;
                Some((status, text))
            })
        })
        .collect();
    clients.into_iter().map(|t| t.join().unwrap()).collect()
}

fn states(admin: SocketAddr) -> Vec<String> {
    let doc: serde_json::Value = serde_json::from_str(&get(admin, "/origins").text()).unwrap();
    doc["origins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["state"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn fd_exhaustion_is_lbs_own_error_not_the_origins() {
    raise_own_fd_limit();
    let (p, s) = (
        Origin::start("primary", "127.0.0.1:0".parse().unwrap()).unwrap(),
        Origin::start("secondary", "127.0.0.1:0".parse().unwrap()).unwrap(),
    );
    let admin = free_port();
    // A cap far above the limit, so the descriptors really run out.
    let lb = start(&p, &s, "max_connections = 100000", admin);
    assert!(
        lb.stderr().contains(&format!("limit={FD_LIMIT}")),
        "{}",
        lb.stderr()
    );
    let started = Instant::now();
    let got = burst(lb.addr, 300);
    let answered: Vec<_> = got.iter().flatten().collect();
    let overloaded = answered.iter().filter(|(st, _)| *st == 503).count();
    assert!(
        overloaded > 0,
        "some clients met the fd limit: {answered:?}"
    );
    for (status, text) in &answered {
        assert!(
            *status == 200 || (*status == 503 && text.contains("lb is overloaded")),
            "only 200 or lb's own 503: {status} {text}"
        );
    }
    assert_eq!(states(admin), ["healthy", "healthy"], "no origin is blamed");
    let metrics = get(admin, "/metrics").text();
    let local = metrics
        .lines()
        .find(|l| l.starts_with("lb_local_errors_total{resource=\"process_fds\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(local > 0, "lb_local_errors_total counts them:\n{metrics}");
    // Warnings at most once a second per kind (plus the first).
    let secs = started.elapsed().as_secs() + 2;
    let log = lb.stderr();
    for kind in ["out of a local resource", "accept failed"] {
        let n = log.lines().filter(|l| l.contains(kind)).count() as u64;
        assert!(n <= secs, "{kind}: {n} warnings in {secs} s");
    }
    // Load gone: lb serves again, from the primary.
    let r = wait_for("lb to recover", Duration::from_secs(10), || {
        let r = get(lb.addr, "/after");
        (r.status == 200).then_some(r)
    });
    assert_eq!(r.text(), "primary GET /after\n");
}

#[test]
fn the_default_connection_cap_keeps_excess_clients_in_the_backlog() {
    raise_own_fd_limit();
    let (p, s) = (
        Origin::start("primary", "127.0.0.1:0".parse().unwrap()).unwrap(),
        Origin::start("secondary", "127.0.0.1:0".parse().unwrap()).unwrap(),
    );
    let admin = free_port();
    let lb = start(&p, &s, "", admin);
    let cap = (FD_LIMIT - 64) / 2;
    assert!(
        lb.stderr().contains(&format!("max_connections={cap}")),
        "{}",
        lb.stderr()
    );
    let got = burst(lb.addr, 300);
    let answered: Vec<_> = got.iter().flatten().collect();
    assert!(
        answered.iter().all(|(st, _)| *st == 200),
        "under the cap every served client gets its answer: {:?}",
        answered.iter().map(|(s, _)| s).collect::<Vec<_>>()
    );
    assert!(
        answered.len() >= cap as usize,
        "{} answered",
        answered.len()
    );
    assert_eq!(states(admin), ["healthy", "healthy"]);
    assert_eq!(get(lb.addr, "/after").status, 200);
}

/// An origin that requires its custom header (CloudFront's X-Origin-Verify pattern) on
/// every request, health checks included: checks send it, so the origin stays healthy.
#[test]
fn active_health_checks_send_the_origins_custom_headers() {
    use lb_tests::raw_origin::{RawOrigin, Step, ok};
    let strict = RawOrigin::start(|r| {
        if r.head
            .to_ascii_lowercase()
            .contains("x-origin-verify: s3cr3t\r\n")
        {
            vec![ok("verified")]
        } else {
            vec![Step::Write(
                b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n".to_vec(),
            )]
        }
    });
    let admin = free_port();
    let toml = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n\n\
         [[origins]]\nid = \"strict\"\naddress = \"{}\"\n\
         [origins.custom_headers]\nX-Origin-Verify = \"s3cr3t\"\n\
         [origins.health_check]\npath = \"/health\"\ninterval = \"100ms\"\nfast_interval = \"100ms\"\n\
         timeout = \"200ms\"\nhealthy_threshold = 1\nunhealthy_threshold = 2\n\n\
         [default_behavior]\ntarget = \"strict\"\n\n[kernel]\nenabled = false\n",
        strict.addr()
    );
    let lb = LbServer::start_file("lb.toml", &toml, &["--admin", &admin.to_string()], "info");
    wait_for("a few checks", Duration::from_secs(5), || {
        (strict
            .requests()
            .iter()
            .filter(|r| r.head.starts_with("GET /health"))
            .count()
            >= 4)
            .then_some(())
    });
    assert_eq!(states(admin), ["healthy"], "{}", lb.stderr());
    assert_eq!(get(lb.addr, "/x").text(), "verified");
}
