//! The access log is written off the request path: a destination that does not keep up
//! (here, a pipe nobody reads) costs dropped lines, counted in
//! `lb_access_log_dropped_lines_total`, never a stalled worker. Lines can go to a file,
//! reopened on SIGUSR1 for logrotate, in lb's format, the combined format or JSON.

use std::{
    net::SocketAddr,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use lb_origin::Origin;
use lb_tests::{
    free_port,
    http::{Client, get},
    process::{LbServer, TestDir, lb_binary, wait_for},
};

fn metric(admin: SocketAddr, name: &str) -> u64 {
    get(admin, "/metrics")
        .text()
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// GETs for `run` on `conns` keep-alive connections at once, as fast as answers come;
/// returns how many were answered 200 (any other outcome fails the test) and the
/// slowest.
fn closed_loop(addr: SocketAddr, conns: usize, run: Duration) -> (u64, Duration) {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let (done, stop) = (Arc::clone(&done), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut slowest = Duration::ZERO;
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let r = c.request("GET /pipe HTTP/1.1\r\nHost: t\r\n\r\n");
                    assert_eq!(r.status, 200, "{}", r.text());
                    slowest = slowest.max(started.elapsed());
                    done.fetch_add(1, Ordering::Relaxed);
                }
                slowest
            })
        })
        .collect();
    std::thread::sleep(run);
    stop.store(true, Ordering::Relaxed);
    let slowest = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .max()
        .unwrap();
    (done.load(Ordering::Relaxed), slowest)
}

/// lb with its stderr on a pipe the test holds and never reads.
struct Unread {
    child: std::process::Child,
    _pipe: std::process::ChildStderr,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Unread {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_unread(dir: &TestDir, origin: SocketAddr, access_log: bool) -> Unread {
    let (addr, admin) = (free_port(), free_port());
    let config = dir.write(
        if access_log { "on.toml" } else { "off.toml" },
        &format!(
            "[listener]\naddress = \"{addr}\"\nworkers = 1\n[admin]\naddress = \"{admin}\"\n\
             [observability]\naccess_log = {access_log}\naccess_log_buffer = 65536\n\
             [[origins]]\nid = \"o\"\naddress = \"{origin}\"\n[kernel]\nenabled = false\n"
        ),
    );
    let mut child = Command::new(lb_binary())
        .args(["run", "--config", config.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = child.stderr.take().unwrap();
    wait_for("lb to listen", Duration::from_secs(15), || {
        assert!(child.try_wait().unwrap().is_none(), "lb exited");
        std::net::TcpStream::connect(admin).ok()
    });
    Unread {
        child,
        _pipe: pipe,
        addr,
        admin,
    }
}

#[test]
fn a_pipe_nobody_reads_costs_lines_not_throughput() {
    let origin = Origin::start("o", "127.0.0.1:0".parse().unwrap()).unwrap();
    let dir = TestDir::new();
    // The same lb without an access log, for the rate to compare with.
    let baseline = {
        let lb = start_unread(&dir, origin.addr(), false);
        closed_loop(lb.addr, 4, Duration::from_secs(2)).0
    };
    let lb = start_unread(&dir, origin.addr(), true);
    // The pipe (64 KiB) and the queue (64 KiB) fill within the first ~1,500 lines;
    // from then on every line is dropped.
    let (first, _) = closed_loop(lb.addr, 4, Duration::from_millis(500));
    let dropped_before = metric(lb.admin, "lb_access_log_dropped_lines_total");
    let (served, slowest) = closed_loop(lb.addr, 4, Duration::from_secs(2));
    let dropped_after = metric(lb.admin, "lb_access_log_dropped_lines_total");
    let written = metric(lb.admin, "lb_access_log_lines_total");
    eprintln!(
        "baseline {baseline} in 2 s; with the stuck log {served} in 2 s (slowest {slowest:?}); \
         written {written}, dropped {dropped_before} then {dropped_after} (after {first})"
    );
    assert!(dropped_before > 0, "nothing dropped after {first} requests");
    assert!(
        dropped_after >= dropped_before + served / 2,
        "dropped {dropped_before} → {dropped_after} while serving {served}"
    );
    // Written lines stop where the pipe filled: lb is not waiting on it.
    assert!(
        written < 2_000,
        "{written} lines written to a pipe nobody reads"
    );
    // Full rate: within the noise of a 2-core machine, and no request held up.
    assert!(
        served * 2 >= baseline,
        "{served} requests with the stuck log against {baseline} without"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "a request took {slowest:?}"
    );
}

#[test]
fn formats_and_a_file_reopened_on_sigusr1() {
    let origin = Origin::start("o", "127.0.0.1:0".parse().unwrap()).unwrap();
    let config = |format: &str| {
        format!(
            "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n\
             [observability]\naccess_log_file = \"access.log\"\naccess_log_format = \"{format}\"\n\
             [[origins]]\nid = \"o\"\naddress = \"{}\"\n[kernel]\nenabled = false\n",
            origin.addr()
        )
    };
    let lb = LbServer::start_file("lb.toml", &config("json"), &[], "info");
    let log = lb.dir.path.join("access.log");
    let mut c = Client::connect(lb.addr);
    let r = c.request(
        "GET /j?x=1 HTTP/1.1\r\nHost: site.test\r\nUser-Agent: tester \"7\"\r\nReferer: http://r.test/\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let line = wait_for("the JSON line", Duration::from_secs(5), || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|s| s.ends_with('\n'))
    });
    let doc: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(doc["method"], "GET", "{doc}");
    assert_eq!(doc["path"], "/j?x=1", "{doc}");
    assert_eq!(doc["status"], 200, "{doc}");
    assert_eq!(doc["host"], "site.test", "{doc}");
    assert_eq!(doc["user_agent"], "tester \"7\"", "{doc}");
    assert_eq!(doc["referer"], "http://r.test/", "{doc}");
    assert_eq!(doc["protocol"], "HTTP/1.1", "{doc}");
    assert_eq!(doc["attempts"][0]["origin"], "o", "{doc}");
    assert_eq!(doc["attempts"][0]["status"], 200, "{doc}");
    // Nothing of it on stderr.
    assert!(!lb.stderr().contains("/j?x=1"), "{}", lb.stderr());

    // logrotate: the file is moved away, SIGUSR1, and new lines go to a new file.
    std::fs::rename(&log, lb.dir.path.join("access.log.1")).unwrap();
    lb.signal(nix::sys::signal::Signal::SIGUSR1);
    wait_for("SIGUSR1 to be handled", Duration::from_secs(5), || {
        lb.stderr()
            .contains("reopening the access log")
            .then_some(())
    });
    // A reload switches the format (the file stays).
    std::fs::write(lb.dir.path.join("lb.toml"), config("combined")).unwrap();
    lb.reload();
    let r = c.request("GET /c HTTP/1.1\r\nHost: site.test\r\nUser-Agent: ua\r\n\r\n");
    assert_eq!(r.status, 200);
    let line = wait_for("the combined line", Duration::from_secs(5), || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|s| s.ends_with('\n'))
    });
    // 127.0.0.1 - - [04/Dec/2026:18:05:01 +0000] "GET /c HTTP/1.1" 200 - "-" "ua"
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(
        line.contains(" +0000] \"GET /c HTTP/1.1\" 200 - \"-\" \"ua\"\n"),
        "{line}"
    );
    let rotated = std::fs::read_to_string(lb.dir.path.join("access.log.1")).unwrap();
    assert_eq!(rotated.lines().count(), 1, "{rotated}");
}
