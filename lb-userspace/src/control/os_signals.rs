//! Turning SIGINT/SIGTERM into a shutdown event for the process owner.

use std::sync::mpsc;

use tokio::signal::unix::{SignalKind, signal};

use super::ControlEvent;

pub(super) async fn watch(events: mpsc::Sender<ControlEvent>) {
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot install SIGINT/SIGTERM handlers; stop lb with SIGKILL");
        return;
    };
    loop {
        let signal = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(signal, "shutdown requested");
        if events.send(ControlEvent::Shutdown { signal }).is_err() {
            return;
        }
    }
}
