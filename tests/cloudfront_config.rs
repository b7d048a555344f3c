//! Seed 002's DistributionConfig JSON, with its DomainNames replaced by loopback and its
//! HTTPPorts by the test origins' ports, runs through `lb run --config` and fails over
//! exactly as its FailoverCriteria say; `lb import cloudfront` turns it into TOML that
//! `lb check` accepts and that behaves the same.

use lb_origin::Origin;
use lb_tests::{
    http::get,
    process::{LbServer, TestDir, lb},
};

const SEED_002: &str = include_str!("fixtures/seed-002-distribution.json");

/// The seed's JSON with only DomainName and HTTPPort changed.
fn seed_json(primary: u16, secondary: u16) -> String {
    let text = SEED_002
        .replace("primary-alb-123.us-east-1.elb.amazonaws.com", "127.0.0.1")
        .replace("secondary-alb-456.eu-west-1.elb.amazonaws.com", "127.0.0.1");
    let mut n = 0;
    text.split("\"HTTPPort\": 80")
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part.to_owned()
            } else {
                n += 1;
                format!(
                    "\"HTTPPort\": {}{part}",
                    if n == 1 { primary } else { secondary }
                )
            }
        })
        .collect()
}

fn check_failover_semantics(lb: &LbServer, primary: &Origin, secondary: &Origin) {
    assert_eq!(get(lb.addr, "/").header("x-origin"), Some("primary"));
    for code in [500, 502, 503, 504] {
        primary.set_forced_status(Some(code));
        let r = get(lb.addr, &format!("/c{code}"));
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
        assert_eq!(get(lb.addr, "/n").status, code, "{code} does not fail over");
    }
    primary.set_forced_status(None);
    secondary.set_forced_status(None);
}

#[test]
fn seed_002_json_runs_and_fails_over_on_its_status_codes() {
    let p = Origin::start("primary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let s = Origin::start("secondary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let json = seed_json(p.addr().port(), s.addr().port());
    for (name, contents) in [
        ("dist.json", json.clone()),
        (
            "get-distribution-config.json",
            format!("{{\"ETag\": \"E2QWRUHAPOMQZL\", \"DistributionConfig\": {json}}}"),
        ),
    ] {
        let lb = LbServer::start_file(name, &contents, &["--listen", "127.0.0.1:0"], "info");
        check_failover_semantics(&lb, &p, &s);
        let log = lb.stderr();
        let unimplemented: Vec<_> = log
            .lines()
            .filter(|l| l.contains("not implemented by lb"))
            .collect();
        assert_eq!(
            unimplemented.len(),
            1,
            "one warning lists the unimplemented fields:\n{log}"
        );
        for field in ["ForwardedValues", "MinTTL", "DefaultTTL", "MaxTTL"] {
            assert!(
                unimplemented[0].contains(field),
                "{field} missing from: {}",
                unimplemented[0]
            );
        }
        assert!(
            log.contains("protocol https-only needs TLS to origins"),
            "{log}"
        );
    }
}

#[test]
fn import_round_trips_to_toml_that_checks_and_behaves_the_same() {
    let p = Origin::start("primary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let s = Origin::start("secondary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let dir = TestDir::new();
    let json = dir.write("dist.json", &seed_json(p.addr().port(), s.addr().port()));
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
    let lb = LbServer::start_file("imported.toml", &toml, &["--listen", "127.0.0.1:0"], "info");
    check_failover_semantics(&lb, &p, &s);
}
