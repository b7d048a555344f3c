//! `cargo xtask bench failover`: steady load through lb to a two-member group while the
//! primary is killed with kill -9 and later restarted; every request's time, status and
//! serving origin are recorded. Run twice, with kernel signals on and off, and written as a
//! timeline SVG (requests per 10 ms bucket per origin, errors in red) plus the time to fail
//! over, the time to fail back and the error count.

use std::{
    fmt::Write as _,
    io::{Read, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::workspace_root;

const LB: &str = "127.0.0.1:19280";
const PRIMARY: &str = "127.0.0.1:19281";
const SECONDARY: &str = "127.0.0.1:19282";
const CLIENTS: usize = 4;
const INTERVAL: Duration = Duration::from_millis(2); // per client: ~2,000 req/s in all
const KILL_AT: Duration = Duration::from_secs(2);
const RESTART_AT: Duration = Duration::from_secs(4);
const RUN_FOR: Duration = Duration::from_secs(7);

/// One request of a load run.
#[derive(Clone)]
pub(crate) struct Sample {
    /// When it was sent, from the start of the run.
    pub(crate) at: Duration,
    /// How long its response took (the client's read timeout if none came).
    pub(crate) took: Duration,
    /// 0: no response (connection error or the client's timeout).
    pub(crate) status: u16,
    pub(crate) origin: String,
    pub(crate) attempts: String,
}

struct Outcome {
    kernel: bool,
    samples: Vec<Sample>,
    failover_ms: f64,
    failback_ms: Option<f64>,
    errors: usize,
}

pub fn bench_failover() -> anyhow::Result<()> {
    crate::bench::build_release()?;
    if std::env::var_os("LB_FAILOVER_TIMELINE_ONLY").is_some() {
        // While investigating the timeline: skip the comparison.
    } else if crate::setup::is_root() {
        crate::bench_failover_peers::compare()?;
        if std::env::var_os("LB_FAILOVER_ONLY").is_some()
            || std::env::var_os("LB_FAILOVER_PEER").is_some()
        {
            return Ok(());
        }
    } else {
        eprintln!(
            "xtask: the black-hole comparison with nginx and HAProxy needs root (a network namespace); skipped"
        );
    }
    let mut outcomes = Vec::new();
    for kernel in [true, false] {
        eprintln!(
            "failover run, kernel signals {}",
            if kernel { "on" } else { "off" }
        );
        outcomes.push(run(kernel)?);
    }
    let mut md = String::from(
        "# Failover timeline\n\n`cargo xtask bench failover`: ~2,000 GETs/s through lb (1 worker) to a group [primary, secondary]; \
        the primary (lb-origin) is killed with kill -9 at 2 s and restarted at 4 s; active checks every 200 ms (100 ms while not healthy), slow start 1 s.\n\n\
        | kernel signals | time to fail over | time to fail back | errors | requests |\n| --- | --- | --- | --- | --- |\n",
    );
    for o in &outcomes {
        let _ = writeln!(
            md,
            "| {} | {:.1} ms | {} | {} | {} |",
            if o.kernel { "on" } else { "off" },
            o.failover_ms,
            o.failback_ms
                .map_or("did not happen".into(), |v| format!("{v:.0} ms")),
            o.errors,
            o.samples.len()
        );
        println!(
            "kernel signals {:<3}: fail over {:.1} ms after the kill, fail back {} after the restart, {} errors in {} requests",
            if o.kernel { "on" } else { "off" },
            o.failover_ms,
            o.failback_ms
                .map_or("never".into(), |v| format!("{v:.0} ms")),
            o.errors,
            o.samples.len()
        );
    }
    md.push_str("\nTime to fail over: from the kill to the last request lb sent to the primary. Time to fail back: from the restart to the first request the primary served.\n\n![timeline](failover.svg)\n");
    let results = workspace_root().join("bench/results");
    std::fs::create_dir_all(&results)?;
    std::fs::write(results.join("failover.md"), md)?;
    std::fs::write(results.join("failover.svg"), svg(&outcomes))?;
    eprintln!("wrote bench/results/failover.md and failover.svg");
    Ok(())
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(program: &str, args: &[&str]) -> anyhow::Result<Kill> {
    let release = workspace_root().join("target/release");
    Ok(Kill(
        Command::new(release.join(program))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {program}"))?,
    ))
}

/// Waits up to 10 s until something accepts connections on `addr`.
pub(crate) fn wait_listening(addr: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on {addr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn run(kernel: bool) -> anyhow::Result<Outcome> {
    let work = std::env::temp_dir().join(format!("lb-failover-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let mut primary = spawn("lb-origin", &["--listen", PRIMARY, "--name", "primary"])?;
    let _secondary = spawn("lb-origin", &["--listen", SECONDARY, "--name", "secondary"])?;
    let kernel_table = if kernel {
        "[kernel]\npin_path = \"/sys/fs/bpf/lb-bench-failover\"\n"
    } else {
        "[kernel]\nenabled = false\n"
    };
    let config = format!(
        "[listener]\naddress = \"{LB}\"\nworkers = 1\n[observability]\naccess_log = false\nattempts_header = true\n\
         [health]\nslow_start = \"1s\"\n\
         [[origins]]\nid = \"primary\"\naddress = \"{PRIMARY}\"\nconnect_timeout = \"300ms\"\nconnection_attempts = 1\n\
         [origins.health_check]\npath = \"/health\"\ninterval = \"200ms\"\nfast_interval = \"100ms\"\ntimeout = \"200ms\"\n\
         [[origins]]\nid = \"secondary\"\naddress = \"{SECONDARY}\"\n\
         [[origin_groups]]\nid = \"site\"\nmembers = [\"primary\", \"secondary\"]\nfailover_status_codes = [500, 502, 503, 504]\n\
         [default_behavior]\ntarget = \"site\"\n{kernel_table}"
    );
    let path = work.join("lb.toml");
    std::fs::write(&path, config)?;
    let _lb = spawn(
        "lb",
        &[
            "run",
            "--config",
            path.to_str().unwrap_or_default(),
            "--log",
            "warn",
        ],
    )?;
    for addr in [PRIMARY, SECONDARY, LB] {
        wait_listening(addr)?;
    }
    std::thread::sleep(Duration::from_millis(500)); // first health checks
    let start = Arc::new(Instant::now());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || client(LB, *start, i, CLIENTS, INTERVAL, RUN_FOR))
        })
        .collect();
    std::thread::sleep(KILL_AT.saturating_sub(start.elapsed()));
    let kill_at = start.elapsed();
    let _ = Command::new("kill")
        .args(["-9", &primary.0.id().to_string()])
        .status();
    let _ = primary.0.wait();
    std::thread::sleep(RESTART_AT.saturating_sub(start.elapsed()));
    let restart_at = start.elapsed();
    let _primary_again = spawn("lb-origin", &["--listen", PRIMARY, "--name", "primary"])?;
    let mut samples: Vec<Sample> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap_or_default())
        .collect();
    samples.sort_by_key(|s| s.at);
    let failover_ms = samples
        .iter()
        .filter(|s| s.at >= kill_at && s.at < restart_at && s.attempts.contains("primary:"))
        .map(|s| s.at)
        .max()
        .map_or(0.0, |last| (last - kill_at).as_secs_f64() * 1000.0);
    let failback_ms = samples
        .iter()
        .find(|s| s.at > restart_at && s.origin == "primary")
        .map(|s| (s.at - restart_at).as_secs_f64() * 1000.0);
    let errors = samples.iter().filter(|s| s.status != 200).count();
    for s in samples.iter().filter(|s| s.status != 200).take(5) {
        eprintln!(
            "  error: sent at {:.3} s, status {} after {:.3} s: {}",
            s.at.as_secs_f64(),
            s.status,
            s.took.as_secs_f64(),
            s.attempts
        );
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(Outcome {
        kernel,
        samples,
        failover_ms,
        failback_ms,
        errors,
    })
}

/// How long a client waits for a response before counting the request as failed.
pub(crate) const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// One keep-alive connection to `addr` (client `index` of `clients`) sending a GET every
/// `interval` until `run_for`, staggered against the other clients.
pub(crate) fn client(
    addr: &str,
    start: Instant,
    index: usize,
    clients: usize,
    interval: Duration,
    run_for: Duration,
) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut stream: Option<TcpStream> = None;
    let mut next = start + interval.mul_f64(index as f64 / clients as f64);
    while next < start + run_for {
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let at = start.elapsed();
        let result = (|| -> std::io::Result<(u16, String, String)> {
            if stream.is_none() {
                let s = TcpStream::connect(addr)?;
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
                stream = Some(s);
            }
            let s = stream.as_mut().expect("just connected");
            s.write_all(b"GET /timeline HTTP/1.1\r\nHost: bench\r\n\r\n")?;
            read_response(s)
        })();
        let took = start.elapsed() - at;
        let sample = match result {
            Ok((status, origin, attempts)) => Sample {
                at,
                took,
                status,
                origin,
                attempts,
            },
            Err(e) => {
                stream = None;
                Sample {
                    at,
                    took,
                    status: 0,
                    origin: "-".into(),
                    attempts: e.to_string(),
                }
            }
        };
        out.push(sample);
        // A request that took longer than the interval delays the next one (a client
        // waits for its answer), as a real client would.
        next = (next + interval).max(Instant::now());
    }
    out
}

/// Reads one response with a Content-Length body; returns status, x-origin, x-lb-attempts.
pub(crate) fn read_response(s: &mut TcpStream) -> std::io::Result<(u16, String, String)> {
    let mut buf = Vec::with_capacity(512);
    let mut byte = [0u8; 512];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut byte)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&byte[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "-".into())
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let len: usize = header("content-length:").parse().unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut byte)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&byte[..n]);
    }
    Ok((status, header("x-origin:"), header("x-lb-attempts:")))
}

/// Two stacked panels (kernel on, off): served requests per 10 ms bucket for each origin,
/// errors in red, dashed lines at the kill and the restart.
fn svg(outcomes: &[Outcome]) -> String {
    let (w, panel_h, left, top) = (900.0, 180.0, 50.0, 30.0);
    let buckets = (RUN_FOR.as_millis() / 10) as usize;
    let x = |ms: f64| left + (w - left - 20.0) * ms / RUN_FOR.as_millis() as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"11\">\n",
        top + panel_h * outcomes.len() as f64 + 30.0
    );
    let _ = writeln!(
        out,
        "<text x=\"{left}\" y=\"18\" font-size=\"14\">requests per 10 ms by serving origin (blue primary, green secondary, red errors); kill -9 at 2 s, restart at 4 s</text>"
    );
    for (p, o) in outcomes.iter().enumerate() {
        let y0 = top + p as f64 * panel_h;
        let mut counts = vec![[0u32; 3]; buckets];
        for s in &o.samples {
            let b = ((s.at.as_millis() / 10) as usize).min(buckets - 1);
            let k = match (s.status, s.origin.as_str()) {
                (200, "primary") => 0,
                (200, _) => 1,
                _ => 2,
            };
            counts[b][k] += 1;
        }
        let max = counts
            .iter()
            .flat_map(|c| c.iter())
            .copied()
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let y = |v: u32| y0 + panel_h - 20.0 - (panel_h - 40.0) * f64::from(v) / max;
        for (k, color) in ["#1f77b4", "#2ca02c", "#d62728"].iter().enumerate() {
            let points: String = counts
                .iter()
                .enumerate()
                .map(|(b, c)| format!("{:.1},{:.1} ", x(b as f64 * 10.0), y(c[k])))
                .collect();
            let _ = writeln!(
                out,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1\" points=\"{points}\"/>"
            );
        }
        for at in [KILL_AT, RESTART_AT] {
            let xv = x(at.as_millis() as f64);
            let _ = writeln!(
                out,
                "<line x1=\"{xv}\" x2=\"{xv}\" y1=\"{}\" y2=\"{}\" stroke=\"#555\" stroke-dasharray=\"4 3\"/>",
                y0 + 10.0,
                y0 + panel_h - 20.0
            );
        }
        let _ = writeln!(
            out,
            "<text x=\"{left}\" y=\"{}\">kernel signals {}: fail over {:.1} ms, fail back {}, {} errors</text>",
            y0 + 12.0,
            if o.kernel { "on" } else { "off" },
            o.failover_ms,
            o.failback_ms
                .map_or("never".into(), |v| format!("{v:.0} ms")),
            o.errors
        );
    }
    out.push_str("</svg>\n");
    out
}
