//! The state machine, run by the control plane every few tens of milliseconds. Only this
//! function changes an origin's state; workers contribute evidence (failures, ejections,
//! stalls they confirmed), the active checker contributes check and probe runs, the
//! kernel contributes socket events (connects refused or unreachable, SYNs retransmitted).

use std::sync::atomic::Ordering::Relaxed;

use super::{HealthState as S, HealthTable, Reason};
use crate::{config::HealthCheck, kernel::SignalsView};

/// A failure-free quiet period after which a suspect origin without checks is healthy.
const SUSPECT_QUIET_MS: u64 = 1_000;

/// Passing TCP connect probes in a row that bring an origin without HTTP checks back.
pub const TCP_PROBE_HEALTHY_THRESHOLD: u32 = 2;
/// Failing TCP connect probes in a row that take a suspect origin down.
pub const TCP_PROBE_UNHEALTHY_THRESHOLD: u32 = 2;

/// What actively checks an origin.
#[derive(Clone, Copy, Debug)]
pub enum Checks<'a> {
    /// Its configured HTTP checks.
    Http(&'a HealthCheck),
    /// Implicit TCP connect probes, for origins without HTTP checks: they run only
    /// while the origin is not healthy, so that no client request has to be the probe
    /// that pays a second black-hole wait.
    TcpConnect,
}

impl Checks<'_> {
    fn healthy_threshold(self) -> u32 {
        match self {
            Self::Http(c) => c.healthy_threshold,
            Self::TcpConnect => TCP_PROBE_HEALTHY_THRESHOLD,
        }
    }

    fn unhealthy_threshold(self) -> u32 {
        match self {
            Self::Http(c) => c.unhealthy_threshold,
            Self::TcpConnect => TCP_PROBE_UNHEALTHY_THRESHOLD,
        }
    }

    fn failing(self) -> Reason {
        match self {
            Self::Http(_) => Reason::ActiveChecksFailing,
            Self::TcpConnect => Reason::TcpProbesFailing,
        }
    }

    fn passing(self) -> Reason {
        match self {
            Self::Http(_) => Reason::ActiveChecksPassing,
            Self::TcpConnect => Reason::TcpProbesPassing,
        }
    }
}

/// Moves origin `index` to the state its evidence calls for. Returns the new state if it
/// changed (the caller logs it).
pub fn evaluate(
    table: &HealthTable,
    index: usize,
    checks: Option<Checks>,
    kernel: Option<&SignalsView>,
    now: u64,
) -> Option<(S, Reason)> {
    let settings = table.settings();
    let h = table.origin(index);
    let state = table.state(index);
    let kernel_verdict = table.kernel_verdict(index, kernel);
    let ejected = now < h.ejected_until_ms.load(Relaxed);
    let fail_run = h.check_fail_run.load(Relaxed);
    let ok_run = h.check_ok_run.load(Relaxed);
    let checks_failing = checks.is_some_and(|c| fail_run >= c.unhealthy_threshold());
    let checks_passing = checks.is_some_and(|c| ok_run >= c.healthy_threshold());
    let recent_failure = now.saturating_sub(h.last_failure_ms.load(Relaxed)) < SUSPECT_QUIET_MS
        && h.last_failure_ms.load(Relaxed) != 0;
    let checks_failing_reason = checks.map_or(Reason::ActiveChecksFailing, Checks::failing);
    let unresolved = table.unresolved(index);
    let down_reason = unresolved
        .then_some(Reason::DnsUnresolved)
        .or(kernel_verdict)
        .or(ejected.then_some(Reason::Ejected))
        .or(checks_failing.then_some(checks_failing_reason));
    let next = match state {
        S::Healthy | S::Suspect => match down_reason {
            Some(r) => Some((S::Down, r)),
            None if state == S::Healthy
                && (fail_run > 0 || h.consecutive_failures.load(Relaxed) > 0) =>
            {
                Some((
                    S::Suspect,
                    if fail_run > 0 {
                        checks_failing_reason
                    } else {
                        Reason::PassiveFailures
                    },
                ))
            }
            None if state == S::Suspect
                && h.consecutive_failures.load(Relaxed) == 0
                && fail_run == 0
                && !recent_failure
                && (checks.is_none() || checks_passing) =>
            {
                Some((S::Healthy, Reason::FailuresStopped))
            }
            None => None,
        },
        S::Down => {
            if unresolved {
                // Nothing to connect to: no probe can bring it back before DNS does.
                None
            } else if kernel_verdict.is_some() {
                // The kernel's evidence still stands (and keeps the request path away).
                None
            } else if let Some(c) = checks {
                // Hysteresis: healthy_threshold passing checks in a row, all after the
                // origin went down (set_state restarts the run). They end an ejection
                // early only if the checks saw this failure (one failed since): checks
                // that pass while real traffic fails say nothing about it, and ending
                // the ejection on them would flap the origin between down and
                // recovering.
                let checks_blind = ejected && !h.check_failed_since_ejection.load(Relaxed);
                (checks_passing && !checks_blind).then_some((S::Recovering, c.passing()))
            } else if ejected {
                None
            } else {
                // No checks at all: live traffic probes it, ramped by slow start.
                Some((S::Recovering, Reason::EjectionOver))
            }
        }
        S::Recovering => match down_reason {
            Some(r) => Some((S::Down, r)),
            None if now.saturating_sub(h.recovering_since_ms.load(Relaxed))
                >= settings.slow_start.as_millis() as u64 =>
            {
                // Fully back: forget earlier ejections so the next one starts short.
                h.ejections.store(0, Relaxed);
                Some((S::Healthy, Reason::SlowStartDone))
            }
            None => None,
        },
    };
    let (new_state, reason) = next?;
    if new_state == S::Recovering {
        h.ejected_until_ms.store(0, Relaxed);
        h.consecutive_failures.store(0, Relaxed);
    }
    table.set_state(index, new_state, reason, now);
    Some((new_state, reason))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{config::HealthSettings, health::Availability};

    fn table() -> HealthTable {
        HealthTable::new(
            1,
            HealthSettings {
                passive_failures: 3,
                ejection_time: Duration::from_millis(100),
                max_ejection_time: Duration::from_millis(1000),
                slow_start: Duration::from_millis(500),
                tcp_probe_interval: Duration::from_millis(250),
                tcp_probe_timeout: Duration::from_secs(1),
                use_kernel_signals: true,
                state_file: None,
            },
        )
    }

    fn check() -> HealthCheck {
        HealthCheck {
            path: "/health".into(),
            expected_status: 200,
            interval: Duration::from_secs(1),
            fast_interval: Duration::from_millis(100),
            timeout: Duration::from_millis(100),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            jitter: 0.0,
        }
    }

    #[test]
    fn passive_failures_eject_then_probe_then_slow_start_then_healthy() {
        let t = table();
        t.record_failure(0, 1000);
        assert_eq!(
            evaluate(&t, 0, None, None, 1000),
            Some((S::Suspect, Reason::PassiveFailures))
        );
        t.record_failure(0, 1001);
        t.record_failure(0, 1002);
        assert_eq!(
            t.availability(0, 1002, None),
            Availability::Down,
            "ejected at once, before any evaluation"
        );
        assert_eq!(
            evaluate(&t, 0, None, None, 1003),
            Some((S::Down, Reason::Ejected))
        );
        assert_eq!(
            evaluate(&t, 0, None, None, 1050),
            None,
            "still ejected (100 ms)"
        );
        assert_eq!(
            evaluate(&t, 0, None, None, 1103),
            Some((S::Recovering, Reason::EjectionOver))
        );
        let Availability::Usable { share } = t.availability(0, 1103 + 250, None) else {
            panic!()
        };
        assert!(
            (share - 0.5).abs() < 0.01,
            "half way through slow start: {share}"
        );
        assert_eq!(
            evaluate(&t, 0, None, None, 1603),
            Some((S::Healthy, Reason::SlowStartDone))
        );
    }

    #[test]
    fn checks_that_passed_before_or_never_failed_do_not_end_an_ejection() {
        let t = table();
        let c = check();
        // Checks pass throughout while real traffic fails (the origin's /health is fine,
        // its pages answer 503).
        t.record_check(0, true, 200, 5);
        t.record_check(0, true, 200, 6);
        for now in [10, 11, 12] {
            t.record_failure(0, now);
        }
        assert_eq!(
            evaluate(&t, 0, Some(Checks::Http(&c)), None, 13),
            Some((S::Down, Reason::Ejected))
        );
        assert_eq!(
            evaluate(&t, 0, Some(Checks::Http(&c)), None, 14),
            None,
            "passes from before"
        );
        t.record_check(0, true, 200, 20);
        t.record_check(0, true, 200, 30);
        assert_eq!(
            evaluate(&t, 0, Some(Checks::Http(&c)), None, 31),
            None,
            "checks that never saw the failure leave the ejection to run its course"
        );
        // Ejected for 100 ms from 12: over at 112, then the passing checks re-admit it.
        assert_eq!(
            evaluate(&t, 0, Some(Checks::Http(&c)), None, 113),
            Some((S::Recovering, Reason::ActiveChecksPassing))
        );
    }

    #[test]
    fn passing_checks_end_an_ejection_early() {
        let t = table();
        let c = check();
        for now in [10, 11, 12] {
            t.record_failure(0, now);
        }
        assert_eq!(
            evaluate(&t, 0, Some(Checks::Http(&c)), None, 13),
            Some((S::Down, Reason::Ejected))
        );
        // The checks saw the failure, then saw it end.
        t.record_check(0, false, 503, 15);
        t.record_check(0, true, 200, 20);
        t.record_check(0, true, 200, 30);
        assert_eq!(
            evaluate(&t, 0, Some(Checks::Http(&c)), None, 30),
            Some((S::Recovering, Reason::ActiveChecksPassing))
        );
        assert!(
            matches!(t.availability(0, 31, None), Availability::Usable { .. }),
            "the ejection is cleared"
        );
    }

    #[test]
    fn repeated_ejections_double_up_to_the_maximum() {
        let t = table();
        let mut now = 0;
        let mut lengths = Vec::new();
        for _ in 0..6 {
            for _ in 0..3 {
                t.record_failure(0, now);
            }
            let until = t.origin(0).ejected_until_ms.load(Relaxed);
            lengths.push(until - now);
            now = until;
        }
        assert_eq!(lengths, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn active_checks_need_thresholds_in_a_row() {
        let t = table();
        let c = check();
        t.record_check(0, false, 503, 10);
        assert_eq!(
            evaluate(&t, 0, Some(Checks::Http(&c)), None, 10),
            Some((S::Suspect, Reason::ActiveChecksFailing))
        );
        t.record_check(0, false, 503, 20);
        assert_eq!(
            evaluate(&t, 0, Some(Checks::Http(&c)), None, 20),
            Some((S::Down, Reason::ActiveChecksFailing))
        );
        t.record_check(0, true, 200, 30);
        assert_eq!(
            evaluate(&t, 0, Some(Checks::Http(&c)), None, 30),
            None,
            "one pass is not enough"
        );
        t.record_check(0, false, 0, 40);
        t.record_check(0, true, 200, 50);
        assert_eq!(
            evaluate(&t, 0, Some(Checks::Http(&c)), None, 50),
            None,
            "the run restarted"
        );
        t.record_check(0, true, 200, 60);
        assert_eq!(
            evaluate(&t, 0, Some(Checks::Http(&c)), None, 60),
            Some((S::Recovering, Reason::ActiveChecksPassing))
        );
        t.record_check(0, false, 500, 70);
        t.record_check(0, false, 500, 80);
        assert_eq!(
            evaluate(&t, 0, Some(Checks::Http(&c)), None, 80),
            Some((S::Down, Reason::ActiveChecksFailing)),
            "no flapping back in"
        );
    }
}
