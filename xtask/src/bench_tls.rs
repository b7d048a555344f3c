//! `cargo xtask bench tls`: lb's HTTPS listener against nginx's and HAProxy's, each
//! proxying to the same plain-HTTP origin, measured in one run with interleaved rounds.
//!
//! Three loads, the load generators on core 1 and the proxy alone on core 0:
//! - full handshakes: 4 parallel `openssl s_time -new` (a new session every time, TLS 1.3,
//!   one HTTP/1.0 GET per connection);
//! - resumed handshakes: wrk -c50 with `Connection: close`, so each request is a new TCP
//!   connection; wrk speaks TLS 1.2 and resumes its session on every reconnect (checked
//!   against nginx's `$ssl_session_reused`), so these are abbreviated handshakes;
//! - keep-alive: wrk -c50, 1 KiB responses on long-lived TLS 1.2 connections.
//!
//! All three use the same ECDSA P-256 certificate; the protocol, cipher and key exchange an
//! OpenSSL client negotiates with each (TLS 1.3, and TLS 1.2 as wrk uses) are printed.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    bench::{cpu_us, median, run_wrk},
    workspace_root,
};

#[derive(clap::Args)]
pub struct TlsBenchArgs {
    /// 2 rounds of 3 s (under 2 minutes with a warm build).
    #[arg(long)]
    quick: bool,
    /// Rounds (default 5, quick 2).
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds per measurement (default 8, quick 3).
    #[arg(long)]
    seconds: Option<u64>,
}

const ORIGIN: &str = "127.0.0.1:19381";

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Proxy {
    Lb,
    Nginx,
    Haproxy,
}

impl Proxy {
    const ALL: [Self; 3] = [Self::Lb, Self::Nginx, Self::Haproxy];

    fn name(self) -> &'static str {
        match self {
            Self::Lb => "lb",
            Self::Nginx => "nginx",
            Self::Haproxy => "haproxy",
        }
    }

    fn addr(self) -> &'static str {
        match self {
            Self::Lb => "127.0.0.1:19380",
            Self::Nginx => "127.0.0.1:19382",
            Self::Haproxy => "127.0.0.1:19383",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Load {
    FullHandshakes,
    ResumedHandshakes,
    KeepAlive,
}

impl Load {
    const ALL: [Self; 3] = [
        Self::FullHandshakes,
        Self::ResumedHandshakes,
        Self::KeepAlive,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::FullHandshakes => {
                "full TLS 1.3 handshakes/s (openssl s_time -new x4, one GET per connection)"
            }
            Self::ResumedHandshakes => {
                "resumed TLS 1.2 handshakes/s (wrk -c50, Connection: close, one GET per connection)"
            }
            Self::KeepAlive => "keep-alive requests/s over TLS 1.2 (wrk -c50, 1 KiB)",
        }
    }

    /// Whether this load's client speaks TLS 1.2 (wrk) rather than 1.3 (s_time).
    fn tls12(self) -> bool {
        self != Self::FullHandshakes
    }
}

/// Parallel s_time clients for the full-handshake load.
const S_TIME_CLIENTS: usize = 4;

struct Sample {
    rps: f64,
    cpu_us: f64,
}

pub fn bench_tls(args: TlsBenchArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    crate::bench::ensure_tools()?;
    if Command::new("openssl").arg("version").output().is_err() {
        bail!(
            "openssl (the CLI) is needed to make the benchmark's certificate: apt install openssl"
        );
    }
    crate::bench::build_release()?;
    let rounds = args.rounds.unwrap_or(if args.quick { 2 } else { 5 });
    let secs = args.seconds.unwrap_or(if args.quick { 3 } else { 8 });
    let work = std::env::temp_dir().join(format!("lb-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let mut procs = Procs::default();
    procs.start(&work, &workspace_root())?;
    let negotiated: BTreeMap<(Proxy, bool), String> = Proxy::ALL
        .iter()
        .flat_map(|p| [false, true].map(|tls12| ((*p, tls12), negotiated(*p, tls12))))
        .collect();
    let mut samples: BTreeMap<(Proxy, Load), Vec<Sample>> = BTreeMap::new();
    let total = rounds * Proxy::ALL.len() * Load::ALL.len();
    let mut done = 0;
    for round in 0..rounds {
        let mut order = Proxy::ALL.to_vec();
        order.rotate_left(round % Proxy::ALL.len());
        if round % 2 == 1 {
            order.reverse();
        }
        for p in order {
            for load in Load::ALL {
                done += 1;
                eprintln!(
                    "[{done}/{total}] round {} {:<8} {} ...",
                    round + 1,
                    p.name(),
                    load.label()
                );
                let s = measure(&procs, p, load, secs)?;
                eprintln!(
                    "          {:>10.0} req/s, {:.1} us CPU/req",
                    s.rps, s.cpu_us
                );
                samples.entry((p, load)).or_default().push(s);
            }
        }
    }
    drop(procs);
    let md = report(&samples, &negotiated, rounds, secs, args.quick);
    print!("{md}");
    let results = workspace_root().join("bench/results");
    std::fs::create_dir_all(&results)?;
    std::fs::write(results.join("tls.md"), &md)?;
    eprintln!(
        "wrote bench/results/tls.md in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn report(
    samples: &BTreeMap<(Proxy, Load), Vec<Sample>>,
    negotiated: &BTreeMap<(Proxy, bool), String>,
    rounds: usize,
    secs: u64,
    quick: bool,
) -> String {
    let stat = |p: Proxy, load: Load| {
        let v = &samples[&(p, load)];
        let rps = median(&v.iter().map(|s| s.rps).collect::<Vec<_>>());
        let cpu = median(&v.iter().map(|s| s.cpu_us).collect::<Vec<_>>()).0;
        (rps, cpu)
    };
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# TLS benchmark\n\n`cargo xtask bench tls{}` on {}, {} (median of {rounds} interleaved rounds of {secs} s; min-max in brackets).\n\
         Each proxy has 1 worker on core 0 and terminates TLS for the same plain-HTTP origin (lb-origin, core 1); the load generators run on core 1.\n\
         Same ECDSA P-256 certificate for all; session resumption on (each proxy's default). `negotiated`: what an OpenSSL client gets for the load's TLS version.\n",
        if quick { " --quick" } else { "" },
        crate::bench::humantime_stamp(),
        machine()
    );
    for load in Load::ALL {
        let (nginx, _) = stat(Proxy::Nginx, load);
        let _ = writeln!(
            md,
            "\n## {}\n\n| proxy | requests/s | vs nginx | proxy CPU us/request | negotiated |\n| --- | --- | --- | --- | --- |",
            load.label()
        );
        for p in Proxy::ALL {
            let ((m, lo, hi), cpu) = stat(p, load);
            let _ = writeln!(
                md,
                "| {} | {m:.0} [{lo:.0}-{hi:.0}] | {:.2}x | {cpu:.1} | {} |",
                p.name(),
                m / nginx.0,
                negotiated[&(p, load.tls12())]
            );
        }
    }
    md
}

/// Refuses to start when something already listens on one of `addrs` (a leftover run).
pub(crate) fn ensure_free<'a>(addrs: impl IntoIterator<Item = &'a str>) -> anyhow::Result<()> {
    for addr in addrs {
        if std::net::TcpStream::connect(addr).is_ok() {
            bail!("{addr} is already in use (a leftover from an earlier run?); stop it first");
        }
    }
    Ok(())
}

/// Waits (10 s at most) until every one of `addrs` accepts connections.
pub(crate) fn wait_listening<'a>(addrs: impl IntoIterator<Item = &'a str>) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    for addr in addrs {
        while std::net::TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                bail!("nothing listening on {addr} after 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// The benchmarks' ECDSA P-256 certificate for bench.test and 127.0.0.1, made with the
/// openssl CLI in `work`: (certificate, key, both in one file for HAProxy).
pub(crate) fn bench_certificate(
    work: &Path,
) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)> {
    let (cert, key) = (work.join("cert.pem"), work.join("key.pem"));
    crate::cmd(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "7",
        "-subj",
        "/CN=bench.test",
        "-addext",
        "subjectAltName=DNS:bench.test,IP:127.0.0.1",
        "-keyout",
        key.to_str().unwrap_or_default(),
        "-out",
        cert.to_str().unwrap_or_default(),
    ]))
    .context("making the benchmark certificate")?;
    let combined = work.join("combined.pem");
    std::fs::write(
        &combined,
        [std::fs::read(&cert)?, std::fs::read(&key)?].concat(),
    )?;
    Ok((cert, key, combined))
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, Linux {}", kernel.trim())
}

/// "TLSv1.3 TLS_AES_256_GCM_SHA384 X25519" as an OpenSSL client negotiates it (at most
/// TLS 1.2 with `tls12`).
fn negotiated(p: Proxy, tls12: bool) -> String {
    let mut client = Command::new("openssl");
    client.args([
        "s_client",
        "-brief",
        "-connect",
        p.addr(),
        "-servername",
        "bench.test",
    ]);
    if tls12 {
        client.arg("-tls1_2");
    }
    let out = client.stdin(Stdio::null()).output();
    let Ok(out) = out else {
        return "?".into();
    };
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().split(',').next().unwrap_or("").to_owned())
            .unwrap_or_default()
    };
    format!(
        "{} {} {}",
        field("Protocol version:"),
        field("Ciphersuite:"),
        field("Server Temp Key:")
    )
}

fn measure(procs: &Procs, p: Proxy, load: Load, secs: u64) -> anyhow::Result<Sample> {
    if load == Load::FullHandshakes {
        return measure_full_handshakes(procs, p, secs);
    }
    let (size, close) = match load {
        Load::KeepAlive => (1024, false),
        _ => (0, true),
    };
    let url = format!("https://{}/bench?size={size}", p.addr());
    let pids = procs.set.pids(p);
    let cpu0 = cpu_us(&pids);
    let (rps, requests) = if close {
        run_wrk(&["-H", "Connection: close", &url], secs)?
    } else {
        run_wrk(&[&url], secs)?
    };
    let cpu1 = cpu_us(&pids);
    Ok(Sample {
        rps,
        cpu_us: if requests > 0.0 {
            (cpu1 - cpu0) as f64 / requests
        } else {
            0.0
        },
    })
}

/// `S_TIME_CLIENTS` openssl s_time processes, each opening a new session per connection
/// and sending one GET on it, for `secs`.
fn measure_full_handshakes(procs: &Procs, p: Proxy, secs: u64) -> anyhow::Result<Sample> {
    let pids = procs.set.pids(p);
    let cpu0 = cpu_us(&pids);
    let started = Instant::now();
    let clients: Vec<Child> = (0..S_TIME_CLIENTS)
        .map(|_| {
            Command::new("taskset")
                .args(["-c", "1", "openssl", "s_time", "-connect", p.addr(), "-new"])
                .args(["-www", "/bench?size=0", "-time", &secs.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
        })
        .collect::<Result<_, _>>()
        .context("running openssl s_time")?;
    let mut connections = 0.0;
    for client in clients {
        let out = client.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "1074 connections in 3 real seconds, 114 bytes read per connection"
        connections += text
            .lines()
            .find(|l| l.contains("connections in") && l.contains("real seconds"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("s_time output: {text}"))?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu1 = cpu_us(&pids);
    Ok(Sample {
        rps: connections / elapsed,
        cpu_us: if connections > 0.0 {
            (cpu1 - cpu0) as f64 / connections
        } else {
            0.0
        },
    })
}

#[derive(Default)]
struct Procs {
    set: crate::pinned::Pinned<Proxy>,
}

impl Procs {
    fn start(&mut self, work: &Path, root: &Path) -> anyhow::Result<()> {
        ensure_free(Proxy::ALL.map(Proxy::addr).into_iter().chain([ORIGIN]))?;
        let (cert, key, combined) = bench_certificate(work)?;
        let release = root.join("target/release");
        self.set.spawn(
            None,
            "1",
            &release.join("lb-origin"),
            &["--listen", ORIGIN, "--name", "bench"],
        )?;
        let lb_cfg = work.join("lb.toml");
        std::fs::write(
            &lb_cfg,
            format!(
                "[listener]\naddress = \"127.0.0.1:19389\"\nworkers = 1\npin_workers = false\n\
                 [tls]\naddress = \"{}\"\n[[tls.certificates]]\ncert = \"{}\"\nkey = \"{}\"\n\
                 [observability]\naccess_log = false\n\
                 [[origins]]\nid = \"bench\"\naddress = \"{ORIGIN}\"\nkeepalive_timeout = \"60s\"\n[kernel]\nenabled = false\n",
                Proxy::Lb.addr(),
                cert.display(),
                key.display()
            ),
        )?;
        self.set.spawn(
            Some(Proxy::Lb),
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
        let nginx_cfg = work.join("nginx.conf");
        std::fs::write(
            &nginx_cfg,
            format!(
                "worker_processes 1;\ndaemon off;\npid {w}/nginx.pid;\nerror_log {w}/nginx-error.log warn;\n\
                 events {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  upstream origin {{ server {ORIGIN}; keepalive 64; }}\n\
                 server {{\n    listen {} ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    ssl_protocols TLSv1.2 TLSv1.3;\n\
                 location / {{ proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n  }}\n}}\n",
                Proxy::Nginx.addr(),
                cert.display(),
                key.display(),
                w = work.display()
            ),
        )?;
        self.set.spawn(
            Some(Proxy::Nginx),
            "0",
            Path::new("nginx"),
            &[
                "-c",
                nginx_cfg.to_str().unwrap_or_default(),
                "-e",
                "/dev/null",
            ],
        )?;
        let haproxy_cfg = work.join("haproxy.cfg");
        std::fs::write(
            &haproxy_cfg,
            format!(
                "global\n  nbthread 1\n  maxconn 4000\n  ssl-default-bind-options ssl-min-ver TLSv1.2\n\
                 defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n  http-reuse always\n\
                 frontend fe\n  bind {} ssl crt {} alpn http/1.1\n  default_backend be\nbackend be\n  server o1 {ORIGIN} maxconn 2000\n",
                Proxy::Haproxy.addr(),
                combined.display()
            ),
        )?;
        self.set.spawn(
            Some(Proxy::Haproxy),
            "0",
            Path::new("haproxy"),
            &["-db", "-f", haproxy_cfg.to_str().unwrap_or_default()],
        )?;
        wait_listening(Proxy::ALL.map(Proxy::addr).into_iter().chain([ORIGIN]))
    }
}
