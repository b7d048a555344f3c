//! The health engine under load, through the real lb: a crashed origin (kill -9) with and
//! without kernel signals, failback with slow start, a 5xx storm and a flapping origin,
//! active-active distributions, and the admin API's /metrics (parsed by a real Prometheus
//! parser) and `lb health`. Each test prints what it measured.

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use lb_origin::Origin;
use lb_tests::{
    LoopbackXdpLock, free_port,
    http::get,
    load::{Load, Sample, share},
    process::{LbServer, lb, origin_binary, wait_for},
    require_root, unique_pin_dir,
};

fn origin(name: &str) -> Origin {
    Origin::start(name, "127.0.0.1:0".parse().unwrap()).unwrap()
}

/// lb TOML: group `site` over `members`, plus extra tables.
fn config(members: &[(&str, SocketAddr, &str)], group_extra: &str, extra: &str) -> String {
    let mut s = String::from(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 2\n\n[observability]\naccess_log = false\nattempts_header = true\n\n",
    );
    for (id, addr, lines) in members {
        s.push_str(&format!(
            "[[origins]]\nid = \"{id}\"\naddress = \"{addr}\"\nconnect_timeout = \"300ms\"\nconnection_attempts = 1\nkeepalive_timeout = \"30s\"\n{lines}\n\n"
        ));
    }
    let ids: Vec<String> = members
        .iter()
        .map(|(id, _, _)| format!("\"{id}\""))
        .collect();
    s.push_str(&format!(
        "[[origin_groups]]\nid = \"site\"\nmembers = [{}]\nfailover_status_codes = [500, 502, 503, 504]\n{group_extra}\n\n\
         [default_behavior]\ntarget = \"site\"\n\n{extra}\n",
        ids.join(", ")
    ));
    s
}

struct OriginProcess(Child);

impl OriginProcess {
    fn start(name: &str, addr: SocketAddr) -> Self {
        let child = Command::new(origin_binary())
            .args(["--listen", &addr.to_string(), "--name", name])
            .stdout(Stdio::null())
            .spawn()
            .expect("start lb-origin");
        wait_for("lb-origin to listen", Duration::from_secs(5), || {
            std::net::TcpStream::connect(addr).ok().map(|_| ())
        });
        Self(child)
    }

    fn kill9(&mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let _ = self.0.wait();
    }
}

impl Drop for OriginProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Time from `kill_at` to the last request lb sent to `origin` (from the attempt lists).
fn last_attempt_after(samples: &[Sample], origin: &str, kill_at: Duration) -> Duration {
    samples
        .iter()
        .filter(|s| {
            s.attempts
                .split(',')
                .any(|a| a.starts_with(&format!("{origin}:")))
        })
        .map(|s| s.at)
        .max()
        .map_or(Duration::ZERO, |last| last.saturating_sub(kill_at))
}

/// kill -9 of the primary under ~1,000 GETs/s; returns (time until no new request went to
/// the primary, requests that still tried it, errors).
fn crash_run(kernel: bool) -> (Duration, usize, usize) {
    let primary_addr = free_port();
    let mut primary = OriginProcess::start("primary", primary_addr);
    let secondary = origin("secondary");
    let kernel_table = if kernel {
        format!("[kernel]\npin_path = \"{}\"\n", unique_pin_dir().display())
    } else {
        "[kernel]\nenabled = false\n".into()
    };
    let lb = LbServer::start_file(
        "lb.toml",
        &config(
            &[
                ("primary", primary_addr, ""),
                ("secondary", secondary.addr(), ""),
            ],
            "",
            &kernel_table,
        ),
        &[],
        "info",
    );
    if kernel {
        assert!(
            lb.stderr().contains("kernel_signals=true"),
            "{}",
            lb.stderr()
        );
    }
    let load = Load::start(lb.addr, 1000, Duration::from_secs(3), 8, "/crash");
    std::thread::sleep(Duration::from_millis(1000));
    let kill_at = load.start.elapsed();
    primary.kill9();
    let samples = load.finish();
    let errors = samples.iter().filter(|s| s.status != 200).count();
    let tried = samples
        .iter()
        .filter(|s| s.at >= kill_at && s.attempts.contains("primary:"))
        .count();
    (
        last_attempt_after(&samples, "primary", kill_at),
        tried,
        errors,
    )
}

#[test]
fn crash_is_avoided_within_milliseconds_with_kernel_signals_and_without() {
    let (without, tried_without, errors_without) = crash_run(false);
    println!(
        "kill -9 of the primary at ~1000 req/s, kernel signals OFF: last request to the primary {:.1} ms after the kill, {} requests tried it, {} errors",
        without.as_secs_f64() * 1000.0,
        tried_without,
        errors_without
    );
    assert_eq!(errors_without, 0, "zero client-visible errors");
    assert!(without < Duration::from_millis(500), "{without:?}");
    if !require_root("crash test with kernel signals") {
        return;
    }
    let _lo = LoopbackXdpLock::acquire();
    let (with, tried_with, errors_with) = crash_run(true);
    println!(
        "kill -9 of the primary at ~1000 req/s, kernel signals ON:  last request to the primary {:.1} ms after the kill, {} requests tried it, {} errors",
        with.as_secs_f64() * 1000.0,
        tried_with,
        errors_with
    );
    assert_eq!(errors_with, 0, "zero client-visible errors");
    assert!(
        with < Duration::from_millis(100),
        "tens of milliseconds, got {with:?}"
    );
}

#[test]
fn failback_follows_active_checks_and_ramps_with_slow_start() {
    let p = origin("primary");
    let s = origin("secondary");
    let admin = free_port();
    let lb = LbServer::start_file(
        "lb.toml",
        &config(
            &[
                (
                    "primary",
                    p.addr(),
                    "[origins.health_check]\npath = \"/health\"\ninterval = \"200ms\"\nfast_interval = \"100ms\"\ntimeout = \"200ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 2",
                ),
                ("secondary", s.addr(), ""),
            ],
            "",
            "[health]\nslow_start = \"1500ms\"\n[kernel]\nenabled = false\n",
        ),
        &["--admin", &admin.to_string()],
        "info",
    );
    // The primary fails: its checks and its traffic both say so.
    p.set_health_status(503);
    p.set_forced_status(Some(503));
    wait_for("the primary to be down", Duration::from_secs(3), || {
        let doc: serde_json::Value = serde_json::from_str(&get(admin, "/origins").text()).ok()?;
        (doc["origins"][0]["state"] == "down").then_some(())
    });
    let load = Load::start(lb.addr, 400, Duration::from_secs(4), 4, "/fb");
    std::thread::sleep(Duration::from_millis(500));
    let back_at = load.start.elapsed();
    p.set_health_status(200);
    p.set_forced_status(None);
    let samples = load.finish();
    assert!(
        samples.iter().all(|x| x.status == 200),
        "no client-visible error during failback"
    );
    let first_primary = samples
        .iter()
        .find(|x| x.at > back_at && x.origin == "primary")
        .map(|x| x.at - back_at)
        .expect("traffic returned to the primary");
    // healthy_threshold (2) x fast_interval (100 ms), plus the evaluation tick and jitter.
    println!(
        "failback: first request served by the primary {:.0} ms after it recovered",
        first_primary.as_secs_f64() * 1000.0
    );
    assert!(
        first_primary < Duration::from_millis(700),
        "{first_primary:?}"
    );
    let window = |from: f64, to: f64| {
        let w: Vec<Sample> = samples
            .iter()
            .filter(|x| {
                x.at >= back_at + first_primary + Duration::from_secs_f64(from)
                    && x.at < back_at + first_primary + Duration::from_secs_f64(to)
            })
            .cloned()
            .collect();
        share(&w, "primary")
    };
    let (early, late, after) = (window(0.0, 0.4), window(0.9, 1.4), window(1.8, 2.8));
    println!(
        "slow start: primary share {:.0}% in the first 0.4 s, {:.0}% around 1.1 s, {:.0}% after the ramp",
        early * 100.0,
        late * 100.0,
        after * 100.0
    );
    assert!(early < late, "the share ramps up");
    assert!(early < 0.6, "not all at once: {early}");
    assert!(after > 0.95, "full share after slow start: {after}");
    // No flapping: down -> recovering -> healthy, once each.
    let changes = lb
        .stderr()
        .lines()
        .filter(|l| l.contains("origin state changed") && l.contains("origin=primary"))
        .count();
    assert!(
        changes <= 5,
        "state changed {changes} times:\n{}",
        lb.stderr()
    );
}

#[test]
fn a_5xx_storm_is_ejected_for_longer_each_time_and_clients_see_no_error() {
    let p = origin("primary");
    let s = origin("secondary");
    let lb = LbServer::start_file(
        "lb.toml",
        &config(
            &[("primary", p.addr(), ""), ("secondary", s.addr(), "")],
            "",
            "[health]\npassive_failures = 3\nejection_time = \"200ms\"\nmax_ejection_time = \"2s\"\nslow_start = \"0s\"\n[kernel]\nenabled = false\n",
        ),
        &[],
        "info",
    );
    p.set_forced_status(Some(500));
    let load = Load::start(lb.addr, 500, Duration::from_secs(3), 4, "/storm");
    let samples = load.finish();
    assert!(
        samples.iter().all(|x| x.status == 200),
        "every request answered by the secondary"
    );
    let reached = p.requests();
    println!(
        "5xx storm: {} requests over 3 s, {} reached the failing primary (ejections 200, 400, 800 ms ...)",
        samples.len(),
        reached
    );
    assert!(
        reached < 40,
        "ejection keeps the storm away: {reached} reached the primary"
    );
    let tried_late = samples
        .iter()
        .filter(|x| x.at > Duration::from_millis(1500) && x.attempts.contains("primary:"))
        .count();
    let tried_early = samples
        .iter()
        .filter(|x| x.at <= Duration::from_millis(1500) && x.attempts.contains("primary:"))
        .count();
    assert!(
        tried_late <= tried_early,
        "ejections grow: {tried_early} early vs {tried_late} late"
    );
}

#[test]
fn a_flapping_origin_gets_little_traffic_and_clients_see_no_error() {
    let p = origin("primary");
    let s = origin("secondary");
    let lb = LbServer::start_file(
        "lb.toml",
        &config(
            &[("primary", p.addr(), ""), ("secondary", s.addr(), "")],
            "",
            "[health]\npassive_failures = 2\nejection_time = \"300ms\"\nmax_ejection_time = \"3s\"\nslow_start = \"500ms\"\n[kernel]\nenabled = false\n",
        ),
        &[],
        "info",
    );
    let load = Load::start(lb.addr, 300, Duration::from_secs(3), 3, "/flap");
    let started = Instant::now();
    let mut up = false;
    while started.elapsed() < Duration::from_millis(2900) {
        p.set_forced_status(if up { None } else { Some(503) });
        up = !up;
        std::thread::sleep(Duration::from_millis(150));
    }
    p.set_forced_status(None);
    let samples = load.finish();
    assert!(
        samples.iter().all(|x| x.status == 200),
        "no client-visible errors"
    );
    let primary = share(&samples, "primary");
    println!(
        "flapping primary (150 ms up / 150 ms 503): served {:.0}% of {} requests",
        primary * 100.0,
        samples.len()
    );
    assert!(
        primary < 0.5,
        "hysteresis keeps a flapping primary's share low: {primary}"
    );
}

fn distribution(mode: &str, weights: &str, secondary_delay_ms: u64) -> (f64, usize) {
    let p = origin("primary");
    let s = origin("secondary");
    s.set_delay(Duration::from_millis(secondary_delay_ms));
    let lb = LbServer::start_file(
        "lb.toml",
        &config(
            &[("primary", p.addr(), ""), ("secondary", s.addr(), "")],
            &format!("mode = \"{mode}\"\n{weights}"),
            "[kernel]\nenabled = false\n",
        ),
        &[],
        "info",
    );
    let samples = Load::start(lb.addr, 600, Duration::from_secs(2), 12, "/aa").finish();
    assert!(samples.iter().all(|x| x.status == 200));
    (share(&samples, "primary"), samples.len())
}

#[test]
fn active_active_modes_distribute_as_configured() {
    let (rr, n) = distribution("round-robin", "weights = [3, 1]", 0);
    println!("round-robin 3:1 -> primary {:.1}% of {n}", rr * 100.0);
    assert!((rr - 0.75).abs() < 0.06, "{rr}");
    let (even, n) = distribution("round-robin", "", 0);
    println!("round-robin 1:1 -> primary {:.1}% of {n}", even * 100.0);
    assert!((even - 0.5).abs() < 0.06, "{even}");
    let (lo, n) = distribution("least-outstanding", "", 40);
    println!(
        "least-outstanding, secondary 40 ms slower -> primary {:.1}% of {n}",
        lo * 100.0
    );
    assert!(lo > 0.6, "the slow origin gets less: primary {lo}");
    let (ewma, n) = distribution("peak-ewma", "", 40);
    println!(
        "peak-ewma, secondary 40 ms slower -> primary {:.1}% of {n}",
        ewma * 100.0
    );
    assert!(ewma > 0.6, "the slow origin gets less: primary {ewma}");
}

#[test]
fn metrics_parse_as_prometheus_text_and_lb_health_shows_states() {
    let p = origin("primary");
    let s = origin("secondary");
    let admin = free_port();
    let server = LbServer::start_file(
        "lb.toml",
        &config(
            &[("primary", p.addr(), ""), ("secondary", s.addr(), "")],
            "",
            "[kernel]\nenabled = false\n",
        ),
        &["--admin", &admin.to_string()],
        "info",
    );
    p.set_forced_status(Some(503));
    for _ in 0..5 {
        assert_eq!(get(server.addr, "/m").status, 200);
    }
    let text = get(admin, "/metrics").text();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text format");
    let value = |name: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    assert_eq!(value("lb_requests_total", &[]), Some(5.0));
    assert!(
        value(
            "lb_failovers_total",
            &[("group", "site"), ("reason", "status")]
        )
        .unwrap()
            >= 3.0
    );
    assert!(
        value(
            "lb_origin_errors_total",
            &[("origin", "primary"), ("kind", "status")]
        )
        .unwrap()
            >= 3.0
    );
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "lb_origin_response_seconds"
                || s.metric.starts_with("lb_origin_response_seconds"))
    );
    wait_for(
        "the primary to show as down",
        Duration::from_secs(2),
        || {
            let out = lb(&["health", "--admin", &admin.to_string()]);
            let table = String::from_utf8_lossy(&out.stdout).into_owned();
            table
                .lines()
                .any(|l| l.starts_with("primary") && l.contains(" down "))
                .then_some(table)
        },
    );
    let json = lb(&["health", "--admin", &admin.to_string(), "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["origins"][1]["state"], "healthy");
    assert!(
        doc["origins"][0]["passive"]["failures_total"]
            .as_u64()
            .unwrap()
            >= 3
    );
    drop(server);
}

/// The primary lives in a network namespace; its link goes down, so packets to it vanish
/// (a black hole: no RST, no ICMP). Connects time out, checks time out, and traffic leaves
/// it within the connection timeout plus a check interval, with no failed GET.
#[test]
fn a_black_holed_primary_is_left_within_connect_timeout_plus_a_check_interval() {
    if !require_root("black hole test (creates a network namespace)") {
        return;
    }
    let ns = lb_tests::netns::VethNamespace::create();
    let primary_addr = SocketAddr::new(ns.ns_ip.into(), 8080);
    let primary = ns.run_inside(move || {
        Origin::start("primary", primary_addr).expect("origin inside the namespace")
    });
    let secondary = origin("secondary");
    let check = "[origins.health_check]\npath = \"/health\"\ninterval = \"200ms\"\nfast_interval = \"100ms\"\ntimeout = \"200ms\"\nunhealthy_threshold = 2";
    let toml = config(
        &[
            (
                "primary",
                primary_addr,
                &format!("response_timeout = \"1s\"\n{check}"),
            ),
            ("secondary", secondary.addr(), ""),
        ],
        "",
        "[kernel]\nenabled = false\n",
    );
    let lb = LbServer::start_file("lb.toml", &toml, &[], "info");
    assert_eq!(get(lb.addr, "/warm").header("x-origin"), Some("primary"));
    let load = Load::start(lb.addr, 300, Duration::from_secs(4), 4, "/bh");
    std::thread::sleep(Duration::from_millis(1000));
    let hole_at = load.start.elapsed();
    lb_tests::netns::ip(&["-n", &ns.ns, "link", "set", &ns.ns_if, "down"]);
    let samples = load.finish();
    let errors = samples.iter().filter(|s| s.status != 200).count();
    let left_after = last_attempt_after(&samples, "primary", hole_at);
    println!(
        "black hole: last request sent to the primary {:.0} ms after its link went down (connect timeout 300 ms + check interval 200 ms), {} of {} requests failed",
        left_after.as_secs_f64() * 1000.0,
        errors,
        samples.len()
    );
    assert_eq!(errors, 0, "zero errors for GET");
    assert!(
        left_after < Duration::from_millis(300 + 200 + 300),
        "{left_after:?}"
    );
    drop(primary);
}
