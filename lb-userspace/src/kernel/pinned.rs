//! Reading lb's pinned maps from another process (`lb maps`), without the running lb's help.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
};

use aya::maps::{HashMap, Map, MapData};
use lb_common::{FAMILY_IPV4, OriginKey, OriginSignals, OriginSlot, map_names};
use serde::Serialize;

use super::{KernelError, ProgramStatsTotal, SignalsView, loader::read_program_stats};

/// The pinned maps of a running (or crashed) lb.
pub struct PinnedMaps {
    dir: PathBuf,
    index: Map,
    stats: Map,
    view: SignalsView,
}

/// One registered origin with its counters, as `lb maps` reports it.
#[derive(Clone, Debug, Serialize)]
pub struct PinnedOrigin {
    pub slot: u32,
    pub origin: String,
    pub address: SocketAddr,
    #[serde(flatten)]
    pub signals: SignalsReport,
}

/// Counters plus each timestamp's age, so output is readable without a clock conversion.
/// Socket events (validated by the kernel's TCP state machine) come first; packets the
/// XDP program saw are shown apart, as what they are: claims, never a verdict.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SignalsReport {
    /// What the validated evidence says now (`connect_refused`, `unreachable`,
    /// `syn_retransmit`), or `None`. Stalls are found by the workers and shown by lb itself.
    pub finding: Option<&'static str>,
    pub connects_established: u64,
    pub connects_refused: u64,
    pub connects_unreachable: u64,
    pub connects_timed_out: u64,
    pub connects_abandoned: u64,
    /// errno of the last failed connect (111 refused, 113 no route to host, ...).
    pub last_connect_errno: u64,
    pub syn_retransmits: u64,
    pub retransmits: u64,
    pub resets_established: u64,
    /// Milliseconds since each event, or `None` if it never happened.
    pub connect_established_age_ms: Option<u64>,
    pub connect_refused_age_ms: Option<u64>,
    pub connect_unreachable_age_ms: Option<u64>,
    pub syn_retransmit_age_ms: Option<u64>,
    pub retransmit_age_ms: Option<u64>,
    pub reset_established_age_ms: Option<u64>,
    pub packets: PacketsReport,
}

/// What the XDP program saw on the wire for one origin.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PacketsReport {
    pub rst: u64,
    pub syn_ack: u64,
    pub icmp_unreachable: u64,
    pub rst_age_ms: Option<u64>,
    pub syn_ack_age_ms: Option<u64>,
    pub icmp_unreachable_age_ms: Option<u64>,
}

impl SignalsReport {
    pub fn new(s: &OriginSignals, now_ns: u64) -> Self {
        let age = |t: u64| (t != 0).then(|| now_ns.saturating_sub(t) / 1_000_000);
        let evidence = super::ConnectEvidence {
            established_ns: s.connect_established_last_ns,
            refused_ns: s.connect_refused_last_ns,
            unreachable_ns: s.connect_unreachable_last_ns,
            syn_retransmit_ns: s.syn_retransmit_last_ns,
        };
        Self {
            finding: evidence
                .finding(0, now_ns, crate::health::KERNEL_FRESH_MS * 1_000_000)
                .map(super::KernelFinding::label),
            connects_established: s.connects_established,
            connects_refused: s.connects_refused,
            connects_unreachable: s.connects_unreachable,
            connects_timed_out: s.connects_timed_out,
            connects_abandoned: s.connects_abandoned,
            last_connect_errno: s.last_connect_errno,
            syn_retransmits: s.syn_retransmits,
            retransmits: s.retransmits,
            resets_established: s.resets_established,
            connect_established_age_ms: age(s.connect_established_last_ns),
            connect_refused_age_ms: age(s.connect_refused_last_ns),
            connect_unreachable_age_ms: age(s.connect_unreachable_last_ns),
            syn_retransmit_age_ms: age(s.syn_retransmit_last_ns),
            retransmit_age_ms: age(s.retransmit_last_ns),
            reset_established_age_ms: age(s.reset_established_last_ns),
            packets: PacketsReport {
                rst: s.rst_packets,
                syn_ack: s.syn_ack_packets,
                icmp_unreachable: s.icmp_unreachable_packets,
                rst_age_ms: age(s.rst_packets_last_ns),
                syn_ack_age_ms: age(s.syn_ack_packets_last_ns),
                icmp_unreachable_age_ms: age(s.icmp_unreachable_packets_last_ns),
            },
        }
    }
}

impl PinnedMaps {
    /// Opens the maps pinned under `dir`. Fails with [`KernelError::NotPinned`] if they are
    /// not there, which is the normal state when no lb with kernel signals is running.
    pub fn open(dir: &Path) -> Result<Self, KernelError> {
        let open = |name: &str| -> Result<MapData, KernelError> {
            let path = dir.join(name);
            MapData::from_pin(&path).map_err(|e| KernelError::NotPinned {
                path: dir.to_owned(),
                reason: if path.exists() {
                    format!("{} exists but cannot be opened: {e}", path.display())
                } else {
                    format!("{} does not exist", path.display())
                },
            })
        };
        let index = Map::HashMap(open(map_names::ORIGIN_INDEX)?);
        let signals = open(map_names::ORIGIN_SIGNALS)?;
        let stats = Map::PerCpuArray(open(map_names::PROGRAM_STATS)?);
        let view = SignalsView::new(&signals)?;
        Ok(Self {
            dir: dir.to_owned(),
            index,
            stats,
            view,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every registered origin with its counters (read through the mmap view), by slot.
    pub fn origins(&self) -> Result<Vec<PinnedOrigin>, KernelError> {
        let index: HashMap<&MapData, OriginKey, OriginSlot> = HashMap::try_from(&self.index)
            .map_err(|source| KernelError::Map {
                what: "opening pinned ORIGIN_INDEX".into(),
                source,
            })?;
        let now = super::monotonic_now_ns();
        let mut out = Vec::new();
        for entry in index.iter() {
            let (key, slot) = entry.map_err(|source| KernelError::Map {
                what: "iterating ORIGIN_INDEX".into(),
                source,
            })?;
            let signals = self.view.get(slot.slot).unwrap_or_default();
            out.push(PinnedOrigin {
                slot: slot.slot,
                origin: slot.label().to_owned(),
                address: key_address(&key),
                signals: SignalsReport::new(&signals, now),
            });
        }
        out.sort_by_key(|o| o.slot);
        Ok(out)
    }

    pub fn program_stats(&self) -> Result<ProgramStatsTotal, KernelError> {
        read_program_stats(&self.stats)
    }
}

/// The socket address an [`OriginKey`] stands for.
pub fn key_address(key: &OriginKey) -> SocketAddr {
    let ip = if key.family == FAMILY_IPV4 {
        IpAddr::V4(Ipv4Addr::new(
            key.addr[0],
            key.addr[1],
            key.addr[2],
            key.addr[3],
        ))
    } else {
        IpAddr::V6(Ipv6Addr::from(key.addr))
    };
    SocketAddr::new(ip, key.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::loader::origin_key;

    #[test]
    fn keys_round_trip_to_addresses() {
        for a in ["127.0.0.1:8080", "[::1]:443", "[2001:db8::7]:1"] {
            let addr: SocketAddr = a.parse().unwrap();
            assert_eq!(key_address(&origin_key(addr)), addr);
        }
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:80".parse().unwrap();
        assert_eq!(key_address(&origin_key(mapped)).to_string(), "10.0.0.1:80");
    }

    #[test]
    fn ages_are_none_for_never_seen() {
        let s = OriginSignals {
            rst_packets: 2,
            rst_packets_last_ns: 1_000_000_000,
            connects_refused: 1,
            connect_refused_last_ns: 3_000_000_000,
            ..Default::default()
        };
        let r = SignalsReport::new(&s, 3_500_000_000);
        assert_eq!(r.packets.rst_age_ms, Some(2500));
        assert_eq!(r.packets.syn_ack_age_ms, None);
        assert_eq!(r.connect_refused_age_ms, Some(500));
        assert_eq!(r.finding, Some("connect_refused"));
        let r = SignalsReport::new(&s, 6_000_000_000);
        assert_eq!(r.finding, None, "stale after 2 s");
    }
}
