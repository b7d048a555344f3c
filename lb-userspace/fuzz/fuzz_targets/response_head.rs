//! Arbitrary bytes as an origin's response head. Properties:
//! - the parser never panics, and a prefix of an accepted head is never accepted as a
//!   different, complete head;
//! - a connection is only reusable when the framing is unambiguous: no Content-Length
//!   with Transfer-Encoding, chunked last if Transfer-Encoding is present, and no
//!   declared body on a bodiless response;
//! - the head lb writes to the client has exactly one framing (a Content-Length or
//!   chunked, never both), no hop-by-hop field, and parses back to the same status.
#![no_main]

use lb_userspace::http::{
    HeaderRewrite, ResponseConnection, ResponseFraming, httparse_headers, parse_response_head,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&flags, data)) = input.split_first() else {
        return;
    };
    let head_request = flags & 1 == 1;
    let mut slots = [httparse::EMPTY_HEADER; 32];
    let Ok(Some(r)) = parse_response_head(data, 4096, &mut slots, head_request) else {
        return;
    };
    for cut in [r.head_len / 2, r.head_len.saturating_sub(1)] {
        let mut s = [httparse::EMPTY_HEADER; 32];
        if let Ok(Some(p)) = parse_response_head(&data[..cut], 4096, &mut s, head_request) {
            panic!("a prefix of {} bytes parsed as a complete head of {}", cut, p.head_len);
        }
    }
    let count = |name: &str| r.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).count();
    let te = count("transfer-encoding") > 0;
    let cl = count("content-length") > 0;
    if r.reusable() {
        assert!(!(te && cl), "Content-Length with Transfer-Encoding is never reused");
        assert_ne!(r.framing, ResponseFraming::CloseDelimited);
        if head_request || r.status == 204 || r.status == 304 {
            assert_eq!(r.framing, ResponseFraming::None);
        }
    }
    if head_request || (100..200).contains(&r.status) || r.status == 204 || r.status == 304 {
        assert_eq!(r.framing, ResponseFraming::None, "bodiless");
    }
    // The client's head, framed as lb frames it.
    let (length, chunked) = match r.framing {
        ResponseFraming::ContentLength(n) => (Some(n), false),
        ResponseFraming::None => (None, false),
        ResponseFraming::Chunked | ResponseFraming::CloseDelimited => (None, true),
    };
    let mut out = Vec::new();
    HeaderRewrite::response(
        &mut out,
        r.status,
        r.reason,
        httparse_headers(r.headers),
        length,
        chunked,
        ResponseConnection::Default,
        &[],
    );
    let mut slots2 = [httparse::EMPTY_HEADER; 64];
    let mut again = httparse::Response::new(&mut slots2);
    match again.parse(&out) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(n, out.len()),
        other => panic!("lb's head does not parse: {other:?}\n{}", String::from_utf8_lossy(&out)),
    }
    assert_eq!(again.code, Some(r.status));
    let out_count =
        |name: &str| again.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).count();
    assert!(out_count("content-length") + out_count("transfer-encoding") <= 1);
    for hop in ["connection", "keep-alive", "te", "trailer", "upgrade", "proxy-connection"] {
        assert_eq!(out_count(hop), 0, "{hop} is hop-by-hop");
    }
});
