//! An outside scanner's view of lb's HTTPS listener: testssl.sh (installed by
//! `cargo xtask setup`) must find no protocol below TLS 1.2, no weak cipher category,
//! forward secrecy throughout, and ALPN http/1.1.

use std::process::Command;

use lb_origin::Origin;
use lb_tests::{
    process::{LbServer, TestDir},
    tls::{TestCa, Validity},
};

#[test]
fn testssl_finds_only_tls12_tls13_and_strong_ciphers() {
    if Command::new("testssl").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "testssl is missing in CI: `cargo xtask setup` installs it (Debian testssl.sh)"
        );
        eprintln!("SKIPPED: testssl not installed (apt install testssl.sh, or cargo xtask setup)");
        return;
    }
    let ca = TestCa::new("scan CA");
    let dir = TestDir::new();
    ca.issue(&["lb.test", "127.0.0.1"], Validity::Current)
        .write(&dir, "lb");
    let origin = Origin::start("o", "127.0.0.1:0".parse().unwrap()).unwrap();
    let lb = LbServer::start_in(
        dir,
        "lb.toml",
        &format!(
            "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n[tls]\naddress = \"127.0.0.1:0\"\n[[tls.certificates]]\ncert = \"lb.pem\"\nkey = \"lb.key\"\n[[origins]]\nid = \"o\"\naddress = \"{}\"\n[kernel]\nenabled = false\n",
            origin.addr()
        ),
        &[],
        "info",
    );
    let report = lb.dir.path.join("testssl.json");
    let out = Command::new("testssl")
        .args([
            "--quiet",
            "--color",
            "0",
            "--warnings",
            "off",
            // Only loopback traffic in tests: no DNS lookups either.
            "--nodns",
            "none",
            "--protocols",
            "--std",
            "--fs",
            "--jsonfile",
        ])
        .arg(&report)
        .arg(lb.tls_addr.unwrap().to_string())
        .output()
        .expect("run testssl");
    let text = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&report).unwrap_or_else(|e| panic!("no testssl report ({e}):\n{text}")),
    )
    .unwrap();
    let findings: Vec<(String, String, String)> = json
        .as_array()
        .expect("flat JSON findings")
        .iter()
        .map(|f| {
            let field = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
            (field("id"), field("severity"), field("finding"))
        })
        .collect();
    let finding = |id: &str| {
        findings
            .iter()
            .find(|(i, _, _)| i == id)
            .map(|(_, _, f)| f.as_str())
            .unwrap_or_else(|| panic!("testssl reported nothing for {id}:\n{text}"))
    };
    for id in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
        assert_eq!(finding(id), "not offered", "{id}:\n{text}");
    }
    assert_eq!(finding("TLS1_2"), "offered", "{text}");
    assert!(finding("TLS1_3").starts_with("offered"), "{text}");
    assert_eq!(finding("ALPN"), "http/1.1", "{text}");
    for id in [
        "cipherlist_NULL",
        "cipherlist_aNULL",
        "cipherlist_EXPORT",
        "cipherlist_LOW",
        "cipherlist_3DES_IDEA",
        "cipherlist_AVERAGE",
    ] {
        assert_eq!(finding(id), "not offered", "{id}:\n{text}");
    }
    assert_eq!(finding("cipherlist_STRONG"), "offered", "{text}");
    // testssl 3.0 calls forward secrecy "PFS", 3.2 "FS".
    let fs = findings
        .iter()
        .find(|(id, _, _)| id == "PFS" || id == "FS")
        .map(|(_, _, f)| f.as_str())
        .unwrap_or_else(|| panic!("testssl reported nothing for forward secrecy:\n{text}"));
    assert!(fs.starts_with("offered"), "{text}");
    // Nothing the scanner rates as a problem, anywhere in what it checked.
    let problems: Vec<_> = findings
        .iter()
        .filter(|(id, severity, _)| {
            matches!(severity.as_str(), "LOW" | "MEDIUM" | "HIGH" | "CRITICAL")
                // The test certificate is from a private CA and short-lived names; the
                // scan is about protocols and ciphers, not this certificate's trust.
                && !id.starts_with("cert")
        })
        .collect();
    assert!(problems.is_empty(), "{problems:#?}\n{text}");
}
