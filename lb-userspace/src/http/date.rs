//! The `Date` field of lb's own responses (RFC 9110 §6.6.1: an origin server with a
//! clock sends one). Formatted by `httpdate` at most once a second per thread: each
//! data-plane worker keeps its own copy, so the request path takes no lock and reads the
//! clock through the vDSO.

use std::{cell::Cell, time::SystemTime};

/// `Sun, 06 Nov 1994 08:49:37 GMT` is always 29 bytes.
const LEN: usize = 29;

thread_local! {
    static CACHED: Cell<(u64, [u8; LEN])> = const { Cell::new((u64::MAX, [0; LEN])) };
}

/// Appends `date: <now>\r\n`.
pub fn put_date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let text = CACHED.with(|cached| {
        let (at, text) = cached.get();
        if at == second {
            return text;
        }
        let mut fresh = [0u8; LEN];
        let formatted = httpdate::fmt_http_date(now);
        let n = formatted.len().min(LEN);
        fresh[..n].copy_from_slice(&formatted.as_bytes()[..n]);
        cached.set((second, fresh));
        fresh
    });
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(&text);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_is_an_http_date_of_now() {
        let mut out = Vec::new();
        put_date(&mut out);
        put_date(&mut out);
        let text = String::from_utf8(out).unwrap();
        let first = text.lines().next().unwrap();
        let value = first.strip_prefix("date: ").unwrap().trim_end();
        let parsed = httpdate::parse_http_date(value).unwrap();
        let skew = SystemTime::now().duration_since(parsed).unwrap();
        assert!(skew.as_secs() < 2, "{value}");
        assert_eq!(text.lines().count(), 2);
    }
}
