//! Strict parsing through the real lb: every malformed, ambiguous or oversized request is
//! answered with its 4xx and reason, with the bytes arriving in small split reads, and
//! nothing of it reaches the origin.

use std::{io::Write as _, time::Duration};

use lb_origin::Origin;
use lb_tests::{
    http::Client,
    process::{LbConfig, LbServer},
};

struct Setup {
    origin: Origin,
    lb: LbServer,
}

fn setup() -> Setup {
    let origin = Origin::start("primary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let lb = LbServer::start(
        &LbConfig::new().origin("primary", origin.addr(), "").limits(
            "max_request_line = 256\nmax_header_bytes = 1024\nmax_request_body = 1000\n\
         header_timeout = \"700ms\"",
        ),
    );
    Setup { origin, lb }
}

/// Sends `raw` a few bytes at a time and checks the status, the reason and that lb closed.
fn expect_refusal(s: &Setup, raw: &[u8], status: u16, reason: &str) {
    let mut c = Client::connect(s.lb.addr);
    c.send_split(raw, 7, Duration::from_millis(1));
    let r = c.read_response(false);
    assert_eq!(
        r.status,
        status,
        "{:?} -> {}",
        String::from_utf8_lossy(raw),
        r.text()
    );
    assert_eq!(r.text(), format!("lb: {reason}\n"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed_by_peer(), "lb must close after refusing a request");
}

#[test]
fn ambiguous_framing_is_refused_with_400_and_never_forwarded() {
    let s = setup();
    let cases: &[(&[u8], &str)] = &[
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            "both Content-Length and Transfer-Encoding present",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            "differing Content-Length values",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            "Transfer-Encoding must end with chunked",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n folded\r\n\r\n",
            "obsolete line folding (obs-fold) in header",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n",
            "bare CR in request head",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01b\r\n\r\n",
            "invalid byte in header value",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nX A: b\r\n\r\n",
            "invalid byte in header name",
        ),
        (
            b"GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n",
            "missing Host header (required in HTTP/1.1)",
        ),
    ];
    for (raw, reason) in cases {
        expect_refusal(&s, raw, 400, reason);
    }
    assert_eq!(
        s.origin.requests(),
        0,
        "no refused request may reach the origin"
    );
}

/// A bad chunk is found after the head went upstream (bodies stream): lb answers 400,
/// never forwards the bad bytes, and never completes the request at the origin.
#[test]
fn bad_chunk_sizes_and_extensions_are_refused() {
    let s = setup();
    let bodies: &[&[u8]] = &[
        b"zz\r\nabc\r\n0\r\n\r\n",
        b"3 \r\nabc\r\n0\r\n\r\n",
        b"3;a\x01\r\nabc\r\n0\r\n\r\n",
        b"3\r\nabcX\r\n0\r\n\r\n",
    ];
    for body in bodies {
        let mut raw =
            b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        raw.extend_from_slice(body);
        expect_refusal(&s, &raw, 400, "invalid chunked request body");
    }
    assert_eq!(
        s.origin.completed(),
        0,
        "the origin never receives a complete request"
    );
}

#[test]
fn oversized_request_line_gets_414_even_before_it_ends() {
    let s = setup();
    let raw = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(400));
    expect_refusal(&s, raw.as_bytes(), 414, "request line too long");
    // Never finishing the line does not help either.
    let mut c = Client::connect(s.lb.addr);
    c.send_split(
        format!("GET /{}", "b".repeat(300)).as_bytes(),
        16,
        Duration::from_millis(1),
    );
    assert_eq!(c.read_response(false).status, 414);
    assert_eq!(s.origin.requests(), 0);
}

#[test]
fn oversized_headers_get_431_across_split_reads() {
    let s = setup();
    let raw = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n",
        "v".repeat(1200)
    );
    expect_refusal(&s, raw.as_bytes(), 431, "request header fields too large");
    let many: String = (0..200).map(|i| format!("X-{i}: 1\r\n")).collect();
    let raw = format!("GET / HTTP/1.1\r\nHost: h\r\n{many}\r\n");
    let mut c = Client::connect(s.lb.addr);
    c.send_split(raw.as_bytes(), 64, Duration::from_millis(1));
    assert_eq!(c.read_response(false).status, 431);
    assert_eq!(s.origin.requests(), 0);
}

#[test]
fn slow_headers_get_408() {
    let s = setup();
    let mut c = Client::connect(s.lb.addr);
    let started = std::time::Instant::now();
    // A slowloris: a byte every 100 ms, never finishing (the timeout is 700 ms).
    for b in b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: ".iter() {
        if c.stream.write_all(std::slice::from_ref(b)).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    let r = c.read_response(false);
    assert_eq!(r.status, 408);
    assert_eq!(r.text(), "lb: timed out reading the request head\n");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(3),
        "took {took:?}"
    );
    assert_eq!(s.origin.requests(), 0);
}

#[test]
fn bodies_over_the_limit_get_413() {
    let s = setup();
    // Declared too large: refused before anything is sent upstream.
    let raw = b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n";
    expect_refusal(&s, raw, 413, "request body too large");
    assert_eq!(s.origin.requests(), 0);
    // Chunked and growing past the limit: refused when it crosses it.
    let mut raw = b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..5 {
        raw.extend_from_slice(b"1f4\r\n");
        raw.extend_from_slice(&[b'x'; 500]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    expect_refusal(&s, &raw, 413, "request body too large");
    assert_eq!(s.origin.completed(), 0);
}

#[test]
fn requests_within_limits_still_pass() {
    let s = setup();
    let mut c = Client::connect(s.lb.addr);
    let raw = format!(
        "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n{}",
        "y".repeat(1000)
    );
    c.send_split(raw.as_bytes(), 7, Duration::ZERO);
    let r = c.read_response(false);
    assert_eq!((r.status, r.body.len()), (200, 1000));
}
