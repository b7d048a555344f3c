//! `cargo xtask package` builds a .deb that installs, checks and purges cleanly, and the
//! service it installs works under the restrictions its systemd unit sets.
//!
//! The CI machine has no systemd as PID 1, so the unit cannot be started here. Its syntax
//! is checked with `systemd-analyze verify`, and its restrictions are reproduced around
//! the installed binary instead: the `lb` user, exactly the unit's ambient and bounding
//! capabilities and no_new_privs (`setpriv`), and, in a private mount namespace
//! (`unshare`), a read-only root with /var/lib/lb and /var/log/lb writable
//! (ProtectSystem=strict with StateDirectory/LogsDirectory), /home and /root hidden
//! (ProtectHome) and a private /tmp (PrivateTmp). lb must then load its XDP program and
//! tracepoints, use io_uring, and proxy.

use std::{
    path::Path,
    process::{Command, Output, Stdio},
    time::Duration,
};

use lb_tests::{
    LoopbackXdpLock, free_port,
    http::get,
    process::{TestDir, lb_binary, wait_for},
    require_root, unique,
};

/// The capabilities the unit grants (packaging/lb.service).
const UNIT_CAPS: &str = "+bpf,+net_admin,+perfmon,+dac_read_search,+net_bind_service";

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Kills the confined lb however the test ends (it holds lo's XDP attachment).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Purges the package however the test ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", "lb"]);
    }
}

fn xtask_binary() -> std::path::PathBuf {
    let xtask = lb_binary().with_file_name("xtask");
    assert!(
        xtask.exists(),
        "{} is missing: `cargo build -p xtask` (cargo xtask test does)",
        xtask.display()
    );
    xtask
}

#[test]
fn the_deb_installs_runs_confined_and_purges_cleanly() {
    if !require_root("the_deb_installs_runs_confined_and_purges_cleanly") {
        return;
    }
    let out_dir = TestDir::new();
    let built = Command::new(xtask_binary())
        .args(["package", "--binary"])
        .arg(lb_binary())
        .arg("--out")
        .arg(&out_dir.path)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = String::from_utf8_lossy(&built.stdout)
        .lines()
        .last()
        .unwrap()
        .to_owned();
    assert!(deb.ends_with(".deb") && Path::new(&deb).is_file(), "{deb}");
    let contents = ok("dpkg-deb", &["--contents", &deb]);
    for path in [
        "./usr/bin/lb",
        "./lib/systemd/system/lb.service",
        "./etc/lb/lb.toml",
        "./etc/logrotate.d/lb",
        "./usr/share/bash-completion/completions/lb",
        "./usr/share/zsh/vendor-completions/_lb",
        "./usr/share/fish/vendor_completions.d/lb.fish",
    ] {
        assert!(
            contents.contains(path),
            "{path} not in the package:\n{contents}"
        );
    }

    let _ = run("dpkg", &["--purge", "lb"]);
    ok("dpkg", &["-i", &deb]);
    let _installed = Installed;
    for path in [
        "/usr/bin/lb",
        "/lib/systemd/system/lb.service",
        "/etc/lb/lb.toml",
        "/usr/share/bash-completion/completions/lb",
    ] {
        assert!(Path::new(path).exists(), "{path} not installed");
    }
    let user = ok("getent", &["passwd", "lb"]);
    assert!(
        user.trim().ends_with(":/var/lib/lb:/usr/sbin/nologin"),
        "{user}"
    );
    let uid: u32 = user.split(':').nth(2).unwrap().parse().unwrap();
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(std::fs::metadata("/var/lib/lb").unwrap().uid(), uid);
    let verify = run(
        "systemd-analyze",
        &["verify", "/lib/systemd/system/lb.service"],
    );
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    // The capabilities reproduced below are the unit's.
    let unit = std::fs::read_to_string("/lib/systemd/system/lb.service").unwrap();
    for key in ["AmbientCapabilities=", "CapabilityBoundingSet="] {
        let line = unit.lines().find(|l| l.starts_with(key)).unwrap();
        let mut in_unit: Vec<String> = line[key.len()..]
            .split_whitespace()
            .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_ascii_lowercase()))
            .collect();
        let mut here: Vec<String> = UNIT_CAPS.split(',').map(str::to_owned).collect();
        in_unit.sort();
        here.sort();
        assert_eq!(in_unit, here, "{line}");
    }
    let checked = ok("/usr/bin/lb", &["check", "--config", "/etc/lb/lb.toml"]);
    assert!(checked.contains("/etc/lb/lb.toml: ok"), "{checked}");
    let version = ok("/usr/bin/lb", &["--version"]);
    assert!(version.starts_with("lb 0.1.0 ("), "{version}");
    assert!(
        ok(
            "bash",
            &[
                "-c",
                "source /usr/share/bash-completion/completions/lb && complete -p lb"
            ]
        )
        .contains("lb"),
        "bash completion not loadable"
    );

    run_confined(uid);

    ok("dpkg", &["--purge", "lb"]);
    for path in [
        "/usr/bin/lb",
        "/lib/systemd/system/lb.service",
        "/etc/lb",
        "/var/lib/lb",
    ] {
        assert!(!Path::new(path).exists(), "{path} left after purge");
    }
    assert!(
        !run("getent", &["passwd", "lb"]).status.success(),
        "user lb left"
    );
    assert!(
        !run("dpkg", &["-s", "lb"]).status.success(),
        "still installed"
    );
}

/// The installed lb under the unit's user, capabilities and file-system view.
fn run_confined(uid: u32) {
    let _lo = LoopbackXdpLock::acquire();
    let origin = lb_origin::Origin::start("o", "127.0.0.1:0".parse().unwrap()).unwrap();
    let (listen, admin) = (free_port(), free_port());
    // bpffs is mounted by systemd at boot; the unit's ExecStartPre makes the pin
    // directory for the lb user.
    if !Path::new("/sys/fs/bpf").join(".").exists()
        || run("mountpoint", &["-q", "/sys/fs/bpf"]).status.code() != Some(0)
    {
        ok("mount", &["-t", "bpf", "bpf", "/sys/fs/bpf"]);
    }
    let pins = format!("/sys/fs/bpf/{}", unique("lb-pkg-"));
    ok(
        "install",
        &["-d", "-o", "lb", "-g", "lb", "-m", "0750", &pins],
    );
    let config = "/var/lib/lb/confined.toml";
    std::fs::write(
        config,
        format!(
            "[listener]\naddress = \"{listen}\"\nworkers = 1\n[admin]\naddress = \"{admin}\"\n\
             [observability]\naccess_log_file = \"/var/log/lb/access.log\"\n\
             [cache]\ndisk_path = \"/var/lib/lb/cache\"\n\
             [[origins]]\nid = \"o\"\naddress = \"{}\"\n[kernel]\npin_path = \"{pins}\"\n",
            origin.addr()
        ),
    )
    .unwrap();
    ok("chown", &["lb:lb", config]);
    let log = TestDir::new();
    let stderr = std::fs::File::create(log.path.join("stderr")).unwrap();
    let script = format!(
        "set -e
         mount --make-rprivate /
         mount --bind /var/lib/lb /var/lib/lb
         mount --bind /var/log/lb /var/log/lb
         mount -o remount,bind,ro /
         mount -t tmpfs -o mode=000 tmpfs /home
         mount -t tmpfs -o mode=000 tmpfs /root
         mount -t tmpfs tmpfs /tmp
         exec setpriv --reuid=lb --regid=lb --clear-groups \
           --inh-caps=-all,{UNIT_CAPS} --ambient-caps=-all,{UNIT_CAPS} \
           --bounding-set=-all,{UNIT_CAPS} --no-new-privs \
           /usr/bin/lb run --config {config}"
    );
    let mut confined = KillOnDrop(
        Command::new("unshare")
            .args(["--mount", "--", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap(),
    );
    let child = &mut confined.0;
    let read_log = || std::fs::read_to_string(log.path.join("stderr")).unwrap_or_default();
    let running = wait_for("the confined lb to start", Duration::from_secs(20), || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("confined lb exited with {status}:\n{}", read_log());
        }
        read_log()
            .lines()
            .find(|l| l.contains("lb running"))
            .map(str::to_owned)
    });
    let all = read_log();
    let r = get(listen, "/confined");
    assert_eq!(r.status, 200, "{}\n{all}", r.text());
    assert_eq!(r.text(), "o GET /confined\n");
    // The kernel part loaded (XDP on lo, the tracepoints), io_uring served the request.
    assert!(running.contains("kernel_signals=true"), "{all}");
    assert!(all.contains("io_uring=1"), "{all}");
    assert!(all.contains("XDP attached"), "{all}");
    assert!(all.contains("kernel socket events on"), "{all}");
    assert!(!all.contains("kernel maps not pinned"), "{all}");
    assert!(
        Path::new(&pins).join("ORIGIN_INDEX").exists(),
        "no pinned maps:\n{all}"
    );
    // It runs as lb, with no_new_privs, and exactly the unit's capabilities.
    // `unshare` and `sh` exec into setpriv and then lb: the child is lb itself.
    let pid = child.id().to_string();
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(proc_status.starts_with("Name:\tlb\n"), "{proc_status}");
    let field = |name: &str| {
        proc_status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_owned())
            .unwrap_or_default()
    };
    assert_eq!(field("Uid:"), uid.to_string(), "{proc_status}");
    assert_eq!(field("NoNewPrivs:"), "1", "{proc_status}");
    let eff = u64::from_str_radix(&field("CapEff:"), 16).unwrap();
    // CAP_NET_BIND_SERVICE 10, CAP_NET_ADMIN 12, CAP_DAC_READ_SEARCH 2, CAP_PERFMON 38,
    // CAP_BPF 39.
    let expected = (1u64 << 2) | (1 << 10) | (1 << 12) | (1 << 38) | (1 << 39);
    assert_eq!(eff, expected, "CapEff {eff:#x}\n{proc_status}");
    // The access log went to the writable log directory.
    wait_for("the access log line", Duration::from_secs(5), || {
        std::fs::read_to_string("/var/log/lb/access.log")
            .ok()
            .filter(|s| s.contains("/confined"))
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid.parse().unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let exited = wait_for("the confined lb to stop", Duration::from_secs(20), || {
        child.try_wait().unwrap()
    });
    assert!(exited.success(), "{exited}\n{}", read_log());
    let _ = std::fs::remove_dir_all(&pins);
}
