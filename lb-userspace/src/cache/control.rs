//! What HTTP caching rules (RFC 9111, with RFC 5861's stale extensions) say about one
//! request and one response, for a shared cache: may the response be stored, for how
//! long is it fresh, how old is it, and how long may it be served stale.
//!
//! Pure functions over header values and times, so every rule is unit-tested here; the
//! data plane only asks.

use std::time::{Duration, SystemTime};

/// The directives of one or more `Cache-Control` field values. Unknown directives are
/// ignored (RFC 9111 §5.2.3); a directive with a malformed argument is treated as absent,
/// except `max-age`/`s-maxage`, which make the response stale (§4.2.1: "invalid" means 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheControl {
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
    pub stale_while_revalidate: Option<u64>,
    pub stale_if_error: Option<u64>,
    /// Request only: the client accepts a response at most this stale (`max-stale`; no
    /// value: any staleness).
    pub max_stale: Option<u64>,
    pub min_fresh: Option<u64>,
    pub only_if_cached: bool,
}

impl CacheControl {
    /// Parses every `Cache-Control` value of a message.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut cc = Self::default();
        for value in values {
            let Ok(text) = std::str::from_utf8(value) else {
                continue;
            };
            for directive in split_directives(text) {
                let (name, arg) = match directive.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (directive.trim(), None),
                };
                let seconds = || arg.and_then(|a| a.parse::<u64>().ok());
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => cc.no_store = true,
                    // `no-cache="field"` restricts only that field; a shared cache may
                    // treat it as the whole response needing revalidation (§5.2.2.4).
                    "no-cache" => cc.no_cache = true,
                    "private" => cc.private = true,
                    "public" => cc.public = true,
                    "must-revalidate" => cc.must_revalidate = true,
                    "proxy-revalidate" => cc.proxy_revalidate = true,
                    "max-age" => cc.max_age = Some(seconds().unwrap_or(0)),
                    "s-maxage" => cc.s_maxage = Some(seconds().unwrap_or(0)),
                    "stale-while-revalidate" => cc.stale_while_revalidate = seconds(),
                    "stale-if-error" => cc.stale_if_error = seconds(),
                    "max-stale" => cc.max_stale = Some(seconds().unwrap_or(u64::MAX)),
                    "min-fresh" => cc.min_fresh = seconds(),
                    "only-if-cached" => cc.only_if_cached = true,
                    _ => {}
                }
            }
        }
        cc
    }

    /// Whether a stale copy must be revalidated before use, whatever else allows it
    /// (`must-revalidate`, and for a shared cache `proxy-revalidate` and `s-maxage`).
    pub fn forbids_stale(&self) -> bool {
        self.must_revalidate || self.proxy_revalidate || self.s_maxage.is_some()
    }
}

/// Splits a Cache-Control value at commas that are not inside a quoted string.
fn split_directives(text: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty())
}

/// CloudFront's TTL settings of a behavior: the origin's explicit lifetime is clamped to
/// `[min, max]`; without one, `default` applies. A `min` above zero also caches responses
/// that say `no-cache`, `no-store` or `private` (CloudFront's documented behaviour).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ttls {
    pub min: Duration,
    pub default: Duration,
    pub max: Duration,
}

impl Default for Ttls {
    /// CloudFront's defaults: 0 s, 24 h, 365 days.
    fn default() -> Self {
        Self {
            min: Duration::ZERO,
            default: Duration::from_secs(86_400),
            max: Duration::from_secs(31_536_000),
        }
    }
}

/// Why a response is not stored (for `Cache-Status` and the metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotStored {
    /// The request method is not one the behavior caches.
    Method,
    /// Status codes a cache may only store with explicit freshness, and it had none.
    Status,
    /// `no-store` in the request or the response.
    NoStore,
    /// `private`: only a browser's cache may store it.
    Private,
    /// The request carried `Authorization` and the response did not say it may be shared.
    Authorization,
    /// The response sets a cookie and the behavior does not store those.
    SetCookie,
    /// `Vary: *`: no request could ever match it.
    VaryAll,
    /// Its freshness lifetime is zero and it has no validator to revalidate with.
    Uncacheable,
}

impl NotStored {
    pub fn label(self) -> &'static str {
        match self {
            Self::Method => "method",
            Self::Status => "status",
            Self::NoStore => "no-store",
            Self::Private => "private",
            Self::Authorization => "authorization",
            Self::SetCookie => "set-cookie",
            Self::VaryAll => "vary-star",
            Self::Uncacheable => "no-lifetime",
        }
    }
}

/// Statuses a cache may store with a heuristic or default lifetime (RFC 9110 §15.1:
/// "heuristically cacheable"); any other final status needs explicit freshness.
pub fn heuristically_cacheable(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// What the storability decision needs to know about the exchange.
#[derive(Clone, Copy, Debug)]
pub struct Exchange<'a> {
    pub request: &'a CacheControl,
    pub response: &'a CacheControl,
    pub status: u16,
    /// The response has `Expires` (a valid date or not: an invalid one means "expired").
    pub has_expires: bool,
    pub request_has_authorization: bool,
    pub response_sets_cookie: bool,
    pub vary_star: bool,
    /// The behavior stores responses to requests with `Authorization` anyway.
    pub allow_authorization: bool,
    /// The behavior stores responses that set cookies.
    pub allow_set_cookie: bool,
    pub ttls: Ttls,
}

/// May this response be stored? (RFC 9111 §3, §3.5; CloudFront's MinTTL override.)
pub fn storable(e: &Exchange<'_>) -> Result<(), NotStored> {
    let forced = e.ttls.min > Duration::ZERO;
    if (e.request.no_store || e.response.no_store) && !forced {
        return Err(NotStored::NoStore);
    }
    if e.response.private && !forced {
        return Err(NotStored::Private);
    }
    if e.vary_star {
        return Err(NotStored::VaryAll);
    }
    if e.request_has_authorization
        && !e.allow_authorization
        && !(e.response.public || e.response.s_maxage.is_some() || e.response.must_revalidate)
    {
        return Err(NotStored::Authorization);
    }
    if e.response_sets_cookie && !e.allow_set_cookie {
        return Err(NotStored::SetCookie);
    }
    let explicit = e.response.max_age.is_some() || e.response.s_maxage.is_some() || e.has_expires;
    if !heuristically_cacheable(e.status) && !explicit && !e.response.public {
        return Err(NotStored::Status);
    }
    Ok(())
}

/// The freshness lifetime a shared cache gives a response (RFC 9111 §4.2.1), within the
/// behavior's TTLs: `s-maxage`, else `max-age`, else `Expires` − `Date`, else the
/// default TTL (CloudFront's stand-in for a heuristic lifetime). `no-cache`, `no-store`
/// and `private` make it MinTTL (0 unless the behavior forces a lifetime: stored, but
/// revalidated before every use).
pub fn freshness_lifetime(
    response: &CacheControl,
    expires: Option<Option<SystemTime>>,
    date: Option<SystemTime>,
    response_time: SystemTime,
    ttls: &Ttls,
) -> Duration {
    if response.no_cache || response.no_store || response.private {
        // CloudFront: stored for MinTTL when that is above zero, else not fresh at all.
        return ttls.min;
    }
    let explicit = response
        .s_maxage
        .or(response.max_age)
        .map(Duration::from_secs)
        .or_else(|| {
            // An invalid Expires means already expired (§5.3).
            expires.map(|e| match e {
                Some(at) => at
                    .duration_since(date.unwrap_or(response_time))
                    .unwrap_or(Duration::ZERO),
                None => Duration::ZERO,
            })
        });
    match explicit {
        Some(d) => d.clamp(ttls.min, ttls.max.max(ttls.min)),
        None => ttls.default.clamp(ttls.min, ttls.max.max(ttls.min)),
    }
}

/// The age of a response when it was received (RFC 9111 §4.2.3): the larger of what its
/// `Date` says and what its `Age` says plus the time the request took.
pub fn initial_age(
    age_header: Option<u64>,
    date: Option<SystemTime>,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Duration {
    let apparent = date
        .and_then(|d| response_time.duration_since(d).ok())
        .unwrap_or(Duration::ZERO);
    let delay = response_time
        .duration_since(request_time)
        .unwrap_or(Duration::ZERO);
    let corrected = Duration::from_secs(age_header.unwrap_or(0)) + delay;
    apparent.max(corrected)
}

/// Parses an HTTP date field value; `None` if it is not a valid date.
pub fn http_date(value: &[u8]) -> Option<SystemTime> {
    httpdate::parse_http_date(std::str::from_utf8(value).ok()?.trim()).ok()
}

/// Formats `time` as an IMF-fixdate (`Date`, `Last-Modified`).
pub fn fmt_http_date(time: SystemTime) -> String {
    httpdate::fmt_http_date(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(v: &str) -> CacheControl {
        CacheControl::parse([v.as_bytes()])
    }

    #[test]
    fn directives_are_parsed_case_insensitively_with_quotes_and_several_fields() {
        let c = CacheControl::parse([
            b"Public, MAX-AGE=60, no-cache=\"set-cookie, x-a\"".as_slice(),
            b"s-maxage=\"120\", stale-while-revalidate=30, stale-if-error=600, x-unknown=1"
                .as_slice(),
        ]);
        assert!(c.public && c.no_cache);
        assert_eq!(c.max_age, Some(60));
        assert_eq!(c.s_maxage, Some(120));
        assert_eq!(c.stale_while_revalidate, Some(30));
        assert_eq!(c.stale_if_error, Some(600));
        assert!(c.forbids_stale(), "s-maxage forbids serving stale");
        assert_eq!(cc("max-age=abc").max_age, Some(0), "invalid means stale");
        assert_eq!(cc("max-stale").max_stale, Some(u64::MAX));
        assert_eq!(cc("max-stale=5").max_stale, Some(5));
        assert!(cc("only-if-cached").only_if_cached);
        assert_eq!(
            CacheControl::parse([b"\xff".as_slice()]),
            CacheControl::default()
        );
    }

    fn exchange<'a>(req: &'a CacheControl, res: &'a CacheControl) -> Exchange<'a> {
        Exchange {
            request: req,
            response: res,
            status: 200,
            has_expires: false,
            request_has_authorization: false,
            response_sets_cookie: false,
            vary_star: false,
            allow_authorization: false,
            allow_set_cookie: false,
            ttls: Ttls::default(),
        }
    }

    #[test]
    fn storability_follows_rfc_9111_and_the_behavior() {
        let none = CacheControl::default();
        assert_eq!(storable(&exchange(&none, &none)), Ok(()));
        let ns = cc("no-store");
        assert_eq!(storable(&exchange(&none, &ns)), Err(NotStored::NoStore));
        assert_eq!(
            storable(&exchange(&ns, &none)),
            Err(NotStored::NoStore),
            "no-store in the request too"
        );
        assert_eq!(
            storable(&exchange(&none, &cc("private, max-age=60"))),
            Err(NotStored::Private)
        );
        let mut e = exchange(&none, &none);
        e.request_has_authorization = true;
        assert_eq!(storable(&e), Err(NotStored::Authorization));
        let public = cc("public");
        let mut e = exchange(&none, &public);
        e.request_has_authorization = true;
        assert_eq!(storable(&e), Ok(()), "public allows sharing");
        let mut e = exchange(&none, &none);
        e.response_sets_cookie = true;
        assert_eq!(storable(&e), Err(NotStored::SetCookie));
        e.allow_set_cookie = true;
        assert_eq!(storable(&e), Ok(()));
        let mut e = exchange(&none, &none);
        e.vary_star = true;
        assert_eq!(storable(&e), Err(NotStored::VaryAll));
        let mut e = exchange(&none, &none);
        e.status = 500;
        assert_eq!(storable(&e), Err(NotStored::Status));
        let max_age = cc("max-age=10");
        let mut e = exchange(&none, &max_age);
        e.status = 500;
        assert_eq!(
            storable(&e),
            Ok(()),
            "explicit freshness makes any status storable"
        );
        // CloudFront: MinTTL > 0 caches despite no-store / private.
        let mut e = exchange(&none, &ns);
        e.ttls.min = Duration::from_secs(5);
        assert_eq!(storable(&e), Ok(()));
    }

    #[test]
    fn freshness_prefers_s_maxage_then_max_age_then_expires_then_the_default() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ttls = Ttls {
            min: Duration::ZERO,
            default: Duration::from_secs(86_400),
            max: Duration::from_secs(31_536_000),
        };
        let life = |c: &str, expires, date| freshness_lifetime(&cc(c), expires, date, t0, &ttls);
        assert_eq!(
            life("max-age=60, s-maxage=120", None, None),
            Duration::from_secs(120)
        );
        assert_eq!(life("max-age=60", None, None), Duration::from_secs(60));
        let in_30 = Some(Some(t0 + Duration::from_secs(30)));
        assert_eq!(life("", in_30, Some(t0)), Duration::from_secs(30));
        assert_eq!(
            life("", Some(None), Some(t0)),
            Duration::ZERO,
            "invalid Expires"
        );
        assert_eq!(
            life("", None, None),
            Duration::from_secs(86_400),
            "DefaultTTL"
        );
        assert_eq!(life("no-cache, max-age=60", None, None), Duration::ZERO);
        let clamp = Ttls {
            min: Duration::from_secs(10),
            default: Duration::from_secs(20),
            max: Duration::from_secs(30),
        };
        let life = |c: &str| freshness_lifetime(&cc(c), None, None, t0, &clamp);
        assert_eq!(life("max-age=5"), Duration::from_secs(10), "MinTTL");
        assert_eq!(life("max-age=500"), Duration::from_secs(30), "MaxTTL");
        assert_eq!(life(""), Duration::from_secs(20));
        assert_eq!(life("no-store"), Duration::from_secs(10), "MinTTL wins");
    }

    #[test]
    fn age_is_the_larger_of_date_and_age_plus_delay() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let sent = t - Duration::from_secs(2);
        assert_eq!(
            initial_age(Some(10), Some(t - Duration::from_secs(5)), sent, t),
            Duration::from_secs(12)
        );
        assert_eq!(
            initial_age(None, Some(t - Duration::from_secs(5)), sent, t),
            Duration::from_secs(5)
        );
        assert_eq!(
            initial_age(None, Some(t + Duration::from_secs(5)), t, t),
            Duration::ZERO,
            "a Date in the future is no age"
        );
    }

    #[test]
    fn http_dates_round_trip() {
        let t = http_date(b"Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(fmt_http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert!(
            http_date(b"Sunday, 06-Nov-94 08:49:37 GMT").is_some(),
            "RFC 850"
        );
        assert!(http_date(b"yesterday").is_none());
    }
}
