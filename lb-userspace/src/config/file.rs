//! The native TOML file as users write it. Every table denies unknown fields, so a typo
//! is an error with its line and column rather than a silently ignored setting. The same
//! types serialize, which is how `lb import cloudfront` prints TOML.

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::model::{GroupMode, OriginProtocol, ViewerProtocolPolicy};
use crate::kernel::KernelSettings;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfigFile {
    #[serde(default)]
    pub listener: ListenerFile,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFile>,
    #[serde(default, skip_serializing_if = "OriginTlsFile::is_default")]
    pub origin_tls: OriginTlsFile,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminFile>,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub http: HttpFile,
    #[serde(default)]
    pub http2: Http2File,
    #[serde(default)]
    pub failover: FailoverFile,
    #[serde(default)]
    pub observability: ObservabilityFile,
    #[serde(default)]
    pub health: HealthFile,
    #[serde(default)]
    pub origins: Vec<OriginFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origin_groups: Vec<GroupFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub behaviors: Vec<BehaviorFile>,
    pub default_behavior: Option<BehaviorFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_error_responses: Vec<ErrorResponseFile>,
    #[serde(default)]
    pub kernel: KernelSettings,
    #[serde(default)]
    pub cache: CacheStoreFile,
    /// Request rules, in order (first match wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Spanned<super::rules_file::RuleFile>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo: Option<super::rules_file::GeoFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_address: Option<super::rules_file::ClientAddressFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub functions: Option<FunctionsFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_rules: Vec<Spanned<super::rules_file::ResponseRuleFile>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsFile>,
}

/// `[dns]`: resolving origins configured by name.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct DnsFile {
    /// `IP:port` of name servers; empty: /etc/resolv.conf.
    pub servers: Vec<Spanned<String>>,
    #[serde(with = "humantime_serde")]
    pub min_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub retry: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub hold: Duration,
    /// Fixed addresses for names, instead of DNS.
    pub hosts: std::collections::BTreeMap<String, Spanned<Vec<String>>>,
}

impl Default for DnsFile {
    fn default() -> Self {
        let d = super::model::DnsSettings::default();
        Self {
            servers: Vec::new(),
            min_ttl: d.min_ttl,
            max_ttl: d.max_ttl,
            retry: d.retry,
            timeout: d.timeout,
            hold: d.hold,
            hosts: std::collections::BTreeMap::new(),
        }
    }
}

/// `[cache]`: the store every worker shares.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct CacheStoreFile {
    pub memory_bytes: u64,
    pub max_object_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_path: Option<String>,
    pub disk_bytes: u64,
}

impl Default for CacheStoreFile {
    fn default() -> Self {
        let d = super::model::CacheSettings::default();
        Self {
            memory_bytes: d.memory_bytes,
            max_object_bytes: d.max_object_bytes,
            disk_path: None,
            disk_bytes: d.disk_bytes,
        }
    }
}

/// `cache` of a behavior.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct BehaviorCacheFile {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub min_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub default_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    pub query: crate::cache::QueryKey,
    pub headers: Vec<String>,
    pub cookies: crate::cache::CookieKey,
    pub methods: Spanned<Vec<String>>,
    #[serde(with = "humantime_serde")]
    pub stale_if_error: Duration,
    pub allow_authorization: bool,
    pub allow_set_cookie: bool,
    #[serde(with = "humantime_serde")]
    pub collapse_wait: Duration,
}

impl Default for BehaviorCacheFile {
    fn default() -> Self {
        let t = crate::cache::Ttls::default();
        Self {
            enabled: true,
            min_ttl: t.min,
            default_ttl: t.default,
            max_ttl: t.max,
            query: crate::cache::QueryKey::None,
            headers: Vec::new(),
            cookies: crate::cache::CookieKey::None,
            methods: Spanned::new(0..0, vec!["GET".into(), "HEAD".into()]),
            stale_if_error: Duration::ZERO,
            allow_authorization: false,
            allow_set_cookie: false,
            collapse_wait: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct ListenerFile {
    pub address: Spanned<String>,
    pub workers: usize,
    pub pin_workers: bool,
    pub io_driver: IoDriver,
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Client connections served at once, all workers together (0: derived from the
    /// file-descriptor limit).
    pub max_connections: usize,
    /// For `lb run --takeover` (relative to the config file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade_socket: Option<String>,
}

impl Default for ListenerFile {
    fn default() -> Self {
        Self {
            address: Spanned::new(0..0, "127.0.0.1:8080".into()),
            workers: 0,
            pin_workers: true,
            io_driver: IoDriver::Auto,
            drain_timeout: Duration::from_secs(10),
            max_connections: 0,
            upgrade_socket: None,
        }
    }
}

/// `[tls]`: the HTTPS listener.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsFile {
    pub address: Spanned<String>,
    /// The first is the default certificate; the others are chosen by SNI.
    pub certificates: Spanned<Vec<CertificateFile>>,
}

/// `[[tls.certificates]]`: PEM files, relative to the config file's directory.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CertificateFile {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

/// `[origin_tls]`: how HTTPS origins are verified.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct OriginTlsFile {
    /// Extra trusted CA certificates (PEM), relative to the config file's directory.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ca_files: Vec<Spanned<String>>,
    pub system_roots: bool,
}

impl Default for OriginTlsFile {
    fn default() -> Self {
        Self {
            ca_files: Vec::new(),
            system_roots: true,
        }
    }
}

impl OriginTlsFile {
    fn is_default(&self) -> bool {
        self.ca_files.is_empty() && self.system_roots
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdminFile {
    pub address: Spanned<String>,
}

/// Which monoio driver the workers use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IoDriver {
    /// io_uring when the kernel offers it, epoll otherwise (logged).
    #[default]
    Auto,
    /// io_uring or fail to start.
    IoUring,
    /// epoll (monoio's legacy driver) even where io_uring works.
    Epoll,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct LimitsFile {
    pub max_request_line: usize,
    pub max_header_bytes: usize,
    pub max_request_body: u64,
    pub max_response_head: usize,
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    pub drain_body_max: u64,
    #[serde(with = "humantime_serde")]
    pub lingering_timeout: Duration,
    pub lingering_max_bytes: u64,
}

impl Default for LimitsFile {
    fn default() -> Self {
        let head = crate::http::HeadLimits::default();
        Self {
            max_request_line: head.max_request_line,
            max_header_bytes: head.max_header_bytes,
            max_request_body: 1 << 30,
            max_response_head: 64 * 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            drain_body_max: 64 * 1024,
            lingering_timeout: Duration::from_secs(2),
            lingering_max_bytes: 1 << 20,
        }
    }
}

/// `[http]`: how lb treats requests beyond framing.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct HttpFile {
    pub underscore_headers: UnderscoreHeaders,
    pub upgrade_protocols: Vec<String>,
}

impl Default for HttpFile {
    fn default() -> Self {
        Self {
            underscore_headers: UnderscoreHeaders::Drop,
            upgrade_protocols: vec!["websocket".into()],
        }
    }
}

/// `[http2]`: HTTP/2 to viewers, and the limits that keep one connection's streams from
/// costing more than their share. The defaults are those of nginx and HAProxy where
/// they agree (100 streams, 64 KiB stream windows), with the h2 crate's defences against
/// rapid reset (CVE-2023-44487) and MadeYouReset (CVE-2025-8671) bounded further.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct Http2File {
    /// Offer `h2` by ALPN on the HTTPS listener (before `http/1.1`).
    pub enabled: bool,
    /// Accept HTTP/2 with prior knowledge (h2c) on the plain listener: a connection that
    /// opens with the HTTP/2 preface is served as HTTP/2, any other as HTTP/1.
    pub cleartext: bool,
    /// Streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_concurrent_streams: u32,
    /// Largest decoded header list of a request, CONTINUATION frames included
    /// (SETTINGS_MAX_HEADER_LIST_SIZE); a larger one gets 431 or a reset.
    pub max_header_list_size: u32,
    /// Request body bytes a client may send on one stream before lb reads them.
    pub stream_window: u32,
    /// The same for all streams of a connection together.
    pub connection_window: u32,
    /// Largest frame lb accepts (SETTINGS_MAX_FRAME_SIZE).
    pub max_frame_size: u32,
    /// Response bytes lb buffers per stream for a client that does not read.
    pub max_send_buffer: usize,
    /// Streams the client reset that lb remembers at once; beyond it the connection is
    /// closed with ENHANCE_YOUR_CALM (rapid reset).
    pub max_concurrent_reset_streams: usize,
    /// Streams reset by the client before lb accepted them; beyond it, GOAWAY
    /// ENHANCE_YOUR_CALM (rapid reset).
    pub max_pending_accept_reset_streams: usize,
    /// Streams lb itself had to reset for the client's errors; beyond it, GOAWAY
    /// ENHANCE_YOUR_CALM (MadeYouReset).
    pub max_local_error_reset_streams: usize,
}

impl Default for Http2File {
    fn default() -> Self {
        Self {
            enabled: true,
            cleartext: true,
            max_concurrent_streams: 100,
            max_header_list_size: 64 * 1024,
            stream_window: 64 * 1024,
            connection_window: 1024 * 1024,
            max_frame_size: 16 * 1024,
            max_send_buffer: 64 * 1024,
            max_concurrent_reset_streams: 50,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 200,
        }
    }
}

/// What lb does with request header names that hold `_`. Gateways in the CGI/WSGI
/// tradition read `_` as `-`, so `Transfer_Encoding` would become a framing header
/// behind lb: dropped by default, as nginx does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnderscoreHeaders {
    /// Removed before forwarding.
    #[default]
    Drop,
    /// The request gets 400.
    Reject,
    /// Forwarded like any other field.
    Forward,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct FailoverFile {
    pub replay_body_limit: usize,
}

impl Default for FailoverFile {
    fn default() -> Self {
        Self {
            replay_body_limit: 64 * 1024,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct ObservabilityFile {
    pub access_log: bool,
    pub attempts_header: bool,
    pub access_log_format: super::model::AccessLogFormat,
    /// A file instead of stderr (relative to the config file's directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_log_file: Option<String>,
    pub access_log_buffer: u64,
}

impl Default for ObservabilityFile {
    fn default() -> Self {
        Self {
            access_log: true,
            attempts_header: false,
            access_log_format: Default::default(),
            access_log_file: None,
            access_log_buffer: 4 << 20,
        }
    }
}

/// `[health]`: how passive signals, the kernel and recovery behave, for every origin.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct HealthFile {
    /// Consecutive failed attempts (any worker) that eject an origin.
    pub passive_failures: u32,
    /// First ejection; each repeated ejection doubles it, up to `max_ejection_time`.
    #[serde(with = "humantime_serde")]
    pub ejection_time: Duration,
    #[serde(with = "humantime_serde")]
    pub max_ejection_time: Duration,
    /// How long a recovering origin takes to get its full share of traffic.
    #[serde(with = "humantime_serde")]
    pub slow_start: Duration,
    /// TCP connect probes of origins without HTTP checks while not healthy.
    #[serde(with = "humantime_serde")]
    pub tcp_probe_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub tcp_probe_timeout: Duration,
    /// Use the kernel's evidence for verdicts (it is still collected when false).
    pub use_kernel_signals: bool,
    /// Health kept across restarts (relative to the config file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_file: Option<String>,
}

impl Default for HealthFile {
    fn default() -> Self {
        let d = super::model::HealthSettings::default();
        Self {
            passive_failures: d.passive_failures,
            ejection_time: d.ejection_time,
            max_ejection_time: d.max_ejection_time,
            slow_start: d.slow_start,
            tcp_probe_interval: d.tcp_probe_interval,
            tcp_probe_timeout: d.tcp_probe_timeout,
            use_kernel_signals: d.use_kernel_signals,
            state_file: None,
        }
    }
}

/// `[origins.health_check]`: active HTTP checks from the control plane.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HealthCheckFile {
    #[serde(default = "default_check_path")]
    pub path: String,
    #[serde(default = "default_check_status")]
    pub expected_status: u16,
    #[serde(with = "humantime_serde", default = "default_check_interval")]
    pub interval: Duration,
    /// Interval while the origin is suspect, down or recovering.
    #[serde(with = "humantime_serde", default = "default_check_fast_interval")]
    pub fast_interval: Duration,
    #[serde(with = "humantime_serde", default = "default_check_timeout")]
    pub timeout: Duration,
    #[serde(default = "default_threshold")]
    pub healthy_threshold: u32,
    #[serde(default = "default_threshold")]
    pub unhealthy_threshold: u32,
    /// Random spread of each interval, as a fraction (0.1: ±10%).
    #[serde(default = "default_jitter")]
    pub jitter: f64,
}

fn default_check_path() -> String {
    "/health".into()
}
fn default_check_status() -> u16 {
    200
}
fn default_check_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_check_fast_interval() -> Duration {
    Duration::from_millis(250)
}
fn default_check_timeout() -> Duration {
    Duration::from_millis(500)
}
fn default_threshold() -> u32 {
    2
}
fn default_jitter() -> f64 {
    0.1
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OriginFile {
    pub id: Spanned<String>,
    /// `IP:port`, or `name:port` resolved at start and re-resolved on its TTL.
    pub address: Spanned<String>,
    /// The Host sent instead of the client's (an S3 bucket's domain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_header: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub origin_path: String,
    #[serde(default = "default_protocol")]
    pub protocol: OriginProtocol,
    /// `h1`, `h2` (over TLS, by ALPN) or `h2c` (cleartext, prior knowledge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<Spanned<super::model::OriginHttpVersion>>,
    /// The HTTPS port for match-viewer origins (default 443); https-only origins use the
    /// address's port unless this is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_port: Option<Spanned<u16>>,
    /// SNI name and the name the origin's certificate must be valid for (default: the
    /// address's host name, else its IP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_headers: BTreeMap<String, String>,
    /// CloudFront's defaults: 10 s, 3 attempts, 30 s read timeout, 5 s keep-alive.
    #[serde(with = "humantime_serde", default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    #[serde(default = "default_attempts")]
    pub connection_attempts: Spanned<u8>,
    #[serde(with = "humantime_serde", default = "default_response_timeout")]
    pub response_timeout: Duration,
    #[serde(with = "humantime_serde", default = "default_keepalive")]
    pub keepalive_timeout: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckFile>,
}

fn default_protocol() -> OriginProtocol {
    OriginProtocol::HttpOnly
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_attempts() -> Spanned<u8> {
    Spanned::new(0..0, 3)
}
fn default_response_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_keepalive() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GroupFile {
    pub id: Spanned<String>,
    /// Origin ids in priority order.
    pub members: Spanned<Vec<Spanned<String>>>,
    pub failover_status_codes: Spanned<Vec<Spanned<u16>>>,
    /// gRPC statuses (in a trailers-only answer) that move a gRPC call on to the next
    /// member, whatever its method (default: 14, UNAVAILABLE: the call was not run).
    #[serde(default = "default_grpc_statuses")]
    pub failover_grpc_status_codes: Vec<u32>,
    #[serde(default = "default_mode")]
    pub mode: GroupMode,
    #[serde(default)]
    pub always_try_primary: bool,
    /// Per-member weights for the active-active modes (default 1 each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Spanned<Vec<u32>>>,
    /// When every member is down: true tries them all anyway, false answers 503 (or the
    /// custom error response for 503).
    #[serde(default = "default_fail_open")]
    pub fail_open: bool,
}

fn default_grpc_statuses() -> Vec<u32> {
    vec![14]
}

fn default_fail_open() -> bool {
    true
}

fn default_mode() -> GroupMode {
    GroupMode::Failover
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BehaviorFile {
    /// Required for `[[behaviors]]`, absent for `[default_behavior]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_pattern: Option<Spanned<String>>,
    /// An origin id or an origin group id.
    pub target: Spanned<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_methods: Option<Spanned<Vec<String>>>,
    #[serde(default = "default_viewer_policy")]
    pub viewer_protocol_policy: ViewerProtocolPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<Spanned<BehaviorCacheFile>>,
    /// Lambda@Edge-style functions: `[{ trigger = "origin-response", file = "f.js" }]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<Spanned<FunctionFile>>,
    /// Request rules of this behavior (`[[behaviors.rules]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Spanned<super::rules_file::RuleFile>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FunctionFile {
    pub trigger: crate::functions::Trigger,
    /// JavaScript, relative to the config file.
    pub file: String,
    /// For the access log and metrics (default: the file's stem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `lambda-edge` (default) or `cloudfront-function` (viewer-request only).
    #[serde(default)]
    pub kind: crate::functions::FunctionKind,
}

/// `[functions]`: limits per invocation.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FunctionsFile {
    #[serde(with = "humantime_serde", default = "default_function_time")]
    pub time_limit: std::time::Duration,
    #[serde(default = "default_function_memory")]
    pub memory_limit: u64,
}

fn default_function_time() -> std::time::Duration {
    crate::functions::FunctionLimits::default().time
}

fn default_function_memory() -> u64 {
    crate::functions::FunctionLimits::default().memory as u64
}

fn default_viewer_policy() -> ViewerProtocolPolicy {
    ViewerProtocolPolicy::AllowAll
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ErrorResponseFile {
    pub error_code: Spanned<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_code: Option<Spanned<u16>>,
    /// A path fetched through lb's behaviors, like CloudFront's ResponsePagePath.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_page_path: Option<Spanned<String>>,
    /// A local file, read at start-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_page_file: Option<Spanned<String>>,
}
