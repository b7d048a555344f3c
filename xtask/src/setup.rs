//! Idempotent installation of what lb's build and tests need.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::cmd;

/// bpf-linker 0.10 loads the LLVM that ships with rustc; 0.11+ needs a system LLVM 21+.
const BPF_LINKER_VERSION: &str = "0.10.0";

/// Debian packages the tests use, with a shell command that succeeds when the package is
/// usable (checked before apt runs).
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("iproute2", "command -v ip"), // veth pairs and network namespaces in kernel tests
    ("util-linux", "command -v setpriv"), // the unprivileged start-up test
    ("testssl.sh", "command -v testssl"), // the TLS listener scan (protocols and cipher strength)
    ("curl", "curl -V | grep -q HTTP2"), // HTTP/2 viewer tests (curl --http2)
    ("nghttp2-client", "command -v h2load"), // HTTP/2 load and failover tests
    // The crafted-frame HTTP/2 client (tests/support/h2_probe.py).
    ("python3-h2", "/usr/bin/python3 -c 'import h2, hyperframe'"),
    // gRPC clients and servers (tests/support/grpc_probe.py).
    ("python3-grpcio", "/usr/bin/python3 -c 'import grpc'"),
];

pub fn setup() -> anyhow::Result<()> {
    nightly_rust_src()?;
    bpf_linker()?;
    debian_packages()?;
    eprintln!("xtask: setup complete");
    Ok(())
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn nightly_rust_src() -> anyhow::Result<()> {
    let fix = "rustup toolchain install nightly --profile minimal --component rust-src";
    if output("rustup", &["--version"]).is_none() {
        bail!(
            "rustup is required to build the eBPF program with nightly; install rustup, then run `{fix}`"
        );
    }
    let toolchains = output("rustup", &["toolchain", "list"]).unwrap_or_default();
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        eprintln!("xtask: installing the nightly toolchain (eBPF builds use -Z build-std)");
        cmd(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))
        .with_context(|| format!("installing nightly; run `{fix}` by hand"))?;
    }
    let installed = output(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .unwrap_or_default();
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("xtask: installing nightly rust-src");
        cmd(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))
        .context("run `rustup component add rust-src --toolchain nightly`")?;
    }
    Ok(())
}

fn bpf_linker() -> anyhow::Result<()> {
    let have = output("bpf-linker", &["--version"]).unwrap_or_default();
    if have.contains(BPF_LINKER_VERSION) {
        return Ok(());
    }
    eprintln!("xtask: installing bpf-linker {BPF_LINKER_VERSION} (about a minute)");
    let spec = format!("bpf-linker@{BPF_LINKER_VERSION}");
    cmd(Command::new("cargo").args(["+nightly", "install", &spec, "--locked", "--force"]))
        .with_context(|| format!("run `cargo +nightly install {spec} --locked`"))
}

fn debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(_, check)| !check_passes(check))
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root() {
        bail!(
            "missing Debian packages: run `sudo apt-get update && sudo apt-get install -y {list}`"
        );
    }
    eprintln!("xtask: installing Debian packages: {list}");
    cmd(Command::new("apt-get")
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .context("apt-get update")?;
    cmd(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .with_context(|| format!("run `apt-get install -y {list}`"))
}

fn check_passes(check: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("{check} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

/// cargo-fuzz, for `cargo xtask fuzz`.
pub fn cargo_fuzz() -> anyhow::Result<()> {
    if output("cargo", &["fuzz", "--version"]).is_some() {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-fuzz");
    cmd(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
        .context("run `cargo install cargo-fuzz --locked`")
}
