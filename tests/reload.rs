//! Config reload under load: 20 reloads (half `POST /reload`, half SIGHUP) alternating
//! between two configs, while ~500 GETs/s run. No client sees an error, origins that stay
//! keep their health, an invalid config is refused with its error and changes nothing.

use std::{net::SocketAddr, time::Duration};

use lb_origin::Origin;
use lb_tests::{
    free_port,
    http::{Client, get},
    load::Load,
    process::{LbServer, wait_for},
};

fn config(p: SocketAddr, s: SocketAddr, t: Option<SocketAddr>) -> String {
    let mut c = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 2\n\n[observability]\naccess_log = false\n\n\
         [[origins]]\nid = \"primary\"\naddress = \"{p}\"\n[origins.health_check]\npath = \"/health\"\n\
         interval = \"100ms\"\nfast_interval = \"100ms\"\ntimeout = \"200ms\"\n\n\
         [[origins]]\nid = \"secondary\"\naddress = \"{s}\"\n\n"
    );
    if let Some(t) = t {
        c.push_str(&format!(
            "[[origins]]\nid = \"third\"\naddress = \"{t}\"\n\n[[behaviors]]\npath_pattern = \"/third/*\"\ntarget = \"third\"\n\n"
        ));
    }
    c.push_str(
        "[[origin_groups]]\nid = \"site\"\nmembers = [\"primary\", \"secondary\"]\nfailover_status_codes = [503]\n\n\
         [default_behavior]\ntarget = \"site\"\n\n[kernel]\nenabled = false\n",
    );
    c
}

fn post_reload(admin: SocketAddr) -> (u16, String) {
    let mut c = Client::connect(admin);
    let r = c.request("POST /reload HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n");
    (r.status, r.text())
}

fn origins(admin: SocketAddr) -> serde_json::Value {
    serde_json::from_str(&get(admin, "/origins").text()).unwrap()
}

#[test]
fn twenty_reloads_under_load_keep_health_and_lose_no_request() {
    let (p, s, t) = (
        Origin::start("primary", "127.0.0.1:0".parse().unwrap()).unwrap(),
        Origin::start("secondary", "127.0.0.1:0".parse().unwrap()).unwrap(),
        Origin::start("third", "127.0.0.1:0".parse().unwrap()).unwrap(),
    );
    let admin = free_port();
    let lb = LbServer::start_file(
        "lb.toml",
        &config(p.addr(), s.addr(), None),
        &["--admin", &admin.to_string()],
        "info",
    );
    let path = lb.dir.path.join("lb.toml");
    // The primary is down by its health checks; the reloads must not forget that.
    p.set_health_status(503);
    p.set_forced_status(Some(503));
    wait_for("the primary to be down", Duration::from_secs(3), || {
        (origins(admin)["origins"][0]["state"] == "down").then_some(())
    });
    let load = Load::start(lb.addr, 500, Duration::from_secs(4), 4, "/reload-load");
    for i in 0..20 {
        std::thread::sleep(Duration::from_millis(150));
        let with_third = i % 2 == 0;
        std::fs::write(
            &path,
            config(p.addr(), s.addr(), with_third.then(|| t.addr())),
        )
        .unwrap();
        if i % 2 == 0 {
            let (status, body) = post_reload(admin);
            assert_eq!(status, 200, "{body}");
            // Three origins now; the primary and the secondary (at least) keep their
            // health (the third too, if the SIGHUP before has not been applied yet).
            let kept: usize = body
                .split("3 origins (")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no origin count in {body}"));
            assert!(kept >= 2, "{body}");
        } else {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(lb.pid() as i32),
                nix::sys::signal::Signal::SIGHUP,
            )
            .unwrap();
        }
        if with_third {
            // The new behavior is live as soon as the reload returns.
            assert_eq!(get(lb.addr, "/third/x").header("x-origin"), Some("third"));
        }
    }
    let samples = load.finish();
    let errors = samples.iter().filter(|x| x.status != 200).count();
    println!(
        "20 reloads during {} requests: {errors} errors",
        samples.len()
    );
    assert_eq!(errors, 0);
    let doc = origins(admin);
    assert_eq!(doc["origins"][0]["id"], "primary");
    assert_eq!(
        doc["origins"][0]["state"], "down",
        "health state survived 20 reloads"
    );
    assert!(
        doc["origins"][0]["state_for_ms"].as_u64().unwrap() > 3000,
        "{doc:#}"
    );
    let reloads = lb
        .stderr()
        .lines()
        .filter(|l| l.contains("reloaded "))
        .count();
    assert_eq!(reloads, 20, "{}", lb.stderr());
}

#[test]
fn an_invalid_config_is_refused_and_the_old_one_keeps_serving() {
    let p = Origin::start("primary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let s = Origin::start("secondary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let admin = free_port();
    let lb = LbServer::start_file(
        "lb.toml",
        &config(p.addr(), s.addr(), None),
        &["--admin", &admin.to_string()],
        "info",
    );
    let path = lb.dir.path.join("lb.toml");
    std::fs::write(
        &path,
        config(p.addr(), s.addr(), None).replace(
            "members = [\"primary\", \"secondary\"]",
            "members = [\"primary\", \"nope\"]",
        ),
    )
    .unwrap();
    let (status, body) = post_reload(admin);
    assert_eq!(status, 400);
    assert!(
        body.contains("lb.toml:")
            && body.contains("origin_groups[0].members: unknown origin id `nope`"),
        "{body}"
    );
    assert_eq!(
        get(lb.addr, "/still").header("x-origin"),
        Some("primary"),
        "the old config keeps serving"
    );
}
