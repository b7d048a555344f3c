//! `lb run`: start lb from a config file and run until SIGINT/SIGTERM.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc, sync::mpsc};

use anyhow::Context as _;

pub use crate::control::ReloadSource;
use crate::{
    config::{Config, Overrides},
    control::{ControlEvent, ControlPlane},
    dataplane::{DataPlane, SharedState},
    kernel::{KernelSettings, KernelSignals, OriginRegistration},
    snapshot::{Current, Snapshot},
};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Config file: lb TOML, or a CloudFront DistributionConfig JSON.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Listen address, overriding the file (JSON configs have none: default 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Admin API address (loopback recommended), overriding the file.
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    #[command(flatten)]
    pub tls: TlsFlags,
    /// Take over the listening sockets and health of the lb running with this
    /// `upgrade_socket`, which then drains and exits: an upgrade that drops nothing.
    #[arg(long)]
    pub takeover: Option<PathBuf>,
}

/// Settings from the command line that a CloudFront JSON config has no place for: TLS
/// material, and the files of the functions its ARNs name.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsFlags {
    /// HTTPS listener address (with --cert and --key, or the file's [tls] certificates).
    #[arg(long)]
    pub tls_listen: Option<SocketAddr>,
    /// PEM certificate chain for the HTTPS listener, replacing the file's.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key for --cert.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Extra CA certificate (PEM) trusted for HTTPS origins; repeatable.
    #[arg(long)]
    pub origin_ca: Vec<PathBuf>,
    /// `ARN=FILE`: the JavaScript a CloudFront JSON config's Lambda@Edge or CloudFront
    /// Functions ARN runs (the ARN with or without its version); repeatable.
    #[arg(long = "function", value_parser = function_mapping)]
    pub functions: Vec<(String, PathBuf)>,
    /// `NAME=ADDR[,ADDR...]`: use these addresses for an origin's name instead of DNS
    /// (like curl's --resolve); repeatable.
    #[arg(long = "resolve", value_parser = crate::config::parse_resolve_flag)]
    pub resolve: Vec<(String, Vec<std::net::IpAddr>)>,
    /// Run without the eBPF part (as `[kernel] enabled = false`; a CloudFront JSON
    /// config has no place for it): health then uses passive and active signals only.
    #[arg(long)]
    pub no_kernel: bool,
}

fn function_mapping(s: &str) -> Result<(String, PathBuf), String> {
    match s.rsplit_once('=') {
        Some((arn, file)) if !arn.is_empty() && !file.is_empty() => {
            Ok((arn.to_owned(), PathBuf::from(file)))
        }
        _ => Err(format!("`{s}`: expected ARN=FILE")),
    }
}

impl TlsFlags {
    /// The overrides these flags make, with `listen` and `admin`.
    pub fn overrides(&self, listen: Option<SocketAddr>, admin: Option<SocketAddr>) -> Overrides {
        Overrides {
            listen,
            admin,
            tls_listen: self.tls_listen,
            cert: self.cert.clone(),
            key: self.key.clone(),
            origin_ca: self.origin_ca.clone(),
            functions: self.functions.clone(),
            resolve: self.resolve.clone(),
            no_kernel: self.no_kernel,
        }
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    // Signals are held already (cli::main, before the first thread).
    // Before the config: the default connection cap is derived from the raised limit.
    let (before, after) = crate::fd_limit::raise_to_hard();
    tracing::info!(soft_before = before, limit = after, "file-descriptor limit");
    let overrides = args.tls.overrides(args.listen, args.admin);
    let loaded = Config::load(&args.config, &overrides)?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let config = loaded.config;
    if config.origins.is_empty() {
        anyhow::bail!(
            "{}: no origins: lb needs at least one origin to proxy to",
            args.config.display()
        );
    }
    let takeover = match &args.takeover {
        Some(path) => Some(crate::control::upgrade::take_over(path)?),
        None => None,
    };
    let (inherited, done) = match takeover {
        Some((listening, health, done)) => (Some((listening, health)), Some(done)),
        None => (None, None),
    };
    let running = start_with(
        config,
        Some(ReloadSource {
            path: args.config.clone(),
            overrides,
        }),
        inherited,
    )?;
    // systemd (Type=notify) follows this process from now on, even when it was started
    // by an upgrade of the unit's main process: said before the old one may exit.
    crate::control::sd_notify::notify(&format!("MAINPID={}\nREADY=1", std::process::id()));
    if let Some(done) = done {
        // Workers accept on the inherited sockets now: the old process may go.
        if let Err(e) = done.ready() {
            tracing::warn!("could not tell the old lb that the upgrade is done: {e}");
        }
        tracing::info!("took over the listeners; the old lb drains and exits");
    }
    running.wait_for_shutdown();
    Ok(ExitCode::SUCCESS)
}

/// lb with every part started: the data plane, the control plane and (if possible) the
/// kernel signal source.
pub struct Running {
    access_log: Option<Arc<crate::log_sink::LogSink>>,
    cache: Arc<crate::cache::Store>,
    pub current: Arc<Current>,
    pub data_plane: DataPlane,
    control: ControlPlane,
    events: mpsc::Receiver<ControlEvent>,
    kernel: Arc<std::sync::Mutex<Option<KernelSignals>>>,
}

/// Starts lb with `config`. `source` is where reloads re-read it from (None: no reload).
pub fn start(config: Config, source: Option<ReloadSource>) -> anyhow::Result<Running> {
    start_with(config, source, None)
}

/// [`start`], with the listening sockets and health state of an lb this one takes over.
pub fn start_with(
    config: Config,
    source: Option<ReloadSource>,
    inherited: Option<(crate::dataplane::Listening, Vec<u8>)>,
) -> anyhow::Result<Running> {
    let (inherited, handed_health) = match inherited {
        Some((listening, health)) => (Some(listening), Some(health)),
        None => (None, None),
    };
    // One worker per inherited socket: a socket without a worker would strand the
    // connections the kernel queues on it.
    let workers = inherited
        .as_ref()
        .map_or_else(|| config.worker_count(), |l| l.plain.len());
    if inherited.is_some() && workers != config.worker_count() {
        tracing::warn!(
            inherited = workers,
            configured = config.worker_count(),
            "listener.workers takes effect at the next restart, not at an upgrade"
        );
    }
    let admin = config.admin.address;
    let tls = crate::tls::TlsMaterial::load(&config)?;
    let current = Arc::new(Current::new(Snapshot::build(config, tls, workers, None)));
    // Names are looked up before traffic; one that does not resolve is a warning and its
    // origin starts down (reason DNS), the rest serve.
    crate::control::resolve_at_start(&current);
    let snap = current.load();
    if let Some(bytes) = &handed_health {
        let restored = crate::health::state_file::restore_from(
            bytes,
            "the handed-over health",
            &snap.config,
            &snap.health,
        );
        tracing::info!(applied = ?restored.applied, changed_since = ?restored.changed, "health taken over");
    } else if let Some(path) = &snap.config.health.state_file {
        let restored = crate::health::state_file::restore(path, &snap.config, &snap.health);
        match restored.skipped {
            Some(why) => tracing::info!("health state not restored: {why}"),
            None => tracing::info!(
                applied = ?restored.applied,
                changed_since = ?restored.changed,
                "health state restored from {}",
                path.display()
            ),
        }
    }
    let mut kernel = start_kernel_signals(&snap.config.kernel, &snap.kernel_registrations());
    drop(snap);
    let kernel_view = kernel.as_ref().map(KernelSignals::view);
    let cache = Arc::new(crate::cache::Store::open(&current.load().config.cache));
    let observability = current.load().config.observability.clone();
    let access_log = if observability.access_log {
        Some(crate::log_sink::LogSink::start(
            observability.access_log_file.clone(),
            observability.access_log_buffer,
        )?)
    } else {
        None
    };
    let data_plane = DataPlane::start(
        SharedState {
            current: Arc::clone(&current),
            kernel: kernel_view.clone(),
            kernel_events: kernel.as_ref().is_some_and(KernelSignals::socket_events),
            cache: Arc::clone(&cache),
            access_log: access_log.clone(),
        },
        inherited,
    )?;
    let program_logs = kernel.as_mut().and_then(KernelSignals::take_logger);
    let kernel = Arc::new(std::sync::Mutex::new(kernel));
    let (events_tx, events) = mpsc::channel();
    let control = ControlPlane::spawn(
        crate::control::ControlSetup {
            program_logs,
            admin,
            current: Arc::clone(&current),
            kernel_view,
            kernel: Arc::clone(&kernel),
            reload: source,
            workers,
            cache: Arc::clone(&cache),
            access_log: access_log.clone(),
            listening: data_plane.listening(),
        },
        events_tx,
    )
    .context("starting the control plane thread")?;
    let snap = current.load();
    tracing::info!(
        listen = %data_plane.local_addr(),
        https = %data_plane.tls_local_addr().map_or("off".to_owned(), |a| a.to_string()),
        origins = snap.config.origins.len(),
        groups = snap.config.groups.len(),
        kernel_signals = kernel.lock().map(|k| k.is_some()).unwrap_or(false),
        max_connections = snap.config.listener.max_connections,
        per_worker = snap.config.listener.max_connections_per_worker(),
        "lb running"
    );
    Ok(Running {
        access_log,
        cache,
        current,
        data_plane,
        control,
        events,
        kernel,
    })
}

impl Running {
    /// Sleeps until SIGINT/SIGTERM, then drains and stops everything.
    pub fn wait_for_shutdown(self) {
        match self.events.recv() {
            Ok(ControlEvent::Shutdown { signal }) => {
                tracing::info!(signal, "stopping");
                if signal != "upgrade" {
                    // After an upgrade the new process is the service; it is not stopping.
                    crate::control::sd_notify::notify("STOPPING=1");
                }
            }
            Err(_) => tracing::warn!("control plane exited; stopping"),
        }
        self.stop();
    }

    /// Drains the data plane, then stops the control plane, then the kernel part; the
    /// cache's disk tier gets a moment to finish the writes it was given.
    pub fn stop(self) {
        let Running {
            access_log,
            cache,
            current,
            data_plane,
            control,
            kernel,
            ..
        } = self;
        data_plane.shutdown(current.load().config.listener.drain_timeout);
        control.shutdown();
        save_health_state(&current.load());
        if let Some(log) = access_log
            && !log.flush(std::time::Duration::from_secs(2))
        {
            tracing::warn!("access log: lines still queued at exit are lost");
        }
        if !cache.flush(std::time::Duration::from_secs(5)) {
            tracing::warn!("cache disk tier: writes still queued at exit are lost");
        }
        if let Ok(mut k) = kernel.lock() {
            k.take();
        }
    }
}

/// Starts the kernel signal source, or explains in exactly one warning why lb goes on
/// without it. Never fails: kernel signals are an accelerator, not a requirement.
pub fn start_kernel_signals(
    settings: &KernelSettings,
    origins: &[OriginRegistration],
) -> Option<KernelSignals> {
    if !settings.enabled {
        tracing::info!(
            "kernel signals off (kernel.enabled = false): health uses userspace signals only"
        );
        return None;
    }
    match KernelSignals::start(settings, origins) {
        Ok(kernel) => Some(kernel),
        Err(e) => {
            // Verifier logs run to hundreds of lines: the warning keeps the first, the rest
            // goes to debug.
            let full = e.to_string();
            let summary = full.lines().next().unwrap_or_default();
            let more = if full.lines().nth(1).is_some() {
                " (details: RUST_LOG=debug)"
            } else {
                ""
            };
            tracing::warn!(
                "kernel signals disabled, continuing with userspace health signals only: {summary}{more}"
            );
            tracing::debug!("kernel signal start-up error in full: {full}");
            None
        }
    }
}

/// Writes the health state file, if the config has one (at exit; the control plane
/// writes it every second while lb runs).
pub fn save_health_state(snap: &Snapshot) {
    if let Some(path) = &snap.config.health.state_file
        && let Err(e) = crate::health::state_file::save(path, &snap.config, &snap.health)
    {
        tracing::warn!(path = %path.display(), error = %e, "health state not saved");
    }
}
