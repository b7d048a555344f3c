//! An upgrade that drops nothing (`lb run --takeover SOCKET`): a second lb takes over the
//! listening sockets and health of a running one while requests keep coming; the old
//! one finishes a long download and exits. No request fails or is refused, and an origin
//! that was down stays down.

use std::{
    io::Read as _,
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
                            use std::io::Write as _;
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
