//! Functions others published for CloudFront, run unchanged against the real lb binary:
//! AWS's CloudFront Functions samples (aws-samples/amazon-cloudfront-functions) and the
//! Lambda@Edge examples of the CloudFront Developer Guide. The files in
//! `fixtures/published-functions/` are byte-for-byte copies; SOURCES.md there says where
//! each comes from and under which licence.

use lb_origin::Origin;
use lb_tests::{
    http::{Client, Response, get},
    process::{LbServer, TestDir},
};

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/published-functions")
}

/// MaxMind's test country database (public addresses reach lb only as a trusted proxy's
/// X-Forwarded-For, never as packets).
fn country_db() -> Option<std::path::PathBuf> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/geo/GeoLite2-Country-Test.mmdb");
    if path.exists() {
        Some(path.canonicalize().unwrap())
    } else {
        eprintln!("SKIPPED: {} not present", path.display());
        None
    }
}

struct Setup {
    lb: LbServer,
    _origin: Origin,
}

/// lb with one origin and the published function `file` at `trigger` on every request,
/// the client's address taken from X-Forwarded-For of the loopback peer, and countries
/// from `geo` when given.
fn start(file: &str, trigger: &str, kind: &str, geo: Option<&std::path::Path>, log: &str) -> Setup {
    let origin = Origin::start("web", "127.0.0.1:0".parse().unwrap()).unwrap();
    let dir = TestDir::new();
    let source = std::fs::read_to_string(fixtures().join(file)).unwrap();
    dir.write(file, &source);
    let geo = geo
        .map(|p| format!("[geo]\ncountry_database = \"{}\"\n", p.display()))
        .unwrap_or_default();
    let toml = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n[kernel]\nenabled = false\n{geo}\
         [client_address]\ntrusted_proxies = [\"127.0.0.1\"]\n\
         [[origins]]\nid = \"web\"\naddress = \"{}\"\n[default_behavior]\ntarget = \"web\"\n\
         functions = [{{ trigger = \"{trigger}\", file = \"{file}\", kind = \"{kind}\" }}]\n",
        origin.addr()
    );
    let lb = LbServer::start_in(dir, "lb.toml", &toml, &[], log);
    Setup {
        lb,
        _origin: origin,
    }
}

fn send(lb: &LbServer, target: &str, fields: &[&str]) -> Response {
    let mut raw = format!("GET {target} HTTP/1.1\r\nHost: shop.test\r\n");
    for f in fields {
        raw.push_str(f);
        raw.push_str("\r\n");
    }
    raw.push_str("\r\n");
    Client::connect(lb.addr).request(&raw)
}

const CFF: &str = "cloudfront-function";
const LAMBDA: &str = "lambda-edge";

#[test]
fn aws_cloudfront_function_add_security_headers() {
    let s = start(
        "cff-add-security-headers.js",
        "viewer-response",
        CFF,
        None,
        "info",
    );
    for path in ["/page", "/missing?status=404"] {
        let r = get(s.lb.addr, path);
        assert_eq!(
            r.header("strict-transport-security"),
            Some("max-age=63072000; includeSubdomains; preload"),
            "{path}"
        );
        assert!(
            r.header("content-security-policy")
                .is_some_and(|v| v.starts_with("default-src 'none'; img-src 'self';")),
            "{path}"
        );
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("x-xss-protection"), Some("1; mode=block"));
        assert_eq!(r.header("referrer-policy"), Some("same-origin"));
    }
    assert_eq!(get(s.lb.addr, "/page").text(), "web GET /page\n");
}

#[test]
fn aws_cloudfront_function_redirect_based_on_country() {
    let Some(db) = country_db() else { return };
    let s = start(
        "cff-redirect-based-on-country.js",
        "viewer-request",
        CFF,
        Some(&db),
        "info",
    );
    // 2a02:ff80::/29 is DE in MaxMind's test data, 81.2.69.142 GB.
    let r = send(&s.lb, "/", &["X-Forwarded-For: 2a02:ff80::1"]);
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("https://shop.test/de/index.html")
    );
    let r = send(&s.lb, "/", &["X-Forwarded-For: 81.2.69.142"]);
    assert_eq!((r.status, r.text().as_str()), (200, "web GET /\n"));
    // A client cannot choose its country by sending CloudFront's header itself.
    let r = send(
        &s.lb,
        "/",
        &[
            "X-Forwarded-For: 81.2.69.142",
            "CloudFront-Viewer-Country: DE",
        ],
    );
    assert_eq!(r.status, 200);
}

#[test]
fn aws_cloudfront_function_add_true_client_ip_header() {
    let s = start(
        "cff-add-true-client-ip-header.js",
        "viewer-request",
        CFF,
        None,
        "info",
    );
    let head = send(&s.lb, "/x/headers", &["X-Forwarded-For: 203.0.113.7"])
        .text()
        .to_ascii_lowercase();
    assert!(head.contains("true-client-ip: 203.0.113.7\r\n"), "{head}");
    let head = get(s.lb.addr, "/x/headers").text().to_ascii_lowercase();
    assert!(head.contains("true-client-ip: 127.0.0.1\r\n"), "{head}");
}

#[test]
fn aws_cloudfront_function_url_rewrite_single_page_apps() {
    let s = start(
        "cff-url-rewrite-single-page-apps.js",
        "viewer-request",
        CFF,
        None,
        "info",
    );
    assert_eq!(
        get(s.lb.addr, "/docs/").text(),
        "web GET /docs/index.html\n"
    );
    assert_eq!(
        get(s.lb.addr, "/app/route").text(),
        "web GET /app/route/index.html\n"
    );
    assert_eq!(get(s.lb.addr, "/site.css").text(), "web GET /site.css\n");
}

#[test]
fn aws_lambda_at_edge_ab_testing_by_cookie() {
    let s = start(
        "lambda-edge-ab-testing.js",
        "viewer-request",
        LAMBDA,
        None,
        "info,lb::functions::console=debug",
    );
    let pixel = |cookie: &str| {
        let fields: Vec<String> = (!cookie.is_empty())
            .then(|| format!("Cookie: {cookie}"))
            .into_iter()
            .collect();
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        send(&s.lb, "/experiment-pixel.jpg", &fields).text()
    };
    assert_eq!(
        pixel("X-Experiment-Name=A"),
        "web GET /experiment-group/control-pixel.jpg\n"
    );
    assert_eq!(
        pixel("session=1; X-Experiment-Name=B"),
        "web GET /experiment-group/treatment-pixel.jpg\n"
    );
    // Without the cookie the function throws dice (75% A); both groups appear.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        seen.insert(pixel(""));
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [
            "web GET /experiment-group/control-pixel.jpg\n",
            "web GET /experiment-group/treatment-pixel.jpg\n"
        ]
    );
    assert_eq!(get(s.lb.addr, "/other.jpg").text(), "web GET /other.jpg\n");
    // Its console.log lines reach lb's log (debug level, target lb::functions::console).
    let log = s.lb.stderr();
    assert!(log.contains("Experiment B cookie found"), "{log}");
    assert!(
        log.contains("Request uri set to \"/experiment-group/control-pixel.jpg\""),
        "{log}"
    );
}

#[test]
fn aws_lambda_at_edge_redirect_by_country_at_origin_request() {
    let Some(db) = country_db() else { return };
    let s = start(
        "lambda-edge-redirect-by-country.js",
        "origin-request",
        LAMBDA,
        Some(&db),
        "info",
    );
    // 216.160.83.57 is US in MaxMind's test data.
    let r = send(&s.lb, "/", &["X-Forwarded-For: 216.160.83.57"]);
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("https://us.example.com/"));
    let r = send(&s.lb, "/", &["X-Forwarded-For: 81.2.69.142"]);
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("https://example.com/"));
}

#[test]
fn aws_lambda_at_edge_header_from_query_string() {
    let s = start(
        "lambda-edge-header-from-query-string.js",
        "viewer-request",
        LAMBDA,
        None,
        "info",
    );
    let head = get(s.lb.addr, "/x/headers?auth=tok%20en&b=1&b=2")
        .text()
        .to_ascii_lowercase();
    assert!(
        head.starts_with("get /x/headers?b=1&b=2 http/1.1\r\n"),
        "{head}"
    );
    assert!(head.contains("auth-header: tok en\r\n"), "{head}");
}

#[test]
fn aws_lambda_at_edge_override_response_header() {
    let s = start(
        "lambda-edge-override-response-header.js",
        "origin-response",
        LAMBDA,
        None,
        "info",
    );
    let r = get(
        s.lb.addr,
        "/page?amz_meta_last_modified=Wed,%2021%20Oct%202015%2007:28:00%20GMT",
    );
    assert_eq!(r.status, 200, "{}", s.lb.stderr());
    assert_eq!(
        r.header("last-modified"),
        Some("Wed, 21 Oct 2015 07:28:00 GMT")
    );
    assert_eq!(r.text(), "web GET /page\n");
    assert_eq!(get(s.lb.addr, "/page").header("last-modified"), None);
}
