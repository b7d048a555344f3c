//! TLS on both sides with certificates generated per test (rcgen): the HTTPS listener
//! (SNI, versions, ALPN, reload), viewer protocol policies, HTTPS origins (verification,
//! pooling, failover on a bad certificate), and every viewer/origin combination.

use std::{net::SocketAddr, time::Duration};

use lb_origin::Origin;
use lb_tests::{
    http::{Client, Response},
    process::{LbServer, TestDir, wait_for},
    tls::{IssuedCert, TestCa, Validity, client_config_for},
};

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// An HTTPS lb-origin named `name` whose certificate `ca` issued for `names`.
fn https_origin(name: &str, ca: &TestCa, names: &[&str], validity: Validity) -> Origin {
    Origin::start_tls(name, loopback(), ca.issue(names, validity).origin_config()).unwrap()
}

/// A free loopback address (for the admin API).
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Asks `lb` to reload its config.
fn sighup(lb: &LbServer) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(lb.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
}

/// GET `path` over a new TLS connection to lb, SNI `name`.
fn tls_get(lb: &LbServer, ca: &TestCa, name: &str, path: &str) -> Response {
    let mut c = Client::connect_tls(
        lb.tls_addr.expect("lb has an HTTPS listener"),
        name,
        ca.client_config(),
    )
    .unwrap_or_else(|e| panic!("TLS handshake with lb as {name}: {e}"));
    c.request(&format!("GET {path} HTTP/1.1\r\nHost: {name}\r\n\r\n"))
}

/// lb with an HTTPS listener serving `certs` (the first is the default) and `rest` of the
/// config, all files in one directory.
fn start_lb(certs: &[(&str, &IssuedCert)], extra_files: &[(&str, &str)], rest: &str) -> LbServer {
    let dir = TestDir::new();
    let mut tls = String::from("[tls]\naddress = \"127.0.0.1:0\"\n");
    for (name, cert) in certs {
        cert.write(&dir, name);
        tls.push_str(&format!(
            "[[tls.certificates]]\ncert = \"{name}.pem\"\nkey = \"{name}.key\"\n"
        ));
    }
    for (name, contents) in extra_files {
        dir.write(name, contents);
    }
    let toml = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n\n{tls}\n{rest}\n[kernel]\nenabled = false\n"
    );
    LbServer::start_in(dir, "lb.toml", &toml, &[], "info")
}

#[test]
fn https_viewer_to_http_origin_with_keep_alive_tls12_and_tls13() {
    let ca = TestCa::new("lb test CA");
    let cert = ca.issue(&["lb.test", "127.0.0.1"], Validity::Current);
    let origin = Origin::start("plain", loopback()).unwrap();
    let lb = start_lb(
        &[("lb", &cert)],
        &[],
        &format!(
            "[[origins]]\nid = \"plain\"\naddress = \"{}\"\n",
            origin.addr()
        ),
    );
    let mut c = Client::connect_tls(lb.tls_addr.unwrap(), "lb.test", ca.client_config()).unwrap();
    let info = c.tls().unwrap().clone();
    assert_eq!(info.version, rustls::ProtocolVersion::TLSv1_3);
    assert_eq!(info.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(info.leaf, cert.der());
    for i in 0..3 {
        let r = c.request(&format!(
            "GET /headers?n={i} HTTP/1.1\r\nHost: lb.test\r\n\r\n"
        ));
        assert_eq!(r.status, 200);
        let seen = r.text().to_ascii_lowercase();
        assert!(
            seen.contains("x-forwarded-proto: https"),
            "origin saw:\n{seen}"
        );
    }
    // A 64 KiB body each way over the same TLS connection.
    let body = vec![b'x'; 65_536];
    let mut raw = format!(
        "POST /echo HTTP/1.1\r\nHost: lb.test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    c.send(&raw);
    let r = c.read_response(false);
    assert_eq!((r.status, r.body.len()), (200, body.len()));
    // Connection: close ends with close_notify, not a bare FIN.
    let r = c.request("GET / HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(c.clean_eof(), "close_notify before the FIN");
    // TLS 1.2 alone works too, and by IP (no SNI) the default certificate answers.
    let tls12 = client_config_for(&ca.pem(), &[&rustls::version::TLS12]);
    let mut c = Client::connect_tls(lb.tls_addr.unwrap(), "127.0.0.1", tls12).unwrap();
    assert_eq!(c.tls().unwrap().version, rustls::ProtocolVersion::TLSv1_2);
    let r = c.request("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(r.status, 200);
    // The plain listener still serves plain HTTP.
    assert_eq!(lb_tests::http::get(lb.addr, "/").status, 200);
}

#[test]
fn sni_chooses_between_certificates() {
    let ca = TestCa::new("lb test CA");
    let a = ca.issue(&["a.test"], Validity::Current);
    let b = ca.issue(&["b.test", "*.b.test"], Validity::Current);
    let origin = Origin::start("o", loopback()).unwrap();
    let lb = start_lb(
        &[("a", &a), ("b", &b)],
        &[],
        &format!("[[origins]]\nid = \"o\"\naddress = \"{}\"\n", origin.addr()),
    );
    let addr = lb.tls_addr.unwrap();
    let leaf = |name: &str| {
        Client::connect_tls(addr, name, ca.client_config())
            .unwrap_or_else(|e| panic!("handshake as {name}: {e}"))
            .tls()
            .unwrap()
            .leaf
            .clone()
    };
    assert_eq!(leaf("a.test"), a.der());
    assert_eq!(leaf("b.test"), b.der());
    assert_eq!(leaf("www.b.test"), b.der(), "wildcard SAN");
    // An unknown name gets the default (first) certificate, which the client rejects.
    let err = Client::connect_tls(addr, "c.test", ca.client_config())
        .err()
        .expect("c.test must not verify");
    assert!(err.contains("not valid for name"), "{err}");
    assert_eq!(tls_get(&lb, &ca, "b.test", "/").status, 200);
}

#[test]
fn viewer_protocol_policies_redirect_and_refuse_plain_http() {
    let ca = TestCa::new("lb test CA");
    let cert = ca.issue(&["shop.test"], Validity::Current);
    let origin = Origin::start("o", loopback()).unwrap();
    let lb = start_lb(
        &[("shop", &cert)],
        &[],
        &format!(
            r#"[[origins]]
id = "o"
address = "{}"

[[behaviors]]
path_pattern = "/secure/*"
target = "o"
viewer_protocol_policy = "https-only"

[[behaviors]]
path_pattern = "/open/*"
target = "o"
viewer_protocol_policy = "allow-all"

[default_behavior]
target = "o"
viewer_protocol_policy = "redirect-to-https"
"#,
            origin.addr()
        ),
    );
    let https_port = lb.tls_addr.unwrap().port();
    let mut c = Client::connect(lb.addr);
    let r = c.request("GET /cart?id=7 HTTP/1.1\r\nHost: shop.test:8080\r\n\r\n");
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some(format!("https://shop.test:{https_port}/cart?id=7").as_str())
    );
    // The connection stays usable: https-only answers 403, allow-all proxies.
    let r = c.request("GET /secure/account HTTP/1.1\r\nHost: shop.test\r\n\r\n");
    assert_eq!(r.status, 403);
    assert!(r.text().contains("HTTPS only"), "{}", r.text());
    let r = c.request("GET /open/page HTTP/1.1\r\nHost: shop.test\r\n\r\n");
    assert_eq!((r.status, r.header("x-origin")), (200, Some("o")));
    // None of the refused requests reached the origin.
    assert_eq!(origin.requests(), 1);
    // Over HTTPS every behavior proxies.
    for path in ["/cart", "/secure/account", "/open/page"] {
        assert_eq!(tls_get(&lb, &ca, "shop.test", path).status, 200, "{path}");
    }
}

/// lb with an HTTPS origin `id` (https-only, SNI `name`) trusting `ca_file`.
fn https_origin_config(origins: &[(&str, &Origin, &str)], ca_file: &str) -> String {
    let mut toml = format!("[origin_tls]\nca_files = [\"{ca_file}\"]\nsystem_roots = false\n\n");
    for (id, origin, name) in origins {
        toml.push_str(&format!(
            "[[origins]]\nid = \"{id}\"\naddress = \"{}\"\nprotocol = \"https-only\"\ntls_server_name = \"{name}\"\nconnect_timeout = \"1s\"\nconnection_attempts = 1\n\n",
            origin.addr()
        ));
    }
    toml
}

#[test]
fn http_viewer_to_https_origin_reuses_tls_connections() {
    let ca = TestCa::new("origin CA");
    let origin_cert = ca.issue(&["origin-a.test"], Validity::Current);
    let origin = Origin::start_tls("secure", loopback(), origin_cert.origin_config()).unwrap();
    let dir = TestDir::new();
    dir.write("origin-ca.pem", &ca.pem());
    let toml = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n\n{}\n[kernel]\nenabled = false\n",
        https_origin_config(&[("secure", &origin, "origin-a.test")], "origin-ca.pem")
    );
    let lb = LbServer::start_in(dir, "lb.toml", &toml, &[], "info");
    let mut c = Client::connect(lb.addr);
    for i in 0..20 {
        let r = c.request(&format!(
            "GET /headers?i={i} HTTP/1.1\r\nHost: shop\r\n\r\n"
        ));
        assert_eq!((r.status, r.header("x-origin")), (200, Some("secure")));
        assert!(
            r.text()
                .to_ascii_lowercase()
                .contains("x-forwarded-proto: http\r\n")
        );
    }
    // One TLS connection, one handshake, for all twenty requests.
    assert_eq!(origin.connections(), 1);
    // Chunked upload streamed through to the TLS origin.
    let mut raw =
        b"POST /count HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..40 {
        raw.extend_from_slice(b"2000\r\n");
        raw.extend_from_slice(&[b'z'; 0x2000]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    c.send(&raw);
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), format!("received {} bytes\n", 40 * 0x2000));
}

#[test]
fn https_viewer_to_https_origin_and_match_viewer() {
    let ca = TestCa::new("shared CA");
    let lb_cert = ca.issue(&["lb.test"], Validity::Current);
    let origin_cert = ca.issue(&["origin.test"], Validity::Current);
    let https = Origin::start_tls("https-side", loopback(), origin_cert.origin_config()).unwrap();
    let http = Origin::start("http-side", loopback()).unwrap();
    // match-viewer: plain viewers reach the HTTP port, TLS viewers the HTTPS port.
    let lb = start_lb(
        &[("lb", &lb_cert)],
        &[("ca.pem", &ca.pem())],
        &format!(
            "[origin_tls]\nca_files = [\"ca.pem\"]\nsystem_roots = false\n\n[[origins]]\nid = \"both\"\naddress = \"{}\"\nhttps_port = {}\nprotocol = \"match-viewer\"\ntls_server_name = \"origin.test\"\n",
            http.addr(),
            https.addr().port()
        ),
    );
    let r = tls_get(&lb, &ca, "lb.test", "/x");
    assert_eq!((r.status, r.header("x-origin")), (200, Some("https-side")));
    let r = lb_tests::http::get(lb.addr, "/x");
    assert_eq!((r.status, r.header("x-origin")), (200, Some("http-side")));
    // A WebSocket-style upgrade tunnels through TLS on both sides.
    let mut c = Client::connect_tls(lb.tls_addr.unwrap(), "lb.test", ca.client_config()).unwrap();
    let r = c.request(
        "GET /ws HTTP/1.1\r\nHost: lb.test\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    assert_eq!(r.status, 101);
    let frame = vec![7u8; 70_000];
    c.send(&frame);
    let echoed = c.read_exact_bytes(frame.len());
    assert_eq!(echoed, frame);
}

#[test]
fn untrusted_or_expired_origin_certificates_fail_over() {
    let trusted = TestCa::new("trusted CA");
    let stranger = TestCa::new("unknown CA");
    let untrusted = https_origin("untrusted", &stranger, &["origin.test"], Validity::Current);
    let expired = https_origin("expired", &trusted, &["origin.test"], Validity::Expired);
    let good = https_origin("good", &trusted, &["origin.test"], Validity::Current);
    let dir = TestDir::new();
    dir.write("ca.pem", &trusted.pem());
    let toml = format!(
        r#"[listener]
address = "127.0.0.1:0"
workers = 1

[observability]
attempts_header = true

{}
[[origin_groups]]
id = "g"
members = ["untrusted", "expired", "good"]
failover_status_codes = [502, 503]
always_try_primary = true

[[behaviors]]
path_pattern = "/alone/*"
target = "expired"

[default_behavior]
target = "g"

[kernel]
enabled = false
"#,
        https_origin_config(
            &[
                ("untrusted", &untrusted, "origin.test"),
                ("expired", &expired, "origin.test"),
                ("good", &good, "origin.test"),
            ],
            "ca.pem"
        )
    );
    let lb = LbServer::start_in(dir, "lb.toml", &toml, &[], "info");
    let r = lb_tests::http::get(lb.addr, "/page");
    assert_eq!((r.status, r.header("x-origin")), (200, Some("good")));
    let attempts = r.header("x-lb-attempts").unwrap();
    assert!(
        attempts.starts_with("untrusted:tls-error:") && attempts.contains(",expired:tls-error:"),
        "{attempts}"
    );
    // Alone, the expired origin is a 502 that says why; nothing was sent to either bad one.
    let r = lb_tests::http::get(lb.addr, "/alone/x");
    assert_eq!(r.status, 502);
    assert!(r.text().contains("certificate expired"), "{}", r.text());
    assert_eq!((untrusted.requests(), expired.requests()), (0, 0));
    // A name the certificate does not cover is refused the same way.
    let mismatch = https_origin("mismatch", &trusted, &["other.test"], Validity::Current);
    let dir = TestDir::new();
    dir.write("ca.pem", &trusted.pem());
    let toml = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n{}\n[kernel]\nenabled = false\n",
        https_origin_config(&[("mismatch", &mismatch, "origin.test")], "ca.pem")
    );
    let lb = LbServer::start_in(dir, "lb.toml", &toml, &[], "info");
    let r = lb_tests::http::get(lb.addr, "/");
    assert_eq!(r.status, 502);
    assert!(
        r.text().contains("not valid for the origin's name"),
        "{}",
        r.text()
    );
}

#[test]
fn certificates_reload_with_the_config_and_bad_files_are_refused() {
    let ca = TestCa::new("lb test CA");
    let first = ca.issue(&["lb.test"], Validity::Current);
    let second = ca.issue(&["lb.test"], Validity::Current);
    let origin = Origin::start("o", loopback()).unwrap();
    let lb = start_lb(
        &[("lb", &first)],
        &[],
        &format!("[[origins]]\nid = \"o\"\naddress = \"{}\"\n", origin.addr()),
    );
    let addr = lb.tls_addr.unwrap();
    let leaf = || {
        Client::connect_tls(addr, "lb.test", ca.client_config())
            .unwrap()
            .tls()
            .unwrap()
            .leaf
            .clone()
    };
    assert_eq!(leaf(), first.der());
    // A connection opened before the reload keeps working after it.
    let mut before = Client::connect_tls(addr, "lb.test", ca.client_config()).unwrap();
    second.write(&lb.dir, "lb");
    sighup(&lb);
    wait_for("the renewed certificate", Duration::from_secs(10), || {
        (leaf() == second.der()).then_some(())
    });
    let r = before.request("GET / HTTP/1.1\r\nHost: lb.test\r\n\r\n");
    assert_eq!(r.status, 200);
    // A broken key file is refused at reload, naming the file; the last good one stays.
    lb.dir.write("lb.key", "not a key\n");
    sighup(&lb);
    wait_for("the refused reload", Duration::from_secs(10), || {
        lb.stderr().contains("lb.key").then_some(())
    });
    let log = lb.stderr();
    let line = log.lines().rev().find(|l| l.contains("lb.key")).unwrap();
    assert!(line.contains("private key"), "{line}");
    assert_eq!(leaf(), second.der());
}

#[test]
fn lb_check_names_the_bad_certificate_file() {
    let ca = TestCa::new("lb test CA");
    let a = ca.issue(&["a.test"], Validity::Current);
    let b = ca.issue(&["b.test"], Validity::Current);
    let dir = TestDir::new();
    a.write(&dir, "a");
    dir.write("b.pem", &b.cert_pem);
    dir.write("b.key", &a.key_pem); // the wrong key
    let cfg = dir.write(
        "lb.toml",
        "[tls]\naddress = \"127.0.0.1:8443\"\n[[tls.certificates]]\ncert = \"a.pem\"\nkey = \"a.key\"\n[[tls.certificates]]\ncert = \"b.pem\"\nkey = \"b.key\"\n\n[[origins]]\nid = \"o\"\naddress = \"127.0.0.1:9\"\n",
    );
    let out = lb_tests::process::lb(&["check", "--config", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("b.key") && err.contains("does not match"),
        "{err}"
    );
    let missing = dir.write(
        "missing.toml",
        "[tls]\naddress = \"127.0.0.1:8443\"\n[[tls.certificates]]\ncert = \"nope.pem\"\nkey = \"a.key\"\n[[origins]]\nid = \"o\"\naddress = \"127.0.0.1:9\"\n",
    );
    let out = lb_tests::process::lb(&["check", "--config", missing.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("nope.pem"), "{err}");
    // The TLS flags `lb run` takes are checked the same way, and a good pair passes.
    let plain = dir.write(
        "plain.toml",
        "[[origins]]\nid = \"o\"\naddress = \"127.0.0.1:9\"\n",
    );
    let flags = |cert: &str, key: &str| {
        let (cert, key) = (dir.path.join(cert), dir.path.join(key));
        lb_tests::process::lb(&[
            "check",
            "--config",
            plain.to_str().unwrap(),
            "--tls-listen",
            "127.0.0.1:8443",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ])
    };
    let out = flags("b.pem", "b.key");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("b.key") && err.contains("does not match"),
        "{err}"
    );
    let out = flags("a.pem", "a.key");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn active_checks_of_https_origins_verify_their_certificates() {
    let trusted = TestCa::new("trusted CA");
    let stranger = TestCa::new("unknown CA");
    let good = https_origin("good", &trusted, &["origin.test"], Validity::Current);
    let bad = https_origin("bad", &stranger, &["origin.test"], Validity::Current);
    let admin = free_addr();
    let check = "[origins.health_check]\ninterval = \"100ms\"\nfast_interval = \"50ms\"\ntimeout = \"500ms\"\nunhealthy_threshold = 2\n\n";
    let dir = TestDir::new();
    dir.write("ca.pem", &trusted.pem());
    let mut origins = String::new();
    for (id, o) in [("good", &good), ("bad", &bad)] {
        origins.push_str(&format!(
            "[[origins]]\nid = \"{id}\"\naddress = \"{}\"\nprotocol = \"https-only\"\ntls_server_name = \"origin.test\"\n{check}",
            o.addr()
        ));
    }
    let toml = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n[admin]\naddress = \"{admin}\"\n[origin_tls]\nca_files = [\"ca.pem\"]\n\n{origins}[[origin_groups]]\nid = \"g\"\nmembers = [\"bad\", \"good\"]\nfailover_status_codes = [503]\n\n[default_behavior]\ntarget = \"g\"\n[kernel]\nenabled = false\n"
    );
    let lb = LbServer::start_in(dir, "lb.toml", &toml, &[], "info");
    let states = wait_for(
        "the untrusted origin to be down",
        Duration::from_secs(5),
        || {
            let doc: serde_json::Value =
                serde_json::from_str(&lb_tests::http::get(admin, "/origins").text()).ok()?;
            let state = |i: usize| doc["origins"][i]["state"].as_str().unwrap_or("").to_owned();
            (state(1) == "down").then(|| (state(0), state(1)))
        },
    );
    assert_eq!(states, ("healthy".to_owned(), "down".to_owned()));
    // The checks reached the trusted origin over TLS, the untrusted one never got a request.
    assert!(good.requests() > 0);
    assert_eq!(bad.requests(), 0);
    // Traffic goes straight to the healthy member.
    let r = lb_tests::http::get(lb.addr, "/");
    assert_eq!((r.status, r.header("x-origin")), (200, Some("good")));
}

#[test]
fn a_stalled_https_reader_costs_its_connection_not_the_worker() {
    let ca = TestCa::new("lb test CA");
    let cert = ca.issue(&["lb.test"], Validity::Current);
    let origin = Origin::start("o", loopback()).unwrap();
    let lb = start_lb(
        &[("lb", &cert)],
        &[],
        &format!(
            "[limits]\nbody_timeout = \"1s\"\n\n[[origins]]\nid = \"o\"\naddress = \"{}\"\n",
            origin.addr()
        ),
    );
    // 256 MiB that the client never reads: lb's write to it times out mid-body.
    let mut stalled =
        Client::connect_tls(lb.tls_addr.unwrap(), "lb.test", ca.client_config()).unwrap();
    stalled.send(b"GET /big?size=268435456 HTTP/1.1\r\nHost: lb.test\r\n\r\n");
    std::thread::sleep(Duration::from_millis(2500));
    // The one worker is still there, over TLS and plain HTTP.
    assert_eq!(tls_get(&lb, &ca, "lb.test", "/after").status, 200);
    assert_eq!(lb_tests::http::get(lb.addr, "/after").status, 200);
    let log = lb.stderr();
    assert!(!log.contains("panicked"), "{log}");
    drop(stalled);
}

#[test]
fn head_requests_get_lb_answers_without_a_body() {
    let origin = Origin::start("o", loopback()).unwrap();
    let lb = LbServer::start_file(
        "lb.toml",
        &format!(
            "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n[[origins]]\nid = \"o\"\naddress = \"{}\"\n[default_behavior]\ntarget = \"o\"\nviewer_protocol_policy = \"redirect-to-https\"\n[kernel]\nenabled = false\n",
            origin.addr()
        ),
        &[],
        "info",
    );
    let mut c = Client::connect(lb.addr);
    let r = c.request("HEAD /page HTTP/1.1\r\nHost: shop.test\r\n\r\n");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://shop.test/page"));
    assert!(r.body.is_empty());
    // The next response on the connection is read cleanly: no stray body bytes.
    let r = c.request("GET /other HTTP/1.1\r\nHost: shop.test\r\n\r\n");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://shop.test/other"));
}

#[test]
fn connections_opened_before_a_reload_are_not_reused_after_it() {
    let trusted = TestCa::new("trusted CA");
    let other = TestCa::new("other CA");
    let origin = https_origin("secure", &trusted, &["origin.test"], Validity::Current);
    let dir = TestDir::new();
    dir.write("trusted.pem", &trusted.pem());
    dir.write("other.pem", &other.pem());
    let config = |ca: &str| {
        format!(
            "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n\n{}\n[kernel]\nenabled = false\n",
            https_origin_config(&[("secure", &origin, "origin.test")], ca)
        )
    };
    let lb = LbServer::start_in(dir, "lb.toml", &config("trusted.pem"), &[], "info");
    // A slow request holds its origin connection across the reload.
    let slow_addr = lb.addr;
    let slow = std::thread::spawn(move || lb_tests::http::get(slow_addr, "/slow?delay_ms=1000"));
    std::thread::sleep(Duration::from_millis(300));
    // The new config trusts only a CA that did not issue the origin's certificate.
    lb.dir.write("lb.toml", &config("other.pem"));
    sighup(&lb);
    wait_for("the reload", Duration::from_secs(5), || {
        lb.stderr().contains("reloaded").then_some(())
    });
    // Another request while the slow one is in flight makes the worker switch to the new
    // config now (its idle pool is emptied then), so only the check-in rule decides what
    // happens to the slow exchange's connection. It fails: nothing trusts the origin now.
    assert_eq!(lb_tests::http::get(lb.addr, "/switch").status, 502);
    // The exchange that started before the reload finishes on its connection...
    assert_eq!(slow.join().unwrap().status, 200);
    // ...which is then closed, not pooled: the next request verifies under the new trust.
    let r = lb_tests::http::get(lb.addr, "/after");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("trusted CA"), "{}", r.text());
}

#[test]
fn an_expired_listener_certificate_is_reported_and_its_expiry_exported() {
    let ca = TestCa::new("lb test CA");
    let expired = ca.issue(&["lb.test"], Validity::Expired);
    let origin = Origin::start("o", loopback()).unwrap();
    let admin = free_addr();
    let lb = start_lb(
        &[("old", &expired)],
        &[],
        &format!(
            "[admin]\naddress = \"{admin}\"\n[[origins]]\nid = \"o\"\naddress = \"{}\"\n",
            origin.addr()
        ),
    );
    let log = lb.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("old.pem") && l.contains("has EXPIRED")),
        "{log}"
    );
    // lb serves it anyway; a verifying client refuses it, as it should.
    let err = Client::connect_tls(lb.tls_addr.unwrap(), "lb.test", ca.client_config())
        .err()
        .expect("an expired certificate must not verify");
    assert!(err.contains("expired"), "{err}");
    // 2021-01-01T00:00:00Z, the test certificate's notAfter.
    let metrics = lb_tests::http::get(admin, "/metrics").text();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("lb_tls_certificate_expiry_timestamp_seconds{"))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(
        line.contains("old.pem") && line.ends_with(" 1609459200"),
        "{line}"
    );
}
