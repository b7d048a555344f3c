//! An origin's framing cannot poison a pooled connection or a client: ambiguous or
//! over-long responses are re-framed for the client and their connections never pooled,
//! interim (1xx) responses are cleaned, bounded and kept from HTTP/1.0 clients, and an
//! `h2c` upgrade is never tunnelled. Each origin here is scripted byte by byte.

use std::time::Duration;

use lb_tests::{
    http::Client,
    process::LbServer,
    raw_origin::{RawOrigin, Step, ok},
};

fn bytes(s: &str) -> Step {
    Step::Write(s.as_bytes().to_vec())
}

/// lb in front of `members` (a group failing over on 502/503 when there are two).
fn start(members: &[&RawOrigin]) -> LbServer {
    let mut toml = String::from(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n\n[observability]\nattempts_header = true\n\n",
    );
    let mut ids = Vec::new();
    for (i, m) in members.iter().enumerate() {
        toml.push_str(&format!(
            "[[origins]]\nid = \"o{i}\"\naddress = \"{}\"\nresponse_timeout = \"1s\"\n\n",
            m.addr()
        ));
        ids.push(format!("\"o{i}\""));
    }
    let target = if members.len() > 1 {
        toml.push_str(&format!(
            "[[origin_groups]]\nid = \"g\"\nmembers = [{}]\nfailover_status_codes = [502, 503]\n\n",
            ids.join(", ")
        ));
        "g"
    } else {
        "o0"
    };
    toml.push_str(&format!(
        "[default_behavior]\ntarget = \"{target}\"\n\n[kernel]\nenabled = false\n"
    ));
    LbServer::start_file("lb.toml", &toml, &[], "info")
}

fn get(c: &mut Client, path: &str) -> lb_tests::http::Response {
    c.request(&format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n"))
}

/// Which origin connection served each request, in order.
fn connections(o: &RawOrigin) -> Vec<usize> {
    o.requests().iter().map(|r| r.connection).collect()
}

#[test]
fn content_length_with_transfer_encoding_is_reframed_and_never_pooled() {
    let o = RawOrigin::start(|r| {
        if r.head.starts_with("GET /ambiguous") {
            vec![bytes(
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            )]
        } else {
            vec![ok("plain")]
        }
    });
    let lb = start(&[&o]);
    let mut c = Client::connect(lb.addr);
    let r = get(&mut c, "/ambiguous");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "hello"),
        "chunked wins"
    );
    assert_eq!(r.header("content-length"), None, "one framing only");
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(get(&mut c, "/next").text(), "plain");
    assert_eq!(
        connections(&o),
        [0, 1],
        "the ambiguous connection was not reused"
    );
}

#[test]
fn bytes_after_a_complete_response_never_reach_a_client() {
    let o = RawOrigin::start(|r| {
        if r.head.starts_with("GET /extra") {
            vec![bytes(
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled",
            )]
        } else {
            vec![ok("plain")]
        }
    });
    let lb = start(&[&o]);
    let mut c = Client::connect(lb.addr);
    assert_eq!(get(&mut c, "/extra").text(), "ok");
    for _ in 0..3 {
        assert_eq!(
            get(&mut c, "/next").text(),
            "plain",
            "never the stray response"
        );
    }
    assert_eq!(
        connections(&o)[..2],
        [0, 1],
        "the connection with stray bytes was dropped"
    );
}

/// A body sent anyway after HEAD, 204 or 304 that declared one, arriving late, while the
/// client's next request follows at once: it must not become that request's response.
#[test]
fn late_body_bytes_after_bodiless_responses_are_never_read_as_a_response() {
    let late = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled";
    let o = RawOrigin::start(move |r| {
        let head = match r.head.split(' ').nth(1).unwrap_or("") {
            "/204" => "HTTP/1.1 204 No Content\r\nContent-Length: 42\r\n\r\n",
            "/304" => "HTTP/1.1 304 Not Modified\r\nContent-Length: 42\r\n\r\n",
            "/head" => "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n",
            _ => return vec![ok("plain")],
        };
        vec![
            bytes(head),
            Step::Sleep(Duration::from_millis(30)),
            bytes(late),
        ]
    });
    let lb = start(&[&o]);
    let mut c = Client::connect(lb.addr);
    for (method, path, status) in [
        ("GET", "/204", 204),
        ("GET", "/304", 304),
        ("HEAD", "/head", 200),
    ] {
        c.send(format!("{method} {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
        let r = c.read_response(method == "HEAD");
        assert_eq!(r.status, status, "{path}");
        // At once: the origin's late bytes are still on their way.
        let next = get(&mut c, "/next");
        assert_eq!(
            (next.status, next.text().as_str()),
            (200, "plain"),
            "after {path}"
        );
    }
}

#[test]
fn a_1xx_flood_ends_in_502_and_interim_responses_are_cleaned() {
    let o = RawOrigin::start(|r| {
        if r.head.starts_with("GET /flood") {
            let mut steps: Vec<Step> = (0..50)
                .map(|_| bytes("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"))
                .collect();
            steps.push(Step::Hang);
            steps
        } else {
            vec![
                bytes(
                    "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\nConnection: x-hop\r\nX-Hop: 1\r\n\r\n",
                ),
                ok("final"),
            ]
        }
    });
    let lb = start(&[&o]);
    let mut c = Client::connect(lb.addr);
    c.send(b"GET /hints HTTP/1.1\r\nHost: h\r\n\r\n");
    let hint = c.read_response(false);
    assert_eq!(hint.status, 103);
    assert_eq!(hint.header("link"), Some("</a.css>"));
    assert_eq!(
        hint.header("x-hop"),
        None,
        "fields named by Connection are hop-by-hop"
    );
    assert_eq!(hint.header("connection"), None);
    assert_eq!(c.read_response(false).text(), "final");
    // A flood: lb stops after a few and answers 502.
    let mut c = Client::connect(lb.addr);
    c.send(b"GET /flood HTTP/1.1\r\nHost: h\r\n\r\n");
    let mut interim = 0;
    let last = loop {
        let r = c.read_response(false);
        if r.status != 103 {
            break r;
        }
        interim += 1;
    };
    assert_eq!(last.status, 502, "{}", last.text());
    assert!(last.text().contains("interim"), "{}", last.text());
    assert!(interim <= 8, "{interim} interim responses forwarded");
}

#[test]
fn interim_responses_never_reach_http_1_0_clients() {
    let o = RawOrigin::start(|_| vec![bytes("HTTP/1.1 100 Continue\r\n\r\n"), ok("final")]);
    let lb = start(&[&o]);
    let mut c = Client::connect(lb.addr);
    c.send(b"GET /x HTTP/1.0\r\nHost: h\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!((r.status, r.text().as_str()), (200, "final"));
}

#[test]
fn after_a_1xx_reached_the_client_the_request_is_not_retried_elsewhere() {
    let first = RawOrigin::start(|_| vec![bytes("HTTP/1.1 103 Early Hints\r\n\r\n"), Step::Close]);
    let second = RawOrigin::start(|_| vec![ok("second")]);
    let lb = start(&[&first, &second]);
    let mut c = Client::connect(lb.addr);
    c.send(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.read_response(false).status, 103);
    let r = c.read_response(false);
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        second.requests().is_empty(),
        "never moved to the second member"
    );
}

#[test]
fn transfer_encoding_from_an_http_1_0_origin_is_refused() {
    let o = RawOrigin::start(|_| {
        vec![bytes(
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )]
    });
    let lb = start(&[&o]);
    let r = get(&mut Client::connect(lb.addr), "/x");
    assert_eq!(r.status, 502);
    assert!(r.text().contains("HTTP/1.0"), "{}", r.text());
}

#[test]
fn an_h2c_upgrade_is_stripped_and_never_tunnelled() {
    let o = RawOrigin::start(|r| {
        if r.head.to_ascii_lowercase().contains("upgrade") {
            vec![bytes(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
            )]
        } else {
            vec![ok("http/1.1 as asked")]
        }
    });
    let lb = start(&[&o]);
    let mut c = Client::connect(lb.addr);
    let r = c.request(
        "GET /x HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
         HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    );
    assert_eq!((r.status, r.text().as_str()), (200, "http/1.1 as asked"));
    let head = o.requests()[0].head.to_ascii_lowercase();
    assert!(
        !head.contains("upgrade") && !head.contains("http2-settings"),
        "{head}"
    );
    // The connection stays HTTP/1.1.
    assert_eq!(get(&mut c, "/y").status, 200);
}
