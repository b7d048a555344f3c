//! The kernel signal source as the rest of lb sees it: start it from the config, get a
//! shared [`SignalsView`], keep it in step with the origins' addresses, or learn why it
//! is unavailable.

use std::{path::PathBuf, sync::Arc};

use aya::programs::XdpMode;
use serde::{Deserialize, Serialize};

use super::{
    KernelError, LoadedProgram, OriginRegistration, SignalsView, XdpAttachMode,
    ensure_bpffs_mounted, plan_attachments,
};

/// `[kernel]` in the config.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct KernelSettings {
    /// `false` never tries to load eBPF: health then relies on userspace signals only.
    pub enabled: bool,
    /// Interfaces to attach to. Empty: the interfaces that route to the origins.
    pub interfaces: Vec<String>,
    /// Attach mode for interfaces other than `lo`.
    pub xdp_mode: XdpAttachMode,
    /// Directory under bpffs where the maps are pinned for `lb maps`.
    pub pin_path: PathBuf,
}

impl Default for KernelSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            interfaces: Vec::new(),
            xdp_mode: XdpAttachMode::Auto,
            pin_path: PathBuf::from("/sys/fs/bpf/lb"),
        }
    }
}

/// Where the kernel signal source stands, for logs and the admin API.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum KernelStatus {
    Active {
        /// Interfaces with the XDP program attached, and the mode used.
        interfaces: Vec<AttachedInterface>,
        /// Where the maps are pinned, if pinning worked.
        pin_path: Option<PathBuf>,
        /// Whether the socket-event tracepoints run: without them lb only counts packets
        /// and has no kernel evidence to act on.
        socket_events: bool,
        /// Why they do not, if they do not.
        #[serde(skip_serializing_if = "Option::is_none")]
        socket_events_error: Option<String>,
    },
    Disabled {
        reason: String,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct AttachedInterface {
    pub interface: String,
    pub mode: &'static str,
}

fn mode_name(mode: XdpMode) -> &'static str {
    match mode {
        XdpMode::Skb => "skb",
        XdpMode::Driver => "native",
        XdpMode::Hardware => "offload",
        XdpMode::Default => "default",
    }
}

/// The loaded, attached and pinned kernel programs. Dropping it detaches them and removes
/// the pins, so a stopped lb leaves nothing behind.
pub struct KernelSignals {
    program: LoadedProgram,
    view: Arc<SignalsView>,
    settings: KernelSettings,
    socket_events: Result<(), String>,
    pinned: Option<PathBuf>,
    /// An interface could not be attached (or the maps pinned) at the last try: retried
    /// by [`Self::retry_missing`] (another lb may hold them, as during an upgrade).
    missing: bool,
}

impl KernelSignals {
    /// Loads the programs, registers `origins`, attaches XDP where they route and the
    /// socket-event tracepoints, and pins the maps. Failing to attach to some interfaces,
    /// to start the tracepoints, or to pin is logged and tolerated; failing to load, or
    /// to attach XDP anywhere, is an error the caller turns into one warning.
    pub fn start(
        settings: &KernelSettings,
        origins: &[OriginRegistration],
    ) -> Result<Self, KernelError> {
        let mut program = LoadedProgram::load()?;
        program.register_origins(origins)?;
        let socket_events = program.start_socket_events().map_err(|e| {
            tracing::warn!(
                "kernel socket events unavailable, so no kernel verdicts (packets are still \
                 counted): {e}"
            );
            e.to_string()
        });
        if socket_events.is_ok() {
            tracing::info!(
                "kernel socket events on: sock:inet_sock_set_state, tcp:tcp_retransmit_skb"
            );
        }
        let mut kernel_signals = Self {
            view: Arc::new(program.signals_view()?),
            program,
            settings: settings.clone(),
            socket_events,
            pinned: None,
            missing: false,
        };
        let (attached, failures) = kernel_signals.follow_routes(origins, false)?;
        if attached == 0 && failures > 0 {
            if kernel_signals.socket_events.is_err() {
                return Err(KernelError::NoInterface(
                    "the XDP program attached to no interface".into(),
                ));
            }
            // The verdicts come from the socket events; only the packet counts are lost.
            tracing::warn!(
                "the XDP program attached to no interface: packets are not counted, \
                 socket events still give kernel verdicts"
            );
        }
        kernel_signals.pinned = match ensure_bpffs_mounted(&settings.pin_path)
            .and_then(|()| kernel_signals.program.pin_maps(&settings.pin_path))
        {
            Ok(()) => Some(settings.pin_path.clone()),
            Err(e) => {
                tracing::warn!("kernel maps not pinned, `lb maps` cannot read them: {e}");
                None
            }
        };
        kernel_signals.missing |= failures > 0 || kernel_signals.pinned.is_none();
        Ok(kernel_signals)
    }

    /// Tries again what failed: attaching XDP where an origin routes (EBUSY while an lb
    /// being upgraded from still holds the interface) and pinning the maps (its pins are
    /// in the way until it exits). Quiet: the first failure was logged. True when
    /// something was completed now.
    pub fn retry_missing(&mut self, origins: &[OriginRegistration]) -> bool {
        if !self.missing {
            return false;
        }
        let Ok((_, failures)) = self.follow_routes(origins, true) else {
            return false;
        };
        if self.pinned.is_none()
            && ensure_bpffs_mounted(&self.settings.pin_path)
                .and_then(|()| self.program.pin_maps(&self.settings.pin_path))
                .is_ok()
        {
            tracing::info!(path = %self.settings.pin_path.display(), "kernel maps pinned");
            self.pinned = Some(self.settings.pin_path.clone());
        }
        let was_missing = self.missing;
        self.missing = failures > 0 || self.pinned.is_none();
        was_missing && !self.missing
    }

    /// Attaches XDP to every interface the origins route through now and detaches it
    /// from those no origin uses any more (an explicit `kernel.interfaces` list is kept
    /// as written). Returns how many interfaces are attached and how many failed.
    fn follow_routes(
        &mut self,
        origins: &[OriginRegistration],
        quiet: bool,
    ) -> Result<(usize, usize), KernelError> {
        let addresses: Vec<_> = origins.iter().map(|o| o.address).collect();
        let plans = plan_attachments(
            &addresses,
            &self.settings.interfaces,
            self.settings.xdp_mode,
        )?;
        let mut failures = 0;
        for plan in &plans {
            let already = self
                .program
                .attached()
                .any(|(interface, _)| interface == plan.interface);
            match self.program.attach(plan) {
                Ok(mode) if !already => {
                    tracing::info!(interface = %plan.interface, mode = mode_name(mode), reason = %plan.reason, "XDP attached");
                }
                Ok(_) => {}
                Err(e) => {
                    failures += 1;
                    if !quiet {
                        tracing::warn!("kernel signals incomplete (retried every 2 s): {e}");
                    }
                }
            }
        }
        let stale: Vec<String> = self
            .program
            .attached()
            .map(|(interface, _)| interface.to_owned())
            .filter(|i| !plans.iter().any(|p| &p.interface == i))
            .collect();
        for interface in stale {
            match self.program.detach(&interface) {
                Ok(()) => {
                    tracing::info!(%interface, "XDP detached: no origin routes through it any more")
                }
                Err(e) => tracing::warn!("{e}"),
            }
        }
        Ok((self.program.attached().count(), failures))
    }

    /// The zero-syscall counter view, shareable with every worker.
    pub fn view(&self) -> Arc<SignalsView> {
        Arc::clone(&self.view)
    }

    pub fn status(&self) -> KernelStatus {
        let mut interfaces: Vec<AttachedInterface> = self
            .program
            .attached()
            .map(|(interface, mode)| AttachedInterface {
                interface: interface.to_owned(),
                mode: mode_name(mode),
            })
            .collect();
        interfaces.sort_by(|a, b| a.interface.cmp(&b.interface));
        KernelStatus::Active {
            interfaces,
            pin_path: self.pinned.clone(),
            socket_events: self.socket_events.is_ok(),
            socket_events_error: self.socket_events.clone().err(),
        }
    }

    /// Whether the socket-event tracepoints run (kernel verdicts are possible).
    pub fn socket_events(&self) -> bool {
        self.socket_events.is_ok()
    }

    /// Replaces the registered origins (reload, or a name that now resolves elsewhere)
    /// and moves the XDP attachments to the interfaces they route through now.
    pub fn update_origins(&mut self, origins: &[OriginRegistration]) -> Result<(), KernelError> {
        self.program.register_origins(origins)?;
        let (_, failures) = self.follow_routes(origins, false)?;
        self.missing |= failures > 0;
        Ok(())
    }

    /// An upgrade's new process pinned its maps at the same path: exiting must not
    /// remove them.
    pub fn leave_pins(&mut self) {
        self.pinned = None;
    }

    pub fn take_logger(&mut self) -> Option<super::ProgramLogReader> {
        self.program.take_logger()
    }

    pub fn program(&self) -> &LoadedProgram {
        &self.program
    }
}

impl Drop for KernelSignals {
    fn drop(&mut self) {
        if let Some(dir) = &self.pinned {
            tracing::info!(path = %dir.display(), "removing the pinned maps");
            for name in [
                lb_common::map_names::ORIGIN_INDEX,
                lb_common::map_names::ORIGIN_SIGNALS,
                lb_common::map_names::PROGRAM_STATS,
            ] {
                let _ = std::fs::remove_file(dir.join(name));
            }
            let _ = std::fs::remove_dir(dir);
        }
    }
}
