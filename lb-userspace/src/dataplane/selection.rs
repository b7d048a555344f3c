//! Which members of a target to try, in which order: the failover order for active-passive
//! groups, or a balanced first pick for active-active ones, both built from the shared
//! health table (down members are skipped, recovering ones get their slow-start share).
//! Per-worker state only (round-robin positions, in-flight counts, latency EWMAs): no
//! locks, no allocation.

use std::{
    cell::{Cell, RefCell},
    time::Duration,
};

use crate::{
    config::{Config, GroupMode, Target},
    health::{Availability, HealthTable, now_ms},
    kernel::SignalsView,
};

/// Members tried per request at most.
const MAX_MEMBERS: usize = crate::config::MAX_GROUP_MEMBERS;
/// Weight of a new latency sample below the current EWMA (peaks replace it outright).
const EWMA_ALPHA: f64 = 0.2;

/// A fixed-capacity list of origin indexes.
#[derive(Clone, Copy)]
pub struct Order {
    items: [usize; MAX_MEMBERS],
    len: usize,
}

impl Order {
    fn new() -> Self {
        Self {
            items: [0; MAX_MEMBERS],
            len: 0,
        }
    }

    fn push(&mut self, v: usize) {
        if self.len < MAX_MEMBERS && !self.contains(&v) {
            self.items[self.len] = v;
            self.len += 1;
        }
    }
}

impl std::ops::Deref for Order {
    type Target = [usize];

    fn deref(&self) -> &[usize] {
        &self.items[..self.len]
    }
}

/// What to do with a request.
pub enum Plan {
    Try(Order),
    /// Every member is down and the group does not fail open.
    NoneUsable,
}

pub struct Selector {
    /// Smooth weighted round robin: current weight per group member.
    rr: RefCell<Vec<Vec<i64>>>,
    in_flight: Box<[Cell<u32>]>,
    ewma_us: Box<[Cell<f64>]>,
    rng: Cell<u64>,
}

impl Selector {
    pub fn new(config: &Config, seed: u64) -> Self {
        Self {
            rr: RefCell::new(
                config
                    .groups
                    .iter()
                    .map(|g| vec![0; g.members.len()])
                    .collect(),
            ),
            in_flight: (0..config.origins.len()).map(|_| Cell::new(0)).collect(),
            ewma_us: (0..config.origins.len()).map(|_| Cell::new(0.0)).collect(),
            rng: Cell::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
        }
    }

    fn random(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        x
    }

    fn chance(&self, p: f64) -> bool {
        (self.random() % 10_000) as f64 / 10_000.0 < p
    }

    pub fn started(&self, origin: usize) {
        let c = &self.in_flight[origin];
        c.set(c.get() + 1);
    }

    pub fn finished(&self, origin: usize) {
        let c = &self.in_flight[origin];
        c.set(c.get().saturating_sub(1));
    }

    /// Peak-EWMA: a slower sample replaces the average at once, faster ones decay into it.
    pub fn observe(&self, origin: usize, latency: Duration) {
        let sample = latency.as_micros() as f64;
        let e = &self.ewma_us[origin];
        let current = e.get();
        e.set(if sample > current {
            sample
        } else {
            current + EWMA_ALPHA * (sample - current)
        });
    }

    pub fn plan(
        &self,
        config: &Config,
        health: &HealthTable,
        kernel: Option<&SignalsView>,
        target: Target,
    ) -> Plan {
        let mut order = Order::new();
        let group_index = match target {
            Target::Origin(i) => {
                order.push(i);
                return Plan::Try(order);
            }
            Target::Group(g) => g,
        };
        let group = &config.groups[group_index];
        if group.always_try_primary {
            group.members.iter().for_each(|&m| order.push(m));
            return Plan::Try(order);
        }
        let now = now_ms();
        // (position in group, origin, effective weight)
        let mut usable = [(0usize, 0usize, 0f64); MAX_MEMBERS];
        let mut n = 0;
        for (pos, &m) in group.members.iter().enumerate().take(MAX_MEMBERS) {
            if let Availability::Usable { share } = health.availability(m, now, kernel) {
                usable[n] = (pos, m, share * f64::from(group.weights[pos]));
                n += 1;
            }
        }
        let usable = &usable[..n];
        if usable.is_empty() {
            if !group.fail_open {
                return Plan::NoneUsable;
            }
            group.members.iter().for_each(|&m| order.push(m));
            return Plan::Try(order);
        }
        match group.mode {
            GroupMode::Failover => {
                // In priority order; a recovering member takes its slow-start share of
                // the requests and is a fallback for the rest.
                let mut deferred = Order::new();
                for &(pos, m, ew) in usable {
                    let share = ew / f64::from(group.weights[pos]);
                    if share >= 1.0 || self.chance(share) {
                        order.push(m);
                    } else {
                        deferred.push(m);
                    }
                }
                deferred.iter().for_each(|&m| order.push(m));
            }
            GroupMode::RoundRobin => {
                let mut rr = self.rr.borrow_mut();
                let current = &mut rr[group_index];
                let total: f64 = usable.iter().map(|u| u.2).sum();
                let mut best = usable[0];
                for &(pos, m, ew) in usable {
                    current[pos] += (ew * 1000.0) as i64;
                    if current[pos] > current[best.0] {
                        best = (pos, m, ew);
                    }
                }
                current[best.0] -= (total * 1000.0) as i64;
                order.push(best.1);
            }
            GroupMode::LeastOutstanding => {
                let cost =
                    |o: usize, ew: f64| f64::from(self.in_flight[o].get() + 1) / ew.max(1e-9);
                order.push(self.two_choices(usable, cost));
            }
            GroupMode::PeakEwma => {
                let cost = |o: usize, ew: f64| {
                    (self.ewma_us[o].get() + 1.0) * f64::from(self.in_flight[o].get() + 1)
                        / ew.max(1e-9)
                };
                order.push(self.two_choices(usable, cost));
            }
        }
        // Whatever comes first, the other usable members follow as failover targets.
        usable.iter().for_each(|u| order.push(u.1));
        Plan::Try(order)
    }

    /// Power of two random choices: the cheaper of two distinct random usable members.
    fn two_choices(
        &self,
        usable: &[(usize, usize, f64)],
        cost: impl Fn(usize, f64) -> f64,
    ) -> usize {
        if usable.len() == 1 {
            return usable[0].1;
        }
        let a = (self.random() % usable.len() as u64) as usize;
        let mut b = (self.random() % (usable.len() as u64 - 1)) as usize;
        if b >= a {
            b += 1;
        }
        let (x, y) = (usable[a], usable[b]);
        if cost(x.1, x.2) <= cost(y.1, y.2) {
            x.1
        } else {
            y.1
        }
    }
}
