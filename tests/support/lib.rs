//! Shared helpers for lb's integration tests.

pub mod dns;
pub mod http;
pub mod load;
pub mod netns;
pub mod packets;
pub mod process;
pub mod raw_origin;
pub mod tls;

use std::{fs::File, path::PathBuf};

/// Whether a test that needs root may run. Outside CI a non-root run skips with a note;
/// in CI (`CI` set) it fails, because CI runs as root and a skipped kernel test there
/// would hide a broken kernel path.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test} needs root, and CI runs as root: refusing to skip it");
    }
    eprintln!("SKIPPED {test}: needs root (CAP_BPF, CAP_NET_ADMIN)");
    false
}

/// Only one XDP program can be attached to `lo` at a time, so every test that attaches
/// there (directly or through an lb process) holds this lock, across test binaries too.
pub struct LoopbackXdpLock {
    _lock: nix::fcntl::Flock<File>,
}

impl LoopbackXdpLock {
    pub fn acquire() -> Self {
        let file = File::create(std::env::temp_dir().join("lb-tests-xdp-lo.lock"))
            .expect("create the lo XDP lock file");
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .expect("flock the lo XDP lock file");
        Self { _lock: lock }
    }
}

/// A loopback address nothing listens on (the port was free a moment ago): for an origin
/// that refuses connections, or an admin API address.
///
/// The port comes from below the kernel's ephemeral range (read from
/// `ip_local_port_range`), so a port handed out here cannot also be given by the kernel
/// to a socket bound to port 0 (an origin, lb's own listener) or to an outgoing
/// connection between the moment it is chosen and the moment its user binds it. Ports
/// are handed out in turn from a per-process starting point, each checked free by a bind.
pub fn free_port() -> std::net::SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u32, ephemeral_start.max(12_000));
    let span = high - low;
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let port = low + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port as u16));
        if std::net::TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
    panic!("no free loopback port in {low}..{high}");
}

/// A unique name fragment for kernel objects (pins, namespaces) of one test.
pub fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}{}x{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A pin directory under bpffs that no other test uses.
pub fn unique_pin_dir() -> PathBuf {
    PathBuf::from(format!("/sys/fs/bpf/{}", unique("lb-test-")))
}

/// The DistributionConfigs of `../shared/corpus/cloudfront` (written by other people; read
/// where they are, never copied), sorted by name; `None` where the corpus is absent.
pub fn cloudfront_corpus() -> Option<Vec<PathBuf>> {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/cloudfront");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "{files:?}");
    Some(files)
}
