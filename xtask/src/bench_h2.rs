//! `cargo xtask bench h2`: HTTP/2 frontends, lb against nginx and HAProxy, each with one
//! worker on core 0 proxying to the same HTTP/1.1 origin (lb-origin, core 1), over TLS
//! (ALPN h2) and cleartext (prior knowledge), measured in one run with interleaved
//! rounds. Throughput and CPU per request come from h2load (10 connections x 10
//! streams, 1 KiB responses); p99 at a fixed rate from oha over HTTP/2 (latency
//! corrected). The load generators run on core 1.

use std::{collections::BTreeMap, fmt::Write as _, path::Path, process::Command, time::Instant};

use anyhow::{Context as _, bail};

use crate::{
    bench::{cpu_us, median},
    workspace_root,
};

#[derive(clap::Args)]
pub struct H2BenchArgs {
    /// 2 rounds of 3 s.
    #[arg(long)]
    quick: bool,
    /// Rounds (default 5, quick 2).
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds per measurement (default 8, quick 3).
    #[arg(long)]
    seconds: Option<u64>,
    /// The fixed rate for the latency measurement, requests/s.
    #[arg(long, default_value_t = 5000.0)]
    rate: f64,
}

const ORIGIN: &str = "127.0.0.1:19486";

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

    /// (cleartext h2c, TLS h2)
    fn addrs(self) -> (&'static str, &'static str) {
        match self {
            Self::Lb => ("127.0.0.1:19480", "127.0.0.1:19481"),
            Self::Nginx => ("127.0.0.1:19482", "127.0.0.1:19483"),
            Self::Haproxy => ("127.0.0.1:19484", "127.0.0.1:19485"),
        }
    }

    fn url(self, tls: bool) -> String {
        let (plain, secure) = self.addrs();
        if tls {
            format!("https://{secure}/bench?size=1024")
        } else {
            format!("http://{plain}/bench?size=1024")
        }
    }
}

struct Sample {
    rps: f64,
    cpu_us: f64,
    p99_ms: f64,
}

pub fn bench_h2(args: H2BenchArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    crate::bench::ensure_tools()?;
    for (tool, package) in [("h2load", "nghttp2-client"), ("openssl", "openssl")] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            bail!("{tool} is missing: apt install {package}");
        }
    }
    let oha = crate::bench::oha_path()?;
    crate::bench::build_release()?;
    let rounds = args.rounds.unwrap_or(if args.quick { 2 } else { 5 });
    let secs = args.seconds.unwrap_or(if args.quick { 3 } else { 8 });
    let work = std::env::temp_dir().join(format!("lb-bench-h2-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let mut procs = Procs::default();
    procs.start(&work, &workspace_root())?;
    let mut samples: BTreeMap<(Proxy, bool), Vec<Sample>> = BTreeMap::new();
    let total = rounds * Proxy::ALL.len() * 2;
    let mut done = 0;
    for round in 0..rounds {
        let mut order = Proxy::ALL.to_vec();
        order.rotate_left(round % Proxy::ALL.len());
        for p in order {
            for tls in [true, false] {
                done += 1;
                eprintln!(
                    "[{done}/{total}] round {} {:<8} {} ...",
                    round + 1,
                    p.name(),
                    if tls { "h2 (TLS)" } else { "h2c" }
                );
                let s = measure(&procs, &oha, p, tls, secs, args.rate)?;
                eprintln!(
                    "          {:>10.0} req/s, {:.1} us CPU/req, p99 {:.2} ms at {} req/s",
                    s.rps, s.cpu_us, s.p99_ms, args.rate
                );
                samples.entry((p, tls)).or_default().push(s);
            }
        }
    }
    drop(procs);
    let md = report(&samples, rounds, secs, args.rate, args.quick);
    print!("{md}");
    let results = workspace_root().join("bench/results");
    std::fs::create_dir_all(&results)?;
    std::fs::write(results.join("h2.md"), &md)?;
    eprintln!(
        "wrote bench/results/h2.md in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn report(
    samples: &BTreeMap<(Proxy, bool), Vec<Sample>>,
    rounds: usize,
    secs: u64,
    rate: f64,
    quick: bool,
) -> String {
    let stat = |p: Proxy, tls: bool| {
        let v = &samples[&(p, tls)];
        (
            median(&v.iter().map(|s| s.rps).collect::<Vec<_>>()),
            median(&v.iter().map(|s| s.cpu_us).collect::<Vec<_>>()).0,
            median(&v.iter().map(|s| s.p99_ms).collect::<Vec<_>>()).0,
        )
    };
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# HTTP/2 benchmark\n\n`cargo xtask bench h2{}` on {} (median of {rounds} interleaved rounds of {secs} s; min-max in brackets).\n\
         Each proxy has 1 worker on core 0 and proxies HTTP/2 viewers to the same HTTP/1.1 origin (lb-origin, core 1, 1 KiB responses); the load generators run on core 1.\n\
         Throughput: h2load, 10 connections x 10 concurrent streams. p99: oha over HTTP/2 at a fixed {rate} requests/s (latency-corrected).\n",
        if quick { " --quick" } else { "" },
        crate::bench::humantime_stamp(),
    );
    for tls in [true, false] {
        let ((nginx, _, _), _, _) = stat(Proxy::Nginx, tls);
        let _ = writeln!(
            md,
            "\n## {}\n\n| proxy | requests/s | vs nginx | proxy CPU us/request | p99 ms at {rate} req/s |\n| --- | --- | --- | --- | --- |",
            if tls {
                "HTTP/2 over TLS (ALPN h2)"
            } else {
                "cleartext HTTP/2 (prior knowledge)"
            }
        );
        for p in Proxy::ALL {
            let ((m, lo, hi), cpu, p99) = stat(p, tls);
            let _ = writeln!(
                md,
                "| {} | {m:.0} [{lo:.0}-{hi:.0}] | {:.2}x | {cpu:.1} | {p99:.2} |",
                p.name(),
                m / nginx
            );
        }
    }
    md
}

fn measure(
    procs: &Procs,
    oha: &Path,
    p: Proxy,
    tls: bool,
    secs: u64,
    rate: f64,
) -> anyhow::Result<Sample> {
    let url = p.url(tls);
    let pids = procs.set.pids(p);
    let cpu0 = cpu_us(&pids);
    let out = Command::new("taskset")
        .args(["-c", "1", "h2load", "-c", "10", "-m", "10", "-D"])
        .arg(secs.to_string())
        .arg(&url)
        .output()
        .context("running h2load")?;
    let cpu1 = cpu_us(&pids);
    let text = String::from_utf8_lossy(&out.stdout);
    // "finished in 3.00s, 41234.33 req/s, 44.10MB/s"
    let rps: f64 = text
        .lines()
        .find(|l| l.starts_with("finished in"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("h2load output: {text}"))?;
    // "requests: 123 total, 123 started, 123 done, 123 succeeded, 0 failed, ..."
    let succeeded: f64 = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .and_then(|l| {
            l.split(", ")
                .find(|f| f.ends_with("succeeded"))
                .and_then(|f| f.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0);
    // "status codes: 123 2xx, 0 3xx, 0 4xx, 0 5xx": only 2xx answers count.
    let ok: f64 = text
        .lines()
        .find(|l| l.starts_with("status codes:"))
        .and_then(|l| l.trim_start_matches("status codes:").split(", ").next())
        .and_then(|f| f.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    if ok == 0.0 || ok < succeeded {
        bail!(
            "h2load against {}: {ok} of {succeeded} answers were 2xx:\n{text}",
            p.name()
        );
    }
    let oha_out = Command::new("taskset")
        .arg("-c")
        .arg("1")
        .arg(oha)
        .args(["--http2", "--insecure", "-z"])
        .arg(format!("{secs}s"))
        .args(["-q", &rate.to_string(), "-c", "10", "-p", "10"])
        .args([
            "--latency-correction",
            "--no-tui",
            "--output-format",
            "json",
        ])
        .arg(&url)
        .output()
        .context("running oha")?;
    let doc: serde_json::Value =
        serde_json::from_slice(&oha_out.stdout).context("oha JSON output")?;
    let p99_ms = doc["latencyPercentiles"]["p99"]
        .as_f64()
        .map(|s| s * 1000.0)
        .context("oha p99")?;
    Ok(Sample {
        rps,
        cpu_us: (cpu1 - cpu0) as f64 / succeeded,
        p99_ms,
    })
}

#[derive(Default)]
struct Procs {
    set: crate::pinned::Pinned<Proxy>,
}

impl Procs {
    fn start(&mut self, work: &Path, root: &Path) -> anyhow::Result<()> {
        let all_addrs = || {
            Proxy::ALL
                .iter()
                .flat_map(|p| [p.addrs().0, p.addrs().1])
                .chain([ORIGIN])
                .collect::<Vec<_>>()
        };
        crate::bench_tls::ensure_free(all_addrs())?;
        let (cert, key, combined) = crate::bench_tls::bench_certificate(work)?;
        let release = root.join("target/release");
        self.set.spawn(
            None,
            "1",
            &release.join("lb-origin"),
            &["--listen", ORIGIN, "--name", "bench"],
        )?;
        let (lb_plain, lb_tls) = Proxy::Lb.addrs();
        let lb_cfg = work.join("lb.toml");
        std::fs::write(
            &lb_cfg,
            format!(
                "[listener]\naddress = \"{lb_plain}\"\nworkers = 1\npin_workers = false\n\
                 [tls]\naddress = \"{lb_tls}\"\n[[tls.certificates]]\ncert = \"{}\"\nkey = \"{}\"\n\
                 [observability]\naccess_log = false\n\
                 [[origins]]\nid = \"bench\"\naddress = \"{ORIGIN}\"\nkeepalive_timeout = \"60s\"\n[kernel]\nenabled = false\n",
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
        let (nginx_plain, nginx_tls) = Proxy::Nginx.addrs();
        let nginx_cfg = work.join("nginx.conf");
        std::fs::write(
            &nginx_cfg,
            format!(
                "worker_processes 1;\ndaemon off;\npid {w}/nginx.pid;\nerror_log {w}/nginx-error.log warn;\n\
                 events {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  keepalive_requests 100000000;\n  upstream origin {{ server {ORIGIN}; keepalive 64; }}\n\
                 server {{\n    listen {nginx_plain} http2;\n    listen {nginx_tls} ssl http2;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    ssl_protocols TLSv1.2 TLSv1.3;\n\
                 location / {{ proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n  }}\n}}\n",
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
        let (haproxy_plain, haproxy_tls) = Proxy::Haproxy.addrs();
        let haproxy_cfg = work.join("haproxy.cfg");
        std::fs::write(
            &haproxy_cfg,
            format!(
                "global\n  nbthread 1\n  maxconn 4000\n  ssl-default-bind-options ssl-min-ver TLSv1.2\n\
                 defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n  http-reuse always\n\
                 frontend fe\n  bind {haproxy_plain} proto h2\n  bind {haproxy_tls} ssl crt {} alpn h2,http/1.1\n  default_backend be\nbackend be\n  server o1 {ORIGIN} maxconn 2000\n",
                combined.display()
            ),
        )?;
        self.set.spawn(
            Some(Proxy::Haproxy),
            "0",
            Path::new("haproxy"),
            &["-db", "-f", haproxy_cfg.to_str().unwrap_or_default()],
        )?;
        crate::bench_tls::wait_listening(all_addrs())
    }
}
