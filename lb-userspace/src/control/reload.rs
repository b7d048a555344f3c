//! Config reload (SIGHUP or `POST /reload`): the new file is validated first; an invalid
//! one is refused with its error and the running config keeps serving. A valid one
//! becomes a new snapshot: origins that stay keep their health and counters, the kernel's
//! origin index is rewritten, and workers switch at their next request while exchanges in
//! flight finish on the old snapshot.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use crate::{
    config::{Config, Overrides},
    kernel::KernelSignals,
    snapshot::{Current, Snapshot},
};

/// Where the running config came from.
#[derive(Clone, Debug)]
pub struct ReloadSource {
    pub path: PathBuf,
    pub overrides: Overrides,
}

pub(super) struct Reloader {
    pub source: Option<ReloadSource>,
    pub current: Arc<Current>,
    pub kernel: Arc<Mutex<Option<KernelSignals>>>,
    pub workers: usize,
}

impl Reloader {
    /// Reloads; Ok: a summary, Err: why the new config was refused.
    pub fn reload(&self) -> Result<String, String> {
        let Some(source) = &self.source else {
            return Err("this lb was not started from a config file; nothing to reload".into());
        };
        let loaded = Config::load(&source.path, &source.overrides).map_err(|e| e.to_string())?;
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        let old = self.current.load();
        let new = loaded.config;
        let tls_address = |c: &Config| c.tls.as_ref().map(|t| t.address);
        if new.listener != old.config.listener
            || new.admin != old.config.admin
            || tls_address(&new) != tls_address(&old.config)
        {
            tracing::warn!(
                "listener, HTTPS listener address and admin settings take effect at the next \
                 restart, not on reload (certificates do reload)"
            );
        }
        let tls = crate::tls::TlsMaterial::reload(&new, &old.tls).map_err(|e| e.to_string())?;
        let kept = new
            .origins
            .iter()
            .filter(|o| {
                old.config
                    .origins
                    .iter()
                    .any(|p| p.id == o.id && p.address == o.address)
            })
            .count();
        let snapshot = Snapshot::build(new, tls, self.workers, Some(&old));
        if let Ok(mut kernel) = self.kernel.lock()
            && let Some(k) = kernel.as_mut()
            && let Err(e) = k.update_origins(&snapshot.kernel_registrations())
        {
            tracing::warn!("kernel origin index not updated, kernel signals may be stale: {e}");
        }
        let summary = format!(
            "reloaded {}: {} origins ({} kept their health), {} groups, {} behaviors",
            source.path.display(),
            snapshot.config.origins.len(),
            kept,
            snapshot.config.groups.len(),
            snapshot.config.behaviors.len()
        );
        self.current.publish(snapshot);
        tracing::info!("{summary}");
        Ok(summary)
    }
}
