//! The shared corpus of DistributionConfigs written by other people
//! (`../shared/corpus/cloudfront/`, read where it is): `lb check` accepts every valid one
//! offline, with one warning listing the fields lb does not implement, and refuses the
//! invalid ones (unexpanded template placeholders, a CloudFormation-shaped document)
//! naming the field, line and column; `lb run` serves each valid one, its origins' names
//! mapped to local test origins with `--resolve`, through its default behavior and every
//! path behavior.

use std::{collections::HashMap, net::SocketAddr, time::Instant};

use lb_origin::Origin;
use lb_tests::{
    free_port,
    http::Client,
    process::{LbServer, TestDir, lb},
    require_root,
    tls::{TestCa, Validity},
};
use lb_userspace::config::PathPattern;
use serde_json::Value;

fn name(file: &std::path::Path) -> &str {
    file.file_name().unwrap().to_str().unwrap()
}

/// The corpus files that are not valid DistributionConfigs, and the field each error
/// must name.
const INVALID: &[(&str, &str)] = &[
    ("04-", "Origins.Items[0].OriginPath"),
    ("05-", "Origins.Items[0].DomainName"),
    (
        "06-",
        "DefaultCacheBehavior.LambdaFunctionAssociations.Items[0].LambdaFunctionARN",
    ),
    ("07-", "Origins.Items[0].DomainName"),
    ("08-", "Origins.Items[0].DomainName"),
    ("20-", "Origins"),
];

#[test]
fn every_corpus_config_checks_offline() {
    let Some(files) = lb_tests::cloudfront_corpus() else {
        eprintln!("skipped: no corpus");
        return;
    };
    let mut accepted = 0;
    for file in &files {
        let name = name(file);
        let started = Instant::now();
        let out = lb(&["check", "--config", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // No name is looked up: a check takes no DNS round trip, let alone a timeout.
        assert!(
            started.elapsed().as_secs_f64() < 2.0,
            "{name}: {:?}",
            started.elapsed()
        );
        if let Some((_, field)) = INVALID.iter().find(|(prefix, _)| name.starts_with(prefix)) {
            assert!(!out.status.success(), "{name} was accepted: {stderr}");
            // `error: FILE:LINE:COLUMN: FIELD: why`, the place holding the field.
            let place = stderr
                .split_once(&format!("{name}:"))
                .map(|(_, rest)| rest)
                .unwrap_or_else(|| panic!("{name}: no file in {stderr}"));
            let mut parts = place.splitn(4, ':');
            let line: usize = parts.next().unwrap().parse().expect("a line number");
            let column: usize = parts.next().unwrap().parse().expect("a column number");
            let named = parts.next().unwrap().trim();
            assert_eq!(named, *field, "{name}: {stderr}");
            let text = std::fs::read_to_string(file).unwrap();
            let at_line = text.lines().nth(line - 1).unwrap();
            let key = field.rsplit('.').next().unwrap();
            let key = key.split('[').next().unwrap();
            assert!(
                at_line.contains(key),
                "{name}: line {line} is `{at_line}`, not {key}"
            );
            assert!(
                column >= 1 && column <= at_line.len() + 1,
                "{name}: column {column}"
            );
            continue;
        }
        assert!(out.status.success(), "{name}: {stderr}");
        let listing: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("not implemented by lb"))
            .collect();
        assert_eq!(listing.len(), 1, "{name}: {stderr}");
        accepted += 1;
    }
    assert_eq!(accepted, files.len() - INVALID.len());
}

/// A DistributionConfig's origins and behaviors, as the test needs them.
struct Distribution {
    /// Origin id → (domain, HTTP port, HTTPS port, S3 bucket).
    origins: HashMap<String, (String, u16, u16, bool)>,
    default_target: String,
    /// Path pattern → target, in order.
    behaviors: Vec<(String, String)>,
}

fn read_distribution(text: &str) -> Distribution {
    let doc: Value = serde_json::from_str(text).unwrap();
    let d = doc.get("DistributionConfig").unwrap_or(&doc);
    let items = |v: &Value| v["Items"].as_array().cloned().unwrap_or_default();
    let mut origins = HashMap::new();
    for o in items(&d["Origins"]) {
        let custom = &o["CustomOriginConfig"];
        let port = |key: &str, default: u64| custom[key].as_u64().unwrap_or(default) as u16;
        origins.insert(
            o["Id"].as_str().unwrap().to_owned(),
            (
                o["DomainName"].as_str().unwrap().to_owned(),
                port("HTTPPort", 80),
                port("HTTPSPort", 443),
                o.get("S3OriginConfig").is_some() && o.get("CustomOriginConfig").is_none(),
            ),
        );
    }
    let behaviors = items(&d["CacheBehaviors"])
        .iter()
        .map(|b| {
            (
                b["PathPattern"].as_str().unwrap().to_owned(),
                b["TargetOriginId"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    Distribution {
        origins,
        default_target: d["DefaultCacheBehavior"]["TargetOriginId"]
            .as_str()
            .unwrap()
            .to_owned(),
        behaviors,
    }
}

/// A concrete path a pattern matches, ending in `/headers` when the pattern allows it
/// (the test origin then answers with the request head it received).
fn path_for(pattern: &str) -> String {
    let path = if pattern.starts_with('/') {
        pattern.to_owned()
    } else {
        format!("/{pattern}")
    };
    let path = path.replacen('*', "x", path.matches('*').count().saturating_sub(1));
    let path = path.replace('?', "q");
    let with_head = path.replace('*', "x/headers");
    if PathPattern::new(pattern).matches(&with_head) {
        with_head
    } else {
        path.replace('*', "x")
    }
}

#[test]
fn every_valid_corpus_config_serves_through_each_behavior() {
    if !require_root("every_valid_corpus_config_serves_through_each_behavior") {
        return; // the origins listen on ports 80 and 443
    }
    let Some(files) = lb_tests::cloudfront_corpus() else {
        eprintln!("skipped: no corpus");
        return;
    };
    let ca = TestCa::new("corpus origins");
    let viewer_cert = ca.issue(&["lb.test"], Validity::Current);
    let (mut served, mut s3_hosts) = (0, 0);
    for (n, file) in files.iter().enumerate() {
        let name = name(file);
        if INVALID.iter().any(|(prefix, _)| name.starts_with(prefix)) {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let dist = read_distribution(&text);
        // One loopback address per origin name, with a plain and a TLS test origin on
        // the ports the config gives it. Names that are IP literals cannot be mapped:
        // their behaviors are not exercised, so no traffic goes there.
        let mut domains: Vec<&(String, u16, u16, bool)> = dist.origins.values().collect();
        domains.sort_by(|a, b| a.0.cmp(&b.0));
        domains.dedup_by(|a, b| a.0 == b.0);
        let dir = TestDir::new();
        let (cert, key) = viewer_cert.write(&dir, "viewer");
        let ca_file = dir.write("ca.pem", &ca.pem());
        let mut running: Vec<Origin> = Vec::new();
        let mut label_of: HashMap<String, String> = HashMap::new();
        let mut args: Vec<String> = Vec::new();
        for (k, (domain, http, https, _)) in domains.iter().enumerate() {
            if domain.parse::<std::net::IpAddr>().is_ok() {
                continue;
            }
            let ip: std::net::IpAddr = format!("127.0.{}.{}", 10 + n, k + 1).parse().unwrap();
            let label = format!("o{k}");
            running.push(Origin::start(&label, SocketAddr::new(ip, *http)).unwrap());
            if https != http {
                let cert = ca.issue(&[domain.as_str()], Validity::Current);
                running.push(
                    Origin::start_tls(&label, SocketAddr::new(ip, *https), cert.origin_config())
                        .unwrap(),
                );
            }
            args.push("--resolve".into());
            args.push(format!("{domain}={ip}"));
            label_of.insert(domain.clone(), label);
        }
        let tls_listen = free_port();
        args.extend([
            "--no-kernel".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--tls-listen".into(),
            tls_listen.to_string(),
            "--cert".into(),
            cert.to_str().unwrap().into(),
            "--key".into(),
            key.to_str().unwrap().into(),
            "--origin-ca".into(),
            ca_file.to_str().unwrap().into(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let lb = LbServer::start_in(dir, name, &text, &args, "info");
        let mut checks = vec![("/default/x".to_owned(), dist.default_target.clone())];
        for (pattern, target) in &dist.behaviors {
            checks.push((path_for(pattern), target.clone()));
        }
        checks[0].0 = if dist
            .behaviors
            .iter()
            .any(|(p, _)| PathPattern::new(p).matches("/lb-default/headers"))
        {
            "/lb-default".into()
        } else {
            "/lb-default/headers".into()
        };
        for (path, target) in &checks {
            // The behavior lb picks is the first whose pattern matches, else the default.
            let expected = dist
                .behaviors
                .iter()
                .find(|(p, _)| PathPattern::new(p).matches(path))
                .map_or(&dist.default_target, |(_, t)| t);
            assert_eq!(
                expected, target,
                "{name}: {path} is not routed by its own pattern"
            );
            let (domain, _, _, s3) = &dist.origins[target];
            let Some(label) = label_of.get(domain) else {
                // An IP literal (09's API origin is a public address): it cannot be
                // mapped to loopback, so no request is sent through its behavior.
                assert!(domain.parse::<std::net::IpAddr>().is_ok(), "{domain}");
                continue;
            };
            let mut c =
                Client::connect_tls(lb.tls_addr.unwrap(), "lb.test", ca.client_config()).unwrap();
            let r = c.request(&format!("GET {path} HTTP/1.1\r\nHost: lb.test\r\n\r\n"));
            assert_eq!(
                r.status,
                200,
                "{name}: {path}: {}\n{}",
                r.text(),
                lb.stderr()
            );
            assert_eq!(
                r.header("x-origin"),
                Some(label.as_str()),
                "{name}: {path} reached the wrong origin"
            );
            if *s3 && path.ends_with("/headers") {
                // S3: HTTPS to the bucket's endpoint, with the bucket's domain as Host.
                let head = r.text().to_ascii_lowercase();
                assert!(
                    head.contains(&format!("host: {}\r\n", domain.to_ascii_lowercase())),
                    "{name}: {path}: {head}"
                );
                s3_hosts += 1;
            }
            served += 1;
        }
        drop(lb);
        drop(running);
    }
    // 14 distributions, 26 behaviors, one of them (09's /api/*) at a public IP literal.
    assert_eq!(served, 25);
    assert!(s3_hosts >= 10, "{s3_hosts} S3 Host checks");
}
