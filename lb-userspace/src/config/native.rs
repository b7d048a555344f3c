//! Native TOML → [`Config`], with every semantic error pointing at its line and column.

use std::{collections::HashMap, net::SocketAddr, ops::Range, path::Path, time::Duration};

use toml::Spanned;

use super::{
    ConfigError, PathPattern,
    file::{BehaviorFile, ConfigFile},
    model::*,
};
use crate::{http::HeadLimits, kernel::MAX_ORIGINS};

/// Positions errors in one file's text.
pub(super) struct Locator<'a> {
    pub file: &'a Path,
    pub text: &'a str,
}

impl Locator<'_> {
    pub fn err(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::at(self.file, self.text, span, field.into(), message.into())
    }
}

pub(super) fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let loc = Locator { file, text };
    let raw: ConfigFile =
        toml::from_str(text).map_err(|e| loc.err(e.span().unwrap_or(0..0), "", e.message()))?;
    build(raw, &loc, file.parent())
}

fn build(
    raw: ConfigFile,
    loc: &Locator<'_>,
    base_dir: Option<&Path>,
) -> Result<Config, ConfigError> {
    let listener_address = parse_socket_addr(&raw.listener.address).ok_or_else(|| {
        loc.err(
            raw.listener.address.span(),
            "listener.address",
            format!(
                "`{}` is not an IP:port address",
                raw.listener.address.get_ref()
            ),
        )
    })?;
    let admin = match &raw.admin {
        None => None,
        Some(a) => Some(parse_socket_addr(&a.address).ok_or_else(|| {
            loc.err(
                a.address.span(),
                "admin.address",
                format!("`{}` is not an IP:port address", a.address.get_ref()),
            )
        })?),
    };
    if raw.origins.len() > MAX_ORIGINS {
        return Err(loc.err(
            0..0,
            "origins",
            format!("at most {MAX_ORIGINS} origins are supported"),
        ));
    }
    // Origins and groups share one namespace: a behavior target names either.
    let mut names: HashMap<String, Target> = HashMap::new();
    let mut origins = Vec::with_capacity(raw.origins.len());
    for (i, spec) in raw.origins.iter().enumerate() {
        let field = |f: &str| format!("origins[{i}].{f}");
        let id = spec.id.get_ref().trim();
        if id.is_empty() {
            return Err(loc.err(spec.id.span(), field("id"), "must not be empty"));
        }
        if names.insert(id.to_owned(), Target::Origin(i)).is_some() {
            return Err(loc.err(spec.id.span(), field("id"), format!("duplicate id `{id}`")));
        }
        let (address, host) = parse_origin_address(spec.address.get_ref())
            .map_err(|why| loc.err(spec.address.span(), field("address"), why))?;
        let host_header = match &spec.host_header {
            None => None,
            Some(h) => {
                let value = h.get_ref().trim();
                let name = match value.rsplit_once(':') {
                    Some((name, port)) if port.parse::<u16>().is_ok() => name,
                    _ => value,
                };
                if name
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_err()
                {
                    validate_host_name(name)
                        .map_err(|why| loc.err(h.span(), field("host_header"), why))?;
                }
                Some(value.to_owned())
            }
        };
        let attempts = *spec.connection_attempts.get_ref();
        if !(1..=3).contains(&attempts) {
            return Err(loc.err(
                spec.connection_attempts.span(),
                field("connection_attempts"),
                format!("must be 1, 2 or 3 (got {attempts})"),
            ));
        }
        if !spec.origin_path.is_empty()
            && (!spec.origin_path.starts_with('/') || spec.origin_path.ends_with('/'))
        {
            return Err(loc.err(
                spec.id.span(),
                field("origin_path"),
                format!(
                    "`{}` must start with / and not end with / (like CloudFront's OriginPath)",
                    spec.origin_path
                ),
            ));
        }
        let mut custom_headers = Vec::new();
        for (name, value) in &spec.custom_headers {
            validate_custom_header(name, value)
                .map_err(|why| loc.err(spec.id.span(), field("custom_headers"), why))?;
            custom_headers.push((name.clone(), value.clone()));
        }
        let health_check = match &spec.health_check {
            None => None,
            Some(h) => {
                let bad = |why: String| loc.err(spec.id.span(), field("health_check"), why);
                if !h.path.starts_with('/') {
                    return Err(bad(format!("path `{}` must start with /", h.path)));
                }
                if !(100..=599).contains(&h.expected_status) {
                    return Err(bad(format!("bad expected_status {}", h.expected_status)));
                }
                if h.healthy_threshold == 0 || h.unhealthy_threshold == 0 {
                    return Err(bad("thresholds must be at least 1".into()));
                }
                if !(0.0..=0.5).contains(&h.jitter) {
                    return Err(bad(format!(
                        "jitter {} must be between 0 and 0.5",
                        h.jitter
                    )));
                }
                if h.interval.is_zero() || h.fast_interval.is_zero() || h.timeout.is_zero() {
                    return Err(bad(
                        "interval, fast_interval and timeout must be above zero".into(),
                    ));
                }
                Some(HealthCheck {
                    path: h.path.clone(),
                    expected_status: h.expected_status,
                    interval: h.interval,
                    fast_interval: h.fast_interval,
                    timeout: h.timeout,
                    healthy_threshold: h.healthy_threshold,
                    unhealthy_threshold: h.unhealthy_threshold,
                    jitter: h.jitter,
                })
            }
        };
        let https_port = match (&spec.https_port, spec.protocol) {
            (Some(p), _) if *p.get_ref() == 0 => {
                return Err(loc.err(p.span(), field("https_port"), "must not be 0"));
            }
            (Some(p), _) => *p.get_ref(),
            (None, OriginProtocol::HttpsOnly) => address.port(),
            (None, _) => 443,
        };
        let http_version = match &spec.protocol_version {
            None => OriginHttpVersion::H1,
            Some(v) => {
                let version = *v.get_ref();
                let needs = match version {
                    OriginHttpVersion::H1 => None,
                    OriginHttpVersion::H2 => Some((OriginProtocol::HttpsOnly, "https-only", "h2c")),
                    OriginHttpVersion::H2c => Some((OriginProtocol::HttpOnly, "http-only", "h2")),
                };
                if let Some((protocol, name, other)) = needs {
                    if spec.protocol != protocol {
                        return Err(loc.err(
                            v.span(),
                            field("protocol_version"),
                            format!(
                                "`{}` needs protocol = \"{name}\" (use `{other}` for the other scheme)",
                                serde_json::to_value(version).unwrap_or_default().as_str().unwrap_or("")
                            ),
                        ));
                    }
                }
                version
            }
        };
        let tls_server_name = match &spec.tls_server_name {
            Some(name) => {
                validate_server_name(name.get_ref())
                    .map_err(|why| loc.err(name.span(), field("tls_server_name"), why))?;
                name.get_ref().clone()
            }
            None => default_server_name(host.as_deref(), address),
        };
        origins.push(Origin {
            health_check,
            id: id.to_owned(),
            address,
            host,
            host_header,
            origin_path: spec.origin_path.clone(),
            custom_headers,
            protocol: spec.protocol,
            http_version,
            https_port,
            tls_server_name,
            connect_timeout: spec.connect_timeout,
            connection_attempts: attempts,
            response_timeout: spec.response_timeout,
            keepalive_timeout: spec.keepalive_timeout,
        });
    }
    let mut groups = Vec::with_capacity(raw.origin_groups.len());
    for (g, spec) in raw.origin_groups.iter().enumerate() {
        let field = |f: &str| format!("origin_groups[{g}].{f}");
        let id = spec.id.get_ref().trim();
        if id.is_empty() {
            return Err(loc.err(spec.id.span(), field("id"), "must not be empty"));
        }
        if names.contains_key(id) {
            return Err(loc.err(
                spec.id.span(),
                field("id"),
                format!("duplicate id `{id}` (origins and groups share ids)"),
            ));
        }
        let mut members = Vec::new();
        for m in spec.members.get_ref() {
            match names.get(m.get_ref().as_str()) {
                Some(Target::Origin(o)) if members.contains(o) => {
                    return Err(loc.err(
                        m.span(),
                        field("members"),
                        format!("origin `{}` listed twice", m.get_ref()),
                    ));
                }
                Some(Target::Origin(o)) => members.push(*o),
                Some(Target::Group(_)) => {
                    return Err(loc.err(
                        m.span(),
                        field("members"),
                        format!("`{}` is a group; members must be origins", m.get_ref()),
                    ));
                }
                None => {
                    return Err(loc.err(
                        m.span(),
                        field("members"),
                        format!("unknown origin id `{}`", m.get_ref()),
                    ));
                }
            }
        }
        if members.len() > MAX_GROUP_MEMBERS {
            return Err(loc.err(
                spec.members.span(),
                field("members"),
                format!(
                    "a group has at most {MAX_GROUP_MEMBERS} members ({} given)",
                    members.len()
                ),
            ));
        }
        if members.len() < 2 {
            return Err(loc.err(
                spec.members.span(),
                field("members"),
                "a group needs at least two members",
            ));
        }
        let mut codes = Vec::new();
        for c in spec.failover_status_codes.get_ref() {
            let code = *c.get_ref();
            if !(400..=599).contains(&code) {
                return Err(loc.err(
                    c.span(),
                    field("failover_status_codes"),
                    format!("bad status code {code}: failover statuses are 4xx or 5xx"),
                ));
            }
            codes.push(code);
        }
        let weights = match &spec.weights {
            None => vec![1; members.len()],
            Some(w) => {
                if w.get_ref().len() != members.len() || w.get_ref().contains(&0) {
                    return Err(loc.err(
                        w.span(),
                        field("weights"),
                        format!(
                            "needs one positive weight per member ({} members)",
                            members.len()
                        ),
                    ));
                }
                w.get_ref().clone()
            }
        };
        names.insert(id.to_owned(), Target::Group(g));
        groups.push(OriginGroup {
            weights,
            fail_open: spec.fail_open,
            id: id.to_owned(),
            members,
            failover_statuses: StatusSet::from_codes(codes),
            failover_grpc_statuses: spec.failover_grpc_status_codes.clone(),
            mode: spec.mode,
            always_try_primary: spec.always_try_primary,
        });
    }
    let geo = super::rules_file::build_geo(raw.geo.as_ref(), base_dir, loc)?;
    let behavior = |b: &BehaviorFile, field: String| -> Result<Behavior, ConfigError> {
        let target = *names.get(b.target.get_ref().as_str()).ok_or_else(|| {
            loc.err(
                b.target.span(),
                format!("{field}.target"),
                format!("unknown origin or group id `{}`", b.target.get_ref()),
            )
        })?;
        let allowed_methods = match &b.allowed_methods {
            None => MethodSet::ALL,
            Some(m) => MethodSet::from_names(m.get_ref().iter().map(String::as_str))
                .map_err(|why| loc.err(m.span(), format!("{field}.allowed_methods"), why))?,
        };
        let cache = match &b.cache {
            Some(c) if c.get_ref().enabled => Some(
                behavior_cache(c.get_ref())
                    .map_err(|(sub, why)| loc.err(c.span(), format!("{field}.cache{sub}"), why))?,
            ),
            _ => None,
        };
        let mut functions: Vec<crate::functions::FunctionSpec> = Vec::new();
        for (j, f) in b.functions.iter().enumerate() {
            let ff = f.get_ref();
            let at = format!("{field}.functions[{j}]");
            let path = base_dir.unwrap_or(Path::new(".")).join(&ff.file);
            let source = std::fs::read_to_string(&path).map_err(|e| {
                loc.err(
                    f.span(),
                    at.clone(),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            if ff.kind == crate::functions::FunctionKind::CloudFrontFunction
                && !matches!(
                    ff.trigger,
                    crate::functions::Trigger::ViewerRequest
                        | crate::functions::Trigger::ViewerResponse
                )
            {
                return Err(loc.err(
                    f.span(),
                    at,
                    "CloudFront Functions run at viewer-request and viewer-response only",
                ));
            }
            crate::functions::engine::check(&source, ff.kind)
                .map_err(|e| loc.err(f.span(), at.clone(), format!("{}: {e}", path.display())))?;
            if functions.iter().any(|g| g.trigger == ff.trigger) {
                return Err(loc.err(
                    f.span(),
                    at,
                    format!(
                        "a second {} function: one per trigger",
                        ff.trigger.event_type()
                    ),
                ));
            }
            let name = ff.name.clone().unwrap_or_else(|| {
                path.file_stem()
                    .map_or_else(|| ff.file.clone(), |s| s.to_string_lossy().into_owned())
            });
            functions.push(crate::functions::FunctionSpec {
                name,
                path,
                source,
                trigger: ff.trigger,
                kind: ff.kind,
            });
        }
        Ok(Behavior {
            path_pattern: b
                .path_pattern
                .as_ref()
                .map(|p| PathPattern::new(p.get_ref())),
            target,
            allowed_methods,
            viewer_protocol_policy: b.viewer_protocol_policy,
            cache,
            functions,
            rules: super::rules_file::build(&b.rules, &names, loc, &geo, &format!("{field}."))?,
        })
    };
    let mut behaviors = Vec::new();
    for (i, b) in raw.behaviors.iter().enumerate() {
        let Some(p) = &b.path_pattern else {
            return Err(loc.err(
                b.target.span(),
                format!("behaviors[{i}].path_pattern"),
                "missing (only default_behavior has none)",
            ));
        };
        if p.get_ref().is_empty() {
            return Err(loc.err(
                p.span(),
                format!("behaviors[{i}].path_pattern"),
                "must not be empty",
            ));
        }
        behaviors.push(behavior(b, format!("behaviors[{i}]"))?);
    }
    let default_behavior = match &raw.default_behavior {
        Some(b) => {
            if let Some(p) = &b.path_pattern {
                return Err(loc.err(
                    p.span(),
                    "default_behavior.path_pattern",
                    "the default behavior matches everything; remove path_pattern",
                ));
            }
            behavior(b, "default_behavior".into())?
        }
        // Nothing to choose between: one origin and no group is its own default.
        None if origins.len() <= 1 && groups.is_empty() => Behavior {
            path_pattern: None,
            target: Target::Origin(0),
            allowed_methods: MethodSet::ALL,
            viewer_protocol_policy: ViewerProtocolPolicy::AllowAll,
            cache: None,
            functions: Vec::new(),
            rules: Default::default(),
        },
        None => {
            return Err(loc.err(
                0..0,
                "default_behavior",
                "missing: with several origins or a group, add [default_behavior] with a target",
            ));
        }
    };
    let client_address = super::rules_file::build_client_address(raw.client_address.as_ref(), loc)?;
    let rules = super::rules_file::build(&raw.rules, &names, loc, &geo, "")?;
    let response_rules =
        super::rules_file::build_response(&raw.response_rules, &names, loc, base_dir)?;
    let mut custom_errors = Vec::new();
    for (i, e) in raw.custom_error_responses.iter().enumerate() {
        let field = |f: &str| format!("custom_error_responses[{i}].{f}");
        let code = *e.error_code.get_ref();
        if !(400..=599).contains(&code) {
            return Err(loc.err(
                e.error_code.span(),
                field("error_code"),
                format!("bad status code {code}: must be 4xx or 5xx"),
            ));
        }
        let response_code = match &e.response_code {
            Some(r) if !(200..=599).contains(r.get_ref()) => {
                return Err(loc.err(
                    r.span(),
                    field("response_code"),
                    format!("bad status code {}", r.get_ref()),
                ));
            }
            Some(r) => Some(*r.get_ref()),
            None => None,
        };
        let page = match (&e.response_page_path, &e.response_page_file) {
            (Some(p), None) => {
                if !p.get_ref().starts_with('/') {
                    return Err(loc.err(
                        p.span(),
                        field("response_page_path"),
                        "must start with /",
                    ));
                }
                ErrorPage::Path(p.get_ref().clone())
            }
            (None, Some(f)) => {
                let path = base_dir.unwrap_or(Path::new(".")).join(f.get_ref());
                let body = std::fs::read(&path).map_err(|err| {
                    loc.err(
                        f.span(),
                        field("response_page_file"),
                        format!("cannot read {}: {err}", path.display()),
                    )
                })?;
                ErrorPage::File { path, body }
            }
            _ => {
                return Err(loc.err(
                    e.error_code.span(),
                    field("response_page_path"),
                    "set exactly one of response_page_path and response_page_file",
                ));
            }
        };
        custom_errors.push(CustomErrorResponse {
            error_code: code,
            response_code,
            page,
        });
    }
    let tls = match &raw.tls {
        None => None,
        Some(t) => {
            let address = parse_socket_addr(&t.address).ok_or_else(|| {
                loc.err(
                    t.address.span(),
                    "tls.address",
                    format!("`{}` is not an IP:port address", t.address.get_ref()),
                )
            })?;
            if t.certificates.get_ref().is_empty() {
                return Err(loc.err(
                    t.certificates.span(),
                    "tls.certificates",
                    "needs at least one certificate (cert and key PEM files)",
                ));
            }
            if super::listeners_collide(address, listener_address) {
                return Err(loc.err(
                    t.address.span(),
                    "tls.address",
                    "must differ from listener.address",
                ));
            }
            let dir = base_dir.unwrap_or(Path::new("."));
            let certificates = t
                .certificates
                .get_ref()
                .iter()
                .map(|c| CertificateFiles {
                    cert: dir.join(c.cert.get_ref()),
                    key: dir.join(c.key.get_ref()),
                })
                .collect();
            Some(TlsListener {
                address,
                certificates,
            })
        }
    };
    let origin_tls = OriginTls {
        ca_files: raw
            .origin_tls
            .ca_files
            .iter()
            .map(|f| base_dir.unwrap_or(Path::new(".")).join(f.get_ref()))
            .collect(),
        system_roots: raw.origin_tls.system_roots,
    };
    let l = &raw.limits;
    let http2 = http2_settings(&raw.http2).map_err(|(field, why)| {
        // The key's place in the `[http2]` table (the values are plain numbers).
        let span = loc
            .text
            .find("[http2]")
            .and_then(|table| {
                let at = table + loc.text[table..].find(field)?;
                Some(at..at + field.len())
            })
            .unwrap_or(0..0);
        loc.err(span, format!("http2.{field}"), why)
    })?;
    Ok(Config {
        tls,
        origin_tls,
        listener: Listener {
            address: listener_address,
            workers: raw.listener.workers,
            pin_workers: raw.listener.pin_workers,
            io_driver: raw.listener.io_driver,
            drain_timeout: raw.listener.drain_timeout,
            max_connections: match raw.listener.max_connections {
                0 => Listener::default_max_connections(crate::fd_limit::current()),
                n => n,
            },
            upgrade_socket: raw
                .listener
                .upgrade_socket
                .as_ref()
                .map(|p| base_dir.unwrap_or(Path::new(".")).join(p)),
        },
        admin: Admin { address: admin },
        limits: Limits {
            head: HeadLimits {
                max_request_line: l.max_request_line,
                max_header_bytes: l.max_header_bytes,
            },
            max_request_body: l.max_request_body,
            max_response_head: l.max_response_head,
            header_timeout: l.header_timeout,
            idle_timeout: l.idle_timeout,
            body_timeout: l.body_timeout,
            drain_body_max: l.drain_body_max,
            lingering_timeout: l.lingering_timeout,
            lingering_max_bytes: l.lingering_max_bytes,
        },
        http: HttpSettings {
            underscore_headers: raw.http.underscore_headers,
            upgrade_protocols: raw
                .http
                .upgrade_protocols
                .iter()
                .map(|p| p.to_ascii_lowercase())
                .collect(),
        },
        http2,
        origins,
        groups,
        behaviors,
        default_behavior,
        custom_errors,
        failover: FailoverSettings {
            replay_body_limit: raw.failover.replay_body_limit,
        },
        observability: Observability {
            access_log: raw.observability.access_log,
            attempts_header: raw.observability.attempts_header,
            access_log_format: raw.observability.access_log_format,
            access_log_file: raw
                .observability
                .access_log_file
                .as_ref()
                .map(|p| base_dir.unwrap_or(Path::new(".")).join(p)),
            access_log_buffer: usize::try_from(raw.observability.access_log_buffer)
                .unwrap_or(usize::MAX)
                .max(4096),
        },
        health: HealthSettings {
            passive_failures: raw.health.passive_failures.max(1),
            ejection_time: raw.health.ejection_time,
            max_ejection_time: raw.health.max_ejection_time.max(raw.health.ejection_time),
            slow_start: raw.health.slow_start,
            tcp_probe_interval: raw.health.tcp_probe_interval.max(Duration::from_millis(10)),
            tcp_probe_timeout: raw.health.tcp_probe_timeout.max(Duration::from_millis(10)),
            use_kernel_signals: raw.health.use_kernel_signals,
            state_file: raw
                .health
                .state_file
                .as_ref()
                .map(|p| base_dir.unwrap_or(Path::new(".")).join(p)),
        },
        kernel: raw.kernel,
        cache: CacheSettings {
            memory_bytes: raw.cache.memory_bytes,
            max_object_bytes: raw.cache.max_object_bytes,
            // Relative to the config file, like page files.
            disk_path: raw
                .cache
                .disk_path
                .as_ref()
                .map(|p| base_dir.unwrap_or(Path::new(".")).join(p)),
            disk_bytes: raw.cache.disk_bytes,
        },
        rules,
        response_rules,
        geo,
        client_address,
        function_limits: raw.functions.as_ref().map_or_else(Default::default, |f| {
            crate::functions::FunctionLimits {
                time: f.time_limit,
                memory: usize::try_from(f.memory_limit).unwrap_or(usize::MAX),
            }
        }),
        dns: match &raw.dns {
            None => DnsSettings::default(),
            Some(d) => dns_settings(d, loc)?,
        },
    })
}

/// `[dns]`, checked: server addresses and fixed host addresses are IP literals, and the
/// TTL floor is below the ceiling.
fn dns_settings(d: &super::file::DnsFile, loc: &Locator<'_>) -> Result<DnsSettings, ConfigError> {
    let mut servers = Vec::with_capacity(d.servers.len());
    for (i, server) in d.servers.iter().enumerate() {
        let address = server
            .get_ref()
            .parse::<SocketAddr>()
            .or_else(|_| {
                server
                    .get_ref()
                    .parse::<std::net::IpAddr>()
                    .map(|ip| SocketAddr::new(ip, 53))
            })
            .map_err(|_| {
                loc.err(
                    server.span(),
                    format!("dns.servers[{i}]"),
                    format!("`{}` is not an IP or IP:port address", server.get_ref()),
                )
            })?;
        servers.push(address);
    }
    let mut hosts = std::collections::BTreeMap::new();
    for (name, addresses) in &d.hosts {
        let field = format!("dns.hosts.{name}");
        validate_host_name(name).map_err(|why| loc.err(addresses.span(), &field, why))?;
        let ips = parse_ip_list(addresses.get_ref().iter().map(String::as_str))
            .map_err(|why| loc.err(addresses.span(), &field, why))?;
        hosts.insert(name.to_ascii_lowercase(), ips);
    }
    if d.min_ttl > d.max_ttl {
        return Err(loc.err(0..0, "dns.min_ttl", "must not be above dns.max_ttl"));
    }
    let at_least = |d: Duration, floor_ms: u64| d.max(Duration::from_millis(floor_ms));
    Ok(DnsSettings {
        servers,
        min_ttl: d.min_ttl,
        max_ttl: at_least(d.max_ttl, 100),
        retry: at_least(d.retry, 100),
        timeout: at_least(d.timeout, 100),
        hold: d.hold,
        hosts,
    })
}

/// IP literals, at least one: the addresses of a `[dns.hosts]` entry or `--resolve`.
pub(super) fn parse_ip_list<'a>(
    list: impl Iterator<Item = &'a str>,
) -> Result<Vec<std::net::IpAddr>, String> {
    let mut ips = Vec::new();
    for a in list {
        let a = a.trim().trim_start_matches('[').trim_end_matches(']');
        ips.push(
            a.parse()
                .map_err(|_| format!("`{a}` is not an IP address"))?,
        );
    }
    if ips.is_empty() {
        return Err("needs at least one address".into());
    }
    Ok(ips)
}

/// A behavior's `cache` table, checked: TTLs in order (CloudFront: MinTTL <= DefaultTTL
/// <= MaxTTL), cached methods GET and HEAD (and OPTIONS), keyed headers that lb does not
/// write itself. Errors: (`.subfield`, why).
pub(super) fn behavior_cache(
    c: &super::file::BehaviorCacheFile,
) -> Result<BehaviorCache, (&'static str, String)> {
    if c.min_ttl > c.default_ttl || c.default_ttl > c.max_ttl {
        return Err((
            ".default_ttl",
            "needs min_ttl <= default_ttl <= max_ttl".into(),
        ));
    }
    let mut options = false;
    let (mut get, mut head) = (false, false);
    for m in c.methods.get_ref() {
        match m.to_ascii_uppercase().as_str() {
            "GET" => get = true,
            "HEAD" => head = true,
            "OPTIONS" => options = true,
            other => {
                return Err((
                    ".methods",
                    format!("`{other}` is not cacheable (GET, HEAD, OPTIONS)"),
                ));
            }
        }
    }
    if !(get && head) {
        return Err((".methods", "GET and HEAD are always cached".into()));
    }
    let mut headers = Vec::new();
    for h in &c.headers {
        let name = h.to_ascii_lowercase();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.!#$%&'*+^`|~".contains(&b))
        {
            return Err((".headers", format!("`{h}` is not a header name")));
        }
        if matches!(
            name.as_str(),
            "x-forwarded-for" | "x-forwarded-proto" | "via" | "host" | "cookie"
        ) {
            return Err((
                ".headers",
                format!(
                    "`{h}` cannot be keyed: lb writes it itself (the host is always in the key; cookies are keyed with `cookies`)"
                ),
            ));
        }
        if !headers.contains(&name) {
            headers.push(name);
        }
    }
    Ok(BehaviorCache {
        ttls: crate::cache::Ttls {
            min: c.min_ttl,
            default: c.default_ttl,
            max: c.max_ttl,
        },
        key: crate::cache::KeyPolicy {
            query: c.query.clone(),
            headers,
            cookies: c.cookies.clone(),
        },
        options,
        stale_if_error: c.stale_if_error,
        allow_authorization: c.allow_authorization,
        allow_set_cookie: c.allow_set_cookie,
        collapse_wait: c.collapse_wait,
    })
}

/// `[http2]`, checked against what HTTP/2 allows (RFC 9113 §6.5.2, §6.9.1).
fn http2_settings(f: &super::file::Http2File) -> Result<Http2Settings, (&'static str, String)> {
    const MAX_WINDOW: u32 = (1 << 31) - 1;
    if f.max_concurrent_streams == 0 {
        return Err(("max_concurrent_streams", "must be at least 1".into()));
    }
    if !(16_384..=16_777_215).contains(&f.max_frame_size) {
        return Err((
            "max_frame_size",
            format!(
                "{} is outside 16384..=16777215 (RFC 9113)",
                f.max_frame_size
            ),
        ));
    }
    for (field, window) in [
        ("stream_window", f.stream_window),
        ("connection_window", f.connection_window),
    ] {
        if !(1024..=MAX_WINDOW).contains(&window) {
            return Err((field, format!("{window} is outside 1024..={MAX_WINDOW}")));
        }
    }
    if f.max_header_list_size < 1024 {
        return Err(("max_header_list_size", "must be at least 1024".into()));
    }
    if f.max_send_buffer < 1024 {
        return Err(("max_send_buffer", "must be at least 1024".into()));
    }
    Ok(Http2Settings {
        enabled: f.enabled,
        cleartext: f.cleartext,
        max_concurrent_streams: f.max_concurrent_streams,
        max_header_list_size: f.max_header_list_size,
        stream_window: f.stream_window,
        connection_window: f.connection_window,
        max_frame_size: f.max_frame_size,
        max_send_buffer: f.max_send_buffer,
        max_concurrent_reset_streams: f.max_concurrent_reset_streams,
        max_pending_accept_reset_streams: f.max_pending_accept_reset_streams,
        max_local_error_reset_streams: f.max_local_error_reset_streams,
    })
}

fn parse_socket_addr(s: &Spanned<String>) -> Option<SocketAddr> {
    s.get_ref().parse().ok()
}

/// `IP:port` as is; `name:port` checked as a DNS name but not resolved (checking a config
/// needs no network, and a name that does not resolve yet is not an error: its origin is
/// down until it does). A named origin's address is the unspecified IP with its port.
pub(super) fn parse_origin_address(address: &str) -> Result<(SocketAddr, Option<String>), String> {
    if let Ok(a) = address.parse::<SocketAddr>() {
        return Ok((a, None));
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!(
            "`{address}` needs a port (for example 127.0.0.1:8080 or origin.example:80)"
        ));
    };
    let Ok(port) = port.parse::<u16>() else {
        return Err(format!("`{address}` is not IP:port or name:port"));
    };
    validate_host_name(host)?;
    Ok((
        SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), port),
        Some(host.to_ascii_lowercase()),
    ))
}

/// A name lb can look up: letters, digits, `-`, `_` and dots, in labels of at most 63
/// bytes, 253 in all. Catches unexpanded template placeholders (`${BUCKET}`,
/// `<alb-domain>`, `{{tenant}}`) with the character that gives them away.
pub(super) fn validate_host_name(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host name is empty".into());
    }
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
    {
        return Err(format!(
            "`{host}` is not a valid DNS name (`{c}` is not allowed; an unexpanded template placeholder?)"
        ));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.len() > 253 || name.split('.').any(|l| l.is_empty() || l.len() > 63) {
        return Err(format!(
            "`{host}` is not a valid DNS name (empty label, or a label over 63 bytes)"
        ));
    }
    if name.parse::<std::net::IpAddr>().is_err()
        && name
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("`{host}` is neither an IP address nor a DNS name"));
    }
    Ok(())
}

/// Header names are tokens; values may not contain CR, LF or NUL (no header injection).
/// A name rustls accepts as SNI / certificate subject: a DNS name or an IP literal.
pub(super) fn validate_server_name(name: &str) -> Result<(), String> {
    rustls::pki_types::ServerName::try_from(name)
        .map(|_| ())
        .map_err(|_| format!("`{name}` is not a valid DNS name or IP address"))
}

/// The SNI name when none is configured: the host name the address came from, else the IP.
pub(super) fn default_server_name(host: Option<&str>, address: SocketAddr) -> String {
    host.map_or_else(|| address.ip().to_string(), str::to_owned)
}

pub(super) fn validate_custom_header(name: &str, value: &str) -> Result<(), String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(format!("`{name}` is not a valid header name"));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(format!("the value of `{name}` contains CR, LF or NUL"));
    }
    let lower = name.to_ascii_lowercase();
    if [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
    ]
    .contains(&lower.as_str())
    {
        return Err(format!(
            "`{name}` is managed by lb and cannot be a custom header"
        ));
    }
    Ok(())
}
