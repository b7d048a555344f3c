//! Seed 002's DistributionConfig JSON, with its DomainNames replaced by loopback and its
//! HTTPPorts by the test origins' ports, runs through `lb run --config` and fails over
//! exactly as its FailoverCriteria say; `lb import cloudfront` turns it into TOML that
//! `lb check` accepts and that behaves the same.

use lb_origin::Origin;
use lb_tests::{
    http::{Client, Response, get},
    process::{LbServer, TestDir, lb},
    tls::{TestCa, Validity},
};

const SEED_002: &str = include_str!("fixtures/seed-002-distribution.json");

/// The seed's JSON with only DomainName and HTTPSPort changed (its origins are
/// https-only: HTTPPort is never used).
fn seed_json(primary: u16, secondary: u16) -> String {
    let text = SEED_002
        .replace("primary-alb-123.us-east-1.elb.amazonaws.com", "127.0.0.1")
        .replace("secondary-alb-456.eu-west-1.elb.amazonaws.com", "127.0.0.1");
    let mut n = 0;
    text.split("\"HTTPSPort\": 443")
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part.to_owned()
            } else {
                n += 1;
                format!(
                    "\"HTTPSPort\": {}{part}",
                    if n == 1 { primary } else { secondary }
                )
            }
        })
        .collect()
}

/// Two HTTPS origins with certificates for 127.0.0.1 from a private CA, and a directory
/// holding that CA (for `--origin-ca`) and lb's own certificate (for `--cert/--key`).
struct Setup {
    ca: TestCa,
    primary: Origin,
    secondary: Origin,
    dir: TestDir,
}

impl Setup {
    fn new() -> Self {
        let ca = TestCa::new("seed-002 test CA");
        let origin_cert = ca.issue(&["127.0.0.1"], Validity::Current);
        let loopback = "127.0.0.1:0".parse().unwrap();
        let primary = Origin::start_tls("primary", loopback, origin_cert.origin_config()).unwrap();
        let secondary =
            Origin::start_tls("secondary", loopback, origin_cert.origin_config()).unwrap();
        let dir = TestDir::new();
        dir.write("origin-ca.pem", &ca.pem());
        ca.issue(&["d111111abcdef8.cloudfront.test"], Validity::Current)
            .write(&dir, "viewer");
        Self {
            ca,
            primary,
            secondary,
            dir,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path.join(name).to_str().unwrap().to_owned()
    }

    /// lb on `name` (JSON or TOML) with the HTTPS listener and origin CA from flags.
    fn start_lb(&self, name: &str, contents: &str) -> LbServer {
        self.start_lb_with(name, contents, true)
    }

    /// Like `start_lb`; `origin_ca: false` leaves out `--origin-ca`.
    fn start_lb_with(&self, name: &str, contents: &str, origin_ca: bool) -> LbServer {
        let (ca, cert, key) = (
            self.path("origin-ca.pem"),
            self.path("viewer.pem"),
            self.path("viewer.key"),
        );
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--tls-listen",
            "127.0.0.1:0",
            "--cert",
            &cert,
            "--key",
            &key,
        ];
        if origin_ca {
            args.extend(["--origin-ca", &ca]);
        }
        LbServer::start_file(name, contents, &args, "info")
    }

    /// GET over HTTPS, as the seed's redirect-to-https viewers end up doing.
    fn get(&self, lb: &LbServer, path: &str) -> Response {
        let mut c = Client::connect_tls(
            lb.tls_addr.unwrap(),
            "d111111abcdef8.cloudfront.test",
            self.ca.client_config(),
        )
        .unwrap();
        c.request(&format!(
            "GET {path} HTTP/1.1\r\nHost: d111111abcdef8.cloudfront.test\r\n\r\n"
        ))
    }

    fn check_failover_semantics(&self, lb: &LbServer) {
        let (primary, secondary) = (&self.primary, &self.secondary);
        assert_eq!(self.get(lb, "/").header("x-origin"), Some("primary"));
        // Plain HTTP is redirected (ViewerProtocolPolicy redirect-to-https).
        let r = get(lb.addr, "/x?y=1");
        assert_eq!(r.status, 301);
        let location = r.header("location").unwrap();
        assert!(
            location.starts_with("https://test:") && location.ends_with("/x?y=1"),
            "{location}"
        );
        for code in [500, 502, 503, 504] {
            primary.set_forced_status(Some(code));
            let r = self.get(lb, &format!("/c{code}"));
            assert_eq!(
                (r.status, r.header("x-origin")),
                (200, Some("secondary")),
                "{code} fails over"
            );
        }
        // Not in FailoverCriteria: returned as is (a fresh lb would not have ejected the
        // primary; with always-on health the ejection may skip it, so check the status only).
        for code in [404, 403, 401] {
            primary.set_forced_status(Some(code));
            secondary.set_forced_status(Some(code));
            assert_eq!(self.get(lb, "/n").status, code, "{code} does not fail over");
        }
        primary.set_forced_status(None);
        secondary.set_forced_status(None);
    }
}

#[test]
fn seed_002_json_runs_with_https_origins_and_fails_over_on_its_status_codes() {
    let setup = Setup::new();
    let json = seed_json(setup.primary.addr().port(), setup.secondary.addr().port());
    for (name, contents) in [
        ("dist.json", json.clone()),
        (
            "get-distribution-config.json",
            format!("{{\"ETag\": \"E2QWRUHAPOMQZL\", \"DistributionConfig\": {json}}}"),
        ),
    ] {
        let lb = setup.start_lb(name, &contents);
        setup.check_failover_semantics(&lb);
        let log = lb.stderr();
        // Every field of the seed's JSON is now implemented: ForwardedValues and the
        // TTLs configure the cache (MaxTTL 0: CloudFront caches nothing, nor does lb).
        assert!(
            !log.contains("not implemented by lb"),
            "no field is ignored:\n{log}"
        );
        let r = setup.get(&lb, "/");
        assert_eq!(
            r.header("cache-status"),
            None,
            "MaxTTL 0: not a cached behavior"
        );
        assert!(!log.contains("HTTPS listener"), "no TLS warnings:\n{log}");
    }
    // Every request reached the origins over TLS: the plain-HTTP port is never used.
    assert!(setup.primary.requests() > 0 && setup.secondary.requests() > 0);
}

#[test]
fn seed_002_without_the_origin_ca_fails_verification_with_a_502() {
    let setup = Setup::new();
    let json = seed_json(setup.primary.addr().port(), setup.secondary.addr().port());
    let lb = setup.start_lb_with("dist.json", &json, false);
    let r = setup.get(&lb, "/");
    assert_eq!(r.status, 502);
    assert!(r.text().contains("trusted CA"), "{}", r.text());
    assert_eq!(setup.primary.requests() + setup.secondary.requests(), 0);
}

#[test]
fn import_round_trips_to_toml_that_checks_and_behaves_the_same() {
    let setup = Setup::new();
    let dir = TestDir::new();
    let json = dir.write(
        "dist.json",
        &seed_json(setup.primary.addr().port(), setup.secondary.addr().port()),
    );
    let out = lb(&["import", "cloudfront", json.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml = String::from_utf8(out.stdout).unwrap();
    assert!(
        toml.contains("failover_status_codes = [\n    500,\n    502,\n    503,\n    504,\n]"),
        "{toml}"
    );
    let path = dir.write("imported.toml", &toml);
    let check = lb(&["check", "--config", path.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("ok (2 origins, 1 groups, 0 behaviors)")
    );
    assert!(toml.contains("protocol = \"https-only\""), "{toml}");
    // The same flags give the imported TOML its HTTPS listener and origin CA.
    let lb = setup.start_lb("imported.toml", &toml);
    setup.check_failover_semantics(&lb);
}

/// Every DistributionConfig of the shared corpus (written by other people), with its
/// DomainNames pointed at loopback since they do not resolve here: `lb import
/// cloudfront` maps its cache settings (TTLs, ForwardedValues, CachedMethods, the
/// managed cache policies) instead of listing them as not implemented, and the TOML it
/// writes passes `lb check`.
#[test]
fn the_corpus_imports_with_its_cache_settings() {
    let Some(files) = lb_tests::cloudfront_corpus() else {
        eprintln!("skipped: no corpus");
        return;
    };
    let dir = TestDir::new();
    let (mut imported, mut cached) = (0, 0);
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap();
        let text = std::fs::read_to_string(file).unwrap();
        let mut out = String::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("\"DomainName\"") {
            out.push_str(&rest[..at]);
            let after = &rest[at..];
            let open = after.find(':').unwrap() + 1;
            let value_start = open + after[open..].find('"').unwrap() + 1;
            let value_end = value_start + after[value_start..].find('"').unwrap();
            out.push_str("\"DomainName\": \"127.0.0.1\"");
            rest = &after[value_end + 1..];
        }
        out.push_str(rest);
        let path = dir.write(name, &out);
        let import = lb(&["import", "cloudfront", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&import.stderr);
        if name.contains("cloudformation-shaped") {
            // A CloudFormation template, not a DistributionConfig: refused with the place.
            assert!(!import.status.success(), "{name}");
            assert!(stderr.contains(":3:3: Origins"), "{name}: {stderr}");
            continue;
        }
        if name.starts_with("04-") || name.starts_with("06-") {
            // A multi-tenant OriginPath template and a Lambda ARN placeholder: refused.
            assert!(!import.status.success(), "{name}");
            assert!(
                stderr.contains("unexpanded template placeholder"),
                "{name}: {stderr}"
            );
            continue;
        }
        assert!(import.status.success(), "{name}: {stderr}");
        for field in [
            "ForwardedValues",
            "MinTTL",
            "DefaultTTL",
            "MaxTTL",
            "CachePolicyId",
            "CachedMethods",
        ] {
            assert!(
                !stderr
                    .lines()
                    .filter(|l| l.contains("not implemented by lb"))
                    .any(|l| l.contains(&format!(".{field}")) || l.contains(&format!(" {field}"))),
                "{name}: {field} listed as not implemented: {stderr}"
            );
        }
        let toml = String::from_utf8(import.stdout).unwrap();
        let toml_path = dir.write(&format!("{name}.toml"), &toml);
        let check = lb(&["check", "--config", toml_path.to_str().unwrap()]);
        assert!(
            check.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        imported += 1;
        if toml.contains("behavior.cache]") || toml.contains("behaviors.cache]") {
            cached += 1;
        }
    }
    assert_eq!(imported, files.len() - 3);
    // Five do not cache at all, as CloudFront would not: every header forwarded (03),
    // custom cache policies defined elsewhere (15), CachingDisabled (09), MaxTTL 0
    // (07, 19).
    assert_eq!(cached, 12, "{cached} of {imported} distributions cache");
}
