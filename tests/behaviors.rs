//! Path-pattern behaviors (CloudFront cache behaviors): matched in order with `*` and `?`,
//! the default behavior otherwise, and each behavior's allowed methods.

use lb_origin::Origin;
use lb_tests::{
    http::{Client, get},
    process::LbServer,
};

#[test]
fn path_patterns_route_in_order_with_cloudfront_wildcards() {
    let web = Origin::start("web", "127.0.0.1:0".parse().unwrap()).unwrap();
    let api = Origin::start("api", "127.0.0.1:0".parse().unwrap()).unwrap();
    let img = Origin::start("img", "127.0.0.1:0".parse().unwrap()).unwrap();
    let v = Origin::start("v", "127.0.0.1:0".parse().unwrap()).unwrap();
    let toml = format!(
        r#"
[listener]
address = "127.0.0.1:0"
workers = 1

[[origins]]
id = "web"
address = "{}"
[[origins]]
id = "api"
address = "{}"
[[origins]]
id = "img"
address = "{}"
[[origins]]
id = "v"
address = "{}"

# First match wins: /api/v?/* is listed before /api/*.
[[behaviors]]
path_pattern = "/api/v?/*"
target = "v"
[[behaviors]]
path_pattern = "/api/*"
target = "api"
allowed_methods = ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"]
[[behaviors]]
path_pattern = "images/*.jpg"
target = "img"
allowed_methods = ["GET", "HEAD"]

[default_behavior]
target = "web"

[kernel]
enabled = false
"#,
        web.addr(),
        api.addr(),
        img.addr(),
        v.addr()
    );
    let lb = LbServer::start_file("lb.toml", &toml, &[], "info");
    let cases = [
        ("/api/users", "api"),
        ("/api/", "api"),
        ("/api", "web"),
        ("/api/v2/users", "v"),
        ("/api/v10/users", "api"),
        ("/images/a/b.jpg", "img"),
        ("/images/a.png", "web"),
        ("/images/x.jpg?size=2", "img"),
        ("/", "web"),
        ("/API/users", "web"),
    ];
    for (path, want) in cases {
        let r = get(lb.addr, path);
        assert_eq!(r.header("x-origin"), Some(want), "{path}");
    }
    // Allowed methods: the image behavior is read-only; the API takes writes.
    let mut c = Client::connect(lb.addr);
    let r = c.request("POST /images/x.jpg HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx");
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), "lb: method not allowed for this path\n");
    let mut c = Client::connect(lb.addr);
    let r = c.request("POST /api/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert_eq!(
        img.requests(),
        2,
        "the refused POST never reached the image origin"
    );
}
