//! Builds the XDP program (lb-ebpf) for bpfel-unknown-none and leaves the object in
//! OUT_DIR, where `kernel::object` embeds it.
//!
//! The eBPF build needs the nightly toolchain with `rust-src` and `bpf-linker`; when one
//! is missing, this fails with the exact command that installs it instead of a linker error.

use std::process::Command;

fn main() -> anyhow::Result<()> {
    commit_for_version();
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    if std::env::var_os("AYA_BUILD_SKIP").is_none() {
        check_prerequisites()?;
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../lb-ebpf");
    println!("cargo:rerun-if-changed=../lb-common/src");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "lb-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}

fn check_prerequisites() -> anyhow::Result<()> {
    const FIX: &str = "run `cargo xtask setup` (or: rustup component add rust-src --toolchain nightly \
                       && cargo +nightly install bpf-linker@0.10.0 --locked)";
    let sysroot = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output();
    let sysroot = match sysroot {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        _ => anyhow::bail!("building lb's eBPF program needs the nightly toolchain: {FIX}"),
    };
    let core_src = std::path::Path::new(&sysroot).join("lib/rustlib/src/rust/library/core");
    if !core_src.exists() {
        anyhow::bail!("building lb's eBPF program needs nightly's rust-src component: {FIX}");
    }
    if Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_err()
    {
        anyhow::bail!("building lb's eBPF program needs bpf-linker on PATH: {FIX}");
    }
    Ok(())
}

/// `LB_COMMIT` for `lb --version`: the commit this was built from (with `-dirty` when the
/// tree had changes), or `unknown` outside a git checkout. Reruns when HEAD moves.
fn commit_for_version() {
    let git = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.git");
    println!("cargo:rerun-if-changed={}", git.join("HEAD").display());
    if let Ok(head) = std::fs::read_to_string(git.join("HEAD"))
        && let Some(reference) = head.trim().strip_prefix("ref: ")
    {
        println!("cargo:rerun-if-changed={}", git.join(reference).display());
        println!(
            "cargo:rerun-if-changed={}",
            git.join("packed-refs").display()
        );
    }
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = run(&["rev-parse", "--short=10", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=LB_COMMIT={commit}");
}
