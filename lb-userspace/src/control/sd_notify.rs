//! systemd's readiness protocol (sd_notify), without libsystemd: one datagram to
//! `$NOTIFY_SOCKET`. With `Type=notify` and `NotifyAccess=all`, an upgrade's new process
//! says `MAINPID=` so that systemd follows it when the old process exits.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (`READY=1`, `MAINPID=…`, `STOPPING=1`) if lb runs under a service
/// manager that asked for it; anything else is a no-op.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = UnixDatagram::unbound() else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let sent = if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt as _;
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
    } else {
        socket.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = sent {
        tracing::debug!(error = %e, "sd_notify not sent");
    }
}
