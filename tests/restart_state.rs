//! Health across a restart (`[health] state_file`): an origin that was down is still down
//! for the first request after lb restarts, and the saved state is ignored for an origin
//! whose address changed in between (HAProxy's server-state bugs: haproxy#1412, #2506).

use std::time::Duration;

use lb_origin::Origin;
use lb_tests::{
    free_port,
    http::get,
    process::{LbServer, TestDir, wait_for},
};

fn config(
    primary: std::net::SocketAddr,
    secondary: std::net::SocketAddr,
    admin: std::net::SocketAddr,
) -> String {
    format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n[admin]\naddress = \"{admin}\"\n\
         [observability]\nattempts_header = true\n\
         [health]\nstate_file = \"health.json\"\n\
         [[origins]]\nid = \"primary\"\naddress = \"{primary}\"\n\
         [origins.health_check]\npath = \"/health\"\ninterval = \"200ms\"\nfast_interval = \"100ms\"\nunhealthy_threshold = 2\n\
         [[origins]]\nid = \"secondary\"\naddress = \"{secondary}\"\n\
         [[origin_groups]]\nid = \"g\"\nmembers = [\"primary\", \"secondary\"]\nfailover_status_codes = [502]\n\
         [default_behavior]\ntarget = \"g\"\n[kernel]\nenabled = false\n"
    )
}

fn primary_state(admin: std::net::SocketAddr) -> String {
    let doc: serde_json::Value = serde_json::from_str(&get(admin, "/origins").text()).unwrap();
    doc["origins"][0]["state"].as_str().unwrap_or("").to_owned()
}

/// Stops lb (SIGTERM: it drains and writes the state file) and hands back its directory.
fn stop(lb: LbServer) -> TestDir {
    let LbServer {
        mut process, dir, ..
    } = lb;
    assert!(
        process.terminate(Duration::from_secs(10)),
        "lb did not stop"
    );
    dir
}

#[test]
fn a_down_origin_stays_down_across_a_restart_unless_it_changed() {
    let secondary = Origin::start("secondary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let (refused, admin) = (free_port(), free_port());
    let toml = config(refused, secondary.addr(), admin);
    let lb = LbServer::start_file("lb.toml", &toml, &[], "info");
    wait_for("the primary to be down", Duration::from_secs(5), || {
        (primary_state(admin) == "down").then_some(())
    });
    let dir = stop(lb);
    let saved = std::fs::read_to_string(dir.path.join("health.json")).unwrap();
    assert!(saved.contains("\"state\": \"down\""), "{saved}");

    // Restarted: the primary is down from the first request on, not tried again.
    let lb = LbServer::start_in(dir, "lb.toml", &toml, &[], "info");
    let r = get(lb.addr, "/first");
    assert_eq!(r.status, 200);
    let attempts = r.header("x-lb-attempts").unwrap_or("");
    assert!(
        attempts.starts_with("secondary:200:") && !attempts.contains("primary"),
        "{attempts}\n{}",
        lb.stderr()
    );
    assert_eq!(primary_state(admin), "down");
    assert!(
        lb.stderr().contains("health state restored"),
        "{}",
        lb.stderr()
    );

    // The primary moved to another address meanwhile: its old state is not applied.
    let dir = stop(lb);
    let moved = free_port();
    let toml = config(moved, secondary.addr(), admin);
    let lb = LbServer::start_in(dir, "lb.toml", &toml, &[], "info");
    let r = get(lb.addr, "/moved");
    assert_eq!(r.status, 200);
    let attempts = r.header("x-lb-attempts").unwrap_or("");
    assert!(
        attempts.starts_with("primary:"),
        "{attempts}\n{}",
        lb.stderr()
    );
    assert!(
        lb.stderr().contains("changed_since=[\"primary\"]"),
        "{}",
        lb.stderr()
    );
}
