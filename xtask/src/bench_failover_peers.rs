//! The failover comparison of `cargo xtask bench failover`: lb (kernel signals on and
//! off), nginx and HAProxy, each with its defaults and with its fastest documented health
//! settings, in front of the same two origins, through the same two failures:
//!
//! - kill -9 of the primary (its port closes: RSTs);
//! - a black hole: the primary's replies are dropped inside its network namespace (no RST,
//!   no ICMP), the failure CloudFront's defaults take 30 s to get past.
//!
//! The primary lives in a network namespace this bench creates (and removes), the
//! secondary on loopback. ~2,000 GETs/s on keep-alive connections; each request's latency,
//! status and serving origin are recorded. Reported per run: failed requests (including
//! those the client gave up on after 10 s), requests slower than 1 s, the slowest, how
//! long clients were disrupted (from the failure to the end of the last failed or >200 ms
//! request before the primary came back), and the time to fail back.

use std::{
    fmt::Write as _,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    bench_failover::{Sample, client, wait_listening},
    workspace_root,
};

const NS: &str = "lbbenchfo";
const HOST_IF: &str = "lbbfo0";
const NS_IF: &str = "lbbfo1";
const HOST_IP: &str = "10.214.0.1";
const NS_IP: &str = "10.214.0.2";
const PRIMARY_PORT: u16 = 8080;
const SECONDARY: &str = "127.0.0.1:19382";
const PROXY: &str = "127.0.0.1:19380";
const CLIENTS: usize = 4;
const INTERVAL: Duration = Duration::from_millis(2);
const FAIL_AT: Duration = Duration::from_secs(2);
const RESTORE_AT: Duration = Duration::from_secs(7);
const RUN_FOR: Duration = Duration::from_secs(10);
/// A request slower than this counts as disrupted.
const DISRUPTED: Duration = Duration::from_millis(200);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    Kill9,
    BlackHole,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    LbKernel,
    LbNoKernel,
    NginxDefaults,
    NginxFast,
    HaproxyDefaults,
    HaproxyFast,
}

impl Peer {
    const ALL: [Self; 6] = [
        Self::LbKernel,
        Self::LbNoKernel,
        Self::NginxDefaults,
        Self::NginxFast,
        Self::HaproxyDefaults,
        Self::HaproxyFast,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::LbKernel => "lb, kernel signals on (defaults: CloudFront's timeouts, no check)",
            Self::LbNoKernel => "lb, kernel signals off (same)",
            Self::NginxDefaults => "nginx, defaults (backup server, passive max_fails=1)",
            Self::NginxFast => "nginx, fastest (connect/read timeouts 1 s, fail_timeout 1 s)",
            Self::HaproxyDefaults => "HAProxy, defaults (backup server, no check)",
            Self::HaproxyFast => "HAProxy, fastest (check inter 100ms fall 1, connect 1 s)",
        }
    }
}

struct Run {
    peer: Peer,
    failure: Failure,
    requests: usize,
    failed: usize,
    slow: usize,
    slowest: Duration,
    disrupted_for: Duration,
    failback: Option<Duration>,
}

/// Processes of one run, killed when dropped.
#[derive(Default)]
struct Procs(Vec<Child>);

impl Procs {
    fn spawn(&mut self, program: &str, args: &[&str]) -> anyhow::Result<u32> {
        let child = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        let pid = child.id();
        self.0.push(child);
        Ok(pid)
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            // nginx's workers are its children: killing only the master would leave one
            // listening on the proxy port into the next run.
            for pid in crate::bench::process_and_children(c.id())
                .into_iter()
                .skip(1)
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // Nothing may keep the proxy port into the next run.
        let deadline = Instant::now() + Duration::from_secs(3);
        while std::net::TcpStream::connect(PROXY).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The namespace and its veth; removed when dropped.
struct Namespace;

impl Namespace {
    fn create() -> anyhow::Result<Self> {
        let _ = ip(&["netns", "del", NS]);
        ip(&["netns", "add", NS])?;
        let this = Self;
        ip(&[
            "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF,
        ])?;
        ip(&["link", "set", NS_IF, "netns", NS])?;
        ip(&["addr", "add", &format!("{HOST_IP}/30"), "dev", HOST_IF])?;
        ip(&["link", "set", HOST_IF, "up"])?;
        ip(&[
            "-n",
            NS,
            "addr",
            "add",
            &format!("{NS_IP}/30"),
            "dev",
            NS_IF,
        ])?;
        ip(&["-n", NS, "link", "set", NS_IF, "up"])?;
        ip(&["-n", NS, "link", "set", "lo", "up"])?;
        Ok(this)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", NS]);
        let _ = ip(&["link", "del", HOST_IF]);
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn primary() -> String {
    format!("{NS_IP}:{PRIMARY_PORT}")
}

fn start_primary(procs: &mut Procs) -> anyhow::Result<u32> {
    let origin = workspace_root().join("target/release/lb-origin");
    procs.spawn(
        "ip",
        &[
            "netns",
            "exec",
            NS,
            origin.to_str().unwrap_or_default(),
            "--listen",
            &primary(),
            "--name",
            "primary",
        ],
    )
}

/// Starts `peer` in front of the two origins; config files go to `work`.
fn start_peer(peer: Peer, procs: &mut Procs, work: &std::path::Path) -> anyhow::Result<()> {
    let w = work.display();
    let p = primary();
    match peer {
        Peer::LbKernel | Peer::LbNoKernel => {
            let kernel = if peer == Peer::LbKernel {
                "pin_path = \"/sys/fs/bpf/lb-bench-peers\""
            } else {
                "enabled = false"
            };
            let cfg = work.join("lb.toml");
            std::fs::write(
                &cfg,
                format!(
                    "[listener]\naddress = \"{PROXY}\"\nworkers = 1\n[observability]\naccess_log = false\n\
                     [[origins]]\nid = \"primary\"\naddress = \"{p}\"\n\
                     [[origins]]\nid = \"secondary\"\naddress = \"{SECONDARY}\"\n\
                     [[origin_groups]]\nid = \"site\"\nmembers = [\"primary\", \"secondary\"]\nfailover_status_codes = [500, 502, 503, 504]\n\
                     [default_behavior]\ntarget = \"site\"\n[kernel]\n{kernel}\n"
                ),
            )?;
            let lb = workspace_root().join("target/release/lb");
            procs.spawn(
                lb.to_str().unwrap_or_default(),
                &[
                    "run",
                    "--config",
                    cfg.to_str().unwrap_or_default(),
                    "--log",
                    "warn",
                ],
            )?;
        }
        Peer::NginxDefaults | Peer::NginxFast => {
            let (server, timeouts) = if peer == Peer::NginxFast {
                (
                    "max_fails=1 fail_timeout=1s",
                    "proxy_connect_timeout 1s; proxy_read_timeout 1s; proxy_send_timeout 1s;",
                )
            } else {
                ("", "")
            };
            let cfg = work.join("nginx.conf");
            std::fs::write(
                &cfg,
                format!(
                    "worker_processes 1;\ndaemon off;\npid {w}/nginx.pid;\nerror_log {w}/nginx-error.log crit;\n\
                     events {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n\
                     upstream site {{ server {p} {server}; server {SECONDARY} backup; keepalive 64; }}\n\
                     server {{\n    listen {PROXY};\n    location / {{ proxy_pass http://site; proxy_http_version 1.1; \
                     proxy_set_header Connection \"\"; {timeouts} }}\n  }}\n}}\n"
                ),
            )?;
            procs.spawn(
                "nginx",
                &["-c", cfg.to_str().unwrap_or_default(), "-e", "/dev/null"],
            )?;
        }
        Peer::HaproxyDefaults | Peer::HaproxyFast => {
            // Debian's default haproxy.cfg timeouts (connect 5 s, client and server 50 s).
            let (timeouts, check, backup_check) = if peer == Peer::HaproxyFast {
                (
                    "  timeout connect 1s\n  timeout client 50s\n  timeout server 50s\n  timeout check 100ms\n  retries 1\n  option redispatch\n",
                    " check inter 100ms fastinter 100ms downinter 100ms fall 1 rise 2 observe layer4 error-limit 1 on-error mark-down",
                    " check inter 100ms",
                )
            } else {
                (
                    "  timeout connect 5s\n  timeout client 50s\n  timeout server 50s\n",
                    "",
                    "",
                )
            };
            let cfg = work.join("haproxy.cfg");
            std::fs::write(
                &cfg,
                format!(
                    "global\n  nbthread 1\n  maxconn 4000\ndefaults\n  mode http\n{timeouts}  http-reuse always\n\
                     frontend fe\n  bind {PROXY}\n  default_backend be\n\
                     backend be\n  server primary {p}{check}\n  server secondary {SECONDARY} backup{backup_check}\n"
                ),
            )?;
            procs.spawn("haproxy", &["-db", "-f", cfg.to_str().unwrap_or_default()])?;
        }
    }
    wait_listening(PROXY)
}

fn run(peer: Peer, failure: Failure, work: &std::path::Path) -> anyhow::Result<Run> {
    let _ns = Namespace::create()?;
    let mut procs = Procs::default();
    let mut primary_pid = start_primary(&mut procs)?;
    let origin = workspace_root().join("target/release/lb-origin");
    procs.spawn(
        origin.to_str().unwrap_or_default(),
        &["--listen", SECONDARY, "--name", "secondary"],
    )?;
    wait_listening(&primary())?;
    wait_listening(SECONDARY)?;
    start_peer(peer, &mut procs, work)?;
    std::thread::sleep(Duration::from_millis(700)); // first health checks, warm pools
    let start = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| std::thread::spawn(move || client(PROXY, start, i, CLIENTS, INTERVAL, RUN_FOR)))
        .collect();
    std::thread::sleep(FAIL_AT.saturating_sub(start.elapsed()));
    let fail_at = start.elapsed();
    let hole = format!("{HOST_IP}/32");
    match failure {
        Failure::Kill9 => {
            let _ = Command::new("kill")
                .args(["-9", &primary_pid.to_string()])
                .status();
        }
        Failure::BlackHole => ip(&["-n", NS, "route", "add", "blackhole", &hole])?,
    }
    if std::env::var_os("LB_FAILOVER_DEBUG").is_some() {
        std::thread::sleep(Duration::from_millis(300));
        let out = Command::new("ss").args(["-tnpi"]).output()?;
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    }
    std::thread::sleep(RESTORE_AT.saturating_sub(start.elapsed()));
    let restore_at = start.elapsed();
    match failure {
        Failure::Kill9 => primary_pid = start_primary(&mut procs)?,
        Failure::BlackHole => ip(&["-n", NS, "route", "del", "blackhole", &hole])?,
    }
    let _ = primary_pid;
    let mut samples: Vec<Sample> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap_or_default())
        .collect();
    samples.sort_by_key(|s| s.at);
    let bad = |s: &Sample| s.status != 200 || s.took > DISRUPTED;
    for s in samples.iter().filter(|s| bad(s)).take(6) {
        eprintln!(
            "    sent at {:.3} s: status {} after {:.3} s ({} {})",
            s.at.as_secs_f64(),
            s.status,
            s.took.as_secs_f64(),
            s.origin,
            s.attempts
        );
    }
    let disrupted_for = samples
        .iter()
        .filter(|s| s.at >= fail_at.saturating_sub(Duration::from_secs(1)) && s.at < restore_at)
        .filter(|s| bad(s))
        .map(|s| (s.at + s.took).saturating_sub(fail_at))
        .max()
        .unwrap_or(Duration::ZERO);
    Ok(Run {
        peer,
        failure,
        requests: samples.len(),
        failed: samples.iter().filter(|s| s.status != 200).count(),
        slow: samples
            .iter()
            .filter(|s| s.took > Duration::from_secs(1))
            .count(),
        slowest: samples.iter().map(|s| s.took).max().unwrap_or_default(),
        disrupted_for,
        failback: samples
            .iter()
            .find(|s| s.at > restore_at && s.origin == "primary" && s.status == 200)
            .map(|s| s.at - restore_at),
    })
}

/// Runs every peer through both failures and writes `bench/results/failover-peers.md`.
pub fn compare() -> anyhow::Result<()> {
    crate::bench::ensure_tools()?;
    let work = std::env::temp_dir().join(format!("lb-failover-peers-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let mut runs = Vec::new();
    // LB_FAILOVER_ONLY=blackhole or =kill9 runs one failure only (while investigating).
    let only = std::env::var("LB_FAILOVER_ONLY").unwrap_or_default();
    for failure in [Failure::Kill9, Failure::BlackHole] {
        if !only.is_empty() && !format!("{failure:?}").eq_ignore_ascii_case(&only) {
            continue;
        }
        for peer in Peer::ALL {
            if let Ok(p) = std::env::var("LB_FAILOVER_PEER")
                && !format!("{peer:?}").eq_ignore_ascii_case(&p)
            {
                continue;
            }
            eprintln!("failover comparison: {failure:?}, {}", peer.name());
            let r = run(peer, failure, &work)?;
            eprintln!(
                "  {} requests, {} failed, {} over 1 s, slowest {:.2} s, disrupted for {:.2} s, fail back {}",
                r.requests,
                r.failed,
                r.slow,
                r.slowest.as_secs_f64(),
                r.disrupted_for.as_secs_f64(),
                r.failback
                    .map_or("never".into(), |d| format!("{:.2} s", d.as_secs_f64()))
            );
            runs.push(r);
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    let mut md = format!(
        "# Failover compared: lb, nginx, HAProxy\n\n`cargo xtask bench failover` (as root), {}: \
         ~2,000 GETs/s on {CLIENTS} keep-alive connections, one worker per proxy, primary (lb-origin) in a network namespace, \
         secondary on loopback. The failure starts at {} s and ends at {} s (the primary restarted, or the hole closed); \
         clients give up on a request after {} s (counted as failed).\n\n\
         - *disrupted for*: from the failure to the end of the last request that failed or took over {} ms, before the primary came back;\n\
         - *fail back*: from the end of the failure to the first request the primary served.\n\n",
        crate::bench::humantime_stamp(),
        FAIL_AT.as_secs(),
        RESTORE_AT.as_secs(),
        crate::bench_failover::CLIENT_TIMEOUT.as_secs(),
        DISRUPTED.as_millis()
    );
    for failure in [Failure::Kill9, Failure::BlackHole] {
        let _ = writeln!(
            md,
            "## {}\n\n| proxy | requests | failed | over 1 s | slowest | disrupted for | fail back |\n| --- | --- | --- | --- | --- | --- | --- |",
            match failure {
                Failure::Kill9 => "kill -9 of the primary",
                Failure::BlackHole => "black hole (the primary's replies dropped in its namespace)",
            }
        );
        for r in runs.iter().filter(|r| r.failure == failure) {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.2} s | {:.2} s | {} |",
                r.peer.name(),
                r.requests,
                r.failed,
                r.slow,
                r.slowest.as_secs_f64(),
                r.disrupted_for.as_secs_f64(),
                r.failback.map_or("not within the run".into(), |d| format!(
                    "{:.2} s",
                    d.as_secs_f64()
                ))
            );
        }
        md.push('\n');
    }
    print!("{md}");
    if only.is_empty() && std::env::var_os("LB_FAILOVER_PEER").is_none() {
        let results = workspace_root().join("bench/results");
        std::fs::create_dir_all(&results)?;
        std::fs::write(results.join("failover-peers.md"), &md)?;
        eprintln!("wrote bench/results/failover-peers.md");
    } else {
        eprintln!("a partial run: bench/results/failover-peers.md left as it was");
    }
    Ok(())
}
