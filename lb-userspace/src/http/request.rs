//! Request heads: parsing, limits enforced across split reads, and framing (RFC 9112 §6.3).

// Byte scans use the memchr crate (SIMD where the CPU has it).
use super::{HeadError, RejectReason, headers::ConnectionHeader};
use memchr::{memchr, memchr2};

/// Size limits for a request head. Checked on every partial read, so a client can never
/// make lb buffer more than `max_request_line + max_header_bytes` bytes of head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadLimits {
    /// Longest request line (method, target, version), in bytes. Over it: 414.
    pub max_request_line: usize,
    /// Largest header section after the request line, in bytes. Over it: 431.
    pub max_header_bytes: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        Self {
            max_request_line: 8 * 1024,
            max_header_bytes: 32 * 1024,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// The request method, as far as lb's rules care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Options,
    Post,
    Put,
    Delete,
    Patch,
    Trace,
    Other,
}

impl Method {
    fn parse(s: &str) -> Self {
        match s {
            "GET" => Self::Get,
            "HEAD" => Self::Head,
            "OPTIONS" => Self::Options,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "DELETE" => Self::Delete,
            "PATCH" => Self::Patch,
            "TRACE" => Self::Trace,
            _ => Self::Other,
        }
    }

    /// RFC 9110 §9.2.2: repeating the request has the same effect as sending it once.
    pub const fn is_idempotent(self) -> bool {
        matches!(
            self,
            Self::Get | Self::Head | Self::Options | Self::Put | Self::Delete | Self::Trace
        )
    }

    /// The methods CloudFront fails over: GET, HEAD and OPTIONS.
    pub const fn fails_over(self) -> bool {
        matches!(self, Self::Get | Self::Head | Self::Options)
    }
}

/// How the request body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (neither Content-Length nor Transfer-Encoding).
    None,
    ContentLength(u64),
    Chunked,
}

/// A validated request head borrowing from the read buffer.
#[derive(Debug)]
pub struct ParsedRequest<'b, 'h> {
    pub method: Method,
    pub method_str: &'b str,
    /// The request target in origin-form (`/path?query`), or `*`.
    pub path: &'b str,
    /// The authority of an absolute-form target; it replaces Host when forwarding.
    pub authority: Option<&'b str>,
    pub version: Version,
    pub headers: &'h [httparse::Header<'b>],
    /// Bytes of the buffer the head occupies, including the blank line.
    pub head_len: usize,
    pub framing: BodyFraming,
    pub host: Option<&'b [u8]>,
    pub connection: ConnectionHeader,
    pub expect_continue: bool,
    /// The Upgrade value when the client asked to switch protocols (`Connection: upgrade`).
    pub upgrade: Option<&'b [u8]>,
}

impl ParsedRequest<'_, '_> {
    /// Whether the client wants the connection kept open after this exchange.
    pub fn keep_alive(&self) -> bool {
        match self.version {
            Version::Http11 => !self.connection.close,
            Version::Http10 => self.connection.keep_alive && !self.connection.close,
        }
    }
}

/// Parses the request head at the start of `buf`. `Ok(None)`: incomplete, read more.
///
/// Limits hold across split reads: the request line may not exceed
/// `limits.max_request_line` bytes (414) even before its end arrives, and the head may not
/// exceed `max_request_line + max_header_bytes` (431).
pub fn parse_request_head<'b, 'h>(
    buf: &'b [u8],
    limits: &HeadLimits,
    slots: &'h mut [httparse::Header<'b>],
) -> Result<Option<ParsedRequest<'b, 'h>>, HeadError> {
    let line_end = memchr(b'\n', buf);
    match line_end {
        None if buf.len() > limits.max_request_line => {
            return Err(RejectReason::RequestLineTooLong.error());
        }
        Some(end) if end > limits.max_request_line => {
            return Err(RejectReason::RequestLineTooLong.error());
        }
        _ => {}
    }
    let head_end = find_head_end(buf);
    let scanned = head_end.unwrap_or(buf.len());
    // The header section is everything after the request line.
    if let Some(line_end) = line_end
        && scanned - (line_end + 1) > limits.max_header_bytes
    {
        return Err(RejectReason::HeadersTooLarge.error());
    }
    check_line_structure(&buf[..scanned])?;
    let Some(head_len) = head_end else {
        return Ok(None);
    };

    let mut req = httparse::Request::new(slots);
    let status = httparse::ParserConfig::default()
        .parse_request(&mut req, &buf[..head_len])
        .map_err(map_httparse_error)?;
    let httparse::Status::Complete(parsed_len) = status else {
        // find_head_end found the blank line, so httparse must complete.
        return Err(RejectReason::Malformed.error());
    };
    debug_assert_eq!(parsed_len, head_len);
    let method_str = req.method.ok_or(RejectReason::Malformed.error())?;
    let target = req.path.ok_or(RejectReason::Malformed.error())?;
    let version = match req.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(RejectReason::UnsupportedVersion.error()),
    };
    let method = Method::parse(method_str);
    if method_str == "CONNECT" {
        return Err(RejectReason::ConnectNotSupported.error());
    }
    let (path, authority) = parse_target(target, method)?;
    let headers: &'h [httparse::Header<'b>] = req.headers;
    let facts = HeaderFacts::collect(headers, version)?;
    if version == Version::Http11 && facts.host.is_none() {
        return Err(RejectReason::MissingHost.error());
    }
    let framing = match (facts.content_length, facts.chunked) {
        (Some(_), true) => unreachable!("rejected in HeaderFacts::collect"),
        (_, true) => BodyFraming::Chunked,
        (Some(n), false) => BodyFraming::ContentLength(n),
        (None, false) => BodyFraming::None,
    };
    let upgrade = if facts.connection.upgrade {
        facts.upgrade
    } else {
        None
    };
    Ok(Some(ParsedRequest {
        method,
        method_str,
        path,
        authority,
        version,
        headers,
        head_len,
        framing,
        host: facts.host,
        connection: facts.connection,
        expect_continue: facts.expect_continue,
        upgrade,
    }))
}

/// The search for the end of a request head across split reads: each byte is looked at
/// once, and the size limits hold before the head is complete (414 for a request line
/// that has not ended within `max_request_line`, 431 for a header section over
/// `max_header_bytes`).
#[derive(Clone, Copy, Debug, Default)]
pub struct HeadScan {
    /// Bytes searched without finding what was looked for.
    scanned: usize,
    /// Index of the request line's LF, once seen.
    line_end: Option<usize>,
}

impl HeadScan {
    /// Whether the request line has not started to end yet (empty lines may be skipped).
    pub fn before_request_line(&self) -> bool {
        self.line_end.is_none()
    }

    /// Index of the request line's LF, once it has arrived.
    pub fn request_line_end(&self) -> Option<usize> {
        self.line_end
    }

    /// The length of the complete head at the start of `buf` (`buf` only grows between
    /// calls), or `None` while it is incomplete.
    pub fn find_end(
        &mut self,
        buf: &[u8],
        limits: &HeadLimits,
    ) -> Result<Option<usize>, HeadError> {
        let line_end = match self.line_end {
            Some(e) => e,
            None => match memchr(b'\n', &buf[self.scanned..]) {
                Some(off) => {
                    let e = self.scanned + off;
                    if e > limits.max_request_line {
                        return Err(RejectReason::RequestLineTooLong.error());
                    }
                    self.line_end = Some(e);
                    self.scanned = e;
                    e
                }
                None => {
                    self.scanned = buf.len();
                    if buf.len() > limits.max_request_line {
                        return Err(RejectReason::RequestLineTooLong.error());
                    }
                    return Ok(None);
                }
            },
        };
        // A blank line is at most 3 bytes ("\n\r\n"): one that starts before
        // `scanned - 2` would already have been found.
        let from = self.scanned.saturating_sub(2).max(line_end);
        if let Some(end) = find_head_end(&buf[from..]) {
            // parse_request_head checks the complete head's limits.
            return Ok(Some(from + end));
        }
        self.scanned = buf.len();
        if buf.len() - (line_end + 1) > limits.max_header_bytes {
            return Err(RejectReason::HeadersTooLarge.error());
        }
        Ok(None)
    }
}

/// RFC 9112 §2.3: a request with a higher minor version than lb implements is handled as
/// HTTP/1.1. Rewrites `HTTP/1.2`..`HTTP/1.9` at the end of `request_line` (which ends with
/// its LF) to `HTTP/1.1`, in place, so the parser and the origin see 1.1.
pub fn downgrade_minor_version(request_line: &mut [u8]) {
    let line = match request_line {
        [rest @ .., b'\r', b'\n'] | [rest @ .., b'\n'] => rest,
        _ => return,
    };
    if let [.., b' ', b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] = line
        && (b'2'..=b'9').contains(minor)
    {
        *minor = b'1';
    }
}

/// What the header section says about framing and connection handling.
struct HeaderFacts<'b> {
    host: Option<&'b [u8]>,
    content_length: Option<u64>,
    chunked: bool,
    connection: ConnectionHeader,
    expect_continue: bool,
    upgrade: Option<&'b [u8]>,
}

impl<'b> HeaderFacts<'b> {
    fn collect(headers: &[httparse::Header<'b>], version: Version) -> Result<Self, HeadError> {
        let mut facts = Self {
            host: None,
            content_length: None,
            chunked: false,
            connection: ConnectionHeader::default(),
            expect_continue: false,
            upgrade: None,
        };
        let mut transfer_encoding_seen = false;
        let mut codings_after_chunked = false;
        let mut other_codings = false;
        for h in headers {
            validate_value(h.value)?;
            let name = h.name;
            if name.eq_ignore_ascii_case("host") {
                if facts.host.is_some() {
                    return Err(RejectReason::DuplicateHost.error());
                }
                validate_host(h.value)?;
                facts.host = Some(h.value);
            } else if name.eq_ignore_ascii_case("content-length") {
                let n = parse_content_length(h.value)?;
                match facts.content_length {
                    Some(prev) if prev != n => {
                        return Err(RejectReason::DifferingContentLengths.error());
                    }
                    _ => facts.content_length = Some(n),
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                transfer_encoding_seen = true;
                for coding in list_items(h.value) {
                    if coding.is_empty() {
                        continue;
                    }
                    if facts.chunked {
                        // Anything after chunked (including a second chunked) is invalid.
                        codings_after_chunked = true;
                    }
                    if coding.eq_ignore_ascii_case(b"chunked") {
                        facts.chunked = true;
                    } else {
                        other_codings = true;
                    }
                }
            } else if name.eq_ignore_ascii_case("connection") {
                facts.connection.add(h.value);
            } else if name.eq_ignore_ascii_case("expect") {
                let v = trim(h.value);
                if v.eq_ignore_ascii_case(b"100-continue") {
                    facts.expect_continue = true;
                } else {
                    return Err(RejectReason::UnsupportedExpectation.error());
                }
            } else if name.eq_ignore_ascii_case("upgrade") {
                if facts.upgrade.is_some() || trim(h.value).is_empty() {
                    return Err(RejectReason::InvalidUpgrade.error());
                }
                facts.upgrade = Some(trim(h.value));
            }
        }
        if transfer_encoding_seen {
            if facts.content_length.is_some() {
                return Err(RejectReason::ContentLengthWithTransferEncoding.error());
            }
            if version == Version::Http10 {
                return Err(RejectReason::TransferEncodingInHttp10.error());
            }
            if !facts.chunked || codings_after_chunked {
                return Err(RejectReason::TransferEncodingNotChunkedLast.error());
            }
            if other_codings {
                return Err(RejectReason::UnsupportedTransferCoding.error());
            }
        }
        Ok(facts)
    }
}

/// Splits the request target into origin-form path and, for absolute-form, authority.
fn parse_target(target: &str, method: Method) -> Result<(&str, Option<&str>), HeadError> {
    let bad = || RejectReason::InvalidTarget.error();
    if target.contains('#') {
        return Err(bad());
    }
    if target.starts_with('/') {
        return Ok((target, None));
    }
    if target == "*" {
        return if method == Method::Options {
            Ok((target, None))
        } else {
            Err(bad())
        };
    }
    let lower_scheme = target
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("http://"))
        .map(|_| 7)
        .or_else(|| {
            target
                .get(..8)
                .filter(|s| s.eq_ignore_ascii_case("https://"))
                .map(|_| 8)
        });
    let Some(scheme_len) = lower_scheme else {
        return Err(bad());
    };
    let rest = &target[scheme_len..];
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.is_empty() || authority.contains('@') {
        return Err(bad());
    }
    validate_host(authority.as_bytes())?;
    // "http://h?q" has an empty path; the origin-form of that is "/?q", which cannot be
    // borrowed, so it is refused rather than rewritten.
    // RFC 9112 §3.2.4: an empty path is "*" for OPTIONS and "/" otherwise.
    if path.is_empty() {
        let path = if method == Method::Options { "*" } else { "/" };
        return Ok((path, Some(authority)));
    }
    if !path.starts_with('/') {
        return Err(bad());
    }
    Ok((path, Some(authority)))
}

fn map_httparse_error(e: httparse::Error) -> HeadError {
    match e {
        httparse::Error::HeaderName => RejectReason::InvalidHeaderName,
        httparse::Error::HeaderValue => RejectReason::InvalidHeaderValue,
        httparse::Error::Token => RejectReason::InvalidMethod,
        httparse::Error::Version => RejectReason::UnsupportedVersion,
        httparse::Error::TooManyHeaders => RejectReason::TooManyHeaders,
        _ => RejectReason::Malformed,
    }
    .error()
}

/// Rejects bare CR anywhere and obs-fold (a line starting with SP/HTAB after the request
/// line), before httparse sees the bytes, so the reason is exact.
fn check_line_structure(head: &[u8]) -> Result<(), HeadError> {
    let mut i = 0;
    while let Some(off) = memchr2(b'\r', b'\n', &head[i..]) {
        let at = i + off;
        if head[at] == b'\r' {
            match head.get(at + 1) {
                Some(b'\n') => {}
                Some(_) => return Err(RejectReason::BareCr.error()),
                None => return Ok(()), // the LF may still arrive
            }
            i = at + 1;
            continue;
        }
        if matches!(head.get(at + 1), Some(b' ' | b'\t')) {
            return Err(RejectReason::ObsFold.error());
        }
        i = at + 1;
    }
    Ok(())
}

/// Header values may hold visible ASCII, SP, HTAB and obs-text; never other controls.
fn validate_value(value: &[u8]) -> Result<(), HeadError> {
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(RejectReason::InvalidHeaderValue.error());
    }
    Ok(())
}

/// `uri-host [ ":" port ]`: reg-name characters, or an IP literal in brackets.
fn validate_host(value: &[u8]) -> Result<(), HeadError> {
    let v = trim(value);
    let ok = !v.is_empty()
        && v.iter().all(|&b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.'
                        | b'_'
                        | b'~'
                        | b'%'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'\''
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b','
                        | b';'
                        | b'='
                        | b':'
                        | b'['
                        | b']'
                )
        });
    if ok {
        Ok(())
    } else {
        Err(RejectReason::InvalidHost.error())
    }
}

/// `Content-Length: 1*DIGIT`, also as a list of identical values ("5, 5").
fn parse_content_length(value: &[u8]) -> Result<u64, HeadError> {
    let bad = || RejectReason::InvalidContentLength.error();
    let mut result = None;
    for item in list_items(value) {
        if item.is_empty() || item.len() > 19 || !item.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        let n = item
            .iter()
            .try_fold(0u64, |acc, &d| {
                acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })
            .ok_or_else(bad)?;
        match result {
            Some(prev) if prev != n => return Err(RejectReason::DifferingContentLengths.error()),
            _ => result = Some(n),
        }
    }
    result.ok_or_else(bad)
}

/// Comma-separated list items with surrounding whitespace trimmed.
pub(crate) fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim)
}

pub(crate) fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// End of the head (index just past the blank line), accepting CRLF or bare-LF line ends.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = memchr(b'\n', &buf[i..]) {
        let at = i + off;
        match buf.get(at + 1) {
            Some(b'\n') => return Some(at + 2),
            Some(b'\r') if buf.get(at + 2) == Some(&b'\n') => return Some(at + 3),
            _ => {}
        }
        i = at + 1;
    }
    None
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
