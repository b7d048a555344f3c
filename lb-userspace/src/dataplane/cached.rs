//! The cache on the request path: the lookup before the failover loop (a fresh copy
//! answers at once; a stale one answers at once when every member of the target is down,
//! or after the members failed, within its stale-if-error allowance), the response
//! written from a stored object, and the decision to store an origin's final answer.
//!
//! `Cache-Status` (RFC 9211) says what happened on every response of a cached behavior:
//! `lb; hit`, `lb; fwd=uri-miss; stored`, `lb; fwd=uri-miss; detail=no-store`,
//! `lb; hit; ttl=-12; detail=stale-group-down`, `lb; fwd=stale; fwd-status=503; ...`.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use super::{
    client::ClientConn,
    fate::{self, Next, Written},
    worker::{View, Worker},
};
use crate::{
    cache::{
        CacheControl, NotStored, Object,
        control::{self, Exchange},
        key::{vary_names, vary_values},
    },
    config::BehaviorCache,
    http::{BodyFraming, HeaderRewrite, Method, ParsedResponse, httparse_headers, is_hop_by_hop},
    metrics::CacheEvent,
};

/// What the cache knows about a request it handles.
pub(super) struct Lookup {
    pub key: String,
    pub request_cc: CacheControl,
    pub request_time: SystemTime,
    pub has_authorization: bool,
    /// The target the origin gets: the path with only the keyed query parameters.
    pub origin_target: String,
    /// The `Cookie` value the origin gets (only keyed cookies; empty: none).
    pub origin_cookie: Vec<u8>,
    /// A stored copy that could not answer at once: served if every member fails and
    /// its stale allowance covers it.
    pub stale: Option<Arc<Object>>,
    /// This request leads the fill of its key: concurrent misses wait for it until it is
    /// dropped (after the answer is stored, or was not storable).
    #[expect(dead_code, reason = "held for its Drop, which wakes the waiters")]
    pub lead: Option<crate::cache::Lead>,
}

/// What to do with a request of a cached behavior.
pub(super) enum Decision {
    /// Answer from the store: the object, the `Cache-Status` value, what it counts as.
    Serve(Arc<Object>, String, CacheEvent),
    /// Ask the origins.
    Forward(Lookup),
    /// A concurrent miss of the same key is asking: wait for it, then look again.
    Wait(futures_channel::oneshot::Receiver<()>),
    /// Serve this stale copy (within its `stale-while-revalidate`) and refresh it in the
    /// background; the lookup holds the key's fill lead.
    Revalidate(Arc<Object>, String, Lookup),
    /// Memory misses but the disk tier holds the key: read it back, then look again.
    Disk(String, std::path::PathBuf),
}

/// How a lookup may proceed.
#[derive(Clone, Copy, Debug)]
pub(super) struct LookupMode {
    /// A miss may lead the fill or wait for the one in flight (not after a wait).
    pub collapse: bool,
    /// A memory miss may ask for a disk read (not after one).
    pub disk: bool,
}

/// Whether the cache handles this request: a GET or HEAD (OPTIONS if the behavior
/// caches it) without a body or an upgrade. Others bypass it. (A Range request is
/// answered from a stored copy, or bypasses the cache on a miss.)
fn cacheable_request(policy: &BehaviorCache, conn: &ClientConn) -> bool {
    let method_ok = match conn.head.method() {
        Method::Get | Method::Head => true,
        Method::Options => policy.options,
        _ => false,
    };
    let bodiless = matches!(
        conn.head.framing(),
        BodyFraming::None | BodyFraming::ContentLength(0)
    );
    method_ok && bodiless && conn.head.upgrade().is_none()
}

fn has_range(conn: &ClientConn) -> bool {
    conn.head
        .fields()
        .any(|(n, _)| n.eq_ignore_ascii_case("range"))
}

/// Looks the request up. `group_down` tells whether every member of the target is down
/// (then a stale copy answers at once, without waiting for any timeout).
pub(super) fn lookup(
    worker: &Worker,
    policy: &BehaviorCache,
    conn: &ClientConn,
    group_down: impl FnOnce() -> bool,
    mode: LookupMode,
) -> Option<Decision> {
    let collapse = mode.collapse;
    if !cacheable_request(policy, conn) {
        return None;
    }
    let fields = conn.head.fields();
    let target = conn.head.path();
    let (_, query) = target.split_once('?').unwrap_or((target, ""));
    let path = conn.match_path().split('?').next().unwrap_or("");
    let mut key = String::with_capacity(64 + target.len());
    policy.key.write_key(
        &mut key,
        conn.head.host().unwrap_or_default(),
        path,
        query,
        fields.clone(),
    );
    let request_cc = CacheControl::parse(
        fields
            .clone()
            .filter(|(n, _)| n.eq_ignore_ascii_case("cache-control"))
            .map(|(_, v)| v),
    );
    let now = SystemTime::now();
    let stored = worker.cache.lookup(&key, fields.clone());
    if stored.is_none()
        && mode.disk
        && let Some(file) = worker.cache.on_disk(&key)
    {
        return Some(Decision::Disk(key, file));
    }
    // The client asks for the origin's answer, not one fetched for someone else.
    let revalidate = request_cc.no_cache || request_cc.max_age == Some(0);
    // A stale copy within its stale-while-revalidate: served at once, refreshed behind.
    let mut while_revalidate = None;
    if let Some(obj) = &stored {
        match obj.staleness(now) {
            None if !revalidate => {
                let ttl = obj.lifetime.saturating_sub(obj.age(now)).as_secs();
                return Some(Decision::Serve(
                    Arc::clone(obj),
                    format!("lb; hit; ttl={ttl}"),
                    CacheEvent::Hit,
                ));
            }
            Some(stale) if stale_allowed(obj, policy, stale, false) && group_down() => {
                return Some(Decision::Serve(
                    Arc::clone(obj),
                    format!("lb; hit; ttl=-{}; detail=stale-group-down", stale.as_secs()),
                    CacheEvent::StaleGroupDown,
                ));
            }
            Some(stale)
                if !revalidate && !obj.must_revalidate && stale <= obj.stale_while_revalidate =>
            {
                while_revalidate = Some((
                    Arc::clone(obj),
                    format!(
                        "lb; hit; ttl=-{}; detail=stale-while-revalidate",
                        stale.as_secs()
                    ),
                ));
            }
            _ => {}
        }
    }
    if has_range(conn) && while_revalidate.is_none() {
        // Only a stored copy answers a range; a miss goes to the origin untouched (the
        // partial answer is not stored).
        return None;
    }
    let (origin_path, _) = target.split_once('?').unwrap_or((target, ""));
    let mut forwarded_query = String::new();
    policy.key.forwarded_query(query, &mut forwarded_query);
    let origin_target = if forwarded_query.is_empty() {
        origin_path.to_owned()
    } else {
        format!("{origin_path}?{forwarded_query}")
    };
    let mut origin_cookie = Vec::new();
    policy.key.forwarded_cookies(
        fields
            .clone()
            .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
            .map(|(_, v)| v),
        &mut origin_cookie,
    );
    let has_authorization = fields
        .clone()
        .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
    // One request per key goes to the origins; the others wait for its answer (or, with
    // a copy within stale-while-revalidate, get that copy while one refresh runs).
    let lead = match while_revalidate {
        Some((obj, status)) => match worker.cache.join(&key) {
            crate::cache::Join::Lead(lead) => {
                let lookup = Lookup {
                    key,
                    request_cc,
                    request_time: now,
                    has_authorization,
                    origin_target,
                    origin_cookie,
                    stale: stored,
                    lead: Some(lead),
                };
                return Some(Decision::Revalidate(obj, status, lookup));
            }
            crate::cache::Join::Wait(_) => {
                return Some(Decision::Serve(
                    obj,
                    status,
                    CacheEvent::StaleWhileRevalidate,
                ));
            }
        },
        None if collapse && !revalidate => match worker.cache.join(&key) {
            crate::cache::Join::Lead(lead) => Some(lead),
            crate::cache::Join::Wait(rx) => return Some(Decision::Wait(rx)),
        },
        None => None,
    };
    Some(Decision::Forward(Lookup {
        key,
        request_cc,
        request_time: now,
        has_authorization,
        origin_target,
        origin_cookie,
        stale: stored,
        lead,
    }))
}

/// Whether a copy `stale` for this long may be served: never past `must-revalidate`;
/// within `stale-if-error` (or the behavior's allowance) when the origins failed, within
/// `stale-while-revalidate` otherwise.
fn stale_allowed(obj: &Object, policy: &BehaviorCache, stale: Duration, error: bool) -> bool {
    if obj.must_revalidate {
        return false;
    }
    let allowance = if error {
        obj.stale_if_error.max(policy.stale_if_error)
    } else {
        // A group that is down is an error that has already happened.
        obj.stale_if_error
            .max(policy.stale_if_error)
            .max(obj.stale_while_revalidate)
    };
    stale <= allowance
}

/// The stored copy to serve after every member failed (`fwd_status`: the status of the
/// last answer, or lb's own 502/504), with its `Cache-Status`.
pub(super) fn stale_on_error(
    lookup: &Lookup,
    policy: &BehaviorCache,
    fwd_status: u16,
) -> Option<(Arc<Object>, String)> {
    let obj = lookup.stale.as_ref()?;
    let stale = obj.staleness(SystemTime::now()).unwrap_or(Duration::ZERO);
    if !stale_allowed(obj, policy, stale, true) {
        return None;
    }
    Some((
        Arc::clone(obj),
        format!(
            "lb; fwd=stale; fwd-status={fwd_status}; ttl=-{}; detail=stale-if-error",
            stale.as_secs()
        ),
    ))
}

/// Writes a stored object (headers only for HEAD), answering a conditional request with
/// 304 when its validator matches; then lets [`fate::conclude`] decide the connection.
pub(super) async fn serve(
    worker: &Worker,
    view: &View,
    conn: &mut ClientConn,
    obj: &Object,
    cache_status: &str,
    event: CacheEvent,
) -> (Next, u16) {
    fate::settle_chunked_body(worker, conn).await;
    let keep = fate::keep_alive_intent(worker, conn);
    let connection = fate::connection_field(conn, keep);
    let age = obj.age(SystemTime::now()).as_secs().to_string();
    let not_modified = not_modified(conn, obj);
    let range = if not_modified {
        Range::Full
    } else {
        requested_range(conn, obj)
    };
    let (status, reason, body) = match range {
        _ if not_modified => (304, "Not Modified", obj.body.slice(0..0)),
        Range::Full => (obj.status, &obj.reason[..], obj.body.clone()),
        Range::Partial(start, end) => (206, "Partial Content", obj.body.slice(start..end + 1)),
        Range::Unsatisfiable => (416, "Range Not Satisfiable", obj.body.slice(0..0)),
    };
    let content_range = match range {
        Range::Partial(start, end) => format!("bytes {start}-{end}/{}", obj.body.len()),
        Range::Unsatisfiable => format!("bytes */{}", obj.body.len()),
        Range::Full => String::new(),
    };
    let mut extra: Vec<(&str, &[u8])> = vec![
        ("age", age.as_bytes()),
        ("cache-status", cache_status.as_bytes()),
    ];
    if !content_range.is_empty() {
        extra.push(("content-range", content_range.as_bytes()));
    }
    let edits = super::attempt::response_edits(view, conn.rule);
    extra.extend(
        edits
            .into_iter()
            .flat_map(crate::rules::Actions::added_response_fields),
    );
    let stored_fields = obj.fields.iter().map(|(n, v)| (&n[..], &v[..]));
    // A viewer-response function sees hits too (the stored object stays as it is).
    let viewer_head = match conn
        .fn_viewer_response
        .then(|| {
            view.snap
                .config
                .behavior_for(conn.match_path())
                .function(crate::functions::Trigger::ViewerResponse)
        })
        .flatten()
    {
        Some(spec) => match super::edge_functions::viewer_response(
            view,
            conn,
            spec,
            status,
            reason,
            stored_fields.clone(),
        ) {
            Ok(head) => Some(head),
            Err(why) => return super::respond::error(worker, conn, 502, &why).await,
        },
        None => None,
    };
    let bodiless = not_modified || status == 204;
    let with_body = !bodiless && !conn.head_request;
    let length = (!bodiless).then_some(body.len() as u64);
    let kept = |(n, _): &(&str, &[u8])| super::attempt::kept_response_field(edits, n);
    let status = match &viewer_head {
        Some(head) => {
            HeaderRewrite::response(
                &mut conn.out,
                head.status,
                &head.reason,
                head.fields().filter(kept),
                length,
                false,
                connection,
                &extra,
            );
            head.status
        }
        None => {
            HeaderRewrite::response(
                &mut conn.out,
                status,
                reason,
                stored_fields.filter(kept),
                length,
                false,
                connection,
                &extra,
            );
            status
        }
    };
    if with_body && body.len() <= INLINE_BODY_MAX {
        conn.out.extend_from_slice(&body);
    }
    let mut written = match conn.send_out().await {
        Ok(()) => Written::Complete,
        Err(_) => Written::Broken,
    };
    conn.response_started = true;
    if with_body && body.len() > INLINE_BODY_MAX && written == Written::Complete {
        written = match monoio::time::timeout(
            conn.write_timeout,
            monoio::io::AsyncWriteRentExt::write_all(&mut conn.io.stream, body),
        )
        .await
        {
            Ok((Ok(_), _)) => Written::Complete,
            _ => Written::Broken,
        };
    }
    view.metrics().cache(event);
    (fate::conclude(worker, conn, keep, written).await, status)
}

/// Largest stored body sent in the same write as its head.
const INLINE_BODY_MAX: usize = 64 * 1024;

/// How a request's `Range` applies to a stored copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Range {
    /// No range, or one lb ignores (several ranges, another unit, a stale `If-Range`):
    /// the whole object, as RFC 9110 §14.2 allows.
    Full,
    /// Bytes `start..=end`.
    Partial(usize, usize),
    Unsatisfiable,
}

/// The range a GET asks of a stored 200 (RFC 9110 §14): one `bytes=` range, honoured
/// when `If-Range` (if any) names the stored strong ETag.
fn requested_range(conn: &ClientConn, obj: &Object) -> Range {
    if obj.status != 200 || conn.head.method() != Method::Get {
        return Range::Full;
    }
    let fields = conn.head.fields();
    let Some((_, value)) = fields
        .clone()
        .find(|(n, _)| n.eq_ignore_ascii_case("range"))
    else {
        return Range::Full;
    };
    if let Some((_, if_range)) = fields
        .clone()
        .find(|(n, _)| n.eq_ignore_ascii_case("if-range"))
        && (if_range.trim_ascii().starts_with(b"W/")
            || obj.field("etag").map(<[u8]>::trim_ascii) != Some(if_range.trim_ascii()))
    {
        // Strong comparison only (RFC 9110 §13.1.5); a date is not trusted either.
        return Range::Full;
    }
    parse_range(value, obj.body.len())
}

/// One `bytes=first-last`, `bytes=first-` or `bytes=-suffix` range over `len` bytes.
fn parse_range(value: &[u8], len: usize) -> Range {
    let Ok(value) = std::str::from_utf8(value) else {
        return Range::Full;
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Range::Full;
    };
    if spec.contains(',') {
        return Range::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Range::Full;
    };
    let number = |s: &str| s.trim().parse::<usize>().ok();
    let (start, end) = match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, false) => match number(last) {
            Some(0) => return Range::Unsatisfiable,
            Some(n) => (len.saturating_sub(n), len.saturating_sub(1)),
            None => return Range::Full,
        },
        (false, true) => match number(first) {
            Some(s) => (s, len.saturating_sub(1)),
            None => return Range::Full,
        },
        (false, false) => match (number(first), number(last)) {
            (Some(s), Some(e)) if s <= e => (s, e.min(len.saturating_sub(1))),
            _ => return Range::Full,
        },
        (true, true) => return Range::Full,
    };
    if len == 0 || start >= len {
        Range::Unsatisfiable
    } else {
        Range::Partial(start, end)
    }
}

/// A conditional GET/HEAD whose validator matches the stored copy (RFC 9110 §13.1):
/// `If-None-Match` against the ETag (weak comparison), else `If-Modified-Since` against
/// `Last-Modified`.
fn not_modified(conn: &ClientConn, obj: &Object) -> bool {
    if !(200..300).contains(&obj.status) {
        return false;
    }
    let fields = conn.head.fields();
    let inm: Vec<&[u8]> = fields
        .clone()
        .filter(|(n, _)| n.eq_ignore_ascii_case("if-none-match"))
        .map(|(_, v)| v)
        .collect();
    if !inm.is_empty() {
        let Some(etag) = obj.field("etag") else {
            return false;
        };
        let strip = |t: &[u8]| -> Vec<u8> {
            let t = t.trim_ascii();
            t.strip_prefix(b"W/").unwrap_or(t).to_vec()
        };
        let etag = strip(etag);
        return inm
            .iter()
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|t| t.trim_ascii() == b"*" || strip(t) == etag);
    }
    let since = fields
        .clone()
        .find(|(n, _)| n.eq_ignore_ascii_case("if-modified-since"))
        .and_then(|(_, v)| control::http_date(v));
    let modified = obj.field("last-modified").and_then(control::http_date);
    matches!((since, modified), (Some(s), Some(m)) if m <= s)
}

/// The validators lb sends when it asks the origin about an expired copy: its ETag
/// (`If-None-Match`) and Last-Modified (`If-Modified-Since`).
pub(super) fn validators(lookup: &Lookup) -> [Option<(&'static str, &[u8])>; 2] {
    let Some(obj) = &lookup.stale else {
        return [None, None];
    };
    [
        obj.field("etag").map(|v| ("if-none-match", v)),
        obj.field("last-modified").map(|v| ("if-modified-since", v)),
    ]
}

/// The stored copy refreshed by the origin's 304 (RFC 9111 §4.3.4): its fields updated
/// with the 304's, its freshness computed anew from now. `None` if there was no copy or
/// the 304 says it may no longer be stored.
pub(super) fn refreshed(
    lookup: &Lookup,
    policy: &BehaviorCache,
    r: &ParsedResponse<'_, '_>,
) -> Option<Object> {
    let old = lookup.stale.as_ref()?;
    let mut fields = old.fields.clone();
    for h in r.headers {
        if is_hop_by_hop(h.name, httparse_headers(r.headers))
            || [
                "content-length",
                "age",
                "transfer-encoding",
                "content-range",
            ]
            .iter()
            .any(|n| h.name.eq_ignore_ascii_case(n))
        {
            continue;
        }
        fields.retain(|(n, _)| !n.eq_ignore_ascii_case(h.name));
    }
    fields.extend(
        r.headers
            .iter()
            .filter(|h| {
                !is_hop_by_hop(h.name, httparse_headers(r.headers))
                    && ![
                        "content-length",
                        "age",
                        "transfer-encoding",
                        "content-range",
                    ]
                    .iter()
                    .any(|n| h.name.eq_ignore_ascii_case(n))
            })
            .map(|h| (Box::from(h.name), Box::from(h.value))),
    );
    let values = |name: &'static str| {
        fields
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| &v[..])
    };
    let response_cc = CacheControl::parse(values("cache-control"));
    if response_cc.no_store && policy.ttls.min.is_zero() {
        return None;
    }
    let now = SystemTime::now();
    let expires = values("expires").next().map(control::http_date);
    let date = values("date").next().and_then(control::http_date);
    let age = r
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("age"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.trim().parse().ok());
    Some(Object {
        status: old.status,
        reason: old.reason.clone(),
        lifetime: control::freshness_lifetime(&response_cc, expires, date, now, &policy.ttls),
        stale_while_revalidate: Duration::from_secs(
            response_cc.stale_while_revalidate.unwrap_or(0),
        ),
        stale_if_error: Duration::from_secs(response_cc.stale_if_error.unwrap_or(0)),
        must_revalidate: response_cc.forbids_stale(),
        fields,
        body: old.body.clone(),
        received: now,
        initial_age: control::initial_age(age, date, lookup.request_time, now),
        vary: old.vary.clone(),
        vary_values: old.vary_values.clone(),
    })
}

/// What will be stored once the body is in (everything but the body), or why not.
pub(super) struct FillPlan {
    pub object: Object,
}

/// Decides whether an origin's final answer is stored, from its head.
pub(super) fn plan_fill(
    lookup: &Lookup,
    policy: &BehaviorCache,
    head_request: bool,
    r: &ParsedResponse<'_, '_>,
) -> Result<FillPlan, NotStored> {
    if head_request {
        // A HEAD answer has no body to serve a later GET with.
        return Err(NotStored::Method);
    }
    let values = |name: &'static str| {
        r.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let response_cc = CacheControl::parse(values("cache-control"));
    let vary = vary_names(values("vary"));
    let expires = values("expires").next().map(control::http_date);
    let exchange = Exchange {
        request: &lookup.request_cc,
        response: &response_cc,
        status: r.status,
        has_expires: expires.is_some(),
        request_has_authorization: lookup.has_authorization,
        response_sets_cookie: values("set-cookie").next().is_some(),
        vary_star: vary.is_err(),
        allow_authorization: policy.allow_authorization,
        allow_set_cookie: policy.allow_set_cookie,
        ttls: policy.ttls,
    };
    control::storable(&exchange)?;
    if !(200..600).contains(&r.status) || r.status == 206 || r.status == 304 {
        return Err(NotStored::Status);
    }
    let now = SystemTime::now();
    let date = values("date").next().and_then(control::http_date);
    let age = values("age")
        .next()
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok());
    let lifetime = control::freshness_lifetime(&response_cc, expires, date, now, &policy.ttls);
    let has_validator = values("etag").next().is_some() || values("last-modified").next().is_some();
    if lifetime.is_zero() && !has_validator && policy.stale_if_error.is_zero() {
        return Err(NotStored::Uncacheable);
    }
    let vary = vary.unwrap_or_default();
    let fields = r
        .headers
        .iter()
        .filter(|h| {
            !is_hop_by_hop(h.name, httparse_headers(r.headers))
                && !["content-length", "age", "transfer-encoding"]
                    .iter()
                    .any(|n| h.name.eq_ignore_ascii_case(n))
        })
        .map(|h| (Box::from(h.name), Box::from(h.value)))
        .collect();
    Ok(FillPlan {
        object: Object {
            status: r.status,
            reason: r.reason.into(),
            fields,
            body: bytes::Bytes::new(),
            received: now,
            initial_age: control::initial_age(age, date, lookup.request_time, now),
            lifetime,
            stale_while_revalidate: Duration::from_secs(
                response_cc.stale_while_revalidate.unwrap_or(0),
            ),
            stale_if_error: Duration::from_secs(response_cc.stale_if_error.unwrap_or(0)),
            must_revalidate: response_cc.forbids_stale(),
            vary_values: Vec::new(),
            vary,
        },
    })
}

impl FillPlan {
    /// Stores the object with its body, under the lookup's key and the request's Vary
    /// values.
    pub fn finish(mut self, worker: &Worker, lookup: &Lookup, conn: &ClientConn, body: Vec<u8>) {
        self.object.vary_values = vary_values(&self.object.vary, conn.head.fields());
        self.object.body = bytes::Bytes::from(body);
        worker.cache.insert(&lookup.key, self.object);
    }
}

/// The `Cache-Status` of a response from the origin: `fwd=stale` when lb had a copy
/// that could not answer, `fwd=uri-miss` when it had none.
pub(super) fn miss_status(lookup: &Lookup, plan: &Result<FillPlan, NotStored>) -> String {
    let fwd = if lookup.stale.is_some() {
        "stale"
    } else {
        "uri-miss"
    };
    match plan {
        Ok(_) => format!("lb; fwd={fwd}; stored"),
        Err(why) => format!("lb; fwd={fwd}; detail={}", why.label()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges() {
        assert_eq!(parse_range(b"bytes=0-9", 100), Range::Partial(0, 9));
        assert_eq!(parse_range(b"bytes=90-", 100), Range::Partial(90, 99));
        assert_eq!(parse_range(b"bytes=-10", 100), Range::Partial(90, 99));
        assert_eq!(parse_range(b"bytes=-200", 100), Range::Partial(0, 99));
        assert_eq!(parse_range(b"bytes=50-500", 100), Range::Partial(50, 99));
        assert_eq!(parse_range(b"bytes=100-", 100), Range::Unsatisfiable);
        assert_eq!(parse_range(b"bytes=-0", 100), Range::Unsatisfiable);
        assert_eq!(
            parse_range(b"bytes=0-1,5-6", 100),
            Range::Full,
            "several: whole"
        );
        assert_eq!(parse_range(b"items=0-1", 100), Range::Full);
        assert_eq!(
            parse_range(b"bytes=9-1", 100),
            Range::Full,
            "invalid: ignored"
        );
    }
}
