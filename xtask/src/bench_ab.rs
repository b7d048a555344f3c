//! `cargo xtask bench ab --base REV`: this tree's lb against lb built at `REV`, side by
//! side in one run, to tell whether a change costs anything. Both run one worker on core 0
//! (kernel signals off, as in `cargo xtask bench`), in front of the same lb-origin; wrk
//! (core 1) alternates between them, round after round, so both see the same machine.
//! Reports requests/s and CPU µs per request of each, per body size, and their ratio.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{bench::median, pinned::Pinned, workspace_root};

const ORIGIN: &str = "127.0.0.1:19781";
const BASE: &str = "127.0.0.1:19782";
const HEAD: &str = "127.0.0.1:19783";

#[derive(clap::Args)]
pub struct AbArgs {
    /// The revision to compare with (a commit, tag or branch).
    #[arg(long)]
    base: String,
    /// Rounds per body size (each runs both, in alternating order).
    #[arg(long, default_value_t = 4)]
    rounds: u32,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Body sizes (bytes suffixed k or m).
    #[arg(long, value_delimiter = ',', default_value = "1k,64k")]
    sizes: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Base,
    Head,
}

/// Builds lb at `rev` in a worktree under target/, once per revision.
fn build_base(rev: &str) -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    let out = Command::new("git")
        .args(["rev-parse", "--short", rev])
        .current_dir(&root)
        .output()?;
    if !out.status.success() {
        bail!("unknown revision {rev}");
    }
    let short = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let tree = root.join("target/ab").join(&short);
    if !tree.exists() {
        crate::cmd(
            Command::new("git")
                .args(["worktree", "add", "--detach"])
                .arg(&tree)
                .arg(&short)
                .current_dir(&root),
        )?;
    }
    crate::cmd(
        Command::new("cargo")
            .args(["build", "--release", "-p", "lb-userspace", "--bin", "lb"])
            .current_dir(&tree),
    )?;
    Ok(tree.join("target/release/lb"))
}

fn lb_config(work: &Path, side: Side) -> anyhow::Result<PathBuf> {
    let (name, addr) = match side {
        Side::Base => ("base.toml", BASE),
        Side::Head => ("head.toml", HEAD),
    };
    let path = work.join(name);
    std::fs::write(
        &path,
        format!(
            "[listener]\naddress = \"{addr}\"\nworkers = 1\npin_workers = false\n[observability]\naccess_log = false\n\
             [[origins]]\nid = \"o\"\naddress = \"{ORIGIN}\"\nkeepalive_timeout = \"60s\"\n[kernel]\nenabled = false\n"
        ),
    )?;
    Ok(path)
}

pub fn bench_ab(args: AbArgs) -> anyhow::Result<()> {
    crate::bench::ensure_tools()?;
    let base_lb = build_base(&args.base)?;
    crate::bench::build_release()?;
    let root = workspace_root();
    let work = std::env::temp_dir().join(format!("lb-bench-ab-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let mut procs: Pinned<Side> = Pinned::default();
    procs.spawn(
        None,
        "1",
        &root.join("target/release/lb-origin"),
        &["--listen", ORIGIN, "--name", "ab"],
    )?;
    for (side, lb) in [
        (Side::Base, base_lb.clone()),
        (Side::Head, root.join("target/release/lb")),
    ] {
        let cfg = lb_config(&work, side)?;
        procs.spawn(
            Some(side),
            "0",
            &lb,
            &[
                "run",
                "--config",
                cfg.to_str().unwrap_or_default(),
                "--log",
                "warn",
            ],
        )?;
    }
    for addr in [ORIGIN, BASE, HEAD] {
        crate::bench_failover::wait_listening(addr)?;
    }
    let mut md = format!(
        "# lb at {} vs this tree\n\n`cargo xtask bench ab --base {} --rounds {} --seconds {}` ({}): one worker each on core 0, \
         wrk -t1 -c50 on core 1, rounds alternating.\n\n| body | base req/s | this req/s | ratio | base CPU µs/req | this CPU µs/req | ratio |\n| --- | --- | --- | --- | --- | --- | --- |\n",
        args.base,
        args.base,
        args.rounds,
        args.seconds,
        crate::bench::humantime_stamp()
    );
    for size in &args.sizes {
        let bytes = crate::bench::size_bytes(size)?;
        let mut rps = [Vec::new(), Vec::new()];
        let mut cpu = [Vec::new(), Vec::new()];
        for round in 0..args.rounds {
            let order = if round % 2 == 0 {
                [Side::Base, Side::Head]
            } else {
                [Side::Head, Side::Base]
            };
            for side in order {
                let addr = if side == Side::Base { BASE } else { HEAD };
                let pids = procs.pids(side);
                let before = crate::bench::cpu_us(&pids);
                let url = format!("http://{addr}/ab?size={bytes}");
                let (r, requests) =
                    crate::bench::run_wrk(&[url.as_str()], args.seconds).context("wrk")?;
                let used = crate::bench::cpu_us(&pids) - before;
                let i = side as usize;
                rps[i].push(r);
                cpu[i].push(used as f64 / requests.max(1.0));
                eprintln!(
                    "{size} round {round} {side:?}: {r:.0} req/s, {:.1} µs/req",
                    used as f64 / requests.max(1.0)
                );
            }
        }
        let (b_rps, h_rps) = (median(&rps[0]).0, median(&rps[1]).0);
        let (b_cpu, h_cpu) = (median(&cpu[0]).0, median(&cpu[1]).0);
        let _ = writeln!(
            md,
            "| {size} | {b_rps:.0} | {h_rps:.0} | {:.2} | {b_cpu:.1} | {h_cpu:.1} | {:.2} |",
            h_rps / b_rps,
            h_cpu / b_cpu
        );
    }
    md.push_str("\nMedians of the rounds. Ratios are this tree over the base; on this VM run-to-run noise is 5-10%.\n");
    print!("{md}");
    let results = root.join("bench/results");
    std::fs::create_dir_all(&results)?;
    std::fs::write(results.join("ab.md"), md)?;
    eprintln!("wrote bench/results/ab.md");
    Ok(())
}
