//! `cargo xtask`: lb's developer commands. `setup` installs what building and testing
//! need on a new machine; `test` runs it first, so a fresh clone needs nothing else.

mod bench;
mod bench_ab;
mod bench_cache;
mod bench_edge;
mod bench_failover;
mod bench_failover_peers;
mod bench_h2;
mod bench_memory;
mod bench_tls;
mod package;
mod pinned;
mod setup;

use std::process::{Command, ExitCode};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "lb developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the build and test prerequisites (idempotent).
    Setup,
    /// Build lb (the XDP object is built and embedded by lb-userspace's build script).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Set up, build, and run lb's main job on the embedded default (`lb demo`).
    Run {
        /// Arguments for `lb` instead of `demo`, e.g. `-- run --config lb.toml`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Set up, then check formatting, clippy, and run every test.
    Test,
    /// lb vs nginx vs HAProxy vs direct vs L4, side by side (see bench/README.md).
    Bench(bench::BenchArgs),
    /// Build lb's Debian package (binary, systemd unit, default config, completions).
    Package(package::PackageArgs),
    /// Fuzz the request-head, response-head and chunked-body parsers (installs cargo-fuzz if missing).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(task: Task) -> anyhow::Result<()> {
    match task {
        Task::Setup => setup::setup(),
        Task::Build { release } => build(release),
        Task::Run { args } => {
            setup::setup()?;
            build(true)?;
            let args = if args.is_empty() {
                vec!["demo".to_owned()]
            } else {
                args
            };
            let lb = workspace_root().join("target/release/lb");
            if !setup::is_root() {
                eprintln!(
                    "xtask: note: not root; lb runs without kernel signals (the demo needs root, \
                     or CAP_BPF and CAP_NET_ADMIN)"
                );
            }
            cmd(Command::new(lb).args(&args))
        }
        Task::Bench(args) => bench::bench(args),
        Task::Package(args) => package::package(&args).map(|_| ()),
        Task::Fuzz { seconds } => {
            setup::setup()?;
            setup::cargo_fuzz()?;
            for target in ["request_head", "response_head", "chunked_body"] {
                cmd(Command::new("cargo")
                    .args(["+nightly", "fuzz", "run", target, "--"])
                    .arg(format!("-max_total_time={seconds}"))
                    .current_dir(workspace_root().join("lb-userspace")))?;
            }
            Ok(())
        }
        Task::Test => {
            setup::setup()?;
            cargo(&["fmt", "--all", "--", "--check"])
                .context("formatting: run `cargo fmt --all`")?;
            cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])?;
            // The integration tests (package lb-tests) run the lb binary, which cargo
            // builds for a package's own integration tests only: build it first.
            // The package test runs xtask's packager too.
            cargo(&[
                "build",
                "-p",
                "lb-userspace",
                "-p",
                "lb-origin",
                "-p",
                "xtask",
                "--bins",
            ])?;
            cargo(&["test", "--workspace", "--no-fail-fast"])
        }
    }
}

fn build(release: bool) -> anyhow::Result<()> {
    let mut args = vec!["build", "-p", "lb-userspace"];
    if release {
        args.push("--release");
    }
    cargo(&args)
}

pub(crate) fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

pub(crate) fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    cmd(Command::new(cargo).args(args).current_dir(workspace_root()))
}

pub(crate) fn cmd(command: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{command:?}");
    let status = command
        .status()
        .with_context(|| format!("spawning {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}
