//! An upgrade that drops nothing (`lb run --takeover SOCKET`): a second lb takes over the
//! listening sockets and health of a running one while requests keep coming (new
//! connections as fast as they are answered, and 1,000 GETs/s paced over keep-alive
//! connections); the old one finishes a long download, keeps a WebSocket tunnel working
//! until its client ends it, and exits. No request fails or is refused, and an origin
//! that was down stays down.

use std::{
    io::{Read as _, Write as _},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use lb_origin::Origin;
use lb_tests::{
    free_port,
    http::{Client, get},
    process::{LbProcess, TestDir, lb_binary, wait_for},
};

#[test]
fn a_takeover_under_load_drops_nothing_and_keeps_health() {
    let live = Origin::start("live", "127.0.0.1:0".parse().unwrap()).unwrap();
    let (listen, admin, dead) = (free_port(), free_port(), free_port());
    let dir = TestDir::new();
    let config = dir.write(
        "lb.toml",
        &format!(
            "[listener]\naddress = \"{listen}\"\nworkers = 2\nupgrade_socket = \"upgrade.sock\"\n\
             drain_timeout = \"20s\"\n[admin]\naddress = \"{admin}\"\n\
             [observability]\nattempts_header = true\n\
             [[origins]]\nid = \"dead\"\naddress = \"{dead}\"\n\
             [origins.health_check]\npath = \"/health\"\ninterval = \"200ms\"\nfast_interval = \"100ms\"\nunhealthy_threshold = 2\n\
             [[origins]]\nid = \"live\"\naddress = \"{}\"\n\
             [[origin_groups]]\nid = \"g\"\nmembers = [\"dead\", \"live\"]\nfailover_status_codes = [502]\n\
             [default_behavior]\ntarget = \"g\"\n[kernel]\nenabled = false\n",
            live.addr()
        ),
    );
    let config = config.to_str().unwrap();
    let mut old = LbProcess::spawn_with_log(
        &lb_binary(),
        &["run", "--config", config],
        dir.path.join("old.log"),
        "info",
    );
    wait_for(
        "the old lb and its verdict on `dead`",
        Duration::from_secs(10),
        || {
            std::net::TcpStream::connect(admin).ok()?;
            let doc: serde_json::Value =
                serde_json::from_str(&get(admin, "/origins").text()).ok()?;
            (doc["origins"][0]["state"] == "down").then_some(())
        },
    );

    // A download that takes about 3 s, in flight on the old process.
    let download = std::thread::spawn(move || {
        let mut c = Client::connect(listen);
        let r = c.request("GET /big?size=30720&fail=slow&slow_ms=100 HTTP/1.1\r\nHost: t\r\n\r\n");
        (r.status, r.body.len())
    });
    // New connections as fast as they are answered, throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (stop, served, failed) =
                (Arc::clone(&stop), Arc::clone(&served), Arc::clone(&failed));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match std::net::TcpStream::connect(listen) {
                        Ok(mut s) => {
                            let _ = s.write_all(
                                b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                            );
                            let mut all = Vec::new();
                            let _ = s.read_to_end(&mut all);
                            if all.starts_with(b"HTTP/1.1 200") {
                                served.fetch_add(1, Ordering::Relaxed);
                            } else {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    // 1,000 GETs/s paced over 8 keep-alive connections. An idle keep-alive connection
    // the old lb closes as it drains can meet a request already on its way; like any
    // HTTP client (RFC 9112, 9.3.1), the load retries such an idempotent request once on
    // a new connection, and counts it.
    let keepalive = paced_keepalive(listen, 1_000, 8, Arc::clone(&stop));
    // A WebSocket tunnel open on the old process throughout.
    let mut tunnel = Client::connect(listen);
    let r = tunnel.request(
        "GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert_eq!(r.status, 101);
    std::thread::sleep(Duration::from_millis(500));

    let mut new = LbProcess::spawn_with_log(
        &lb_binary(),
        &[
            "run",
            "--config",
            config,
            "--takeover",
            dir.path.join("upgrade.sock").to_str().unwrap(),
        ],
        dir.path.join("new.log"),
        "info",
    );
    wait_for("the new lb to take over", Duration::from_secs(10), || {
        assert!(new.is_running(), "new lb exited:\n{}", new.stderr());
        new.stderr()
            .contains("took over the listeners")
            .then_some(())
    });
    // The tunnel still carries data on the old process while it drains; the old
    // process exits once the client ends it.
    for msg in [&b"before the end"[..], &[7u8; 50_000]] {
        tunnel.stream.write_all(msg).unwrap();
        let mut echoed = vec![0u8; msg.len()];
        tunnel
            .stream
            .read_exact(&mut echoed)
            .unwrap_or_else(|e| panic!("tunnel: {e}\nold:\n{}", old.stderr()));
        assert_eq!(echoed, msg);
    }
    std::thread::sleep(Duration::from_millis(1_500));
    drop(tunnel);
    // The old one drains (the download finishes) and exits 0.
    let status = wait_for("the old lb to exit", Duration::from_secs(20), || {
        old.child.try_wait().unwrap()
    });
    assert!(status.success(), "{status}\n{}", old.stderr());
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    let (paced, retried, paced_failed) = keepalive.join().unwrap();
    eprintln!(
        "{paced} paced keep-alive GETs, {retried} retried once on a new connection, {paced_failed} failed"
    );
    assert_eq!(paced_failed, 0, "{paced} paced GETs");
    assert!(paced > 2_000, "{paced} paced GETs");
    let (status, len) = download.join().unwrap();
    assert_eq!(
        (status, len),
        (200, 30_720),
        "the download in flight was cut"
    );
    let (served, failed) = (
        served.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    eprintln!("{served} requests served across the upgrade, {failed} failed");
    assert_eq!(failed, 0, "{served} served");
    assert!(served > 100, "{served}");

    // The new process knew `dead` was down from its first request on.
    let r = get(listen, "/after");
    let attempts = r.header("x-lb-attempts").unwrap_or("").to_owned();
    assert!(
        attempts.starts_with("live:200:") && !attempts.contains("dead"),
        "{attempts}"
    );
    assert!(
        new.stderr().contains("health taken over"),
        "{}",
        new.stderr()
    );
    assert!(
        old.stderr().contains("a new lb process took over"),
        "{}",
        old.stderr()
    );
    // And it can be upgraded again: its own upgrade socket is listening.
    assert!(
        new.stderr().contains("upgrade socket listening"),
        "{}",
        new.stderr()
    );
    assert!(new.terminate(Duration::from_secs(10)));
}

/// GETs at `rate` per second over `conns` keep-alive connections until `stop`: (served,
/// retried on a new connection after a reused one closed before answering, failed).
fn paced_keepalive(
    addr: std::net::SocketAddr,
    rate: u32,
    conns: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(u64, u64, u64)> {
    std::thread::spawn(move || {
        let threads: Vec<_> = (0..conns)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let interval = Duration::from_secs_f64(conns as f64 / f64::from(rate));
                    let (mut served, mut retried, mut failed) = (0u64, 0u64, 0u64);
                    let mut conn = std::net::TcpStream::connect(addr).ok();
                    let mut next = std::time::Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(wait) = next.checked_duration_since(std::time::Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        next += interval;
                        match conn.as_mut().and_then(get_on) {
                            Some(true) => served += 1,
                            Some(false) => failed += 1,
                            None => {
                                // Closed before any answer: once more, on a new connection.
                                conn = std::net::TcpStream::connect(addr).ok();
                                match conn.as_mut().and_then(get_on) {
                                    Some(true) => {
                                        served += 1;
                                        retried += 1;
                                    }
                                    _ => failed += 1,
                                }
                            }
                        }
                    }
                    (served, retried, failed)
                })
            })
            .collect();
        threads.into_iter().fold((0, 0, 0), |acc, t| {
            let (a, b, c) = t.join().unwrap();
            (acc.0 + a, acc.1 + b, acc.2 + c)
        })
    })
}

/// One keep-alive GET: Some(true) for a 200 (the connection stays usable), Some(false)
/// for any other answer, None if the connection closed before any byte of an answer.
fn get_on(stream: &mut std::net::TcpStream) -> Option<bool> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /paced HTTP/1.1\r\nHost: t\r\n\r\n")
        .ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            // EOF or a reset before any answer: the server closed an idle connection.
            Ok(_) if head.is_empty() => return None,
            Err(e) if head.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => {
                return None;
            }
            // A timeout, or a connection cut mid-answer: a failure, not retried.
            _ => return Some(false),
        }
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).ok()?;
    Some(text.starts_with("http/1.1 200"))
}

/// The kernel part after a takeover: the new process attaches XDP to `lo` and pins its
/// maps once the old process, which held both, has exited.
#[test]
fn after_a_takeover_the_new_lb_attaches_xdp_once_the_old_one_exits() {
    if !lb_tests::require_root("after_a_takeover_the_new_lb_attaches_xdp_once_the_old_one_exits") {
        return;
    }
    let _lo = lb_tests::LoopbackXdpLock::acquire();
    let origin = Origin::start("o", "127.0.0.1:0".parse().unwrap()).unwrap();
    let listen = free_port();
    let pins = lb_tests::unique_pin_dir();
    let dir = TestDir::new();
    let config = dir.write(
        "lb.toml",
        &format!(
            "[listener]\naddress = \"{listen}\"\nworkers = 1\nupgrade_socket = \"upgrade.sock\"\n\
             [[origins]]\nid = \"o\"\naddress = \"{}\"\n[kernel]\npin_path = \"{}\"\n",
            origin.addr(),
            pins.display()
        ),
    );
    let config = config.to_str().unwrap();
    let mut old = LbProcess::spawn_with_log(
        &lb_binary(),
        &["run", "--config", config],
        dir.path.join("old.log"),
        "info",
    );
    wait_for("the old lb with XDP on lo", Duration::from_secs(10), || {
        old.stderr().contains("XDP attached").then_some(())
    });
    let mut new = LbProcess::spawn_with_log(
        &lb_binary(),
        &[
            "run",
            "--config",
            config,
            "--takeover",
            dir.path.join("upgrade.sock").to_str().unwrap(),
        ],
        dir.path.join("new.log"),
        "info",
    );
    wait_for("the old lb to exit", Duration::from_secs(15), || {
        assert!(new.is_running(), "new lb exited:\n{}", new.stderr());
        old.child.try_wait().unwrap()
    });
    wait_for("the new lb's XDP and pins", Duration::from_secs(10), || {
        new.stderr()
            .contains("kernel signals complete")
            .then_some(())
    });
    assert!(new.stderr().contains("XDP attached"), "{}", new.stderr());
    assert!(
        pins.join("ORIGIN_INDEX").exists(),
        "{:?}\nold:\n{}\nnew:\n{}",
        std::fs::read_dir(&pins).map(|d| d.count()),
        old.stderr(),
        new.stderr()
    );
    assert_eq!(get(listen, "/k").text(), "o GET /k\n");
    assert!(new.terminate(Duration::from_secs(10)));
}

/// SIGUSR2 upgrades in place: the running lb starts the binary on disk with its own
/// arguments and `--takeover`; the new process tells the service manager it is the main
/// process now (sd_notify `MAINPID=`, which systemd's `Type=notify` follows), and the
/// old one drains and exits.
#[test]
fn sigusr2_starts_a_successor_that_takes_over_and_tells_systemd() {
    let origin = Origin::start("o", "127.0.0.1:0".parse().unwrap()).unwrap();
    let listen = free_port();
    let dir = TestDir::new();
    let config = dir.write(
        "lb.toml",
        &format!(
            "[listener]\naddress = \"{listen}\"\nworkers = 1\nupgrade_socket = \"upgrade.sock\"\n\
             [[origins]]\nid = \"o\"\naddress = \"{}\"\n[kernel]\nenabled = false\n",
            origin.addr()
        ),
    );
    let notify_path = dir.path.join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let log = std::fs::File::create(dir.path.join("lb.log")).unwrap();
    let mut old = std::process::Command::new(lb_binary())
        .args(["run", "--config", config.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &notify_path)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let mut message = |what: &str| {
        let n = notify
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no sd_notify {what}: {e}"));
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(
        message("at start"),
        format!("MAINPID={}\nREADY=1", old.id())
    );
    assert_eq!(get(listen, "/before").text(), "o GET /before\n");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old.id() as i32),
        nix::sys::signal::Signal::SIGUSR2,
    )
    .unwrap();
    let took_over = message("from the successor");
    let new_pid: i32 = took_over
        .strip_prefix("MAINPID=")
        .and_then(|rest| rest.strip_suffix("\nREADY=1"))
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("{took_over}"));
    assert_ne!(new_pid, old.id() as i32);
    let status = wait_for("the old lb to exit", Duration::from_secs(15), || {
        old.try_wait().unwrap()
    });
    assert!(status.success(), "{status}");
    assert_eq!(get(listen, "/after").text(), "o GET /after\n");
    let logs = std::fs::read_to_string(dir.path.join("lb.log")).unwrap();
    assert!(logs.contains("SIGUSR2: started the new lb"), "{logs}");
    // The successor is not this test's child: stop it by pid.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(new_pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_for("the new lb to exit", Duration::from_secs(15), || {
        // Gone, or a zombie nobody reaps (its parent, the old lb, has exited).
        let stat = std::fs::read_to_string(format!("/proc/{new_pid}/stat")).unwrap_or_default();
        let exited = stat.is_empty() || stat.contains(") Z ");
        (exited && std::net::TcpStream::connect(listen).is_err()).then_some(())
    });
}
