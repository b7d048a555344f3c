//! Lambda@Edge-style functions in JavaScript against the real lb binary and origins:
//! seed 001's origin-response function unchanged, viewer-request functions that change
//! or answer a request, and functions that throw, loop forever or allocate without bound
//! (502, counted, and the worker keeps serving).

use lb_origin::Origin;
use lb_tests::{
    http::{Client, get},
    process::{LbServer, TestDir, lb},
};

/// Seed 001's function, byte for byte as the seed shows it (read from the seed, so it
/// is never retyped).
fn seed_001_function() -> Option<String> {
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/seeds");
    let seed = std::fs::read_dir(&seeds)
        .ok()?
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("001_"))?;
    let text = std::fs::read_to_string(seed.path()).ok()?;
    let start = text.find("    exports.handler")?;
    let end = start + text[start..].find("\n    };")? + "\n    };".len();
    Some(text[start..end].to_owned() + "\n")
}

struct Setup {
    lb: LbServer,
    origin: Origin,
    admin: std::net::SocketAddr,
}

fn start(functions: &[(&str, &str, &str)], behavior_path: &str) -> Setup {
    let origin = Origin::start("web", "127.0.0.1:0".parse().unwrap()).unwrap();
    let dir = TestDir::new();
    let mut list = String::new();
    for (file, trigger, source) in functions {
        dir.write(file, source);
        list.push_str(&format!(
            "{{ trigger = \"{trigger}\", file = \"{file}\" }}, "
        ));
    }
    let admin = lb_tests::free_port();
    let toml = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n[admin]\naddress = \"{admin}\"\n[kernel]\nenabled = false\n\
         [functions]\ntime_limit = \"50ms\"\nmemory_limit = 16777216\n\
         [[origins]]\nid = \"web\"\naddress = \"{}\"\n\
         [[behaviors]]\npath_pattern = \"{behavior_path}\"\ntarget = \"web\"\nfunctions = [{list}]\n\
         [default_behavior]\ntarget = \"web\"\n",
        origin.addr()
    );
    let lb = LbServer::start_in(dir, "lb.toml", &toml, &[], "info");
    Setup { lb, origin, admin }
}

#[test]
fn seed_001s_origin_response_function_runs_unchanged() {
    let Some(function) = seed_001_function() else {
        eprintln!("SKIPPED: ../shared/seeds not present");
        return;
    };
    assert!(function.contains("response.body = 'Body generation example';"));
    let s = start(&[("seed001.js", "origin-response", &function)], "/*");
    let r = get(s.lb.addr, "/page?status=503");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "Body generation example");
    // A good answer passes through untouched.
    let r = get(s.lb.addr, "/page");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "web GET /page\n");
    let r = get(s.lb.addr, "/missing?status=404");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "Body generation example")
    );
}

const SECURITY_HEADERS: &str = r#"'use strict';
exports.handler = (event, context, callback) => {
  const response = event.Records[0].cf.response;
  const headers = response.headers;
  headers['strict-transport-security'] = [{ key: 'Strict-Transport-Security', value: 'max-age=63072000' }];
  headers['x-content-type-options'] = [{ key: 'X-Content-Type-Options', value: 'nosniff' }];
  delete headers['x-served'];
  callback(null, response);
};
"#;

const VIEWER_REQUEST: &str = r#"exports.handler = async (event) => {
  const request = event.Records[0].cf.request;
  const cookie = (request.headers.cookie || []).map(c => c.value).join('; ');
  if (request.uri === '/old') {
    return { status: '301', statusDescription: 'Moved Permanently',
             headers: { location: [{ key: 'Location', value: '/new' }] } };
  }
  if (cookie.includes('group=b')) {
    request.uri = '/b' + request.uri;
  }
  request.headers['x-client-ip'] = [{ key: 'X-Client-IP', value: request.clientIp }];
  return request;
};
"#;

#[test]
fn response_heads_change_while_the_origins_body_streams() {
    let s = start(&[("headers.js", "origin-response", SECURITY_HEADERS)], "/*");
    let r = get(s.lb.addr, "/big?size=200000");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 200_000);
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=63072000")
    );
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("x-served"), None);
    assert_eq!(r.header("x-origin"), Some("web"));
}

#[test]
fn viewer_request_functions_change_or_answer_the_request() {
    let s = start(&[("vr.js", "viewer-request", VIEWER_REQUEST)], "/*");
    let r = get(s.lb.addr, "/old");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/new"));
    let r = Client::connect(s.lb.addr)
        .request("GET /x/headers HTTP/1.1\r\nHost: t\r\nCookie: group=b\r\n\r\n");
    let head = r.text().to_ascii_lowercase();
    assert!(head.starts_with("get /b/x/headers http/1.1\r\n"), "{head}");
    assert!(head.contains("x-client-ip: 127.0.0.1\r\n"), "{head}");
    assert!(head.contains("host: t\r\n"), "{head}");
    let r = get(s.lb.addr, "/plain");
    assert_eq!(r.text(), "web GET /plain\n");
}

fn function_errors(admin: std::net::SocketAddr, reason: &str) -> u64 {
    get(admin, "/metrics")
        .text()
        .lines()
        .find(|l| l.starts_with(&format!("lb_function_errors_total{{reason=\"{reason}\"}}")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn functions_that_loop_allocate_or_throw_get_502_and_the_worker_keeps_serving() {
    let s = start(
        &[(
            "bad.js",
            "viewer-request",
            "exports.handler = (event, context, callback) => {\n\
               const uri = event.Records[0].cf.request.uri;\n\
               if (uri === '/loop') { for (;;) {} }\n\
               if (uri === '/hog') { const a = []; for (;;) a.push(new Array(100000).fill(uri)); }\n\
               if (uri === '/throw') { throw new Error('boom'); }\n\
               if (uri === '/invalid') { callback(null, { status: 'teapot' }); return; }\n\
               callback(null, event.Records[0].cf.request);\n\
             };\n",
        )],
        "/*",
    );
    for (path, reason) in [
        ("/loop", "timeout"),
        ("/hog", "memory"),
        ("/throw", "threw"),
        ("/invalid", "invalid"),
    ] {
        let t0 = std::time::Instant::now();
        let r = get(s.lb.addr, path);
        assert_eq!(r.status, 502, "{path}: {}", r.text());
        assert!(
            r.text().contains("function bad failed"),
            "{path}: {}",
            r.text()
        );
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(2),
            "{path}: {:?}",
            t0.elapsed()
        );
        // The same (only) worker answers the next request at once.
        assert_eq!(
            get(s.lb.addr, "/fine").text(),
            "web GET /fine\n",
            "after {path}"
        );
        let counted = function_errors(s.admin, reason);
        // An allocation loop may hit the time limit before the memory limit.
        let alt = if reason == "memory" {
            function_errors(s.admin, "timeout")
        } else {
            0
        };
        assert!(counted + alt >= 1, "{path}: {reason} not counted");
    }
    assert!(
        s.lb.stderr().contains("function failed; answering 502"),
        "{}",
        s.lb.stderr()
    );
    drop(s.origin);
}

#[test]
fn lb_check_refuses_a_function_that_does_not_compile() {
    let dir = TestDir::new();
    dir.write("broken.js", "exports.handler = (event => {\n");
    let cfg = dir.write(
        "lb.toml",
        "[listener]\naddress = \"127.0.0.1:0\"\n[[origins]]\nid = \"web\"\naddress = \"127.0.0.1:9\"\n\
         [default_behavior]\ntarget = \"web\"\nfunctions = [{ trigger = \"viewer-request\", file = \"broken.js\" }]\n",
    );
    let out = lb(&["check", "--config", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("lb.toml:8:14: default_behavior.functions[0]:"),
        "{err}"
    );
    assert!(
        err.contains("broken.js: the function does not compile"),
        "{err}"
    );
}

/// Seed 000: with an origin group, an origin-request function runs for the primary and
/// again for the secondary on failover; seed 003: it tells them apart by the origin
/// custom header each origin has.
#[test]
fn an_origin_request_function_sees_both_attempts_of_a_failover() {
    let primary = Origin::start("primary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let secondary = Origin::start("secondary", "127.0.0.1:0".parse().unwrap()).unwrap();
    primary.set_forced_status(Some(503));
    let dir = TestDir::new();
    dir.write(
        "which.js",
        "const seen = [];\n\
         exports.handler = (event, context, callback) => {\n\
           const request = event.Records[0].cf.request;\n\
           const which = request.origin.custom.customHeaders['x-which'][0].value;\n\
           seen.push(which);\n\
           request.headers['x-seen'] = [{ key: 'X-Seen', value: seen.join(',') }];\n\
           if (which === 'secondary') { request.uri = '/from-secondary' + request.uri; }\n\
           callback(null, request);\n\
         };\n",
    );
    let toml = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n[kernel]\nenabled = false\n\
         [health]\npassive_failures = 100\n\
         [[origins]]\nid = \"primary\"\naddress = \"{}\"\n[origins.custom_headers]\nx-which = \"primary\"\n\
         [[origins]]\nid = \"secondary\"\naddress = \"{}\"\n[origins.custom_headers]\nx-which = \"secondary\"\n\
         [[origin_groups]]\nid = \"site\"\nmembers = [\"primary\", \"secondary\"]\nfailover_status_codes = [503]\n\
         [default_behavior]\ntarget = \"site\"\nfunctions = [{{ trigger = \"origin-request\", file = \"which.js\" }}]\n",
        primary.addr(),
        secondary.addr()
    );
    let lb = LbServer::start_in(dir, "lb.toml", &toml, &[], "info");
    let r = get(lb.addr, "/x/headers");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-origin"), Some("secondary"));
    let head = r.text().to_ascii_lowercase();
    assert!(
        head.starts_with("get /from-secondary/x/headers http/1.1\r\n"),
        "{head}"
    );
    assert!(head.contains("x-which: secondary\r\n"), "{head}");
    assert!(head.contains("x-seen: primary,secondary\r\n"), "{head}");
}

const CLOUDFRONT_FUNCTION: &str = r#"function handler(event) {
    var request = event.request;
    if (request.querystring.deny) {
        return { statusCode: 403, statusDescription: 'Forbidden',
                 headers: { 'x-why': { value: 'denied by ' + event.viewer.ip } } };
    }
    if (request.uri.endsWith('/')) {
        request.uri += 'index.html';
    }
    if (request.cookies.theme && request.cookies.theme.value === 'dark') {
        request.headers['x-theme'] = { value: 'dark' };
    }
    return request;
}
"#;

#[test]
fn cloudfront_functions_run_with_their_own_event_shape() {
    let origin = Origin::start("web", "127.0.0.1:0".parse().unwrap()).unwrap();
    let dir = TestDir::new();
    dir.write("cff.js", CLOUDFRONT_FUNCTION);
    let toml = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n[kernel]\nenabled = false\n\
         [[origins]]\nid = \"web\"\naddress = \"{}\"\n[default_behavior]\ntarget = \"web\"\n\
         functions = [{{ trigger = \"viewer-request\", file = \"cff.js\", kind = \"cloudfront-function\" }}]\n",
        origin.addr()
    );
    let lb = LbServer::start_in(dir, "lb.toml", &toml, &[], "info");
    assert_eq!(get(lb.addr, "/docs/").text(), "web GET /docs/index.html\n");
    let r = Client::connect(lb.addr)
        .request("GET /x/headers?a=1&a=2 HTTP/1.1\r\nHost: t\r\nCookie: theme=dark; id=7\r\n\r\n");
    let head = r.text().to_ascii_lowercase();
    assert!(
        head.starts_with("get /x/headers?a=1&a=2 http/1.1\r\n"),
        "{head}"
    );
    assert!(head.contains("x-theme: dark\r\n"), "{head}");
    // Cookies and query parameters come back in the order the function left them.
    assert!(head.contains("cookie: theme=dark; id=7\r\n"), "{head}");
    let r = get(lb.addr, "/x?deny=1");
    assert_eq!(r.status, 403);
    assert_eq!(r.header("x-why"), Some("denied by 127.0.0.1"));
    assert_eq!(r.header("x-origin"), None);
}

/// A DistributionConfig's function associations run the files `--function ARN=FILE`
/// maps them to; an ARN without a mapping is a warning, not a failure.
#[test]
fn a_cloudfront_distributions_function_associations_run_mapped_files() {
    let Some(function) = seed_001_function() else {
        eprintln!("SKIPPED: ../shared/seeds not present");
        return;
    };
    let origin = Origin::start("web", "127.0.0.1:0".parse().unwrap()).unwrap();
    let dir = TestDir::new();
    let file = dir.write("errors-to-200.js", &function);
    let dist = format!(
        r#"{{
  "Origins": {{"Quantity": 1, "Items": [{{"Id": "web", "DomainName": "127.0.0.1",
     "CustomOriginConfig": {{"HTTPPort": {}, "HTTPSPort": 443, "OriginProtocolPolicy": "http-only"}}}}]}},
  "DefaultCacheBehavior": {{
    "TargetOriginId": "web",
    "ViewerProtocolPolicy": "allow-all",
    "MinTTL": 0, "DefaultTTL": 0, "MaxTTL": 0,
    "ForwardedValues": {{"QueryString": true, "Cookies": {{"Forward": "none"}}}},
    "LambdaFunctionAssociations": {{"Quantity": 2, "Items": [
      {{"LambdaFunctionARN": "arn:aws:lambda:us-east-1:123456789012:function:errors-to-200:7",
        "EventType": "origin-response", "IncludeBody": false}},
      {{"LambdaFunctionARN": "arn:aws:lambda:us-east-1:123456789012:function:unmapped:1",
        "EventType": "viewer-request"}}
    ]}}
  }}
}}"#,
        origin.addr().port()
    );
    let mapping = format!(
        "arn:aws:lambda:us-east-1:123456789012:function:errors-to-200={}",
        file.display()
    );
    let listen = lb_tests::free_port().to_string();
    let lb = LbServer::start_in(
        dir,
        "dist.json",
        &dist,
        &["--listen", &listen, "--function", &mapping],
        "info",
    );
    let r = get(lb.addr, "/x?status=503");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "Body generation example")
    );
    let log = lb.stderr();
    assert!(
        log.contains(
            "no --function mapping for arn:aws:lambda:us-east-1:123456789012:function:unmapped:1"
        ),
        "{log}"
    );
}

/// viewer-response runs on what the client gets, from the origin and from the cache
/// (the stored copy stays the origin's), for both interfaces.
#[test]
fn viewer_response_functions_change_every_answer_the_client_gets() {
    let origin = Origin::start("web", "127.0.0.1:0".parse().unwrap()).unwrap();
    let dir = TestDir::new();
    dir.write(
        "vr.js",
        "exports.handler = async (event) => {\n\
           const response = event.Records[0].cf.response;\n\
           response.headers['x-vr'] = [{ key: 'X-VR', value: 'saw ' + response.status }];\n\
           delete response.headers['x-served'];\n\
           return response;\n\
         };\n",
    );
    dir.write(
        "cf.js",
        "function handler(event) {\n\
           var response = event.response;\n\
           response.headers['x-cf'] = { value: 'yes' };\n\
           response.cookies['seen'] = { value: '1', attributes: 'Path=/' };\n\
           return response;\n\
         }\n",
    );
    let toml = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n[kernel]\nenabled = false\n\
         [[origins]]\nid = \"web\"\naddress = \"{}\"\n\
         [[behaviors]]\npath_pattern = \"/cf/*\"\ntarget = \"web\"\n\
         functions = [{{ trigger = \"viewer-response\", file = \"cf.js\", kind = \"cloudfront-function\" }}]\n\
         [default_behavior]\ntarget = \"web\"\n\
         functions = [{{ trigger = \"viewer-response\", file = \"vr.js\" }}]\n\
         [default_behavior.cache]\nquery = \"all\"\n",
        origin.addr()
    );
    let lb = LbServer::start_in(dir, "lb.toml", &toml, &[], "info");
    let first = get(lb.addr, "/page?cc=max-age=60");
    assert_eq!(first.header("x-vr"), Some("saw 200"));
    assert_eq!(first.header("x-served"), None);
    assert_eq!(
        first.header("cache-status"),
        Some("lb; fwd=uri-miss; stored")
    );
    let hit = get(lb.addr, "/page?cc=max-age=60");
    assert!(
        hit.header("cache-status")
            .unwrap_or("")
            .starts_with("lb; hit"),
        "{:?}",
        hit.headers
    );
    assert_eq!(hit.header("x-vr"), Some("saw 200"));
    assert_eq!(hit.header("x-served"), None);
    assert_eq!(hit.text(), first.text());
    let cf = get(lb.addr, "/cf/x");
    assert_eq!(cf.header("x-cf"), Some("yes"));
    assert_eq!(cf.header("set-cookie"), Some("seen=1; Path=/"));
    assert_eq!(cf.text(), "web GET /cf/x\n");
}
