//! The real `lb` binary: `lb maps` reading a running lb's pinned maps from another process,
//! and lb starting without privileges.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    time::Duration,
};

use lb_tests::{
    LoopbackXdpLock,
    process::{LbProcess, TestDir, lb, lb_binary, wait_for},
    require_root, unique_pin_dir,
};

fn config(origins: &[(&str, SocketAddr)], pin_path: &Path) -> String {
    let mut s = String::from("[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n\n");
    for (id, addr) in origins {
        s.push_str(&format!(
            "[[origins]]\nid = \"{id}\"\naddress = \"{addr}\"\n\n"
        ));
    }
    s.push_str(&format!(
        "[default_behavior]\ntarget = \"{}\"\n\n",
        origins[0].0
    ));
    s.push_str(&format!(
        "[kernel]\npin_path = \"{}\"\n",
        pin_path.display()
    ));
    s
}

fn maps_json(pin: &Path) -> Option<serde_json::Value> {
    let out = lb(&["maps", "--json", "--pin-path", pin.to_str().unwrap()]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("lb maps --json prints JSON"))
}

fn origin<'a>(doc: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    doc["origins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["origin"] == id)
        .unwrap_or_else(|| panic!("origin {id} missing from {doc:#}"))
}

#[test]
fn lb_maps_json_shows_counters_of_a_running_lb() {
    if !require_root("lb_maps_json_shows_counters_of_a_running_lb") {
        return;
    }
    let _lo = LoopbackXdpLock::acquire();
    let dir = TestDir::new();
    let pin = unique_pin_dir();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap();
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = dir.write(
        "lb.toml",
        &config(&[("dead", closed), ("alive", open)], &pin),
    );
    // lb_xdp is the XDP program's own log target, forwarded from aya-log into tracing.
    let mut lb_run = LbProcess::spawn_with_log(
        &lb_binary(),
        &["run", "--config", cfg.to_str().unwrap()],
        dir.path.join("stderr"),
        "info,lb_xdp=debug",
    );
    wait_for("lb to pin its maps", Duration::from_secs(10), || {
        assert!(lb_run.is_running(), "lb exited early:\n{}", lb_run.stderr());
        maps_json(&pin)
    });

    for _ in 0..3 {
        assert!(TcpStream::connect(closed).is_err());
    }
    let _c1 = TcpStream::connect(open).unwrap();
    let _c2 = TcpStream::connect(open).unwrap();
    let doc = wait_for("counters in lb maps", Duration::from_secs(3), || {
        let doc = maps_json(&pin)?;
        (origin(&doc, "dead")["connects_refused"].as_u64()? >= 3
            && origin(&doc, "alive")["connects_established"].as_u64()? >= 2
            && origin(&doc, "dead")["packets"]["rst"].as_u64()? >= 3)
            .then_some(doc)
    });
    // Socket events: what the kernel's TCP state machine concluded.
    let dead = origin(&doc, "dead");
    assert_eq!(dead["address"], closed.to_string());
    assert_eq!(dead["connects_established"], 0);
    assert_eq!(dead["last_connect_errno"], 111, "ECONNREFUSED");
    assert!(dead["connect_refused_age_ms"].as_u64().unwrap() < 10_000);
    let alive = origin(&doc, "alive");
    assert_eq!(alive["connects_refused"], 0);
    assert_eq!(alive["finding"], serde_json::Value::Null);
    // Packets: what the XDP program saw on the wire.
    assert_eq!(dead["packets"]["syn_ack"], 0);
    assert_eq!(alive["packets"]["rst"], 0);
    assert!(alive["packets"]["syn_ack"].as_u64().unwrap() >= 2);
    assert!(doc["program"]["matched"].as_u64().unwrap() >= 5);
    assert!(doc["program"]["socket_events_matched"].as_u64().unwrap() >= 5);

    // The table form names the origins too.
    let table = lb(&["maps", "--pin-path", pin.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("dead") && table.contains("alive"), "{table}");

    assert!(
        lb_run.terminate(Duration::from_secs(5)),
        "lb must exit 0 on SIGTERM:\n{}",
        lb_run.stderr()
    );
    assert!(!pin.exists(), "a cleanly stopped lb removes its pins");
}

#[test]
fn lb_maps_says_clearly_when_nothing_is_pinned() {
    let out = lb(&["maps", "--pin-path", "/sys/fs/bpf/lb-nothing-here"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no pinned lb maps at /sys/fs/bpf/lb-nothing-here"),
        "{err}"
    );
    assert!(err.contains("lb is not running"), "{err}");
}

/// As an unprivileged user lb cannot load BPF: it must say so in one warning and keep running.
#[test]
fn unprivileged_lb_warns_once_and_keeps_running() {
    if !require_root("unprivileged_lb_warns_once_and_keeps_running (needs root to drop to nobody)")
    {
        return;
    }
    let dir = TestDir::new();
    // Everything the unprivileged process touches must be reachable by `nobody`.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = dir.path.join("lb");
    std::fs::copy(lb_binary(), &binary).unwrap();
    let cfg = dir.write(
        "lb.toml",
        &config(
            &[("a", "127.0.0.1:9".parse().unwrap())],
            Path::new("/sys/fs/bpf/lb-unpriv"),
        ),
    );
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let stderr = std::env::temp_dir().join(lb_tests::unique("lb-unpriv-stderr-"));
    let mut lb_run = LbProcess::spawn(
        Path::new("setpriv"),
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
            binary.to_str().unwrap(),
            "run",
            "--config",
            cfg.to_str().unwrap(),
        ],
        stderr.clone(),
    );
    wait_for("lb's start-up line", Duration::from_secs(10), || {
        assert!(lb_run.is_running(), "lb exited:\n{}", lb_run.stderr());
        lb_run.stderr().contains("lb running").then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        lb_run.is_running(),
        "lb must keep running without kernel signals"
    );
    let log = lb_run.stderr();
    let warnings: Vec<_> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "exactly one warning expected:\n{log}");
    assert!(warnings[0].contains("kernel signals disabled"), "{log}");
    assert!(
        warnings[0].contains("needs root, or CAP_BPF and CAP_NET_ADMIN"),
        "{log}"
    );
    assert!(log.contains("kernel_signals=false"), "{log}");
    assert!(
        lb_run.terminate(Duration::from_secs(5)),
        "clean exit on SIGTERM:\n{log}"
    );
    let _ = std::fs::remove_file(stderr);
}
