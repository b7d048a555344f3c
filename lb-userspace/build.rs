//! Builds the XDP program (lb-ebpf) for bpfel-unknown-none and leaves the object in
//! OUT_DIR, where `kernel::object` embeds it.
//!
//! The eBPF build needs the nightly toolchain with `rust-src` and `bpf-linker`; when one
//! is missing, this fails with the exact command that installs it instead of a linker error.

use std::process::Command;

fn main() -> anyhow::Result<()> {
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
