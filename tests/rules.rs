//! Declarative request rules: every condition and action against the real lb binary and
//! real origins, their order (first match wins), a direct answer to a request whose body
//! is never read as a request, and the offline tools (`lb check`, `lb rules explain`).

use lb_origin::Origin;
use lb_tests::{
    http::{Client, Response},
    process::{LbServer, TestDir, lb},
};

struct Setup {
    lb: LbServer,
    _origins: (Origin, Origin, Origin),
}

const RULES: &str = r#"
[[rules]]
name = "maintenance page"
when = [{ path_exact = "/closed" }]
respond = { status = 503, body = "closed for maintenance\n", content_type = "text/plain", headers = { retry-after = "120", cache-control = "no-store" } }

[[rules]]
name = "old blog"
when = [{ path_prefix = "/blog/" }, { method = ["GET", "HEAD"] }]
redirect = { status = 301, location = "https://{host}/news{path}{query}" }

[[rules]]
name = "beta testers"
when = [
  { header = "x-beta", equals = "1" },
  { cookie = "opt-out", present = true, not = true },
]
route = "canary"
set_request_headers = { x-canary = "yes" }
add_request_headers = { x-via-rule = "beta" }

[[rules]]
name = "v2 by query"
when = [{ query = "v", regex = "^2(\\.[0-9]+)?$" }]
route = "canary"

[[rules]]
name = "api rewrite"
when = [{ path = "/api/*" }, { host = "api.test" }]
rewrite_path = { prefix = "/api/", to = "/internal/" }
set_host = "backend.internal"
remove_request_headers = ["x-debug"]

[[rules]]
name = "echo"
when = [{ path_regex = "^/echo/[a-z]+$" }, { header = "user-agent", prefix = "curl/", not = true }]
rewrite_path = { regex = "^/echo/([a-z]+)$", to = "/$1/headers" }
set_request_headers = { x-rule = "echo" }

[[rules]]
name = "outsiders"
when = [{ client = ["127.0.0.0/8", "::1"], not = true }]
respond = { status = 403, body = "no\n" }

[[rules]]
name = "tagged"
when = [{ path_prefix = "/tagged" }]
set_response_headers = { x-tag = "1", content-type = "text/x-tagged" }
remove_response_headers = ["x-served"]
"#;

fn setup() -> Setup {
    let web = Origin::start("web", "127.0.0.1:0".parse().unwrap()).unwrap();
    let canary = Origin::start("canary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let other = Origin::start("other", "127.0.0.1:0".parse().unwrap()).unwrap();
    let toml = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 2\n\n[kernel]\nenabled = false\n\n\
         [[origins]]\nid = \"web\"\naddress = \"{}\"\n[[origins]]\nid = \"canary\"\naddress = \"{}\"\n\
         [[origins]]\nid = \"other\"\naddress = \"{}\"\n\n[default_behavior]\ntarget = \"web\"\n{RULES}",
        web.addr(),
        canary.addr(),
        other.addr()
    );
    let lb = LbServer::start_file("lb.toml", &toml, &[], "info");
    Setup {
        lb,
        _origins: (web, canary, other),
    }
}

fn send(s: &Setup, method: &str, target: &str, fields: &[&str]) -> Response {
    let mut raw = format!("{method} {target} HTTP/1.1\r\n");
    if !fields
        .iter()
        .any(|f| f.to_ascii_lowercase().starts_with("host:"))
    {
        raw.push_str("Host: www.test\r\n");
    }
    for f in fields {
        raw.push_str(f);
        raw.push_str("\r\n");
    }
    raw.push_str("\r\n");
    Client::connect(s.lb.addr).request(&raw)
}

fn origin(r: &Response) -> &str {
    r.header("x-origin").unwrap_or("-")
}

#[test]
fn conditions_route_in_order_and_each_can_be_negated() {
    let s = setup();
    // No rule: the behavior's target.
    let r = send(&s, "GET", "/page", &[]);
    assert_eq!((r.status, origin(&r)), (200, "web"));
    // Header AND not-cookie: the canary, with the header the rule sets.
    let r = send(&s, "GET", "/page", &["X-Beta: 1"]);
    assert_eq!((r.status, origin(&r)), (200, "canary"), "{}", r.text());
    let r = send(&s, "GET", "/page", &["X-Beta: 1", "Cookie: a=b; opt-out=1"]);
    assert_eq!(origin(&r), "web", "the negated cookie condition fails");
    let r = send(&s, "GET", "/page", &["X-Beta: 2"]);
    assert_eq!(origin(&r), "web");
    // Query parameter by regex.
    assert_eq!(origin(&send(&s, "GET", "/page?v=2.1", &[])), "canary");
    assert_eq!(origin(&send(&s, "GET", "/page?v=3", &[])), "web");
    assert_eq!(origin(&send(&s, "GET", "/page?x=1&v=2", &[])), "canary");
    // Method: the blog redirect is for GET and HEAD only; a POST goes through.
    let r = send(&s, "POST", "/blog/x", &["Content-Length: 0"]);
    assert_eq!((r.status, origin(&r)), (200, "web"));
}

#[test]
fn redirects_and_direct_answers_never_reach_an_origin() {
    let s = setup();
    let r = send(&s, "GET", "/blog/2026/hello?ref=x", &["Host: shop.test"]);
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some("https://shop.test/news/blog/2026/hello?ref=x")
    );
    let r = send(&s, "HEAD", "/blog/a", &["Host: shop.test"]);
    assert_eq!(r.status, 301);
    let r = send(&s, "GET", "/closed", &[]);
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), "closed for maintenance\n");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("retry-after"), Some("120"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(origin(&r), "-");
}

#[test]
fn rewrites_change_what_the_origin_receives() {
    let s = setup();
    // Path prefix and Host rewritten, a client header removed; the host condition is
    // compared without the port and case-insensitively.
    let r = send(
        &s,
        "GET",
        "/api/users/headers?id=7",
        &["Host: API.test:8080", "X-Debug: 1", "X-Keep: 1"],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let head = r.text().to_ascii_lowercase();
    assert!(
        head.starts_with("get /internal/users/headers?id=7 http/1.1\r\n"),
        "{head}"
    );
    assert!(head.contains("host: backend.internal\r\n"), "{head}");
    assert!(!head.contains("x-debug"), "{head}");
    assert!(head.contains("x-keep: 1\r\n"), "{head}");
    // A regex rewrite with a group, and a header set by the rule replaces the client's.
    let r = send(
        &s,
        "GET",
        "/echo/abc",
        &["X-Rule: client", "User-Agent: test"],
    );
    let head = r.text().to_ascii_lowercase();
    assert!(head.starts_with("get /abc/headers http/1.1\r\n"), "{head}");
    assert!(head.contains("x-rule: echo\r\n"), "{head}");
    assert!(!head.contains("x-rule: client"), "{head}");
    // The negated prefix: curl is not rewritten.
    let r = send(&s, "GET", "/echo/abc", &["User-Agent: curl/8"]);
    assert_eq!(r.text(), "web GET /echo/abc\n");
    // The canary rule's headers reach the canary: a set one replaces the client's, an
    // added one goes next to it.
    let r = send(
        &s,
        "GET",
        "/x/headers",
        &["X-Beta: 1", "X-Canary: client", "X-Via-Rule: client"],
    );
    let head = r.text().to_ascii_lowercase();
    assert!(head.contains("x-canary: yes\r\n"), "{head}");
    assert!(!head.contains("x-canary: client"), "{head}");
    assert!(head.contains("x-via-rule: client\r\n"), "{head}");
    assert!(head.contains("x-via-rule: beta\r\n"), "{head}");
}

#[test]
fn a_body_sent_to_a_direct_answer_is_never_read_as_a_request() {
    let s = setup();
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: www.test\r\n\r\n";
    let mut c = Client::connect(s.lb.addr);
    c.send(
        format!(
            "POST /closed HTTP/1.1\r\nHost: www.test\r\nContent-Length: {}\r\n\r\n{smuggled}",
            smuggled.len()
        )
        .as_bytes(),
    );
    let r = c.read_response(false);
    assert_eq!(r.status, 503);
    // Either the body was drained and the connection kept (then the next answer is for
    // /ok), or it was closed; never an answer for /smuggled.
    if r.header("connection") == Some("close") {
        assert!(c.clean_eof(), "closed after the answer");
        return;
    }
    c.send(b"GET /ok HTTP/1.1\r\nHost: www.test\r\n\r\n");
    let next = c.read_response(false);
    assert_eq!(next.text(), "web GET /ok\n");
}

#[test]
fn lb_check_points_at_a_bad_rule_and_explain_says_which_rule_matches() {
    let dir = TestDir::new();
    let bad = dir.write(
        "bad.toml",
        "[listener]\naddress = \"127.0.0.1:0\"\n[[origins]]\nid = \"web\"\naddress = \"127.0.0.1:9\"\n\n\
         [[rules]]\nname = \"x\"\nwhen = [{ header = \"a\" }]\nroute = \"web\"\n",
    );
    let out = lb(&["check", "--config", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.toml:9:9: rules[0].when[0]: a header, cookie or query condition needs exactly one of"), "{err}");
    let unknown = dir.write(
        "unknown.toml",
        "[listener]\naddress = \"127.0.0.1:0\"\n[[origins]]\nid = \"web\"\naddress = \"127.0.0.1:9\"\n\n\
         [[rules]]\nname = \"x\"\nroute = \"nope\"\n",
    );
    let out = lb(&["check", "--config", unknown.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown.toml:9:9: rules[0].route: no origin or origin group `nope`"),
        "{err}"
    );

    let good = dir.write(
        "good.toml",
        &format!(
            "[listener]\naddress = \"127.0.0.1:0\"\n[[origins]]\nid = \"web\"\naddress = \"127.0.0.1:9\"\n\
             [[origins]]\nid = \"canary\"\naddress = \"127.0.0.1:9\"\n[[origins]]\nid = \"other\"\naddress = \"127.0.0.1:9\"\n\
             [default_behavior]\ntarget = \"web\"\n{RULES}"
        ),
    );
    let out = lb(&[
        "rules",
        "explain",
        "--config",
        good.to_str().unwrap(),
        "--path",
        "/page?v=2",
        "--header",
        "X-Beta: 1",
        "--header",
        "Cookie: opt-out=1",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("rule \"maintenance page\": no match: path is \"/closed\""),
        "{text}"
    );
    assert!(
        text.contains("rule \"beta testers\": no match: not: cookie opt-out is present"),
        "{text}"
    );
    assert!(text.contains("rule \"v2 by query\": MATCH"), "{text}");
    assert!(text.contains("route to canary"), "{text}");
    assert!(
        !text.contains("api rewrite"),
        "rules after the match are not listed: {text}"
    );
    let out = lb(&[
        "rules",
        "explain",
        "--config",
        good.to_str().unwrap(),
        "--path",
        "/x",
        "--client",
        "192.0.2.1",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("rule \"outsiders\": MATCH"), "{text}");
    assert!(text.contains("answer 403"), "{text}");
}

#[test]
fn response_headers_are_set_and_removed_on_what_the_client_gets() {
    let s = setup();
    let r = send(&s, "GET", "/tagged/x", &[]);
    assert_eq!((r.status, origin(&r)), (200, "web"));
    assert_eq!(r.header("x-tag"), Some("1"));
    assert_eq!(r.header("content-type"), Some("text/x-tagged"));
    assert_eq!(r.header("x-served"), None);
    let r = send(&s, "GET", "/untagged", &[]);
    assert_eq!(r.header("x-tag"), None);
    assert!(r.header("x-served").is_some());
}

fn geo_db(name: &str) -> Option<std::path::PathBuf> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/geo")
        .join(name);
    if path.exists() {
        Some(path.canonicalize().unwrap())
    } else {
        eprintln!("SKIPPED: {} not present", path.display());
        None
    }
}

/// MaxMind's test databases hold public addresses that no test may send packets to, so
/// the client address comes through `X-Forwarded-For` from lb's trusted loopback peer.
#[test]
fn country_asn_and_networks_use_a_trusted_proxys_forwarded_address() {
    let (Some(country), Some(asn)) = (
        geo_db("GeoLite2-Country-Test.mmdb"),
        geo_db("GeoLite2-ASN-Test.mmdb"),
    ) else {
        return;
    };
    let web = Origin::start("web", "127.0.0.1:0".parse().unwrap()).unwrap();
    let canary = Origin::start("canary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let other = Origin::start("other", "127.0.0.1:0".parse().unwrap()).unwrap();
    let toml = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n[kernel]\nenabled = false\n\
         [geo]\ncountry_database = \"{}\"\nasn_database = \"{}\"\n\
         [client_address]\ntrusted_proxies = [\"127.0.0.1\"]\n\
         [[origins]]\nid = \"web\"\naddress = \"{}\"\n[[origins]]\nid = \"canary\"\naddress = \"{}\"\n\
         [[origins]]\nid = \"other\"\naddress = \"{}\"\n[default_behavior]\ntarget = \"web\"\n\
         [[rules]]\nname = \"uk\"\nwhen = [{{ country = [\"GB\"] }}]\nroute = \"canary\"\n\
         [[rules]]\nname = \"telstra\"\nwhen = [{{ asn = [1221] }}]\nroute = \"other\"\n\
         [[rules]]\nname = \"internal\"\nwhen = [{{ client = [\"10.0.0.0/8\"] }}]\nrespond = {{ status = 403, body = \"internal\\n\" }}\n",
        country.display(),
        asn.display(),
        web.addr(),
        canary.addr(),
        other.addr()
    );
    let server = LbServer::start_file("lb.toml", &toml, &[], "info");
    let from = |xff: Option<&str>| {
        let mut raw = String::from("GET /where HTTP/1.1\r\nHost: geo.test\r\n");
        if let Some(x) = xff {
            raw.push_str(&format!("X-Forwarded-For: {x}\r\n"));
        }
        raw.push_str("\r\n");
        Client::connect(server.addr).request(&raw)
    };
    assert_eq!(origin(&from(Some("81.2.69.142"))), "canary", "GB");
    // The rightmost address a trusted proxy did not add is the client's.
    assert_eq!(
        origin(&from(Some("1.128.0.1, 127.0.0.1"))),
        "other",
        "AS1221"
    );
    assert_eq!(
        origin(&from(Some("89.160.20.130"))),
        "web",
        "SE matches nothing"
    );
    assert_eq!(from(Some("10.9.8.7")).status, 403);
    // Without the header the client is the loopback peer itself.
    assert_eq!(origin(&from(None)), "web");
    // lb rules explain follows the same header.
    let dir = TestDir::new();
    let cfg = dir.write("geo.toml", &toml);
    let out = lb(&[
        "rules",
        "explain",
        "--config",
        cfg.to_str().unwrap(),
        "--header",
        "X-Forwarded-For: 81.2.69.142",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("rule \"uk\": MATCH"), "{text}");
    // A country condition without a database is refused.
    let bad = dir.write(
        "bad.toml",
        "[listener]\naddress = \"127.0.0.1:0\"\n[[origins]]\nid = \"web\"\naddress = \"127.0.0.1:9\"\n\
         [[rules]]\nname = \"x\"\nwhen = [{ country = [\"DE\"] }]\nroute = \"web\"\n",
    );
    let out = lb(&["check", "--config", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("a country condition needs [geo] country_database"),
        "{err}"
    );
}

#[test]
fn weighted_splits_are_sticky_and_near_their_shares() {
    let web = Origin::start("web", "127.0.0.1:0".parse().unwrap()).unwrap();
    let canary = Origin::start("canary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let toml = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 2\n[kernel]\nenabled = false\n\
         [[origins]]\nid = \"web\"\naddress = \"{}\"\n[[origins]]\nid = \"canary\"\naddress = \"{}\"\n\
         [default_behavior]\ntarget = \"web\"\n\
         [[rules]]\nname = \"canary 20%\"\nwhen = [{{ split = [0, 20], by = \"cookie:uid\" }}]\nroute = \"canary\"\n",
        web.addr(),
        canary.addr()
    );
    let lb = LbServer::start_file("lb.toml", &toml, &[], "info");
    let mut c = Client::connect(lb.addr);
    let mut side = std::collections::HashMap::new();
    const USERS: usize = 1000;
    for i in 0..USERS {
        let r = c.request(&format!(
            "GET /p HTTP/1.1\r\nHost: t\r\nCookie: theme=dark; uid=u{i}\r\n\r\n"
        ));
        side.insert(i, origin(&r).to_owned());
    }
    let canaries = side.values().filter(|o| *o == "canary").count();
    // 20% of 1,000 with a binomial sd of about 13: within 60 either way.
    assert!((140..=260).contains(&canaries), "{canaries} of {USERS}");
    // Sticky: every user again lands where they did.
    for i in (0..USERS).step_by(7) {
        let r = c.request(&format!(
            "GET /p HTTP/1.1\r\nHost: t\r\nCookie: uid=u{i}\r\n\r\n"
        ));
        assert_eq!(origin(&r), side[&i], "user {i}");
    }
}

/// Response rules: seed 001's case without code, head changes while the origin's body
/// streams, conditions on the origin that answered, and their order before custom error
/// responses.
#[test]
fn response_rules_rewrite_final_answers() {
    let web = Origin::start("web", "127.0.0.1:0".parse().unwrap()).unwrap();
    let canary = Origin::start("canary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let dir = TestDir::new();
    dir.write("sorry.html", "<p>sorry</p>\n");
    let toml = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n[kernel]\nenabled = false\n\
         [[origins]]\nid = \"web\"\naddress = \"{}\"\n[[origins]]\nid = \"canary\"\naddress = \"{}\"\n\
         [[behaviors]]\npath_pattern = \"/c/*\"\ntarget = \"canary\"\n\
         [default_behavior]\ntarget = \"web\"\n\
         [[custom_error_responses]]\nerror_code = 404\nresponse_page_file = \"sorry.html\"\n\
         [[response_rules]]\nname = \"errors to 200\"\nwhen = [{{ status_range = [500, 599] }}]\n\
         set_status = 200\nbody = \"Body generation example\"\n\
         [[response_rules]]\nname = \"canary 404 is gone\"\nwhen = [{{ origin = [\"canary\"] }}, {{ status = [404] }}]\n\
         set_status = 410\n\
         [[response_rules]]\nname = \"tag big\"\nwhen = [{{ path_prefix = \"/big\" }}, {{ header = \"x-origin\", equals = \"web\" }}]\n\
         set_headers = {{ x-tagged = \"1\" }}\nremove_headers = [\"x-served\"]\n",
        web.addr(),
        canary.addr()
    );
    let lb = LbServer::start_in(dir, "lb.toml", &toml, &[], "info");
    let r = Client::connect(lb.addr).request("GET /x?status=503 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "Body generation example")
    );
    assert_eq!(r.header("content-type"), Some("text/plain"));
    let r = Client::connect(lb.addr).request("GET /big?size=150000 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((r.status, r.body.len()), (200, 150_000));
    assert_eq!(r.header("x-tagged"), Some("1"));
    assert_eq!(r.header("x-served"), None);
    // The canary's 404 becomes 410 (no custom page for 410); the web origin's 404 gets
    // the custom error page, which runs after the rules.
    let r = Client::connect(lb.addr).request("GET /c/x?status=404 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 410);
    let r = Client::connect(lb.addr).request("GET /x?status=404 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (404, "<p>sorry</p>\n"));
}

/// A behavior's own rules run when no global rule matched, and only for its paths.
#[test]
fn behavior_rules_run_after_the_global_ones_for_their_paths() {
    let web = Origin::start("web", "127.0.0.1:0".parse().unwrap()).unwrap();
    let canary = Origin::start("canary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let toml = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n[kernel]\nenabled = false\n\
         [[origins]]\nid = \"web\"\naddress = \"{}\"\n[[origins]]\nid = \"canary\"\naddress = \"{}\"\n\
         [[rules]]\nname = \"global beta\"\nwhen = [{{ header = \"x-beta\", present = true }}]\nroute = \"canary\"\n\
         set_request_headers = {{ x-from = \"global\" }}\n\
         [[behaviors]]\npath_pattern = \"/shop/*\"\ntarget = \"web\"\n\
         [[behaviors.rules]]\nname = \"shop rewrite\"\nwhen = [{{ path_prefix = \"/shop/\" }}]\n\
         rewrite_path = {{ prefix = \"/shop/\", to = \"/store/\" }}\n\
         [default_behavior]\ntarget = \"web\"\n",
        web.addr(),
        canary.addr()
    );
    let dir = TestDir::new();
    let cfg = dir.write("lb.toml", &toml);
    let lb_server = LbServer::start_file("lb.toml", &toml, &[], "info");
    let send = |raw: &str| Client::connect(lb_server.addr).request(raw);
    // The behavior's rule rewrites its paths only.
    let r = send("GET /shop/x HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.text(), "web GET /store/x\n");
    assert_eq!(
        send("GET /other HTTP/1.1\r\nHost: t\r\n\r\n").text(),
        "web GET /other\n"
    );
    // A global match wins: the behavior's rules are not run.
    let r = send("GET /shop/x HTTP/1.1\r\nHost: t\r\nX-Beta: 1\r\n\r\n");
    assert_eq!(
        (origin(&r), r.text().as_str()),
        ("canary", "canary GET /shop/x\n")
    );
    let out = lb(&[
        "rules",
        "explain",
        "--config",
        cfg.to_str().unwrap(),
        "--path",
        "/shop/y",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("global rule \"global beta\": no match"),
        "{text}"
    );
    assert!(
        text.contains("behavior /shop/* rule \"shop rewrite\": MATCH"),
        "{text}"
    );
    assert!(text.contains("origin receives /store/y"), "{text}");
}
