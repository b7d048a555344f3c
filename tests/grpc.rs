//! gRPC through failover groups, with real gRPC clients and servers (Python grpcio,
//! tests/support/grpc_probe.py): HTTP/2 end to end, trailers both ways, a unary call
//! moved on when the primary answers UNAVAILABLE, a streaming call never replayed once
//! its first message went out.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use lb_tests::{
    free_port,
    process::{LbServer, TestDir},
};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("support/grpc_probe.py")
}

/// A gRPC server in `mode` (ok, unavailable, fail-mid-stream), counting its calls in
/// `<name>.calls` in `dir`. Killed on drop.
struct GrpcServer {
    child: Child,
    addr: SocketAddr,
    calls_file: PathBuf,
}

impl GrpcServer {
    fn start(dir: &TestDir, name: &str, mode: &str) -> Self {
        let addr = free_port();
        let mut child = Command::new("/usr/bin/python3")
            .arg(script())
            .args(["server", &addr.port().to_string(), name, mode])
            .current_dir(&dir.path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs (Debian: python3-grpcio)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the gRPC server {name} starts");
        Self {
            child,
            addr,
            calls_file: dir.path.join(format!("{name}.calls")),
        }
    }

    fn calls(&self) -> u64 {
        std::fs::read_to_string(&self.calls_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One call through lb: (status code name, messages).
fn call(lb: SocketAddr, kind: &str) -> (String, Vec<String>) {
    let out = Command::new("/usr/bin/python3")
        .arg(script())
        .args(["client", &lb.to_string(), kind])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let messages = doc["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect();
    (doc["code"].as_str().unwrap().to_owned(), messages)
}

fn start_lb(primary: SocketAddr, secondary: SocketAddr, group_extra: &str) -> LbServer {
    let toml = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nworkers = 1\n\n\
         [[origins]]\nid = \"primary\"\naddress = \"{primary}\"\nprotocol_version = \"h2c\"\n\n\
         [[origins]]\nid = \"secondary\"\naddress = \"{secondary}\"\nprotocol_version = \"h2c\"\n\n\
         [[origin_groups]]\nid = \"site\"\nmembers = [\"primary\", \"secondary\"]\nfailover_status_codes = [502, 503, 504]\n{group_extra}\n\n\
         [default_behavior]\ntarget = \"site\"\nallowed_methods = [\"GET\", \"HEAD\", \"OPTIONS\", \"PUT\", \"POST\", \"PATCH\", \"DELETE\"]\n\n\
         [kernel]\nenabled = false\n"
    );
    LbServer::start_file("lb.toml", &toml, &[], "info")
}

#[test]
fn unary_and_streaming_calls_move_on_when_the_primary_is_unavailable() {
    let dir = TestDir::new();
    let primary = GrpcServer::start(&dir, "primary", "unavailable");
    let secondary = GrpcServer::start(&dir, "secondary", "ok");
    let lb = start_lb(primary.addr, secondary.addr, "");
    let (code, messages) = call(lb.addr, "unary");
    assert_eq!(
        (code.as_str(), messages),
        ("OK", vec!["secondary:hello".to_owned()])
    );
    // Refused before its first message: the streaming call moves on too.
    let (code, messages) = call(lb.addr, "stream");
    assert_eq!(code, "OK");
    assert_eq!(
        messages,
        ["secondary:0", "secondary:1", "secondary:2", "secondary:3"]
    );
    assert_eq!((primary.calls(), secondary.calls()), (2, 2));
}

#[test]
fn a_stream_that_fails_after_its_first_message_is_never_replayed() {
    let dir = TestDir::new();
    let primary = GrpcServer::start(&dir, "primary", "fail-mid-stream");
    let secondary = GrpcServer::start(&dir, "secondary", "ok");
    let lb = start_lb(primary.addr, secondary.addr, "");
    let (code, messages) = call(lb.addr, "stream");
    // The status in the trailers reaches the client, after the messages that came.
    assert_eq!(code, "UNAVAILABLE");
    assert_eq!(messages, ["primary:0", "primary:1"]);
    assert_eq!(secondary.calls(), 0, "never replayed");
}

#[test]
fn grpc_failover_statuses_are_configurable() {
    let dir = TestDir::new();
    let primary = GrpcServer::start(&dir, "primary", "unavailable");
    let secondary = GrpcServer::start(&dir, "secondary", "ok");
    let lb = start_lb(
        primary.addr,
        secondary.addr,
        "failover_grpc_status_codes = []",
    );
    let (code, messages) = call(lb.addr, "unary");
    assert_eq!((code.as_str(), messages.len()), ("UNAVAILABLE", 0));
    assert_eq!(secondary.calls(), 0);
}
