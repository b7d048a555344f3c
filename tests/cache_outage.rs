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

fn config(primary: SocketAddr, secondary: SocketAddr, page: &std::path::Path) -> String {
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
        free_port(),
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
    let lb = LbServer::start_file("lb.toml", &config(p_addr, s_addr, &page), &[], "info");

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
