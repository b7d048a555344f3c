//! Kernel signals that are right, through the real lb: only evidence the kernel validated
//! about connections to an origin may mark it down, and that evidence acts at once.
//!
//! - Origins that reset idle keep-alive connections (and one that resets after a 413) are
//!   never marked down, whatever lb's pool does.
//! - RSTs and ICMP unreachables forged from a namespace with the origin's address never
//!   mark it down.
//! - With passive detection effectively off and no health check, the kernel alone takes a
//!   crashed origin out for every worker within 10 ms of the first refused connect (and
//!   without kernel signals the same run keeps trying it).
//! - A black hole with CloudFront's default timeouts (3 × 10 s to connect, 30 s for the
//!   response) costs no GET more than 1.5 s, fails none, and after the first second no
//!   request waits on the primary: for fresh connects and for requests already in flight
//!   on pooled connections.

use std::{
    collections::HashMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use lb_origin::Origin;
use lb_tests::{
    LoopbackXdpLock, free_port,
    http::{Client, get},
    load::{Load, Sample},
    netns::VethNamespace,
    packets::{self, Flags},
    process::{LbServer, lb, wait_for},
    raw_origin::{RawOrigin, Step, ok},
    require_root, unique_pin_dir,
};

/// lb TOML: group `site` over `members` (failover on 5xx), kernel signals on with a pin
/// directory of its own, an admin API, the attempts header.
fn config(members: &[(&str, SocketAddr)], health: &str, admin: SocketAddr) -> String {
    config_pinned(members, health, admin, &unique_pin_dir())
}

fn config_pinned(
    members: &[(&str, SocketAddr)],
    health: &str,
    admin: SocketAddr,
    pin: &std::path::Path,
) -> String {
    let mut s = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 2\n\n[admin]\naddress = \"{admin}\"\n\n\
         [observability]\naccess_log = false\nattempts_header = true\n\n[health]\n{health}\n\n\
         [kernel]\npin_path = \"{}\"\n\n",
        pin.display()
    );
    for (id, addr) in members {
        s.push_str(&format!(
            "[[origins]]\nid = \"{id}\"\naddress = \"{addr}\"\nconnect_timeout = \"2s\"\nconnection_attempts = 1\n\n"
        ));
    }
    let ids: Vec<String> = members.iter().map(|(id, _)| format!("\"{id}\"")).collect();
    s.push_str(&format!(
        "[[origin_groups]]\nid = \"site\"\nmembers = [{}]\nfailover_status_codes = [500, 502, 503, 504]\n\n\
         [default_behavior]\ntarget = \"site\"\n",
        ids.join(", ")
    ));
    s
}

/// `GET /origins` from the admin API, as JSON.
fn origins(admin: SocketAddr) -> serde_json::Value {
    let body = get(admin, "/origins").text();
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/origins: {e}: {body}"))
}

fn origin_doc<'a>(doc: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    doc["origins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == id)
        .unwrap_or_else(|| panic!("origin {id} in {doc}"))
}

fn attempted(attempts: &str, origin: &str) -> bool {
    attempts
        .split(',')
        .any(|a| a.starts_with(&format!("{origin}:")))
}

#[test]
fn idle_resets_bursts_and_resets_after_a_413_never_mark_a_healthy_origin_down() {
    if !require_root("idle_resets_... (kernel signals)") {
        return;
    }
    let _lo = LoopbackXdpLock::acquire();
    let primary = Origin::start("primary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let secondary = Origin::start("secondary", "127.0.0.1:0".parse().unwrap()).unwrap();
    // Like servers that drop idle keep-alive connections with SO_LINGER 0.
    primary.set_idle_reset(Some(Duration::from_millis(500)));
    secondary.set_idle_reset(Some(Duration::from_millis(500)));
    let admin = free_port();
    let lb = LbServer::start_file(
        "lb.toml",
        &config(
            &[("primary", primary.addr()), ("secondary", secondary.addr())],
            "",
            admin,
        ),
        &[],
        "info",
    );
    assert!(
        lb.stderr().contains("kernel socket events on"),
        "{}",
        lb.stderr()
    );
    // Bursts of 8 fill the pool; between bursts the origin resets the idle connections,
    // sometimes just as lb takes one (the stale-pool race: gaps around 500 ms).
    let mut served = Vec::new();
    for round in 0..8u64 {
        let burst: Vec<_> = (0..8)
            .map(|i| {
                let addr = lb.addr;
                std::thread::spawn(move || {
                    let mut c = Client::connect(addr);
                    let r = c.request(&format!(
                        "GET /burst/{round}-{i} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                    ));
                    (
                        r.status,
                        r.header("x-lb-attempts").unwrap_or("-").to_owned(),
                    )
                })
            })
            .collect();
        served.extend(burst.into_iter().map(|t| t.join().unwrap()));
        std::thread::sleep(Duration::from_millis(450 + (round * 37) % 110));
    }
    for (status, attempts) in &served {
        assert_eq!(*status, 200, "{attempts}");
        assert!(
            attempts.starts_with("primary:200:") && !attempts.contains(','),
            "every request served by the primary at the first attempt: {attempts}"
        );
    }
    // An origin that answers 413 without reading the body and closes: the unread body
    // makes its kernel reset the connection.
    for _ in 0..3 {
        let body = "x".repeat(4096);
        let mut c = Client::connect(lb.addr);
        let r = c.request(&format!(
            "POST /upload?fail=reject-body HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
        assert_eq!(r.status, 413);
        assert_eq!(r.header("x-origin"), Some("primary"));
    }
    for _ in 0..3 {
        assert_eq!(get(lb.addr, "/after").header("x-origin"), Some("primary"));
    }
    let doc = origins(admin);
    let p = origin_doc(&doc, "primary");
    assert_eq!(p["state"], "healthy", "{p}");
    assert_eq!(p["kernel_verdict"], serde_json::Value::Null, "{p}");
    assert!(
        p["kernel"]["resets_established"].as_u64().unwrap() >= 1,
        "the origin did reset established connections: {p}"
    );
    assert!(p["kernel"]["packets"]["rst"].as_u64().unwrap() >= 1, "{p}");
    assert_eq!(p["kernel"]["connects_refused"], 0, "{p}");
    assert!(
        !lb.stderr().contains("state=\"down\""),
        "no origin was ever marked down:\n{}",
        lb.stderr()
    );
}

/// RSTs and ICMP unreachables that claim to come from (or quote) the origin, sent from
/// inside the origin's namespace, at lb's real connections and at random ports.
#[test]
fn forged_rsts_and_icmp_unreachables_never_mark_an_origin_down() {
    if !require_root("forged_rsts_... (creates a network namespace)") {
        return;
    }
    // lb attaches XDP to lo too (the secondary is on loopback).
    let _lo = LoopbackXdpLock::acquire();
    let ns = VethNamespace::create();
    let primary_addr = SocketAddr::new(ns.ns_ip.into(), 8080);
    let primary = ns.run_inside(move || Origin::start("primary", primary_addr).unwrap());
    let secondary = Origin::start("secondary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let admin = free_port();
    let lb = LbServer::start_file(
        "lb.toml",
        &config(
            &[("primary", primary_addr), ("secondary", secondary.addr())],
            "",
            admin,
        ),
        &[],
        "info",
    );
    // Pooled connections to the primary, to aim at.
    let load = Load::start(lb.addr, 200, Duration::from_secs(4), 4, "/spoof");
    std::thread::sleep(Duration::from_millis(500));
    let host_ip = ns.host_ip;
    let ns_name = ns.ns.clone();
    // The namespace's own address signs the forged ICMP, as a router on the path would.
    let router = ns.ns_ip.octets();
    let sent = ns.run_inside(move || {
        let peers = lb_connection_ports(&ns_name, primary_addr.port());
        assert!(!peers.is_empty(), "lb holds connections to the primary");
        let raw = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(255)), // IPPROTO_RAW: we write the IP header
        )
        .expect("raw socket inside the namespace");
        let to: socket2::SockAddr = SocketAddr::new(host_ip.into(), 0).into();
        let mut sent = 0;
        for round in 0..3 {
            let targets = peers
                .iter()
                .copied()
                .chain((0..40).map(|i| 33_000 + i * 613 + round));
            for port in targets {
                let lb_end = SocketAddr::new(host_ip.into(), port);
                for flags in [Flags::Rst, Flags::RstAck] {
                    let frame = packets::tcp(primary_addr, lb_end, flags);
                    raw.send_to(&frame[14..], &to).expect("send a forged RST");
                    sent += 1;
                }
                // ICMP host unreachable from a "router", quoting a segment lb would send.
                let frame = packets::icmpv4_unreachable(router, lb_end, primary_addr);
                raw.send_to(&frame[14..], &to).expect("send a forged ICMP");
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(700));
        }
        sent
    });
    let samples = load.finish();
    assert!(sent > 100, "{sent}");
    let errors = samples.iter().filter(|s| s.status != 200).count();
    let off_primary = samples.iter().filter(|s| s.origin != "primary").count();
    println!(
        "forged: {sent} packets; {} requests, {errors} errors, {off_primary} not served by the primary",
        samples.len()
    );
    assert_eq!(errors, 0);
    assert_eq!(off_primary, 0, "the forged packets moved no request");
    let doc = origins(admin);
    let p = origin_doc(&doc, "primary");
    assert_eq!(p["state"], "healthy", "{p}");
    assert!(
        p["kernel"]["packets"]["rst"].as_u64().unwrap() >= 100,
        "the XDP program saw the forged RSTs: {p}"
    );
    assert!(
        p["kernel"]["packets"]["icmp_unreachable"].as_u64().unwrap() >= 20,
        "and the forged ICMP: {p}"
    );
    assert_eq!(p["kernel"]["connects_refused"], 0, "{p}");
    assert_eq!(p["kernel"]["connects_unreachable"], 0, "{p}");
    assert_eq!(p["kernel"]["resets_established"], 0, "{p}");
    assert!(!lb.stderr().contains("state=\"down\""), "{}", lb.stderr());
    drop(primary);
}

/// Local ports of lb's established connections to the origin listening on `port`, as the
/// namespace's own socket table shows them.
fn lb_connection_ports(ns: &str, port: u16) -> Vec<u16> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "ss", "-tnH", "state", "established"])
        .output()
        .expect("ss");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let (local, peer) = (cols.get(2)?, cols.get(3)?);
            local
                .ends_with(&format!(":{port}"))
                .then(|| peer.rsplit(':').next()?.parse().ok())
                .flatten()
        })
        .collect()
}

/// kill of the primary with passive detection effectively off and no health checks, two
/// workers under load: returns (samples, when the first refused attempt's request was
/// sent, when its response arrived).
fn crash_with_passive_off(kernel: bool) -> (Vec<Sample>, Duration) {
    let primary_addr = free_port();
    let primary = Origin::start("primary", primary_addr).unwrap();
    let secondary = Origin::start("secondary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let admin = free_port();
    let toml = config(
        &[("primary", primary_addr), ("secondary", secondary.addr())],
        &format!("passive_failures = 1000000\nuse_kernel_signals = {kernel}"),
        admin,
    );
    let lb = LbServer::start_file("lb.toml", &toml, &[], "info");
    let load = Load::start(lb.addr, 2000, Duration::from_millis(2500), 8, "/crash");
    std::thread::sleep(Duration::from_millis(800));
    drop(primary);
    let samples = load.finish();
    let first_refused = samples
        .iter()
        .filter(|s| s.attempts.contains("primary:refused"))
        .map(|s| s.at + s.took)
        .min()
        .expect("some request met the refused primary");
    (samples, first_refused)
}

#[test]
fn the_kernel_alone_takes_a_crashed_origin_out_for_every_worker_within_10ms() {
    if !require_root("the_kernel_alone_... (kernel signals)") {
        return;
    }
    let _lo = LoopbackXdpLock::acquire();
    let (samples, first) = crash_with_passive_off(true);
    let errors = samples.iter().filter(|s| s.status != 200).count();
    let late: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at > first + Duration::from_millis(10) && attempted(&s.attempts, "primary"))
        .collect();
    let after = samples.iter().filter(|s| s.at > first).count();
    println!(
        "kernel on: first refused connect answered at {:?}; {} of {after} later requests tried the primary after +10 ms; {errors} errors",
        first,
        late.len()
    );
    assert_eq!(errors, 0);
    assert!(after > 500, "enough requests after the crash: {after}");
    assert!(
        late.is_empty(),
        "no request sent more than 10 ms after the first refusal tries the primary: {:?}",
        late.iter().take(5).collect::<Vec<_>>()
    );

    // The same run without kernel signals: with passive detection off, nothing else
    // takes the primary out, so the assertion above is the kernel's doing.
    let (samples, first) = crash_with_passive_off(false);
    let late = samples
        .iter()
        .filter(|s| s.at > first + Duration::from_millis(10) && attempted(&s.attempts, "primary"))
        .count();
    println!("kernel off: {late} requests tried the primary after +10 ms");
    assert!(
        late > 100,
        "without kernel signals the primary keeps being tried: {late}"
    );
}

/// A DistributionConfig with CloudFront's defaults: no timeouts (10 s × 3 to connect, 30 s
/// to respond), no health check; the primary in `ns`, the secondary on loopback.
fn cloudfront_config(primary: SocketAddr, secondary: SocketAddr) -> String {
    let origin = |id: &str, a: SocketAddr| {
        format!(
            r#"{{"Id": "{id}", "DomainName": "{}", "CustomOriginConfig": {{"HTTPPort": {}, "OriginProtocolPolicy": "http-only"}}}}"#,
            a.ip(),
            a.port()
        )
    };
    format!(
        r#"{{
  "Origins": {{"Quantity": 2, "Items": [{}, {}]}},
  "OriginGroups": {{"Quantity": 1, "Items": [{{
    "Id": "group",
    "FailoverCriteria": {{"StatusCodes": {{"Quantity": 4, "Items": [500, 502, 503, 504]}}}},
    "Members": {{"Quantity": 2, "Items": [{{"OriginId": "primary"}}, {{"OriginId": "secondary"}}]}}
  }}]}},
  "DefaultCacheBehavior": {{"TargetOriginId": "group", "ViewerProtocolPolicy": "allow-all"}},
  "Enabled": true
}}"#,
        origin("primary", primary),
        origin("secondary", secondary)
    )
}

/// Each request's attempts, by path, from lb's access log.
fn access_attempts(stderr: &str) -> HashMap<String, String> {
    stderr
        .lines()
        .filter(|l| l.contains(" access "))
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            // <time> access <client> <method> <path> <status> <ms> <attempts> <protocol>
            let at = cols.iter().position(|c| *c == "access")?;
            Some((cols.get(at + 3)?.to_string(), cols.get(at + 6)?.to_string()))
        })
        .collect()
}

/// Opens the hole under load on warm pooled connections (`warm_pool`), or before the first
/// request, and checks the outcome: no failed GET, none slower than 1.5 s, and none sent
/// a second after the hole met its first request that waited on the primary.
fn black_hole_run(warm_pool: bool) {
    let ns = VethNamespace::create();
    let primary_addr = SocketAddr::new(ns.ns_ip.into(), 8080);
    let primary = ns.run_inside(move || Origin::start("primary", primary_addr).unwrap());
    let secondary = Origin::start("secondary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let lb = LbServer::start_file(
        "dist.json",
        &cloudfront_config(primary_addr, secondary.addr()),
        &["--listen", "127.0.0.1:0"],
        "info",
    );
    let hole = || {
        // What the origin sends back is dropped inside its namespace: no RST, no ICMP.
        ns.exec(&format!("ip route add blackhole {}/32", ns.host_ip));
    };
    let (load, hole_at) = if warm_pool {
        // Requests in flight on established pooled connections when the hole opens.
        let load = Load::start_tagged(lb.addr, 400, Duration::from_secs(4), 8, "/bh");
        std::thread::sleep(Duration::from_millis(800));
        let hole_at = load.start.elapsed();
        hole();
        (load, hole_at)
    } else {
        // No connection to the primary yet: every request must connect (the first SYN
        // leaves with the first request, at the start of the load).
        hole();
        let load = Load::start_tagged(lb.addr, 400, Duration::from_secs(3), 8, "/bh");
        (load, Duration::ZERO)
    };
    let samples = load.finish();
    std::thread::sleep(Duration::from_millis(300)); // the access log flushes every 100 ms
    let log = lb.stderr();
    let attempts = access_attempts(&log);
    let failed = samples.iter().filter(|s| s.status != 200).count();
    let slowest = samples.iter().map(|s| s.took).max().unwrap();
    let waited_late: Vec<(&Sample, &String)> = samples
        .iter()
        .filter(|s| s.at > hole_at + Duration::from_secs(1))
        .filter_map(|s| Some((s, attempts.get(&s.path)?)))
        .filter(|(_, a)| attempted(a, "primary"))
        .collect();
    let after = samples.iter().filter(|s| s.at > hole_at).count();
    let logged = samples
        .iter()
        .filter(|s| attempts.contains_key(&s.path))
        .count();
    let slow = samples
        .iter()
        .filter(|s| s.took > Duration::from_secs(1))
        .count();
    println!(
        "black hole ({}): {} requests, {failed} failed, slowest {slowest:?}, {slow} over 1 s, {} of {after} sent a second after the hole tried the primary",
        if warm_pool {
            "in flight on pooled connections"
        } else {
            "fresh connects"
        },
        samples.len(),
        waited_late.len()
    );
    assert_eq!(logged, samples.len(), "every request is in the access log");
    assert_eq!(failed, 0, "no failed GET");
    assert!(
        slowest < Duration::from_millis(1500),
        "no GET slower than 1.5 s: {slowest:?}"
    );
    assert!(
        waited_late.is_empty(),
        "after the first second no request waits on the primary: {:?}",
        waited_late.iter().take(5).collect::<Vec<_>>()
    );
    let tried_primary = samples
        .iter()
        .filter(|s| s.at >= hole_at)
        .filter_map(|s| attempts.get(&s.path))
        .filter(|a| attempted(a, "primary"))
        .count();
    assert!(tried_primary > 0, "the hole was met at least once");
    let hedged = attempts.values().filter(|a| a.contains(":stall:")).count();
    let syn_aborted = attempts
        .values()
        .filter(|a| a.contains(":syn-retransmit:"))
        .count();
    println!(
        "  {hedged} stalled attempts hedged, {syn_aborted} connects given up at the SYN retransmit"
    );
    if warm_pool {
        assert!(hedged > 0, "requests in flight were hedged");
    } else {
        assert!(
            syn_aborted > 0,
            "connects were given up at the SYN retransmit"
        );
    }
    assert!(
        log.contains("state=\"down\"") && log.contains("kernel:"),
        "the kernel's verdict took the primary out:\n{log}"
    );
    drop(primary);
}

#[test]
fn a_black_hole_with_cloudfront_defaults_costs_no_get_more_than_1_5_s() {
    if !require_root("a_black_hole_... (creates a network namespace)") {
        return;
    }
    // lb attaches XDP to lo too (the secondary is on loopback).
    let _lo = LoopbackXdpLock::acquire();
    black_hole_run(false);
}

#[test]
fn a_black_hole_under_requests_in_flight_on_pooled_connections_is_hedged() {
    if !require_root("a_black_hole_under_... (creates a network namespace)") {
        return;
    }
    // lb attaches XDP to lo too (the secondary is on loopback).
    let _lo = LoopbackXdpLock::acquire();
    black_hole_run(true);
}

#[test]
fn lb_maps_shows_socket_events_and_packets_apart() {
    if !require_root("lb_maps_shows_... (kernel signals)") {
        return;
    }
    let _lo = LoopbackXdpLock::acquire();
    let live = Origin::start("live", "127.0.0.1:0".parse().unwrap()).unwrap();
    let dead = free_port();
    let admin = free_port();
    let pin = unique_pin_dir();
    let toml = config_pinned(&[("dead", dead), ("live", live.addr())], "", admin, &pin);
    let lb_server = LbServer::start_file("lb.toml", &toml, &[], "info");
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(get(lb_server.addr, "/m").status, 200);
    }
    let out = wait_for(
        "lb maps to show the refusals",
        Duration::from_secs(3),
        || {
            let out = lb(&["maps", "--pin-path", pin.to_str().unwrap()]);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            text.contains("connect_refused").then_some(text)
        },
    );
    assert!(
        out.contains("CONN_OK") && out.contains("packets seen by XDP"),
        "{out}"
    );
    let dead_line = out
        .lines()
        .find(|l| l.contains(" dead "))
        .expect("a line for the dead origin");
    assert!(dead_line.ends_with("connect_refused"), "{dead_line}");
    println!("{out}(after {:?})", started.elapsed());
}

/// A reload that moves an origin to another address moves the kernel's origin index with
/// it: the refusals at the new address are the origin's evidence.
#[test]
fn a_reload_moves_the_kernel_origin_index_with_the_origin() {
    if !require_root("a_reload_moves_... (kernel signals)") {
        return;
    }
    let _lo = LoopbackXdpLock::acquire();
    let first = Origin::start("first", "127.0.0.1:0".parse().unwrap()).unwrap();
    let backup = Origin::start("backup", "127.0.0.1:0".parse().unwrap()).unwrap();
    let moved_to = free_port(); // nothing listens there
    let admin = free_port();
    let pin = unique_pin_dir();
    let before = config_pinned(
        &[("a", first.addr()), ("b", backup.addr())],
        "",
        admin,
        &pin,
    );
    let server = LbServer::start_file("lb.toml", &before, &[], "info");
    assert_eq!(get(server.addr, "/r").header("x-origin"), Some("first"));
    let after = config_pinned(&[("a", moved_to), ("b", backup.addr())], "", admin, &pin);
    server.dir.write("lb.toml", &after);
    let mut c = Client::connect(admin);
    let r = c.request("POST /reload HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = get(server.addr, "/r");
    assert_eq!(r.header("x-origin"), Some("backup"));
    assert!(
        r.header("x-lb-attempts").unwrap().starts_with("a:refused:"),
        "{:?}",
        r.header("x-lb-attempts")
    );
    let doc = wait_for("the refusal in /origins", Duration::from_secs(3), || {
        let doc = origins(admin);
        (origin_doc(&doc, "a")["kernel"]["connects_refused"].as_u64()? >= 1).then_some(doc)
    });
    let a = origin_doc(&doc, "a");
    assert_eq!(a["address"], moved_to.to_string(), "{a}");
    assert!(
        a["kernel_verdict"]
            .as_str()
            .unwrap_or("")
            .contains("refused"),
        "{a}"
    );
    let maps = lb(&["maps", "--json", "--pin-path", pin.to_str().unwrap()]);
    let maps: serde_json::Value = serde_json::from_slice(&maps.stdout).unwrap();
    let registered: Vec<String> = maps["origins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["address"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        registered.contains(&moved_to.to_string())
            && !registered.contains(&first.addr().to_string()),
        "the kernel index follows the reload: {registered:?}"
    );
}

/// The stale-pool race, made deterministic: the origin resets a kept-alive connection as
/// lb's next request arrives on it (as when a server's idle close crosses a request).
/// lb retries once on a fresh connection; the origin is never blamed or marked down.
#[test]
fn the_stale_pool_race_is_retried_and_never_blamed_on_the_origin() {
    if !require_root("the_stale_pool_race_... (kernel signals)") {
        return;
    }
    let _lo = LoopbackXdpLock::acquire();
    let primary = RawOrigin::start(|r| {
        if r.on_connection == 0 {
            vec![ok("primary")]
        } else {
            vec![Step::Reset]
        }
    });
    let secondary = Origin::start("secondary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let admin = free_port();
    let server = LbServer::start_file(
        "lb.toml",
        &config(
            &[("primary", primary.addr()), ("secondary", secondary.addr())],
            "",
            admin,
        ),
        &[],
        "info",
    );
    let mut c = Client::connect(server.addr);
    for i in 0..10 {
        let r = c.request(&format!("GET /race/{i} HTTP/1.1\r\nHost: t\r\n\r\n"));
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "primary");
        let attempts = r.header("x-lb-attempts").unwrap();
        assert!(
            attempts.starts_with("primary:200:") && !attempts.contains(','),
            "{attempts}"
        );
    }
    // The first connection served one request, every later one was reset on reuse and
    // replaced: each reset request reached a fresh connection.
    assert!(
        primary
            .requests()
            .iter()
            .filter(|r| r.on_connection == 1)
            .count()
            >= 5,
        "the race was met: {:?}",
        primary.requests().len()
    );
    let doc = origins(admin);
    let p = origin_doc(&doc, "primary");
    assert_eq!(p["state"], "healthy", "{p}");
    assert_eq!(p["passive"]["failures_total"], 0, "{p}");
    assert!(
        p["kernel"]["resets_established"].as_u64().unwrap() >= 5,
        "{p}"
    );
    assert_eq!(p["kernel_verdict"], serde_json::Value::Null, "{p}");
}

/// A black-holed HTTP/2 origin (CloudFront-like timeouts: 3 x 10 s to connect): its
/// connects are given up at the kernel's first SYN retransmit as for HTTP/1.1, so no GET
/// waits more than 1.5 s and none fails.
#[test]
fn a_black_holed_http2_origin_is_given_up_at_the_first_syn_retransmit() {
    if !require_root("a_black_holed_http2_origin_... (creates a network namespace)") {
        return;
    }
    let ns = VethNamespace::create();
    let primary_addr = SocketAddr::new(ns.ns_ip.into(), 8080);
    let primary = ns.run_inside(move || Origin::start_h2c("primary", primary_addr).unwrap());
    let secondary = Origin::start_h2c("secondary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let admin = free_port();
    let toml = config(
        &[("primary", primary_addr), ("secondary", secondary.addr())],
        "",
        admin,
    )
    .replace(
        "connect_timeout = \"2s\"\nconnection_attempts = 1\n",
        "connect_timeout = \"10s\"\nconnection_attempts = 3\nprotocol_version = \"h2c\"\n",
    );
    assert_eq!(
        toml.matches("protocol_version = \"h2c\"").count(),
        2,
        "{toml}"
    );
    let lb = LbServer::start_file("lb.toml", &toml, &[], "info");
    ns.exec(&format!("ip route add blackhole {}/32", ns.host_ip));
    let load = Load::start_tagged(lb.addr, 200, Duration::from_secs(3), 8, "/bh2");
    let samples = load.finish();
    let failed = samples.iter().filter(|s| s.status != 200).count();
    let slowest = samples.iter().map(|s| s.took).max().unwrap();
    println!(
        "HTTP/2 black hole: {} requests, {failed} failed, slowest {slowest:?}",
        samples.len()
    );
    assert_eq!(failed, 0, "no failed GET");
    assert!(
        slowest < Duration::from_millis(1500),
        "no GET slower than 1.5 s: {slowest:?}"
    );
    let metrics = get(admin, "/metrics").text();
    assert!(
        metrics.contains("lb_failovers_total{group=\"site\",reason=\"syn_retransmit\"}")
            && !metrics.contains("lb_failovers_total{group=\"site\",reason=\"syn_retransmit\"} 0"),
        "connects given up at the SYN retransmit:\n{}",
        metrics
            .lines()
            .filter(|l| l.starts_with("lb_failovers_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    drop(primary);
}
