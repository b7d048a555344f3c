//! HTTP/2 to viewers, with real clients: curl (`--http2` by ALPN, and
//! `--http2-prior-knowledge`), nghttp2's h2load for load and the failover matrix, and a
//! Python `h2` client (tests/support/h2_probe.py) that sends what well-behaved clients
//! never do: malformed header blocks, too many streams, rapid resets, MadeYouReset,
//! CONTINUATION floods, a reader that never opens its window.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use lb_origin::{Fault, Origin};
use lb_tests::{
    free_port,
    http::get,
    process::{LbServer, TestDir, wait_for},
    tls::{TestCa, Validity},
};

fn origin(name: &str) -> Origin {
    Origin::start(name, "127.0.0.1:0".parse().unwrap()).unwrap()
}

/// lb with a plain listener (HTTP/1.1 and prior-knowledge HTTP/2), an HTTPS one whose
/// certificate `ca` issued for lb.test, an admin API, and `rest` of the config.
fn start_lb(ca: &TestCa, admin: SocketAddr, rest: &str) -> LbServer {
    let dir = TestDir::new();
    ca.issue(&["lb.test"], Validity::Current).write(&dir, "lb");
    let toml = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n\n\
         [tls]\naddress = \"127.0.0.1:0\"\n[[tls.certificates]]\ncert = \"lb.pem\"\nkey = \"lb.key\"\n\n\
         {rest}\n[kernel]\nenabled = false\n"
    );
    LbServer::start_in(
        dir,
        "lb.toml",
        &toml,
        &["--admin", &admin.to_string()],
        "info",
    )
}

fn one_origin(addr: SocketAddr) -> String {
    format!(
        "[[origins]]\nid = \"o\"\naddress = \"{addr}\"\n\n[default_behavior]\ntarget = \"o\"\nallowed_methods = [\"GET\", \"HEAD\", \"OPTIONS\", \"PUT\", \"POST\", \"PATCH\", \"DELETE\"]\n"
    )
}

/// Runs curl; returns (stdout, `-w` line).
fn curl(args: &[&str]) -> (Vec<u8>, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-w",
            "\n%{http_version} %{http_code}",
        ])
        .args(args)
        .output()
        .expect("curl runs");
    let mut body = out.stdout;
    let at = body.iter().rposition(|b| *b == b'\n').unwrap_or(0);
    let tail = String::from_utf8_lossy(&body[at + 1..]).into_owned();
    body.truncate(at);
    (body, tail)
}

/// curl against lb's HTTPS listener as lb.test, trusting `ca_file`.
fn https_args(lb: &LbServer, ca_file: &Path, path: &str) -> Vec<String> {
    let port = lb.tls_addr.unwrap().port();
    vec![
        "--cacert".into(),
        ca_file.display().to_string(),
        "--resolve".into(),
        format!("lb.test:{port}:127.0.0.1"),
        format!("https://lb.test:{port}{path}"),
    ]
}

fn ca_file(ca: &TestCa, lb: &LbServer) -> PathBuf {
    lb.dir.write("ca.pem", &ca.pem())
}

fn metric(admin: SocketAddr, line_start: &str) -> u64 {
    let text = get(admin, "/metrics").text();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no `{line_start}` in\n{text}"))
}

#[test]
fn curl_over_h2c_and_alpn_h2_is_served_like_http1() {
    let ca = TestCa::new("h2 test CA");
    let o = origin("o");
    let admin = free_port();
    let lb = start_lb(&ca, admin, &one_origin(o.addr()));
    let ca_path = ca_file(&ca, &lb);

    // Cleartext with prior knowledge, on the plain listener.
    let url = format!("http://{}/headers", lb.addr);
    let (body, tail) = curl(&["--http2-prior-knowledge", &url]);
    assert_eq!(tail, "2 200");
    let seen = String::from_utf8_lossy(&body).to_ascii_lowercase();
    assert!(seen.contains("x-forwarded-proto: http\r\n"), "{seen}");
    assert!(seen.contains(&format!("host: {}", lb.addr)), "{seen}");
    // HTTP/1.1 still works on the same listener.
    let (_, tail) = curl(&["--http1.1", &url]);
    assert_eq!(tail, "1.1 200");

    // ALPN both ways on the HTTPS listener.
    let args = https_args(&lb, &ca_path, "/headers");
    let mut h2 = vec!["--http2"];
    h2.extend(args.iter().map(String::as_str));
    let (body, tail) = curl(&h2);
    assert_eq!(tail, "2 200");
    let seen = String::from_utf8_lossy(&body).to_ascii_lowercase();
    assert!(seen.contains("x-forwarded-proto: https"), "{seen}");
    let mut h1 = vec!["--http1.1"];
    h1.extend(args.iter().map(String::as_str));
    assert_eq!(curl(&h1).1, "1.1 200");

    // A 1 MiB body each way over one stream (flow control both ways).
    let payload: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let file = lb.dir.write_bytes("payload.bin", &payload);
    let data = format!("@{}", file.display());
    let (echoed, tail) = curl(&[
        "--http2-prior-knowledge",
        "--data-binary",
        &data,
        &format!("http://{}/echo", lb.addr),
    ]);
    assert_eq!(tail, "2 200");
    assert!(echoed == payload, "echoed {} bytes", echoed.len());
    let (big, tail) = curl(&[
        "--http2-prior-knowledge",
        &format!("http://{}/big?size=3000000", lb.addr),
    ]);
    assert_eq!((tail.as_str(), big.len()), ("2 200", 3_000_000));

    // Logged with the protocol, counted.
    let log = wait_for("an HTTP/2 access-log line", Duration::from_secs(3), || {
        lb.stderr()
            .lines()
            .find(|l| l.contains(" access ") && l.contains("/echo"))
            .map(str::to_owned)
    });
    assert!(log.ends_with(" HTTP/2.0"), "{log}");
    assert!(metric(admin, "lb_http2_connections_total ") >= 4);
    assert!(metric(admin, "lb_http2_streams_total ") >= 4);
}

#[test]
fn http2_can_be_turned_off() {
    let ca = TestCa::new("h2 test CA");
    let o = origin("o");
    let admin = free_port();
    let rest = format!(
        "[http2]\nenabled = false\ncleartext = false\n\n{}",
        one_origin(o.addr())
    );
    let lb = start_lb(&ca, admin, &rest);
    let ca_path = ca_file(&ca, &lb);
    let args = https_args(&lb, &ca_path, "/");
    let mut h2 = vec!["--http2"];
    h2.extend(args.iter().map(String::as_str));
    assert_eq!(curl(&h2).1, "1.1 200", "ALPN falls back to http/1.1");
    let (_, tail) = curl(&["--http2-prior-knowledge", &format!("http://{}/", lb.addr)]);
    assert_ne!(tail, "2 200", "no cleartext HTTP/2 when it is off");
    assert_eq!(o.requests(), 1, "the preface was never forwarded");
}

/// Runs one scenario of the Python probe against `addr`.
fn probe(addr: SocketAddr, scenario: &str, extra: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/h2_probe.py");
    let out = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(scenario)
        .args(extra)
        .output()
        .expect("python3 runs (Debian: python3-h2)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "{scenario}: {e}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn malformed_streams_are_refused_and_never_forwarded() {
    let ca = TestCa::new("h2 test CA");
    let o = origin("o");
    let admin = free_port();
    let lb = start_lb(&ca, admin, &one_origin(o.addr()));
    // RFC 9113 §8.2 and §8.3: each is malformed. The answer is a stream reset or a
    // GOAWAY with PROTOCOL_ERROR (1), or a 4xx; the origin never sees the request.
    for scenario in [
        "uppercase",
        "connection-header",
        "te-gzip",
        "pseudo-after-regular",
        "duplicate-path",
        "missing-path",
        "host-mismatch",
        "header-list-too-large",
    ] {
        let before = o.requests();
        let r = probe(lb.addr, scenario, &[]);
        let status = r["responses"]["1"].as_u64();
        let refused = r["resets"]["1"] == 1
            || r["goaway"] == 1
            || status.is_some_and(|s| (400..500).contains(&s));
        assert!(refused, "{scenario}: {r}");
        // When the connection lives on, its next request is served.
        let after = r["after"].as_u64();
        if r["goaway"].is_null() {
            assert_eq!(after, Some(200), "{scenario}: {r}");
        }
        let forwarded = o.requests() - before - u64::from(after.is_some());
        assert_eq!(forwarded, 0, "{scenario} reached the origin: {r}");
    }
    // The worker serves others throughout.
    assert_eq!(get(lb.addr, "/").status, 200);
}

#[test]
fn stream_and_connection_limits_trip_and_the_worker_keeps_serving() {
    let ca = TestCa::new("h2 test CA");
    let o = origin("o");
    let admin = free_port();
    let rest = format!(
        "[http2]\nmax_concurrent_streams = 20\n\n{}",
        one_origin(o.addr())
    );
    let lb = start_lb(&ca, admin, &rest);
    let h2_ok = || curl(&["--http2-prior-knowledge", &format!("http://{}/ok", lb.addr)]).1;

    // Streams beyond SETTINGS_MAX_CONCURRENT_STREAMS are refused (REFUSED_STREAM).
    let r = probe(lb.addr, "too-many-streams", &[]);
    assert_eq!(r["limit"], 20, "{r}");
    assert!(r["resets"]["7"].as_u64() >= Some(5), "{r}");
    assert!(r["goaway"].is_null(), "the connection lives: {r}");
    assert_eq!(h2_ok(), "2 200");

    // Rapid reset (CVE-2023-44487), MadeYouReset (CVE-2025-8671) and a CONTINUATION
    // flood each end the connection with ENHANCE_YOUR_CALM (11).
    for scenario in ["rapid-reset", "made-you-reset", "continuation-flood"] {
        let started = Instant::now();
        let r = probe(lb.addr, scenario, &[]);
        assert_eq!(r["goaway"], 11, "{scenario}: {r}");
        assert!(started.elapsed() < Duration::from_secs(5), "{scenario}");
        assert_eq!(h2_ok(), "2 200", "after {scenario}");
        assert_eq!(get(lb.addr, "/").status, 200, "HTTP/1.1 after {scenario}");
    }
    let calm = metric(
        admin,
        "lb_http2_connection_errors_total{reason=\"enhance_your_calm\"}",
    );
    assert!(calm >= 3, "enhance_your_calm counted {calm} times");
    // The rapid-reset streams were not all run as requests.
    assert!(o.requests() < 1000, "{} origin requests", o.requests());
}

#[test]
fn a_reader_that_never_opens_its_window_is_reset_at_the_write_timeout() {
    let ca = TestCa::new("h2 test CA");
    let o = origin("o");
    let admin = free_port();
    let rest = format!(
        "[limits]\nbody_timeout = \"1s\"\n\n{}",
        one_origin(o.addr())
    );
    let lb = start_lb(&ca, admin, &rest);
    let r = probe(lb.addr, "slow-reader", &["8"]);
    // The head is not flow-controlled; no body byte is, until the window opens.
    assert_eq!(r["responses"]["1"], 200, "{r}");
    assert!(r["bodies"]["1"].is_null() || r["bodies"]["1"] == 0, "{r}");
    assert_eq!(
        r["resets"]["1"], 2,
        "INTERNAL_ERROR at the write timeout: {r}"
    );
    let seconds = r["seconds"].as_f64().unwrap();
    assert!((0.9..4.0).contains(&seconds), "{r}");
    assert_eq!(h2_get(lb.addr), "2 200");
}

fn h2_get(addr: SocketAddr) -> String {
    curl(&["--http2-prior-knowledge", &format!("http://{addr}/")]).1
}

#[test]
fn the_preface_and_settings_must_come_within_the_header_timeout() {
    let ca = TestCa::new("h2 test CA");
    let o = origin("o");
    let admin = free_port();
    let rest = format!(
        "[limits]\nheader_timeout = \"1s\"\n\n{}",
        one_origin(o.addr())
    );
    let lb = start_lb(&ca, admin, &rest);
    let r = probe(lb.addr, "preface-then-silence", &[]);
    let after = r["closed_after"].as_f64().unwrap();
    assert!((0.9..3.0).contains(&after), "{r}");
    assert_eq!(h2_get(lb.addr), "2 200");
}

/// h2load over cleartext HTTP/2: (succeeded, 2xx) of `n` requests, 10 streams at once on
/// each of 2 connections.
fn h2load(addr: SocketAddr, path: &str, n: usize) -> (usize, usize, String) {
    let out = Command::new("h2load")
        .args(["-n", &n.to_string(), "-c", "2", "-m", "10", "-T", "20"])
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("h2load runs (Debian: nghttp2-client)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let number_before = |line_start: &str, word: &str| -> usize {
        text.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| {
                let words: Vec<&str> = l.split([' ', ',']).filter(|w| !w.is_empty()).collect();
                let at = words.iter().position(|w| *w == word)?;
                words.get(at.checked_sub(1)?)?.parse().ok()
            })
            .unwrap_or(0)
    };
    (
        number_before("requests:", "succeeded"),
        number_before("status codes:", "2xx"),
        text,
    )
}

/// The failover matrix with HTTP/2 viewers: whatever the primary does, every GET stream
/// gets the secondary's 200.
#[test]
fn failover_over_http2_viewers_loses_no_get() {
    let secondary = origin("secondary");
    let group = |primary: SocketAddr, primary_extra: &str| {
        format!(
            "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n\n[observability]\naccess_log = false\n\n\
             [[origins]]\nid = \"primary\"\naddress = \"{primary}\"\nconnect_timeout = \"300ms\"\nconnection_attempts = 1\nresponse_timeout = \"300ms\"\n{primary_extra}\n\n\
             [[origins]]\nid = \"secondary\"\naddress = \"{}\"\n\n\
             [[origin_groups]]\nid = \"site\"\nmembers = [\"primary\", \"secondary\"]\nfailover_status_codes = [500, 502, 503, 504]\n\n\
             [default_behavior]\ntarget = \"site\"\n\n[kernel]\nenabled = false\n",
            secondary.addr()
        )
    };
    let run = |name: &str, toml: String| {
        let lb = LbServer::start_file("lb.toml", &toml, &[], "info");
        let (ok, twoxx, text) = h2load(lb.addr, &format!("/{name}"), 200);
        assert_eq!((ok, twoxx), (200, 200), "{name}:\n{text}");
    };

    let primary = origin("primary");
    primary.set_forced_status(Some(503));
    run("status", group(primary.addr(), ""));
    primary.set_forced_status(None);
    primary.set_fault(Some(Fault::Reset));
    run("reset", group(primary.addr(), ""));
    primary.set_fault(Some(Fault::Hang));
    run("timeout", group(primary.addr(), ""));
    primary.set_fault(None);
    run("refused", group(free_port(), ""));

    if !lb_tests::require_root("HTTP/2 black-hole failover (creates a network namespace)") {
        return;
    }
    let ns = lb_tests::netns::VethNamespace::create();
    let hole = SocketAddr::new(ns.ns_ip.into(), 8080);
    let inside = ns.run_inside(move || Origin::start("primary", hole).expect("origin in netns"));
    lb_tests::netns::ip(&["-n", &ns.ns, "link", "set", &ns.ns_if, "down"]);
    run("black-hole", group(hole, ""));
    drop(inside);
}

/// An origin group over two HTTP/2 (h2c) origins, primary first; `primary` may be any
/// address (a refused port, a black hole).
fn h2_group(primary: SocketAddr, secondary: SocketAddr) -> String {
    format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n\n[observability]\naccess_log = false\nattempts_header = true\n\n\
         [[origins]]\nid = \"primary\"\naddress = \"{primary}\"\nprotocol_version = \"h2c\"\nconnect_timeout = \"300ms\"\nconnection_attempts = 1\nresponse_timeout = \"300ms\"\n\n\
         [[origins]]\nid = \"secondary\"\naddress = \"{secondary}\"\nprotocol_version = \"h2c\"\n\n\
         [[origin_groups]]\nid = \"site\"\nmembers = [\"primary\", \"secondary\"]\nfailover_status_codes = [500, 502, 503, 504]\n\n\
         [default_behavior]\ntarget = \"site\"\nallowed_methods = [\"GET\", \"HEAD\", \"OPTIONS\", \"PUT\", \"POST\", \"PATCH\", \"DELETE\"]\n\n[kernel]\nenabled = false\n"
    )
}

fn h2_origin(name: &str) -> Origin {
    Origin::start_h2c(name, "127.0.0.1:0".parse().unwrap()).unwrap()
}

/// The failover matrix with HTTP/2 origins, for HTTP/1.1 and HTTP/2 viewers: every GET
/// gets the secondary's 200 whatever the primary does.
#[test]
fn failover_to_http2_origins_loses_no_get() {
    let secondary = h2_origin("secondary");
    let primary = h2_origin("primary");
    let run = |name: &str, primary_addr: SocketAddr| {
        let lb = LbServer::start_file(
            "lb.toml",
            &h2_group(primary_addr, secondary.addr()),
            &[],
            "info",
        );
        for i in 0..20 {
            let r = get(lb.addr, &format!("/{name}/h1/{i}"));
            assert_eq!(
                (r.status, r.header("x-origin")),
                (200, Some("secondary")),
                "{name}: {}",
                r.header("x-lb-attempts").unwrap_or("-")
            );
        }
        let (ok, twoxx, text) = h2load(lb.addr, &format!("/{name}/h2"), 200);
        assert_eq!((ok, twoxx), (200, 200), "{name}:\n{text}");
    };
    primary.set_forced_status(Some(503));
    run("status", primary.addr());
    primary.set_forced_status(None);
    primary.set_fault(Some(Fault::Reset)); // RST_STREAM(INTERNAL_ERROR)
    run("reset", primary.addr());
    primary.set_fault(Some(Fault::Close)); // RST_STREAM(REFUSED_STREAM)
    run("refused-stream", primary.addr());
    primary.set_fault(Some(Fault::Hang));
    run("timeout", primary.addr());
    primary.set_fault(None);
    run("refused", free_port());
    // And the primary, healthy again, serves over its multiplexed connection.
    let lb = LbServer::start_file(
        "lb.toml",
        &h2_group(primary.addr(), secondary.addr()),
        &[],
        "info",
    );
    let before = primary.connections();
    let (ok, _, text) = h2load(lb.addr, "/healthy", 200);
    assert_eq!(ok, 200, "{text}");
    assert!(
        primary.connections() - before <= 1,
        "one HTTP/2 connection per worker carries every stream ({} opened)",
        primary.connections() - before
    );
}

/// A stream the origin refused (REFUSED_STREAM, GOAWAY) was not processed: even a POST
/// moves on. A stream reset after it was taken (INTERNAL_ERROR) may have been
/// processed: a POST is not repeated.
#[test]
fn refused_streams_fail_over_any_method_and_reset_ones_only_idempotent_ones() {
    let secondary = h2_origin("secondary");
    let primary = h2_origin("primary");
    let lb = LbServer::start_file(
        "lb.toml",
        &h2_group(primary.addr(), secondary.addr()),
        &[],
        "info",
    );
    let post = |path: &str| {
        let mut c = lb_tests::http::Client::connect(lb.addr);
        c.request(&format!(
            "POST {path} HTTP/1.1\r\nHost: lb.test\r\nContent-Length: 5\r\n\r\nhello"
        ))
    };
    primary.set_fault(Some(Fault::Close)); // RST_STREAM(REFUSED_STREAM)
    let r = post("/echo");
    assert_eq!(
        (r.status, r.header("x-origin")),
        (200, Some("secondary")),
        "{:?} {}",
        r.header("x-lb-attempts"),
        r.text(),
    );
    assert_eq!(r.text(), "hello");
    // A GOAWAY before the stream was processed: the POST moves on too.
    primary.set_fault(Some(Fault::GoAway));
    let lb2 = LbServer::start_file(
        "lb.toml",
        &h2_group(primary.addr(), secondary.addr()),
        &[],
        "info",
    );
    let mut c = lb_tests::http::Client::connect(lb2.addr);
    let r = c.request("POST /echo HTTP/1.1\r\nHost: lb.test\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(
        (r.status, r.header("x-origin")),
        (200, Some("secondary")),
        "{:?}",
        r.header("x-lb-attempts")
    );
    primary.set_fault(Some(Fault::Reset)); // RST_STREAM(INTERNAL_ERROR): maybe processed
    let before = secondary.requests();
    let r = post("/echo");
    assert_eq!(r.status, 502, "{:?}", r.header("x-lb-attempts"));
    assert_eq!(secondary.requests(), before, "the POST was not repeated");
    // GET moves on after a reset.
    let r = get(lb.addr, "/x");
    assert_eq!(r.header("x-origin"), Some("secondary"));
}

/// HTTP/2 over TLS to an origin by ALPN; an origin that only speaks HTTP/1.1 over TLS is
/// a connect failure (tls-error) that fails over.
#[test]
fn https_origins_are_reached_over_h2_by_alpn() {
    let ca = TestCa::new("h2 origin CA");
    let cert = ca.issue(&["origin.test"], Validity::Current);
    let mut h2_tls = (*cert.origin_config()).clone();
    h2_tls.alpn_protocols = vec![b"h2".to_vec()];
    let h2 = Origin::start_h2_tls(
        "h2",
        "127.0.0.1:0".parse().unwrap(),
        std::sync::Arc::new(h2_tls),
    )
    .unwrap();
    let h1 = Origin::start_tls("h1", "127.0.0.1:0".parse().unwrap(), cert.origin_config()).unwrap();
    let dir = TestDir::new();
    let ca_path = dir.write("ca.pem", &ca.pem());
    let toml = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n\n[observability]\nattempts_header = true\n\n\
         [origin_tls]\nca_files = [\"{}\"]\nsystem_roots = false\n\n\
         [[origins]]\nid = \"h1-only\"\naddress = \"{}\"\nprotocol = \"https-only\"\nprotocol_version = \"h2\"\ntls_server_name = \"origin.test\"\n\n\
         [[origins]]\nid = \"h2\"\naddress = \"{}\"\nprotocol = \"https-only\"\nprotocol_version = \"h2\"\ntls_server_name = \"origin.test\"\n\n\
         [[origin_groups]]\nid = \"site\"\nmembers = [\"h1-only\", \"h2\"]\nfailover_status_codes = [502]\n\n\
         [default_behavior]\ntarget = \"site\"\n\n[kernel]\nenabled = false\n",
        ca_path.display(),
        h1.addr(),
        h2.addr()
    );
    let lb = LbServer::start_in(dir, "lb.toml", &toml, &[], "info");
    let r = get(lb.addr, "/headers");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-origin"), Some("h2"));
    assert!(
        r.header("x-lb-attempts")
            .unwrap()
            .starts_with("h1-only:tls-error"),
        "{:?}",
        r.header("x-lb-attempts")
    );
    let seen = r.text();
    assert!(seen.contains("HTTP/2"), "{seen}");
    assert!(
        seen.contains("https://origin.test:")
            || seen.contains(":authority")
            || seen.contains("GET https://"),
        "{seen}"
    );
    // A body without a length, with trailers, reaches an HTTP/1.1 client chunked.
    let r = get(lb.addr, "/t?size=100000&trailers=1");
    assert_eq!((r.status, r.body.len()), (200, 100_000));
    assert_eq!(r.trailers, [("x-trailer".to_owned(), "end".to_owned())]);
}

#[test]
fn h2_needs_https_and_h2c_needs_http_in_the_config() {
    let toml = "[[origins]]\nid = \"o\"\naddress = \"127.0.0.1:9\"\nprotocol_version = \"h2\"\n\n[default_behavior]\ntarget = \"o\"\n";
    let dir = TestDir::new();
    let path = dir.write("lb.toml", toml);
    let out = Command::new(lb_tests::process::lb_binary())
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("origins[0].protocol_version") && err.contains("lb.toml:4"),
        "{err}"
    );
}

/// A shutdown sends GOAWAY at once; the stream in flight still gets its whole response.
#[test]
fn a_drain_sends_goaway_and_finishes_the_streams_in_flight() {
    let ca = TestCa::new("h2 test CA");
    let o = origin("o");
    let admin = free_port();
    let mut lb = start_lb(&ca, admin, &one_origin(o.addr()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/h2_probe.py");
    let probe = Command::new("/usr/bin/python3")
        .arg(&script)
        .args([
            &lb.addr.ip().to_string(),
            &lb.addr.port().to_string(),
            "drain",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The request is at the origin (its answer is delayed 1 s) when the drain starts.
    wait_for(
        "the request to reach the origin",
        Duration::from_secs(5),
        || (o.requests() >= 1).then_some(()),
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(lb.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = probe.wait_with_output().unwrap();
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let frames = log.as_array().unwrap();
    let at = |kind: &str| frames.iter().position(|f| f["type"] == kind);
    let goaway = at("GOAWAY").unwrap_or_else(|| panic!("no GOAWAY: {log}"));
    assert_eq!(frames[goaway]["code"], 0, "GOAWAY NO_ERROR: {log}");
    let headers = at("HEADERS").unwrap_or_else(|| panic!("no response: {log}"));
    assert_eq!(frames[headers]["status"], 200, "{log}");
    assert!(
        goaway < headers,
        "GOAWAY comes at once, before the response: {log}"
    );
    assert!(
        frames.iter().any(|f| f["stream"] == 1 && f["end"] == true),
        "the response ends whole: {log}"
    );
    assert!(lb.process.terminate(Duration::from_secs(10)), "lb exits");
}

/// A reload that changes `[http2]` sends GOAWAY to existing connections (their SETTINGS
/// are the old ones) once they next start a stream, which is still served.
#[test]
fn a_reload_that_changes_http2_settings_sends_goaway() {
    use std::io::{BufRead, Write};
    let ca = TestCa::new("h2 test CA");
    let o = origin("o");
    let admin = free_port();
    let lb = start_lb(&ca, admin, &one_origin(o.addr()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/h2_probe.py");
    let mut probe = Command::new("/usr/bin/python3")
        .arg(&script)
        .args([
            &lb.addr.ip().to_string(),
            &lb.addr.port().to_string(),
            "reload",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(probe.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    // The same config with a different stream limit, then SIGHUP.
    let path = lb.dir.path.join("lb.toml");
    let toml = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!("[http2]\nmax_concurrent_streams = 50\n\n{toml}"),
    )
    .unwrap();
    let before = get(admin, "/metrics").text();
    lb.reload();
    drop(before);
    probe.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let r: serde_json::Value = serde_json::from_str(rest.trim()).unwrap();
    let status = |log: &serde_json::Value| {
        log.as_array()
            .unwrap()
            .iter()
            .find(|f| f["type"] == "HEADERS")
            .map(|f| f["status"].clone())
    };
    assert_eq!(status(&r["first"]), Some(200.into()), "{r}");
    assert_eq!(
        status(&r["second"]),
        Some(200.into()),
        "the stream after the reload is served: {r}"
    );
    let goaway = r["second"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["type"] == "GOAWAY")
        .unwrap_or_else(|| panic!("no GOAWAY after the reload: {r}"))
        .clone();
    assert_eq!(goaway["code"], 0, "{r}");
    let _ = probe.wait();
}

/// Active checks of an HTTP/2 origin speak HTTP/2: its /health status takes it out and
/// brings it back.
#[test]
fn health_checks_speak_http2_to_http2_origins() {
    let primary = h2_origin("primary");
    let secondary = h2_origin("secondary");
    let check = "[origins.health_check]\npath = \"/health\"\ninterval = \"100ms\"\nfast_interval = \"50ms\"\ntimeout = \"500ms\"\nhealthy_threshold = 1\nunhealthy_threshold = 1\n";
    let toml = h2_group(primary.addr(), secondary.addr()).replacen(
        "\n\n[[origins]]\nid = \"secondary\"",
        &format!("\n{check}\n[[origins]]\nid = \"secondary\""),
        1,
    );
    assert!(toml.contains("[origins.health_check]"), "{toml}");
    let lb = LbServer::start_file("lb.toml", &toml, &[], "info");
    let served_by = || get(lb.addr, "/who").header("x-origin").map(str::to_owned);
    wait_for(
        "the checked primary to serve",
        Duration::from_secs(5),
        || (served_by().as_deref() == Some("primary")).then_some(()),
    );
    primary.set_health_status(503);
    wait_for(
        "the check to take the primary out",
        Duration::from_secs(5),
        || {
            let r = get(lb.addr, "/who");
            (r.header("x-lb-attempts")
                .is_some_and(|a| a.starts_with("secondary:")))
            .then_some(())
        },
    );
    primary.set_health_status(200);
    wait_for("the check to bring it back", Duration::from_secs(5), || {
        (served_by().as_deref() == Some("primary")).then_some(())
    });
}

/// Request trailers from an HTTP/2 client reach an HTTP/2 origin (through the exchange's
/// chunked HTTP/1.1 view of the stream).
#[test]
fn request_trailers_reach_http2_origins() {
    let primary = h2_origin("primary");
    let secondary = h2_origin("secondary");
    let lb = LbServer::start_file(
        "lb.toml",
        &h2_group(primary.addr(), secondary.addr()),
        &[],
        "info",
    );
    let r = probe(lb.addr, "request-trailers", &[]);
    assert_eq!(r["responses"]["1"], 200, "{r}");
    assert_eq!(r["bodies"]["1"], "x-checksum: abc123\n", "{r}");
}

/// An HTTP/2 origin connection no stream used for the origin's `keepalive_timeout` is let
/// go; the next request opens a new one.
#[test]
fn idle_http2_origin_connections_end_after_the_keepalive_timeout() {
    let primary = h2_origin("primary");
    let secondary = h2_origin("secondary");
    let toml = h2_group(primary.addr(), secondary.addr()).replacen(
        "protocol_version = \"h2c\"\n",
        "protocol_version = \"h2c\"\nkeepalive_timeout = \"300ms\"\n",
        1,
    );
    let lb = LbServer::start_file("lb.toml", &toml, &[], "info");
    for _ in 0..3 {
        assert_eq!(get(lb.addr, "/a").header("x-origin"), Some("primary"));
    }
    assert_eq!(primary.connections(), 1, "one connection carries them");
    // The idle sweep runs every second.
    std::thread::sleep(Duration::from_millis(2300));
    assert_eq!(get(lb.addr, "/b").header("x-origin"), Some("primary"));
    assert_eq!(
        primary.connections(),
        2,
        "a new connection after the idle one ended"
    );
}

/// A connection that opens no stream for `limits.idle_timeout` gets GOAWAY and is closed.
#[test]
fn an_idle_http2_connection_gets_goaway_at_the_idle_timeout() {
    let ca = TestCa::new("h2 test CA");
    let o = origin("o");
    let admin = free_port();
    let rest = format!(
        "[limits]\nidle_timeout = \"1s\"\n\n{}",
        one_origin(o.addr())
    );
    let lb = start_lb(&ca, admin, &rest);
    let r = probe(lb.addr, "idle", &[]);
    let frames = r["frames"].as_array().unwrap();
    let goaway = frames
        .iter()
        .find(|f| f["type"] == "GOAWAY")
        .unwrap_or_else(|| panic!("no GOAWAY: {r}"));
    assert_eq!(goaway["code"], 0, "{r}");
    assert_eq!(frames.last().unwrap()["type"], "EOF", "then the close: {r}");
    let seconds = r["seconds"].as_f64().unwrap();
    assert!((0.9..4.0).contains(&seconds), "{r}");
    // Nothing is in flight: closed at once, without waiting for a PING's answer.
    assert!(r["closed_after"].as_f64().unwrap() < seconds + 1.0, "{r}");
}
