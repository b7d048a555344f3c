//! CloudFront Functions' event and result shapes (`function handler(event)`):
//! `event.request` with `headers`, `querystring` and `cookies` as objects of
//! `{value}` (and `multiValue` when repeated), `event.viewer.ip`; the answer is the
//! request, or a response with a numeric `statusCode`.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::{
    FunctionError,
    edge::{EdgeRequest, Generated, RequestOutcome},
};

fn string(out: &mut String, s: &str) {
    // serde_json's own escaping, for a str it cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

/// `{name: {value, multiValue?}}` from (name, value) pairs, names kept as given.
fn value_object<'a>(out: &mut String, pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone) {
    out.push('{');
    let mut first = true;
    for (i, (name, value)) in pairs.clone().enumerate() {
        if pairs.clone().take(i).any(|(n, _)| n == name) {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        string(out, name);
        out.push_str(":{\"value\":");
        string(out, value);
        let all: Vec<&str> = pairs
            .clone()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .collect();
        if all.len() > 1 {
            out.push_str(",\"multiValue\":[");
            for (j, v) in all.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                out.push_str("{\"value\":");
                string(out, v);
                out.push('}');
            }
            out.push(']');
        }
        out.push('}');
    }
    out.push('}');
}

pub fn viewer_request_event<'a, H: Iterator<Item = (&'a str, &'a [u8])> + Clone>(
    req: EdgeRequest<'a, H>,
) -> String {
    let mut out = String::with_capacity(512);
    event_start(&mut out, "viewer-request", req);
    out.push('}');
    out
}

/// The viewer-response event: the request, and the response's head with `statusCode`,
/// `headers` (without Set-Cookie) and `cookies` (from Set-Cookie).
pub fn viewer_response_event<'a, 'r, H: Iterator<Item = (&'a str, &'a [u8])> + Clone>(
    req: EdgeRequest<'a, H>,
    status: u16,
    reason: &str,
    response_fields: impl Iterator<Item = (&'r str, &'r [u8])> + Clone,
) -> String {
    let mut out = String::with_capacity(1024);
    event_start(&mut out, "viewer-response", req);
    let _ = write!(
        out,
        ",\"response\":{{\"statusCode\":{status},\"statusDescription\":"
    );
    string(&mut out, reason);
    out.push_str(",\"headers\":");
    let lowered: Vec<(String, String)> = response_fields
        .clone()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("set-cookie"))
        .map(|(n, v)| {
            (
                n.to_ascii_lowercase(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect();
    value_object(
        &mut out,
        lowered.iter().map(|(n, v)| (n.as_str(), v.as_str())),
    );
    out.push_str(",\"cookies\":{");
    let set_cookies: Vec<String> = response_fields
        .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .collect();
    for (i, c) in set_cookies.iter().enumerate() {
        let (pair, attributes) = c.split_once(';').unwrap_or((c, ""));
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if i > 0 {
            out.push(',');
        }
        string(&mut out, name.trim());
        out.push_str(":{\"value\":");
        string(&mut out, value.trim());
        out.push_str(",\"attributes\":");
        string(&mut out, attributes.trim());
        out.push('}');
    }
    out.push_str("}}}");
    out
}

/// A response head: status, reason phrase, fields.
pub type ResponseHead = (u16, String, Vec<(String, String)>);

/// The function's answer at viewer-response: the response head it leaves.
pub fn parse_response_result(json: &str) -> Result<ResponseHead, FunctionError> {
    match parse_request_result(json)? {
        RequestOutcome::Respond(g) if g.body.is_empty() => Ok((g.status, g.reason, g.headers)),
        RequestOutcome::Respond(_) => Err(invalid("a viewer-response function cannot set a body")),
        RequestOutcome::Forward { .. } => Err(invalid("not a response (no statusCode)")),
    }
}

/// `{"version":"1.0","context":{...},"viewer":{...},"request":{...}` (left open).
fn event_start<'a, H: Iterator<Item = (&'a str, &'a [u8])> + Clone>(
    out: &mut String,
    event_type: &str,
    req: EdgeRequest<'a, H>,
) {
    let (uri, query) = req.target.split_once('?').unwrap_or((req.target, ""));
    let _ = write!(
        out,
        "{{\"version\":\"1.0\",\"context\":{{\"distributionDomainName\":\"lb\",\"distributionId\":\"lb\",\"eventType\":\"{event_type}\",\"requestId\":\"lb\"}},\"viewer\":{{\"ip\":\"{}\"}},\"request\":{{\"method\":",
        req.client
    );
    string(out, req.method);
    out.push_str(",\"uri\":");
    string(out, uri);
    out.push_str(",\"querystring\":");
    let query_pairs = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")));
    value_object(out, query_pairs);
    out.push_str(",\"headers\":");
    let lowered: Vec<(String, String)> = req
        .viewer_fields()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("cookie"))
        .map(|(n, v)| {
            (
                n.to_ascii_lowercase(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect();
    value_object(out, lowered.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    out.push_str(",\"cookies\":");
    let cookie_text: Vec<String> = req
        .fields
        .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .collect();
    let cookies = cookie_text
        .iter()
        .flat_map(|c| c.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| c.split_once('=').unwrap_or((c, "")));
    value_object(out, cookies);
    out.push('}');
}

fn invalid(what: impl Into<String>) -> FunctionError {
    FunctionError::Invalid(what.into())
}

/// Every value of a `{value, multiValue?}` entry.
fn values(name: &str, v: &Value) -> Result<Vec<String>, FunctionError> {
    if let Some(multi) = v.get("multiValue").and_then(Value::as_array) {
        return multi
            .iter()
            .map(|m| {
                m.get("value")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| invalid(format!("{name}: a multiValue entry without a value")))
            })
            .collect();
    }
    v.get("value")
        .and_then(Value::as_str)
        .map(|s| vec![s.to_owned()])
        .ok_or_else(|| invalid(format!("{name} has no value")))
}

fn field_ok(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        && value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
}

fn headers(obj: &Map<String, Value>) -> Result<Vec<(String, String)>, FunctionError> {
    let mut out = Vec::new();
    if let Some(h) = obj.get("headers") {
        let h = h
            .as_object()
            .ok_or_else(|| invalid("headers is not an object"))?;
        for (name, v) in h {
            for value in values(name, v)? {
                if !field_ok(name, &value) {
                    return Err(invalid(format!("header {name:?} is not a valid field")));
                }
                out.push((name.clone(), value));
            }
        }
    }
    Ok(out)
}

/// The function's answer at viewer-request.
pub fn parse_request_result(json: &str) -> Result<RequestOutcome, FunctionError> {
    let v: Value = serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("neither a request nor a response"))?;
    if let Some(code) = obj.get("statusCode") {
        let status = code
            .as_u64()
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| (200..=599).contains(c))
            .ok_or_else(|| invalid(format!("statusCode {code} is not 200-599")))?;
        let mut headers = headers(obj)?;
        if let Some(cookies) = obj.get("cookies").and_then(Value::as_object) {
            for (name, c) in cookies {
                let value = c.get("value").and_then(Value::as_str).unwrap_or("");
                let mut set = format!("{name}={value}");
                if let Some(attrs) = c.get("attributes").and_then(Value::as_str) {
                    set.push_str("; ");
                    set.push_str(attrs);
                }
                if !field_ok("set-cookie", &set) {
                    return Err(invalid(format!("cookie {name:?} is not valid")));
                }
                headers.push(("set-cookie".into(), set));
            }
        }
        let body = match obj.get("body") {
            None => Vec::new(),
            Some(Value::String(s)) => s.as_bytes().to_vec(),
            Some(Value::Object(b)) => {
                let data = b.get("data").and_then(Value::as_str).unwrap_or("");
                match b.get("encoding").and_then(Value::as_str).unwrap_or("text") {
                    "text" => data.as_bytes().to_vec(),
                    "base64" => super::edge::decode_base64(data)
                        .ok_or_else(|| invalid("body is not valid base64"))?,
                    other => return Err(invalid(format!("body encoding {other:?}"))),
                }
            }
            Some(_) => return Err(invalid("body is neither a string nor {data, encoding}")),
        };
        return Ok(RequestOutcome::Respond(Generated {
            status,
            reason: obj
                .get("statusDescription")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            headers,
            body,
        }));
    }
    let uri = obj
        .get("uri")
        .and_then(Value::as_str)
        .filter(|u| u.starts_with('/'))
        .ok_or_else(|| invalid("the request has no uri starting with /"))?;
    let mut query = String::new();
    match obj.get("querystring") {
        None | Some(Value::Null) => {}
        Some(Value::String(q)) => query.push_str(q.trim_start_matches('?')),
        Some(Value::Object(q)) => {
            for (name, v) in q {
                for value in values(name, v)? {
                    if !query.is_empty() {
                        query.push('&');
                    }
                    query.push_str(name);
                    if !value.is_empty() {
                        query.push('=');
                        query.push_str(&value);
                    }
                }
            }
        }
        Some(_) => return Err(invalid("querystring is neither an object nor a string")),
    }
    let clean = |s: &str| !s.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'#');
    if !clean(uri) || !clean(&query) {
        return Err(invalid(
            "uri or querystring holds spaces, '#' or control characters",
        ));
    }
    let mut headers = headers(obj)?;
    if let Some(cookies) = obj.get("cookies").and_then(Value::as_object) {
        let mut line = String::new();
        for (name, c) in cookies {
            for value in values(name, c)? {
                if !line.is_empty() {
                    line.push_str("; ");
                }
                let _ = write!(line, "{name}={value}");
            }
        }
        if !line.is_empty() {
            if !field_ok("cookie", &line) {
                return Err(invalid("cookies are not valid"));
            }
            headers.push(("cookie".into(), line));
        }
    }
    let target = if query.is_empty() {
        uri.to_owned()
    } else {
        format!("{uri}?{query}")
    };
    Ok(RequestOutcome::Forward { target, headers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_has_cloudfront_functions_shape_and_answers_round_trip() {
        let fields = [
            ("Host", b"a.test".as_slice()),
            ("Accept", b"text/html"),
            ("X-Multi", b"1"),
            ("x-multi", b"2"),
            ("Cookie", b"id=7; theme=dark"),
        ];
        let event = viewer_request_event(EdgeRequest {
            client: "198.51.100.4".parse().unwrap(),
            method: "GET",
            target: "/p?a=1&b=2&a=3&flag",
            fields: fields.iter().copied(),
            country: None,
        });
        let e: Value = serde_json::from_str(&event).unwrap();
        assert_eq!(e["version"], "1.0");
        assert_eq!(e["context"]["eventType"], "viewer-request");
        assert_eq!(e["viewer"]["ip"], "198.51.100.4");
        let r = &e["request"];
        assert_eq!(r["uri"], "/p");
        assert_eq!(r["querystring"]["a"]["value"], "1");
        assert_eq!(r["querystring"]["a"]["multiValue"][1]["value"], "3");
        assert_eq!(r["querystring"]["flag"]["value"], "");
        assert_eq!(r["headers"]["host"]["value"], "a.test");
        assert_eq!(r["headers"]["x-multi"]["multiValue"][1]["value"], "2");
        assert!(r["headers"].get("cookie").is_none());
        assert_eq!(r["cookies"]["theme"]["value"], "dark");
        // The request handed back unchanged is the same request.
        let back = serde_json::to_string(r).unwrap();
        let RequestOutcome::Forward { target, headers } = parse_request_result(&back).unwrap()
        else {
            panic!("a request");
        };
        assert_eq!(target, "/p?a=1&a=3&b=2&flag");
        assert!(headers.contains(&("x-multi".into(), "2".into())));
        assert!(headers.contains(&("cookie".into(), "id=7; theme=dark".into())));
    }

    #[test]
    fn responses_and_bad_answers() {
        let r = parse_request_result(
            r#"{"statusCode":302,"statusDescription":"Found","headers":{"location":{"value":"https://x/"}},"cookies":{"s":{"value":"1","attributes":"Path=/"}}}"#,
        )
        .unwrap();
        let RequestOutcome::Respond(g) = r else {
            panic!("a response");
        };
        assert_eq!(g.status, 302);
        assert!(
            g.headers
                .contains(&("location".into(), "https://x/".into()))
        );
        assert!(
            g.headers
                .contains(&("set-cookie".into(), "s=1; Path=/".into()))
        );
        for bad in [
            r#"{"statusCode":"302"}"#,
            r#"{"statusCode":99}"#,
            r#"{"uri":"x"}"#,
            r#"{"uri":"/x","headers":{"bad name":{"value":"1"}}}"#,
            r#"{"uri":"/x","headers":{"a":{}}}"#,
        ] {
            assert!(parse_request_result(bad).is_err(), "{bad}");
        }
    }
}
