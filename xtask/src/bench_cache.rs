//! `cargo xtask bench cache`: lb's cache against nginx `proxy_cache` and Varnish, in one
//! run.
//!
//! Every cache gets one core (core 0: lb with 1 worker, nginx with 1 worker process,
//! Varnish with all of its threads); lb-origin and the load generator share core 1.
//!
//! 1. **Hits.** The same objects (1 KiB, 64 KiB, 1 MiB, `Cache-Control: max-age=3600`)
//!    are fetched once through each cache, then wrk -t1 -c50 asks for them for `seconds`,
//!    in interleaved rounds. Reported: requests/s (median, min-max), CPU microseconds per
//!    hit (/proc/PID/stat of all the cache's processes) and the requests that reached the
//!    origin meanwhile (0 means every answer was a hit).
//! 2. **Stale on error.** 20 objects of 1 KiB with `max-age=1` are stored by each cache
//!    and left to expire; then the origin fails three ways in turn (a 503 storm, a crash:
//!    connections refused, a black hole: connections accepted by the kernel and never
//!    answered) and each cache is asked for each object once per phase. Reported: errors
//!    (anything but a 200 with the whole body) and latency (median and max), since a
//!    stale answer that waits for a timeout is a slow answer. Each is configured for it:
//!    lb `stale_if_error` with a 1 s response timeout (a group needs two members: both
//!    are the one origin, so every member fails, as the others see it); nginx `proxy_cache_use_stale error
//!    timeout http_500..504` with 1 s timeouts; Varnish `beresp.grace = 1h` (a stale
//!    object is served while a background fetch runs) and background fetches that fail
//!    abandoned, with a 1 s first-byte timeout.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::bench::{cpu_us, median, run_wrk};

const ORIGIN: &str = "127.0.0.1:19191";
const SIZES: [(&str, u64); 3] = [("1k", 1024), ("64k", 64 * 1024), ("1m", 1024 * 1024)];
const STALE_OBJECTS: usize = 20;

#[derive(clap::Args)]
pub struct CacheBenchArgs {
    /// One round of 3 s per cache and size: about 2 minutes.
    #[arg(long)]
    quick: bool,
    /// Rounds (default 3, quick 1).
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds per measurement (default 6, quick 3).
    #[arg(long)]
    seconds: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Cache {
    Lb,
    Nginx,
    Varnish,
}

impl Cache {
    const ALL: [Self; 3] = [Self::Lb, Self::Nginx, Self::Varnish];

    fn name(self) -> &'static str {
        match self {
            Self::Lb => "lb",
            Self::Nginx => "nginx",
            Self::Varnish => "varnish",
        }
    }

    fn addr(self) -> &'static str {
        match self {
            Self::Lb => "127.0.0.1:19190",
            Self::Nginx => "127.0.0.1:19192",
            Self::Varnish => "127.0.0.1:19193",
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Failure {
    Storm503,
    Crash,
    BlackHole,
}

impl Failure {
    const ALL: [Self; 3] = [Self::Storm503, Self::Crash, Self::BlackHole];

    fn name(self) -> &'static str {
        match self {
            Self::Storm503 => "503 storm",
            Self::Crash => "crash (refused)",
            Self::BlackHole => "black hole",
        }
    }
}

struct Hits {
    rps: f64,
    cpu_us_per_hit: f64,
    origin_requests: u64,
}

struct Stale {
    errors: usize,
    p50_ms: f64,
    max_ms: f64,
}

pub fn bench_cache(args: CacheBenchArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    crate::bench::ensure_tools()?;
    ensure_varnish()?;
    crate::bench::build_release()?;
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 });
    let secs = args.seconds.unwrap_or(if args.quick { 3 } else { 6 });
    let root = crate::workspace_root();
    let work = std::env::temp_dir().join(format!("lb-bench-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let mut procs = crate::pinned::Pinned::<Option<Cache>>::default();
    let release = root.join("target/release");
    let origin = |procs: &mut crate::pinned::Pinned<Option<Cache>>| {
        procs.spawn(
            Some(None),
            "1",
            &release.join("lb-origin"),
            &["--listen", ORIGIN, "--name", "bench"],
        )
    };
    origin(&mut procs)?;
    start_caches(&mut procs, &work, &release)?;
    wait_listening(ORIGIN)?;
    for c in Cache::ALL {
        wait_listening(c.addr())?;
    }

    // 1. Hits.
    for c in Cache::ALL {
        for (_, bytes) in SIZES {
            let r = fetch(c.addr(), &hit_path(bytes))?;
            if r.status != 200 || r.body != bytes as usize {
                bail!("{}: warm-up of {bytes} bytes got {r:?}", c.name());
            }
        }
    }
    let mut hits: BTreeMap<(Cache, &str), Vec<Hits>> = BTreeMap::new();
    let total = rounds * SIZES.len() * Cache::ALL.len();
    let mut done = 0;
    for round in 0..rounds {
        for (size, bytes) in SIZES {
            let mut order = Cache::ALL.to_vec();
            order.rotate_left(round % Cache::ALL.len());
            for c in order {
                done += 1;
                eprintln!("[{done}/{total}] hits {size:>3} {:<8} ...", c.name());
                let pids = procs.pids(Some(c));
                let url = format!("http://{}{}", c.addr(), hit_path(bytes));
                let (cpu0, origin0) = (cpu_us(&pids), origin_requests()?);
                let (rps, requests) = run_wrk(&[&url], secs)?;
                let (cpu1, origin1) = (cpu_us(&pids), origin_requests()?);
                eprintln!("          {rps:>10.0} req/s");
                hits.entry((c, size)).or_default().push(Hits {
                    rps,
                    cpu_us_per_hit: (cpu1 - cpu0) as f64 / requests.max(1.0),
                    // Less the stats request that read `origin0`.
                    origin_requests: origin1.saturating_sub(origin0 + 1),
                });
            }
        }
    }

    // 2. Stale on error.
    for c in Cache::ALL {
        for i in 0..STALE_OBJECTS {
            let r = fetch(c.addr(), &stale_path(i))?;
            if r.status != 200 {
                bail!("{}: filling stale object {i} got {r:?}", c.name());
            }
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    let mut stale: BTreeMap<(Cache, &str), Stale> = BTreeMap::new();
    let mut hole = None;
    for failure in Failure::ALL {
        match failure {
            Failure::Storm503 => {
                fetch(ORIGIN, "/_control?status=503")?;
            }
            Failure::Crash => procs.stop(None),
            Failure::BlackHole => {
                // A listening socket nobody accepts from: the kernel completes handshakes
                // into the backlog and nothing ever answers.
                hole = Some(TcpListener::bind(ORIGIN).context("binding the black hole")?);
            }
        }
        // Let pooled connections to the old origin see their end first.
        std::thread::sleep(Duration::from_millis(300));
        for c in Cache::ALL {
            eprintln!("stale on error: {:<16} {:<8} ...", failure.name(), c.name());
            let mut took = Vec::with_capacity(STALE_OBJECTS);
            let mut errors = 0;
            for i in 0..STALE_OBJECTS {
                let t0 = Instant::now();
                match fetch(c.addr(), &stale_path(i)) {
                    Ok(r) if r.status == 200 && r.body == 1024 => {}
                    _ => errors += 1,
                }
                took.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
            let (p50, _, max) = median(&took);
            eprintln!("          {errors} errors, p50 {p50:.1} ms, max {max:.1} ms");
            stale.insert(
                (c, failure.name()),
                Stale {
                    errors,
                    p50_ms: p50,
                    max_ms: max,
                },
            );
        }
    }
    drop(hole);
    drop(procs);

    let md = report(&hits, &stale, rounds, secs);
    print!("{md}");
    let results = root.join("bench/results");
    std::fs::create_dir_all(&results)?;
    std::fs::write(results.join("cache.md"), &md)?;
    eprintln!(
        "wrote bench/results/cache.md in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn hit_path(bytes: u64) -> String {
    format!("/hit?size={bytes}&cc=max-age=3600")
}

fn stale_path(i: usize) -> String {
    format!("/stale/{i}?size=1024&cc=max-age=1")
}

fn ensure_varnish() -> anyhow::Result<()> {
    if Path::new("/usr/sbin/varnishd").exists() {
        return Ok(());
    }
    if !crate::setup::is_root() {
        bail!("varnishd is missing: run `sudo apt-get install -y varnish`");
    }
    crate::cmd(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "varnish"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context("installing varnish")
}

fn start_caches(
    procs: &mut crate::pinned::Pinned<Option<Cache>>,
    work: &Path,
    release: &Path,
) -> anyhow::Result<()> {
    for c in Cache::ALL {
        if TcpStream::connect(c.addr()).is_ok() {
            bail!("{} is already in use; stop it first", c.addr());
        }
    }
    let lb_cfg = work.join("lb.toml");
    std::fs::write(
        &lb_cfg,
        format!(
            "[listener]\naddress = \"{}\"\nworkers = 1\npin_workers = false\n\
             [observability]\naccess_log = false\n[kernel]\nenabled = false\n\
             [health]\npassive_failures = 2\n\
             [[origins]]\nid = \"bench\"\naddress = \"{ORIGIN}\"\nkeepalive_timeout = \"60s\"\n\
             connect_timeout = \"1s\"\nconnection_attempts = 1\nresponse_timeout = \"1s\"\n\
             [[origins]]\nid = \"bench-again\"\naddress = \"{ORIGIN}\"\nkeepalive_timeout = \"60s\"\n\
             connect_timeout = \"1s\"\nconnection_attempts = 1\nresponse_timeout = \"1s\"\n\
             [[origin_groups]]\nid = \"site\"\nmembers = [\"bench\", \"bench-again\"]\nfailover_status_codes = [500, 502, 503, 504]\n\
             [default_behavior]\ntarget = \"site\"\n[default_behavior.cache]\nquery = \"all\"\nstale_if_error = \"1h\"\n",
            Cache::Lb.addr()
        ),
    )?;
    procs.spawn(
        Some(Some(Cache::Lb)),
        "0",
        &release.join("lb"),
        &[
            "run",
            "--config",
            &lb_cfg.to_string_lossy(),
            "--log",
            "warn",
        ],
    )?;
    let nginx_cfg = work.join("nginx.conf");
    std::fs::write(
        &nginx_cfg,
        format!(
            "worker_processes 1;\ndaemon off;\npid {w}/nginx.pid;\nerror_log {w}/nginx-error.log warn;\n\
             events {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n\
             proxy_cache_path {w}/nginx-cache levels=1:2 keys_zone=c:64m max_size=1g inactive=1h use_temp_path=off;\n\
             upstream origin {{ server {ORIGIN} max_fails=0; keepalive 64; }}\n\
             server {{\n    listen {};\n    location / {{\n      proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection \"\";\n\
             proxy_cache c; proxy_cache_use_stale error timeout http_500 http_502 http_503 http_504;\n\
             proxy_cache_lock on; proxy_connect_timeout 1s; proxy_read_timeout 1s;\n    }}\n  }}\n}}\n",
            Cache::Nginx.addr(),
            w = work.display()
        ),
    )?;
    procs.spawn(
        Some(Some(Cache::Nginx)),
        "0",
        Path::new("nginx"),
        &["-c", &nginx_cfg.to_string_lossy(), "-e", "/dev/null"],
    )?;
    let (host, port) = ORIGIN.split_once(':').unwrap_or((ORIGIN, "80"));
    let vcl = work.join("bench.vcl");
    std::fs::write(
        &vcl,
        format!(
            "vcl 4.1;\nbackend origin {{ .host = \"{host}\"; .port = \"{port}\"; .connect_timeout = 1s; .first_byte_timeout = 1s; }}\n\
             sub vcl_backend_response {{\n  if (beresp.status >= 500 && bereq.is_bgfetch) {{ return (abandon); }}\n  set beresp.grace = 1h;\n}}\n\
             sub vcl_backend_error {{\n  if (bereq.is_bgfetch) {{ return (abandon); }}\n}}\n"
        ),
    )?;
    procs.spawn(
        Some(Some(Cache::Varnish)),
        "0",
        Path::new("/usr/sbin/varnishd"),
        &[
            "-F",
            "-j",
            "none",
            "-a",
            Cache::Varnish.addr(),
            "-f",
            &vcl.to_string_lossy(),
            "-n",
            &work.join("varnish").to_string_lossy(),
            "-s",
            "malloc,256m",
            "-p",
            "thread_pools=1",
        ],
    )?;
    Ok(())
}

fn wait_listening(addr: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on {addr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[derive(Debug)]
struct Fetched {
    status: u16,
    body: usize,
}

/// One GET on a new connection (`Connection: close`), read to the end (10 s at most).
fn fetch(addr: &str, path: &str) -> anyhow::Result<Fetched> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )?;
    let mut got = Vec::new();
    s.read_to_end(&mut got)?;
    let end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no response head")?;
    let head = String::from_utf8_lossy(&got[..end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("status line")?;
    Ok(Fetched {
        status,
        body: got.len() - end - 4,
    })
}

fn origin_requests() -> anyhow::Result<u64> {
    let mut s = TcpStream::connect(ORIGIN)?;
    s.write_all(b"GET /_control/stats HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    let n: u64 = body
        .split("\"requests\":")
        .nth(1)
        .and_then(|r| r.split('}').next())
        .and_then(|v| v.trim().parse().ok())
        .context("origin stats")?;
    Ok(n)
}

fn report(
    hits: &BTreeMap<(Cache, &str), Vec<Hits>>,
    stale: &BTreeMap<(Cache, &str), Stale>,
    rounds: usize,
    secs: u64,
) -> String {
    let mut out = format!(
        "# Cache benchmark ({})\n\n`cargo xtask bench cache`: lb vs nginx `proxy_cache` vs Varnish, one core each \
         (core 0), lb-origin and wrk -t1 -c50 on core 1; {rounds} interleaved round(s) of {secs} s.\n\n\
         ## Hits\n\n| size | cache | req/s (median) | (min-max) | x nginx | x varnish | CPU µs per hit | origin requests |\n\
         | --- | --- | ---: | --- | ---: | ---: | ---: | ---: |\n",
        crate::bench::humantime_stamp()
    );
    for (size, _) in SIZES {
        let rps = |c: Cache| median(&hits[&(c, size)].iter().map(|h| h.rps).collect::<Vec<_>>());
        let (nginx, varnish) = (rps(Cache::Nginx).0, rps(Cache::Varnish).0);
        for c in Cache::ALL {
            let runs = &hits[&(c, size)];
            let (m, lo, hi) = rps(c);
            let cpu = median(&runs.iter().map(|h| h.cpu_us_per_hit).collect::<Vec<_>>()).0;
            let origin: u64 = runs.iter().map(|h| h.origin_requests).sum();
            let _ = writeln!(
                out,
                "| {size} | {} | {m:.0} | ({lo:.0}-{hi:.0}) | {:.2} | {:.2} | {cpu:.1} | {origin} |",
                c.name(),
                m / nginx,
                m / varnish
            );
        }
    }
    let _ = write!(
        out,
        "\n## Stale on error\n\n{STALE_OBJECTS} expired 1 KiB objects, each asked for once per phase, in this order.\n\n\
         | origin failure | cache | errors | p50 ms | max ms |\n| --- | --- | ---: | ---: | ---: |\n"
    );
    for failure in Failure::ALL {
        for c in Cache::ALL {
            if let Some(s) = stale.get(&(c, failure.name())) {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {:.1} | {:.1} |",
                    failure.name(),
                    c.name(),
                    s.errors,
                    s.p50_ms,
                    s.max_ms
                );
            }
        }
    }
    out
}
