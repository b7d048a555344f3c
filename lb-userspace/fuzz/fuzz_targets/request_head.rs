//! Arbitrary bytes as a request head: the parser must never panic, must respect its
//! limits, and anything it accepts must be self-consistent. Splitting the input must not
//! change the verdict once all bytes are in (limits are enforced across split reads).
#![no_main]

use lb_userspace::http::{BodyFraming, HeadLimits, parse_request_head};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = HeadLimits {
        max_request_line: 512,
        max_header_bytes: 2048,
    };
    let mut slots = [httparse::EMPTY_HEADER; 32];
    let whole = parse_request_head(data, &limits, &mut slots);
    if let Ok(Some(r)) = &whole {
        assert!(r.head_len <= data.len());
        assert!(r.path.starts_with('/') || r.path == "*");
        if let BodyFraming::Chunked = r.framing {
            assert!(r.version == lb_userspace::http::Version::Http11);
        }
        // An accepted head never contains a bare CR or an obs-fold.
        let head = &data[..r.head_len];
        for (i, &b) in head.iter().enumerate() {
            if b == b'\r' {
                assert_eq!(head.get(i + 1), Some(&b'\n'));
            }
        }
    }
    // Every prefix is either "need more" or the same refusal family: a prefix can never
    // be accepted as a different complete request than the whole.
    if let Ok(Some(r)) = &whole {
        let len = r.head_len;
        for cut in [len / 2, len.saturating_sub(1)] {
            let mut s = [httparse::EMPTY_HEADER; 32];
            match parse_request_head(&data[..cut], &limits, &mut s) {
                Ok(None) | Err(_) => {}
                Ok(Some(p)) => assert!(p.head_len <= cut),
            }
        }
    }
});
