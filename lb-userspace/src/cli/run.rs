//! `lb run`: start lb from a config file and run until SIGINT/SIGTERM.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc, sync::mpsc};

use anyhow::Context as _;

use crate::{
    config::{Config, Overrides},
    control::{ControlEvent, ControlPlane},
    dataplane::{DataPlane, SharedState},
    kernel::{KernelSettings, KernelSignals, OriginRegistration},
    metrics::Metrics,
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
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let overrides = Overrides {
        listen: args.listen,
        admin: args.admin,
    };
    let loaded = Config::load(&args.config, overrides)?;
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
    let running = start(config)?;
    running.wait_for_shutdown();
    Ok(ExitCode::SUCCESS)
}

/// lb with every part started: the data plane, the control plane and (if possible) the
/// kernel signal source.
pub struct Running {
    pub config: Arc<Config>,
    pub data_plane: DataPlane,
    pub metrics: Arc<Metrics>,
    control: ControlPlane,
    events: mpsc::Receiver<ControlEvent>,
    kernel: Option<KernelSignals>,
}

/// Starts lb with `config`.
pub fn start(config: Config) -> anyhow::Result<Running> {
    let config = Arc::new(config);
    let mut kernel = start_kernel_signals(&config.kernel, &config.kernel_registrations());
    let group_names = config.groups.iter().map(|g| g.id.clone()).collect();
    let metrics = Arc::new(Metrics::new(
        config.worker_count(),
        group_names,
        config.origins.len(),
    ));
    let health = Arc::new(crate::health::HealthTable::new(
        config.origins.len(),
        config.health.clone(),
    ));
    let kernel_view = kernel.as_ref().map(KernelSignals::view);
    let addresses = Arc::new(crate::resolver::OriginAddresses::new(&config));
    let data_plane = DataPlane::start(SharedState {
        config: Arc::clone(&config),
        addresses: Arc::clone(&addresses),
        kernel: kernel_view.clone(),
        metrics: Arc::clone(&metrics),
        health: Arc::clone(&health),
    })?;
    let (events_tx, events) = mpsc::channel();
    let control = ControlPlane::spawn(
        crate::control::ControlSetup {
            program_logs: kernel.as_mut().and_then(KernelSignals::take_logger),
            admin: config.admin.address,
            metrics: Arc::clone(&metrics),
            config: Arc::clone(&config),
            addresses,
            health,
            kernel: kernel_view,
        },
        events_tx,
    )
    .context("starting the control plane thread")?;
    tracing::info!(
        listen = %data_plane.local_addr(),
        origins = config.origins.len(),
        groups = config.groups.len(),
        kernel_signals = kernel.is_some(),
        "lb running"
    );
    Ok(Running {
        config,
        data_plane,
        metrics,
        control,
        events,
        kernel,
    })
}

impl Running {
    /// Sleeps until SIGINT/SIGTERM, then drains and stops everything.
    pub fn wait_for_shutdown(self) {
        match self.events.recv() {
            Ok(ControlEvent::Shutdown { signal }) => tracing::info!(signal, "stopping"),
            Err(_) => tracing::warn!("control plane exited; stopping"),
        }
        self.stop();
    }

    /// Drains the data plane and stops the control plane and kernel part.
    pub fn stop(self) {
        let Running {
            config,
            data_plane,
            control,
            kernel,
            ..
        } = self;
        data_plane.shutdown(config.listener.drain_timeout);
        control.shutdown();
        drop(kernel);
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
