//! A network namespace joined to the host by a veth pair, created and removed by the test.
//! Traffic to the namespace's addresses stays on this machine.

use std::{net::Ipv4Addr, os::fd::AsFd as _, process::Command};

/// `ip` with arguments; panics with its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run `ip` (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Namespace `ns` with `ns_if` (address `ns_ip`) facing `host_if` (address `host_ip`).
pub struct VethNamespace {
    pub ns: String,
    pub host_if: String,
    pub ns_if: String,
    pub host_ip: Ipv4Addr,
    pub ns_ip: Ipv4Addr,
}

impl VethNamespace {
    pub fn create() -> Self {
        let tag = super::unique("");
        let n: u32 = tag
            .replace('x', "")
            .parse::<u64>()
            .map(|v| (v % 16_000) as u32)
            .unwrap_or(1);
        let host_ip = Ipv4Addr::new(10, 213, (n / 64 % 250) as u8, ((n % 64) * 4 + 1) as u8);
        let ns_ip = Ipv4Addr::from(u32::from(host_ip) + 1);
        let ns = format!("lbt{tag}");
        let host_if = format!("lbh{tag}");
        let ns_if = format!("lbn{tag}");
        assert!(host_if.len() <= 15, "interface name too long: {host_if}");
        let this = Self {
            ns,
            host_if,
            ns_if,
            host_ip,
            ns_ip,
        };
        ip(&["netns", "add", &this.ns]);
        ip(&[
            "link",
            "add",
            &this.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &this.ns_if,
        ]);
        ip(&["link", "set", &this.ns_if, "netns", &this.ns]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", this.host_ip),
            "dev",
            &this.host_if,
        ]);
        ip(&["link", "set", &this.host_if, "up"]);
        ip(&[
            "-n",
            &this.ns,
            "addr",
            "add",
            &format!("{}/30", this.ns_ip),
            "dev",
            &this.ns_if,
        ]);
        ip(&["-n", &this.ns, "link", "set", &this.ns_if, "up"]);
        ip(&["-n", &this.ns, "link", "set", "lo", "up"]);
        this
    }

    /// Runs `f` on a thread that has joined the namespace; sockets it creates live there.
    pub fn run_inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.ns);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("open the namespace file");
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("setns into the test namespace");
            f()
        })
        .join()
        .expect("namespace thread panicked")
    }

    /// Runs a shell command inside the namespace.
    pub fn exec(&self, script: &str) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "sh", "-c", script])
            .output()
            .expect("ip netns exec");
        assert!(
            out.status.success(),
            "in {}: {script}: {}",
            self.ns,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for VethNamespace {
    fn drop(&mut self) {
        // Deleting the namespace destroys its end of the pair, which removes both ends.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .stderr(std::process::Stdio::null())
            .status();
    }
}
