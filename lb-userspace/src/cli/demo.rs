//! `lb demo`: the embedded default. lb in front of two local origins in one failover
//! group, and a client that sends a request every 200 ms while the primary misbehaves:
//!
//! 1. healthy: every request is served by the primary;
//! 2. the primary answers 503: each request fails over to the secondary within itself;
//! 3. the primary crashes (its port closes): lb stops trying it after the first refused
//!    connect (the kernel's socket event, when the kernel programs are loaded; passive
//!    ejection otherwise);
//! 4. the primary comes back: traffic returns to it.
//!
//! Each line shows which origin served the request and the attempts lb made.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use lb_origin::Origin as TestOrigin;

use super::run;
use crate::config::{Config, embedded};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Seconds per phase.
    #[arg(long, default_value_t = 2.0)]
    pub phase_seconds: f64,
    /// Where lb listens during the demo (try curl on it).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Where the kernel maps are pinned while the demo runs (see `lb maps --pin-path`).
    #[arg(long, default_value = "/sys/fs/bpf/lb-demo")]
    pub pin_path: PathBuf,
}

const DEMO_CONFIG: &str = r#"
[listener]
address = "LISTEN"
workers = 1
drain_timeout = "1s"

[observability]
access_log = false
attempts_header = true

[health]
slow_start = "1s"
ejection_time = "1s"

[[origins]]
id = "primary"
address = "PRIMARY"
connect_timeout = "500ms"
connection_attempts = 1
response_timeout = "2s"
[origins.custom_headers]
X-Served-Via = "lb-demo primary"
[origins.health_check]
path = "/health"
interval = "500ms"
fast_interval = "100ms"
timeout = "200ms"

[[origins]]
id = "secondary"
address = "SECONDARY"
connect_timeout = "500ms"
connection_attempts = 1
response_timeout = "2s"

[[origin_groups]]
id = "site"
members = ["primary", "secondary"]
failover_status_codes = [500, 502, 503, 504]

[default_behavior]
target = "site"

[kernel]
pin_path = "PIN"
"#;

pub fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    crate::fd_limit::raise_to_hard();
    let any: SocketAddr = "127.0.0.1:0".parse().expect("valid");
    let primary = TestOrigin::start("primary", any)?;
    let primary_addr = primary.addr();
    let secondary = TestOrigin::start("secondary", any)?;
    let text = DEMO_CONFIG
        .replace("LISTEN", &args.listen.to_string())
        .replace("PRIMARY", &primary_addr.to_string())
        .replace("SECONDARY", &secondary.addr().to_string())
        .replace("PIN", &args.pin_path.display().to_string());
    let config = Config::parse(&text, &embedded("demo config"))?;
    let running = run::start(config, None)?;
    let lb = running.data_plane.local_addr();
    println!(
        "lb demo: lb listens on {lb}; group `site` = [primary {primary_addr}, secondary {}]",
        secondary.addr()
    );
    println!("          failover on 500/502/503/504, connection failures and timeouts\n");

    let phase = Duration::from_secs_f64(args.phase_seconds.max(0.5));
    let start = Instant::now();
    let mut primary = Some(primary);
    let mut events: Vec<(&str, Instant)> = Vec::new();
    let mut first_after: Vec<Option<Duration>> = vec![None; 4];
    let mut step = 0;
    while step < 4 {
        let elapsed = start.elapsed();
        let want = (elapsed.as_secs_f64() / phase.as_secs_f64()) as usize;
        if want > step || (step == 0 && events.is_empty()) {
            if want > step {
                step = want;
            }
            if step >= 4 {
                break;
            }
            let (banner, action) = match step {
                0 => ("phase 1: both origins healthy", "healthy"),
                1 => ("phase 2: primary answers 503 to everything", "503"),
                2 => ("phase 3: primary crashes (port closed)", "crash"),
                _ => ("phase 4: primary is back", "recovered"),
            };
            match action {
                "503" => primary
                    .as_ref()
                    .expect("running")
                    .set_forced_status(Some(503)),
                "crash" => {
                    if let Some(p) = primary.take() {
                        p.stop();
                    }
                }
                "recovered" => primary = Some(TestOrigin::start("primary", primary_addr)?),
                _ => {}
            }
            println!("--- {banner} ---");
            events.push((action, Instant::now()));
        }
        let sent = Instant::now();
        let line = match get(lb) {
            Ok((status, served_by, attempts)) => {
                let since = sent.duration_since(events.last().expect("a phase started").1);
                if first_after[step].is_none() && expected(step, &served_by) {
                    first_after[step] = Some(since);
                }
                format!(
                    "t={:>5.2}s  {status} from {served_by:<9}  {:>4.1} ms  attempts {attempts}",
                    start.elapsed().as_secs_f64(),
                    sent.elapsed().as_secs_f64() * 1000.0
                )
            }
            Err(e) => format!(
                "t={:>5.2}s  request failed: {e}",
                start.elapsed().as_secs_f64()
            ),
        };
        println!("{line}");
        std::thread::sleep(Duration::from_millis(200).saturating_sub(sent.elapsed()));
    }
    println!();
    let show = |i: usize, what: &str| match first_after[i] {
        Some(d) => println!("{what}: {:.0} ms", d.as_secs_f64() * 1000.0),
        None => println!("{what}: did not happen within the phase"),
    };
    show(1, "primary 503 -> first request served by the secondary");
    show(2, "primary crash -> first request served by the secondary");
    show(
        3,
        "primary back -> first request served by the primary again",
    );
    let failovers: u64 = running
        .current
        .load()
        .metrics
        .failovers()
        .iter()
        .map(|(_, _, n)| n)
        .sum();
    println!(
        "failovers counted: {failovers} (by reason: {})",
        reasons(&running)
    );
    running.stop();
    Ok(ExitCode::SUCCESS)
}

fn expected(step: usize, served_by: &str) -> bool {
    match step {
        1 | 2 => served_by == "secondary",
        _ => served_by == "primary",
    }
}

fn reasons(running: &run::Running) -> String {
    running
        .current
        .load()
        .metrics
        .failovers()
        .iter()
        .filter(|(_, _, n)| *n > 0)
        .map(|(_, r, n)| format!("{}={n}", r.label()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One GET on a fresh connection: status, `x-origin`, `x-lb-attempts`.
fn get(lb: SocketAddr) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect_timeout(&lb, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let header = |name: &str| {
        text.lines()
            .find(|l| l.to_ascii_lowercase().starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "-".into())
    };
    Ok((status, header("x-origin"), header("x-lb-attempts")))
}
