//! Header rewriting between client and origin: hop-by-hop removal (RFC 9110 §7.6.1) and
//! the forwarding headers lb adds (X-Forwarded-For, X-Forwarded-Proto, Via).

use std::{io::Write as _, net::IpAddr};

use super::request::{list_items, trim};

/// The options a Connection header carries that lb acts on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionHeader {
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
}

impl ConnectionHeader {
    pub(crate) fn add(&mut self, value: &[u8]) {
        for token in list_items(value) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if token.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            }
        }
    }

    pub fn from_headers<'a>(headers: impl Headers<'a>) -> Self {
        let mut c = Self::default();
        for (name, value) in headers {
            if name.eq_ignore_ascii_case("connection") {
                c.add(value);
            }
        }
        c
    }
}

/// A message's header fields as (name, value) pairs; cloned to scan more than once.
pub trait Headers<'a>: Iterator<Item = (&'a str, &'a [u8])> + Clone {}
impl<'a, T: Iterator<Item = (&'a str, &'a [u8])> + Clone> Headers<'a> for T {}

/// Adapts httparse's parsed fields to [`Headers`].
pub fn httparse_headers<'a>(headers: &'a [httparse::Header<'a>]) -> impl Headers<'a> {
    headers.iter().map(|h| (h.name, h.value))
}

/// Whether `name` is hop-by-hop: always-hop-by-hop fields, `Proxy-*`, and any field the
/// message's Connection header lists. Scans `headers` for Connection each call: for one
/// name. Rewriting a whole head uses [`HopByHop`], which reads Connection once.
pub fn is_hop_by_hop<'a>(name: &str, headers: impl Headers<'a>) -> bool {
    HopByHop::new(headers).contains(name)
}

/// The hop-by-hop fields of one message, with the names its Connection header lists
/// collected once, so checking every field of a head is linear in its size (the old
/// check rescanned every field for Connection once per field: quadratic).
pub struct HopByHop<'a> {
    listed: [&'a [u8]; MAX_LISTED],
    len: usize,
}

/// Connection tokens kept. A Connection header listing more is hostile or broken: then
/// every field counts as hop-by-hop (see `contains`), which can only remove fields.
const MAX_LISTED: usize = 16;

impl<'a> HopByHop<'a> {
    pub fn new(headers: impl Headers<'a>) -> Self {
        let mut listed: [&'a [u8]; MAX_LISTED] = [&[]; MAX_LISTED];
        let mut len = 0;
        for (_, value) in headers.filter(|(n, _)| n.eq_ignore_ascii_case("connection")) {
            for token in list_items(value).filter(|t| !t.is_empty()) {
                if len < MAX_LISTED {
                    listed[len] = token;
                    len += 1;
                } else {
                    len = MAX_LISTED + 1; // overflow
                }
            }
        }
        Self { listed, len }
    }

    pub fn contains(&self, name: &str) -> bool {
        const ALWAYS: [&str; 7] = [
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
        ];
        if ALWAYS.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            return true;
        }
        if name.len() >= 6 && name[..6].eq_ignore_ascii_case("proxy-") {
            return true;
        }
        let kept = self.len.min(MAX_LISTED);
        self.listed[..kept]
            .iter()
            .any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
            // A Connection header listing more than MAX_LISTED names is hostile or
            // broken: every other field is then dropped as hop-by-hop, which can only
            // remove fields, never smuggle one through.
            || self.len > MAX_LISTED
    }
}

/// Fields lb writes itself and so never copies from the incoming message.
fn replaced_by_lb(name: &str) -> bool {
    [
        "content-length",
        "expect",
        "x-forwarded-proto",
        "x-forwarded-for",
        "via",
        "host",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// The client address lb appends to X-Forwarded-For.
#[derive(Clone, Copy, Debug)]
pub struct ForwardedFor(pub IpAddr);

/// Builds forwarded heads into a reusable buffer (no allocation once it has grown).
pub struct HeaderRewrite;

/// Who a request to an origin is for.
#[derive(Clone, Copy, Debug)]
pub enum OnBehalfOf<'r> {
    /// A client's request being proxied: lb appends it to X-Forwarded-For and says how
    /// it came (`http`/`https`) in X-Forwarded-Proto.
    Client {
        address: ForwardedFor,
        proto: &'r str,
    },
    /// lb's own request (a health check, an error page): it names itself in User-Agent
    /// and closes the connection after the answer.
    Lb { user_agent: &'r str },
}

/// Everything that decides the head of a request lb sends to an origin.
pub struct UpstreamRequest<'r, H> {
    pub method: &'r str,
    /// The origin's path prefix (`origin_path`), written before `path`.
    pub path_prefix: &'r str,
    pub path: &'r str,
    pub host: Option<&'r [u8]>,
    /// The client's fields; none for lb's own requests.
    pub fields: H,
    pub on_behalf_of: OnBehalfOf<'r>,
    /// The body's framing towards the origin.
    pub length: Option<u64>,
    pub chunked: bool,
    /// The protocol of an Upgrade lb lets through (WebSocket).
    pub upgrade: Option<&'r [u8]>,
    /// The origin's custom headers.
    pub origin_headers: &'r [(String, String)],
}

impl HeaderRewrite {
    /// Writes the head of a request lb sends to an origin, proxied or its own: request
    /// line in HTTP/1.1 (origin-form, after the origin's path prefix), Host, the
    /// client's end-to-end fields (hop-by-hop ones and those lb writes itself dropped),
    /// who the request is for (X-Forwarded-For/-Proto for a client; User-Agent and
    /// `Connection: close` for lb's own), Via, the origin's custom headers (they win over
    /// a client's field of the same name), the upgrade, and framing written by lb. One
    /// builder for every request, so an origin sees the same custom headers from a
    /// proxied request, a health check and an error-page fetch.
    pub fn request<'a, H: Headers<'a>>(out: &mut Vec<u8>, r: &UpstreamRequest<'_, H>) {
        out.clear();
        out.extend_from_slice(r.method.as_bytes());
        out.push(b' ');
        if r.path != "*" {
            out.extend_from_slice(r.path_prefix.as_bytes());
        }
        out.extend_from_slice(r.path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        if let Some(host) = r.host {
            put(out, "host", trim(host));
        }
        let headers = r.fields.clone();
        let hop = HopByHop::new(headers.clone());
        let mut via_prior = false;
        for (name, value) in headers.clone() {
            if name.eq_ignore_ascii_case("via") {
                via_prior = true;
            }
            if replaced_by_lb(name) || hop.contains(name) {
                continue;
            }
            if r.origin_headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                continue; // the origin's custom header wins over the client's
            }
            put(out, name, value);
        }
        match r.on_behalf_of {
            OnBehalfOf::Client { address, proto } => {
                // One X-Forwarded-For line: every earlier hop, then this client.
                out.extend_from_slice(b"x-forwarded-for: ");
                for (_, value) in headers
                    .clone()
                    .filter(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-for"))
                {
                    let value = trim(value);
                    if !value.is_empty() {
                        out.extend_from_slice(value);
                        out.extend_from_slice(b", ");
                    }
                }
                let _ = write!(out, "{}\r\n", address.0);
                put(out, "x-forwarded-proto", proto.as_bytes());
            }
            OnBehalfOf::Lb { user_agent } => {
                put(out, "user-agent", user_agent.as_bytes());
                put(out, "connection", b"close");
            }
        }
        write_via(out, headers, via_prior);
        for (name, value) in r.origin_headers {
            put(out, name, value.as_bytes());
        }
        if let Some(upgrade) = r.upgrade {
            put(out, "connection", b"upgrade");
            put(out, "upgrade", upgrade);
        }
        if r.chunked {
            put(out, "transfer-encoding", b"chunked");
        } else if let Some(n) = r.length {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// A request lb makes on its own behalf (health checks, custom error pages): `GET
    /// path_prefix + path` with the origin's Host and custom headers.
    pub fn lb_request(
        out: &mut Vec<u8>,
        path_prefix: &str,
        path: &str,
        host: &str,
        origin_headers: &[(String, String)],
        user_agent: &str,
    ) {
        Self::request(
            out,
            &UpstreamRequest {
                method: "GET",
                path_prefix,
                path,
                host: Some(host.as_bytes()),
                fields: std::iter::empty(),
                on_behalf_of: OnBehalfOf::Lb { user_agent },
                length: None,
                chunked: false,
                upgrade: None,
                origin_headers,
            },
        );
    }

    /// Writes the response head lb sends to the client. `length`/`chunked` describe the
    /// framing lb uses towards the client, which may differ from the origin's.
    #[allow(clippy::too_many_arguments)]
    pub fn response<'a>(
        out: &mut Vec<u8>,
        status: u16,
        reason: &str,
        headers: impl Headers<'a>,
        length: Option<u64>,
        chunked: bool,
        connection: ResponseConnection<'_>,
        extra: &[(&str, &[u8])],
    ) {
        out.clear();
        let _ = write!(out, "HTTP/1.1 {status} {reason}\r\n");
        let hop = HopByHop::new(headers.clone());
        let mut via_prior = false;
        for (name, value) in headers.clone() {
            if name.eq_ignore_ascii_case("via") {
                via_prior = true;
            }
            if replaced_by_lb(name) || hop.contains(name) {
                continue;
            }
            put(out, name, value);
        }
        write_via(out, headers, via_prior);
        for (name, value) in extra {
            put(out, name, value);
        }
        match connection {
            ResponseConnection::Default => {}
            ResponseConnection::Close => put(out, "connection", b"close"),
            ResponseConnection::KeepAlive => put(out, "connection", b"keep-alive"),
            ResponseConnection::Upgrade(proto) => {
                put(out, "connection", b"upgrade");
                put(out, "upgrade", proto);
            }
        }
        if chunked {
            put(out, "transfer-encoding", b"chunked");
        } else if let Some(n) = length {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// What the response's Connection header must say.
#[derive(Clone, Copy, Debug)]
pub enum ResponseConnection<'a> {
    /// HTTP/1.1 default persistence: say nothing.
    Default,
    Close,
    /// For HTTP/1.0 clients that asked for keep-alive.
    KeepAlive,
    Upgrade(&'a [u8]),
}

fn write_via<'a>(out: &mut Vec<u8>, headers: impl Headers<'a>, prior: bool) {
    out.extend_from_slice(b"via: ");
    if prior {
        for (_, value) in headers.filter(|(n, _)| n.eq_ignore_ascii_case("via")) {
            out.extend_from_slice(trim(value));
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(b"1.1 lb\r\n");
}

fn put(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_tokens_are_read_once_and_overflow_drops_everything() {
        let f = fields(&[
            ("Connection", "x-a, X-B"),
            ("connection", "x-c"),
            ("X-A", "1"),
            ("X-C", "1"),
            ("X-D", "1"),
        ]);
        let hop = HopByHop::new(f.iter().copied());
        assert!(hop.contains("x-a") && hop.contains("x-b") && hop.contains("X-C"));
        assert!(hop.contains("Keep-Alive") && hop.contains("proxy-authorization"));
        assert!(!hop.contains("x-d") && !hop.contains("content-type"));
        let many = (0..20)
            .map(|i| format!("x-{i}"))
            .collect::<Vec<_>>()
            .join(",");
        let f = [
            ("Connection", many.as_bytes()),
            ("Content-Type", b"text/plain".as_slice()),
        ];
        assert!(HopByHop::new(f.iter().copied()).contains("content-type"));
    }

    fn fields(raw: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static [u8])> {
        raw.iter().map(|(n, v)| (*n, v.as_bytes())).collect()
    }

    #[test]
    fn request_head_is_rewritten_field_by_field() {
        let f = fields(&[
            ("Host", "h"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("Connection", "x-hop"),
            ("X-Hop", "1"),
            ("X-Forwarded-For", " 10.0.0.2 "),
            ("X-End", "kept"),
            ("Content-Length", "999"),
        ]);
        let mut out = Vec::new();
        HeaderRewrite::request(
            &mut out,
            &UpstreamRequest {
                method: "POST",
                path_prefix: "",
                path: "/p",
                host: Some(b"h"),
                fields: f.iter().copied(),
                on_behalf_of: OnBehalfOf::Client {
                    address: ForwardedFor("192.0.2.7".parse().unwrap()),
                    proto: "http",
                },
                length: Some(3),
                chunked: false,
                upgrade: None,
                origin_headers: &[("X-Origin-Key".into(), "k".into())],
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /p HTTP/1.1\r\nhost: h\r\nX-End: kept\r\n\
             x-forwarded-for: 10.0.0.1, 10.0.0.2, 192.0.2.7\r\nx-forwarded-proto: http\r\n\
             via: 1.1 lb\r\nX-Origin-Key: k\r\ncontent-length: 3\r\n\r\n"
        );
    }

    #[test]
    fn lb_own_requests_use_the_same_builder() {
        let mut out = Vec::new();
        HeaderRewrite::lb_request(
            &mut out,
            "/v1",
            "/health",
            "origin.example",
            &[("X-Origin-Verify".into(), "s3cr3t".into())],
            "lb-health-check",
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /v1/health HTTP/1.1\r\nhost: origin.example\r\nuser-agent: lb-health-check\r\n\
             connection: close\r\nvia: 1.1 lb\r\nX-Origin-Verify: s3cr3t\r\n\r\n"
        );
    }
}
