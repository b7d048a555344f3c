//! `cargo xtask bench`: lb against nginx, HAProxy, direct-to-origin and an L4 forwarder,
//! measured in one run with interleaved rounds (bench/README.md has the method).
//!
//! Every proxy gets one worker pinned to core 0; the origin (lb-origin) and the load
//! generator share core 1. Per contender and body size it reports requests/s (median, min
//! and max over rounds, wrk), proxy CPU microseconds per request (/proc/PID/stat),
//! upstream connections opened per 1,000 requests (counted by the origin), and p50/p99
//! latency at a fixed offered load of 70% of the slowest proxy's maximum (oha).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{cmd, workspace_root};

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: Option<BenchWhat>,
    /// One body size, 2 rounds of 3 s: under 3 minutes.
    #[arg(long)]
    quick: bool,
    /// Also write machine-readable results here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Rounds (default 5, quick 2).
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds per measurement (default 8, quick 3).
    #[arg(long)]
    seconds: Option<u64>,
    /// Body sizes, from 0, 1k, 64k, 1m (default all; quick 1k).
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<String>>,
}

#[derive(clap::Subcommand)]
enum BenchWhat {
    /// Kill -9 the primary under load and restart it: a timeline, kernel signals on and off.
    Failover,
    /// HTTPS listeners: full handshakes/s and keep-alive throughput, lb vs nginx vs HAProxy.
    Tls(crate::bench_tls::TlsBenchArgs),
    /// HTTP/2 frontends (TLS and cleartext): requests/s, CPU per request and p99 at a fixed
    /// rate, lb vs nginx vs HAProxy.
    H2(crate::bench_h2::H2BenchArgs),
    /// RSS per idle keep-alive client connection after a 64 KiB response, lb vs nginx vs
    /// HAProxy.
    IdleMemory,
    /// This tree's lb against lb built at another revision, alternating in one run.
    Ab(crate::bench_ab::AbArgs),
    /// The cache: hits (1 KiB, 64 KiB, 1 MiB) and stale answers while the origin fails,
    /// lb vs nginx proxy_cache vs Varnish.
    Cache(crate::bench_cache::CacheBenchArgs),
    /// What request rules and a trivial viewer-request function cost per request.
    Edge(crate::bench_edge::EdgeArgs),
}

const ORIGIN: &str = "127.0.0.1:19181";
const CONNS: u32 = 50;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) enum Contender {
    Direct,
    Lb,
    Nginx,
    Haproxy,
    L4,
}

impl Contender {
    const ALL: [Self; 5] = [Self::Direct, Self::Lb, Self::Nginx, Self::Haproxy, Self::L4];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Lb => "lb",
            Self::Nginx => "nginx",
            Self::Haproxy => "haproxy",
            Self::L4 => "l4",
        }
    }

    pub(crate) fn addr(self) -> &'static str {
        match self {
            Self::Direct => ORIGIN,
            Self::Lb => "127.0.0.1:19180",
            Self::Nginx => "127.0.0.1:19182",
            Self::Haproxy => "127.0.0.1:19183",
            Self::L4 => "127.0.0.1:19184",
        }
    }
}

pub(crate) fn size_bytes(size: &str) -> anyhow::Result<u64> {
    Ok(match size {
        "0" => 0,
        "1k" => 1024,
        "64k" => 64 * 1024,
        "1m" => 1024 * 1024,
        other => bail!("unknown body size `{other}` (use 0, 1k, 64k, 1m)"),
    })
}

#[derive(Clone, Debug, Default)]
struct Run {
    rps: f64,
    cpu_us_per_req: Option<f64>,
    upstream_per_1k: Option<f64>,
}

pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    match args.what {
        Some(BenchWhat::Failover) => return crate::bench_failover::bench_failover(),
        Some(BenchWhat::Tls(tls)) => return crate::bench_tls::bench_tls(tls),
        Some(BenchWhat::H2(h2)) => return crate::bench_h2::bench_h2(h2),
        Some(BenchWhat::IdleMemory) => return crate::bench_memory::bench_idle_memory(),
        Some(BenchWhat::Ab(ab)) => return crate::bench_ab::bench_ab(ab),
        Some(BenchWhat::Cache(cache)) => return crate::bench_cache::bench_cache(cache),
        Some(BenchWhat::Edge(edge)) => return crate::bench_edge::bench_edge(edge),
        None => {}
    }
    let started = Instant::now();
    ensure_tools()?;
    build_release()?;
    let rounds = args.rounds.unwrap_or(if args.quick { 2 } else { 5 });
    let secs = args.seconds.unwrap_or(if args.quick { 3 } else { 8 });
    let sizes = args.sizes.clone().unwrap_or_else(|| {
        if args.quick {
            vec!["1k".into()]
        } else {
            ["0", "1k", "64k", "1m"].map(String::from).to_vec()
        }
    });
    for s in &sizes {
        size_bytes(s)?;
    }
    let root = workspace_root();
    let work = std::env::temp_dir().join(format!("lb-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let mut procs = Procs::default();
    procs.start(&work, &root)?;
    let oha = which("oha");
    let total = rounds * sizes.len() * Contender::ALL.len();
    let mut done = 0;
    let mut runs: BTreeMap<(Contender, String), Vec<Run>> = BTreeMap::new();
    for round in 0..rounds {
        for size in &sizes {
            // Vary the order: rotate by round, reverse every other round.
            let mut order = Contender::ALL.to_vec();
            let len = order.len();
            order.rotate_left(round % len);
            if round % 2 == 1 {
                order.reverse();
            }
            for c in order {
                done += 1;
                eprintln!(
                    "[{done}/{total}] round {} {:>3} {:<8} ...",
                    round + 1,
                    size,
                    c.name()
                );
                let run = measure(&procs, c, size, secs)?;
                eprintln!("          {:>10.0} req/s", run.rps);
                runs.entry((c, size.clone())).or_default().push(run);
            }
        }
    }
    // Latency at a fixed offered load: 70% of the slowest proxy's median maximum.
    let mut latency: BTreeMap<(Contender, String), (f64, f64)> = BTreeMap::new();
    let mut rates: BTreeMap<String, f64> = BTreeMap::new();
    if let Some(oha) = &oha {
        for size in &sizes {
            let slowest = [Contender::Lb, Contender::Nginx, Contender::Haproxy]
                .iter()
                .map(|c| {
                    median(
                        &runs[&(*c, size.clone())]
                            .iter()
                            .map(|r| r.rps)
                            .collect::<Vec<_>>(),
                    )
                    .0
                })
                .fold(f64::INFINITY, f64::min);
            let rate = (slowest * 0.7).max(100.0).round();
            rates.insert(size.clone(), rate);
            for c in Contender::ALL {
                eprintln!(
                    "latency at {rate:.0} req/s: {:>3} {:<8} ...",
                    size,
                    c.name()
                );
                if let Ok(pair) = fixed_rate_latency(oha, c, size, rate, secs) {
                    latency.insert((c, size.clone()), pair);
                }
            }
        }
    } else {
        eprintln!("oha not found: latency at a fixed load is skipped (cargo install oha --locked)");
    }
    drop(procs);
    let report = Report {
        runs,
        latency,
        rates,
        sizes,
        rounds,
        secs,
    };
    print!("{}", report.table());
    let results = root.join("bench/results");
    std::fs::create_dir_all(&results)?;
    let stamp = humantime_stamp();
    let md = report.markdown(
        &stamp,
        if args.quick {
            "cargo xtask bench --quick"
        } else {
            "cargo xtask bench"
        },
    );
    std::fs::write(results.join("latest.md"), &md)?;
    std::fs::write(results.join("latest.svg"), report.svg())?;
    if let Some(path) = &args.json {
        std::fs::write(path, report.json())?;
        eprintln!("wrote {}", path.display());
    }
    eprintln!(
        "wrote bench/results/latest.md and latest.svg in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// Release builds of lb and lb-origin, which every benchmark runs.
pub(crate) fn build_release() -> anyhow::Result<()> {
    crate::cargo(&[
        "build",
        "--release",
        "-p",
        "lb-userspace",
        "-p",
        "lb-origin",
    ])
}

pub(crate) fn humantime_stamp() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// The oha binary (installed by [`ensure_tools`] when missing).
pub(crate) fn oha_path() -> anyhow::Result<PathBuf> {
    which("oha").context("oha is missing: cargo install oha --locked")
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .chain(std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin").join(tool)))
        .find(|p| p.exists())
}

pub(crate) fn ensure_tools() -> anyhow::Result<()> {
    let missing: Vec<&str> = [
        ("nginx", "nginx"),
        ("haproxy", "haproxy"),
        ("wrk", "wrk"),
        ("taskset", "util-linux"),
    ]
    .into_iter()
    .filter(|(tool, _)| {
        which(tool).is_none()
            && which(&format!("../sbin/{tool}")).is_none()
            && !Path::new(&format!("/usr/sbin/{tool}")).exists()
    })
    .map(|(_, pkg)| pkg)
    .collect();
    if !missing.is_empty() {
        if !crate::setup::is_root() {
            bail!(
                "missing: run `sudo apt-get install -y {}`",
                missing.join(" ")
            );
        }
        cmd(Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        cmd(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    if which("oha").is_none() {
        eprintln!(
            "xtask: installing oha (fixed-rate load generator) from crates.io; this takes a few minutes"
        );
        if let Err(e) = cmd(Command::new("cargo").args(["install", "oha", "--locked"])) {
            eprintln!(
                "xtask: oha could not be installed ({e}); latency at a fixed load will be skipped"
            );
        }
    }
    Ok(())
}

/// The origin and the four proxies, each pinned.
#[derive(Default)]
pub(crate) struct Procs {
    pub(crate) set: crate::pinned::Pinned<Contender>,
}

impl Procs {
    pub(crate) fn start(&mut self, work: &Path, root: &Path) -> anyhow::Result<()> {
        for c in Contender::ALL {
            if std::net::TcpStream::connect(c.addr()).is_ok() {
                bail!(
                    "{} is already in use (a leftover from an earlier run?); stop it first",
                    c.addr()
                );
            }
        }
        let release = root.join("target/release");
        self.set.spawn(
            None,
            "1",
            &release.join("lb-origin"),
            &["--listen", ORIGIN, "--name", "bench"],
        )?;
        std::fs::write(
            work.join("lb.toml"),
            format!(
                "[listener]\naddress = \"{}\"\nworkers = 1\npin_workers = false\n[observability]\naccess_log = false\n\
                 [[origins]]\nid = \"bench\"\naddress = \"{ORIGIN}\"\nkeepalive_timeout = \"60s\"\n[kernel]\nenabled = false\n",
                Contender::Lb.addr()
            ),
        )?;
        let lb_cfg = work.join("lb.toml");
        self.set.spawn(
            Some(Contender::Lb),
            "0",
            &release.join("lb"),
            &[
                "run",
                "--config",
                lb_cfg.to_str().unwrap_or_default(),
                "--log",
                "warn",
            ],
        )?;
        std::fs::write(
            work.join("nginx.conf"),
            format!(
                "worker_processes 1;\ndaemon off;\npid {w}/nginx.pid;\nerror_log {w}/nginx-error.log warn;\n\
                 events {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  upstream origin {{ server {ORIGIN}; keepalive 64; }}\n\
                 server {{\n    listen {};\n    location / {{ proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n  }}\n}}\n",
                Contender::Nginx.addr(),
                w = work.display()
            ),
        )?;
        let nginx_cfg = work.join("nginx.conf");
        self.set.spawn(
            Some(Contender::Nginx),
            "0",
            Path::new("nginx"),
            &[
                "-c",
                nginx_cfg.to_str().unwrap_or_default(),
                "-e",
                "/dev/null",
            ],
        )?;
        let haproxy = |mode: &str, bind: &str, extra: &str| {
            format!(
                "global\n  nbthread 1\n  maxconn 4000\ndefaults\n  mode {mode}\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n{extra}\
                 frontend fe\n  bind {bind}\n  default_backend be\nbackend be\n  server o1 {ORIGIN} maxconn 2000\n"
            )
        };
        std::fs::write(
            work.join("haproxy.cfg"),
            haproxy("http", Contender::Haproxy.addr(), "  http-reuse always\n"),
        )?;
        std::fs::write(
            work.join("l4.cfg"),
            haproxy("tcp", Contender::L4.addr(), "  option splice-auto\n"),
        )?;
        for (c, file) in [
            (Contender::Haproxy, "haproxy.cfg"),
            (Contender::L4, "l4.cfg"),
        ] {
            let path = work.join(file);
            self.set.spawn(
                Some(c),
                "0",
                Path::new("haproxy"),
                &["-db", "-f", path.to_str().unwrap_or_default()],
            )?;
        }
        // Wait until everything answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        for c in Contender::ALL {
            while std::net::TcpStream::connect(c.addr()).is_err() {
                if Instant::now() > deadline {
                    bail!("{} did not start listening on {}", c.name(), c.addr());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }
}

/// `root` and its direct children (nginx's workers). taskset execs the program, so a
/// spawned child's pid is the program's.
pub(crate) fn process_and_children(root: u32) -> Vec<u32> {
    let mut pids = vec![root];
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                && stat_field(&stat, 4) == Some(root as u64)
            {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Field `n` (1-based, as in proc(5)) of /proc/PID/stat, after the command name.
fn stat_field(stat: &str, n: usize) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(n - 3)?.parse().ok()
}

/// CPU time of `pids` in microseconds (utime + stime).
pub(crate) fn cpu_us(pids: &[u32]) -> u64 {
    let hz = 100; // USER_HZ on Linux
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .map(|s| stat_field(&s, 14).unwrap_or(0) + stat_field(&s, 15).unwrap_or(0))
        .sum::<u64>()
        * (1_000_000 / hz)
}

/// The origin's accepted-connection count (from lb-origin's stats endpoint).
fn origin_connections() -> anyhow::Result<u64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(ORIGIN)?;
    s.write_all(b"GET /_control/stats HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    let n: u64 = body
        .split("\"connections\":")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|v| v.trim().parse().ok())
        .context("origin stats")?;
    Ok(n.saturating_sub(1)) // this stats connection itself
}

fn measure(procs: &Procs, c: Contender, size: &str, secs: u64) -> anyhow::Result<Run> {
    let url = format!("http://{}/bench?size={}", c.addr(), size_bytes(size)?);
    let pids = procs.set.pids(c);
    let cpu0 = cpu_us(&pids);
    let conns0 = origin_connections()?;
    let (rps, requests) = run_wrk(&[&url], secs)?;
    let conns1 = origin_connections()?;
    let cpu1 = cpu_us(&pids);
    let proxy = !matches!(c, Contender::Direct);
    Ok(Run {
        rps,
        cpu_us_per_req: (proxy && requests > 0.0).then(|| (cpu1 - cpu0) as f64 / requests),
        upstream_per_1k: (proxy && c != Contender::L4 && requests > 0.0)
            .then(|| (conns1 - conns0) as f64 * 1000.0 / requests),
    })
}

/// Runs wrk -t1 -c50 for `secs` on core 1 with `args` (options, then the URL); returns
/// requests/s and the request count, and says on stderr if wrk saw errors.
pub(crate) fn run_wrk(args: &[&str], secs: u64) -> anyhow::Result<(f64, f64)> {
    let out = Command::new("taskset")
        .args(["-c", "1", "wrk", "-t1"])
        .arg(format!("-c{CONNS}"))
        .arg(format!("-d{secs}s"))
        .args(args)
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps: f64 = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("wrk output: {text}"))?;
    let requests: f64 = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(rps * secs as f64);
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        eprintln!(
            "          warning: {}",
            text.lines()
                .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok((rps, requests))
}

/// (p50, p99) in milliseconds at `rate` requests/s.
fn fixed_rate_latency(
    oha: &Path,
    c: Contender,
    size: &str,
    rate: f64,
    secs: u64,
) -> anyhow::Result<(f64, f64)> {
    let url = format!("http://{}/bench?size={}", c.addr(), size_bytes(size)?);
    let out = Command::new("taskset")
        .arg("-c")
        .arg("1")
        .arg(oha)
        .args([
            "-z",
            &format!("{secs}s"),
            "-q",
            &format!("{rate}"),
            "-c",
            &CONNS.to_string(),
            "--latency-correction",
            "--no-tui",
            "--output-format",
            "json",
            &url,
        ])
        .output()?;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).context("oha JSON")?;
    let p = &doc["latencyPercentiles"];
    let ms = |k: &str| p[k].as_f64().map(|s| s * 1000.0);
    Ok((ms("p50").context("p50")?, ms("p99").context("p99")?))
}

pub(crate) fn median(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    if s.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    (s[s.len() / 2], s[0], s[s.len() - 1])
}

struct Report {
    runs: BTreeMap<(Contender, String), Vec<Run>>,
    latency: BTreeMap<(Contender, String), (f64, f64)>,
    rates: BTreeMap<String, f64>,
    sizes: Vec<String>,
    rounds: usize,
    secs: u64,
}

impl Report {
    fn rps(&self, c: Contender, size: &str) -> (f64, f64, f64) {
        median(
            &self.runs[&(c, size.to_owned())]
                .iter()
                .map(|r| r.rps)
                .collect::<Vec<_>>(),
        )
    }

    fn opt_median(&self, c: Contender, size: &str, f: impl Fn(&Run) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self.runs[&(c, size.to_owned())]
            .iter()
            .filter_map(f)
            .collect();
        (!v.is_empty()).then(|| median(&v).0)
    }

    fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n{:<5} {:<8} {:>10} {:>19} {:>8} {:>8} {:>8} {:>8} {:>10} {:>9}",
            "size",
            "who",
            "req/s",
            "(min-max)",
            "x nginx",
            "x direct",
            "p50 ms",
            "p99 ms",
            "cpu us/req",
            "conns/1k"
        );
        for size in &self.sizes {
            let (nginx, _, _) = self.rps(Contender::Nginx, size);
            let (direct, _, _) = self.rps(Contender::Direct, size);
            for c in Contender::ALL {
                let (m, lo, hi) = self.rps(c, size);
                let lat = self.latency.get(&(c, size.clone()));
                let fmt =
                    |v: Option<f64>, p: usize| v.map_or("-".to_owned(), |v| format!("{v:.p$}"));
                let _ = writeln!(
                    out,
                    "{:<5} {:<8} {:>10.0} {:>19} {:>8.2} {:>8.2} {:>8} {:>8} {:>10} {:>9}",
                    size,
                    c.name(),
                    m,
                    format!("({lo:.0}-{hi:.0})"),
                    m / nginx,
                    m / direct,
                    fmt(lat.map(|l| l.0), 2),
                    fmt(lat.map(|l| l.1), 2),
                    fmt(self.opt_median(c, size, |r| r.cpu_us_per_req), 1),
                    fmt(self.opt_median(c, size, |r| r.upstream_per_1k), 2),
                );
            }
        }
        out
    }

    fn markdown(&self, stamp: &str, command: &str) -> String {
        let mut out = format!(
            "# lb benchmark\n\n- Date: {stamp}\n- Command: `{command}`\n- Machine: {}, {} cores\n- Method: {} interleaved rounds of {} s per contender and body size, order varied; \
             every proxy 1 worker pinned to core 0; lb-origin and the load generator on core 1; wrk -t1 -c{CONNS} keep-alive GETs; \
             latency by oha at a fixed rate of 70% of the slowest proxy's median maximum ({}).\n\n```\n{}```\n",
            std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(
                    |c| c.lines().find(|l| l.starts_with("model name")).map(|l| l
                        .split(':')
                        .nth(1)
                        .unwrap_or("")
                        .trim()
                        .to_owned())
                )
                .unwrap_or_else(|| "unknown CPU".into()),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            self.rounds,
            self.secs,
            self.rates
                .iter()
                .map(|(s, r)| format!("{s}: {r:.0} req/s"))
                .collect::<Vec<_>>()
                .join(", "),
            self.table()
        );
        out.push_str("\n![requests per second](latest.svg)\n");
        out
    }

    fn json(&self) -> String {
        let mut contenders = serde_json::Map::new();
        for c in Contender::ALL {
            let mut per_size = serde_json::Map::new();
            for size in &self.sizes {
                per_size.insert(
                    size.clone(),
                    serde_json::json!({
                        "rps": self.rps(c, size).0,
                        "p99_ms": self.latency.get(&(c, size.clone())).map(|l| l.1),
                        "cpu_us_per_req": self.opt_median(c, size, |r| r.cpu_us_per_req),
                        "upstream_conns_per_1k": self.opt_median(c, size, |r| r.upstream_per_1k),
                    }),
                );
            }
            contenders.insert(c.name().into(), serde_json::Value::Object(per_size));
        }
        serde_json::to_string_pretty(&serde_json::json!({ "contenders": contenders }))
            .unwrap_or_default()
    }

    /// Grouped bars: requests/s per body size, one bar per contender.
    fn svg(&self) -> String {
        let colors = ["#888888", "#d62728", "#2ca02c", "#1f77b4", "#9467bd"];
        let (w, h, pad) = (160.0 * self.sizes.len() as f64 + 120.0, 320.0, 50.0);
        let max = self
            .sizes
            .iter()
            .flat_map(|s| Contender::ALL.map(|c| self.rps(c, s).0))
            .fold(1.0, f64::max);
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n"
        );
        let _ = writeln!(
            out,
            "<text x=\"{pad}\" y=\"18\" font-size=\"14\">requests/s (median of rounds), 1 proxy worker</text>"
        );
        for (i, size) in self.sizes.iter().enumerate() {
            let x0 = pad + i as f64 * 160.0;
            for (k, c) in Contender::ALL.iter().enumerate() {
                let v = self.rps(*c, size).0;
                let bh = (h - 2.0 * pad) * v / max;
                let x = x0 + k as f64 * 26.0;
                let _ = writeln!(
                    out,
                    "<rect x=\"{x}\" y=\"{}\" width=\"22\" height=\"{bh}\" fill=\"{}\"><title>{} {size}: {v:.0}</title></rect>",
                    h - pad - bh,
                    colors[k],
                    c.name()
                );
            }
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{}\">{size}</text>",
                x0 + 50.0,
                h - pad + 16.0
            );
        }
        for (k, c) in Contender::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "<rect x=\"{}\" y=\"30\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"39\">{}</text>",
                w - 100.0,
                colors[k],
                w - 86.0,
                c.name()
            );
            let _ = k;
            let _ = writeln!(out, "<!-- {} -->", c.name());
        }
        out.push_str("</svg>\n");
        out
    }
}
