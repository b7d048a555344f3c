//! Origins configured by name, resolved through a DNS server the test runs on loopback:
//! lb follows a record's TTL, uses every address a name has, starts and serves when a
//! name does not resolve (that origin is down, reason DNS) and takes the origin into use
//! once it does, all without a restart. `lb check` needs no network; `--check-dns` and
//! `--resolve` resolve as `lb run` would.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use lb_origin::Origin;
use lb_tests::{
    dns::DnsServer,
    free_port,
    http::get,
    process::{LbServer, TestDir, lb, wait_for},
};

/// An origin answering as `name` on `ip` at `port` (loopback: 127.0.0.0/8).
fn origin_at(name: &str, ip: &str, port: u16) -> Origin {
    Origin::start(name, SocketAddr::new(ip.parse().unwrap(), port)).unwrap()
}

fn dns_table(dns: &DnsServer) -> String {
    format!(
        "[dns]\nservers = [\"{}\"]\nmin_ttl = \"1s\"\nretry = \"200ms\"\ntimeout = \"500ms\"\n",
        dns.addr
    )
}

fn origins_doc(admin: SocketAddr) -> serde_json::Value {
    serde_json::from_str(&get(admin, "/origins").text()).unwrap()
}

/// The record's TTL drives re-resolution: a moved name is followed within about a TTL,
/// with no failed request, and without a query per request. Every address of the name
/// is used: the first one refuses connections, so connects move on to the next.
#[test]
fn a_name_follows_its_ttl_and_uses_every_address() {
    let dns = DnsServer::start();
    let port = free_port().port();
    let first = origin_at("first", "127.0.0.3", port);
    // 127.0.0.2:port refuses: nothing listens there.
    dns.set("app.lb.test", &["127.0.0.2", "127.0.0.3"], 1);
    let admin = free_port();
    let toml = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n[admin]\naddress = \"{admin}\"\n\
         [[origins]]\nid = \"app\"\naddress = \"app.lb.test:{port}\"\n[kernel]\nenabled = false\n{}",
        dns_table(&dns)
    );
    let lb = LbServer::start_file("lb.toml", &toml, &[], "info");
    for i in 0..20 {
        let r = get(lb.addr, &format!("/a{i}"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), format!("first GET /a{i}\n"));
    }
    let doc = origins_doc(admin);
    let app = &doc["origins"][0];
    assert_eq!(app["dns"]["name"], "app.lb.test", "{doc}");
    assert_eq!(
        app["dns"]["addresses"],
        serde_json::json!(["127.0.0.2", "127.0.0.3"]),
        "{doc}"
    );
    assert_eq!(app["state"], "healthy", "{doc}");

    // The name moves to another address (TTL 1 s): followed without a failed request.
    let second = origin_at("second", "127.0.0.4", port);
    let queries_before = dns.queries("app.lb.test");
    dns.set("app.lb.test", &["127.0.0.4"], 1);
    let moved_at = Instant::now();
    let mut served = 0;
    wait_for(
        "lb to follow the moved name",
        Duration::from_secs(5),
        || {
            let r = get(lb.addr, "/moved");
            assert_eq!(r.status, 200, "{}", r.text());
            served += 1;
            std::thread::sleep(Duration::from_millis(20));
            r.text().starts_with("second").then_some(())
        },
    );
    let took = moved_at.elapsed();
    assert!(
        took < Duration::from_millis(2_500),
        "followed after {took:?}"
    );
    // About one lookup per TTL (A and AAAA each), not one per request.
    std::thread::sleep(Duration::from_secs(2));
    let queries = dns.queries("app.lb.test") - queries_before;
    assert!(
        (2..=16).contains(&queries),
        "{queries} queries in about {:?} with a 1 s TTL ({served} requests)",
        moved_at.elapsed()
    );
    drop(first);

    // The name stops resolving: its last addresses are held (dns.hold, 30 s by
    // default), so a DNS outage does not take a healthy origin down.
    dns.remove("app.lb.test");
    std::thread::sleep(Duration::from_millis(1_500));
    for _ in 0..10 {
        assert_eq!(get(lb.addr, "/held").text(), "second GET /held\n");
    }
    let doc = origins_doc(admin);
    assert!(
        doc["origins"][0]["dns"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("NXDOMAIN")),
        "{doc}"
    );
    assert_eq!(doc["origins"][0]["state"], "healthy", "{doc}");
    drop(second);
}

/// A name that does not resolve at start is a warning, not a failure: lb starts, the
/// origin is down (reason DNS) and its group's other member serves; once the name
/// resolves, the origin comes back without a restart.
#[test]
fn a_name_that_starts_unresolvable_is_down_until_it_resolves() {
    let dns = DnsServer::start();
    let port = free_port().port();
    let later = origin_at("later", "127.0.0.5", port);
    let fallback = lb_origin::Origin::start("fallback", "127.0.0.1:0".parse().unwrap()).unwrap();
    let admin = free_port();
    let toml = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n[admin]\naddress = \"{admin}\"\n\
         [health]\ntcp_probe_interval = \"100ms\"\nslow_start = \"0s\"\n\
         [[origins]]\nid = \"later\"\naddress = \"later.lb.test:{port}\"\n\
         [[origins]]\nid = \"fallback\"\naddress = \"{}\"\n\
         [[origin_groups]]\nid = \"g\"\nmembers = [\"later\", \"fallback\"]\nfailover_status_codes = [502]\n\
         [default_behavior]\ntarget = \"g\"\n[kernel]\nenabled = false\n{}",
        fallback.addr(),
        dns_table(&dns)
    );
    let lb = LbServer::start_file("lb.toml", &toml, &[], "info");
    assert!(
        lb.stderr().contains("origin name does not resolve"),
        "{}",
        lb.stderr()
    );
    for i in 0..10 {
        let r = get(lb.addr, &format!("/f{i}"));
        assert_eq!(r.text(), format!("fallback GET /f{i}\n"));
    }
    let doc = origins_doc(admin);
    let state = &doc["origins"][0];
    assert_eq!(state["state"], "down", "{doc}");
    assert!(state["reason"].as_str().unwrap().contains("DNS"), "{doc}");
    assert_eq!(state["address"], "unresolved", "{doc}");

    dns.set("later.lb.test", &["127.0.0.5"], 60);
    wait_for(
        "the resolved origin to serve",
        Duration::from_secs(5),
        || {
            let r = get(lb.addr, "/back");
            assert_eq!(r.status, 200, "{}", r.text());
            std::thread::sleep(Duration::from_millis(20));
            r.text().starts_with("later").then_some(())
        },
    );
    let doc = origins_doc(admin);
    assert_eq!(
        doc["origins"][0]["dns"]["addresses"],
        serde_json::json!(["127.0.0.5"])
    );
    drop(later);
}

/// `lb check` resolves nothing (it passes with names no DNS knows, and fast);
/// `--check-dns` resolves with the config's `[dns]`, and `--resolve` fills names in.
#[test]
fn check_is_offline_unless_asked_to_resolve() {
    let dns = DnsServer::start();
    dns.set("known.lb.test", &["127.0.0.1"], 30);
    let dir = TestDir::new();
    let config = dir.write(
        "lb.toml",
        &format!(
            "[[origins]]\nid = \"known\"\naddress = \"known.lb.test:80\"\n\
             [[origins]]\nid = \"unknown\"\naddress = \"unknown.lb.test:80\"\n\
             [default_behavior]\ntarget = \"known\"\n{}",
            dns_table(&dns)
        ),
    );
    let config = config.to_str().unwrap();
    let started = Instant::now();
    let offline = lb(&["check", "--config", config]);
    assert!(offline.status.success(), "{offline:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(dns.queries("unknown.lb.test"), 0, "lb check asked DNS");

    let online = lb(&["check", "--config", config, "--check-dns"]);
    let stderr = String::from_utf8_lossy(&online.stderr);
    assert!(!online.status.success(), "{stderr}");
    assert!(
        stderr.contains("unknown.lb.test") && stderr.contains("NXDOMAIN"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&online.stdout).contains("known.lb.test: 127.0.0.1"));

    let mapped = lb(&[
        "check",
        "--config",
        config,
        "--check-dns",
        "--resolve",
        "unknown.lb.test=127.0.0.7,::1",
    ]);
    let stdout = String::from_utf8_lossy(&mapped.stdout);
    assert!(mapped.status.success(), "{mapped:?}");
    assert!(
        stdout.contains("unknown.lb.test: 127.0.0.7, ::1"),
        "{stdout}"
    );

    let bad = lb(&["check", "--config", config, "--resolve", "x.test=not-an-ip"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not an IP address"));
}
