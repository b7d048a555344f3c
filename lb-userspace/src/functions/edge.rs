//! Lambda@Edge's event and result shapes: `event.Records[0].cf.request` and
//! `.response`, headers as lower-case keys of `[{key, value}]` lists, `status` as a
//! string, `body` with `bodyEncoding` `text` or `base64`.

use std::net::IpAddr;

use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::{FunctionError, Trigger};

/// The request as the function sees it.
pub struct EdgeRequest<'a, H> {
    /// The viewer's address (a trusted proxy's forwarded one where configured).
    pub client: IpAddr,
    pub method: &'a str,
    /// Path and query as received.
    pub target: &'a str,
    pub fields: H,
    /// The viewer's country from `[geo]`, given to the function as CloudFront gives it,
    /// in a `CloudFront-Viewer-Country` header.
    pub country: Option<&'a str>,
}

/// The header CloudFront adds with the viewer's country code.
pub const VIEWER_COUNTRY: &str = "CloudFront-Viewer-Country";

impl<'a, H: Iterator<Item = (&'a str, &'a [u8])> + Clone> EdgeRequest<'a, H> {
    /// The request's fields as a function sees them: a `CloudFront-Viewer-Country` the
    /// client sent is dropped (it would let any client choose its country), and lb's
    /// own is added when the country is known.
    pub fn viewer_fields(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + Clone + use<'a, H> {
        self.fields
            .clone()
            .filter(|(n, _)| !n.eq_ignore_ascii_case(VIEWER_COUNTRY))
            .chain(self.country.map(|c| (VIEWER_COUNTRY, c.as_bytes())))
    }
}

/// Writes `s` as a JSON string.
fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Headers as Lambda@Edge has them: lower-case names, each with its `{key, value}` list
/// in order. Written straight as JSON text (building a `serde_json::Value` cost more than
/// the rest of the event).
fn headers<'a>(out: &mut String, fields: impl Iterator<Item = (&'a str, &'a [u8])> + Clone) {
    out.push('{');
    let mut first = true;
    for (i, (name, _)) in fields.clone().enumerate() {
        // Each name once, at its first occurrence.
        if fields
            .clone()
            .take(i)
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        string(out, &name.to_ascii_lowercase());
        out.push_str(":[");
        let mut first_value = true;
        for (n, v) in fields.clone().filter(|(n, _)| n.eq_ignore_ascii_case(name)) {
            if !first_value {
                out.push(',');
            }
            first_value = false;
            out.push_str("{\"key\":");
            string(out, n);
            out.push_str(",\"value\":");
            string(out, &String::from_utf8_lossy(v));
            out.push('}');
        }
        out.push(']');
    }
    out.push('}');
}

fn request_json<'a, H: Iterator<Item = (&'a str, &'a [u8])> + Clone>(
    out: &mut String,
    req: EdgeRequest<'a, H>,
    origin: Option<&EdgeOrigin<'_>>,
) {
    let (uri, query) = req.target.split_once('?').unwrap_or((req.target, ""));
    let _ = write!(out, "{{\"clientIp\":\"{}\",\"headers\":", req.client);
    headers(out, req.viewer_fields());
    out.push_str(",\"method\":");
    string(out, req.method);
    out.push_str(",\"querystring\":");
    string(out, query);
    out.push_str(",\"uri\":");
    string(out, uri);
    if let Some(o) = origin {
        out.push_str(",\"origin\":{\"custom\":{\"customHeaders\":");
        headers(
            out,
            o.custom_headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes())),
        );
        out.push_str(",\"domainName\":");
        string(out, o.domain_name);
        let _ = write!(
            out,
            ",\"keepaliveTimeout\":{},\"path\":",
            o.keepalive_timeout
        );
        string(out, o.path);
        let _ = write!(
            out,
            ",\"port\":{},\"protocol\":\"{}\",\"readTimeout\":{},\"sslProtocols\":[\"TLSv1.2\"]}}}}",
            o.port, o.protocol, o.read_timeout
        );
    }
    out.push('}');
}

fn open_event(out: &mut String, trigger: Trigger) {
    let _ = write!(
        out,
        "{{\"Records\":[{{\"cf\":{{\"config\":{{\"distributionDomainName\":\"lb\",\"distributionId\":\"lb\",\"eventType\":\"{}\",\"requestId\":\"lb\"}},\"request\":",
        trigger.event_type()
    );
}

const CLOSE_EVENT: &str = "}}]}";

pub fn viewer_request_event<'a, H: Iterator<Item = (&'a str, &'a [u8])> + Clone>(
    req: EdgeRequest<'a, H>,
) -> String {
    let mut out = String::with_capacity(512);
    open_event(&mut out, Trigger::ViewerRequest);
    request_json(&mut out, req, None);
    out.push_str(CLOSE_EVENT);
    out
}

/// The origin an origin-request function sees (`request.origin.custom`).
pub struct EdgeOrigin<'a> {
    pub domain_name: &'a str,
    pub port: u16,
    pub protocol: &'a str,
    pub path: &'a str,
    pub custom_headers: &'a [(String, String)],
    pub keepalive_timeout: u64,
    pub read_timeout: u64,
}

pub fn origin_request_event<'a, H: Iterator<Item = (&'a str, &'a [u8])> + Clone>(
    req: EdgeRequest<'a, H>,
    origin: &EdgeOrigin<'_>,
) -> String {
    let mut out = String::with_capacity(768);
    open_event(&mut out, Trigger::OriginRequest);
    request_json(&mut out, req, Some(origin));
    out.push_str(CLOSE_EVENT);
    out
}

pub fn origin_response_event<'a, 'r, H: Iterator<Item = (&'a str, &'a [u8])> + Clone>(
    req: EdgeRequest<'a, H>,
    status: u16,
    reason: &str,
    response_fields: impl Iterator<Item = (&'r str, &'r [u8])> + Clone,
) -> String {
    response_event(
        Trigger::OriginResponse,
        req,
        status,
        reason,
        response_fields,
    )
}

/// A response event (`origin-response` or `viewer-response`): the request and the
/// response's head.
pub fn response_event<'a, 'r, H: Iterator<Item = (&'a str, &'a [u8])> + Clone>(
    trigger: Trigger,
    req: EdgeRequest<'a, H>,
    status: u16,
    reason: &str,
    response_fields: impl Iterator<Item = (&'r str, &'r [u8])> + Clone,
) -> String {
    let mut out = String::with_capacity(1024);
    open_event(&mut out, trigger);
    request_json(&mut out, req, None);
    out.push_str(",\"response\":{\"headers\":");
    headers(&mut out, response_fields);
    let _ = write!(out, ",\"status\":\"{status}\",\"statusDescription\":");
    string(&mut out, reason);
    out.push('}');
    out.push_str(CLOSE_EVENT);
    out
}

/// A response a function made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generated {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What a viewer-request function decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Go on with this request: the target (path and query) and every header, as the
    /// function left them.
    Forward {
        target: String,
        headers: Vec<(String, String)>,
    },
    Respond(Generated),
}

/// What an origin-response function decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseOutcome {
    /// The origin's body follows this status and these headers.
    Head {
        status: u16,
        reason: String,
        headers: Vec<(String, String)>,
    },
    /// The function's own body replaces the origin's.
    Replace(Generated),
}

fn invalid(what: impl Into<String>) -> FunctionError {
    FunctionError::Invalid(what.into())
}

fn parse_headers(v: Option<&Value>) -> Result<Vec<(String, String)>, FunctionError> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    let map = v
        .as_object()
        .ok_or_else(|| invalid("headers is not an object"))?;
    let mut out = Vec::new();
    for (lower, list) in map {
        let list = list
            .as_array()
            .ok_or_else(|| invalid(format!("headers[{lower:?}] is not a list")))?;
        for item in list {
            let value = item.get("value").and_then(Value::as_str).ok_or_else(|| {
                invalid(format!("headers[{lower:?}] has an entry without a value"))
            })?;
            // The object's name is the field's; `key` only gives its spelling. Without a
            // `key`, or with one that names another field (AWS's own "override a response
            // header" example files X-Amz-Meta-Last-Modified's entry under
            // last-modified), the name is written as CloudFront writes it: Each-Part.
            let spelled = item
                .get("key")
                .and_then(Value::as_str)
                .filter(|k| k.eq_ignore_ascii_case(lower));
            let capitalised;
            let key = match spelled {
                Some(k) => k,
                None => {
                    capitalised = capitalise(lower);
                    &capitalised
                }
            };
            let name_ok = !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            let value_ok = value
                .bytes()
                .all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80);
            if !name_ok || !value_ok {
                return Err(invalid(format!("header {key:?} is not a valid field")));
            }
            out.push((key.to_owned(), value.to_owned()));
        }
    }
    Ok(out)
}

/// `content-type` as `Content-Type`.
fn capitalise(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut start = true;
    for c in name.chars() {
        out.push(if start { c.to_ascii_uppercase() } else { c });
        start = c == '-';
    }
    out
}

fn parse_status(v: &Value) -> Result<u16, FunctionError> {
    let status = match v {
        Value::String(s) => s.trim().parse::<u16>().ok(),
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        _ => None,
    };
    status
        .filter(|s| (200..=599).contains(s))
        .ok_or_else(|| invalid(format!("status {v} is not 200-599")))
}

fn parse_body(obj: &Map<String, Value>) -> Result<Option<Vec<u8>>, FunctionError> {
    let Some(body) = obj.get("body") else {
        return Ok(None);
    };
    let text = body
        .as_str()
        .ok_or_else(|| invalid("body is not a string"))?;
    match obj
        .get("bodyEncoding")
        .and_then(Value::as_str)
        .unwrap_or("text")
    {
        "text" => Ok(Some(text.as_bytes().to_vec())),
        "base64" => decode_base64(text)
            .map(Some)
            .ok_or_else(|| invalid("body is not valid base64")),
        other => Err(invalid(format!("bodyEncoding {other:?}"))),
    }
}

fn generated(obj: &Map<String, Value>) -> Result<Generated, FunctionError> {
    let status = parse_status(obj.get("status").ok_or_else(|| invalid("no status"))?)?;
    Ok(Generated {
        status,
        reason: obj
            .get("statusDescription")
            .and_then(Value::as_str)
            .unwrap_or(default_reason(status))
            .to_owned(),
        headers: parse_headers(obj.get("headers"))?,
        body: parse_body(obj)?.unwrap_or_default(),
    })
}

/// A viewer-request function's answer: a request goes on, a response (it has a
/// `status`) is sent to the client.
pub fn parse_request_result(json: &str) -> Result<RequestOutcome, FunctionError> {
    let v: Value = serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("neither a request nor a response"))?;
    if obj.contains_key("status") {
        return Ok(RequestOutcome::Respond(generated(obj)?));
    }
    let uri = obj
        .get("uri")
        .and_then(Value::as_str)
        .filter(|u| u.starts_with('/'))
        .ok_or_else(|| invalid("the request has no uri starting with /"))?;
    let query = obj.get("querystring").and_then(Value::as_str).unwrap_or("");
    let clean = |s: &str| !s.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'#');
    if !clean(uri) || !clean(query) {
        return Err(invalid(
            "uri or querystring holds spaces, '#' or control characters",
        ));
    }
    let target = if query.is_empty() {
        uri.to_owned()
    } else {
        format!("{uri}?{query}")
    };
    Ok(RequestOutcome::Forward {
        target,
        headers: parse_headers(obj.get("headers"))?,
    })
}

/// An origin-response function's answer.
pub fn parse_response_result(json: &str) -> Result<ResponseOutcome, FunctionError> {
    let v: Value = serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
    let obj = v.as_object().ok_or_else(|| invalid("not a response"))?;
    if obj.contains_key("body") {
        return Ok(ResponseOutcome::Replace(generated(obj)?));
    }
    let status = parse_status(obj.get("status").ok_or_else(|| invalid("no status"))?)?;
    Ok(ResponseOutcome::Head {
        status,
        reason: obj
            .get("statusDescription")
            .and_then(Value::as_str)
            .unwrap_or(default_reason(status))
            .to_owned(),
        headers: parse_headers(obj.get("headers"))?,
    })
}

/// The reason phrase a function that sets none gets (clients ignore it; RFC 9112 allows
/// it empty).
fn default_reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// Standard or URL-safe base64, padding optional.
pub(super) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in text.bytes().filter(|b| !b.is_ascii_whitespace()) {
        if b == b'=' {
            break;
        }
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_lambda_at_edges_shape() {
        let fields = [
            ("Host", b"a.test".as_slice()),
            ("X-Multi", b"1"),
            ("x-multi", b"2"),
            (
                "X-Odd",
                "quote\" back\\ tab\t sep\u{2028} caf\u{e9}".as_bytes(),
            ),
            ("CloudFront-Viewer-Country", b"XX"),
        ];
        let req = EdgeRequest {
            client: "203.0.113.9".parse().unwrap(),
            method: "GET",
            target: "/p/x?a=1&b=2",
            fields: fields.iter().copied(),
            country: Some("GB"),
        };
        let e: Value = serde_json::from_str(&origin_response_event(
            req,
            503,
            "Service Unavailable",
            [("Content-Type", b"text/html".as_slice())].into_iter(),
        ))
        .unwrap();
        let cf = &e["Records"][0]["cf"];
        assert_eq!(cf["config"]["eventType"], "origin-response");
        assert_eq!(cf["request"]["uri"], "/p/x");
        assert_eq!(cf["request"]["querystring"], "a=1&b=2");
        assert_eq!(cf["request"]["clientIp"], "203.0.113.9");
        assert_eq!(cf["request"]["headers"]["host"][0]["key"], "Host");
        assert_eq!(cf["request"]["headers"]["x-multi"][1]["value"], "2");
        // The client's own country header is never believed; lb's replaces it.
        assert_eq!(
            cf["request"]["headers"]["cloudfront-viewer-country"],
            serde_json::json!([{"key": "CloudFront-Viewer-Country", "value": "GB"}])
        );
        assert_eq!(
            cf["request"]["headers"]["x-multi"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            cf["request"]["headers"]["x-odd"][0]["value"],
            "quote\" back\\ tab\t sep\u{2028} caf\u{e9}"
        );
        assert_eq!(cf["response"]["status"], "503");
        assert_eq!(
            cf["response"]["headers"]["content-type"][0]["value"],
            "text/html"
        );
    }

    #[test]
    fn origin_request_events_describe_the_origin() {
        let custom = [("X-Which".to_owned(), "primary".to_owned())];
        let e: Value = serde_json::from_str(&origin_request_event(
            EdgeRequest {
                client: "::1".parse().unwrap(),
                method: "POST",
                target: "/a",
                fields: std::iter::empty(),
                country: None,
            },
            &EdgeOrigin {
                domain_name: "origin.test",
                port: 8443,
                protocol: "https",
                path: "/v1",
                custom_headers: &custom,
                keepalive_timeout: 5,
                read_timeout: 30,
            },
        ))
        .unwrap();
        let o = &e["Records"][0]["cf"]["request"]["origin"]["custom"];
        assert_eq!(o["customHeaders"]["x-which"][0]["value"], "primary");
        assert_eq!(o["port"], 8443);
        assert_eq!(o["protocol"], "https");
        assert_eq!(e["Records"][0]["cf"]["request"]["clientIp"], "::1");
        assert_eq!(
            e["Records"][0]["cf"]["config"]["eventType"],
            "origin-request"
        );
    }

    #[test]
    fn results_are_validated() {
        let r = parse_response_result(
            r#"{"status":200,"statusDescription":"OK","body":"hi","headers":{}}"#,
        );
        assert_eq!(
            r.unwrap(),
            ResponseOutcome::Replace(Generated {
                status: 200,
                reason: "OK".into(),
                headers: vec![],
                body: b"hi".to_vec()
            })
        );
        let r = parse_response_result(
            r#"{"status":"404","headers":{"x-a":[{"key":"X-A","value":"1"}]}}"#,
        );
        assert!(
            matches!(r, Ok(ResponseOutcome::Head { status: 404, ref headers, .. }) if headers == &[("X-A".to_owned(), "1".to_owned())])
        );
        // The entry's name wins over a `key` that names another field; without a key
        // the name is capitalised as CloudFront does.
        let r = parse_response_result(
            r#"{"status":200,"headers":{"x-a":[{"key":"X-B","value":"1"}],"content-type":[{"value":"t"}]}}"#,
        );
        assert!(
            matches!(r, Ok(ResponseOutcome::Head { ref headers, .. }) if headers == &[("X-A".to_owned(), "1".to_owned()), ("Content-Type".to_owned(), "t".to_owned())]),
            "{r:?}"
        );
        for bad in [
            r#"{"status":"abc"}"#,
            r#"{"status":700}"#,
            r#"{"status":200,"headers":{"x-a":[{"key":"X-A","value":"a\r\nb"}]}}"#,
            r#"{"status":200,"body":"!!","bodyEncoding":"base64"}"#,
            r#"42"#,
        ] {
            assert!(
                matches!(parse_response_result(bad), Err(FunctionError::Invalid(_))),
                "{bad}"
            );
        }
        let r = parse_request_result(
            r#"{"uri":"/new","querystring":"x=1","headers":{"host":[{"key":"Host","value":"b"}]}}"#,
        );
        assert_eq!(
            r.unwrap(),
            RequestOutcome::Forward {
                target: "/new?x=1".into(),
                headers: vec![("Host".into(), "b".into())]
            }
        );
        assert!(parse_request_result(r#"{"uri":"no-slash"}"#).is_err());
        assert!(parse_request_result(r#"{"uri":"/a b"}"#).is_err());
        let r = parse_request_result(
            r#"{"status":"302","headers":{"location":[{"key":"Location","value":"/x"}]}}"#,
        );
        assert!(matches!(
            r,
            Ok(RequestOutcome::Respond(Generated { status: 302, .. }))
        ));
        assert_eq!(decode_base64("aGVsbG8="), Some(b"hello".to_vec()));
    }
}
