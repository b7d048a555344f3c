//! What a config reload swaps: the config and everything indexed by its origins (health,
//! addresses, metrics). The control plane publishes a new [`Snapshot`]; each worker
//! notices the generation change at its next request and switches, while exchanges already
//! running finish on the snapshot they started with. Origins that stay (same id and
//! address) keep their health and counters.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use arc_swap::ArcSwap;

use crate::{
    config::Config, health::HealthTable, metrics::Metrics, resolver::OriginAddresses,
    tls::TlsMaterial,
};

pub struct Snapshot {
    pub config: Arc<Config>,
    pub health: Arc<HealthTable>,
    pub addresses: Arc<OriginAddresses>,
    pub metrics: Arc<Metrics>,
    /// Certificates and trust store, read from their files when this snapshot was built.
    pub tls: Arc<TlsMaterial>,
}

impl Snapshot {
    /// Builds the snapshot for `config`, carrying over what `previous` knew about origins
    /// that are still there (same id, same address).
    pub fn build(
        config: Config,
        tls: TlsMaterial,
        workers: usize,
        previous: Option<&Snapshot>,
    ) -> Self {
        let health = HealthTable::new(config.origins.len(), config.health.clone());
        let metrics = Metrics::new(
            workers,
            config.groups.iter().map(|g| g.id.clone()).collect(),
            config.origins.len(),
        );
        let addresses = OriginAddresses::new(&config);
        if let Some(prev) = previous {
            for (i, o) in config.origins.iter().enumerate() {
                if let Some(j) = prev
                    .config
                    .origins
                    .iter()
                    .position(|p| p.id == o.id && p.address == o.address && p.host == o.host)
                {
                    health.carry_over(i, &prev.health, j);
                }
            }
            metrics.carry_over(&prev.metrics, &prev.config, &config);
            addresses.carry_over(&config, &prev.addresses, &prev.config);
        }
        for i in 0..addresses.len() {
            health.set_unresolved(i, addresses.resolution(i).ips.is_empty());
        }
        Self {
            addresses: Arc::new(addresses),
            config: Arc::new(config),
            health: Arc::new(health),
            metrics: Arc::new(metrics),
            tls: Arc::new(tls),
        }
    }
}

impl Snapshot {
    /// What the kernel's origin index must hold now: every origin's endpoints at every
    /// address its name resolves to today.
    pub fn kernel_registrations(&self) -> Vec<crate::kernel::OriginRegistration> {
        self.config
            .kernel_registrations_at(|i| self.addresses.resolution(i).ips.to_vec())
    }
}

/// The snapshot in force, and a generation number workers poll with one relaxed load.
pub struct Current {
    slot: ArcSwap<Snapshot>,
    generation: AtomicU64,
}

impl Current {
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            slot: ArcSwap::from_pointee(snapshot),
            generation: AtomicU64::new(0),
        }
    }

    pub fn load(&self) -> Arc<Snapshot> {
        self.slot.load_full()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn publish(&self, snapshot: Snapshot) {
        self.slot.store(Arc::new(snapshot));
        self.generation.fetch_add(1, Ordering::Release);
    }
}
