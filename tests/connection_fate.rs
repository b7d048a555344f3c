//! What a client connection does after lb answered: a request body lb did not read is
//! drained (bounded) or the connection closes, and it is never parsed as the next request;
//! closing with unread input is a lingering close, so a client still sending receives the
//! answer and an orderly end rather than a reset.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener},
    time::Duration,
};

use lb_tests::{
    http::Client,
    process::{LbServer, TestDir},
    raw_origin::{RawOrigin, ok},
};

fn closed_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A listening socket whose accept queue is full: connects to it time out.
struct BlackHole {
    _socket: socket2::Socket,
    _fillers: Vec<std::net::TcpStream>,
    addr: SocketAddr,
}

fn black_hole() -> BlackHole {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let fillers = (0..4)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
        })
        .collect();
    BlackHole {
        _socket: socket,
        _fillers: fillers,
        addr,
    }
}

/// `/api/*` goes to group `dead` (members `a` and `b` at the given addresses); everything
/// else to `healthy`. `extra` is appended (custom error responses, limits).
fn config(a: SocketAddr, b: SocketAddr, healthy: SocketAddr, extra: &str) -> String {
    format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n\n\
         [[origins]]\nid = \"a\"\naddress = \"{a}\"\nconnect_timeout = \"200ms\"\nconnection_attempts = 1\nresponse_timeout = \"300ms\"\n\n\
         [[origins]]\nid = \"b\"\naddress = \"{b}\"\nconnect_timeout = \"200ms\"\nconnection_attempts = 1\nresponse_timeout = \"300ms\"\n\n\
         [[origins]]\nid = \"healthy\"\naddress = \"{healthy}\"\n\n\
         [[origin_groups]]\nid = \"dead\"\nmembers = [\"a\", \"b\"]\nfailover_status_codes = [502, 503]\n\n\
         [[behaviors]]\npath_pattern = \"/api/*\"\ntarget = \"dead\"\n\n\
         [default_behavior]\ntarget = \"healthy\"\n\n[kernel]\nenabled = false\n{extra}"
    )
}

/// A body of `len` bytes made of requests for `/smuggled`, so any of it parsed as a
/// request would reach the healthy origin.
fn smuggling_body(len: usize) -> Vec<u8> {
    let unit = b"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n";
    unit.iter().copied().cycle().take(len).collect()
}

fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in body.chunks(4000) {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[derive(Clone, Copy, Debug)]
enum Framing {
    Length,
    Chunked,
}

fn post(framing: Framing, body: &[u8]) -> Vec<u8> {
    let mut raw = b"POST /api/upload HTTP/1.1\r\nHost: h\r\n".to_vec();
    match framing {
        Framing::Length => {
            raw.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            raw.extend_from_slice(body);
        }
        Framing::Chunked => {
            raw.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            raw.extend_from_slice(&chunked(body));
        }
    }
    raw
}

/// Sends `raw` whole from another thread (lb may answer before reading it), reads the
/// answer, then, if lb kept the connection, a GET on it must be the next request lb reads.
fn answer_then_next_request(lb: &LbServer, raw: Vec<u8>) -> (u16, bool) {
    let mut c = Client::connect(lb.addr);
    let mut writer = c.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&raw);
    });
    let r = c.read_response(false);
    let kept = r.header("connection") != Some("close");
    sender.join().unwrap();
    if kept {
        let next = c.request("GET /after HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(
            (next.status, next.text().as_str()),
            (200, "after"),
            "the request after the body"
        );
    } else {
        assert!(c.closed_by_peer(), "lb said close, so it must close");
    }
    (r.status, kept)
}

fn assert_never_smuggled(healthy: &RawOrigin) {
    let heads: Vec<String> = healthy.requests().into_iter().map(|r| r.head).collect();
    assert!(
        heads.iter().all(|h| !h.contains("/smuggled")),
        "body bytes reached the healthy origin as requests: {heads:?}"
    );
}

fn healthy_origin() -> RawOrigin {
    RawOrigin::start(|_| vec![ok("after")])
}

#[test]
fn an_unread_body_after_every_member_refused_is_never_parsed_as_a_request() {
    let healthy = healthy_origin();
    let dir = TestDir::new();
    let page = dir.write("sorry.html", "sorry\n");
    let plain = config(closed_port(), closed_port(), healthy.addr(), "");
    let with_page = config(
        closed_port(),
        closed_port(),
        healthy.addr(),
        &format!(
            "\n[[custom_error_responses]]\nerror_code = 502\nresponse_code = 503\nresponse_page_file = \"{}\"\n",
            page.display()
        ),
    );
    for (name, toml, status) in [("plain", &plain, 502), ("custom page", &with_page, 503)] {
        let lb = LbServer::start_file("lb.toml", toml, &[], "info");
        for framing in [Framing::Length, Framing::Chunked] {
            // 70 KB: more than the replay limit (so it streams) and the drain bound.
            let (got, kept) = answer_then_next_request(&lb, post(framing, &smuggling_body(70_000)));
            assert_eq!(got, status, "{name} {framing:?}");
            assert!(
                !kept,
                "{name} {framing:?}: a 70 KB unread body closes the connection"
            );
        }
    }
    assert_never_smuggled(&healthy);
}

#[test]
fn a_small_unread_body_is_drained_and_the_connection_kept() {
    let healthy = healthy_origin();
    // Bodies over 1 KiB stream, so a 4 KB body is still unread when every member refuses.
    let toml = config(
        closed_port(),
        closed_port(),
        healthy.addr(),
        "\n[failover]\nreplay_body_limit = 1024\n",
    );
    let lb = LbServer::start_file("lb.toml", &toml, &[], "info");
    for framing in [Framing::Length, Framing::Chunked] {
        let (got, kept) = answer_then_next_request(&lb, post(framing, &smuggling_body(4_000)));
        assert_eq!(got, 502, "{framing:?}");
        assert!(
            kept,
            "{framing:?}: a 4 KB body is drained and the connection kept"
        );
    }
    assert_never_smuggled(&healthy);
    assert_eq!(healthy.requests().len(), 2, "only the two GETs reached it");
}

#[test]
fn an_unread_body_after_every_member_timed_out_is_never_parsed_as_a_request() {
    let healthy = healthy_origin();
    let (a, b) = (black_hole(), black_hole());
    let lb = LbServer::start_file(
        "lb.toml",
        &config(a.addr, b.addr, healthy.addr(), ""),
        &[],
        "info",
    );
    for framing in [Framing::Length, Framing::Chunked] {
        let (got, _) = answer_then_next_request(&lb, post(framing, &smuggling_body(70_000)));
        assert_eq!(got, 502, "{framing:?}: connect timeouts");
    }
    // Members that accept and never answer: the body is streamed to the first, which
    // times out (a POST moves on no further).
    let hang = RawOrigin::start(|_| vec![lb_tests::raw_origin::Step::Hang]);
    let lb = LbServer::start_file(
        "lb.toml",
        &config(hang.addr(), hang.addr(), healthy.addr(), ""),
        &[],
        "info",
    );
    for framing in [Framing::Length, Framing::Chunked] {
        let (got, kept) = answer_then_next_request(&lb, post(framing, &smuggling_body(70_000)));
        assert_eq!(got, 504, "{framing:?}: response timeout");
        assert!(
            kept,
            "{framing:?}: the body was forwarded whole, so the connection is kept"
        );
    }
    assert_never_smuggled(&healthy);
}

/// The client keeps sending its body after lb's answer; lb reads and discards it until
/// the client is done, and then closes in order: the client reads the answer and a FIN,
/// never a reset.
#[test]
fn a_lingering_close_delivers_the_answer_to_a_client_still_sending() {
    let healthy = healthy_origin();
    let lb = LbServer::start_file(
        "lb.toml",
        &config(closed_port(), closed_port(), healthy.addr(), ""),
        &[],
        "info",
    );
    let mut c = Client::connect(lb.addr);
    let total = 400 * 1024;
    c.send(
        format!("POST /api/upload HTTP/1.1\r\nHost: h\r\nContent-Length: {total}\r\n\r\n")
            .as_bytes(),
    );
    let r = c.read_response(false);
    assert_eq!(r.status, 502);
    assert_eq!(r.header("connection"), Some("close"));
    // Still sending, well after the answer.
    std::thread::sleep(Duration::from_millis(100));
    let piece = vec![b'x'; 16 * 1024];
    for _ in 0..total / piece.len() {
        c.stream
            .write_all(&piece)
            .expect("lb keeps reading during its lingering close");
    }
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let end = c.stream.read_to_end(&mut rest);
    assert!(
        matches!(end, Ok(0)),
        "an orderly end after the answer, not a reset: {end:?}"
    );
}

/// A WebSocket tunnel that moves no byte either way for `limits.idle_timeout` is closed;
/// one that keeps moving bytes is not.
#[test]
fn an_idle_tunnel_is_closed_after_the_idle_timeout() {
    let origin = lb_origin::Origin::start("ws", "127.0.0.1:0".parse().unwrap()).unwrap();
    let toml = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n\n[limits]\nidle_timeout = \"600ms\"\n\n\
         [[origins]]\nid = \"ws\"\naddress = \"{}\"\n\n[default_behavior]\ntarget = \"ws\"\n\n\
         [kernel]\nenabled = false\n",
        origin.addr()
    );
    let lb = LbServer::start_file("lb.toml", &toml, &[], "info");
    let upgrade = "GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    // Busy: a byte every 200 ms for 1.5 s keeps the tunnel open.
    let mut c = Client::connect(lb.addr);
    assert_eq!(c.request(upgrade).status, 101);
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(200));
        c.stream.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        c.stream
            .read_exact(&mut b)
            .expect("a busy tunnel stays open");
    }
    // Idle: closed after about 600 ms.
    let mut c = Client::connect(lb.addr);
    assert_eq!(c.request(upgrade).status, 101);
    let started = std::time::Instant::now();
    c.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut b = [0u8; 1];
    let end = c.stream.read(&mut b);
    assert!(matches!(end, Ok(0)), "closed: {end:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(3),
        "after the idle timeout: {took:?}"
    );
}

/// An origin that accepts but never reads: writing the request to it times out after
/// `limits.body_timeout` (before, that write had no timeout and the exchange hung until
/// the client gave up), and a POST is not moved to another member.
#[test]
fn a_request_write_to_an_origin_that_never_reads_times_out() {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    // A tiny receive window, so lb's write of the request cannot complete.
    socket.set_recv_buffer_size(2048).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(16).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let listener: TcpListener = socket.into();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s); // never read
        }
    });
    let healthy = healthy_origin();
    let toml = config(addr, closed_port(), healthy.addr(), "")
        .replace("response_timeout = \"300ms\"", "response_timeout = \"30s\"")
        + "\n[limits]\nbody_timeout = \"500ms\"\n\n[failover]\nreplay_body_limit = 8388608\n";
    let lb = LbServer::start_file("lb.toml", &toml, &[], "info");
    let started = std::time::Instant::now();
    let mut c = Client::connect(lb.addr);
    // 4 MB, buffered (under the replay limit set above), so head and body go in one
    // write: more than the socket buffers on both sides take.
    let body = vec![b'x'; 4 << 20];
    let mut raw = format!(
        "POST /api/upload HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let mut writer = c.stream.try_clone().unwrap();
    std::thread::spawn(move || {
        let _ = writer.write_all(&raw);
    });
    let r = c.read_response(false);
    let took = started.elapsed();
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        r.text().contains("did not take the request in time"),
        "{}",
        r.text()
    );
    assert!(
        took < Duration::from_secs(5),
        "the write timed out: {took:?}"
    );
    assert!(healthy.requests().is_empty());
}
