use std::{path::Path, time::Duration};

use super::*;

const FULL: &str = r#"
[listener]
address = "127.0.0.1:9000"
workers = 2
io_driver = "epoll"

[admin]
address = "127.0.0.1:9901"

[limits]
max_request_body = 1024
header_timeout = "500ms"

[failover]
replay_body_limit = 4096

[observability]
attempts_header = true

[[origins]]
id = "primary"
address = "127.0.0.1:8081"
origin_path = "/v1"
connect_timeout = "2s"
connection_attempts = 2
[origins.custom_headers]
X-Key = "p"

[[origins]]
id = "secondary"
address = "localhost:8082"

[[origins]]
id = "api"
address = "[::1]:8083"

[[origin_groups]]
id = "site"
members = ["primary", "secondary"]
failover_status_codes = [500, 503]
always_try_primary = true

[[behaviors]]
path_pattern = "/api/*"
target = "api"
allowed_methods = ["GET", "HEAD"]

[default_behavior]
target = "site"

[[custom_error_responses]]
error_code = 503
response_code = 200
response_page_path = "/errors/503.html"

[kernel]
enabled = false
"#;

fn parse(text: &str) -> Config {
    Config::parse(text, Path::new("lb.toml")).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_full_file_builds_the_model() {
    let c = parse(FULL);
    assert_eq!(c.listener.address, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(c.listener.io_driver, IoDriver::Epoll);
    assert_eq!(c.worker_count(), 2);
    assert_eq!(c.admin.address, Some("127.0.0.1:9901".parse().unwrap()));
    assert_eq!(c.limits.header_timeout, Duration::from_millis(500));
    assert_eq!(c.failover.replay_body_limit, 4096);
    assert!(c.observability.attempts_header && c.observability.access_log);
    let p = &c.origins[0];
    assert_eq!((p.origin_path.as_str(), p.connection_attempts), ("/v1", 2));
    assert_eq!(p.custom_headers, [("X-Key".to_owned(), "p".to_owned())]);
    assert_eq!(
        c.origins[1].host.as_deref(),
        Some("localhost"),
        "names are kept for re-resolution"
    );
    assert_eq!(
        c.origins[1].response_timeout,
        Duration::from_secs(30),
        "CloudFront default"
    );
    let g = &c.groups[0];
    assert_eq!(g.members, [0, 1]);
    assert!(g.always_try_primary);
    assert!(g.failover_statuses.contains(503) && !g.failover_statuses.contains(502));
    assert_eq!(
        c.custom_errors[0].page,
        ErrorPage::Path("/errors/503.html".into())
    );
}

#[test]
fn behaviors_and_targets_resolve() {
    let c = parse(FULL);
    let api = c.behavior_for("/api/users?x=1");
    assert_eq!(api.target, Target::Origin(2));
    assert!(api.allowed_methods.allows("GET") && !api.allowed_methods.allows("POST"));
    let default = c.behavior_for("/index.html");
    assert_eq!(default.target, Target::Group(0));
    assert!(default.allowed_methods.allows("DELETE"));
    let (members, group) = c.members(default.target);
    assert_eq!(
        (members, group.map(|g| g.id.as_str())),
        (&[0usize, 1][..], Some("site"))
    );
    let (members, group) = c.members(api.target);
    assert_eq!((members, group.is_none()), (&[2usize][..], true));
}

#[test]
fn exported_toml_parses_back_to_the_same_config() {
    let c = parse(FULL);
    let again = parse(&c.to_toml());
    assert_eq!(again, c);
}

#[test]
fn status_and_method_sets() {
    let s = StatusSet::from_codes([404, 500, 599]);
    assert_eq!(s.codes(), [404, 500, 599]);
    assert!(!s.contains(200) && !s.contains(700));
    let m = MethodSet::from_names(["GET", "POST"]).unwrap();
    assert_eq!(m.names(), ["GET", "POST"]);
    assert!(MethodSet::from_names(["BREW"]).is_err());
}

/// FULL with an HTTPS listener, an origin CA and TLS origins of each kind.
fn with_tls(extra_origin_lines: &str) -> String {
    FULL.replace(
        "origin_path = \"/v1\"",
        &format!("origin_path = \"/v1\"\n{extra_origin_lines}"),
    )
    .replace(
        "[admin]",
        "[tls]\naddress = \"127.0.0.1:9443\"\n[[tls.certificates]]\ncert = \"certs/a.pem\"\nkey = \"certs/a.key\"\n\n[origin_tls]\nca_files = [\"ca.pem\"]\nsystem_roots = false\n\n[admin]",
    )
}

#[test]
fn tls_listener_and_origin_protocols_build_the_model() {
    let c = Config::parse(
        &with_tls("protocol = \"https-only\""),
        Path::new("/etc/lb/lb.toml"),
    )
    .unwrap();
    let tls = c.tls.as_ref().unwrap();
    assert_eq!(tls.address, "127.0.0.1:9443".parse().unwrap());
    // Paths are relative to the config file's directory.
    assert_eq!(tls.certificates[0].cert, Path::new("/etc/lb/certs/a.pem"));
    assert_eq!(c.origin_tls.ca_files, [Path::new("/etc/lb/ca.pem")]);
    assert!(!c.origin_tls.system_roots);
    let primary = &c.origins[0];
    // https-only uses the address's port; the SNI name defaults to the IP.
    assert_eq!(primary.https_port, 8081);
    assert_eq!(primary.tls_server_name, "127.0.0.1");
    assert!(primary.uses_tls(false) && primary.uses_tls(true));
    assert_eq!(
        primary.endpoints_at(primary.address.ip()),
        ["127.0.0.1:8081".parse().unwrap()]
    );
    assert!(c.tls_notes().is_empty());

    let c = parse(&with_tls(
        "protocol = \"match-viewer\"\nhttps_port = 8443\ntls_server_name = \"origin.example\"",
    ));
    let primary = &c.origins[0];
    assert!(!primary.uses_tls(false) && primary.uses_tls(true));
    assert_eq!((primary.port(false), primary.port(true)), (8081, 8443));
    assert_eq!(primary.tls_server_name, "origin.example");
    // Both ports go into the kernel index under the origin's one slot.
    let slots: Vec<_> = c
        .kernel_registrations()
        .into_iter()
        .filter(|r| r.slot == 0)
        .map(|r| r.address.port())
        .collect();
    assert_eq!(slots, [8081, 8443]);
}

#[test]
fn tls_config_round_trips_through_export() {
    let c = parse(&with_tls(
        "protocol = \"match-viewer\"\nhttps_port = 8443\ntls_server_name = \"origin.example\"",
    ));
    assert_eq!(parse(&c.to_toml()), c);
}

#[test]
fn bad_tls_settings_name_their_field() {
    let err = Config::parse(
        &with_tls("tls_server_name = \"not a name!\""),
        Path::new("lb.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("origins[0].tls_server_name"), "{err}");
    let err = Config::parse(
        &with_tls("").replace(
            "[[tls.certificates]]\ncert = \"certs/a.pem\"\nkey = \"certs/a.key\"\n",
            "certificates = []\n",
        ),
        Path::new("lb.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("tls.certificates: needs at least one"),
        "{err}"
    );
}

#[test]
fn viewer_policies_without_an_https_listener_are_reported() {
    let text = FULL.replace(
        "[default_behavior]",
        "[default_behavior]\nviewer_protocol_policy = \"https-only\"",
    );
    let notes = parse(&text).tls_notes();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with("default behavior: https-only, but lb has no HTTPS listener"),
        "{notes:?}"
    );
}

#[test]
fn https_listener_must_not_share_the_plain_port() {
    // 0.0.0.0:9000 and 127.0.0.1:9000 would both bind with SO_REUSEPORT and split traffic.
    let text = with_tls("").replace("127.0.0.1:9443", "0.0.0.0:9000");
    let err = Config::parse(&text, Path::new("lb.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("tls.address: must differ"), "{err}");
    // Port 0 on both is fine: each gets its own port.
    assert!(!super::listeners_collide(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap()
    ));
    let err = Config::parse(
        &with_tls("protocol = \"match-viewer\"\nhttps_port = 0"),
        Path::new("lb.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("origins[0].https_port: must not be 0"),
        "{err}"
    );
    // The error points at the https_port line itself.
    let line = with_tls("protocol = \"match-viewer\"\nhttps_port = 0")
        .lines()
        .position(|l| l.starts_with("https_port"))
        .unwrap()
        + 1;
    assert!(err.contains(&format!("lb.toml:{line}:")), "{err}");
}

#[test]
fn groups_larger_than_the_selection_arrays_are_refused() {
    let mut text = String::from("[listener]\naddress = \"127.0.0.1:8080\"\n\n");
    let ids: Vec<String> = (0..17).map(|i| format!("\"o{i}\"")).collect();
    for i in 0..17 {
        text.push_str(&format!(
            "[[origins]]\nid = \"o{i}\"\naddress = \"127.0.0.1:{}\"\n\n",
            9000 + i
        ));
    }
    text.push_str(&format!(
        "[[origin_groups]]\nid = \"big\"\nmembers = [{}]\nfailover_status_codes = [503]\n\n[default_behavior]\ntarget = \"big\"\n",
        ids.join(", ")
    ));
    let err = Config::parse(&text, Path::new("lb.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("origin_groups[0].members: a group has at most 16 members (17 given)"),
        "{err}"
    );
    // Sixteen is fine.
    let sixteen = text.replace(", \"o16\"]", "]");
    parse(&sixteen);
}

#[test]
fn http_settings_and_connection_limits_parse() {
    let c = parse(
        "[listener]\naddress = \"127.0.0.1:8080\"\nmax_connections = 1000\nworkers = 4\n\n\
         [limits]\ndrain_body_max = 1024\nlingering_timeout = \"500ms\"\n\n\
         [http]\nunderscore_headers = \"reject\"\nupgrade_protocols = [\"WebSocket\"]\n\n\
         [[origins]]\nid = \"o\"\naddress = \"127.0.0.1:9000\"\n\n[default_behavior]\ntarget = \"o\"\n",
    );
    assert_eq!(c.listener.max_connections, 1000);
    assert_eq!(c.listener.max_connections_per_worker(), 250);
    assert_eq!(c.limits.drain_body_max, 1024);
    assert_eq!(
        c.limits.lingering_timeout,
        std::time::Duration::from_millis(500)
    );
    assert_eq!(
        c.http.underscore_headers,
        crate::config::UnderscoreHeaders::Reject
    );
    assert_eq!(c.http.upgrade_protocols, ["websocket"]);
    let err = Config::parse(
        "[http]\nunderscore_headers = \"sometimes\"\n",
        Path::new("lb.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("lb.toml:2:"), "{err}");
    // The default cap follows the descriptor limit.
    assert_eq!(crate::config::Listener::default_max_connections(256), 96);
    assert_eq!(crate::config::Listener::default_max_connections(1024), 480);
}

const CACHED: &str = r#"
[cache]
memory_bytes = 1048576
max_object_bytes = 65536

[[origins]]
id = "o"
address = "127.0.0.1:8081"

[default_behavior]
target = "o"
[default_behavior.cache]
min_ttl = "1s"
default_ttl = "1m"
max_ttl = "1h"
query = { only = ["v"] }
headers = ["Accept-Language"]
cookies = "all"
methods = ["GET", "HEAD", "OPTIONS"]
stale_if_error = "10m"
"#;

#[test]
fn cache_settings_build_the_model_and_round_trip() {
    let c = parse(CACHED);
    assert_eq!(c.cache.memory_bytes, 1 << 20);
    let b = c.default_behavior.cache.as_ref().expect("cached");
    assert_eq!(b.ttls.min, Duration::from_secs(1));
    assert_eq!(b.ttls.default, Duration::from_secs(60));
    assert_eq!(b.key.headers, ["accept-language"]);
    assert_eq!(b.key.query, crate::cache::QueryKey::Only(vec!["v".into()]));
    assert_eq!(b.key.cookies, crate::cache::CookieKey::All);
    assert!(b.options);
    assert_eq!(b.stale_if_error, Duration::from_secs(600));
    assert_eq!(parse(&c.to_toml()), c);
    let off = CACHED.replace("min_ttl = \"1s\"", "enabled = false");
    assert!(parse(&off).default_behavior.cache.is_none());
}

#[test]
fn bad_cache_settings_name_their_field() {
    let err = |text: String| {
        Config::parse(&text, Path::new("lb.toml"))
            .unwrap_err()
            .to_string()
    };
    let e = err(CACHED.replace("default_ttl = \"1m\"", "default_ttl = \"2h\""));
    assert!(
        e.contains("default_behavior.cache.default_ttl: needs min_ttl <= default_ttl <= max_ttl"),
        "{e}"
    );
    let e = err(CACHED.replace("\"OPTIONS\"", "\"POST\""));
    assert!(
        e.contains("default_behavior.cache.methods") && e.contains("POST"),
        "{e}"
    );
    let e = err(CACHED.replace("[\"Accept-Language\"]", "[\"X-Forwarded-For\"]"));
    assert!(
        e.contains("default_behavior.cache.headers") && e.contains("lb writes it itself"),
        "{e}"
    );
    let e = err(CACHED.replace("cookies = \"all\"", "cookies = \"some\""));
    assert!(
        e.starts_with("lb.toml:18:") && e.contains("`some`"),
        "names the file and the cookies line: {e}"
    );
}

#[test]
fn request_rules_parse_and_round_trip_through_export() {
    let text = r#"
[listener]
address = "127.0.0.1:0"
[[origins]]
id = "web"
address = "127.0.0.1:8081"
[[origins]]
id = "canary"
address = "127.0.0.1:8082"
[default_behavior]
target = "web"

[[rules]]
name = "beta"
when = [
  { header = "X-Beta", equals = "1" },
  { cookie = "out", present = true, not = true },
  { query = "v", regex = "^2" },
  { client = ["10.0.0.0/8", "::1"] },
  { method = ["GET"] },
  { host = "Shop.Test" },
  { path = "/api/*" },
]
route = "canary"
rewrite_path = { regex = "^/api/(.*)$", to = "/v2/$1" }
set_host = "backend"
set_request_headers = { X-From = "lb" }
add_request_headers = { X-Trace = "beta" }
remove_request_headers = ["x-debug"]

[[rules]]
name = "gone"
when = [{ path_prefix = "/old/" }, { header = "referer", absent = true }]
redirect = { status = 308, location = "https://{host}{path}" }

[[rules]]
name = "teapot"
respond = { status = 418, body = "short and stout", headers = { Retry-After = "60" } }
"#;
    let c = parse(text);
    assert_eq!(c.rules.rules.len(), 3);
    let beta = &c.rules.rules[0];
    assert_eq!(beta.conditions.len(), 7);
    assert_eq!(
        beta.actions.route,
        Some((Target::Origin(1), "canary".into()))
    );
    assert_eq!(
        beta.actions.set_request_headers,
        [("x-from".to_owned(), "lb".to_owned())]
    );
    assert_eq!(
        beta.actions.add_request_headers,
        [("x-trace".to_owned(), "beta".to_owned())]
    );
    assert!(matches!(
        &c.rules.rules[2].actions.answer,
        Some(crate::rules::DirectAnswer::Respond { headers, .. }) if headers == &[("retry-after".to_owned(), "60".to_owned())]
    ));
    assert_eq!(parse(&c.to_toml()), c);
}

#[test]
fn bad_rules_are_refused_with_their_place() {
    let base = "[listener]\naddress = \"127.0.0.1:0\"\n[[origins]]\nid = \"web\"\naddress = \"127.0.0.1:8081\"\n\n[[rules]]\nname = \"r\"\n";
    let cases = [
        (
            "when = [{ host = \"a\", path = \"/b\" }]\nroute = \"web\"\n",
            "rules[0].when[0]: a condition tests exactly one of",
        ),
        (
            "when = [{ path_regex = \"(\" }]\nroute = \"web\"\n",
            "rules[0].when[0]: bad regex",
        ),
        (
            "when = [{ client = [\"10.0.0.0/40\"] }]\nroute = \"web\"\n",
            "`10.0.0.0/40` is not an address or a CIDR network",
        ),
        (
            "when = [{ host = \"a\", equals = \"b\" }]\nroute = \"web\"\n",
            "apply to header, cookie and query conditions only",
        ),
        (
            "redirect = { status = 200, location = \"/x\" }\n",
            "rules[0].redirect.status: 200 is not a redirect status",
        ),
        ("respond = { status = 204 }\n", "rules[0].respond.status"),
        (
            "respond = { status = 403 }\nroute = \"web\"\n",
            "cannot also route, rewrite or set headers",
        ),
        (
            "set_request_headers = { content-length = \"1\" }\n",
            "is written by lb itself",
        ),
        (
            "set_request_headers = { \"bad name\" = \"1\" }\n",
            "is not a valid header field",
        ),
        (
            "add_request_headers = { transfer-encoding = \"chunked\" }\n",
            "rules[0].add_request_headers: `transfer-encoding` is written by lb itself",
        ),
        (
            "respond = { status = 403, headers = { content-length = \"9\" } }\n",
            "rules[0].respond.headers: `content-length` is written by lb itself",
        ),
        (
            "respond = { status = 403, headers = { Content-Type = \"text/html\" } }\n",
            "give Content-Type as respond.content_type",
        ),
        (
            "when = [{ method = [\"get\"] }]\nroute = \"web\"\n",
            "upper-case methods",
        ),
        ("when = [{ path = \"/x\" }]\n", "the rule does nothing"),
        (
            "rewrite_path = { prefix = \"x\", to = \"/y\" }\n",
            "give exactly one of prefix (starting with /) and regex",
        ),
    ];
    for (rule, want) in cases {
        let text = format!("{base}{rule}");
        let err = Config::parse(&text, Path::new("lb.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{rule}: {err}");
        assert!(err.starts_with("lb.toml:"), "{err}");
    }
}

#[test]
fn response_rules_parse_round_trip_and_refuse_nonsense() {
    let base = "[listener]\naddress = \"127.0.0.1:0\"\n[[origins]]\nid = \"web\"\naddress = \"127.0.0.1:8081\"\n\n";
    let good = format!(
        "{base}[[response_rules]]\nname = \"r\"\nwhen = [{{ status_range = [500, 599] }}, {{ origin = [\"web\"] }}, \
         {{ header = \"server\", prefix = \"nginx\", not = true }}, {{ path = \"/a/*\" }}]\n\
         set_status = 200\nset_headers = {{ X-A = \"1\" }}\nremove_headers = [\"Server\"]\nbody = \"hi\"\ncontent_type = \"text/html\"\n"
    );
    let c = parse(&good);
    assert_eq!(c.response_rules.rules.len(), 1);
    assert_eq!(c.response_rules.rules[0].conditions.len(), 4);
    assert_eq!(parse(&c.to_toml()), c);
    let cases = [
        (
            "when = [{ status = [700] }]\nset_status = 200\n",
            "status: a list of status codes",
        ),
        (
            "when = [{ origin = [\"nope\"] }]\nset_status = 200\n",
            "no origin `nope`",
        ),
        (
            "when = [{ header = \"x\" }]\nset_status = 200\n",
            "a header condition needs exactly one of",
        ),
        (
            "when = [{ status = [500], equals = \"x\" }]\nset_status = 200\n",
            "a header condition needs",
        ),
        (
            "set_status = 200\nbody = \"a\"\nbody_file = \"b\"\n",
            "give body or body_file, not both",
        ),
        (
            "content_type = \"text/plain\"\nset_status = 200\n",
            "content_type goes with body",
        ),
        ("when = [{ status = [500] }]\n", "the rule does nothing"),
        (
            "set_headers = { transfer-encoding = \"x\" }\n",
            "is written by lb itself",
        ),
    ];
    for (rule, want) in cases {
        let text = format!("{base}[[response_rules]]\nname = \"r\"\n{rule}");
        let err = Config::parse(&text, Path::new("lb.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{rule}: {err}");
        assert!(err.contains("response_rules[0]"), "{err}");
    }
}
