//! Periodic re-resolution of origins configured by name. A name that moved also moves
//! the kernel's origin index (and the interfaces the XDP program watches), or the
//! kernel's evidence about the new address would be silently lost.

use std::sync::{Arc, Mutex};

use crate::{kernel::KernelSignals, resolver::REFRESH_EVERY, snapshot::Current};

pub(super) async fn refresh(current: Arc<Current>, kernel: Arc<Mutex<Option<KernelSignals>>>) {
    let mut tick = tokio::time::interval(REFRESH_EVERY);
    tick.tick().await; // the first tick is immediate; start-up just resolved them
    loop {
        tick.tick().await;
        let snap = current.load();
        let (config, addresses) = (&snap.config, &snap.addresses);
        let named: Vec<(usize, String, u16)> = config
            .origins
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.host.clone().map(|h| (i, h, o.address.port())))
            .collect();
        let mut moved = false;
        for (index, host, port) in &named {
            match tokio::net::lookup_host((host.as_str(), *port)).await {
                Ok(mut found) => {
                    if let Some(addr) = found.next()
                        && let Some(old) = addresses.update(*index, addr)
                    {
                        tracing::info!(origin = %config.origins[*index].id, %host, %old, new = %addr, "origin address changed");
                        moved = true;
                    }
                }
                Err(e) => {
                    tracing::warn!(origin = %config.origins[*index].id, %host, error = %e, "re-resolving failed; keeping the last address");
                }
            }
        }
        if moved {
            update_kernel(&kernel, &snap);
        }
    }
}

/// Rewrites the kernel's origin index from the snapshot's current addresses.
fn update_kernel(kernel: &Mutex<Option<KernelSignals>>, snap: &crate::snapshot::Snapshot) {
    if let Ok(mut kernel) = kernel.lock()
        && let Some(k) = kernel.as_mut()
        && let Err(e) = k.update_origins(&snap.kernel_registrations())
    {
        tracing::warn!("kernel origin index not updated after an address change: {e}");
    }
}
