//! Current addresses of origins configured by name (`origin.example:80`). The data plane
//! reads them lock-free when it opens a connection; the control plane re-resolves names
//! periodically and swaps in changes, so a moved origin is followed without a reload.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use arc_swap::ArcSwap;

use crate::config::Config;

/// How often names are re-resolved.
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);

/// One slot per origin, in config order.
pub struct OriginAddresses {
    slots: Box<[ArcSwap<SocketAddr>]>,
}

impl OriginAddresses {
    pub fn new(config: &Config) -> Self {
        Self {
            slots: config
                .origins
                .iter()
                .map(|o| ArcSwap::from_pointee(o.address))
                .collect(),
        }
    }

    /// Where origin `index` is now.
    pub fn get(&self, index: usize) -> SocketAddr {
        **self.slots[index].load()
    }

    /// Records a new address; returns the old one if it changed.
    pub fn update(&self, index: usize, address: SocketAddr) -> Option<SocketAddr> {
        let old = self.get(index);
        (old != address).then(|| {
            self.slots[index].store(Arc::new(address));
            old
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_report_only_changes() {
        let config = Config::parse(
            "[[origins]]\nid = \"a\"\naddress = \"localhost:80\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let addrs = OriginAddresses::new(&config);
        let first = addrs.get(0);
        assert!(first.ip().is_loopback());
        assert_eq!(addrs.update(0, first), None);
        let moved: SocketAddr = "127.0.0.9:80".parse().unwrap();
        assert_eq!(addrs.update(0, moved), Some(first));
        assert_eq!(addrs.get(0), moved);
    }
}
