//! Arbitrary bytes as a request head. Properties that would catch real bugs:
//! - the incremental head scan (used on split reads) finds the same end as a whole parse,
//!   fed in pieces whose size the input chooses;
//! - an accepted head's framing agrees with its fields, and an HTTP/1.1 head has a Host;
//! - the head lb forwards (rewritten) parses back to the same method, path and framing,
//!   with exactly one framing field: the rewrite cannot create a smuggling vector.
#![no_main]

use lb_userspace::http::{
    BodyFraming, ForwardedFor, HeadLimits, HeadScan, HeaderRewrite, OnBehalfOf, UpstreamRequest,
    Version, parse_request_head,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&piece, data)) = input.split_first() else {
        return;
    };
    let limits = HeadLimits {
        max_request_line: 512,
        max_header_bytes: 2048,
    };
    let mut slots = [httparse::EMPTY_HEADER; 32];
    let whole = parse_request_head(data, &limits, &mut slots);
    // The scan, fed in pieces.
    let piece = usize::from(piece % 64) + 1;
    let mut scan = HeadScan::default();
    let mut scanned_end = None;
    let mut len = 0;
    while len < data.len() {
        len = (len + piece).min(data.len());
        match scan.find_end(&data[..len], &limits) {
            Ok(Some(end)) => {
                scanned_end = Some(end);
                break;
            }
            Ok(None) => {}
            Err(_) => break,
        }
    }
    let Ok(Some(r)) = whole else {
        return;
    };
    assert_eq!(scanned_end, Some(r.head_len), "split reads find the same head end");
    assert!(r.path.starts_with('/') || r.path == "*");
    let has = |name: &str| r.headers.iter().any(|h| h.name.eq_ignore_ascii_case(name));
    match r.framing {
        BodyFraming::Chunked => {
            assert!(has("transfer-encoding") && !has("content-length"));
            assert_eq!(r.version, Version::Http11);
        }
        BodyFraming::ContentLength(_) => assert!(has("content-length") && !has("transfer-encoding")),
        BodyFraming::None => assert!(!has("content-length") && !has("transfer-encoding")),
    }
    if r.version == Version::Http11 {
        assert!(r.host.is_some());
    }
    // What lb forwards (an HTTP/1.0 request without Host is forwarded without one, and
    // would not parse as HTTP/1.1: nothing to compare).
    if r.authority.is_none() && r.host.is_none() {
        return;
    }
    let (length, chunked) = match r.framing {
        BodyFraming::None => (None, false),
        BodyFraming::ContentLength(n) => (Some(n), false),
        BodyFraming::Chunked => (None, true),
    };
    let fields = r.headers.iter().map(|h| (h.name, h.value));
    let mut out = Vec::new();
    HeaderRewrite::request(
        &mut out,
        &UpstreamRequest {
            method: r.method_str,
            path_prefix: "",
            path: r.path,
            host: r.authority.map(str::as_bytes).or(r.host),
            fields,
            on_behalf_of: OnBehalfOf::Client {
                address: ForwardedFor("192.0.2.1".parse().unwrap()),
                proto: "http",
            },
            length,
            chunked,
            upgrade: None,
            origin_headers: &[],
        },
    );
    let mut slots2 = [httparse::EMPTY_HEADER; 64];
    let again = parse_request_head(
        &out,
        &HeadLimits {
            max_request_line: 1 << 16,
            max_header_bytes: 1 << 16,
        },
        &mut slots2,
    );
    let Ok(Some(f)) = again else {
        panic!("the forwarded head is refused: {again:?}\n{}", String::from_utf8_lossy(&out));
    };
    assert_eq!(f.method_str, r.method_str);
    assert_eq!(f.path, r.path);
    assert_eq!(f.framing, r.framing);
    let framing_fields = f
        .headers
        .iter()
        .filter(|h| {
            h.name.eq_ignore_ascii_case("content-length")
                || h.name.eq_ignore_ascii_case("transfer-encoding")
        })
        .count();
    assert!(framing_fields <= 1, "one framing field forwarded");
});
