//! The HTTP cache through the real lb, against real origins: what is stored and for how
//! long (RFC 9111: freshness, `no-store`, `private`, `Authorization`, `Set-Cookie`,
//! `Vary`), HEAD and conditional requests answered from a stored GET, the key and what
//! reaches the origin, and stale copies served when every member fails (at once when
//! health says the group is down).

use std::time::{Duration, Instant};

use lb_origin::Origin;
use lb_tests::{
    free_port,
    http::{Client, Response, get},
    process::{LbServer, lb},
};

/// lb TOML: group `site` over a primary and a secondary, the default behavior cached
/// with `cache` (extra lines of its table; the query string is keyed and forwarded
/// unless they say otherwise, since the test origin takes its orders from it), admin
/// API, attempts header.
fn config(primary: std::net::SocketAddr, secondary: std::net::SocketAddr, cache: &str) -> String {
    format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 2\n\n[admin]\naddress = \"{}\"\n\n\
         [observability]\naccess_log = false\nattempts_header = true\n\n[kernel]\nenabled = false\n\n\
         [cache]\nmax_object_bytes = 1048576\n\n\
         [health]\npassive_failures = 2\nejection_time = \"5s\"\n\n\
         [[origins]]\nid = \"primary\"\naddress = \"{primary}\"\nconnect_timeout = \"300ms\"\nconnection_attempts = 1\nresponse_timeout = \"2s\"\n\n\
         [[origins]]\nid = \"secondary\"\naddress = \"{secondary}\"\nconnect_timeout = \"300ms\"\nconnection_attempts = 1\nresponse_timeout = \"2s\"\n\n\
         [[origin_groups]]\nid = \"site\"\nmembers = [\"primary\", \"secondary\"]\nfailover_status_codes = [500, 502, 503, 504]\n\n\
         [default_behavior]\ntarget = \"site\"\n[default_behavior.cache]\n{cache}\n",
        free_port()
    )
}

struct Setup {
    primary: Origin,
    secondary: Origin,
    lb: LbServer,
}

fn setup(cache: &str) -> Setup {
    let cache = if cache.contains("query") {
        cache.to_owned()
    } else {
        format!("query = \"all\"\n{cache}")
    };
    let cache = cache.as_str();
    let primary = Origin::start("primary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let secondary = Origin::start("secondary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let lb = LbServer::start_file(
        "lb.toml",
        &config(primary.addr(), secondary.addr(), cache),
        &[],
        "info",
    );
    Setup {
        primary,
        secondary,
        lb,
    }
}

/// The admin API address `config` wrote into lb.toml.
fn admin_addr(lb: &LbServer) -> std::net::SocketAddr {
    let text = std::fs::read_to_string(lb.dir.path.join("lb.toml")).unwrap();
    text.lines()
        .find(|l| l.starts_with("address") && !l.contains("127.0.0.1:0"))
        .and_then(|l| l.split('"').nth(1))
        .and_then(|a| a.parse().ok())
        .unwrap()
}

fn request(addr: std::net::SocketAddr, raw: &str) -> Response {
    Client::connect(addr).request(raw)
}

fn served(r: &Response) -> String {
    r.header("x-served").unwrap_or("-").to_owned()
}

fn cache_status(r: &Response) -> &str {
    r.header("cache-status").unwrap_or("-")
}

#[test]
fn a_fresh_response_is_served_from_the_cache_until_it_expires() {
    let s = setup("");
    let path = "/fresh?cc=max-age=2";
    let first = get(s.lb.addr, path);
    assert_eq!(first.status, 200);
    assert_eq!(cache_status(&first), "lb; fwd=uri-miss; stored");
    let second = get(s.lb.addr, path);
    assert!(
        cache_status(&second).starts_with("lb; hit"),
        "{}",
        cache_status(&second)
    );
    assert_eq!(
        served(&second),
        served(&first),
        "the stored copy, not a new answer"
    );
    assert!(second.header("age").is_some());
    assert_eq!(second.text(), first.text());
    assert_eq!(s.primary.requests(), 1, "one request reached the origin");
    std::thread::sleep(Duration::from_millis(2100));
    let third = get(s.lb.addr, path);
    assert_eq!(
        cache_status(&third),
        "lb; fwd=stale; stored",
        "expired: asked again"
    );
    assert_ne!(served(&third), served(&first));
    assert_eq!(s.primary.requests(), 2);
}

#[test]
fn what_rfc_9111_forbids_is_not_stored() {
    let s = setup("");
    for (path, why) in [
        ("/ns?cc=no-store", "no-store"),
        ("/p?cc=private,max-age=60", "private"),
        ("/c?cc=max-age=60&set_cookie=1", "set-cookie"),
        ("/v?cc=max-age=60&vary=*", "vary-star"),
        ("/st?status=500", "status"),
    ] {
        let a = get(s.lb.addr, path);
        assert_eq!(
            cache_status(&a),
            format!("lb; fwd=uri-miss; detail={why}"),
            "{path}"
        );
        let b = get(s.lb.addr, path);
        assert_ne!(served(&a), served(&b), "{path} was stored");
    }
    // Authorization: not shared unless the response says it may be.
    let auth = |path: &str| {
        request(
            s.lb.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer x\r\n\r\n"),
        )
    };
    let a = auth("/auth?cc=max-age=60");
    assert_eq!(cache_status(&a), "lb; fwd=uri-miss; detail=authorization");
    let a = auth("/auth-public?cc=public,max-age=60");
    assert_eq!(cache_status(&a), "lb; fwd=uri-miss; stored");
    let b = get(s.lb.addr, "/auth-public?cc=public,max-age=60");
    assert_eq!(served(&a), served(&b));
}

#[test]
fn behaviors_may_store_what_sets_cookies_and_answers_authorization() {
    let s = setup("allow_set_cookie = true\nallow_authorization = true");
    let a = get(s.lb.addr, "/c?cc=max-age=60&set_cookie=1");
    assert_eq!(cache_status(&a), "lb; fwd=uri-miss; stored");
    let b = get(s.lb.addr, "/c?cc=max-age=60&set_cookie=1");
    assert_eq!(served(&a), served(&b));
    assert!(b.header("set-cookie").is_some());
}

#[test]
fn vary_keeps_one_variant_per_value() {
    let s = setup("");
    let lang = |l: &str| {
        request(
            s.lb.addr,
            &format!(
                "GET /v?cc=max-age=60&vary=Accept-Language&echo_lang=1 HTTP/1.1\r\nHost: test\r\nAccept-Language: {l}\r\n\r\n"
            ),
        )
    };
    // Accept-Language is not in the key, so it does not reach the origin: every variant
    // the origin makes is the one without it. What matters here is that variants do
    // not mix: a stored response for one value never answers another.
    let fr = lang("fr");
    let de = lang("de");
    assert_eq!(cache_status(&fr), "lb; fwd=uri-miss; stored");
    assert_eq!(
        cache_status(&de),
        "lb; fwd=uri-miss; stored",
        "another variant"
    );
    assert!(cache_status(&lang("fr")).starts_with("lb; hit"));
    assert!(cache_status(&lang("de")).starts_with("lb; hit"));
    assert_eq!(s.primary.requests(), 2);
}

#[test]
fn keyed_headers_reach_the_origin_and_split_the_cache_others_do_not() {
    let s =
        setup("headers = [\"accept-language\"]\nquery = { only = [\"v\", \"echo_lang\", \"cc\"] }");
    let send = |path: &str, extra: &str| {
        request(
            s.lb.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n"),
        )
    };
    let fr = send(
        "/k?v=1&echo_lang=1&cc=max-age=60",
        "Accept-Language: fr\r\nX-Evil: 1\r\n",
    );
    assert_eq!(fr.header("x-lang"), Some("fr"), "keyed: forwarded");
    let de = send(
        "/k?v=1&echo_lang=1&cc=max-age=60",
        "Accept-Language: de\r\n",
    );
    assert_eq!(de.header("x-lang"), Some("de"), "a different key");
    let fr_again = send(
        "/k?v=1&echo_lang=1&cc=max-age=60&utm=2",
        "Accept-Language: fr\r\n",
    );
    assert!(
        cache_status(&fr_again).starts_with("lb; hit"),
        "unkeyed parameter utm: same entry ({})",
        cache_status(&fr_again)
    );
    assert_eq!(served(&fr_again), served(&fr));
    // What the origin saw: no unkeyed header, no unkeyed parameter.
    let seen = send(
        "/k/headers?v=2&utm=9",
        "Accept-Language: fr\r\nX-Evil: 1\r\nCookie: a=b\r\n",
    );
    let head = seen.text();
    assert!(head.starts_with("GET /k/headers?v=2 HTTP/1.1"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("accept-language: fr"),
        "{head}"
    );
    assert!(!head.to_ascii_lowercase().contains("x-evil"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("cookie"), "{head}");
}

#[test]
fn head_and_conditional_requests_are_answered_from_a_stored_get() {
    let s = setup("");
    let path = "/cond?cc=max-age=60&etag=v1&last_modified=Sun,%2006%20Nov%201994%2008:49:37%20GMT";
    let full = get(s.lb.addr, path);
    assert_eq!(full.status, 200);
    let mut c = Client::connect(s.lb.addr);
    c.send(format!("HEAD {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
    let head = c.read_response(true);
    assert_eq!(head.status, 200);
    assert!(
        cache_status(&head).starts_with("lb; hit"),
        "{}",
        cache_status(&head)
    );
    assert_eq!(
        head.header("content-length"),
        Some(full.body.len().to_string().as_str())
    );
    let inm = request(
        s.lb.addr,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\nIf-None-Match: \"v1\"\r\n\r\n"),
    );
    assert_eq!(inm.status, 304);
    assert!(inm.body.is_empty());
    let other = request(
        s.lb.addr,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\nIf-None-Match: \"v2\"\r\n\r\n"),
    );
    assert_eq!(other.status, 200);
    let ims = request(
        s.lb.addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: test\r\nIf-Modified-Since: Mon, 07 Nov 1994 00:00:00 GMT\r\n\r\n"
        ),
    );
    assert_eq!(ims.status, 304);
    assert_eq!(s.primary.requests(), 1);
}

#[test]
fn stale_copies_answer_when_every_member_fails_and_at_once_when_the_group_is_down() {
    let s = setup("stale_if_error = \"1h\"");
    let path = "/object?cc=max-age=1";
    let stored = get(s.lb.addr, path);
    assert_eq!(cache_status(&stored), "lb; fwd=uri-miss; stored");
    std::thread::sleep(Duration::from_millis(1100));
    // Every member answers 503: the stale copy answers instead, after asking them.
    s.primary.set_forced_status(Some(503));
    s.secondary.set_forced_status(Some(503));
    let r = get(s.lb.addr, path);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(served(&r), served(&stored));
    assert!(
        cache_status(&r).starts_with("lb; fwd=stale; fwd-status=503")
            && cache_status(&r).contains("detail=stale-if-error"),
        "{}",
        cache_status(&r)
    );
    // An uncached object gets the error (no stale copy to give).
    assert_eq!(get(s.lb.addr, "/never-stored").status, 503);
    // Both members get ejected (passive_failures = 2); then health says the group is
    // down and the stale copy answers without any origin being asked.
    for _ in 0..3 {
        let _ = get(s.lb.addr, "/eject");
    }
    let asked = s.primary.requests() + s.secondary.requests();
    let t0 = Instant::now();
    let r = get(s.lb.addr, path);
    let took = t0.elapsed();
    assert_eq!(r.status, 200);
    assert!(
        cache_status(&r).contains("detail=stale-group-down"),
        "{}",
        cache_status(&r)
    );
    assert_eq!(
        s.primary.requests() + s.secondary.requests(),
        asked,
        "no origin was asked"
    );
    assert!(
        took < Duration::from_millis(100),
        "answered at once: {took:?}"
    );
    // Crashed members (connect refused): the stale copy still answers.
    drop(s.primary);
    drop(s.secondary);
    let r = get(s.lb.addr, path);
    assert_eq!(r.status, 200);
    assert_eq!(served(&r), served(&stored));
}

#[test]
fn a_stale_copy_past_its_allowance_is_not_served() {
    let s = setup("");
    let path = "/object?cc=max-age=1";
    let _ = get(s.lb.addr, path);
    std::thread::sleep(Duration::from_millis(1100));
    s.primary.set_forced_status(Some(503));
    s.secondary.set_forced_status(Some(503));
    let r = get(s.lb.addr, path);
    assert_eq!(r.status, 503, "no stale-if-error: the error goes through");
    // The origin's own stale-if-error allows it.
    s.primary.set_forced_status(None);
    s.secondary.set_forced_status(None);
    let path = "/sie?cc=max-age=1,stale-if-error=60";
    let stored = get(s.lb.addr, path);
    std::thread::sleep(Duration::from_millis(1100));
    s.primary.set_forced_status(Some(503));
    s.secondary.set_forced_status(Some(503));
    let r = get(s.lb.addr, path);
    assert_eq!(r.status, 200);
    assert_eq!(served(&r), served(&stored));
    // must-revalidate forbids it whatever the allowance.
    s.primary.set_forced_status(None);
    s.secondary.set_forced_status(None);
    let path = "/mr?cc=max-age=1,must-revalidate,stale-if-error=60";
    let _ = get(s.lb.addr, path);
    std::thread::sleep(Duration::from_millis(1100));
    s.primary.set_forced_status(Some(503));
    s.secondary.set_forced_status(Some(503));
    assert_eq!(get(s.lb.addr, path).status, 503);
}

#[test]
fn cache_metrics_count_what_the_cache_did() {
    let s = setup("");
    let _ = get(s.lb.addr, "/m?cc=max-age=60");
    let _ = get(s.lb.addr, "/m?cc=max-age=60");
    let _ = get(s.lb.addr, "/m2?cc=no-store");
    let admin = admin_addr(&s.lb);
    let metrics = get(admin, "/metrics").text();
    assert!(
        metrics.contains("lb_cache_requests_total{result=\"hit\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lb_cache_requests_total{result=\"miss_stored\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lb_cache_requests_total{result=\"miss_not_stored\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lb_cache_objects{tier=\"memory\"} 1"),
        "{metrics}"
    );
}

#[test]
fn large_objects_are_stored_while_they_stream_and_too_large_ones_are_not() {
    let s = setup("");
    let big = "/big?size=300000&cc=max-age=60";
    let a = get(s.lb.addr, big);
    assert_eq!(a.body.len(), 300_000);
    assert_eq!(cache_status(&a), "lb; fwd=uri-miss; stored");
    // The store is filled once the last byte went out: wait for that, then read it back.
    let b = lb_tests::process::wait_for(
        "the streamed object in the cache",
        Duration::from_secs(2),
        || {
            let b = get(s.lb.addr, big);
            cache_status(&b).starts_with("lb; hit").then_some(b)
        },
    );
    assert_eq!(b.body, a.body);
    assert_eq!(served(&b), served(&a));
    // Above [cache] max_object_bytes (here 1 MiB): streamed, never stored.
    let huge = "/huge?size=1200000&cc=max-age=60";
    let a = get(s.lb.addr, huge);
    assert_eq!(a.body.len(), 1_200_000);
    std::thread::sleep(Duration::from_millis(200));
    let b = get(s.lb.addr, huge);
    assert_ne!(served(&b), served(&a), "not stored");
}

#[test]
fn the_host_is_always_part_of_the_key() {
    let s = setup("");
    let a = request(
        s.lb.addr,
        "GET /h?cc=max-age=60 HTTP/1.1\r\nHost: one.example\r\n\r\n",
    );
    let b = request(
        s.lb.addr,
        "GET /h?cc=max-age=60 HTTP/1.1\r\nHost: two.example\r\n\r\n",
    );
    assert_eq!(cache_status(&b), "lb; fwd=uri-miss; stored");
    assert_ne!(served(&a), served(&b));
    let c = request(
        s.lb.addr,
        "GET /h?cc=max-age=60 HTTP/1.1\r\nHost: ONE.example\r\n\r\n",
    );
    assert!(
        cache_status(&c).starts_with("lb; hit"),
        "host names compare without case"
    );
    assert_eq!(served(&c), served(&a));
}

#[test]
fn ranges_are_answered_from_a_stored_object() {
    let s = setup("");
    let path = "/r?size=1000&cc=max-age=60&etag=r1";
    let full = get(s.lb.addr, path);
    assert_eq!(full.body.len(), 1000);
    let range = |spec: &str, extra: &str| {
        request(
            s.lb.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: test\r\nRange: {spec}\r\n{extra}\r\n"),
        )
    };
    let r = range("bytes=10-19", "");
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 10-19/1000"));
    assert_eq!(r.body, full.body[10..20]);
    assert!(cache_status(&r).starts_with("lb; hit"));
    let r = range("bytes=-5", "");
    assert_eq!((r.status, &r.body[..]), (206, &full.body[995..]));
    let r = range("bytes=2000-", "");
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */1000"));
    let r = range("bytes=0-1,5-6", "");
    assert_eq!(
        (r.status, r.body.len()),
        (200, 1000),
        "several ranges: the whole object"
    );
    let r = range("bytes=0-9", "If-Range: \"other\"\r\n");
    assert_eq!(
        (r.status, r.body.len()),
        (200, 1000),
        "a stale If-Range: the whole object"
    );
    let r = range("bytes=0-9", "If-Range: \"r1\"\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(s.primary.requests(), 1, "all from the one stored copy");
    // A range on a miss goes to the origin as it is, and is not stored.
    let r = request(
        s.lb.addr,
        "GET /other?cc=max-age=60 HTTP/1.1\r\nHost: test\r\nRange: bytes=0-1\r\n\r\n",
    );
    assert_eq!(r.header("cache-status"), None, "bypassed");
    assert_eq!(s.primary.requests(), 2);
}

#[test]
fn an_expired_copy_is_revalidated_and_a_304_refreshes_it() {
    let s = setup("");
    let path = "/reval?cc=max-age=1&etag=e1";
    let stored = get(s.lb.addr, path);
    assert_eq!(cache_status(&stored), "lb; fwd=uri-miss; stored");
    std::thread::sleep(Duration::from_millis(1100));
    let r = get(s.lb.addr, path);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body, stored.body,
        "the stored body, confirmed by the origin"
    );
    // The test origin answers 304 only to an If-None-Match naming its ETag: lb sent it.
    assert!(
        cache_status(&r).starts_with("lb; fwd=stale; fwd-status=304"),
        "{}",
        cache_status(&r)
    );
    assert_eq!(s.primary.requests(), 2, "one revalidation");
    // Fresh again for another max-age: served without asking.
    let r = get(s.lb.addr, path);
    assert!(
        cache_status(&r).starts_with("lb; hit"),
        "{}",
        cache_status(&r)
    );
    assert_eq!(s.primary.requests(), 2);
}

#[test]
fn concurrent_misses_of_one_key_reach_the_origin_once() {
    let s = setup("");
    // A slow answer, so every request arrives while the first is still being filled.
    let path = "/collapse?cc=max-age=60&delay_ms=400";
    let clients: Vec<_> = (0..200)
        .map(|_| {
            let addr = s.lb.addr;
            std::thread::spawn(move || get(addr, path))
        })
        .collect();
    let answers: Vec<Response> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(answers.iter().all(|r| r.status == 200));
    assert_eq!(s.primary.requests(), 1, "one request reached the origins");
    let first = served(&answers[0]);
    assert!(
        answers.iter().all(|r| served(r) == first),
        "all got the one answer"
    );
    let collapsed = answers
        .iter()
        .filter(|r| cache_status(r).ends_with("; collapsed"))
        .count();
    let stored = answers
        .iter()
        .filter(|r| cache_status(r) == "lb; fwd=uri-miss; stored")
        .count();
    assert_eq!(stored, 1, "one miss led the fill");
    assert!(collapsed >= 150, "most waited for it: {collapsed}");

    // An answer that cannot be stored releases the waiters, who then ask for themselves
    // (rather than waiting for one another in turn).
    let path = "/nocollapse?cc=no-store&delay_ms=300";
    let started = Instant::now();
    let clients: Vec<_> = (0..10)
        .map(|_| {
            let addr = s.lb.addr;
            std::thread::spawn(move || get(addr, path))
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap().status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "waiters were not serialised: {:?}",
        started.elapsed()
    );
    assert_eq!(s.primary.requests(), 1 + 10);
}

/// A DistributionConfig whose default behavior caches with legacy `ForwardedValues` and
/// TTLs, `/off/*` with the managed CachingDisabled policy and `/opt/*` with
/// CachingOptimized.
fn distribution(primary: std::net::SocketAddr, secondary: std::net::SocketAddr) -> String {
    let origin = |id: &str, port: u16| {
        format!(
            r#"{{"Id": "{id}", "DomainName": "127.0.0.1", "ConnectionAttempts": 1, "ConnectionTimeout": 1,
               "CustomOriginConfig": {{"HTTPPort": {port}, "HTTPSPort": 443, "OriginProtocolPolicy": "http-only"}}}}"#
        )
    };
    format!(
        r#"{{
  "Origins": {{"Quantity": 2, "Items": [{}, {}]}},
  "OriginGroups": {{"Quantity": 1, "Items": [{{"Id": "site",
    "FailoverCriteria": {{"StatusCodes": {{"Quantity": 1, "Items": [503]}}}},
    "Members": {{"Quantity": 2, "Items": [{{"OriginId": "primary"}}, {{"OriginId": "secondary"}}]}}}}]}},
  "DefaultCacheBehavior": {{
    "TargetOriginId": "site",
    "ViewerProtocolPolicy": "allow-all",
    "AllowedMethods": {{"Quantity": 2, "Items": ["GET", "HEAD"],
      "CachedMethods": {{"Quantity": 2, "Items": ["GET", "HEAD"]}}}},
    "ForwardedValues": {{
      "QueryString": true,
      "QueryStringCacheKeys": {{"Quantity": 2, "Items": ["v", "cc"]}},
      "Cookies": {{"Forward": "whitelist", "WhitelistedNames": {{"Quantity": 1, "Items": ["session"]}}}},
      "Headers": {{"Quantity": 1, "Items": ["Accept-Language"]}}
    }},
    "MinTTL": 2, "DefaultTTL": 30, "MaxTTL": 60
  }},
  "CacheBehaviors": {{"Quantity": 2, "Items": [
    {{"PathPattern": "/off/*", "TargetOriginId": "site", "ViewerProtocolPolicy": "allow-all",
      "CachePolicyId": "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"}},
    {{"PathPattern": "/opt/*", "TargetOriginId": "site", "ViewerProtocolPolicy": "allow-all",
      "CachePolicyId": "658327ea-f89d-4fab-a63d-7e88639e58f6"}}
  ]}}
}}"#,
        origin("primary", primary.port()),
        origin("secondary", secondary.port()),
    )
}

fn ttl(r: &Response) -> u64 {
    let status = cache_status(r);
    status
        .split("ttl=")
        .nth(1)
        .and_then(|t| t.split(';').next())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ttl in {status}"))
}

#[test]
fn a_cloudfront_distribution_caches_by_its_ttls_and_forwarded_values() {
    let primary = Origin::start("primary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let secondary = Origin::start("secondary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let lb = LbServer::start_file(
        "dist.json",
        &distribution(primary.addr(), secondary.addr()),
        &["--listen", "127.0.0.1:0"],
        "info",
    );
    let log = lb.stderr();
    assert!(!log.contains("not implemented by lb"), "{log}");
    let send = |path: &str, extra: &str| {
        request(
            lb.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n"),
        )
    };
    // DefaultTTL for an answer without a lifetime; MaxTTL and MinTTL clamp the origin's.
    let a = send("/a?v=1", "");
    assert_eq!(cache_status(&a), "lb; fwd=uri-miss; stored");
    let hit = send("/a?v=1&utm=x", "Cookie: other=1\r\n");
    assert!(
        cache_status(&hit).starts_with("lb; hit"),
        "{}",
        cache_status(&hit)
    );
    assert!(
        (29..=30).contains(&ttl(&hit)),
        "DefaultTTL 30: {}",
        ttl(&hit)
    );
    assert_eq!(served(&hit), served(&a));
    send("/long?cc=max-age=3600", "");
    assert!(ttl(&send("/long?cc=max-age=3600", "")) <= 60, "MaxTTL 60");
    send("/short?cc=no-cache", "");
    let short = send("/short?cc=no-cache", "");
    assert!(
        cache_status(&short).starts_with("lb; hit"),
        "MinTTL 2 stores even no-cache: {}",
        cache_status(&short)
    );
    // Keyed: the whitelisted cookie and header split the cache and reach the origin.
    let s1 = send("/c?v=1", "Cookie: session=a; other=1\r\n");
    let s2 = send("/c?v=1", "Cookie: session=b\r\n");
    assert_eq!(
        cache_status(&s2),
        "lb; fwd=uri-miss; stored",
        "another session"
    );
    assert_ne!(served(&s1), served(&s2));
    let seen = send(
        "/c/headers?v=3&utm=9",
        "Accept-Language: fr\r\nX-Evil: 1\r\nCookie: session=a; other=1\r\n",
    );
    let head = seen.text().to_ascii_lowercase();
    assert!(head.starts_with("get /c/headers?v=3 http/1.1"), "{head}");
    assert!(head.contains("accept-language: fr"), "{head}");
    assert!(head.contains("cookie: session=a\r\n"), "{head}");
    assert!(
        !head.contains("x-evil") && !head.contains("other=1"),
        "{head}"
    );
    // CachingDisabled: not a cached behavior; CachingOptimized: nothing but the path keyed.
    let off = send("/off/x", "");
    assert_eq!(off.header("cache-status"), None);
    send("/off/x", "");
    let opt = send("/opt/x?v=1", "");
    assert_eq!(cache_status(&opt), "lb; fwd=uri-miss; stored");
    let opt2 = send("/opt/x?v=2", "Accept-Language: de\r\n");
    assert!(
        cache_status(&opt2).starts_with("lb; hit"),
        "query not keyed"
    );
    let before = primary.requests();
    send("/off/x", "");
    assert_eq!(
        primary.requests(),
        before + 1,
        "CachingDisabled: always asked"
    );
}

#[test]
fn lb_cache_stats_and_purge_work_on_a_running_lb() {
    let s = setup("headers = [\"accept-language\"]");
    let send = |path: &str, lang: &str| {
        request(
            s.lb.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: shop.test\r\nAccept-Language: {lang}\r\n\r\n"),
        )
    };
    for path in [
        "/img/1.png?cc=max-age=600",
        "/img/2.png?cc=max-age=600",
        "/css/a.css?cc=max-age=600",
    ] {
        send(path, "fr");
        send(path, "de");
    }
    assert!(cache_status(&send("/img/1.png?cc=max-age=600", "fr")).starts_with("lb; hit"));
    let admin = admin_addr(&s.lb).to_string();
    let run = |args: &[&str]| {
        let out = lb(args);
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let stats: serde_json::Value = serde_json::from_str(&run(&[
        "cache", "stats", "--admin", &admin, "--json", "--keys", "10",
    ]))
    .unwrap();
    assert_eq!(stats["tiers"]["memory"]["objects"], 6, "{stats}");
    assert_eq!(stats["requests"]["hit"], 1, "{stats}");
    assert_eq!(stats["requests"]["miss_stored"], 6, "{stats}");
    assert_eq!(stats["keys"].as_array().unwrap().len(), 6, "{stats}");
    let table = run(&["cache", "stats", "--admin", &admin]);
    assert!(
        table.contains("memory") && table.contains("miss_stored"),
        "{table}"
    );

    // A path pattern takes every variant of every matching path, on one host.
    let other_host = run(&[
        "cache",
        "purge",
        "/img/*",
        "--host",
        "other.test",
        "--admin",
        &admin,
        "--json",
    ]);
    assert!(other_host.contains("\"purged\":0"), "{other_host}");
    let purged: serde_json::Value = serde_json::from_str(&run(&[
        "cache",
        "purge",
        "/img/*",
        "--host",
        "shop.test",
        "--admin",
        &admin,
        "--json",
    ]))
    .unwrap();
    assert_eq!(purged["purged"], 4, "{purged}");
    assert_eq!(
        cache_status(&send("/img/1.png?cc=max-age=600", "fr")),
        "lb; fwd=uri-miss; stored"
    );
    assert!(cache_status(&send("/css/a.css?cc=max-age=600", "fr")).starts_with("lb; hit"));

    // One exact key, in the form stats lists it.
    let stats: serde_json::Value = serde_json::from_str(&run(&[
        "cache", "stats", "--admin", &admin, "--json", "--keys", "10",
    ]))
    .unwrap();
    let key = stats["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k.as_str())
        .find(|k| k.contains("/css/a.css") && k.contains("de"))
        .unwrap()
        .replace('\n', "\\n");
    let out = run(&["cache", "purge", "--key", &key, "--admin", &admin]);
    assert!(out.starts_with("purged 1 entries"), "{out}");
    assert_eq!(
        cache_status(&send("/css/a.css?cc=max-age=600", "de")),
        "lb; fwd=uri-miss; stored"
    );
    assert!(cache_status(&send("/css/a.css?cc=max-age=600", "fr")).starts_with("lb; hit"));

    // Bad requests are refused with the reason.
    let bad = lb(&["cache", "purge", "img/*", "--admin", &admin]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("must start with /"));
    let nobody = lb(&["cache", "stats", "--admin", &free_port().to_string()]);
    assert_eq!(nobody.status.code(), Some(3));
}

#[test]
fn stale_while_revalidate_serves_at_once_and_refreshes_once_in_the_background() {
    let s = setup("");
    // The origin takes 600 ms to answer: only a background refresh can absorb that.
    let path = "/swr?cc=max-age=2,stale-while-revalidate=30&delay_ms=600";
    let first = get(s.lb.addr, path);
    assert_eq!(cache_status(&first), "lb; fwd=uri-miss; stored");
    std::thread::sleep(Duration::from_millis(2200));
    let started = Instant::now();
    let stale = get(s.lb.addr, path);
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "the stale copy did not wait for the origin: {:?}",
        started.elapsed()
    );
    assert!(
        cache_status(&stale).contains("detail=stale-while-revalidate"),
        "{}",
        cache_status(&stale)
    );
    assert_eq!(served(&stale), served(&first));
    // While the refresh runs, others get the stale copy too, and no second refresh.
    let again = get(s.lb.addr, path);
    assert!(cache_status(&again).contains("stale-while-revalidate"));
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(s.primary.requests(), 2, "one refresh");
    let fresh = get(s.lb.addr, path);
    assert!(
        cache_status(&fresh).starts_with("lb; hit; ttl="),
        "{}",
        cache_status(&fresh)
    );
    assert_ne!(served(&fresh), served(&first), "the refreshed copy");

    // With a validator, the refresh is a conditional request and a 304 renews the copy.
    let path = "/swr-etag?cc=max-age=1,stale-while-revalidate=30&etag=v1";
    let first = get(s.lb.addr, path);
    std::thread::sleep(Duration::from_millis(1200));
    assert!(cache_status(&get(s.lb.addr, path)).contains("stale-while-revalidate"));
    std::thread::sleep(Duration::from_millis(300));
    let renewed = get(s.lb.addr, path);
    assert!(
        cache_status(&renewed).starts_with("lb; hit; ttl="),
        "{}",
        cache_status(&renewed)
    );
    assert_eq!(
        renewed.text(),
        first.text(),
        "the stored body, renewed by a 304"
    );
    let metrics = get(admin_addr(&s.lb), "/metrics").text();
    assert!(
        metrics.contains("lb_cache_requests_total{result=\"revalidated\"} 1"),
        "{metrics}"
    );

    // A refresh that finds every member failing leaves the stale copy, and the client
    // never sees the failure.
    let path = "/swr-down?cc=max-age=1,stale-while-revalidate=30";
    let first = get(s.lb.addr, path);
    std::thread::sleep(Duration::from_millis(1200));
    s.primary.set_forced_status(Some(503));
    s.secondary.set_forced_status(Some(503));
    for _ in 0..3 {
        let r = get(s.lb.addr, path);
        assert_eq!(r.status, 200);
        assert_eq!(served(&r), served(&first));
        std::thread::sleep(Duration::from_millis(100));
    }
}
