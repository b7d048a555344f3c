//! Resolving origins configured by name, with hickory-resolver on the control plane's
//! tokio runtime (the data plane only reads the addresses published in
//! [`OriginAddresses`]).
//!
//! Each name is looked up again when its record's TTL runs out (raised to `dns.min_ttl`,
//! lowered to `dns.max_ttl`), and every address it has is kept. A name that does not
//! resolve is asked again every `dns.retry`; its origin is down (reason DNS) until it
//! does. A name that stops resolving keeps its last addresses for `dns.hold` first, so a
//! DNS outage does not take healthy origins with it. A name that moved also moves the
//! kernel's origin index (and the interfaces the XDP program watches), or the kernel's
//! evidence about the new address would be silently lost.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use hickory_resolver::{
    TokioResolver,
    config::{LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts},
    name_server::TokioConnectionProvider,
    proto::xfer::Protocol,
};

use crate::{
    config::{Config, DnsSettings},
    kernel::KernelSignals,
    resolver::{MAX_ADDRESSES, Resolution},
    snapshot::{Current, Snapshot},
};

/// What one lookup found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Every address, and how long they may be used (the TTL within the floor and
    /// ceiling).
    Found { ips: Vec<IpAddr>, ttl: Duration },
    /// No address: the name does not exist, has no A/AAAA records, or the servers did
    /// not answer.
    Failed(String),
}

/// Looks names up: `[dns.hosts]` and `--resolve` first, then DNS.
pub struct NameResolver {
    dns: Option<TokioResolver>,
    /// Why there is no DNS resolver (only fixed hosts resolve).
    unavailable: Option<String>,
    settings: DnsSettings,
}

impl NameResolver {
    /// Must be called inside a tokio runtime (the resolver's connections live there).
    pub fn new(settings: &DnsSettings) -> Self {
        let built = if settings.servers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| {
                format!("cannot read the system's DNS configuration (/etc/resolv.conf): {e}")
            })
        } else {
            let mut config = ResolverConfig::new();
            for &server in &settings.servers {
                // UDP: lb keeps at most MAX_ADDRESSES per name, which fit a datagram.
                config.add_name_server(NameServerConfig::new(server, Protocol::Udp));
            }
            Ok(TokioResolver::builder_with_config(
                config,
                TokioConnectionProvider::default(),
            ))
        };
        match built {
            Ok(mut builder) => {
                let opts: &mut ResolverOpts = builder.options_mut();
                opts.timeout = settings.timeout;
                opts.attempts = 1;
                opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
                opts.positive_min_ttl = Some(settings.min_ttl);
                opts.positive_max_ttl = Some(settings.max_ttl);
                // A failed lookup is retried on lb's schedule, not served from a cache.
                opts.negative_max_ttl = Some(Duration::ZERO);
                Self {
                    dns: Some(builder.build()),
                    unavailable: None,
                    settings: settings.clone(),
                }
            }
            Err(why) => Self {
                dns: None,
                unavailable: Some(why),
                settings: settings.clone(),
            },
        }
    }

    /// Why names other than fixed hosts cannot be looked up, if they cannot.
    pub fn unavailable(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    pub async fn lookup(&self, host: &str) -> Lookup {
        if let Some(ips) = self.settings.hosts.get(host) {
            return Lookup::Found {
                ips: ips.iter().copied().take(MAX_ADDRESSES).collect(),
                ttl: self.settings.max_ttl,
            };
        }
        let Some(dns) = &self.dns else {
            return Lookup::Failed(self.unavailable.clone().unwrap_or_default());
        };
        // hickory's own timeout covers each server; this bounds the whole lookup.
        let deadline = self.settings.timeout * 2 + Duration::from_millis(100);
        match tokio::time::timeout(deadline, dns.lookup_ip(host)).await {
            Ok(Ok(found)) => {
                let ttl = found
                    .valid_until()
                    .saturating_duration_since(Instant::now())
                    .clamp(self.settings.min_ttl, self.settings.max_ttl);
                let mut ips: Vec<IpAddr> = Vec::new();
                for ip in found.iter() {
                    if !ips.contains(&ip) && ips.len() < MAX_ADDRESSES {
                        ips.push(ip);
                    }
                }
                if ips.is_empty() {
                    Lookup::Failed(format!("`{host}` has no addresses"))
                } else {
                    Lookup::Found { ips, ttl }
                }
            }
            Ok(Err(e)) if e.is_nx_domain() => {
                Lookup::Failed(format!("`{host}` does not exist (NXDOMAIN)"))
            }
            Ok(Err(e)) if e.is_no_records_found() => {
                Lookup::Failed(format!("`{host}` has no A or AAAA records"))
            }
            Ok(Err(e)) => Lookup::Failed(format!("looking up `{host}` failed: {e}")),
            Err(_) => Lookup::Failed(format!("looking up `{host}` timed out")),
        }
    }
}

/// One name's schedule.
struct NameState {
    due: Instant,
    /// Since when lookups have failed (None: the last one worked).
    failing_since: Option<Instant>,
}

/// Applies a lookup of `host` to every origin of `snap` configured by it. Returns
/// whether any origin's addresses changed, and when to look it up next.
fn apply(
    snap: &Snapshot,
    host: &str,
    found: &Lookup,
    state: &mut NameState,
    settings: &DnsSettings,
    now: Instant,
) -> bool {
    let mut changed = false;
    for (index, origin) in snap.config.origins.iter().enumerate() {
        if origin.host.as_deref() != Some(host) {
            continue;
        }
        let before = snap.addresses.resolution(index);
        match found {
            Lookup::Found { ips, ttl } => {
                if before.ips.as_ref() != ips.as_slice() {
                    tracing::info!(origin = %origin.id, name = host, addresses = ?ips, ttl_s = ttl.as_secs(), "origin name resolved");
                }
                changed |= snap.addresses.set(
                    index,
                    Resolution {
                        ips: ips.as_slice().into(),
                        error: None,
                        ttl: Some(*ttl),
                    },
                );
                snap.health.set_unresolved(index, false);
            }
            Lookup::Failed(why) => {
                let since = *state.failing_since.get_or_insert(now);
                let held = !before.ips.is_empty() && now.duration_since(since) < settings.hold;
                if held {
                    if before.error.is_none() {
                        tracing::warn!(origin = %origin.id, name = host, error = %why, hold_s = settings.hold.as_secs(), "origin name does not resolve now; keeping its last addresses for the hold time");
                    }
                    snap.addresses.set(
                        index,
                        Resolution {
                            ips: Arc::clone(&before.ips),
                            error: Some(why.clone()),
                            ttl: None,
                        },
                    );
                } else {
                    if !before.ips.is_empty() || before.error.as_deref() != Some(why) {
                        tracing::warn!(origin = %origin.id, name = host, error = %why, "origin name does not resolve: the origin is down until it does");
                    }
                    changed |= snap.addresses.set(
                        index,
                        Resolution {
                            ips: Arc::from([]),
                            error: Some(why.clone()),
                            ttl: None,
                        },
                    );
                    snap.health.set_unresolved(index, true);
                }
            }
        }
    }
    match found {
        Lookup::Found { ttl, .. } => {
            state.failing_since = None;
            state.due = now + *ttl;
        }
        Lookup::Failed(_) => state.due = now + settings.retry,
    }
    changed
}

/// The names `config` uses, once each.
fn names(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = config
        .origins
        .iter()
        .filter_map(|o| o.host.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Looks every name of `snap` up once, together, and publishes what was found (start-up,
/// before the data plane takes traffic). Returns each name's schedule for [`refresh`].
async fn resolve_all(
    resolver: &NameResolver,
    snap: &Snapshot,
) -> HashMap<String, (Lookup, NameState)> {
    let now = Instant::now();
    let lookups = names(&snap.config).into_iter().map(|name| async move {
        let found = resolver.lookup(&name).await;
        (name, found)
    });
    let mut out = HashMap::new();
    for (name, found) in join_all(lookups).await {
        let mut state = NameState {
            due: now,
            failing_since: None,
        };
        apply(snap, &name, &found, &mut state, &resolver.settings, now);
        out.insert(name, (found, state));
    }
    out
}

/// Resolves every name of the snapshot in force before lb takes traffic, on a runtime of
/// its own; names that do not resolve are warnings, and their origins start down.
pub fn resolve_at_start(current: &Current) {
    let snap = current.load();
    if names(&snap.config).is_empty() {
        return;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(
                "cannot resolve origin names before start ({e}); they resolve once the control plane runs"
            );
            return;
        }
    };
    runtime.block_on(async {
        let resolver = NameResolver::new(&snap.config.dns);
        if let Some(why) = resolver.unavailable() {
            tracing::warn!("{why}: only names in [dns.hosts] or --resolve resolve");
        }
        resolve_all(&resolver, &snap).await;
    });
}

/// For `lb check --check-dns`: each name of `config` and what a lookup found.
pub fn check_names(config: &Config) -> Vec<(String, Lookup)> {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    runtime.block_on(async {
        let resolver = NameResolver::new(&config.dns);
        let lookups = names(config).into_iter().map(|name| {
            let resolver = &resolver;
            async move {
                let found = resolver.lookup(&name).await;
                (name, found)
            }
        });
        join_all(lookups).await
    })
}

/// Re-resolves every name on its own schedule, following reloads, for as long as the
/// control plane runs.
pub(super) async fn refresh(current: Arc<Current>, kernel: Arc<Mutex<Option<KernelSignals>>>) {
    let mut resolver = NameResolver::new(&current.load().config.dns);
    let mut dns_settings = current.load().config.dns.clone();
    let mut schedule: HashMap<String, NameState> = HashMap::new();
    let mut generation = current.generation();
    loop {
        let snap = current.load();
        if current.generation() != generation {
            generation = current.generation();
            if snap.config.dns != dns_settings {
                dns_settings = snap.config.dns.clone();
                resolver = NameResolver::new(&dns_settings);
                schedule.clear();
            }
        }
        let now = Instant::now();
        let wanted = names(&snap.config);
        schedule.retain(|name, _| wanted.contains(name));
        for name in &wanted {
            schedule.entry(name.clone()).or_insert_with(|| NameState {
                // Start-up (or the reload) published this name's addresses just now;
                // an unresolved one is asked again at once.
                due: first_due(&snap, name, now),
                failing_since: None,
            });
        }
        let due: Vec<String> = schedule
            .iter()
            .filter(|(_, s)| s.due <= now)
            .map(|(n, _)| n.clone())
            .collect();
        if !due.is_empty() {
            let resolver_ref = &resolver;
            let found = join_all(due.into_iter().map(|name| async move {
                let found = resolver_ref.lookup(&name).await;
                (name, found)
            }))
            .await;
            let now = Instant::now();
            let mut moved = false;
            for (name, found) in found {
                if let Some(state) = schedule.get_mut(&name) {
                    moved |= apply(&snap, &name, &found, state, &dns_settings, now);
                }
            }
            if moved {
                update_kernel(&kernel, &snap);
            }
        }
        let next = schedule
            .values()
            .map(|s| s.due)
            .min()
            .unwrap_or(now + Duration::from_secs(1));
        // Wakes at least every 250 ms to follow reloads.
        let wait = next
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(250));
        tokio::time::sleep(wait).await;
    }
}

/// When a name just published needs its next lookup: at its TTL if it resolved, at once
/// if it did not.
fn first_due(snap: &Snapshot, name: &str, now: Instant) -> Instant {
    snap.config
        .origins
        .iter()
        .position(|o| o.host.as_deref() == Some(name))
        .and_then(|i| snap.addresses.resolution(i).ttl)
        .map_or(now, |ttl| now + ttl)
}

/// Rewrites the kernel's origin index from the snapshot's current addresses.
fn update_kernel(kernel: &Mutex<Option<KernelSignals>>, snap: &Snapshot) {
    if let Ok(mut kernel) = kernel.lock()
        && let Some(k) = kernel.as_mut()
        && let Err(e) = k.update_origins(&snap.kernel_registrations())
    {
        tracing::warn!("kernel origin index not updated after an address change: {e}");
    }
}
