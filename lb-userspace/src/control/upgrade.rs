//! Upgrades that drop nothing: a new lb process (`lb run --takeover SOCKET`) connects to
//! the running one's upgrade socket (`[listener] upgrade_socket`) and receives its
//! listening sockets (SCM_RIGHTS: the same kernel sockets, accept queues included) and
//! its health table. Once the new process is accepting it says so, and the old one
//! stops accepting, drains its in-flight requests, tunnels and HTTP/2 streams (up to
//! `drain_timeout`) and exits. A connection is never refused: the sockets never close.
//!
//! The protocol, one exchange per upgrade: the new process writes `TAKEOVER\n`; the old
//! sends one message with the sockets and a JSON payload ([`Handover`]); the new writes
//! `R` once its workers run. Anything else, or silence for [`READY_TIMEOUT`], and the old
//! process keeps serving as if nothing happened.

use std::{
    io::{Read as _, Write as _},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    sync::{Arc, mpsc},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::ControlEvent;
use crate::{
    dataplane::{Handoff, Listening},
    kernel::fd_passing,
    snapshot::Current,
};

/// How long the new process may take from receiving the sockets to running.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What travels with the sockets.
#[derive(Debug, Serialize, Deserialize)]
pub struct Handover {
    /// The first `plain` sockets are the HTTP listeners, the next `tls` the HTTPS ones.
    pub plain: usize,
    pub tls: usize,
    /// The health state, in the state file's format.
    pub health: serde_json::Value,
}

/// Serves takeover requests on `path` until one succeeds; then asks the process to drain
/// and exit.
pub(super) async fn serve(
    path: PathBuf,
    listening: Handoff,
    current: Arc<Current>,
    kernel: Arc<std::sync::Mutex<Option<crate::kernel::KernelSignals>>>,
    events: mpsc::Sender<ControlEvent>,
) {
    // A socket file left by the process this one took over from (or a crash) is stale.
    let _ = std::fs::remove_file(&path);
    let listener = match tokio::net::UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "upgrade socket unavailable: `lb run --takeover` cannot take over from this lb");
            return;
        }
    };
    tracing::info!(path = %path.display(), "upgrade socket listening");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        let listening = Arc::clone(&listening);
        let snap = current.load();
        let health = crate::health::state_file::to_json(&snap.config, &snap.health)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(serde_json::Value::Null);
        let handed = tokio::task::spawn_blocking(move || hand_over(stream, &listening, health))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match handed {
            Ok(()) => {
                tracing::info!("upgrade: a new lb process took over the listeners; draining");
                // The new process pins its maps at the same path once these are gone.
                if let Ok(mut k) = kernel.lock()
                    && let Some(k) = k.as_mut()
                {
                    k.leave_pins();
                }
                let _ = events.send(ControlEvent::Shutdown { signal: "upgrade" });
                return;
            }
            Err(e) => tracing::warn!(error = %e, "upgrade attempt failed; this lb keeps serving"),
        }
    }
}

/// One takeover: the request, the sockets, then the new process's word that it runs.
fn hand_over(
    mut stream: std::os::unix::net::UnixStream,
    listening: &Handoff,
    health: serde_json::Value,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = [0u8; 9];
    stream.read_exact(&mut request)?;
    if &request != b"TAKEOVER\n" {
        return Err(std::io::Error::other("not a takeover request"));
    }
    {
        // Held while sending: a shutdown starting meanwhile closes them after, not during.
        let kept = listening
            .lock()
            .map_err(|_| std::io::Error::other("listener hand-off lock poisoned"))?;
        let Some(listening) = kept.as_ref() else {
            return Err(std::io::Error::other("this lb is shutting down"));
        };
        let fds: Vec<_> = listening
            .plain
            .iter()
            .chain(&listening.tls)
            .map(AsRawFd::as_raw_fd)
            .collect();
        let payload = serde_json::to_vec(&Handover {
            plain: listening.plain.len(),
            tls: listening.tls.len(),
            health,
        })?;
        fd_passing::send_fds(&stream, &fds, &payload)?;
    }
    stream.set_read_timeout(Some(READY_TIMEOUT))?;
    let mut ready = [0u8; 1];
    stream.read_exact(&mut ready)?;
    if ready != *b"R" {
        return Err(std::io::Error::other("the new process did not start"));
    }
    Ok(())
}

/// The new process's side: connects to `path`, takes the sockets and the health.
pub fn take_over(path: &Path) -> anyhow::Result<(Listening, Vec<u8>, TakeoverDone)> {
    use anyhow::Context as _;
    let mut stream = std::os::unix::net::UnixStream::connect(path)
        .with_context(|| format!("--takeover {}: no lb listening there", path.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"TAKEOVER\n")?;
    let (fds, payload) = fd_passing::recv_fds(&stream).context("receiving the listeners")?;
    let handover: Handover = serde_json::from_slice(&payload).context("the handover message")?;
    anyhow::ensure!(
        fds.len() == handover.plain + handover.tls && handover.plain > 0,
        "expected {} sockets, received {}",
        handover.plain + handover.tls,
        fds.len()
    );
    let mut sockets = fds.into_iter().map(std::net::TcpListener::from);
    let plain: Vec<_> = sockets.by_ref().take(handover.plain).collect();
    let tls: Vec<_> = sockets.collect();
    for l in plain.iter().chain(&tls) {
        l.set_nonblocking(true)?;
    }
    let health = serde_json::to_vec(&handover.health)?;
    Ok((Listening { plain, tls }, health, TakeoverDone(stream)))
}

/// Tells the old process, once this one runs, that it may drain and exit.
pub struct TakeoverDone(std::os::unix::net::UnixStream);

impl TakeoverDone {
    pub fn ready(mut self) -> std::io::Result<()> {
        self.0.write_all(b"R")
    }
}

/// SIGUSR2: starts the lb binary now on disk with this process's arguments and
/// `--takeover` this process's upgrade socket; it takes over, and this process drains.
/// Returns the new process's pid.
pub(super) fn spawn_successor(reloader: &super::reload::Reloader) -> std::io::Result<u32> {
    let socket = reloader
        .current
        .load()
        .config
        .listener
        .upgrade_socket
        .clone()
        .ok_or_else(|| std::io::Error::other("no [listener] upgrade_socket in the config"))?;
    // After a package upgrade /proc/self/exe names the replaced file "... (deleted)":
    // the path is where the new binary is.
    let exe = std::env::current_exe()?;
    let exe = exe
        .to_str()
        .and_then(|s| s.strip_suffix(" (deleted)"))
        .map_or(exe.clone(), PathBuf::from);
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    let mut old = std::env::args_os().skip(1);
    while let Some(arg) = old.next() {
        if arg == "--takeover" {
            old.next();
        } else if !arg.to_string_lossy().starts_with("--takeover=") {
            args.push(arg);
        }
    }
    let child = std::process::Command::new(exe)
        .args(args)
        .arg("--takeover")
        .arg(socket)
        .stdin(std::process::Stdio::null())
        .spawn()?;
    Ok(child.id())
}
