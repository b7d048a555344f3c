//! A request head kept for the whole exchange, independent of the read buffer: the raw
//! bytes plus the offsets of every field. It lets lb rewrite the head for each attempt
//! (each origin gets its own custom headers) without parsing twice. Its buffers are
//! reused for every request on the connection.

use std::ops::Range;

use crate::{
    config::{HttpSettings, UnderscoreHeaders},
    http::{BodyFraming, Method, ParsedRequest, Version},
};

#[derive(Default)]
pub(super) struct RequestHead {
    raw: Vec<u8>,
    fields: Vec<(Range<usize>, Range<usize>)>,
    method_range: Range<usize>,
    path_range: Range<usize>,
    host_range: Option<Range<usize>>,
    upgrade_range: Option<Range<usize>>,
    pub method: Option<Method>,
    pub version: Option<Version>,
    pub framing: Option<BodyFraming>,
    pub keep_alive: bool,
    pub expect_continue: bool,
}

impl RequestHead {
    /// Copies what lb needs from `parsed` (which borrows `head_bytes`). Header names with
    /// `_` are left out unless `http` says to forward them; an `Upgrade` to a protocol
    /// not in `http.upgrade_protocols` is left out (the request is proxied as a plain one).
    pub fn capture(
        &mut self,
        parsed: &ParsedRequest<'_, '_>,
        head_bytes: &[u8],
        http: &HttpSettings,
    ) {
        self.raw.clear();
        self.raw.extend_from_slice(&head_bytes[..parsed.head_len]);
        let base = head_bytes.as_ptr() as usize;
        let end = base + parsed.head_len;
        let raw = &mut self.raw;
        // Slices of the head map to offsets; a slice the parser made up (the "/" or "*"
        // of an absolute-form target without a path) is appended after the head.
        let mut range = |s: &[u8]| {
            let at = s.as_ptr() as usize;
            if at >= base && at + s.len() <= end {
                let start = at - base;
                start..start + s.len()
            } else {
                let start = raw.len();
                raw.extend_from_slice(s);
                start..start + s.len()
            }
        };
        self.fields.clear();
        let drop_underscores = http.underscore_headers != UnderscoreHeaders::Forward;
        for h in parsed.headers {
            if drop_underscores && h.name.contains('_') {
                continue;
            }
            self.fields.push((range(h.name.as_bytes()), range(h.value)));
        }
        self.method_range = range(parsed.method_str.as_bytes());
        self.path_range = range(parsed.path.as_bytes());
        // An absolute-form authority replaces Host (RFC 9112 §3.2.2).
        self.host_range = parsed
            .authority
            .map(|a| a.as_bytes())
            .map(&mut range)
            .or(parsed.host.map(&mut range));
        self.upgrade_range = parsed
            .upgrade
            .filter(|p| upgrade_allowed(p, &http.upgrade_protocols))
            .map(&mut range);
        self.method = Some(parsed.method);
        self.version = Some(parsed.version);
        self.framing = Some(parsed.framing);
        self.keep_alive = parsed.keep_alive();
        self.expect_continue = parsed.expect_continue;
    }

    /// Bytes of memory its buffers hold.
    pub fn capacity(&self) -> usize {
        self.raw.capacity()
            + self.fields.capacity() * std::mem::size_of::<(Range<usize>, Range<usize>)>()
    }

    fn str_at(&self, r: &Range<usize>) -> &str {
        // Method, path and names were validated as ASCII tokens by the parser.
        std::str::from_utf8(&self.raw[r.clone()]).unwrap_or("")
    }

    pub fn method_str(&self) -> &str {
        self.str_at(&self.method_range)
    }

    pub fn path(&self) -> &str {
        self.str_at(&self.path_range)
    }

    pub fn host(&self) -> Option<&[u8]> {
        self.host_range.as_ref().map(|r| &self.raw[r.clone()])
    }

    pub fn upgrade(&self) -> Option<&[u8]> {
        self.upgrade_range.as_ref().map(|r| &self.raw[r.clone()])
    }

    pub fn method(&self) -> Method {
        self.method.unwrap_or(Method::Other)
    }

    pub fn framing(&self) -> BodyFraming {
        self.framing.unwrap_or(BodyFraming::None)
    }

    pub fn is_http10(&self) -> bool {
        self.version == Some(Version::Http10)
    }

    /// The header fields as (name, value) pairs.
    pub fn fields(&self) -> impl crate::http::Headers<'_> {
        self.fields
            .iter()
            .map(|(n, v)| (self.str_at(n), &self.raw[v.clone()]))
    }
}

/// Whether lb tunnels an `Upgrade: value` request: one protocol (optionally with a
/// version, `websocket/13`) from the allowed list. `h2c` and lists are never tunnelled.
fn upgrade_allowed(value: &[u8], allowed: &[String]) -> bool {
    let name = value.split(|&b| b == b'/').next().unwrap_or(value);
    !value.contains(&b',')
        && allowed
            .iter()
            .any(|p| p.as_bytes().eq_ignore_ascii_case(name.trim_ascii()))
}
