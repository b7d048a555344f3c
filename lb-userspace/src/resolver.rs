//! Current addresses of every origin. An IP literal has its one address for good; a
//! name has whatever the control plane's resolver (`control::dns`) last found for it,
//! every address of it, or none while it does not resolve (its origin is then down,
//! reason DNS). The data plane reads them lock-free when it opens a connection and
//! tells which address answered, so the next connection starts there.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::Duration,
};

use arc_swap::ArcSwap;

use crate::config::Config;

/// Addresses kept per name: the kernel's origin index is shared by every origin.
pub const MAX_ADDRESSES: usize = 8;

/// What is known of one origin's addresses now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    /// In the order DNS gave them; empty: the name does not resolve (yet).
    pub ips: Arc<[IpAddr]>,
    /// Why the last lookup failed, if it did (the addresses may be the last good ones,
    /// held for `dns.hold`).
    pub error: Option<String>,
    /// The record's TTL as the next lookup was scheduled by (after the floor and
    /// ceiling); `None` for literals and fixed hosts.
    pub ttl: Option<Duration>,
}

impl Resolution {
    fn literal(ip: IpAddr) -> Self {
        Self {
            ips: Arc::from([ip]),
            error: None,
            ttl: None,
        }
    }

    fn pending() -> Self {
        Self {
            ips: Arc::from([]),
            error: Some("not resolved yet".into()),
            ttl: None,
        }
    }
}

/// Where a connection to one origin may go now: its addresses from the one that last
/// answered, on one port.
#[derive(Clone, Debug)]
pub struct Endpoints {
    ips: Arc<[IpAddr]>,
    first: usize,
    port: u16,
}

impl Endpoints {
    /// The address for connect attempt `n` (0-based): attempts go round the addresses.
    /// `None` when the name does not resolve.
    pub fn attempt(&self, n: usize) -> Option<SocketAddr> {
        let len = self.ips.len();
        (len > 0).then(|| SocketAddr::new(self.ips[(self.first + n) % len], self.port))
    }

    /// How many addresses there are.
    pub fn len(&self) -> usize {
        self.ips.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ips.is_empty()
    }
}

#[repr(align(64))]
struct Slot {
    now: ArcSwap<Resolution>,
    /// Index into `now.ips` of the address the last connection that worked went to.
    preferred: AtomicUsize,
    /// Counts changes of the addresses: pooled connections made before a change are
    /// not reused.
    epoch: AtomicU64,
}

/// One slot per origin, in config order.
pub struct OriginAddresses {
    slots: Box<[Slot]>,
}

impl OriginAddresses {
    /// Literals get their address; names start unresolved (start-up and reloads resolve
    /// them, or carry them over, before the snapshot is used).
    pub fn new(config: &Config) -> Self {
        Self {
            slots: config
                .origins
                .iter()
                .map(|o| Slot {
                    now: ArcSwap::from_pointee(
                        o.literal_ip()
                            .map_or_else(Resolution::pending, Resolution::literal),
                    ),
                    preferred: AtomicUsize::new(0),
                    epoch: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    /// Copies what `previous` knew of names that `config` still uses (a reload must not
    /// forget addresses it cannot look up again at once).
    pub fn carry_over(&self, config: &Config, previous: &Self, previous_config: &Config) {
        for (i, o) in config.origins.iter().enumerate() {
            let Some(host) = &o.host else { continue };
            if let Some(j) = previous_config
                .origins
                .iter()
                .position(|p| p.host.as_ref() == Some(host))
            {
                let old = &previous.slots[j];
                self.slots[i].now.store(old.now.load_full());
                self.slots[i]
                    .preferred
                    .store(old.preferred.load(Relaxed), Relaxed);
            }
        }
    }

    /// Where origin `index` may be reached on `port` now.
    pub fn endpoints(&self, index: usize, port: u16) -> Endpoints {
        let slot = &self.slots[index];
        Endpoints {
            ips: Arc::clone(&slot.now.load().ips),
            first: slot.preferred.load(Relaxed),
            port,
        }
    }

    /// The address the next connection to origin `index` tries first, if any.
    pub fn first(&self, index: usize, port: u16) -> Option<SocketAddr> {
        self.endpoints(index, port).attempt(0)
    }

    /// A connection to origin `index` at `ip` worked: later connections start there.
    /// Written only when it changes, so the common case writes nothing shared.
    pub fn connected(&self, index: usize, ip: IpAddr) {
        let slot = &self.slots[index];
        let now = slot.now.load();
        if let Some(at) = now.ips.iter().position(|&a| a == ip)
            && slot.preferred.load(Relaxed) % now.ips.len() != at
        {
            slot.preferred.store(at, Relaxed);
        }
    }

    /// Changes so far of origin `index`'s addresses.
    pub fn epoch(&self, index: usize) -> u64 {
        self.slots[index].epoch.load(Relaxed)
    }

    /// Everything known of origin `index`'s addresses.
    pub fn resolution(&self, index: usize) -> Arc<Resolution> {
        self.slots[index].now.load_full()
    }

    /// Records what a lookup found for origin `index`; true if its addresses changed.
    pub fn set(&self, index: usize, resolution: Resolution) -> bool {
        let slot = &self.slots[index];
        let changed = slot.now.load().ips != resolution.ips;
        if changed {
            slot.preferred.store(0, Relaxed);
            slot.epoch.fetch_add(1, Relaxed);
        }
        slot.now.store(Arc::new(resolution));
        changed
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(address: &str) -> Config {
        Config::parse(
            &format!("[[origins]]\nid = \"a\"\naddress = \"{address}\"\n"),
            std::path::Path::new("t.toml"),
        )
        .unwrap()
    }

    fn resolved(ips: &[&str]) -> Resolution {
        Resolution {
            ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            error: None,
            ttl: Some(Duration::from_secs(1)),
        }
    }

    #[test]
    fn literals_have_their_address_and_names_start_unresolved() {
        let literal = OriginAddresses::new(&config("127.0.0.1:80"));
        assert_eq!(literal.first(0, 81), Some("127.0.0.1:81".parse().unwrap()));
        let named = OriginAddresses::new(&config("origin.example:80"));
        assert!(named.endpoints(0, 80).is_empty());
        assert_eq!(named.first(0, 80), None);
        assert!(named.resolution(0).error.is_some());
    }

    #[test]
    fn attempts_go_round_the_addresses_from_the_one_that_answered() {
        let addrs = OriginAddresses::new(&config("origin.example:80"));
        assert!(addrs.set(0, resolved(&["10.0.0.1", "10.0.0.2", "10.0.0.3"])));
        let e = addrs.endpoints(0, 80);
        let at = |e: &Endpoints, n| e.attempt(n).unwrap().ip().to_string();
        assert_eq!(
            (at(&e, 0), at(&e, 1), at(&e, 3)),
            ("10.0.0.1".into(), "10.0.0.2".into(), "10.0.0.1".into())
        );
        addrs.connected(0, "10.0.0.2".parse().unwrap());
        let e = addrs.endpoints(0, 80);
        assert_eq!(
            (at(&e, 0), at(&e, 2)),
            ("10.0.0.2".into(), "10.0.0.1".into())
        );
        // The same answer again changes nothing; a new one starts from its first.
        assert!(!addrs.set(0, resolved(&["10.0.0.1", "10.0.0.2", "10.0.0.3"])));
        assert_eq!(at(&addrs.endpoints(0, 80), 0), "10.0.0.2");
        assert!(addrs.set(0, resolved(&["10.0.0.9"])));
        assert_eq!(at(&addrs.endpoints(0, 80), 0), "10.0.0.9");
    }

    #[test]
    fn a_reload_keeps_the_addresses_of_names_it_still_uses() {
        let old_config = config("origin.example:80");
        let old = OriginAddresses::new(&old_config);
        old.set(0, resolved(&["10.0.0.1"]));
        let new_config = config("origin.example:8080");
        let new = OriginAddresses::new(&new_config);
        new.carry_over(&new_config, &old, &old_config);
        assert_eq!(new.first(0, 8080), Some("10.0.0.1:8080".parse().unwrap()));
        let other_config = config("other.example:80");
        let other = OriginAddresses::new(&other_config);
        other.carry_over(&other_config, &old, &old_config);
        assert_eq!(other.first(0, 80), None);
    }
}
