//! Running the real `lb` binary.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

/// The `lb` binary cargo built next to this test binary (target/<profile>/lb).
pub fn lb_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let lb = profile_dir.join("lb");
    assert!(
        lb.exists(),
        "{} is missing: build it first (`cargo build -p lb-userspace`; `cargo xtask test` does)",
        lb.display()
    );
    lb
}

/// The `lb-origin` binary next to `lb`.
pub fn origin_binary() -> PathBuf {
    let lb = lb_binary();
    let origin = lb.with_file_name("lb-origin");
    assert!(
        origin.exists(),
        "{} is missing: `cargo build -p lb-origin` (cargo xtask test does)",
        origin.display()
    );
    origin
}

/// Runs `lb` with `args` to completion.
pub fn lb(args: &[&str]) -> Output {
    Command::new(lb_binary())
        .args(args)
        .output()
        .expect("spawn lb")
}

/// A directory for one test's files, removed on drop.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(super::unique("lb-test-"));
        std::fs::create_dir_all(&path).expect("create test dir");
        Self { path }
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path.join(name);
        std::fs::write(&p, contents).expect("write test file");
        p
    }

    /// Writes a binary file; returns its path.
    pub fn write_bytes(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, contents).expect("write a test file");
        path
    }
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A running lb whose stderr goes to a file; killed on drop if still running.
pub struct LbProcess {
    pub child: Child,
    pub stderr_path: PathBuf,
}

impl LbProcess {
    /// Starts `program args...` (normally [`lb_binary`], or a wrapper such as setpriv),
    /// logging at `RUST_LOG=info`.
    pub fn spawn(program: &Path, args: &[&str], stderr_path: PathBuf) -> Self {
        Self::spawn_with_log(program, args, stderr_path, "info")
    }

    /// Like [`spawn`](Self::spawn) with an explicit `RUST_LOG` filter.
    pub fn spawn_with_log(
        program: &Path,
        args: &[&str],
        stderr_path: PathBuf,
        filter: &str,
    ) -> Self {
        let stderr = std::fs::File::create(&stderr_path).expect("create stderr file");
        let child = Command::new(program)
            .args(args)
            .env("RUST_LOG", filter)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn lb");
        Self { child, stderr_path }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Sends SIGTERM and waits up to `limit` for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self, limit: Duration) -> bool {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for LbProcess {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `f` every 20 ms until it returns `Some`, or panics after `limit` with `what`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Builds an lb TOML config for tests: listener on 127.0.0.1:0, kernel signals off unless
/// asked for, and any extra tables.
#[derive(Clone, Debug)]
pub struct LbConfig {
    pub workers: usize,
    pub origins: Vec<(String, std::net::SocketAddr, String)>,
    pub listener_extra: String,
    pub limits: String,
    pub kernel: String,
}

impl LbConfig {
    pub fn new() -> Self {
        Self {
            workers: 1,
            origins: Vec::new(),
            listener_extra: String::new(),
            limits: String::new(),
            kernel: "enabled = false\n".into(),
        }
    }

    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Adds an origin; `extra` holds more `key = value` lines for its table.
    pub fn origin(mut self, id: &str, addr: std::net::SocketAddr, extra: &str) -> Self {
        self.origins.push((id.into(), addr, extra.into()));
        self
    }

    pub fn limits(mut self, lines: &str) -> Self {
        self.limits = lines.into();
        self
    }

    pub fn listener(mut self, lines: &str) -> Self {
        self.listener_extra = lines.into();
        self
    }

    pub fn kernel(mut self, lines: &str) -> Self {
        self.kernel = lines.into();
        self
    }

    pub fn to_toml(&self) -> String {
        let mut s = format!(
            "[listener]\naddress = \"127.0.0.1:0\"\nworkers = {}\n{}\n[limits]\n{}\n",
            self.workers, self.listener_extra, self.limits
        );
        for (id, addr, extra) in &self.origins {
            s.push_str(&format!(
                "[[origins]]\nid = \"{id}\"\naddress = \"{addr}\"\n{extra}\n"
            ));
        }
        s.push_str(&format!("[kernel]\n{}\n", self.kernel));
        s
    }
}

impl Default for LbConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// A running `lb run` and the address it listens on.
pub struct LbServer {
    pub process: LbProcess,
    pub addr: std::net::SocketAddr,
    /// The HTTPS listener, if the config has one.
    pub tls_addr: Option<std::net::SocketAddr>,
    pub dir: TestDir,
}

impl LbServer {
    pub fn start(config: &LbConfig) -> Self {
        Self::start_with_log(config, "info")
    }

    pub fn start_with_log(config: &LbConfig, filter: &str) -> Self {
        Self::start_file("lb.toml", &config.to_toml(), &[], filter)
    }

    /// Starts lb on a config file written verbatim (`name` decides TOML or JSON), with
    /// extra command-line arguments.
    pub fn start_file(name: &str, contents: &str, extra_args: &[&str], filter: &str) -> Self {
        Self::start_in(TestDir::new(), name, contents, extra_args, filter)
    }

    /// Like [`LbServer::start_file`], in `dir` (which may already hold certificates).
    pub fn start_in(
        dir: TestDir,
        name: &str,
        contents: &str,
        extra_args: &[&str],
        filter: &str,
    ) -> Self {
        Self::start_limited(dir, name, contents, extra_args, filter, None)
    }

    /// Like [`LbServer::start_in`]; with `fd_limit`, lb runs under `ulimit -n` of that
    /// (soft and hard), as on a host configured that way.
    pub fn start_limited(
        dir: TestDir,
        name: &str,
        contents: &str,
        extra_args: &[&str],
        filter: &str,
        fd_limit: Option<u64>,
    ) -> Self {
        let cfg = dir.write(name, contents);
        let lb = lb_binary();
        let ulimit = fd_limit.map(|n| format!("ulimit -n {n} && exec \"$0\" \"$@\""));
        let mut args: Vec<&str> = Vec::new();
        let program = match &ulimit {
            Some(script) => {
                args.extend(["-c", script.as_str(), lb.to_str().unwrap()]);
                PathBuf::from("/bin/sh")
            }
            None => lb.clone(),
        };
        args.extend(["run", "--config", cfg.to_str().unwrap()]);
        args.extend_from_slice(extra_args);
        let mut process =
            LbProcess::spawn_with_log(&program, &args, dir.path.join("stderr"), filter);
        let addr = wait_for("lb to listen", Duration::from_secs(15), || {
            let log = process.stderr();
            assert!(process.is_running(), "lb exited:\n{log}");
            log.lines()
                .find(|l| l.contains("lb running"))
                .and_then(|l| l.split("listen=").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|a| a.parse().ok())
        });
        let tls_addr = process
            .stderr()
            .lines()
            .find(|l| l.contains("lb running"))
            .and_then(|l| l.split("https=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok());
        Self {
            process,
            addr,
            tls_addr,
            dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    /// Sends `signal` to lb.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), signal).unwrap();
    }

    /// SIGHUP, then waits until lb has reloaded (one more `reloaded` line in its log).
    pub fn reload(&self) {
        let before = self.stderr().matches("reloaded").count();
        self.signal(nix::sys::signal::Signal::SIGHUP);
        wait_for("the reload", Duration::from_secs(5), || {
            (self.stderr().matches("reloaded").count() > before).then_some(())
        });
    }

    pub fn stderr(&self) -> String {
        self.process.stderr()
    }
}
