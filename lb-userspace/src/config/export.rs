//! [`Config`] → native TOML, for `lb import cloudfront`: the output is a file `lb check`
//! accepts and that behaves the same.

use std::collections::BTreeMap;

use toml::Spanned;

use super::{file::*, model::*, native};

pub(super) fn to_toml(config: &Config) -> String {
    let s = |v: String| Spanned::new(0..0, v);
    let target_name = |t: Target| match t {
        Target::Origin(i) => config.origins[i].id.clone(),
        Target::Group(g) => config.groups[g].id.clone(),
    };
    let behavior = |b: &Behavior| BehaviorFile {
        path_pattern: b.path_pattern.as_ref().map(|p| s(p.as_str().to_owned())),
        target: s(target_name(b.target)),
        allowed_methods: Some(Spanned::new(
            0..0,
            b.allowed_methods
                .names()
                .into_iter()
                .map(str::to_owned)
                .collect(),
        )),
        viewer_protocol_policy: b.viewer_protocol_policy,
        cache: b.cache.as_ref().map(|c| {
            let mut methods = vec!["GET".to_owned(), "HEAD".to_owned()];
            if c.options {
                methods.push("OPTIONS".into());
            }
            Spanned::new(
                0..0,
                BehaviorCacheFile {
                    enabled: true,
                    min_ttl: c.ttls.min,
                    default_ttl: c.ttls.default,
                    max_ttl: c.ttls.max,
                    query: c.key.query.clone(),
                    headers: c.key.headers.clone(),
                    cookies: c.key.cookies.clone(),
                    methods: Spanned::new(0..0, methods),
                    stale_if_error: c.stale_if_error,
                    allow_authorization: c.allow_authorization,
                    allow_set_cookie: c.allow_set_cookie,
                    collapse_wait: c.collapse_wait,
                },
            )
        }),
        functions: b
            .functions
            .iter()
            .map(|f| {
                Spanned::new(
                    0..0,
                    FunctionFile {
                        trigger: f.trigger,
                        file: f.path.display().to_string(),
                        name: Some(f.name.clone()),
                        kind: f.kind,
                    },
                )
            })
            .collect(),
        rules: super::rules_file::export(&b.rules),
    };
    let file = ConfigFile {
        listener: ListenerFile {
            address: s(config.listener.address.to_string()),
            workers: config.listener.workers,
            pin_workers: config.listener.pin_workers,
            io_driver: config.listener.io_driver,
            drain_timeout: config.listener.drain_timeout,
            max_connections: config.listener.max_connections,
            upgrade_socket: config
                .listener
                .upgrade_socket
                .as_ref()
                .map(|p| p.display().to_string()),
        },
        tls: config.tls.as_ref().map(|t| TlsFile {
            address: s(t.address.to_string()),
            certificates: Spanned::new(
                0..0,
                t.certificates
                    .iter()
                    .map(|c| CertificateFile {
                        cert: s(c.cert.display().to_string()),
                        key: s(c.key.display().to_string()),
                    })
                    .collect(),
            ),
        }),
        origin_tls: OriginTlsFile {
            ca_files: config
                .origin_tls
                .ca_files
                .iter()
                .map(|f| s(f.display().to_string()))
                .collect(),
            system_roots: config.origin_tls.system_roots,
        },
        admin: config.admin.address.map(|a| AdminFile {
            address: s(a.to_string()),
        }),
        limits: LimitsFile {
            max_request_line: config.limits.head.max_request_line,
            max_header_bytes: config.limits.head.max_header_bytes,
            max_request_body: config.limits.max_request_body,
            max_response_head: config.limits.max_response_head,
            header_timeout: config.limits.header_timeout,
            idle_timeout: config.limits.idle_timeout,
            body_timeout: config.limits.body_timeout,
            drain_body_max: config.limits.drain_body_max,
            lingering_timeout: config.limits.lingering_timeout,
            lingering_max_bytes: config.limits.lingering_max_bytes,
        },
        http: HttpFile {
            underscore_headers: config.http.underscore_headers,
            upgrade_protocols: config.http.upgrade_protocols.clone(),
        },
        http2: Http2File {
            enabled: config.http2.enabled,
            cleartext: config.http2.cleartext,
            max_concurrent_streams: config.http2.max_concurrent_streams,
            max_header_list_size: config.http2.max_header_list_size,
            stream_window: config.http2.stream_window,
            connection_window: config.http2.connection_window,
            max_frame_size: config.http2.max_frame_size,
            max_send_buffer: config.http2.max_send_buffer,
            max_concurrent_reset_streams: config.http2.max_concurrent_reset_streams,
            max_pending_accept_reset_streams: config.http2.max_pending_accept_reset_streams,
            max_local_error_reset_streams: config.http2.max_local_error_reset_streams,
        },
        failover: FailoverFile {
            replay_body_limit: config.failover.replay_body_limit,
        },
        health: HealthFile {
            passive_failures: config.health.passive_failures,
            ejection_time: config.health.ejection_time,
            max_ejection_time: config.health.max_ejection_time,
            slow_start: config.health.slow_start,
            tcp_probe_interval: config.health.tcp_probe_interval,
            tcp_probe_timeout: config.health.tcp_probe_timeout,
            use_kernel_signals: config.health.use_kernel_signals,
            state_file: config
                .health
                .state_file
                .as_ref()
                .map(|p| p.display().to_string()),
        },
        observability: ObservabilityFile {
            access_log: config.observability.access_log,
            attempts_header: config.observability.attempts_header,
            access_log_format: config.observability.access_log_format,
            access_log_file: config
                .observability
                .access_log_file
                .as_ref()
                .map(|p| p.display().to_string()),
            access_log_buffer: config.observability.access_log_buffer as u64,
        },
        origins: config
            .origins
            .iter()
            .map(|o| OriginFile {
                id: s(o.id.clone()),
                address: s(match &o.host {
                    Some(h) => format!("{h}:{}", o.address.port()),
                    None => o.address.to_string(),
                }),
                host_header: o.host_header.clone().map(s),
                origin_path: o.origin_path.clone(),
                protocol: o.protocol,
                protocol_version: o
                    .http_version
                    .is_h2()
                    .then(|| Spanned::new(0..0, o.http_version)),
                https_port: (o.protocol != OriginProtocol::HttpOnly)
                    .then(|| Spanned::new(0..0, o.https_port)),
                tls_server_name: (o.tls_server_name
                    != native::default_server_name(o.host.as_deref(), o.address))
                .then(|| s(o.tls_server_name.clone())),
                custom_headers: o.custom_headers.iter().cloned().collect::<BTreeMap<_, _>>(),
                connect_timeout: o.connect_timeout,
                connection_attempts: Spanned::new(0..0, o.connection_attempts),
                response_timeout: o.response_timeout,
                keepalive_timeout: o.keepalive_timeout,
                health_check: o.health_check.as_ref().map(|h| HealthCheckFile {
                    path: h.path.clone(),
                    expected_status: h.expected_status,
                    interval: h.interval,
                    fast_interval: h.fast_interval,
                    timeout: h.timeout,
                    healthy_threshold: h.healthy_threshold,
                    unhealthy_threshold: h.unhealthy_threshold,
                    jitter: h.jitter,
                }),
            })
            .collect(),
        origin_groups: config
            .groups
            .iter()
            .map(|g| GroupFile {
                id: s(g.id.clone()),
                members: Spanned::new(
                    0..0,
                    g.members
                        .iter()
                        .map(|&m| s(config.origins[m].id.clone()))
                        .collect(),
                ),
                failover_status_codes: Spanned::new(
                    0..0,
                    g.failover_statuses
                        .codes()
                        .into_iter()
                        .map(|c| Spanned::new(0..0, c))
                        .collect(),
                ),
                failover_grpc_status_codes: g.failover_grpc_statuses.clone(),
                mode: g.mode,
                always_try_primary: g.always_try_primary,
                weights: (g.weights.iter().any(|w| *w != 1))
                    .then(|| Spanned::new(0..0, g.weights.clone())),
                fail_open: g.fail_open,
            })
            .collect(),
        behaviors: config.behaviors.iter().map(behavior).collect(),
        default_behavior: Some(behavior(&config.default_behavior)),
        custom_error_responses: config
            .custom_errors
            .iter()
            .map(|e| ErrorResponseFile {
                error_code: Spanned::new(0..0, e.error_code),
                response_code: e.response_code.map(|c| Spanned::new(0..0, c)),
                response_page_path: match &e.page {
                    ErrorPage::Path(p) => Some(s(p.clone())),
                    ErrorPage::File { .. } => None,
                },
                response_page_file: match &e.page {
                    ErrorPage::File { path, .. } => Some(s(path.display().to_string())),
                    ErrorPage::Path(_) => None,
                },
            })
            .collect(),
        kernel: config.kernel.clone(),
        cache: CacheStoreFile {
            memory_bytes: config.cache.memory_bytes,
            max_object_bytes: config.cache.max_object_bytes,
            disk_path: config
                .cache
                .disk_path
                .as_ref()
                .map(|p| p.display().to_string()),
            disk_bytes: config.cache.disk_bytes,
        },
        rules: super::rules_file::export(&config.rules),
        response_rules: super::rules_file::export_response(
            &config.response_rules,
            &config
                .origins
                .iter()
                .map(|o| o.id.clone())
                .collect::<Vec<_>>(),
        ),
        geo: super::rules_file::export_geo(&config.geo),
        client_address: super::rules_file::export_client_address(&config.client_address),
        functions: (config.function_limits != Default::default()).then_some(FunctionsFile {
            time_limit: config.function_limits.time,
            memory_limit: config.function_limits.memory as u64,
        }),
        dns: (config.dns != DnsSettings::default()).then(|| DnsFile {
            servers: config
                .dns
                .servers
                .iter()
                .map(|a| s(a.to_string()))
                .collect(),
            min_ttl: config.dns.min_ttl,
            max_ttl: config.dns.max_ttl,
            retry: config.dns.retry,
            timeout: config.dns.timeout,
            hold: config.dns.hold,
            hosts: config
                .dns
                .hosts
                .iter()
                .map(|(name, ips)| {
                    let ips = ips.iter().map(|ip| ip.to_string()).collect();
                    (name.clone(), Spanned::new(0..0, ips))
                })
                .collect(),
        }),
    };
    toml::to_string_pretty(&file).unwrap_or_else(|e| format!("# cannot render TOML: {e}\n"))
}
