//! HTTP/1.1 proxying through the real lb binary to a real origin on loopback.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener},
    time::Duration,
};

use lb_origin::Origin;
use lb_tests::{
    http::{Client, get},
    process::{LbConfig, LbServer},
};

fn origin(name: &str) -> Origin {
    Origin::start(name, "127.0.0.1:0".parse().unwrap()).unwrap()
}

fn lb_for(origin: &Origin) -> LbServer {
    LbServer::start(&LbConfig::new().origin("primary", origin.addr(), ""))
}

#[test]
fn keep_alive_client_connection_carries_many_requests_over_one_upstream_connection() {
    let o = origin("primary");
    let lb = lb_for(&o);
    let mut c = Client::connect(lb.addr);
    for i in 0..20 {
        let r = c.request(&format!("GET /r{i} HTTP/1.1\r\nHost: t\r\n\r\n"));
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("primary GET /r{i}\n"));
        assert_eq!(r.header("x-origin"), Some("primary"));
        assert_eq!(r.header("via"), Some("1.1 lb"));
    }
    assert_eq!(o.requests(), 20);
    assert_eq!(
        o.connections(),
        1,
        "one worker, sequential requests: one pooled upstream connection"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let o = origin("primary");
    let lb = lb_for(&o);
    let mut c = Client::connect(lb.addr);
    let mut batch = String::new();
    for i in 0..8 {
        // Alternate slow and fast responses: order must still be request order.
        let delay = if i % 2 == 0 { 30 } else { 0 };
        batch.push_str(&format!(
            "GET /p{i}?delay_ms={delay} HTTP/1.1\r\nHost: t\r\n\r\n"
        ));
    }
    batch.push_str("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    batch.push_str("GET /last HTTP/1.1\r\nHost: t\r\n\r\n");
    c.send(batch.as_bytes());
    for i in 0..8 {
        assert_eq!(
            c.read_response(false).text(),
            format!("primary GET /p{i}\n")
        );
    }
    assert_eq!(c.read_response(false).text(), "hello");
    assert_eq!(c.read_response(false).text(), "primary GET /last\n");
}

#[test]
fn request_bodies_stream_with_content_length_and_chunked() {
    let o = origin("primary");
    let lb = lb_for(&o);
    let mut c = Client::connect(lb.addr);
    let r = c.request("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world");
    assert_eq!(r.text(), "hello world");
    // Extensions and trailers are dropped; the payload arrives intact.
    let r = c.request(
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
         5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nx-trailer: t\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello world");
    // A body larger than lb's buffers, chunked in odd sizes, split across writes.
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut raw = b"PUT /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in payload.chunks(7919) {
        raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        raw.extend_from_slice(piece);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    c.send_split(&raw, 65_536, Duration::from_millis(1));
    let r = c.read_response(false);
    assert_eq!(r.body, payload);
}

#[test]
fn response_bodies_stream_with_content_length_chunked_and_close_delimited() {
    let o = origin("primary");
    let lb = lb_for(&o);
    let mut c = Client::connect(lb.addr);
    let r = c.request("GET /a?size=200000 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.header("content-length"), Some("200000"));
    assert_eq!(r.body.len(), 200_000);
    let r = c.request("GET /a?size=200000&chunked=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.body.len(), 200_000);
    assert!(r.body.starts_with(b"abcdefghijklmnopqrstuvwxyz"));

    // An origin that delimits its body by closing: an HTTP/1.1 client gets it chunked
    // and keeps its connection.
    let raw_origin =
        one_shot_origin(b"HTTP/1.1 200 OK\r\nx-origin: raw\r\n\r\nuntil-close body".to_vec());
    let lb2 = LbServer::start(&LbConfig::new().origin("raw", raw_origin, ""));
    let mut c2 = Client::connect(lb2.addr);
    let r = c2.request("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.text(), "until-close body");
}

/// A TCP server that answers each connection with `response` and closes.
fn one_shot_origin(response: Vec<u8>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(&response);
        }
    });
    addr
}

#[test]
fn head_204_and_304_have_no_body_and_keep_the_connection_usable() {
    let o = origin("primary");
    let lb = lb_for(&o);
    let mut c = Client::connect(lb.addr);
    let r = c.request("HEAD /h?size=5000 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some("5000"),
        "HEAD keeps the GET length"
    );
    let r = c.request("GET /n?status=204 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("content-length"), None);
    let r = c.request("GET /n?status=304 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 304);
    // If any of those had leaked a body, this response would be garbled.
    let r = c.request("GET /after HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.text(), "primary GET /after\n");
}

#[test]
fn expect_100_continue_gets_an_interim_response_before_the_body() {
    let o = origin("primary");
    let lb = lb_for(&o);
    let mut c = Client::connect(lb.addr);
    c.send(b"PUT /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    let interim = c.read_response(false);
    assert_eq!(interim.status, 100);
    c.send(b"body");
    let r = c.read_response(false);
    assert_eq!((r.status, r.text().as_str()), (200, "body"));
}

#[test]
fn websocket_upgrade_becomes_a_bidirectional_tunnel() {
    let o = origin("primary");
    let lb = lb_for(&o);
    let mut c = Client::connect(lb.addr);
    let r = c.request(
        "GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert_eq!(r.status, 101);
    assert_eq!(r.header("upgrade"), Some("websocket"));
    assert!(
        r.header("connection")
            .unwrap()
            .eq_ignore_ascii_case("upgrade")
    );
    for msg in [&b"ping"[..], b"\x81\x05hello", &[0u8; 70_000]] {
        c.stream.write_all(msg).unwrap();
        let mut echoed = vec![0u8; msg.len()];
        c.stream.read_exact(&mut echoed).unwrap();
        assert_eq!(echoed, msg);
    }
}

#[test]
fn hop_by_hop_fields_are_removed_and_forwarding_fields_added() {
    let o = origin("primary");
    let lb = lb_for(&o);
    let mut c = Client::connect(lb.addr);
    let r = c.request(
        "GET /headers HTTP/1.1\r\nHost: example.test\r\nConnection: keep-alive, X-Secret\r\n\
         X-Secret: hop\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\n\
         Proxy-Authorization: Basic Zm9v\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\n\
         X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nVia: 1.0 edge\r\nX-Kept: yes\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{r:?}");
    let seen = r.text().to_ascii_lowercase();
    for gone in [
        "x-secret",
        "keep-alive",
        "te:",
        "trailer",
        "proxy-authorization",
        "proxy-connection",
        "upgrade",
        "connection",
    ] {
        assert!(!seen.contains(gone), "`{gone}` reached the origin:\n{seen}");
    }
    assert!(seen.contains("host: example.test\r\n"), "{seen}");
    assert!(seen.contains("x-kept: yes\r\n"), "{seen}");
    assert!(
        seen.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1\r\n"),
        "{seen}"
    );
    assert!(
        seen.contains("x-forwarded-proto: http\r\n"),
        "client-supplied proto is replaced:\n{seen}"
    );
    assert!(seen.contains("via: 1.0 edge, 1.1 lb\r\n"), "{seen}");
}

#[test]
fn http10_clients_get_close_delimited_bodies() {
    let o = origin("primary");
    let lb = lb_for(&o);
    let mut c = Client::connect(lb.addr);
    let r = c.request("GET /x?size=1000&chunked=1 HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("transfer-encoding"),
        None,
        "no chunked to an HTTP/1.0 client"
    );
    assert_eq!(r.body.len(), 1000);
    assert!(c.closed_by_peer());
    // HTTP/1.0 keep-alive is honoured when asked for.
    let mut c = Client::connect(lb.addr);
    let r = c.request("GET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(r.header("connection"), Some("keep-alive"));
    assert_eq!(
        c.request("GET /k2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .status,
        200
    );
}

#[test]
fn origin_failures_become_502_and_504_with_reasons() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let lb = LbServer::start(&LbConfig::new().origin(
        "gone",
        closed,
        "connection_attempts = 2\nconnect_timeout = \"1s\"",
    ));
    let r = get(lb.addr, "/");
    assert_eq!(r.status, 502);
    assert_eq!(
        r.text(),
        "lb: could not connect to origin gone: connection refused\n"
    );

    let o = origin("primary");
    let lb = LbServer::start(&LbConfig::new().origin(
        "primary",
        o.addr(),
        "response_timeout = \"300ms\"",
    ));
    let r = get(lb.addr, "/slow?delay_ms=3000");
    assert_eq!(r.status, 504);
    assert_eq!(r.text(), "lb: origin primary did not respond in time\n");
    let r = get(lb.addr, "/x?fail=reset");
    assert_eq!(r.status, 502);
    assert!(
        r.text().contains("closed the connection before responding"),
        "{}",
        r.text()
    );
    let r = get(lb.addr, "/x?fail=close");
    assert_eq!(r.status, 502);

    let garbage = one_shot_origin(b"HTTP/1.1 2OO OK\r\n\r\n".to_vec());
    let lb = LbServer::start(&LbConfig::new().origin("bad", garbage, ""));
    let r = get(lb.addr, "/");
    assert_eq!(r.status, 502);
    assert!(
        r.text().contains("origin bad sent an invalid response"),
        "{}",
        r.text()
    );
}

#[test]
fn a_body_cut_short_by_the_origin_closes_the_client_connection() {
    let o = origin("primary");
    let lb = lb_for(&o);
    let mut c = Client::connect(lb.addr);
    c.send(b"GET /x?size=100000&fail=close-mid-body HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut all = Vec::new();
    let _ = c.stream.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text:.100}");
    assert!(
        all.len() < 100_000,
        "the client must see a truncated body, then EOF"
    );
}

/// Under sustained keep-alive load, upstream connections are opened once and reused.
#[test]
fn upstream_connections_are_reused_under_keep_alive_load() {
    let o = origin("primary");
    let workers = 2;
    let lb = LbServer::start(&LbConfig::new().workers(workers).origin(
        "primary",
        o.addr(),
        "keepalive_timeout = \"30s\"",
    ));
    let run = |n: usize| {
        let handles: Vec<_> = (0..workers)
            .map(|t| {
                let addr = lb.addr;
                std::thread::spawn(move || {
                    let mut c = Client::connect(addr);
                    for i in 0..n {
                        let r = c.request(&format!("GET /k{t}-{i} HTTP/1.1\r\nHost: t\r\n\r\n"));
                        assert_eq!(r.status, 200);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    };
    run(50); // warm up
    let before = o.connections();
    run(500); // 1,000 requests
    let opened = o.connections() - before;
    println!(
        "upstream connections: {before} during warm-up, {opened} per 1,000 steady-state requests ({workers} workers)"
    );
    assert!(before <= workers as u64 * 2, "warm-up opened {before}");
    assert!(
        opened <= workers as u64,
        "{opened} connections opened per 1,000 requests"
    );
}

#[test]
fn absolute_form_targets_are_forwarded_in_origin_form() {
    let o = origin("primary");
    let lb = lb_for(&o);
    let mut c = Client::connect(lb.addr);
    let r = c.request("GET http://example.test/headers?q=1 HTTP/1.1\r\nHost: ignored\r\n\r\n");
    let seen = r.text();
    assert!(seen.starts_with("GET /headers?q=1 HTTP/1.1\r\n"), "{seen}");
    assert!(seen.contains("host: example.test\r\n"), "{seen}");
}

#[test]
fn epoll_driver_works_when_chosen() {
    let o = origin("primary");
    let lb = LbServer::start(&LbConfig::new().listener("io_driver = \"epoll\"").origin(
        "primary",
        o.addr(),
        "",
    ));
    assert_eq!(get(lb.addr, "/e").status, 200);
    assert!(
        lb.stderr().contains("io_uring=0 epoll=1"),
        "{}",
        lb.stderr()
    );
    let lb = LbServer::start(&LbConfig::new().origin("primary", o.addr(), ""));
    assert!(
        lb.stderr().contains("io_uring=1 epoll=0"),
        "io_uring is the default here:\n{}",
        lb.stderr()
    );
}

#[test]
fn slow_bodies_flow_within_the_body_timeout_and_are_cut_past_it() {
    let o = origin("primary");
    let lb = LbServer::start(
        &LbConfig::new()
            .origin("primary", o.addr(), "")
            .limits("body_timeout = \"400ms\""),
    );
    // 4 KiB in 1 KiB pieces, 100 ms apart: slow, but never idle for 400 ms.
    let r = get(lb.addr, "/s?size=4096&fail=slow&slow_ms=100");
    assert_eq!((r.status, r.body.len()), (200, 4096));
    // Pieces 1 s apart: lb gives up on the origin and closes the client connection.
    let mut c = Client::connect(lb.addr);
    c.send(b"GET /s?size=4096&fail=slow&slow_ms=1000 HTTP/1.1\r\nHost: t\r\n\r\n");
    let started = std::time::Instant::now();
    let mut all = Vec::new();
    let _ = c.stream.read_to_end(&mut all);
    assert!(all.len() < 4096, "body must be cut short");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn origins_named_by_dns_name_are_resolved() {
    let o = origin("named");
    // `localhost:PORT` instead of an IP literal.
    let toml = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n[[origins]]\nid = \"named\"\naddress = \"localhost:{}\"\n[kernel]\nenabled = false\n",
        o.addr().port()
    );
    let lb = LbServer::start_file("lb.toml", &toml, &[], "info");
    assert_eq!(get(lb.addr, "/dns").text(), "named GET /dns\n");
}

/// lb's own answers (here a 502: the origin refuses) carry a Date, as RFC 9110 asks of a
/// server with a clock.
#[test]
fn lbs_own_answers_carry_a_date() {
    let refused = lb_tests::free_port();
    let lb = LbServer::start(&LbConfig::new().origin("gone", refused, ""));
    let r = get(lb.addr, "/x");
    assert_eq!(r.status, 502, "{}", r.text());
    let date = r.header("date").expect("a Date field");
    let when = httpdate::parse_http_date(date).expect("an HTTP date");
    let skew = std::time::SystemTime::now()
        .duration_since(when)
        .unwrap_or_default();
    assert!(skew < Duration::from_secs(3), "{date}");
}
