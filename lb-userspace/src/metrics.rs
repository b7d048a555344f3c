//! Counters the data plane writes and the control plane reads: one cache-line-aligned
//! block per worker, updated with relaxed atomic adds on the worker's own block (no
//! contention, no lock), summed when `/metrics` is scraped.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::local_resource::LocalResource;

/// Why an attempt moved on to the next member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailoverReason {
    Status,
    ConnectRefused,
    ConnectTimeout,
    ConnectError,
    Reset,
    ResponseTimeout,
    BadResponse,
    WriteError,
    TlsHandshake,
    /// The kernel retransmitted a SYN while the connect waited (black hole).
    SynRetransmit,
    /// A retransmission timeout with request bytes unacknowledged (stall): hedged.
    Stall,
    /// An HTTP/2 origin refused the stream unprocessed (REFUSED_STREAM, GOAWAY).
    RefusedStream,
    /// The member's name resolves to no address.
    Dns,
}

impl FailoverReason {
    pub const ALL: [Self; 13] = [
        Self::Status,
        Self::ConnectRefused,
        Self::ConnectTimeout,
        Self::ConnectError,
        Self::Reset,
        Self::ResponseTimeout,
        Self::BadResponse,
        Self::WriteError,
        Self::TlsHandshake,
        Self::SynRetransmit,
        Self::Stall,
        Self::RefusedStream,
        Self::Dns,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::ConnectRefused => "connect_refused",
            Self::ConnectTimeout => "connect_timeout",
            Self::ConnectError => "connect_error",
            Self::Reset => "reset",
            Self::ResponseTimeout => "response_timeout",
            Self::BadResponse => "bad_response",
            Self::WriteError => "write_error",
            Self::TlsHandshake => "tls_handshake",
            Self::SynRetransmit => "syn_retransmit",
            Self::Stall => "stall",
            Self::RefusedStream => "refused_stream",
            Self::Dns => "dns",
        }
    }
}

/// What the cache did for one request of a cached behavior.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheEvent {
    /// Answered by a fresh stored copy.
    Hit,
    /// Forwarded; the answer was stored.
    MissStored,
    /// Forwarded; the answer was not storable.
    MissNotStored,
    /// A stale copy answered at once because every member of the target was down.
    StaleGroupDown,
    /// A stale copy answered after every member failed.
    StaleIfError,
    /// An expired copy the origin confirmed unchanged (304): refreshed and served.
    Revalidated,
    /// A miss that waited for a concurrent one's answer and was served from it.
    Collapsed,
    /// A stale copy within its `stale-while-revalidate`, served while one refresh runs.
    StaleWhileRevalidate,
}

impl CacheEvent {
    pub const ALL: [Self; 8] = [
        Self::Hit,
        Self::MissStored,
        Self::MissNotStored,
        Self::StaleGroupDown,
        Self::StaleIfError,
        Self::Revalidated,
        Self::Collapsed,
        Self::StaleWhileRevalidate,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::MissStored => "miss_stored",
            Self::MissNotStored => "miss_not_stored",
            Self::StaleGroupDown => "stale_group_down",
            Self::StaleIfError => "stale_if_error",
            Self::Revalidated => "revalidated",
            Self::Collapsed => "collapsed",
            Self::StaleWhileRevalidate => "stale_while_revalidate",
        }
    }
}

/// Status classes counted for responses sent to clients.
const CLASSES: usize = 6; // 1xx..5xx, plus "other"

/// Upper bounds of the response-head latency histogram, in seconds.
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One worker's counters for one origin.
#[derive(Default)]
pub struct OriginCounters {
    /// Attempts sent to this origin.
    pub attempts: AtomicU64,
    /// Failed attempts by kind (same order as [`FailoverReason::ALL`]).
    errors: [AtomicU64; FailoverReason::ALL.len()],
    /// Time to response head: cumulative-free buckets, plus +Inf.
    latency: [AtomicU64; 14],
    latency_sum_us: AtomicU64,
    /// Requests in progress on this worker (gauge).
    pub in_flight: AtomicU64,
}

impl OriginCounters {
    pub fn error(&self, kind: FailoverReason) {
        let i = FailoverReason::ALL
            .iter()
            .position(|x| *x == kind)
            .unwrap_or(0);
        self.errors[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe_latency(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency[i].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
}

#[repr(align(64))]
pub struct WorkerMetrics {
    pub requests: AtomicU64,
    responses: [AtomicU64; CLASSES],
    /// failovers[group * reasons + reason]
    failovers: Box<[AtomicU64]>,
    pub upstream_connections_opened: AtomicU64,
    /// Viewer TLS handshakes completed and failed (incl. timed out) on the HTTPS listener.
    pub tls_handshakes: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    /// Failed accepts (EMFILE and friends).
    pub accept_errors: AtomicU64,
    /// Gauges, sampled by the worker's idle sweep (at most a second old): open client
    /// connections, and those of them parked without a task. Not carried over a reload
    /// (the next sweep refills them).
    pub client_connections: AtomicU64,
    pub parked_connections: AtomicU64,
    /// HTTP/2 viewer connections and streams served.
    pub h2_connections: AtomicU64,
    pub h2_streams: AtomicU64,
    /// HTTP/2 connections lb ended for the client's fault, by [`H2_ERROR_LABELS`].
    h2_errors: [AtomicU64; H2_ERROR_LABELS.len()],
    /// lb's own resource failures while connecting upstream, by [`LocalResource::index`].
    local_errors: [AtomicU64; LocalResource::ALL.len()],
    origins: Box<[OriginCounters]>,
    /// By [`CacheEvent`], in `ALL`'s order.
    cache: [AtomicU64; CacheEvent::ALL.len()],
    /// Function invocations, and their failures by [`crate::functions::FunctionError::index`].
    pub function_runs: AtomicU64,
    function_errors: [AtomicU64; crate::functions::ERROR_LABELS.len()],
}

/// Why lb ended an HTTP/2 viewer connection with an error: the GOAWAY code it sent
/// (`enhance_your_calm` is the rapid-reset, MadeYouReset and flood defences tripping),
/// or a client that did not complete the connection preface and SETTINGS in time.
pub const H2_ERROR_LABELS: [&str; 7] = [
    "protocol_error",
    "flow_control_error",
    "frame_size_error",
    "compression_error",
    "enhance_your_calm",
    "handshake_timeout",
    "other",
];

impl WorkerMetrics {
    /// Counts an HTTP/2 connection ended for a client's error ([`H2_ERROR_LABELS`] index).
    pub fn h2_error(&self, index: usize) {
        self.h2_errors[index.min(H2_ERROR_LABELS.len() - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts what the cache did for one request.
    pub fn cache(&self, event: CacheEvent) {
        self.cache[event as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a function that gave no usable answer.
    pub fn function_error(&self, e: &crate::functions::FunctionError) {
        self.function_errors[e.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failure of lb's own resources.
    pub fn local_error(&self, resource: LocalResource) {
        self.local_errors[resource.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// All workers' counters.
pub struct Metrics {
    workers: Box<[WorkerMetrics]>,
    groups: Vec<String>,
}

impl Metrics {
    pub fn new(workers: usize, groups: Vec<String>, origins: usize) -> Self {
        let per_worker = groups.len().max(1) * FailoverReason::ALL.len();
        Self {
            workers: (0..workers)
                .map(|_| WorkerMetrics {
                    requests: AtomicU64::new(0),
                    responses: Default::default(),
                    failovers: (0..per_worker).map(|_| AtomicU64::new(0)).collect(),
                    upstream_connections_opened: AtomicU64::new(0),
                    tls_handshakes: AtomicU64::new(0),
                    tls_handshake_failures: AtomicU64::new(0),
                    accept_errors: AtomicU64::new(0),
                    client_connections: AtomicU64::new(0),
                    parked_connections: AtomicU64::new(0),
                    h2_connections: AtomicU64::new(0),
                    h2_streams: AtomicU64::new(0),
                    h2_errors: Default::default(),
                    local_errors: Default::default(),
                    origins: (0..origins).map(|_| OriginCounters::default()).collect(),
                    cache: Default::default(),
                    function_runs: AtomicU64::new(0),
                    function_errors: Default::default(),
                })
                .collect(),
            groups,
        }
    }

    pub fn worker(&self, index: usize) -> &WorkerMetrics {
        &self.workers[index]
    }

    /// Failovers by group and reason, summed over workers.
    pub fn failovers(&self) -> Vec<(&str, FailoverReason, u64)> {
        let mut out = Vec::new();
        for (g, name) in self.groups.iter().enumerate() {
            for (r, reason) in FailoverReason::ALL.iter().enumerate() {
                let i = g * FailoverReason::ALL.len() + r;
                let n = self
                    .workers
                    .iter()
                    .map(|w| w.failovers[i].load(Ordering::Relaxed))
                    .sum();
                out.push((name.as_str(), *reason, n));
            }
        }
        out
    }

    /// Responses by status class ("1xx".."5xx"), summed over workers.
    pub fn responses(&self) -> [(&'static str, u64); 5] {
        let sum = |c: usize| {
            self.workers
                .iter()
                .map(|w| w.responses[c].load(Ordering::Relaxed))
                .sum()
        };
        [
            ("1xx", sum(1)),
            ("2xx", sum(2)),
            ("3xx", sum(3)),
            ("4xx", sum(4)),
            ("5xx", sum(5)),
        ]
    }

    /// Origin `index`'s totals over workers: attempts, errors by kind, in-flight,
    /// latency buckets (non-cumulative) and latency sum in seconds.
    pub fn origin(&self, index: usize) -> OriginTotals {
        let mut t = OriginTotals::default();
        for w in self.workers.iter() {
            let Some(o) = w.origins.get(index) else {
                continue;
            };
            t.attempts += o.attempts.load(Ordering::Relaxed);
            t.in_flight += o.in_flight.load(Ordering::Relaxed);
            for (i, e) in o.errors.iter().enumerate() {
                t.errors[i] += e.load(Ordering::Relaxed);
            }
            for (i, b) in o.latency.iter().enumerate() {
                t.latency[i] += b.load(Ordering::Relaxed);
            }
            t.latency_sum_secs += o.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        }
        t
    }

    pub fn requests(&self) -> u64 {
        self.workers
            .iter()
            .map(|w| w.requests.load(Ordering::Relaxed))
            .sum()
    }

    pub fn upstream_connections_opened(&self) -> u64 {
        self.sum(|w| &w.upstream_connections_opened)
    }

    /// HTTP/2 viewer connections, streams, and connection errors by label.
    pub fn h2_counts(&self) -> (u64, u64, [(&'static str, u64); H2_ERROR_LABELS.len()]) {
        let errors = std::array::from_fn(|i| {
            (
                H2_ERROR_LABELS[i],
                self.workers
                    .iter()
                    .map(|w| w.h2_errors[i].load(Ordering::Relaxed))
                    .sum(),
            )
        });
        (
            self.sum(|w| &w.h2_connections),
            self.sum(|w| &w.h2_streams),
            errors,
        )
    }

    /// Viewer TLS handshakes: (completed, failed).
    pub fn tls_handshakes(&self) -> (u64, u64) {
        (
            self.sum(|w| &w.tls_handshakes),
            self.sum(|w| &w.tls_handshake_failures),
        )
    }

    pub fn accept_errors(&self) -> u64 {
        self.sum(|w| &w.accept_errors)
    }

    /// Open client connections and those parked without a task, all workers.
    pub fn client_connections(&self) -> (u64, u64) {
        (
            self.sum(|w| &w.client_connections),
            self.sum(|w| &w.parked_connections),
        )
    }

    /// lb's own resource failures, by resource.
    /// Function invocations, and failures by reason label.
    pub fn function_counts(&self) -> (u64, Vec<(&'static str, u64)>) {
        let runs = self.sum(|w| &w.function_runs);
        let errors = crate::functions::ERROR_LABELS
            .iter()
            .enumerate()
            .map(|(i, l)| (*l, self.sum(|w| &w.function_errors[i])))
            .collect();
        (runs, errors)
    }

    pub fn local_errors(&self) -> [(LocalResource, u64); LocalResource::ALL.len()] {
        LocalResource::ALL.map(|r| (r, self.sum(|w| &w.local_errors[r.index()])))
    }

    /// Cache events summed over workers.
    pub fn cache_events(&self) -> [(CacheEvent, u64); CacheEvent::ALL.len()] {
        CacheEvent::ALL.map(|e| (e, self.sum(|w| &w.cache[e as usize])))
    }

    fn sum(&self, counter: impl Fn(&WorkerMetrics) -> &AtomicU64) -> u64 {
        self.workers
            .iter()
            .map(|w| counter(w).load(Ordering::Relaxed))
            .sum()
    }
}

impl WorkerMetrics {
    pub fn failover(&self, group: usize, reason: FailoverReason) {
        let r = FailoverReason::ALL
            .iter()
            .position(|x| *x == reason)
            .unwrap_or(0);
        if let Some(c) = self.failovers.get(group * FailoverReason::ALL.len() + r) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn response(&self, status: u16) {
        let class = (status / 100) as usize;
        self.responses[if (1..=5).contains(&class) { class } else { 0 }]
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// Summed counters of one origin.
#[derive(Clone, Debug, Default)]
pub struct OriginTotals {
    pub attempts: u64,
    pub in_flight: u64,
    pub errors: [u64; FailoverReason::ALL.len()],
    pub latency: [u64; 14],
    pub latency_sum_secs: f64,
}

impl Metrics {
    /// Copies the counters of `old` into this (fresh) set after a reload: global ones,
    /// groups by id, origins by id.
    pub fn carry_over(
        &self,
        old: &Metrics,
        old_config: &crate::config::Config,
        config: &crate::config::Config,
    ) {
        let w = &self.workers[0];
        w.requests.store(old.requests(), Ordering::Relaxed);
        w.upstream_connections_opened
            .store(old.upstream_connections_opened(), Ordering::Relaxed);
        let (ok, failed) = old.tls_handshakes();
        w.tls_handshakes.store(ok, Ordering::Relaxed);
        w.tls_handshake_failures.store(failed, Ordering::Relaxed);
        let (h2_connections, h2_streams, h2_errors) = old.h2_counts();
        w.h2_connections.store(h2_connections, Ordering::Relaxed);
        w.h2_streams.store(h2_streams, Ordering::Relaxed);
        for (i, (_, n)) in h2_errors.iter().enumerate() {
            w.h2_errors[i].store(*n, Ordering::Relaxed);
        }
        w.accept_errors
            .store(old.accept_errors(), Ordering::Relaxed);
        for (r, n) in old.local_errors() {
            w.local_errors[r.index()].store(n, Ordering::Relaxed);
        }
        for (e, n) in old.cache_events() {
            w.cache[e as usize].store(n, Ordering::Relaxed);
        }
        let (runs, errors) = old.function_counts();
        w.function_runs.store(runs, Ordering::Relaxed);
        for (i, (_, n)) in errors.iter().enumerate() {
            w.function_errors[i].store(*n, Ordering::Relaxed);
        }
        for (i, (_, n)) in old.responses().iter().enumerate() {
            w.responses[i + 1].store(*n, Ordering::Relaxed);
        }
        let reasons = FailoverReason::ALL.len();
        for (g, group) in config.groups.iter().enumerate() {
            let Some(og) = old_config.groups.iter().position(|x| x.id == group.id) else {
                continue;
            };
            for r in 0..reasons {
                let n: u64 = old
                    .workers
                    .iter()
                    .map(|x| x.failovers[og * reasons + r].load(Ordering::Relaxed))
                    .sum();
                w.failovers[g * reasons + r].store(n, Ordering::Relaxed);
            }
        }
        for (i, origin) in config.origins.iter().enumerate() {
            let Some(oi) = old_config.origins.iter().position(|x| x.id == origin.id) else {
                continue;
            };
            let t = old.origin(oi);
            let c = &w.origins[i];
            c.attempts.store(t.attempts, Ordering::Relaxed);
            for (k, e) in t.errors.iter().enumerate() {
                c.errors[k].store(*e, Ordering::Relaxed);
            }
            for (k, b) in t.latency.iter().enumerate() {
                c.latency[k].store(*b, Ordering::Relaxed);
            }
            c.latency_sum_us
                .store((t.latency_sum_secs * 1e6) as u64, Ordering::Relaxed);
        }
    }
}

impl WorkerMetrics {
    /// This worker's counters for origin `index`.
    pub fn origin(&self, index: usize) -> &OriginCounters {
        &self.origins[index.min(self.origins.len().saturating_sub(1))]
    }
}
