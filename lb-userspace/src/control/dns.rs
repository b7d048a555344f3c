//! Periodic re-resolution of origins configured by name.

use std::sync::Arc;

use crate::{resolver::REFRESH_EVERY, snapshot::Current};

pub(super) async fn refresh(current: Arc<Current>) {
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
        for (index, host, port) in &named {
            match tokio::net::lookup_host((host.as_str(), *port)).await {
                Ok(mut found) => {
                    if let Some(addr) = found.next()
                        && let Some(old) = addresses.update(*index, addr)
                    {
                        tracing::info!(origin = %config.origins[*index].id, %host, %old, new = %addr, "origin address changed");
                    }
                }
                Err(e) => {
                    tracing::warn!(origin = %config.origins[*index].id, %host, error = %e, "re-resolving failed; keeping the last address");
                }
            }
        }
    }
}
