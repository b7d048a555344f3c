//! Origin groups with CloudFront failover semantics, through the real lb and real origins:
//! each trigger, each method rule, groups of three, custom headers and origin paths,
//! custom error responses, the always-try-primary switch, seed 002's timeline, and the
//! access log, attempts header and failover metrics that make all of it observable.

use std::{
    net::{SocketAddr, TcpListener},
    time::{Duration, Instant},
};

use lb_origin::Origin;
use lb_tests::{
    http::{Client, Response, get},
    process::{LbServer, TestDir, wait_for},
};

fn origin(name: &str) -> Origin {
    Origin::start(name, "127.0.0.1:0".parse().unwrap()).unwrap()
}

fn closed_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A TOML config: a group `site` over `members` (id, address, extra origin lines), failing
/// over on `codes`, with the attempts header on.
fn group_config(members: &[(&str, SocketAddr, &str)], codes: &str, extra: &str) -> String {
    let mut s = String::from(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n\n[observability]\nattempts_header = true\n\n",
    );
    for (id, addr, lines) in members {
        s.push_str(&format!(
            "[[origins]]\nid = \"{id}\"\naddress = \"{addr}\"\nconnect_timeout = \"300ms\"\n{}{lines}\n\n",
            if lines.contains("connection_attempts") { "" } else { "connection_attempts = 1\n" }
        ));
    }
    let ids: Vec<String> = members
        .iter()
        .map(|(id, _, _)| format!("\"{id}\""))
        .collect();
    s.push_str(&format!(
        "[[origin_groups]]\nid = \"site\"\nmembers = [{}]\nfailover_status_codes = [{codes}]\n{extra}\n\n\
         [default_behavior]\ntarget = \"site\"\n\n[kernel]\nenabled = false\n",
        ids.join(", ")
    ));
    s
}

fn start(toml: &str) -> LbServer {
    LbServer::start_file("lb.toml", toml, &[], "info")
}

fn attempts(r: &Response) -> String {
    r.header("x-lb-attempts").unwrap_or("-").to_owned()
}

/// "primary:503:0,secondary:200:1" -> "primary:503,secondary:200" (drop timings).
fn outcomes(r: &Response) -> String {
    attempts(r)
        .split(',')
        .map(|a| a.rsplit_once(':').map_or(a, |(head, _ms)| head).to_owned())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn a_failover_status_moves_the_request_to_the_secondary() {
    let (p, s) = (origin("primary"), origin("secondary"));
    let lb = start(&group_config(
        &[("primary", p.addr(), ""), ("secondary", s.addr(), "")],
        "500, 502, 503, 504",
        "",
    ));
    assert_eq!(get(lb.addr, "/x").text(), "primary GET /x\n");
    p.set_forced_status(Some(503));
    let r = get(lb.addr, "/x");
    assert_eq!((r.status, r.text().as_str()), (200, "secondary GET /x\n"));
    assert_eq!(outcomes(&r), "primary:503,secondary:200");
}

#[test]
fn connect_failures_move_on_after_all_attempts() {
    let s = origin("secondary");
    let lb = start(&group_config(
        &[
            ("primary", closed_port(), "connection_attempts = 3"),
            ("secondary", s.addr(), ""),
        ],
        "503",
        "",
    ));
    let r = get(lb.addr, "/x");
    assert_eq!((r.status, r.text().as_str()), (200, "secondary GET /x\n"));
    assert_eq!(outcomes(&r), "primary:refused,secondary:200");
}

/// A listener whose accept queue is full drops SYNs: connecting times out.
#[test]
fn connect_timeouts_cost_attempts_times_timeout_then_move_on() {
    let s = origin("secondary");
    let full = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    full.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    full.listen(0).unwrap();
    let full_addr = full.local_addr().unwrap().as_socket().unwrap();
    let _fillers: Vec<_> = (0..4)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&full_addr, Duration::from_millis(200)).ok()
        })
        .collect();
    let lb = start(&group_config(
        &[
            ("primary", full_addr, "connection_attempts = 2"),
            ("secondary", s.addr(), ""),
        ],
        "503",
        "",
    ));
    let started = Instant::now();
    let r = get(lb.addr, "/x");
    let took = started.elapsed();
    assert_eq!((r.status, r.text().as_str()), (200, "secondary GET /x\n"));
    assert_eq!(outcomes(&r), "primary:connect-timeout,secondary:200");
    assert!(
        took >= Duration::from_millis(550) && took < Duration::from_secs(3),
        "2 x 300 ms, took {took:?}"
    );
}

#[test]
fn response_timeouts_and_resets_move_get_on() {
    let (p, s) = (origin("primary"), origin("secondary"));
    let lb = start(&group_config(
        &[
            ("primary", p.addr(), "response_timeout = \"300ms\""),
            ("secondary", s.addr(), ""),
        ],
        "503",
        "always_try_primary = true",
    ));
    p.set_delay(Duration::from_secs(2));
    let r = get(lb.addr, "/slow");
    assert_eq!(r.text(), "secondary GET /slow\n");
    assert_eq!(outcomes(&r), "primary:timeout,secondary:200");
    p.set_delay(Duration::ZERO);
    p.set_fault(Some(lb_origin::Fault::Reset));
    let r = get(lb.addr, "/x");
    assert_eq!(r.text(), "secondary GET /x\n");
    assert_eq!(outcomes(&r), "primary:reset,secondary:200");
}

#[test]
fn get_head_and_options_fail_over_other_methods_do_not_on_status() {
    let (p, s) = (origin("primary"), origin("secondary"));
    // always_try_primary keeps health ejection out of this test: it is about methods.
    let lb = start(&group_config(
        &[("primary", p.addr(), ""), ("secondary", s.addr(), "")],
        "503",
        "always_try_primary = true",
    ));
    p.set_forced_status(Some(503));
    let mut c = Client::connect(lb.addr);
    for m in ["GET", "HEAD", "OPTIONS"] {
        let r = c.request(&format!("{m} /m HTTP/1.1\r\nHost: t\r\n\r\n"));
        assert_eq!(r.status, 200, "{m}");
        assert_eq!(r.header("x-origin"), Some("secondary"), "{m}");
    }
    let before = s.requests();
    for m in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = c.request(&format!(
            "{m} /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi"
        ));
        assert_eq!(r.status, 503, "{m} gets the primary's answer");
        assert_eq!(r.header("x-origin"), Some("primary"), "{m}");
        assert_eq!(outcomes(&r), "primary:503");
    }
    assert_eq!(
        s.requests(),
        before,
        "no non-idempotent request reached the secondary"
    );
}

#[test]
fn post_moves_on_only_when_nothing_was_sent() {
    let s = origin("secondary");
    let lb = start(&group_config(
        &[("primary", closed_port(), ""), ("secondary", s.addr(), "")],
        "503",
        "",
    ));
    let mut c = Client::connect(lb.addr);
    let r = c.request("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\ndata");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "data"),
        "a refused connect sent nothing"
    );

    // Bytes were written, then the primary reset: no replay, whatever the method.
    let (p, s) = (origin("primary"), origin("secondary"));
    let lb = start(&group_config(
        &[("primary", p.addr(), ""), ("secondary", s.addr(), "")],
        "503",
        "",
    ));
    p.set_fault(Some(lb_origin::Fault::Reset));
    let mut c = Client::connect(lb.addr);
    let r = c.request("POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\ndata");
    assert_eq!(r.status, 502);
    assert_eq!(outcomes(&r), "-", "lb's own 502 carries no attempts header");
    assert_eq!(s.requests(), 0, "the POST was not replayed");
}

#[test]
fn small_get_bodies_are_replayed_large_streamed_ones_are_not() {
    let (p, s) = (origin("primary"), origin("secondary"));
    let lb = start(
        &group_config(
            &[("primary", p.addr(), ""), ("secondary", s.addr(), "")],
            "503",
            "",
        )
        .replace(
            "[observability]",
            "[failover]\nreplay_body_limit = 1024\n\n[observability]",
        ),
    );
    p.set_forced_status(Some(503));
    let mut c = Client::connect(lb.addr);
    let r = c.request("GET /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "hello"),
        "replayed to the secondary"
    );
    let big = "b".repeat(4096);
    let r = c.request(&format!(
        "GET /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4096\r\n\r\n{big}"
    ));
    assert_eq!(r.status, 503, "a streamed body cannot be replayed");
    assert_eq!(outcomes(&r), "primary:503");
}

#[test]
fn statuses_outside_the_set_are_returned_without_failover() {
    let (p, s) = (origin("primary"), origin("secondary"));
    let lb = start(&group_config(
        &[("primary", p.addr(), ""), ("secondary", s.addr(), "")],
        "500, 502, 503, 504",
        "",
    ));
    for code in [404, 403, 401, 501] {
        let r = get(lb.addr, &format!("/x?status={code}"));
        assert_eq!(r.status, code);
        assert_eq!(r.header("x-origin"), Some("primary"));
    }
    assert_eq!(s.requests(), 0);
}

#[test]
fn a_group_of_three_tries_each_member_in_order() {
    let (p, t) = (origin("primary"), origin("tertiary"));
    let lb = start(&group_config(
        &[
            ("primary", p.addr(), ""),
            ("secondary", closed_port(), ""),
            ("tertiary", t.addr(), ""),
        ],
        "503",
        "",
    ));
    p.set_forced_status(Some(503));
    let r = get(lb.addr, "/three");
    assert_eq!(r.text(), "tertiary GET /three\n");
    assert_eq!(outcomes(&r), "primary:503,secondary:refused,tertiary:200");
}

#[test]
fn when_every_member_fails_the_last_answer_is_returned() {
    let (p, s) = (origin("primary"), origin("secondary"));
    let lb = start(&group_config(
        &[("primary", p.addr(), ""), ("secondary", s.addr(), "")],
        "503",
        "",
    ));
    p.set_forced_status(Some(503));
    s.set_forced_status(Some(503));
    let r = get(lb.addr, "/x");
    assert_eq!(
        (r.status, r.text().as_str()),
        (503, "secondary forced 503\n")
    );
    assert_eq!(outcomes(&r), "primary:503,secondary:503");

    let lb = start(&group_config(
        &[("a", closed_port(), ""), ("b", closed_port(), "")],
        "503",
        "",
    ));
    let r = get(lb.addr, "/x");
    assert_eq!(r.status, 502);
    assert_eq!(
        r.text(),
        "lb: could not connect to origin b: connection refused\n"
    );
}

#[test]
fn each_origin_gets_its_own_custom_headers_and_origin_path() {
    let (p, s) = (origin("primary"), origin("secondary"));
    let lb = start(&group_config(
        &[
            (
                "primary",
                p.addr(),
                "[origins.custom_headers]\nX-Origin-Key = \"key-p\"",
            ),
            (
                "secondary",
                s.addr(),
                "origin_path = \"/v2\"\n[origins.custom_headers]\nX-Origin-Key = \"key-s\"",
            ),
        ],
        "503",
        "",
    ));
    let seen = get(lb.addr, "/headers").text().to_ascii_lowercase();
    assert!(seen.contains("x-origin-key: key-p\r\n"), "{seen}");
    p.set_forced_status(Some(503));
    let mut c = Client::connect(lb.addr);
    // The client's own value is replaced: origins can trust the header.
    let r = c.request("GET /headers HTTP/1.1\r\nHost: t\r\nX-Origin-Key: forged\r\n\r\n");
    assert_eq!(r.header("x-origin"), Some("secondary"));
    let seen = r.text().to_ascii_lowercase();
    assert!(seen.starts_with("get /v2/headers http/1.1\r\n"), "{seen}");
    assert!(seen.contains("x-origin-key: key-s\r\n"), "{seen}");
    assert!(
        !seen.contains("forged") && !seen.contains("key-p"),
        "{seen}"
    );
}

#[test]
fn custom_error_responses_replace_final_errors() {
    let dir = TestDir::new();
    dir.write("sorry.html", "<h1>We'll be right back</h1>\n");
    let (p, s, pages) = (origin("primary"), origin("secondary"), origin("pages"));
    let toml = group_config(
        &[
            ("primary", p.addr(), ""),
            ("secondary", s.addr(), ""),
            ("pages", pages.addr(), ""),
        ],
        "503",
        "",
    )
    .replace(
        "members = [\"primary\", \"secondary\", \"pages\"]",
        "members = [\"primary\", \"secondary\"]",
    ) + &format!(
        "\n[[behaviors]]\npath_pattern = \"/errors/*\"\ntarget = \"pages\"\n\n\
             [[custom_error_responses]]\nerror_code = 503\nresponse_code = 200\nresponse_page_file = \"{}\"\n\n\
             [[custom_error_responses]]\nerror_code = 404\nresponse_page_path = \"/errors/not-found\"\n",
        dir.path.join("sorry.html").display()
    );
    let lb = start(&toml);
    p.set_forced_status(Some(503));
    s.set_forced_status(Some(503));
    let r = get(lb.addr, "/x");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "<h1>We'll be right back</h1>\n")
    );
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    p.set_forced_status(None);
    let r = get(lb.addr, "/missing?status=404");
    assert_eq!(r.status, 404, "the configured page, with the original code");
    assert_eq!(
        r.text(),
        "pages GET /errors/not-found\n",
        "fetched through the /errors/* behavior"
    );
    let fetched = pages.requests();
    let _ = get(lb.addr, "/missing?status=404");
    assert_eq!(pages.requests(), fetched, "the fetched page is cached");
}

#[test]
fn health_skips_a_dead_primary_unless_always_try_primary_is_set() {
    let s = origin("secondary");
    let dead = closed_port();
    let lb = start(&group_config(
        &[("primary", dead, ""), ("secondary", s.addr(), "")],
        "503",
        "",
    ));
    let seen: Vec<String> = (0..6)
        .map(|i| outcomes(&get(lb.addr, &format!("/h{i}"))))
        .collect();
    assert_eq!(seen[0], "primary:refused,secondary:200");
    assert_eq!(
        &seen[3..],
        ["secondary:200"; 3],
        "ejected after 3 failures: {seen:?}"
    );

    let lb = start(&group_config(
        &[("primary", dead, ""), ("secondary", s.addr(), "")],
        "503",
        "always_try_primary = true",
    ));
    for i in 0..6 {
        let r = get(lb.addr, &format!("/a{i}"));
        assert_eq!(
            outcomes(&r),
            "primary:refused,secondary:200",
            "CloudFront-exact: primary first, every time"
        );
    }
}

/// Seed 002's timeline with seconds instead of minutes: primary 200, then primary 503 and
/// the secondary serves, then the primary recovers and serves again. No failed request.
#[test]
fn seed_002_timeline_compressed() {
    let (p, s) = (origin("primary"), origin("secondary"));
    let lb = start(&group_config(
        &[("primary", p.addr(), ""), ("secondary", s.addr(), "")],
        "500, 502, 503, 504",
        "",
    ));
    let mut c = Client::connect(lb.addr);
    let mut served = Vec::new();
    let run = |c: &mut Client, served: &mut Vec<(usize, String)>, phase: usize, secs: f64| {
        let end = Instant::now() + Duration::from_secs_f64(secs);
        while Instant::now() < end {
            let r = c.request("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(r.status, 200, "phase {phase}: no client-visible error");
            served.push((phase, r.header("x-origin").unwrap().to_owned()));
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    run(&mut c, &mut served, 0, 0.6);
    p.set_forced_status(Some(503));
    run(&mut c, &mut served, 1, 0.6);
    p.set_forced_status(None);
    run(&mut c, &mut served, 2, 3.0);
    let by = |phase: usize| {
        served
            .iter()
            .filter(|(ph, _)| *ph == phase)
            .map(|(_, o)| o.as_str())
            .collect::<Vec<_>>()
    };
    assert!(by(0).iter().all(|o| *o == "primary"));
    assert!(by(1).iter().all(|o| *o == "secondary"), "{:?}", by(1));
    assert_eq!(by(2).last(), Some(&"primary"), "failback: {:?}", by(2));
    println!(
        "seed 002 timeline: {} requests, 0 errors; phase 1 served by secondary: {}; phase 2 requests until primary served again: {}",
        served.len(),
        by(1).len(),
        by(2).iter().position(|o| *o == "primary").unwrap()
    );
}

#[test]
fn access_log_and_metrics_record_every_attempt_and_failover_reason() {
    let (p, s) = (origin("primary"), origin("secondary"));
    let admin = closed_port();
    let lb = LbServer::start_file(
        "lb.toml",
        &group_config(
            &[("primary", p.addr(), ""), ("secondary", s.addr(), "")],
            "503",
            "",
        ),
        &["--admin", &admin.to_string()],
        "info",
    );
    p.set_forced_status(Some(503));
    let _ = get(lb.addr, "/logged");
    let line = wait_for("the access-log line", Duration::from_secs(3), || {
        lb.stderr()
            .lines()
            .find(|l| l.contains(" access ") && l.contains("/logged"))
            .map(str::to_owned)
    });
    assert!(line.contains(" GET /logged 200 "), "{line}");
    // <time> access <client> <method> <path> <status> <ms> <attempts> <protocol>
    assert!(line.ends_with(" HTTP/1.1"), "{line}");
    let tail = line.rsplit(' ').nth(1).unwrap();
    assert!(
        tail.starts_with("primary:503:") && tail.contains(",secondary:200:"),
        "{line}"
    );
    let metrics = get(admin, "/metrics").text();
    assert!(
        metrics.contains("lb_failovers_total{group=\"site\",reason=\"status\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lb_failovers_total{group=\"site\",reason=\"connect_refused\"} 0"),
        "{metrics}"
    );
}

/// The origin restarted: its pooled connections are closed. lb notices before reuse and
/// opens a fresh one, so the restart costs no failover and no error.
#[test]
fn connections_the_origin_closed_are_not_reused() {
    let p = origin("primary");
    let addr = p.addr();
    let s = origin("secondary");
    let lb = start(&group_config(
        &[
            ("primary", addr, "keepalive_timeout = \"30s\""),
            ("secondary", s.addr(), ""),
        ],
        "503",
        "",
    ));
    assert_eq!(get(lb.addr, "/warm").header("x-origin"), Some("primary"));
    p.stop();
    let p = Origin::start("primary", addr).unwrap();
    let r = get(lb.addr, "/after-restart");
    assert_eq!(
        outcomes(&r),
        "primary:200",
        "the dead pooled connection was skipped"
    );
    assert_eq!(p.connections(), 1);
    assert_eq!(s.requests(), 0);
}

/// A reset on a pooled connection before any response byte is a failed attempt (after one
/// fresh retry to the same origin, which resets too here).
#[test]
fn a_reset_on_a_pooled_connection_fails_over() {
    let (p, s) = (origin("primary"), origin("secondary"));
    let lb = start(&group_config(
        &[
            ("primary", p.addr(), "keepalive_timeout = \"30s\""),
            ("secondary", s.addr(), ""),
        ],
        "503",
        "",
    ));
    assert_eq!(get(lb.addr, "/warm").header("x-origin"), Some("primary"));
    p.set_fault(Some(lb_origin::Fault::Reset));
    let r = get(lb.addr, "/x");
    assert_eq!((r.status, r.header("x-origin")), (200, Some("secondary")));
    assert_eq!(outcomes(&r), "primary:reset,secondary:200");
    assert_eq!(
        p.requests(),
        3,
        "warm-up, the pooled attempt, the fresh retry"
    );
}

/// Every member down: fail open (the default) still tries them; `fail_open = false`
/// answers 503 without touching them, or with the custom error page for 503.
#[test]
fn fail_open_or_503_when_every_member_is_down() {
    let (a, b) = (closed_port(), closed_port());
    let lb = start(&group_config(
        &[("a", a, ""), ("b", b, "")],
        "503",
        "fail_open = false",
    ));
    // Three rounds of refused connects eject both.
    for _ in 0..3 {
        assert_eq!(get(lb.addr, "/x").status, 502);
    }
    let r = get(lb.addr, "/x");
    assert_eq!(
        (r.status, r.text().as_str()),
        (503, "lb: no healthy origin in group site\n")
    );
    assert_eq!(outcomes(&r), "-", "no member was tried");

    let lb = start(&group_config(&[("a", a, ""), ("b", b, "")], "503", ""));
    for _ in 0..3 {
        let _ = get(lb.addr, "/x");
    }
    let r = get(lb.addr, "/x");
    assert_eq!(r.status, 502, "fail open: both are tried anyway");
    assert!(
        r.text().contains("could not connect to origin b"),
        "{}",
        r.text()
    );
}

/// A PUT written to a pooled connection the primary had closed is retried once on a fresh
/// connection to the primary (it is idempotent); when that connect fails, the PUT's bytes
/// were still sent once, so it never moves to the secondary.
#[test]
fn a_put_sent_on_a_dead_pooled_connection_never_moves_to_another_member() {
    let (p, s) = (origin("primary"), origin("secondary"));
    let lb = start(&group_config(
        &[("primary", p.addr(), ""), ("secondary", s.addr(), "")],
        "503",
        "",
    ));
    let mut c = Client::connect(lb.addr);
    // A pooled connection to the primary...
    assert_eq!(
        c.request("GET /warm HTTP/1.1\r\nHost: t\r\n\r\n").status,
        200
    );
    // ...which dies with the primary (its port now refuses connections).
    p.stop();
    std::thread::sleep(Duration::from_millis(50));
    let r = c.request("PUT /doc HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\ndata");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(s.requests(), 0, "the PUT was not moved to the secondary");
    // A GET may move on.
    let r = c.request("GET /after HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "secondary GET /after\n")
    );
}
