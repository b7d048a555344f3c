//! Request-head parser tests, including a request-smuggling corpus: every ambiguous
//! framing a front-end/back-end pair could disagree on must be refused.

use super::*;
use crate::http::RejectReason as R;

fn parse(raw: &[u8]) -> Result<Option<(Method, String, BodyFraming, bool)>, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    parse_request_head(raw, &HeadLimits::default(), &mut slots).map(|r| {
        r.map(|r| {
            let keep = r.keep_alive();
            (r.method, r.path.to_owned(), r.framing, keep)
        })
    })
}

fn reason(raw: &[u8]) -> R {
    match parse(raw) {
        Err(e) => e.reason,
        other => panic!(
            "expected rejection of {:?}, got {other:?}",
            String::from_utf8_lossy(raw)
        ),
    }
}

#[test]
fn accepts_ordinary_requests() {
    let (m, path, framing, keep) = parse(b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(
        (m, path.as_str(), framing, keep),
        (Method::Get, "/a?b=c", BodyFraming::None, true)
    );
    let r = parse(b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap()
        .unwrap();
    assert_eq!(r.2, BodyFraming::ContentLength(5));
    let r = parse(b"PUT /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(r.2, BodyFraming::Chunked);
    // Identical repeated Content-Length values are one value (RFC 9110 §8.6).
    let r =
        parse(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\n")
            .unwrap()
            .unwrap();
    assert_eq!(r.2, BodyFraming::ContentLength(3));
    // Bare LF line ends are accepted (RFC 9112 §2.2) and normalised when forwarded.
    assert!(parse(b"GET / HTTP/1.1\nHost: h\n\n").unwrap().is_some());
    // HTTP/1.0 without Host is fine; it closes unless it asks for keep-alive.
    assert!(!parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().3);
    assert!(
        parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap()
            .3
    );
    assert!(
        !parse(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap()
            .3
    );
    assert_eq!(
        parse(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")
            .unwrap()
            .unwrap()
            .1,
        "*"
    );
}

#[test]
fn absolute_form_targets_become_origin_form_with_authority() {
    let mut slots = [httparse::EMPTY_HEADER; 8];
    let raw = b"GET http://example.com:8080/x?y HTTP/1.1\r\nHost: other\r\n\r\n";
    let r = parse_request_head(raw, &HeadLimits::default(), &mut slots)
        .unwrap()
        .unwrap();
    assert_eq!(r.path, "/x?y");
    assert_eq!(r.authority, Some("example.com:8080"));
    assert_eq!(
        reason(b"GET http://user@h/ HTTP/1.1\r\nHost: h\r\n\r\n"),
        R::InvalidTarget
    );
    assert_eq!(
        reason(b"GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n"),
        R::InvalidTarget
    );
}

#[test]
fn partial_heads_ask_for_more() {
    for cut in 1..40 {
        let raw = b"GET /abc HTTP/1.1\r\nHost: example.com\r\n\r\n";
        if cut < raw.len() {
            assert_eq!(parse(&raw[..cut]).unwrap(), None, "cut at {cut}");
        }
    }
}

/// The request-smuggling corpus: each head must get the given reason (and status).
#[test]
fn smuggling_corpus_is_refused() {
    let corpus: &[(&[u8], R)] = &[
        // CL.TE and TE.CL desync material.
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", R::ContentLengthWithTransferEncoding),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n", R::ContentLengthWithTransferEncoding),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n", R::DifferingContentLengths),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4, 5\r\n\r\n", R::DifferingContentLengths),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +4\r\n\r\n", R::InvalidContentLength),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x4\r\n\r\n", R::InvalidContentLength),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4 4\r\n\r\n", R::InvalidContentLength),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", R::InvalidContentLength),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n", R::InvalidContentLength),
        // Transfer-Encoding variants.
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n", R::TransferEncodingNotChunkedLast),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", R::TransferEncodingNotChunkedLast),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", R::TransferEncodingNotChunkedLast),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n", R::TransferEncodingNotChunkedLast),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n", R::TransferEncodingNotChunkedLast),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", R::UnsupportedTransferCoding),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", R::TransferEncodingInHttp10),
        // Header syntax games.
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n", R::InvalidHeaderName),
        (b"POST / HTTP/1.1\r\nHost: h\r\n Transfer-Encoding: chunked\r\n\r\n", R::ObsFold),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n\tb\r\n\r\n", R::ObsFold),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n", R::BareCr),
        (b"GET / HTTP/1.1\rHost: h\r\n\r\n", R::BareCr),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n", R::InvalidHeaderValue),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7fb\r\n\r\n", R::InvalidHeaderValue),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX\x01A: a\r\n\r\n", R::InvalidHeaderName),
        (b"GET / HTTP/1.1\r\nHost: h\r\n: empty-name\r\n\r\n", R::InvalidHeaderName),
        // Host rules.
        (b"GET / HTTP/1.1\r\n\r\n", R::MissingHost),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", R::DuplicateHost),
        (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", R::InvalidHost),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", R::InvalidHost),
        (b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", R::InvalidHost),
        (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", R::InvalidHost),
        // Request line.
        (b"GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n", R::InvalidTarget),
        (b"GET a HTTP/1.1\r\nHost: h\r\n\r\n", R::InvalidTarget),
        (b"GET * HTTP/1.1\r\nHost: h\r\n\r\n", R::InvalidTarget),
        (b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", R::InvalidMethod),
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", R::UnsupportedVersion),
        (b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", R::InvalidMethod),
        (b"CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n", R::ConnectNotSupported),
        // Expectations and upgrades.
        (b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n", R::UnsupportedExpectation),
        (b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: a\r\nUpgrade: b\r\n\r\n", R::InvalidUpgrade),
    ];
    for (raw, want) in corpus {
        let got = reason(raw);
        assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(raw));
        assert!(got.status() >= 400 && got.status() < 600);
    }
}

#[test]
fn statuses_match_the_design_table() {
    assert_eq!(R::ContentLengthWithTransferEncoding.status(), 400);
    assert_eq!(R::RequestLineTooLong.status(), 414);
    assert_eq!(R::HeadersTooLarge.status(), 431);
    assert_eq!(R::TooManyHeaders.status(), 431);
    assert_eq!(R::BodyTooLarge.status(), 413);
    assert_eq!(R::UnsupportedTransferCoding.status(), 501);
}

#[test]
fn limits_hold_across_split_reads() {
    let limits = HeadLimits {
        max_request_line: 64,
        max_header_bytes: 128,
    };
    let check = |raw: &[u8]| {
        let mut slots = [httparse::EMPTY_HEADER; 64];
        parse_request_head(raw, &limits, &mut slots).map(|r| r.is_some())
    };
    // A request line that has not ended but is already too long: 414 without waiting.
    let long_line = format!("GET /{}", "a".repeat(70));
    assert_eq!(
        check(long_line.as_bytes()).unwrap_err().reason,
        R::RequestLineTooLong
    );
    // Just under the limit is still partial.
    assert_eq!(
        check(format!("GET /{}", "a".repeat(50)).as_bytes()),
        Ok(false)
    );
    // Headers that keep coming past the cap: 431 before the blank line arrives.
    let many = format!("GET / HTTP/1.1\r\nHost: h\r\nX-Big: {}", "b".repeat(200));
    assert_eq!(
        check(many.as_bytes()).unwrap_err().reason,
        R::HeadersTooLarge
    );
    // Too many fields for the slot array: 431.
    let mut slots = [httparse::EMPTY_HEADER; 4];
    let raw = b"GET / HTTP/1.1\r\nHost: h\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\n\r\n";
    assert_eq!(
        parse_request_head(raw, &HeadLimits::default(), &mut slots)
            .unwrap_err()
            .reason,
        R::TooManyHeaders
    );
}

#[test]
fn methods_know_their_failover_and_idempotency() {
    assert!(Method::Get.fails_over() && Method::Head.fails_over() && Method::Options.fails_over());
    assert!(!Method::Post.fails_over() && !Method::Put.fails_over());
    assert!(
        Method::Put.is_idempotent()
            && !Method::Post.is_idempotent()
            && !Method::Patch.is_idempotent()
    );
}
