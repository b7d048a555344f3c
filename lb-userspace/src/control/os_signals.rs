//! Turning SIGINT/SIGTERM into a shutdown event for the process owner.

use std::sync::mpsc;

use tokio::signal::unix::{SignalKind, signal};

use super::{ControlEvent, reload::Reloader};
use std::sync::Arc;

pub(super) async fn watch(events: mpsc::Sender<ControlEvent>, reloader: Arc<Reloader>) {
    let (Ok(mut interrupt), Ok(mut terminate), Ok(mut hangup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install SIGINT/SIGTERM handlers; stop lb with SIGKILL");
        return;
    };
    loop {
        let signal = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
            _ = hangup.recv() => {
                if let Err(e) = reloader.reload() {
                    tracing::error!("SIGHUP: reload refused, the running config keeps serving: {e}");
                }
                continue;
            }
        };
        tracing::info!(signal, "shutdown requested");
        if events.send(ControlEvent::Shutdown { signal }).is_err() {
            return;
        }
    }
}
