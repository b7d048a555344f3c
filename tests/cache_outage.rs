//! Seed 003's story end to end: origins answer and the cache fills; then every member of
//! the group fails (a 503 storm, a crash, a black hole). Cached objects keep being served
//! from their stale copies, with no error and a `Cache-Status` that says so; uncached ones
//! get the custom error response. Once health says the group is down, the stale copies
//! come at once, without any origin being asked or any timeout waited out.

use std::{
    net::{SocketAddr, TcpListener},
    time::{Duration, Instant},
};

use lb_origin::Origin;
use lb_tests::{
    free_port,
    http::{Response, get},
    process::{LbServer, TestDir},
};

/// How every member fails.
#[derive(Clone, Copy, Debug)]
enum Outage {
    /// Both answer 503 (a failover status).
    Storm503,
    /// Both processes are gone: connects are refused.
    Crash,
    /// Both ports accept connections (the kernel completes the handshake) and nothing
    /// ever answers: every request runs into the response timeout.
    BlackHole,
}

const OBJECTS: usize = 10;

fn config(
    admin: SocketAddr,
    primary: SocketAddr,
    secondary: SocketAddr,
    page: &std::path::Path,
) -> String {
    format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 2\n\n[admin]\naddress = \"{}\"\n\n\
         [observability]\naccess_log = false\n\n[kernel]\nenabled = false\n\n\
         [health]\npassive_failures = 2\nejection_time = \"30s\"\n\n\
         [[origins]]\nid = \"primary\"\naddress = \"{primary}\"\nconnect_timeout = \"300ms\"\nconnection_attempts = 1\nresponse_timeout = \"700ms\"\n\n\
         [[origins]]\nid = \"secondary\"\naddress = \"{secondary}\"\nconnect_timeout = \"300ms\"\nconnection_attempts = 1\nresponse_timeout = \"700ms\"\n\n\
         [[origin_groups]]\nid = \"site\"\nmembers = [\"primary\", \"secondary\"]\nfailover_status_codes = [500, 502, 503, 504]\n\n\
         [default_behavior]\ntarget = \"site\"\n[default_behavior.cache]\nquery = \"all\"\nstale_if_error = \"1h\"\n\n\
         [[custom_error_responses]]\nerror_code = 502\nresponse_code = 503\nresponse_page_file = \"{page}\"\n\n\
         [[custom_error_responses]]\nerror_code = 503\nresponse_page_file = \"{page}\"\n\n\
         [[custom_error_responses]]\nerror_code = 504\nresponse_code = 503\nresponse_page_file = \"{page}\"\n",
        admin,
        page = page.display()
    )
}

fn cache_status(r: &Response) -> &str {
    r.header("cache-status").unwrap_or("-")
}

fn served(r: &Response) -> &str {
    r.header("x-served").unwrap_or("-")
}

fn object(i: usize) -> String {
    format!("/obj/{i}?cc=max-age=1")
}

/// Runs the story for one kind of outage.
fn story(outage: Outage) {
    let dir = TestDir::new();
    let page = dir.write("sorry.html", "<h1>sorry, we are fixing it</h1>\n");
    let primary = Origin::start("primary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let secondary = Origin::start("secondary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let (p_addr, s_addr) = (primary.addr(), secondary.addr());
    let lb = LbServer::start_file(
        "lb.toml",
        &config(free_port(), p_addr, s_addr, &page),
        &[],
        "info",
    );

    // The cache fills while the origins answer.
    let stored: Vec<String> = (0..OBJECTS)
        .map(|i| {
            let r = get(lb.addr, &object(i));
            assert_eq!(cache_status(&r), "lb; fwd=uri-miss; stored", "{outage:?}");
            served(&r).to_owned()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1100));

    // Every member fails. (What keeps failing stays alive until the end of the story.)
    let mut failing_origins = Vec::new();
    let mut holes = Vec::new();
    match outage {
        Outage::Storm503 => {
            primary.set_forced_status(Some(503));
            secondary.set_forced_status(Some(503));
            failing_origins.extend([primary, secondary]);
        }
        Outage::Crash => {
            primary.stop();
            secondary.stop();
        }
        Outage::BlackHole => {
            primary.stop();
            secondary.stop();
            // Listening sockets that never accept: the kernel completes handshakes into
            // the backlog and nothing ever reads the requests.
            holes.push(TcpListener::bind(p_addr).unwrap());
            holes.push(TcpListener::bind(s_addr).unwrap());
        }
    }

    // Every cached object is served from its stale copy: no errors.
    let mut errors = 0;
    for (i, first) in stored.iter().enumerate() {
        let r = get(lb.addr, &object(i));
        if r.status != 200 || served(&r) != first {
            errors += 1;
        }
        assert!(
            cache_status(&r).contains("detail=stale-if-error")
                || cache_status(&r).contains("detail=stale-group-down"),
            "{outage:?}: {}",
            cache_status(&r)
        );
    }
    assert_eq!(errors, 0, "{outage:?}: errors for cached objects");

    // Uncached objects cannot be served stale: the custom error response.
    let r = get(lb.addr, "/never-cached");
    assert_eq!(r.status, 503, "{outage:?}");
    assert!(
        r.text().contains("sorry, we are fixing it"),
        "{outage:?}: {}",
        r.text()
    );

    // By now both members failed twice: health has the group down. Stale copies come at
    // once, without asking an origin or waiting for a timeout.
    for (i, first) in stored.iter().enumerate() {
        let t0 = Instant::now();
        let r = get(lb.addr, &object(i));
        let took = t0.elapsed();
        assert_eq!((r.status, served(&r)), (200, first.as_str()), "{outage:?}");
        assert!(
            cache_status(&r).contains("detail=stale-group-down"),
            "{outage:?}: {}",
            cache_status(&r)
        );
        assert!(took < Duration::from_millis(100), "{outage:?}: {took:?}");
    }
    // An uncached object has no stale copy: lb still tries the members (health may be
    // wrong; the group fails open), bounded by one response timeout each.
    let t0 = Instant::now();
    let r = get(lb.addr, "/never-cached-2");
    assert_eq!(r.status, 503, "{outage:?}");
    assert!(
        t0.elapsed() < Duration::from_millis(2 * 700 + 500),
        "{outage:?}: {:?}",
        t0.elapsed()
    );
    drop((failing_origins, holes));
}

#[test]
fn a_503_storm_is_answered_from_the_cache() {
    story(Outage::Storm503);
}

#[test]
fn crashed_origins_are_answered_from_the_cache() {
    story(Outage::Crash);
}

#[test]
fn black_holed_origins_are_answered_from_the_cache() {
    story(Outage::BlackHole);
}

/// The disk tier: lb restarts (an upgrade, a crash, a reboot) while every origin is down,
/// and the copies it stored before are still served stale. A file that was damaged
/// meanwhile is dropped, not served, and its object gets the error page.
#[test]
fn a_restart_during_an_outage_serves_stale_copies_from_the_disk_tier() {
    let dir = TestDir::new();
    let page = dir.write("sorry.html", "<h1>sorry, we are fixing it</h1>\n");
    let disk = dir.path.join("cache");
    let primary = Origin::start("primary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let secondary = Origin::start("secondary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let (p_addr, s_addr) = (primary.addr(), secondary.addr());
    let with_disk = |admin: SocketAddr| {
        let base = config(admin, p_addr, s_addr, &page);
        format!("{base}\n[cache]\ndisk_path = \"{}\"\n", disk.display())
    };
    let admin = free_port();
    let mut lb = LbServer::start_file("lb.toml", &with_disk(admin), &[], "info");
    let stored: Vec<(String, String)> = (0..OBJECTS)
        .map(|i| {
            let r = get(lb.addr, &object(i));
            assert_eq!(cache_status(&r), "lb; fwd=uri-miss; stored");
            (served(&r).to_owned(), r.text())
        })
        .collect();
    // Every object reached the disk (written behind the responses, by the writer thread).
    lb_tests::process::wait_for("10 disk writes", Duration::from_secs(10), || {
        let stats = get(admin, "/cache/stats").text();
        let doc: serde_json::Value = serde_json::from_str(&stats).unwrap();
        (doc["tiers"]["disk"]["objects"] == OBJECTS as u64).then_some(())
    });
    assert!(lb.process.terminate(Duration::from_secs(10)), "lb stops");
    // The origins go down while lb is away; one file is damaged meanwhile.
    primary.stop();
    secondary.stop();
    let files: Vec<_> = std::fs::read_dir(&disk)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), OBJECTS, "{files:?}");
    let damaged_body = &stored[3].1;
    let damaged = files
        .iter()
        .find(|f| {
            let bytes = std::fs::read(f).unwrap();
            bytes
                .windows(damaged_body.len())
                .any(|w| w == damaged_body.as_bytes())
        })
        .expect("object 3's file");
    let len = std::fs::metadata(damaged).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(damaged)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    std::thread::sleep(Duration::from_millis(1100));

    let admin = free_port();
    let lb = LbServer::start_file("lb.toml", &with_disk(admin), &[], "info");
    for (i, (first, body)) in stored.iter().enumerate() {
        let r = get(lb.addr, &object(i));
        if i == 3 {
            assert_eq!(r.status, 503, "the damaged copy is not served");
            assert!(r.text().contains("sorry, we are fixing it"), "{}", r.text());
            continue;
        }
        assert_eq!((r.status, served(&r)), (200, first.as_str()), "object {i}");
        assert_eq!(&r.text(), body, "object {i}");
        let status = cache_status(&r);
        assert!(
            status.contains("detail=stale-if-error") || status.contains("detail=stale-group-down"),
            "object {i}: {status}"
        );
    }
    let stats = get(admin, "/cache/stats").text();
    let doc: serde_json::Value = serde_json::from_str(&stats).unwrap();
    let disk_stats = &doc["tiers"]["disk"];
    // The truncated file was found out by its header at start-up and deleted.
    assert_eq!(disk_stats["reads"], OBJECTS as u64 - 1, "{stats}");
    assert_eq!(disk_stats["objects"], OBJECTS as u64 - 1, "{stats}");
    assert!(!damaged.exists(), "the damaged file is deleted");
    assert!(
        lb.stderr().contains("dropping a file that does not decode"),
        "{}",
        lb.stderr()
    );
}

/// A disk tier lb cannot open is a warning, and the memory tier still caches.
#[test]
fn an_unusable_disk_path_falls_back_to_memory() {
    let dir = TestDir::new();
    let page = dir.write("sorry.html", "sorry\n");
    let not_a_dir = dir.write("a-file", "x");
    let primary = Origin::start("primary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let secondary = Origin::start("secondary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let config = format!(
        "{}\n[cache]\ndisk_path = \"{}\"\n",
        config(free_port(), primary.addr(), secondary.addr(), &page),
        not_a_dir.join("cache").display()
    );
    let lb = LbServer::start_file("lb.toml", &config, &[], "info");
    assert!(
        lb.stderr()
            .contains("cache disk tier unavailable; caching in memory only"),
        "{}",
        lb.stderr()
    );
    let first = get(lb.addr, &object(0));
    assert_eq!(cache_status(&first), "lb; fwd=uri-miss; stored");
    let again = get(lb.addr, &object(0));
    assert!(
        cache_status(&again).starts_with("lb; hit"),
        "{}",
        cache_status(&again)
    );
    assert_eq!(served(&again), served(&first));
}
