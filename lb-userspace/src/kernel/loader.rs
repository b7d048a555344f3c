//! Loading the embedded XDP program and talking to its maps through the bpf(2) syscall.
//! These calls are for the control plane and tools; the data plane uses [`SignalsView`].

use std::{
    collections::HashSet,
    net::{IpAddr, SocketAddr},
    path::Path,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, Map, MapData, PerCpuArray},
    programs::{TestRun, TestRunOptions, TracePoint, Xdp, XdpMode, xdp::XdpLinkId},
};
use aya_log::EbpfLogger;
use lb_common::{
    MAX_ORIGIN_SLOTS, OriginKey, OriginSignals, OriginSlot, ProgramStats, TraceLayout, map_names,
};
use serde::Serialize;

use super::{
    AttachPlan, KernelError, SignalsView,
    error::privilege_hint,
    object::{SOCK_STATE_PROGRAM, TCP_RETRANSMIT_PROGRAM, XDP_OBJECT, XDP_PROGRAM},
    tracefs,
};

/// An origin endpoint and the slot the control plane gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginRegistration {
    pub slot: u32,
    pub label: String,
    pub address: SocketAddr,
}

impl OriginRegistration {
    /// The key the kernel program builds from packets of this origin.
    pub fn key(&self) -> OriginKey {
        origin_key(self.address)
    }
}

pub(crate) fn origin_key(address: SocketAddr) -> OriginKey {
    match address.ip() {
        IpAddr::V4(ip) => OriginKey::v4(ip.octets(), address.port()),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            // A v4-mapped origin is reached with IPv4 packets.
            Some(v4) => OriginKey::v4(v4.octets(), address.port()),
            None => OriginKey::v6(ip.octets(), address.port()),
        },
    }
}

/// `PROGRAM_STATS` summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProgramStatsTotal {
    pub packets: u64,
    pub tcp_seen: u64,
    pub icmp_unreachable_seen: u64,
    pub matched: u64,
    pub truncated: u64,
    pub state_changes_seen: u64,
    pub retransmits_seen: u64,
    pub socket_events_matched: u64,
}

impl ProgramStatsTotal {
    pub(crate) fn add(&mut self, s: &ProgramStats) {
        self.packets += s.packets;
        self.tcp_seen += s.tcp_seen;
        self.icmp_unreachable_seen += s.icmp_unreachable_seen;
        self.matched += s.matched;
        self.truncated += s.truncated;
        self.state_changes_seen += s.state_changes_seen;
        self.retransmits_seen += s.retransmits_seen;
        self.socket_events_matched += s.socket_events_matched;
    }
}

/// lb's kernel programs, loaded into the kernel and verified, with their maps: the XDP
/// packet observer and the two socket-event tracepoints. Dropping it detaches them all
/// and frees unpinned maps.
pub struct LoadedProgram {
    ebpf: Ebpf,
    /// The XDP attachments, by interface, so they can follow the origins' routes.
    xdp_links: std::collections::HashMap<String, (XdpLinkId, XdpMode)>,
}

impl LoadedProgram {
    /// Loads and verifies the embedded program. Nothing is attached yet.
    pub fn load() -> Result<Self, KernelError> {
        raise_memlock_limit();
        let level = aya_log_level();
        let mut ebpf = EbpfLoader::new()
            .override_global("AYA_LOG_LEVEL", &level, false)
            .load(XDP_OBJECT)
            .map_err(|source| {
                let hint = privilege_hint(errno_in(&source));
                KernelError::Load { source, hint }
            })?;
        let program: &mut Xdp = ebpf
            .program_mut(XDP_PROGRAM)
            .ok_or(KernelError::ProgramMissing { name: XDP_PROGRAM })?
            .try_into()
            .map_err(|source| KernelError::Program {
                what: "finding the XDP program".into(),
                source,
                hint: "",
            })?;
        program.load().map_err(|source| {
            let hint = privilege_hint(errno_in(&source));
            KernelError::Program {
                what: "loading the XDP program".into(),
                source,
                hint,
            }
        })?;
        Ok(Self {
            ebpf,
            xdp_links: std::collections::HashMap::new(),
        })
    }

    /// Loads and attaches the socket-event tracepoints (`sock:inet_sock_set_state`,
    /// `tcp:tcp_retransmit_skb`), after filling `TRACE_LAYOUT` from tracefs and BTF.
    /// Without them lb still counts packets, but has no kernel evidence to act on.
    pub fn start_socket_events(&mut self) -> Result<(), KernelError> {
        let root = tracefs::ensure_tracefs()?;
        let layout = tracefs::trace_layout(root)?;
        self.set_trace_layout(layout)?;
        for (name, (category, event)) in [
            (SOCK_STATE_PROGRAM, tracefs::SOCK_STATE),
            (TCP_RETRANSMIT_PROGRAM, tracefs::TCP_RETRANSMIT),
        ] {
            let program: &mut TracePoint = self
                .ebpf
                .program_mut(name)
                .ok_or(KernelError::ProgramMissing { name })?
                .try_into()
                .map_err(|source| KernelError::Program {
                    what: format!("finding the tracepoint program {name}"),
                    source,
                    hint: "",
                })?;
            let failed = |what: String| {
                move |source: aya::programs::ProgramError| {
                    let hint = privilege_hint(errno_in(&source));
                    KernelError::Program { what, source, hint }
                }
            };
            program
                .load()
                .map_err(failed(format!("loading the tracepoint program {name}")))?;
            program.attach(category, event).map_err(failed(format!(
                "attaching to the tracepoint {category}:{event}"
            )))?;
        }
        Ok(())
    }

    /// Writes the field layout the tracepoint programs read.
    pub fn set_trace_layout(&mut self, layout: TraceLayout) -> Result<(), KernelError> {
        let mut map: Array<&mut MapData, TraceLayout> =
            Array::try_from(self.map_mut(map_names::TRACE_LAYOUT)?).map_err(|source| {
                KernelError::Map {
                    what: "opening TRACE_LAYOUT".into(),
                    source,
                }
            })?;
        map.set(0, layout, 0).map_err(|source| KernelError::Map {
            what: "writing TRACE_LAYOUT".into(),
            source,
        })
    }

    fn xdp(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(XDP_PROGRAM)
            .and_then(|p| <&mut Xdp>::try_from(p).ok())
            .expect("checked in load()")
    }

    /// Attaches to `plan.interface`, trying its modes in order; returns the mode used.
    /// An interface already attached keeps its attachment.
    pub fn attach(&mut self, plan: &AttachPlan) -> Result<XdpMode, KernelError> {
        if let Some(&(_, mode)) = self.xdp_links.get(&plan.interface) {
            return Ok(mode);
        }
        let mut last = None;
        for &mode in &plan.modes {
            match self.xdp().attach(&plan.interface, mode) {
                Ok(link) => {
                    self.xdp_links.insert(plan.interface.clone(), (link, mode));
                    return Ok(mode);
                }
                Err(source) => {
                    tracing::debug!(interface = %plan.interface, ?mode, error = %source, "XDP attach attempt failed");
                    last = Some(source);
                }
            }
        }
        let source = last.expect("an attach plan always has at least one mode");
        let hint = privilege_hint(errno_in(&source));
        Err(KernelError::Program {
            what: format!("attaching XDP to {}", plan.interface),
            source,
            hint,
        })
    }

    /// Detaches from `interface` (no origin routes through it any more).
    pub fn detach(&mut self, interface: &str) -> Result<(), KernelError> {
        let Some((link, _)) = self.xdp_links.remove(interface) else {
            return Ok(());
        };
        self.xdp()
            .detach(link)
            .map_err(|source| KernelError::Program {
                what: format!("detaching XDP from {interface}"),
                source,
                hint: "",
            })
    }

    /// The interfaces the XDP program is attached to, with their modes.
    pub fn attached(&self) -> impl Iterator<Item = (&str, XdpMode)> {
        self.xdp_links.iter().map(|(i, &(_, m))| (i.as_str(), m))
    }

    fn map(&self, name: &'static str) -> Result<&Map, KernelError> {
        self.ebpf.map(name).ok_or(KernelError::MapMissing { name })
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut Map, KernelError> {
        self.ebpf
            .map_mut(name)
            .ok_or(KernelError::MapMissing { name })
    }

    fn map_data(&self, name: &'static str) -> Result<&MapData, KernelError> {
        match self.map(name)? {
            Map::Array(data) | Map::HashMap(data) | Map::PerCpuArray(data) => Ok(data),
            _ => Err(KernelError::MapMissing { name }),
        }
    }

    /// Makes `origins` the complete contents of `ORIGIN_INDEX`. Entries not in the list are
    /// removed; a slot that changes hands has its counters zeroed so one origin never
    /// inherits another's history.
    pub fn register_origins(&mut self, origins: &[OriginRegistration]) -> Result<(), KernelError> {
        let map_err = |what: &str| {
            let what = what.to_owned();
            move |source| KernelError::Map { what, source }
        };
        for o in origins {
            if o.slot >= MAX_ORIGIN_SLOTS {
                return Err(KernelError::SlotOutOfRange {
                    slot: o.slot,
                    max: MAX_ORIGIN_SLOTS,
                });
            }
        }
        let wanted: std::collections::HashMap<OriginKey, &OriginRegistration> =
            origins.iter().map(|o| (o.key(), o)).collect();
        let mut reassigned: HashSet<u32> = origins.iter().map(|o| o.slot).collect();
        {
            let mut index: HashMap<&mut MapData, OriginKey, OriginSlot> =
                HashMap::try_from(self.map_mut(map_names::ORIGIN_INDEX)?)
                    .map_err(map_err("opening ORIGIN_INDEX"))?;
            let existing: Vec<(OriginKey, OriginSlot)> =
                index.iter().filter_map(Result::ok).collect();
            for (key, entry) in existing {
                match wanted.get(&key) {
                    // Same endpoint keeps the same slot: its history stays meaningful.
                    Some(o) if o.slot == entry.slot => {
                        reassigned.remove(&o.slot);
                    }
                    _ => index
                        .remove(&key)
                        .map_err(map_err("removing from ORIGIN_INDEX"))?,
                }
            }
            for o in origins {
                index
                    .insert(o.key(), OriginSlot::new(o.slot, &o.label), 0)
                    .map_err(map_err("inserting into ORIGIN_INDEX"))?;
            }
        }
        let mut signals: Array<&mut MapData, OriginSignals> =
            Array::try_from(self.map_mut(map_names::ORIGIN_SIGNALS)?)
                .map_err(map_err("opening ORIGIN_SIGNALS"))?;
        for slot in reassigned {
            signals
                .set(slot, OriginSignals::default(), 0)
                .map_err(map_err("resetting ORIGIN_SIGNALS"))?;
        }
        Ok(())
    }

    /// The zero-syscall view of the signal counters.
    pub fn signals_view(&self) -> Result<SignalsView, KernelError> {
        SignalsView::new(self.map_data(map_names::ORIGIN_SIGNALS)?)
    }

    /// One slot's counters through a map-lookup syscall (the slow path `SignalsView` avoids).
    pub fn lookup_signals(&self, slot: u32) -> Result<OriginSignals, KernelError> {
        let signals: Array<&MapData, OriginSignals> =
            Array::try_from(self.map(map_names::ORIGIN_SIGNALS)?).map_err(|source| {
                KernelError::Map {
                    what: "opening ORIGIN_SIGNALS".into(),
                    source,
                }
            })?;
        signals.get(&slot, 0).map_err(|source| KernelError::Map {
            what: format!("looking up slot {slot}"),
            source,
        })
    }

    /// The program's own counters, summed over CPUs.
    pub fn program_stats(&self) -> Result<ProgramStatsTotal, KernelError> {
        read_program_stats(self.map(map_names::PROGRAM_STATS)?)
    }

    /// Runs the program once on `packet` with `BPF_PROG_TEST_RUN`; returns its XDP action.
    /// Map updates it makes are real, which is what the packet tests check.
    pub fn test_run(&mut self, packet: &[u8]) -> Result<u32, KernelError> {
        let opts = TestRunOptions {
            data_in: Some(packet),
            ..TestRunOptions::default()
        };
        let result = self
            .xdp()
            .test_run(opts)
            .map_err(|source| KernelError::Program {
                what: "BPF_PROG_TEST_RUN".into(),
                source,
                hint: "",
            })?;
        Ok(result.return_value)
    }

    /// Pins the three maps into `dir` (created if missing), replacing stale pins.
    pub fn pin_maps(&self, dir: &Path) -> Result<(), KernelError> {
        std::fs::create_dir_all(dir).map_err(|e| KernelError::Bpffs {
            path: dir.to_owned(),
            message: format!("creating the pin directory: {e}"),
        })?;
        for name in [
            map_names::ORIGIN_INDEX,
            map_names::ORIGIN_SIGNALS,
            map_names::PROGRAM_STATS,
        ] {
            let path = dir.join(name);
            // A pin left by a crashed lb would make the pin fail with EEXIST.
            let _ = std::fs::remove_file(&path);
            self.map(name)?
                .pin(&path)
                .map_err(|source| KernelError::Pin { name, path, source })?;
        }
        Ok(())
    }

    /// Takes the aya-log ring buffer reader; the control plane forwards it to tracing.
    pub fn take_logger(&mut self) -> Option<super::ProgramLogReader> {
        match EbpfLogger::init(&mut self.ebpf) {
            Ok(logger) => Some(logger),
            Err(e) => {
                tracing::debug!(error = %e, "no aya-log map in the XDP object");
                None
            }
        }
    }
}

pub(crate) fn read_program_stats(map: &Map) -> Result<ProgramStatsTotal, KernelError> {
    let stats: PerCpuArray<&MapData, ProgramStats> =
        PerCpuArray::try_from(map).map_err(|source| KernelError::Map {
            what: "opening PROGRAM_STATS".into(),
            source,
        })?;
    let per_cpu = stats.get(&0, 0).map_err(|source| KernelError::Map {
        what: "reading PROGRAM_STATS".into(),
        source,
    })?;
    let mut total = ProgramStatsTotal::default();
    for s in per_cpu.iter() {
        total.add(s);
    }
    Ok(total)
}

/// The errno buried in an aya error's source chain, if any.
pub(crate) fn errno_in(error: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io.raw_os_error();
        }
        current = e.source();
    }
    None
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones ignore it.
fn raise_memlock_limit() {
    use nix::sys::resource::{Resource, setrlimit};
    let infinity = nix::sys::resource::RLIM_INFINITY;
    if let Err(e) = setrlimit(Resource::RLIMIT_MEMLOCK, infinity, infinity) {
        tracing::debug!(error = %e, "could not raise RLIMIT_MEMLOCK (only matters before Linux 5.11)");
    }
}

/// aya-log's level byte for the most verbose level tracing will show: the program skips
/// formatting records nobody would see.
fn aya_log_level() -> u8 {
    use tracing::level_filters::LevelFilter;
    // aya-log-common: Error = 1, Warn, Info, Debug, Trace = 5.
    match LevelFilter::current() {
        LevelFilter::OFF => 0,
        LevelFilter::ERROR => 1,
        LevelFilter::WARN => 2,
        LevelFilter::INFO => 3,
        LevelFilter::DEBUG => 4,
        _ => 5,
    }
}
