//! `lb run`: start lb from a config file and run until SIGINT/SIGTERM.

use std::{path::PathBuf, process::ExitCode, sync::mpsc};

use anyhow::Context as _;

use crate::{
    config::Config,
    control::{ControlEvent, ControlPlane},
    dataplane::DataPlane,
    kernel::{KernelSettings, KernelSignals, OriginRegistration},
};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Config file (TOML).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Listen address, overriding `listener.address`.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(&args.config)?;
    if let Some(listen) = args.listen {
        config.listener.address = listen;
    }
    if config.origins.is_empty() {
        anyhow::bail!(
            "{}: no [[origins]]: lb needs at least one origin to proxy to",
            args.config.display()
        );
    }
    let config = std::sync::Arc::new(config);
    let mut kernel = start_kernel_signals(&config.kernel, &config.kernel_registrations());
    let data_plane = DataPlane::start(std::sync::Arc::clone(&config))?;
    let (events_tx, events_rx) = mpsc::channel();
    let control = ControlPlane::spawn(
        kernel.as_mut().and_then(KernelSignals::take_logger),
        events_tx,
    )
    .context("starting the control plane thread")?;
    tracing::info!(
        listen = %data_plane.local_addr(),
        origins = config.origins.len(),
        kernel_signals = kernel.is_some(),
        "lb running"
    );
    // The owner thread sleeps until the control plane reports a shutdown signal.
    match events_rx.recv() {
        Ok(ControlEvent::Shutdown { signal }) => tracing::info!(signal, "stopping"),
        Err(_) => tracing::warn!("control plane exited; stopping"),
    }
    data_plane.shutdown(config.listener.drain_timeout);
    control.shutdown();
    drop(kernel);
    Ok(ExitCode::SUCCESS)
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
