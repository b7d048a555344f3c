//! `stale-while-revalidate` (RFC 5861): the client gets the stale copy at once and one
//! background request per key, on the worker that saw the stale hit, refreshes it.
//!
//! The refresh holds the key's fill lead ([`crate::cache::Lead`]), so across every worker
//! only one refresh of a key runs at a time and concurrent misses wait for it rather than
//! asking too. It asks the members of the behavior's target in order, skipping those
//! health calls down, moving on after a connect failure, a timeout or a failover status;
//! sends only what a cached request sends (the keyed fields and the stored copy's
//! validators); and reads the answer whole (up to `[cache] max_object_bytes`) over a
//! connection of its own (`Connection: close`), never a pooled one a client could be
//! waiting for. A 304 refreshes the stored copy, a storable answer replaces it, anything
//! else leaves it to expire (and to `stale-if-error`). Nothing is sent to a client, so
//! nothing a refresh does can fail a request.

use std::{rc::Rc, sync::Arc, time::Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

use super::{
    cached::{self, Lookup},
    upstream::connect,
    worker::{View, Worker},
};
use crate::{
    cache::key::vary_values,
    config::{BehaviorCache, Target},
    health::{Availability, now_ms},
    http::{HeaderRewrite, MAX_HEADERS, OnBehalfOf, ResponseFraming, UpstreamRequest},
    metrics::CacheEvent,
};

/// Everything a refresh needs from the request that found the stale copy, owned: it
/// outlives that request.
pub(super) struct Refresh {
    pub lookup: Lookup,
    pub policy: BehaviorCache,
    pub target: Target,
    /// The request rule whose edits the origin request gets (as the client's did).
    pub rule: Option<crate::rules::RuleRef>,
    pub host: Option<Vec<u8>>,
    /// The keyed request fields (they reach the origin) and, for Vary, the client's
    /// values of every field.
    pub fields: Vec<(Box<str>, Box<[u8]>)>,
    /// Whether the client came over TLS (for `match-viewer` origins).
    pub tls: bool,
}

/// How a refresh ended, for the log.
enum Outcome {
    Revalidated,
    Replaced,
    NotStorable(&'static str),
    NoAnswer,
}

impl Outcome {
    fn describe(&self) -> &'static str {
        match self {
            Self::Revalidated => "revalidated (304)",
            Self::Replaced => "replaced",
            Self::NotStorable(why) => why,
            Self::NoAnswer => "no member answered; the stale copy stays",
        }
    }
}

/// Starts the refresh on this worker's runtime; returns at once.
pub(super) fn spawn(worker: &Worker, view: &View, refresh: Refresh) {
    if !view.is_current(worker) {
        // A reload since the request began: the target index may name another group.
        return;
    }
    let view = worker.view();
    let kernel = worker.kernel.clone();
    let store = Arc::clone(&worker.cache);
    monoio::spawn(async move {
        let key = refresh.lookup.key.clone();
        let outcome = run(&view, kernel.as_deref(), &store, refresh).await;
        tracing::debug!(%key, outcome = outcome.describe(), "stale-while-revalidate refresh");
        // The lead (in the lookup) drops here: waiters look again.
    });
}

async fn run(
    view: &Rc<View>,
    kernel: Option<&crate::kernel::SignalsView>,
    store: &crate::cache::Store,
    refresh: Refresh,
) -> Outcome {
    let config = &view.snap.config;
    let now = now_ms();
    let Refresh {
        lookup,
        policy,
        target,
        rule,
        host,
        fields,
        tls,
    } = refresh;
    let edits = super::attempt::rule_edits(view, rule);
    let (members, group) = config.members(target);
    let max_body = config.cache.max_object_bytes as usize;
    for &index in members {
        if view.snap.health.availability(index, now, kernel) == Availability::Down {
            continue;
        }
        let origin = &config.origins[index];
        let use_tls = origin.uses_tls(tls);
        let tls_config = use_tls.then_some(&view.snap.tls.origin);
        let Ok(mut stream) = connect(origin, &view.snap.addresses, index, tls_config).await else {
            continue;
        };
        let mut request = Vec::with_capacity(512);
        let cookie =
            (!lookup.origin_cookie.is_empty()).then_some(("cookie", &lookup.origin_cookie[..]));
        let validators = cached::validators(&lookup).into_iter().flatten();
        HeaderRewrite::request(
            &mut request,
            &UpstreamRequest {
                method: "GET",
                path_prefix: &origin.origin_path,
                path: &super::attempt::edited_path(edits, &lookup.origin_target),
                host: super::attempt::edited_host(edits, origin, host.as_deref()),
                fields: fields
                    .iter()
                    .map(|(n, v)| (&n[..], &v[..]))
                    .filter(|(n, _)| {
                        policy.key.forwards_header(n) && super::attempt::kept_field(edits, n)
                    })
                    .chain(super::attempt::added_fields(edits))
                    .chain(cookie)
                    .chain(validators),
                on_behalf_of: OnBehalfOf::Lb {
                    user_agent: "lb-revalidate",
                },
                length: None,
                chunked: false,
                upgrade: None,
                origin_headers: &origin.custom_headers,
            },
        );
        if stream.write_all(request).await.0.is_err() {
            continue;
        }
        let deadline = Instant::now() + origin.response_timeout;
        let limit = max_body + config.limits.max_response_head;
        let mut raw: Vec<u8> = Vec::with_capacity(16 * 1024);
        let mut complete = false;
        while raw.len() <= limit {
            let buf = Vec::with_capacity(16 * 1024);
            match monoio::time::timeout_at(deadline.into(), stream.read(buf)).await {
                Ok((Ok(0), _)) => {
                    complete = true;
                    break;
                }
                Ok((Ok(_), buf)) => raw.extend_from_slice(&buf),
                Ok((Err(_), _)) | Err(_) => break,
            }
        }
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let Ok(Some(r)) = crate::http::parse_response_head(
            &raw,
            config.limits.max_response_head,
            &mut slots,
            false,
        ) else {
            continue;
        };
        if group.is_some_and(|g| g.failover_statuses.contains(r.status)) {
            continue;
        }
        if r.status == 304 {
            return match cached::refreshed(&lookup, &policy, &r) {
                Some(object) => {
                    store.insert(&lookup.key, object);
                    view.metrics().cache(CacheEvent::Revalidated);
                    Outcome::Revalidated
                }
                None => Outcome::NotStorable("304 forbids storing"),
            };
        }
        let rest = &raw[r.head_len..];
        let body = match r.framing {
            ResponseFraming::ContentLength(n) => match rest.get(..n as usize) {
                Some(b) => b.to_vec(),
                None => return Outcome::NotStorable("truncated"),
            },
            ResponseFraming::Chunked => {
                let mut out = Vec::new();
                match crate::http::ChunkedDecoder::new().decode(rest, &mut out) {
                    Ok(p) if p.done => out,
                    _ => return Outcome::NotStorable("truncated"),
                }
            }
            ResponseFraming::CloseDelimited if complete => rest.to_vec(),
            ResponseFraming::CloseDelimited => return Outcome::NotStorable("truncated"),
            ResponseFraming::None => Vec::new(),
        };
        if body.len() > max_body {
            return Outcome::NotStorable("too large");
        }
        return match cached::plan_fill(&lookup, &policy, false, &r) {
            Ok(plan) => {
                let mut object = plan.object;
                object.vary_values =
                    vary_values(&object.vary, fields.iter().map(|(n, v)| (&n[..], &v[..])));
                object.body = bytes::Bytes::from(body);
                store.insert(&lookup.key, object);
                Outcome::Replaced
            }
            Err(why) => Outcome::NotStorable(why.label()),
        };
    }
    Outcome::NoAnswer
}
