//! Turning SIGINT/SIGTERM into a shutdown event for the process owner, SIGHUP into a
//! reload, SIGUSR1 into reopening the access log (logrotate), and SIGUSR2 into an
//! upgrade (a new lb started to take over).
//!
//! Start-up takes a while (the XDP program, certificates, workers) before these handlers
//! exist, and a SIGTERM in that window would kill lb with the default action: no drain, a
//! failed exit status, pins left behind. So `lb run` holds the signals first thing
//! ([`hold_signals`]: blocked in the main thread, and so in every thread it starts), and
//! the control thread takes them once its handlers are in place ([`take_signals`]); a
//! signal sent meanwhile waits, pending, and is handled then.

use std::sync::mpsc;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use tokio::signal::unix::{SignalKind, signal};

use super::{ControlEvent, reload::Reloader};
use std::sync::Arc;

pub(super) async fn watch(
    events: mpsc::Sender<ControlEvent>,
    reloader: Arc<Reloader>,
    access_log: Option<Arc<crate::log_sink::LogSink>>,
) {
    let (Ok(mut interrupt), Ok(mut terminate), Ok(mut hangup), Ok(mut user1), Ok(mut user2)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    ) else {
        tracing::error!("cannot install SIGINT/SIGTERM handlers; they keep their default action");
        take_signals();
        return;
    };
    take_signals();
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
            _ = user1.recv() => {
                // logrotate moved the file away: the next batch goes to a new one.
                if let Some(log) = &access_log {
                    log.reopen();
                    tracing::info!("SIGUSR1: reopening the access log");
                }
                continue;
            }
            _ = user2.recv() => {
                // An upgrade: a new lb (the binary on disk now) takes over from this one.
                match super::upgrade::spawn_successor(&reloader) {
                    Ok(pid) => tracing::info!(pid, "SIGUSR2: started the new lb, which takes over"),
                    Err(e) => tracing::error!("SIGUSR2: no upgrade, this lb keeps serving: {e}"),
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

fn shutdown_and_reload_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        set.add(s);
    }
    set
}

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread, and so in every thread it
/// starts afterwards: call it first thing in `main`'s thread.
pub fn hold_signals() {
    if let Err(e) = pthread_sigmask(
        SigmaskHow::SIG_BLOCK,
        Some(&shutdown_and_reload_signals()),
        None,
    ) {
        tracing::warn!(error = %e, "cannot hold signals during start-up");
    }
}

/// Unblocks them in the calling thread (the control thread, once its handlers exist):
/// a signal that arrived during start-up is delivered now.
fn take_signals() {
    let _ = pthread_sigmask(
        SigmaskHow::SIG_UNBLOCK,
        Some(&shutdown_and_reload_signals()),
        None,
    );
}
