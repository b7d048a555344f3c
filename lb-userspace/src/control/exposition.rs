//! `/metrics`: Prometheus text exposition (0.0.4) through `prometheus-client`. lb's
//! counters live in per-worker atomic blocks on the request path (`crate::metrics`);
//! this collector reads and sums them at scrape time and hands each family to the
//! library's encoder, which writes the HELP and TYPE lines, the `_total` suffix of
//! counters, label escaping and histogram buckets.

use std::fmt;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use super::admin::State;
use crate::metrics::{FailoverReason, LATENCY_BUCKETS};

/// Renders every metric of `state`.
pub(super) fn render(state: &State) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(LbCollector(state.clone())));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        tracing::warn!("metrics not encoded: {e}");
    }
    out
}

struct LbCollector(State);

impl fmt::Debug for LbCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LbCollector")
    }
}

/// One family: HELP and TYPE, then a sample per label set.
fn family<L: EncodeLabelSet, M: EncodeMetric>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (L, M)>,
) -> fmt::Result {
    let mut family = e.encode_descriptor(name, help, None, kind)?;
    for (labels, metric) in samples {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A counter family (`name` without `_total`: the encoder adds it).
fn counters<L: EncodeLabelSet>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    let samples = samples.into_iter().map(|(l, v)| (l, ConstCounter::new(v)));
    family(e, name, help, MetricType::Counter, samples)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    ConstCounter::new(value).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauges<L: EncodeLabelSet>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, i64)>,
) -> fmt::Result {
    let samples = samples.into_iter().map(|(l, v)| (l, ConstGauge::new(v)));
    family(e, name, help, MetricType::Gauge, samples)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> fmt::Result {
    ConstGauge::new(value).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Collector for LbCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let state = &self.0;
        let snap = state.current.load();
        let (metrics, config) = (&snap.metrics, &snap.config);
        counter(
            &mut e,
            "lb_requests",
            "Requests read from clients.",
            metrics.requests(),
        )?;
        if let Some(log) = &state.access_log {
            counter(
                &mut e,
                "lb_access_log_lines",
                "Access-log lines written.",
                log.written(),
            )?;
            counter(
                &mut e,
                "lb_access_log_dropped_lines",
                "Access-log lines dropped: the writer did not keep up (a slow disk, a full pipe) or the write failed.",
                log.dropped(),
            )?;
        }
        counters(
            &mut e,
            "lb_responses",
            "Responses sent to clients, by status class.",
            metrics
                .responses()
                .map(|(class, n)| ([("class", class)], n)),
        )?;
        counters(
            &mut e,
            "lb_failovers",
            "Attempts that moved on to the next group member, by reason.",
            metrics
                .failovers()
                .into_iter()
                .map(|(group, reason, n)| ([("group", group), ("reason", reason.label())], n)),
        )?;
        counter(
            &mut e,
            "lb_upstream_connections_opened",
            "Connections lb opened to origins.",
            metrics.upstream_connections_opened(),
        )?;
        if !snap.tls.certificates.is_empty() {
            let expiries: Vec<(String, i64)> = snap
                .tls
                .certificates
                .iter()
                .filter_map(|(path, validity)| {
                    let seconds = validity
                        .and_then(|v| v.not_after.duration_since(std::time::UNIX_EPOCH).ok())?
                        .as_secs();
                    Some((path.display().to_string(), int(seconds)))
                })
                .collect();
            gauges(
                &mut e,
                "lb_tls_certificate_expiry_timestamp_seconds",
                "When each listener certificate expires (Unix time).",
                expiries
                    .iter()
                    .map(|(cert, s)| ([("cert", cert.as_str())], *s)),
            )?;
        }
        let (tls_ok, tls_failed) = metrics.tls_handshakes();
        counters(
            &mut e,
            "lb_tls_handshakes",
            "Viewer TLS handshakes on the HTTPS listener.",
            [
                ([("result", "ok")], tls_ok),
                ([("result", "failed")], tls_failed),
            ],
        )?;
        let (h2_connections, h2_streams, h2_errors) = metrics.h2_counts();
        counter(
            &mut e,
            "lb_http2_connections",
            "HTTP/2 viewer connections (ALPN h2 and cleartext prior knowledge).",
            h2_connections,
        )?;
        counter(
            &mut e,
            "lb_http2_streams",
            "HTTP/2 viewer streams accepted (each is one exchange).",
            h2_streams,
        )?;
        counters(
            &mut e,
            "lb_http2_connection_errors",
            "HTTP/2 viewer connections lb ended for the client's error: the GOAWAY code sent (enhance_your_calm: a rapid-reset, MadeYouReset or flood limit tripped), or handshake_timeout.",
            h2_errors.map(|(reason, n)| ([("reason", reason)], n)),
        )?;
        let (open, parked) = metrics.client_connections();
        gauges(
            &mut e,
            "lb_client_connections",
            "Client connections open, and those of them idle and parked without a task (sampled each idle sweep, at most 1 s old).",
            [
                ([("state", "open")], int(open)),
                ([("state", "parked")], int(parked)),
            ],
        )?;
        counter(
            &mut e,
            "lb_accept_errors",
            "Failed accepts on the listeners (EMFILE and friends).",
            metrics.accept_errors(),
        )?;
        counters(
            &mut e,
            "lb_local_errors",
            "Requests lb answered 503 because it ran out of a local resource (never counted against an origin).",
            metrics
                .local_errors()
                .map(|(resource, n)| ([("resource", resource.label())], n)),
        )?;
        let (runs, errors) = metrics.function_counts();
        counter(
            &mut e,
            "lb_function_runs",
            "Function (Lambda@Edge-style) invocations.",
            runs,
        )?;
        counters(
            &mut e,
            "lb_function_errors",
            "Invocations that gave no usable answer (the client got 502), by reason.",
            errors
                .into_iter()
                .map(|(reason, n)| ([("reason", reason)], n)),
        )?;
        counters(
            &mut e,
            "lb_cache_requests",
            "Requests of cached behaviors, by what the cache did.",
            metrics
                .cache_events()
                .map(|(event, n)| ([("result", event.label())], n)),
        )?;
        let store = state.cache.stats();
        let disk = store.disk.as_ref();
        let tiers = |memory: u64, disk_value: Option<u64>| {
            std::iter::once(([("tier", "memory")], int(memory)))
                .chain(disk_value.map(|d| ([("tier", "disk")], int(d))))
        };
        gauges(
            &mut e,
            "lb_cache_objects",
            "Objects in each cache tier.",
            tiers(store.objects, disk.map(|d| d.objects)),
        )?;
        gauges(
            &mut e,
            "lb_cache_bytes",
            "Bytes in each cache tier.",
            tiers(store.bytes, disk.map(|d| d.bytes)),
        )?;
        gauges(
            &mut e,
            "lb_cache_budget_bytes",
            "Each cache tier's byte budget.",
            tiers(store.budget_bytes, disk.map(|d| d.budget_bytes)),
        )?;
        counters(
            &mut e,
            "lb_cache_evictions",
            "Keys evicted to stay within a tier's budget.",
            tiers(store.evictions, disk.map(|d| d.evictions)).map(|(labels, n)| (labels, n as u64)),
        )?;
        gauge(
            &mut e,
            "lb_cache_filling",
            "Keys being filled by one request that concurrent misses wait for.",
            int(store.filling),
        )?;
        if let Some(disk) = disk {
            counters(
                &mut e,
                "lb_cache_disk_operations",
                "The disk tier's reads (on memory misses) and writes, by outcome.",
                [
                    ([("op", "read"), ("result", "ok")], disk.reads),
                    ([("op", "read"), ("result", "error")], disk.read_errors),
                    ([("op", "write"), ("result", "ok")], disk.writes),
                    ([("op", "write"), ("result", "error")], disk.write_errors),
                    (
                        [("op", "write"), ("result", "dropped")],
                        disk.dropped_writes,
                    ),
                ],
            )?;
        }
        let totals: Vec<_> = (0..config.origins.len())
            .map(|i| metrics.origin(i))
            .collect();
        let ids = || config.origins.iter().map(|o| o.id.as_str()).zip(&totals);
        counters(
            &mut e,
            "lb_origin_attempts",
            "Attempts sent to each origin.",
            ids().map(|(id, t)| ([("origin", id)], t.attempts)),
        )?;
        counters(
            &mut e,
            "lb_origin_errors",
            "Failed attempts per origin, by kind.",
            ids().flat_map(|(id, t)| {
                FailoverReason::ALL
                    .iter()
                    .enumerate()
                    .map(move |(k, reason)| {
                        ([("origin", id), ("kind", reason.label())], t.errors[k])
                    })
            }),
        )?;
        gauges(
            &mut e,
            "lb_origin_in_flight",
            "Requests in progress per origin.",
            ids().map(|(id, t)| ([("origin", id)], int(t.in_flight))),
        )?;
        gauges(
            &mut e,
            "lb_origin_state",
            "Health state per origin (1 for the current state).",
            config.origins.iter().enumerate().flat_map(|(i, o)| {
                let current = snap.health.state(i).as_str();
                ["healthy", "suspect", "down", "recovering"]
                    .into_iter()
                    .map(move |s| {
                        (
                            [("origin", o.id.as_str()), ("state", s)],
                            i64::from(s == current),
                        )
                    })
            }),
        )?;
        let kernel: Vec<_> = config
            .origins
            .iter()
            .enumerate()
            .filter_map(|(i, o)| {
                let view = state.kernel.as_ref()?;
                Some((o.id.as_str(), view.get(i as u32)?))
            })
            .collect();
        counters(
            &mut e,
            "lb_origin_kernel_packets",
            "Packets the XDP program counted per origin.",
            kernel.iter().flat_map(|(id, s)| {
                [
                    ("rst", s.rst_packets),
                    ("syn_ack", s.syn_ack_packets),
                    ("icmp_unreachable", s.icmp_unreachable_packets),
                ]
                .map(|(kind, n)| ([("origin", *id), ("kind", kind)], n))
            }),
        )?;
        counters(
            &mut e,
            "lb_origin_kernel_events",
            "Socket events the kernel's TCP stack reported per origin.",
            kernel.iter().flat_map(|(id, s)| {
                [
                    ("connect_established", s.connects_established),
                    ("connect_refused", s.connects_refused),
                    ("connect_unreachable", s.connects_unreachable),
                    ("connect_timed_out", s.connects_timed_out),
                    ("syn_retransmit", s.syn_retransmits),
                    ("retransmit", s.retransmits),
                    ("reset_established", s.resets_established),
                ]
                .map(|(kind, n)| ([("origin", *id), ("kind", kind)], n))
            }),
        )?;
        let mut latency = e.encode_descriptor(
            "lb_origin_response_seconds",
            "Time from sending a request to the origin's response head.",
            None,
            MetricType::Histogram,
        )?;
        for (id, t) in ids() {
            let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
                .iter()
                .copied()
                .chain(std::iter::once(f64::INFINITY))
                .zip(t.latency.iter().copied())
                .collect();
            let count = t.latency.iter().sum();
            latency
                .encode_family(&[("origin", id)])?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    t.latency_sum_secs,
                    count,
                    &buckets,
                    None,
                )?;
        }
        Ok(())
    }
}
