//! `cargo xtask bench edge`: what edge logic costs per request. Three lb processes, each
//! one worker on core 0 in turn, in front of the same lb-origin (core 1): plain; with a
//! ten-rule request rule set the requests pass through (nine that do not match, the
//! tenth sets a header); and with a trivial viewer-request function (returns the request
//! unchanged). wrk (core 1) measures each in interleaved rounds: requests/s and lb's CPU
//! microseconds per request; the difference to plain is the cost.

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use anyhow::bail;

use crate::{
    bench::{cpu_us, median, run_wrk},
    pinned::Pinned,
};

const ORIGIN: &str = "127.0.0.1:19881";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    Plain,
    Rules,
    Function,
}

impl Variant {
    const ALL: [Self; 3] = [Self::Plain, Self::Rules, Self::Function];

    fn name(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Rules => "10 rules",
            Self::Function => "function",
        }
    }

    fn addr(self) -> &'static str {
        match self {
            Self::Plain => "127.0.0.1:19882",
            Self::Rules => "127.0.0.1:19883",
            Self::Function => "127.0.0.1:19884",
        }
    }
}

#[derive(clap::Args)]
pub struct EdgeArgs {
    /// Rounds (each runs all three, order rotated).
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

/// Nine rules on different headers, paths and cookies that the benchmark's requests do
/// not match, then one that matches every request and sets a header.
fn rules() -> String {
    let mut out = String::new();
    for i in 0..9 {
        let when = match i % 3 {
            0 => format!("{{ header = \"x-bench-{i}\", equals = \"yes\" }}"),
            1 => format!("{{ path_prefix = \"/nothing-{i}/\" }}"),
            _ => format!("{{ cookie = \"c{i}\", present = true }}"),
        };
        let _ = writeln!(
            out,
            "[[rules]]\nname = \"r{i}\"\nwhen = [{when}, {{ method = [\"POST\"] }}]\nroute = \"bench\"\n"
        );
    }
    out.push_str(
        "[[rules]]\nname = \"tag\"\nwhen = [{ path_prefix = \"/\" }]\nset_request_headers = { x-rule = \"1\" }\n",
    );
    out
}

fn config(v: Variant) -> String {
    let mut s = format!(
        "[listener]\naddress = \"{}\"\nworkers = 1\npin_workers = false\n[observability]\naccess_log = false\n\
         [kernel]\nenabled = false\n[[origins]]\nid = \"bench\"\naddress = \"{ORIGIN}\"\nkeepalive_timeout = \"60s\"\n\
         [default_behavior]\ntarget = \"bench\"\n",
        v.addr()
    );
    match v {
        Variant::Plain => {}
        Variant::Function => {
            s.push_str("functions = [{ trigger = \"viewer-request\", file = \"noop.js\" }]\n")
        }
        Variant::Rules => s.push_str(&rules()),
    }
    s
}

pub fn bench_edge(args: EdgeArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    crate::bench::ensure_tools()?;
    crate::bench::build_release()?;
    let root = crate::workspace_root();
    let release = root.join("target/release");
    let work = std::env::temp_dir().join(format!("lb-bench-edge-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    std::fs::write(
        work.join("noop.js"),
        "exports.handler = (event, context, callback) => {\n  callback(null, event.Records[0].cf.request);\n};\n",
    )?;
    let mut procs = Pinned::<Variant>::default();
    procs.spawn(
        None,
        "1",
        &release.join("lb-origin"),
        &["--listen", ORIGIN, "--name", "bench"],
    )?;
    for v in Variant::ALL {
        let file = work.join(format!("{v:?}.toml"));
        std::fs::write(&file, config(v))?;
        procs.spawn(
            Some(v),
            "0",
            &release.join("lb"),
            &["run", "--config", &file.to_string_lossy(), "--log", "warn"],
        )?;
    }
    for addr in [
        ORIGIN,
        Variant::Plain.addr(),
        Variant::Rules.addr(),
        Variant::Function.addr(),
    ] {
        wait(addr)?;
    }
    let mut runs: Vec<(Variant, f64, f64)> = Vec::new();
    for round in 0..args.rounds {
        let mut order = Variant::ALL.to_vec();
        order.rotate_left(round % Variant::ALL.len());
        for v in order {
            let pids = procs.pids(v);
            let url = format!("http://{}/bench?size=1024", v.addr());
            let cpu0 = cpu_us(&pids);
            let (rps, requests) = run_wrk(&[&url], args.seconds)?;
            let cpu1 = cpu_us(&pids);
            let per = (cpu1 - cpu0) as f64 / requests.max(1.0);
            eprintln!(
                "round {} {:<9} {rps:>9.0} req/s {per:>6.1} us/req",
                round + 1,
                v.name()
            );
            runs.push((v, rps, per));
        }
    }
    drop(procs);
    let stat = |v: Variant, f: fn(&(Variant, f64, f64)) -> f64| {
        median(&runs.iter().filter(|r| r.0 == v).map(f).collect::<Vec<_>>()).0
    };
    let (plain_rps, plain_cpu) = (stat(Variant::Plain, |r| r.1), stat(Variant::Plain, |r| r.2));
    let mut md = format!(
        "# Edge logic cost ({})\n\n`cargo xtask bench edge`: lb with 1 worker on core 0, 1 KiB responses, wrk -t1 -c50 on core 1, \
         {} interleaved rounds of {} s; medians.\n\n| lb | req/s | x plain | CPU µs/request | added µs/request |\n| --- | ---: | ---: | ---: | ---: |\n",
        crate::bench::humantime_stamp(),
        args.rounds,
        args.seconds
    );
    for v in Variant::ALL {
        let (rps, cpu) = (stat(v, |r| r.1), stat(v, |r| r.2));
        let _ = writeln!(
            md,
            "| {} | {rps:.0} | {:.2} | {cpu:.1} | {:+.1} |",
            v.name(),
            rps / plain_rps,
            cpu - plain_cpu
        );
    }
    print!("{md}");
    let results = root.join("bench/results");
    std::fs::create_dir_all(&results)?;
    std::fs::write(results.join("edge.md"), &md)?;
    eprintln!(
        "wrote bench/results/edge.md in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn wait(addr: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on {addr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
