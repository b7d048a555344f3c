//! Findings of an independent conformance corpus (RFC 9112 request handling), each
//! checked through the real lb against an origin that records what it received.

use lb_tests::{
    http::Client,
    process::LbServer,
    raw_origin::{RawOrigin, ok},
};

fn start(origin: &RawOrigin, http: &str) -> LbServer {
    let toml = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n\n[http]\n{http}\n\n\
         [[origins]]\nid = \"o\"\naddress = \"{}\"\n\n[default_behavior]\ntarget = \"o\"\n\n\
         [kernel]\nenabled = false\n",
        origin.addr()
    );
    LbServer::start_file("lb.toml", &toml, &[], "info")
}

fn last_head(origin: &RawOrigin) -> String {
    origin
        .requests()
        .last()
        .expect("a request reached the origin")
        .head
        .clone()
}

#[test]
fn a_minor_version_above_one_is_http_1_1() {
    let origin = RawOrigin::start(|_| vec![ok("fine")]);
    let lb = start(&origin, "");
    let mut c = Client::connect(lb.addr);
    let r = c.request("GET /v HTTP/1.2\r\nHost: h\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "fine"));
    assert!(last_head(&origin).starts_with("GET /v HTTP/1.1\r\n"));
    // Still one connection: handled as HTTP/1.1 (persistent).
    let r = c.request("GET /w HTTP/1.9\r\nHost: h\r\n\r\n");
    assert_eq!(r.status, 200);
    // A major version other than 1 is not HTTP/1.x.
    let r = Client::connect(lb.addr).request("GET /v HTTP/2.0\r\nHost: h\r\n\r\n");
    assert_eq!(r.status, 505);
}

#[test]
fn empty_lines_before_the_request_line_are_ignored() {
    let origin = RawOrigin::start(|_| vec![ok("fine")]);
    let lb = start(&origin, "");
    let mut c = Client::connect(lb.addr);
    let r = c.request("\r\n\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.status, 200);
    // Also between requests, and with bare LF.
    let r = c.request("\r\n\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.status, 200);
    let paths: Vec<String> = origin
        .requests()
        .iter()
        .map(|r| r.head.lines().next().unwrap().to_owned())
        .collect();
    assert_eq!(paths, ["GET /a HTTP/1.1", "GET /b HTTP/1.1"]);
}

#[test]
fn options_in_absolute_form_without_a_path_is_asterisk_form() {
    let origin = RawOrigin::start(|_| vec![ok("options")]);
    let lb = start(&origin, "");
    let r = Client::connect(lb.addr)
        .request("OPTIONS http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "options"));
    let head = last_head(&origin);
    assert!(head.starts_with("OPTIONS * HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("host: example.com\r\n"), "{head}");
    // Other methods get "/".
    let r = Client::connect(lb.addr)
        .request("GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(last_head(&origin).starts_with("GET / HTTP/1.1\r\n"));
}

const UNDERSCORES: &str = "POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\
    Transfer_Encoding: chunked\r\nContent_Length: 99\r\nX_Custom: 1\r\nX-Fine: 2\r\n\r\nhello";

#[test]
fn header_names_with_underscores_are_dropped_by_default() {
    let origin = RawOrigin::start(|_| vec![ok("fine")]);
    let lb = start(&origin, "");
    let r = Client::connect(lb.addr).request(UNDERSCORES);
    assert_eq!(r.status, 200);
    let head = last_head(&origin).to_ascii_lowercase();
    assert!(!head.contains('_'), "no underscore field forwarded: {head}");
    assert!(head.contains("x-fine: 2"), "{head}");
    assert!(head.contains("content-length: 5"), "{head}");
}

#[test]
fn header_names_with_underscores_can_be_rejected_or_forwarded() {
    let origin = RawOrigin::start(|_| vec![ok("fine")]);
    let lb = start(&origin, "underscore_headers = \"reject\"");
    let r = Client::connect(lb.addr).request(UNDERSCORES);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("underscores"), "{}", r.text());
    assert!(origin.requests().is_empty(), "never forwarded");
    let lb = start(&origin, "underscore_headers = \"forward\"");
    let r = Client::connect(lb.addr).request(UNDERSCORES);
    assert_eq!(r.status, 200);
    assert!(last_head(&origin).contains("X_Custom: 1"));
}

#[test]
fn paths_are_normalised_for_behavior_matching_only() {
    let api = RawOrigin::start(|_| vec![ok("api")]);
    let site = RawOrigin::start(|_| vec![ok("site")]);
    let toml = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n\n\
         [[origins]]\nid = \"api\"\naddress = \"{}\"\n\n[[origins]]\nid = \"site\"\naddress = \"{}\"\n\n\
         [[behaviors]]\npath_pattern = \"/api/*\"\ntarget = \"api\"\n\n\
         [default_behavior]\ntarget = \"site\"\n\n[kernel]\nenabled = false\n",
        api.addr(),
        site.addr()
    );
    let lb = LbServer::start_file("lb.toml", &toml, &[], "info");
    for path in ["/%61pi/x", "/x/../api/x", "/./api/x?q=1", "/%2e%2e/api/x"] {
        let r =
            Client::connect(lb.addr).request(&format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n"));
        assert_eq!(r.text(), "api", "{path} matches /api/*");
        let head = last_head(&api);
        assert!(
            head.starts_with(&format!("GET {path} HTTP/1.1\r\n")),
            "the origin gets the path as sent: {head}"
        );
    }
    let r = Client::connect(lb.addr).request("GET /apix/../x HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.text(), "site");
}
