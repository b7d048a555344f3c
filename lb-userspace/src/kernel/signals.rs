//! The kernel signal source as the rest of lb sees it: start it from the config, get a
//! shared [`SignalsView`], or learn why it is unavailable.

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
        /// Interfaces with the program attached, and the mode used.
        interfaces: Vec<AttachedInterface>,
        /// Where the maps are pinned, if pinning worked.
        pin_path: Option<PathBuf>,
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

/// The loaded, attached and pinned XDP program. Dropping it detaches the program and
/// removes the pins, so a stopped lb leaves nothing behind.
pub struct KernelSignals {
    program: LoadedProgram,
    view: Arc<SignalsView>,
    status: KernelStatus,
    pinned: Option<PathBuf>,
}

impl KernelSignals {
    /// Loads the program, registers `origins`, attaches where they route, and pins the maps.
    /// Failing to attach to some interfaces or to pin is logged and tolerated; failing to
    /// load, or to attach anywhere, is an error the caller turns into one warning.
    pub fn start(
        settings: &KernelSettings,
        origins: &[OriginRegistration],
    ) -> Result<Self, KernelError> {
        let mut program = LoadedProgram::load()?;
        program.register_origins(origins)?;
        let addresses: Vec<_> = origins.iter().map(|o| o.address).collect();
        let plans = plan_attachments(&addresses, &settings.interfaces, settings.xdp_mode)?;
        let mut attached = Vec::new();
        let mut failures = Vec::new();
        for plan in &plans {
            match program.attach(plan) {
                Ok(mode) => {
                    tracing::info!(interface = %plan.interface, mode = mode_name(mode), reason = %plan.reason, "XDP attached");
                    attached.push(AttachedInterface {
                        interface: plan.interface.clone(),
                        mode: mode_name(mode),
                    });
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
        if attached.is_empty() && !plans.is_empty() {
            return Err(KernelError::NoInterface(failures.join("; ")));
        }
        for failure in &failures {
            tracing::warn!("kernel signals incomplete: {failure}");
        }
        let pinned = match ensure_bpffs_mounted(&settings.pin_path)
            .and_then(|()| program.pin_maps(&settings.pin_path))
        {
            Ok(()) => Some(settings.pin_path.clone()),
            Err(e) => {
                tracing::warn!("kernel maps not pinned, `lb maps` cannot read them: {e}");
                None
            }
        };
        let view = Arc::new(program.signals_view()?);
        Ok(Self {
            program,
            view,
            status: KernelStatus::Active {
                interfaces: attached,
                pin_path: pinned.clone(),
            },
            pinned,
        })
    }

    /// The zero-syscall counter view, shareable with every worker.
    pub fn view(&self) -> Arc<SignalsView> {
        Arc::clone(&self.view)
    }

    pub fn status(&self) -> &KernelStatus {
        &self.status
    }

    /// Replaces the registered origins (config reload).
    pub fn register_origins(&mut self, origins: &[OriginRegistration]) -> Result<(), KernelError> {
        self.program.register_origins(origins)
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
