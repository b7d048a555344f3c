//! Response heads from origins, and how their bodies are delimited (RFC 9112 §6.3).

use super::{
    headers::ConnectionHeader,
    request::{list_items, trim},
};

/// How the response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body: HEAD, 1xx, 204, 304.
    None,
    ContentLength(u64),
    Chunked,
    /// No length: the body ends when the origin closes the connection.
    CloseDelimited,
}

#[derive(Debug)]
pub struct ParsedResponse<'b, 'h> {
    pub status: u16,
    pub reason: &'b str,
    pub headers: &'h [httparse::Header<'b>],
    pub head_len: usize,
    pub framing: ResponseFraming,
    pub connection: ConnectionHeader,
    /// HTTP/1.0 origins close after each response unless they say keep-alive.
    pub http10: bool,
    /// Framing a downstream parser could read differently (Content-Length with
    /// Transfer-Encoding, a Transfer-Encoding other than a final chunked, a body length
    /// declared on a 204 or 1xx, a chunked body declared on a bodiless response): lb
    /// re-frames what it forwards, and the connection is never pooled.
    pub ambiguous: bool,
    /// A bodiless response (HEAD, 204, 304) declared a Content-Length: legitimate for
    /// HEAD and 304, but if the origin sends the body anyway, its bytes would be read as
    /// the next response on the connection.
    pub declared_suppressed_body: bool,
}

/// Whether an origin connection may carry another request after a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reuse {
    /// Closed, close-delimited, framed ambiguously, or a bodiless response (HEAD, 204,
    /// 304) that declared a body: never pooled. A body that arrives anyway would be read
    /// as the next request's response.
    Never,
    Yes,
    /// A bodiless response that declared no body: pooled, but checked for stray bytes
    /// before reuse however briefly it was idle.
    AfterCheck,
}

impl Reuse {
    pub fn allowed(self) -> bool {
        self != Self::Never
    }
}

impl ParsedResponse<'_, '_> {
    /// Whether the origin connection can carry another request after this response.
    pub fn reusable(&self) -> bool {
        self.reuse().allowed()
    }

    /// How the origin connection may be used after this response.
    pub fn reuse(&self) -> Reuse {
        let persistent = if self.http10 {
            self.connection.keep_alive
        } else {
            true
        };
        if !persistent
            || self.connection.close
            || self.framing == ResponseFraming::CloseDelimited
            || self.ambiguous
            || self.declared_suppressed_body
        {
            Reuse::Never
        } else if self.framing == ResponseFraming::None {
            Reuse::AfterCheck
        } else {
            Reuse::Yes
        }
    }
}

/// Why an origin's response head was unusable (lb answers the client 502).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResponseHeadError {
    #[error("malformed response head: {0}")]
    Malformed(&'static str),
    #[error("response head larger than {0} bytes")]
    TooLarge(usize),
}

/// Parses a response head at the start of `buf`. `Ok(None)`: incomplete.
/// `request_was_head` decides whether a body follows.
pub fn parse_response_head<'b, 'h>(
    buf: &'b [u8],
    max_head_bytes: usize,
    slots: &'h mut [httparse::Header<'b>],
    request_was_head: bool,
) -> Result<Option<ParsedResponse<'b, 'h>>, ResponseHeadError> {
    let mut resp = httparse::Response::new(slots);
    let status = httparse::ParserConfig::default()
        .parse_response(&mut resp, buf)
        .map_err(|e| ResponseHeadError::Malformed(httparse_reason(e)))?;
    let head_len = match status {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial if buf.len() > max_head_bytes => {
            return Err(ResponseHeadError::TooLarge(max_head_bytes));
        }
        httparse::Status::Partial => return Ok(None),
    };
    let code = resp.code.ok_or(ResponseHeadError::Malformed("no status"))?;
    // Three digits that httparse accepts include 000-099 (found by the response fuzzer):
    // lb would forward them as an invalid status line.
    if !(100..=599).contains(&code) {
        return Err(ResponseHeadError::Malformed("status code outside 100-599"));
    }
    let headers: &'h [httparse::Header<'b>] = resp.headers;
    let mut content_length: Option<u64> = None;
    let mut chunked_last = None;
    let mut transfer_encoding = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            for item in list_items(h.value) {
                let n = parse_decimal(item)
                    .ok_or(ResponseHeadError::Malformed("bad Content-Length"))?;
                if content_length.is_some_and(|prev| prev != n) {
                    return Err(ResponseHeadError::Malformed("differing Content-Lengths"));
                }
                content_length = Some(n);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            for coding in list_items(h.value).filter(|c| !c.is_empty()) {
                chunked_last = Some(coding.eq_ignore_ascii_case(b"chunked"));
            }
        }
    }
    let http10 = resp.version == Some(0);
    if http10 && transfer_encoding {
        // RFC 9112 §6.1: the framing of such a message is faulty.
        return Err(ResponseHeadError::Malformed(
            "Transfer-Encoding in an HTTP/1.0 response",
        ));
    }
    let no_body = request_was_head || (100..200).contains(&code) || code == 204 || code == 304;
    let never_has_body = (100..200).contains(&code) || code == 204;
    let ambiguous = (transfer_encoding
        && (content_length.is_some() || chunked_last != Some(true) || no_body))
        || (never_has_body && content_length.is_some_and(|n| n > 0));
    let declared_suppressed_body = no_body && content_length.is_some_and(|n| n > 0);
    let framing = if no_body {
        ResponseFraming::None
    } else {
        match (chunked_last, content_length) {
            // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3 rule 3).
            (Some(true), _) => ResponseFraming::Chunked,
            (Some(false), _) => ResponseFraming::CloseDelimited,
            (None, Some(n)) => ResponseFraming::ContentLength(n),
            (None, None) => ResponseFraming::CloseDelimited,
        }
    };
    Ok(Some(ParsedResponse {
        status: code,
        reason: resp.reason.unwrap_or(""),
        headers,
        head_len,
        framing,
        connection: ConnectionHeader::from_headers(super::headers::httparse_headers(headers)),
        http10,
        ambiguous,
        declared_suppressed_body,
    }))
}

fn parse_decimal(v: &[u8]) -> Option<u64> {
    let v = trim(v);
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid version",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        raw: &str,
        head: bool,
    ) -> Result<Option<(u16, ResponseFraming, bool)>, ResponseHeadError> {
        let mut slots = [httparse::EMPTY_HEADER; 32];
        parse_response_head(raw.as_bytes(), 4096, &mut slots, head)
            .map(|r| r.map(|r| (r.status, r.framing, r.reusable())))
    }

    #[test]
    fn framing_follows_rfc9112_order() {
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", false).unwrap(),
            Some((200, ResponseFraming::ContentLength(5), true))
        );
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true).unwrap(),
            Some((200, ResponseFraming::None, false)),
            "a HEAD response that declared a body is not pooled"
        );
        assert_eq!(
            parse(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
                false
            )
            .unwrap(),
            Some((200, ResponseFraming::Chunked, false)),
            "Transfer-Encoding with Content-Length: chunked, never pooled"
        );
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\n\r\n", false).unwrap(),
            Some((200, ResponseFraming::CloseDelimited, false))
        );
        for code in ["204 No Content", "304 Not Modified", "103 Early Hints"] {
            let raw = format!("HTTP/1.1 {code}\r\ncontent-length: 7\r\n\r\n");
            assert_eq!(
                parse(&raw, false).unwrap().unwrap().1,
                ResponseFraming::None,
                "{code}"
            );
        }
    }

    #[test]
    fn connection_close_and_http10_are_not_reusable() {
        assert!(
            !parse(
                "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
                false
            )
            .unwrap()
            .unwrap()
            .2
        );
        assert!(
            !parse("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", false)
                .unwrap()
                .unwrap()
                .2
        );
        assert!(
            parse(
                "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n",
                false
            )
            .unwrap()
            .unwrap()
            .2
        );
    }

    #[test]
    fn bad_heads_are_errors_and_partial_is_none() {
        assert!(
            parse(
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
                false
            )
            .is_err()
        );
        assert!(parse("HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", false).is_err());
        assert!(parse("SPDY/9 200 OK\r\n\r\n", false).is_err());
        assert!(parse("HTTP/1.1 046 Odd\r\n\r\n", false).is_err());
        assert!(parse("HTTP/1.1 600 Odd\r\n\r\n", false).is_err());
        assert_eq!(parse("HTTP/1.1 200 OK\r\ncontent-le", false).unwrap(), None);
        let big = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(5000));
        assert_eq!(parse(&big, false), Err(ResponseHeadError::TooLarge(4096)));
    }
}
