//! The control plane: one thread running a tokio current-thread runtime.
//!
//! It owns everything that is not on the request path: OS signal handling, forwarding the
//! XDP program's aya-log records to tracing, and (as lb grows) health checks, the admin
//! API and config reload. It never imports monoio; it reaches the data plane only through
//! shared snapshots, atomics and channels.

mod admin;
mod dns;
mod exposition;
mod health;
mod os_signals;

pub use dns::{Lookup, check_names, resolve_at_start};
pub use os_signals::hold_signals;
mod reload;
pub mod sd_notify;
pub mod upgrade;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, mpsc},
    thread::JoinHandle,
};

pub use reload::ReloadSource;

use crate::{
    kernel::{KernelSignals, ProgramLogReader, SignalsView, forward_program_logs},
    snapshot::Current,
};

/// What the control plane needs to start.
pub struct ControlSetup {
    pub program_logs: Option<ProgramLogReader>,
    /// Where the admin API listens; `None`: no admin API.
    pub admin: Option<SocketAddr>,
    /// The snapshot in force; reloads publish new ones here.
    pub current: Arc<Current>,
    pub kernel_view: Option<Arc<SignalsView>>,
    /// The loaded XDP program, for updating its origin index on reload.
    pub kernel: Arc<Mutex<Option<KernelSignals>>>,
    /// Where reloads read the config from; `None`: reload is not available.
    pub reload: Option<ReloadSource>,
    /// Data plane workers (the snapshot's metrics have one block each).
    pub workers: usize,
    /// The cache store the workers share (for stats and purges).
    pub cache: Arc<crate::cache::Store>,
    /// The access log's writer (SIGUSR1 reopens its file; its counters are metrics).
    pub access_log: Option<Arc<crate::log_sink::LogSink>>,
    /// The data plane's listening sockets, for an upgrade to hand over.
    pub listening: crate::dataplane::Handoff,
}

/// What the control plane tells the thread that owns the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlEvent {
    /// SIGINT or SIGTERM arrived: stop accepting, drain, exit.
    Shutdown { signal: &'static str },
}

/// Handle to the running control plane thread.
pub struct ControlPlane {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ControlPlane {
    /// Starts the control plane thread. `events` receives [`ControlEvent`]s.
    pub fn spawn(setup: ControlSetup, events: mpsc::Sender<ControlEvent>) -> std::io::Result<Self> {
        // Bind here so a busy admin port fails start-up instead of being logged later.
        let admin =
            match setup.admin {
                Some(addr) => Some(admin_listener(addr).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("admin API on {addr}: {e}"))
                })?),
                None => None,
            };
        let ControlSetup {
            program_logs,
            current,
            kernel_view,
            kernel,
            reload,
            workers,
            cache,
            access_log,
            listening,
            ..
        } = setup;
        let upgrade_socket = current.load().config.listener.upgrade_socket.clone();
        let reloader = Arc::new(reload::Reloader {
            source: reload,
            current: Arc::clone(&current),
            kernel: Arc::clone(&kernel),
            workers,
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("lb-control".into())
            .spawn(move || {
                runtime.block_on(async move {
                    if let Some(reader) = program_logs {
                        tokio::spawn(forward_program_logs(reader));
                    }
                    if let Some(path) = upgrade_socket {
                        tokio::spawn(upgrade::serve(
                            path,
                            listening,
                            Arc::clone(&current),
                            Arc::clone(&kernel),
                            events.clone(),
                        ));
                    }
                    tokio::spawn(os_signals::watch(
                        events,
                        Arc::clone(&reloader),
                        access_log.clone(),
                    ));
                    tokio::spawn(dns::refresh(Arc::clone(&current), Arc::clone(&kernel)));
                    tokio::spawn(health::run(Arc::clone(&current), kernel_view.clone()));
                    tokio::spawn(save_health_state(Arc::clone(&current)));
                    tokio::spawn(retry_kernel_attachments(
                        Arc::clone(&current),
                        Arc::clone(&kernel),
                    ));
                    if let Some(listener) = admin {
                        tokio::spawn(admin::serve(
                            listener,
                            admin::State {
                                current,
                                kernel: kernel_view,
                                reloader,
                                cache,
                                access_log,
                            },
                        ));
                    }
                    // Runs until the owner asks to stop (or drops the handle).
                    let _ = stop_rx.await;
                });
            })?;
        Ok(Self {
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Stops the runtime and joins the thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// The admin API's socket, with a backlog as deep as its connection cap (std's 128
/// would leave a burst of clients waiting for SYN-ACK retransmits).
fn admin_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    // An upgrade's new process binds it while the old one drains.
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Keeps `[health] state_file` current (every second), so a restart, or a crash and
/// `Restart=on-failure`, starts from what lb knew.
async fn save_health_state(current: Arc<Current>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut warned = false;
    loop {
        tick.tick().await;
        let snap = current.load();
        let Some(path) = &snap.config.health.state_file else {
            continue;
        };
        match crate::health::state_file::save(path, &snap.config, &snap.health) {
            Ok(()) => warned = false,
            Err(e) if !warned => {
                tracing::warn!(path = %path.display(), error = %e, "health state not saved");
                warned = true;
            }
            Err(_) => {}
        }
    }
}

/// Every 2 s, attaches XDP and pins maps where that failed (an upgrade's old lb held
/// them until it exited).
async fn retry_kernel_attachments(
    current: Arc<Current>,
    kernel: Arc<Mutex<Option<KernelSignals>>>,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        tick.tick().await;
        let registrations = current.load().kernel_registrations();
        if let Ok(mut kernel) = kernel.lock()
            && let Some(k) = kernel.as_mut()
            && k.retry_missing(&registrations)
        {
            tracing::info!("kernel signals complete: every interface attached, maps pinned");
        }
    }
}
