//! The shared per-origin health block and its lock-free accessors.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use crate::{
    config::HealthSettings,
    kernel::{KernelFinding, SignalsView, monotonic_now_ns},
};

/// Kernel evidence older than this is ignored by the request path: the control plane has
/// turned it into a `down` state by then, which only passing probes end.
pub const KERNEL_FRESH_MS: u64 = 2_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    Healthy = 0,
    Suspect = 1,
    Down = 2,
    Recovering = 3,
}

impl HealthState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Suspect,
            2 => Self::Down,
            3 => Self::Recovering,
            _ => Self::Healthy,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Suspect => "suspect",
            Self::Down => "down",
            Self::Recovering => "recovering",
        }
    }
}

/// Why an origin is in its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Start = 0,
    PassiveFailures = 1,
    Ejected = 2,
    KernelConnectRefused = 3,
    KernelUnreachable = 4,
    ActiveChecksFailing = 5,
    ActiveChecksPassing = 6,
    EjectionOver = 7,
    SlowStartDone = 8,
    FailuresStopped = 9,
    KernelSynRetransmit = 10,
    KernelStall = 11,
    TcpProbesFailing = 12,
    TcpProbesPassing = 13,
    /// The origin's name does not resolve (and its last addresses are no longer held).
    DnsUnresolved = 14,
}

impl Reason {
    pub(super) fn from_code(v: u8) -> Self {
        Self::from_u8(v)
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::PassiveFailures,
            2 => Self::Ejected,
            3 => Self::KernelConnectRefused,
            4 => Self::KernelUnreachable,
            5 => Self::ActiveChecksFailing,
            6 => Self::ActiveChecksPassing,
            7 => Self::EjectionOver,
            8 => Self::SlowStartDone,
            9 => Self::FailuresStopped,
            10 => Self::KernelSynRetransmit,
            11 => Self::KernelStall,
            12 => Self::TcpProbesFailing,
            13 => Self::TcpProbesPassing,
            14 => Self::DnsUnresolved,
            _ => Self::Start,
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            Self::Start => "no failures seen",
            Self::PassiveFailures => "failed attempts on live traffic",
            Self::Ejected => "ejected after consecutive failed attempts",
            Self::KernelConnectRefused => "kernel: connect refused (an RST answered lb's SYN)",
            Self::KernelUnreachable => {
                "kernel: connect failed on an ICMP unreachable matching lb's SYN"
            }
            Self::KernelSynRetransmit => {
                "kernel: SYN retransmitted, no answer for 1 s (black hole or dropped SYNs)"
            }
            Self::KernelStall => {
                "kernel: retransmission timeout with request bytes unacknowledged (stall)"
            }
            Self::TcpProbesFailing => "TCP connect probes failing",
            Self::TcpProbesPassing => "TCP connect probes passing again",
            Self::ActiveChecksFailing => "active health checks failing",
            Self::ActiveChecksPassing => "active health checks passing again",
            Self::EjectionOver => "ejection over, probing with live traffic",
            Self::SlowStartDone => "slow start complete",
            Self::FailuresStopped => "no new failures",
            Self::DnsUnresolved => "DNS: the origin's name does not resolve",
        }
    }
}

/// One origin's health, shared by every worker and the control plane.
#[repr(align(64))]
#[derive(Default)]
pub struct OriginHealth {
    state: AtomicU8,
    reason: AtomicU8,
    pub(super) state_since_ms: AtomicU64,
    pub(super) recovering_since_ms: AtomicU64,
    // Passive, written by workers.
    pub(super) consecutive_failures: AtomicU32,
    pub(super) failures_total: AtomicU64,
    pub(super) successes_total: AtomicU64,
    pub(super) last_failure_ms: AtomicU64,
    pub(super) ejections: AtomicU32,
    pub(super) ejected_until_ms: AtomicU64,
    // Active, written by the control plane's checker.
    pub(super) check_ok_run: AtomicU32,
    pub(super) check_fail_run: AtomicU32,
    pub(super) last_check_status: AtomicU32,
    pub(super) last_check_ms: AtomicU64,
    pub(super) checks_total: AtomicU64,
    /// A check failed since the last ejection began: the checks see this failure, so
    /// their passing again may end the ejection early.
    pub(super) check_failed_since_ejection: std::sync::atomic::AtomicBool,
    /// When a worker last found one of its connections to this origin stalled (a
    /// retransmission timeout with request bytes unacknowledged, from TCP_INFO);
    /// CLOCK_MONOTONIC ns, 0: never.
    pub(super) stall_ns: AtomicU64,
    /// When a worker's connect to this origin failed with host or network unreachable:
    /// the kernel's own verdict on lb's SYN (it checked the ICMP error against it), as
    /// the socket reports it. The tracepoint sees the same when the ICMP error ends the
    /// connect at once; when it arrives while the connecting thread holds the socket
    /// (a fast local path), only the socket error tells. CLOCK_MONOTONIC ns, 0: never.
    pub(super) unreachable_ns: AtomicU64,
    /// The origin's name has no addresses now (written by the resolver): it is down
    /// until it resolves, whatever else says.
    pub(super) unresolved: std::sync::atomic::AtomicBool,
}

impl OriginHealth {
    /// Why the origin is in its state, as stored.
    pub(super) fn reason_code(&self) -> u8 {
        self.reason.load(Relaxed)
    }

    /// What the workers read off their own sockets, for [`kernel_verdict`].
    fn reported(&self) -> Reported {
        Reported {
            stall_ns: self.stall_ns.load(Relaxed),
            unreachable_ns: self.unreachable_ns.load(Relaxed),
        }
    }
}

/// Kernel verdicts the workers read off their own sockets (TCP_INFO, a connect's error).
#[derive(Clone, Copy, Debug, Default)]
pub struct Reported {
    pub stall_ns: u64,
    pub unreachable_ns: u64,
}

/// Whether a member may get a request now, and what share of its traffic (slow start).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Availability {
    Down,
    Usable { share: f64 },
}

/// The health of every origin, in config order.
pub struct HealthTable {
    origins: Box<[OriginHealth]>,
    settings: HealthSettings,
}

/// CLOCK_MONOTONIC in milliseconds (vDSO: no syscall).
pub fn now_ms() -> u64 {
    monotonic_now_ns() / 1_000_000
}

/// The kernel's verdict on origin `slot`, from validated evidence only (a connect refused
/// or unreachable, a SYN retransmitted, a stall a worker confirmed on its own connection):
/// the first such failure that is newer than the last connect that worked and younger than
/// [`KERNEL_FRESH_MS`]. Packets (RSTs, ICMP) are never evidence: see `lb_common::OriginSignals`.
pub fn kernel_verdict(
    view: &SignalsView,
    slot: usize,
    reported: Reported,
    now_ns: u64,
) -> Option<Reason> {
    let mut evidence = view.evidence(slot as u32);
    evidence.unreachable_ns = evidence.unreachable_ns.max(reported.unreachable_ns);
    let finding = evidence.finding(reported.stall_ns, now_ns, KERNEL_FRESH_MS * 1_000_000)?;
    Some(match finding {
        KernelFinding::ConnectRefused => Reason::KernelConnectRefused,
        KernelFinding::Unreachable => Reason::KernelUnreachable,
        KernelFinding::SynRetransmit => Reason::KernelSynRetransmit,
        KernelFinding::Stall => Reason::KernelStall,
    })
}

impl HealthTable {
    pub fn new(origins: usize, settings: HealthSettings) -> Self {
        let now = now_ms();
        let origins: Box<[OriginHealth]> = (0..origins).map(|_| OriginHealth::default()).collect();
        for o in origins.iter() {
            o.state_since_ms.store(now, Relaxed);
        }
        Self { origins, settings }
    }

    pub fn settings(&self) -> &HealthSettings {
        &self.settings
    }

    pub fn len(&self) -> usize {
        self.origins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    pub fn origin(&self, index: usize) -> &OriginHealth {
        &self.origins[index]
    }

    pub fn state(&self, index: usize) -> HealthState {
        HealthState::from_u8(self.origins[index].state.load(Relaxed))
    }

    /// The request path's question. Loads only: state, ejection, kernel counters.
    pub fn availability(
        &self,
        index: usize,
        now: u64,
        kernel: Option<&SignalsView>,
    ) -> Availability {
        let Some(h) = self.origins.get(index) else {
            return Availability::Down;
        };
        let state = HealthState::from_u8(h.state.load(Relaxed));
        if state == HealthState::Down
            || now < h.ejected_until_ms.load(Relaxed)
            || h.unresolved.load(Relaxed)
        {
            return Availability::Down;
        }
        if self.settings.use_kernel_signals
            && let Some(view) = kernel
            && kernel_verdict(view, index, h.reported(), monotonic_now_ns()).is_some()
        {
            return Availability::Down;
        }
        if state == HealthState::Recovering {
            let ramp = self.settings.slow_start.as_millis() as u64;
            let since = h.recovering_since_ms.load(Relaxed);
            let share = if ramp == 0 {
                1.0
            } else {
                (now.saturating_sub(since) as f64 / ramp as f64).clamp(0.05, 1.0)
            };
            return Availability::Usable { share };
        }
        Availability::Usable { share: 1.0 }
    }

    /// A request to origin `index` succeeded (a response not in the failover set).
    pub fn record_success(&self, index: usize) {
        let h = &self.origins[index];
        h.successes_total.fetch_add(1, Relaxed);
        // Read first: the common case writes nothing shared.
        if h.consecutive_failures.load(Relaxed) != 0 {
            h.consecutive_failures.store(0, Relaxed);
        }
    }

    /// An attempt on origin `index` failed. Enough in a row eject it, for longer each time.
    pub fn record_failure(&self, index: usize, now: u64) {
        let h = &self.origins[index];
        h.failures_total.fetch_add(1, Relaxed);
        h.last_failure_ms.store(now, Relaxed);
        let n = h.consecutive_failures.fetch_add(1, Relaxed) + 1;
        if n >= self.settings.passive_failures && now >= h.ejected_until_ms.load(Relaxed) {
            let k = h.ejections.fetch_add(1, Relaxed).min(16);
            let base = self.settings.ejection_time.as_millis() as u64;
            let max = self.settings.max_ejection_time.as_millis() as u64;
            h.ejected_until_ms
                .store(now + (base << k).min(max), Relaxed);
            h.consecutive_failures.store(0, Relaxed);
            // Only checks that pass after the ejection began may end it.
            h.check_ok_run.store(0, Relaxed);
            h.check_failed_since_ejection.store(false, Relaxed);
        }
    }

    /// A worker found its connection to origin `index` stalled (TCP_INFO: a retransmission
    /// timeout with request bytes unacknowledged). Every worker avoids the origin until a
    /// connect to it works again.
    pub fn record_stall(&self, index: usize) {
        self.origins[index]
            .stall_ns
            .store(monotonic_now_ns(), Relaxed);
    }

    /// The kernel's verdict on origin `index` now (None when kernel signals are off).
    pub fn kernel_verdict(&self, index: usize, kernel: Option<&SignalsView>) -> Option<Reason> {
        let view = kernel.filter(|_| self.settings.use_kernel_signals)?;
        let h = &self.origins[index];
        kernel_verdict(view, index, h.reported(), monotonic_now_ns())
    }

    /// Whether origin `index`'s name resolves to no address now (the resolver says).
    pub fn set_unresolved(&self, index: usize, unresolved: bool) {
        let flag = &self.origins[index].unresolved;
        if flag.load(Relaxed) != unresolved {
            flag.store(unresolved, Relaxed);
        }
    }

    pub fn unresolved(&self, index: usize) -> bool {
        self.origins[index].unresolved.load(Relaxed)
    }

    /// A worker's connect to origin `index` failed with host or network unreachable.
    pub fn record_unreachable(&self, index: usize) {
        self.origins[index]
            .unreachable_ns
            .store(monotonic_now_ns(), Relaxed);
    }

    /// An active check finished: `status` 0 means no valid response.
    pub fn record_check(&self, index: usize, ok: bool, status: u16, now: u64) {
        let h = &self.origins[index];
        h.checks_total.fetch_add(1, Relaxed);
        h.last_check_status.store(u32::from(status), Relaxed);
        h.last_check_ms.store(now, Relaxed);
        if ok {
            h.check_ok_run.fetch_add(1, Relaxed);
            h.check_fail_run.store(0, Relaxed);
        } else {
            h.check_fail_run.fetch_add(1, Relaxed);
            h.check_ok_run.store(0, Relaxed);
            h.check_failed_since_ejection.store(true, Relaxed);
        }
    }

    pub(super) fn set_state(&self, index: usize, state: HealthState, reason: Reason, now: u64) {
        let h = &self.origins[index];
        if state == HealthState::Down && self.state(index) != HealthState::Down {
            // Only checks that pass after the origin went down may bring it back.
            h.check_ok_run.store(0, Relaxed);
        }
        h.state.store(state as u8, Relaxed);
        h.reason.store(reason as u8, Relaxed);
        h.state_since_ms.store(now, Relaxed);
        if state == HealthState::Recovering {
            h.recovering_since_ms.store(now, Relaxed);
        }
    }

    /// Copies state from `old` (config reload: the same origin keeps its health).
    pub fn carry_over(&self, index: usize, old: &HealthTable, old_index: usize) {
        let (a, b) = (&self.origins[index], &old.origins[old_index]);
        macro_rules! copy {
            ($($f:ident),*) => { $( a.$f.store(b.$f.load(Relaxed), Relaxed); )* };
        }
        copy!(
            state,
            reason,
            state_since_ms,
            recovering_since_ms,
            consecutive_failures,
            failures_total,
            successes_total,
            last_failure_ms,
            ejections,
            ejected_until_ms,
            check_ok_run,
            check_fail_run,
            last_check_status,
            last_check_ms,
            checks_total
        );
    }

    /// Everything about origin `index`, for the admin API.
    pub fn snapshot(&self, index: usize, now: u64) -> OriginSnapshot {
        let h = &self.origins[index];
        let ago = |t: u64| (t != 0).then(|| now.saturating_sub(t));
        OriginSnapshot {
            state: HealthState::from_u8(h.state.load(Relaxed)),
            reason: Reason::from_u8(h.reason.load(Relaxed)).text(),
            state_for_ms: now.saturating_sub(h.state_since_ms.load(Relaxed)),
            consecutive_failures: h.consecutive_failures.load(Relaxed),
            failures_total: h.failures_total.load(Relaxed),
            successes_total: h.successes_total.load(Relaxed),
            ejections: h.ejections.load(Relaxed),
            ejected_for_ms: h.ejected_until_ms.load(Relaxed).saturating_sub(now),
            last_failure_ms_ago: ago(h.last_failure_ms.load(Relaxed)),
            checks_total: h.checks_total.load(Relaxed),
            check_ok_run: h.check_ok_run.load(Relaxed),
            check_fail_run: h.check_fail_run.load(Relaxed),
            last_check_status: h.last_check_status.load(Relaxed) as u16,
            last_check_ms_ago: ago(h.last_check_ms.load(Relaxed)),
            stall_ms_ago: {
                let t = h.stall_ns.load(Relaxed);
                (t != 0).then(|| monotonic_now_ns().saturating_sub(t) / 1_000_000)
            },
        }
    }
}

/// A consistent-enough copy of one origin's health for display.
#[derive(Clone, Debug, Serialize)]
pub struct OriginSnapshot {
    pub state: HealthState,
    pub reason: &'static str,
    pub state_for_ms: u64,
    pub consecutive_failures: u32,
    pub failures_total: u64,
    pub successes_total: u64,
    pub ejections: u32,
    pub ejected_for_ms: u64,
    pub last_failure_ms_ago: Option<u64>,
    pub checks_total: u64,
    pub check_ok_run: u32,
    pub check_fail_run: u32,
    pub last_check_status: u16,
    pub last_check_ms_ago: Option<u64>,
    /// Since a worker last found a connection to this origin stalled.
    pub stall_ms_ago: Option<u64>,
}
