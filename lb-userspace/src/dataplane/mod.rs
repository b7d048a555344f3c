//! The data plane: one monoio runtime per worker thread, each pinned to a core, each with
//! its own SO_REUSEPORT listener, upstream pool and buffers. Nothing on the request path
//! is shared between workers, so there is no lock and no cross-thread traffic per request.
//!
//! This module never imports tokio (see the README's architecture rules).

mod access_log;
mod attempt;
mod body;
mod buffers;
mod cached;
mod client;
mod conn;
mod drain;
mod edge_functions;
mod error_pages;
mod error_response;
mod failover;
mod fate;
mod h2_stream;
mod h2_upstream;
mod h2_viewer;
mod hedge;
mod kernel_watch;
mod listener;
mod parking;
mod poll_tls;
mod refresh;
mod request_head;
mod respond;
pub mod selection;
mod stream;
mod task_guard;
mod tls_accept;
mod tunnel;
mod upstream;
mod worker;

use std::{
    net::SocketAddr,
    sync::{Arc, mpsc},
    thread::JoinHandle,
    time::Duration,
};

use crate::kernel::SignalsView;

/// What every worker gets at start: the snapshot in force (swapped on reload) and the
/// kernel signal view, if the XDP program is loaded.
#[derive(Clone)]
pub struct SharedState {
    pub current: Arc<crate::snapshot::Current>,
    pub kernel: Option<Arc<SignalsView>>,
    /// The kernel's socket events run: waits on origins can be cut short by them.
    pub kernel_events: bool,
    /// The process-wide cache store, shared by every worker.
    pub cache: Arc<crate::cache::Store>,
    /// The access log's writer thread (None: no access log).
    pub access_log: Option<Arc<crate::log_sink::LogSink>>,
}

/// Which I/O driver a worker ended up with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverKind {
    IoUring,
    Epoll,
}

/// The running workers.
pub struct DataPlane {
    local_addr: SocketAddr,
    tls_local_addr: Option<SocketAddr>,
    workers: Vec<WorkerHandle>,
    drivers: Vec<DriverKind>,
    /// Duplicates of the listening sockets, for handing them to a new lb process at an
    /// upgrade; emptied when the drain begins, so that a stopping lb's sockets close
    /// (and refuse) unless an upgrade passed them on.
    listeners: Handoff,
}

/// The listening sockets an upgrade may hand over (None once lb stops). A lock, taken
/// only at an upgrade and at shutdown: never on the request path.
pub type Handoff = Arc<std::sync::Mutex<Option<Listening>>>;

/// The listening sockets of a running data plane, or those a new one takes over.
#[derive(Debug)]
pub struct Listening {
    /// One per worker (SO_REUSEPORT).
    pub plain: Vec<std::net::TcpListener>,
    /// Empty, or one per worker.
    pub tls: Vec<std::net::TcpListener>,
}

struct WorkerHandle {
    stop: Option<futures_channel::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl DataPlane {
    /// Binds one listener per worker and starts the workers. Fails (before any worker
    /// runs) if the address cannot be bound or no worker can build its runtime.
    /// With `inherited`, the workers accept on those sockets (an upgrade: one worker per
    /// socket) instead of binding their own.
    pub fn start(shared: SharedState, inherited: Option<Listening>) -> anyhow::Result<Self> {
        let config = Arc::clone(&shared.current.load().config);
        let (listeners, tls_bound) = match inherited {
            Some(l) => (l.plain, l.tls),
            None => {
                let count = config.worker_count();
                let plain = listener::bind_reuseport(config.listener.address, count)?;
                let tls = match &config.tls {
                    Some(tls) => listener::bind_reuseport(tls.address, count)?,
                    None => Vec::new(),
                };
                (plain, tls)
            }
        };
        let count = listeners.len();
        anyhow::ensure!(count > 0, "no listening socket");
        let kept: Handoff = Arc::new(std::sync::Mutex::new(Some(Listening {
            plain: listeners
                .iter()
                .map(std::net::TcpListener::try_clone)
                .collect::<Result<_, _>>()?,
            tls: tls_bound
                .iter()
                .map(std::net::TcpListener::try_clone)
                .collect::<Result<_, _>>()?,
        })));
        let local_addr = listeners[0].local_addr()?;
        let mut tls_listeners: Vec<Option<std::net::TcpListener>> = if tls_bound.is_empty() {
            (0..count).map(|_| None).collect()
        } else {
            tls_bound.into_iter().map(Some).collect()
        };
        let tls_local_addr = match tls_listeners.first() {
            Some(Some(l)) => Some(l.local_addr()?),
            _ => None,
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut workers = Vec::with_capacity(count);
        for (index, listener) in listeners.into_iter().enumerate() {
            let (stop_tx, stop_rx) = futures_channel::oneshot::channel();
            let shared = shared.clone();
            let ready = ready_tx.clone();
            let core = config.listener.pin_workers.then_some(index % cores);
            let listeners = worker::Listeners {
                plain: listener,
                tls: tls_listeners[index].take(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("lb-worker-{index}"))
                .spawn(move || worker::run(index, core, listeners, shared, stop_rx, ready))?;
            workers.push(WorkerHandle {
                stop: Some(stop_tx),
                thread: Some(thread),
            });
        }
        drop(ready_tx);
        let mut drivers = Vec::with_capacity(count);
        for _ in 0..count {
            match ready_rx.recv() {
                Ok(Ok(kind)) => drivers.push(kind),
                Ok(Err(e)) => {
                    let mut plane = Self {
                        local_addr,
                        tls_local_addr,
                        workers,
                        drivers,
                        listeners: kept,
                    };
                    plane.stop_workers(Duration::ZERO);
                    return Err(e);
                }
                Err(_) => anyhow::bail!("a worker thread died while starting"),
            }
        }
        let uring = drivers
            .iter()
            .filter(|d| **d == DriverKind::IoUring)
            .count();
        tracing::info!(
            address = %local_addr,
            https = %tls_local_addr.map_or("off".to_owned(), |a| a.to_string()),
            workers = count,
            io_uring = uring,
            epoll = count - uring,
            pinned = config.listener.pin_workers,
            "data plane listening"
        );
        Ok(Self {
            local_addr,
            tls_local_addr,
            workers,
            drivers,
            listeners: kept,
        })
    }

    /// The listening sockets, for an upgrade to hand over.
    pub fn listening(&self) -> Handoff {
        Arc::clone(&self.listeners)
    }

    /// The address the workers listen on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The HTTPS listener's address, if there is one.
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.tls_local_addr
    }

    pub fn drivers(&self) -> &[DriverKind] {
        &self.drivers
    }

    /// Stops accepting, lets in-flight requests finish (up to `drain_timeout`), and joins
    /// the workers.
    pub fn shutdown(mut self, drain_timeout: Duration) {
        if let Ok(mut kept) = self.listeners.lock() {
            kept.take();
        }
        self.stop_workers(drain_timeout);
    }

    fn stop_workers(&mut self, _drain_timeout: Duration) {
        for w in &mut self.workers {
            if let Some(stop) = w.stop.take() {
                let _ = stop.send(());
            }
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        self.stop_workers(Duration::ZERO);
    }
}
