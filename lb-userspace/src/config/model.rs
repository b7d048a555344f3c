//! The built configuration: validated, resolved to indexes, ready for the data plane.
//! Both the native TOML and CloudFront's DistributionConfig JSON become one of these.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use super::PathPattern;
use crate::{http::HeadLimits, kernel::KernelSettings};

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub listener: Listener,
    /// The HTTPS listener, if any.
    pub tls: Option<TlsListener>,
    /// How lb verifies HTTPS origins.
    pub origin_tls: OriginTls,
    pub admin: Admin,
    pub limits: Limits,
    pub http: HttpSettings,
    pub http2: Http2Settings,
    pub origins: Vec<Origin>,
    pub groups: Vec<OriginGroup>,
    /// Path behaviors, matched in order; the first match wins.
    pub behaviors: Vec<Behavior>,
    /// Used when no behavior matches.
    pub default_behavior: Behavior,
    pub custom_errors: Vec<CustomErrorResponse>,
    pub failover: FailoverSettings,
    pub observability: Observability,
    pub health: HealthSettings,
    pub kernel: KernelSettings,
    /// The process-wide cache store (used by behaviors with `cache`).
    pub cache: CacheSettings,
    /// Request rules, run before behavior matching.
    pub rules: crate::rules::RuleSet,
    /// The MaxMind databases country and asn conditions read.
    pub geo: crate::rules::geo::Geo,
    /// Which address rules see as the client's.
    pub client_address: crate::rules::geo::ClientAddress,
    /// What one function invocation may use.
    pub function_limits: crate::functions::FunctionLimits,
    /// Rules on the final origin answer.
    pub response_rules: crate::rules::response::ResponseRuleSet,
    /// How origins configured by name are resolved.
    pub dns: DnsSettings,
}

/// `[dns]`: how names of origins are resolved and re-resolved (by the control plane;
/// the data plane only reads the addresses it publishes).
#[derive(Clone, Debug, PartialEq)]
pub struct DnsSettings {
    /// Name servers to ask; empty: the system's (`/etc/resolv.conf`).
    pub servers: Vec<SocketAddr>,
    /// A record's TTL is raised to this floor before it schedules the next lookup (a
    /// TTL of 0 must not turn into a query per millisecond).
    pub min_ttl: Duration,
    /// And lowered to this ceiling (a moved origin is followed within it).
    pub max_ttl: Duration,
    /// How soon a name that did not resolve is asked again.
    pub retry: Duration,
    /// How long one lookup may take.
    pub timeout: Duration,
    /// How long a name that stops resolving keeps its last addresses before its origin
    /// is down (a DNS outage should not take healthy origins with it).
    pub hold: Duration,
    /// Fixed addresses for names (`[dns.hosts]` and `--resolve NAME=ADDR`), used instead
    /// of DNS, like curl's `--resolve`.
    pub hosts: std::collections::BTreeMap<String, Vec<std::net::IpAddr>>,
}

impl Default for DnsSettings {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(300),
            retry: Duration::from_secs(2),
            timeout: Duration::from_secs(2),
            hold: Duration::from_secs(30),
            hosts: std::collections::BTreeMap::new(),
        }
    }
}

/// `[cache]`: the store every worker shares. Its size is fixed at start (a reload does
/// not resize it, nor empty it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheSettings {
    /// The memory tier's byte budget.
    pub memory_bytes: u64,
    /// Larger responses stream to the client without being stored.
    pub max_object_bytes: u64,
    /// Where the disk tier keeps its files (None: no disk tier). It survives restarts.
    pub disk_path: Option<std::path::PathBuf>,
    /// The disk tier's byte budget.
    pub disk_bytes: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            max_object_bytes: 16 << 20,
            disk_path: None,
            disk_bytes: 1 << 30,
        }
    }
}

/// How one behavior caches (CloudFront: its TTLs, `ForwardedValues`, `CachedMethods`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BehaviorCache {
    pub ttls: crate::cache::Ttls,
    pub key: crate::cache::KeyPolicy,
    /// OPTIONS responses are cached too (GET and HEAD always are).
    pub options: bool,
    /// A stale copy may answer for this long past its freshness when every member fails,
    /// even without `stale-if-error` (CloudFront serves stale on origin errors).
    pub stale_if_error: Duration,
    /// Store responses to requests with `Authorization` (they are then shared).
    pub allow_authorization: bool,
    /// Store responses that set cookies (the cookie is then served to everyone).
    pub allow_set_cookie: bool,
    /// How long concurrent misses of one key wait for the one request that went to the
    /// origins (collapsed forwarding) before asking themselves.
    pub collapse_wait: Duration,
}

/// How the health engine turns signals into verdicts.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthSettings {
    pub passive_failures: u32,
    pub ejection_time: Duration,
    pub max_ejection_time: Duration,
    pub slow_start: Duration,
    /// How often an origin without HTTP checks gets a TCP connect probe while it is
    /// suspect, down or recovering.
    pub tcp_probe_interval: Duration,
    /// How long such a probe may take (at most the origin's connect timeout).
    pub tcp_probe_timeout: Duration,
    pub use_kernel_signals: bool,
    /// Where health is kept across a restart (None: it is not): written every second and
    /// at exit, read at start for the origins whose settings did not change.
    pub state_file: Option<std::path::PathBuf>,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            passive_failures: 3,
            ejection_time: Duration::from_secs(2),
            max_ejection_time: Duration::from_secs(30),
            slow_start: Duration::from_secs(3),
            tcp_probe_interval: Duration::from_millis(250),
            tcp_probe_timeout: Duration::from_secs(1),
            use_kernel_signals: true,
            state_file: None,
        }
    }
}

/// Active HTTP checks of one origin.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthCheck {
    pub path: String,
    pub expected_status: u16,
    pub interval: Duration,
    pub fast_interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub jitter: f64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub address: SocketAddr,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    pub pin_workers: bool,
    pub io_driver: super::IoDriver,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub drain_timeout: Duration,
    /// Client connections served at once, all workers together (resolved: never 0).
    pub max_connections: usize,
    /// The Unix socket a new lb process connects to (`lb run --takeover`) to take over
    /// the listening sockets and health; None: no upgrades.
    pub upgrade_socket: Option<std::path::PathBuf>,
}

impl Listener {
    /// Each worker's share of `max_connections` (at least one).
    pub fn max_connections_per_worker(&self) -> usize {
        let workers = if self.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.workers
        };
        self.max_connections.div_ceil(workers).max(1)
    }

    /// The default cap: half the file descriptors left after a reserve (each client
    /// connection may need an upstream one), so client connections cannot starve
    /// upstream connects.
    pub fn default_max_connections(fd_limit: u64) -> usize {
        const RESERVED_FDS: u64 = 64;
        (fd_limit.saturating_sub(RESERVED_FDS) / 2).clamp(16, 1 << 20) as usize
    }
}

/// Most members an origin group may have: selection works on fixed-size arrays on the
/// request path (no allocation), and `lb check` refuses larger groups.
pub const MAX_GROUP_MEMBERS: usize = 16;

/// How lb treats requests beyond framing (`[http]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpSettings {
    pub underscore_headers: super::UnderscoreHeaders,
    /// `Upgrade` protocols lb tunnels (lower case); others are stripped from the request.
    pub upgrade_protocols: Vec<String>,
}

/// HTTP/2 to viewers (`[http2]`; each field is explained in the file format).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Http2Settings {
    pub enabled: bool,
    pub cleartext: bool,
    pub max_concurrent_streams: u32,
    pub max_header_list_size: u32,
    pub stream_window: u32,
    pub connection_window: u32,
    pub max_frame_size: u32,
    pub max_send_buffer: usize,
    pub max_concurrent_reset_streams: usize,
    pub max_pending_accept_reset_streams: usize,
    pub max_local_error_reset_streams: usize,
}

/// An HTTPS listener: its own address, served by the same workers as the plain one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsListener {
    pub address: SocketAddr,
    /// The first is the default (no SNI, or no certificate matches the name); the others
    /// are chosen when the client's SNI name is one they are valid for.
    pub certificates: Vec<CertificateFiles>,
}

/// A PEM certificate chain (leaf first) and its PEM private key. Read at start and at
/// every reload, so renewed certificates take effect without a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The trust store for HTTPS origins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginTls {
    /// PEM files of extra CA certificates (a private CA, or self-signed origins).
    pub ca_files: Vec<PathBuf>,
    /// Trust the system's CA certificates too (`/etc/ssl/certs`).
    pub system_roots: bool,
}

impl Default for OriginTls {
    fn default() -> Self {
        Self {
            ca_files: Vec::new(),
            system_roots: true,
        }
    }
}

/// The admin API (control plane). Loopback by default: it is not meant to be public.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admin {
    /// `None`: no admin API.
    pub address: Option<SocketAddr>,
}

/// Limits that protect lb from clients and origins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub head: HeadLimits,
    /// Largest request body, in bytes (413 above it).
    pub max_request_body: u64,
    /// Largest response head an origin may send (502 above it).
    pub max_response_head: usize,
    /// Time a client has to send a complete request head (408 after it).
    pub header_timeout: Duration,
    /// How long an idle keep-alive client connection is kept.
    pub idle_timeout: Duration,
    /// Longest pause between two reads of a body, either side.
    pub body_timeout: Duration,
    /// An unread request body up to this size is read and discarded after lb's answer so
    /// the connection can be kept; larger ones close it.
    pub drain_body_max: u64,
    /// How long lb reads and discards a client's input after an answer that closes the
    /// connection (lingering close), and the bound on draining an unread body.
    pub lingering_timeout: Duration,
    /// Most bytes a lingering close discards before closing anyway.
    pub lingering_max_bytes: u64,
}

/// The HTTP version lb speaks to an origin (`protocol_version`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OriginHttpVersion {
    #[default]
    H1,
    /// HTTP/2 over TLS, chosen by ALPN (`protocol = "https-only"`).
    H2,
    /// HTTP/2 over cleartext TCP with prior knowledge (`protocol = "http-only"`).
    H2c,
}

impl OriginHttpVersion {
    pub fn is_h2(self) -> bool {
        self != Self::H1
    }
}

/// How lb talks to an origin (CloudFront's OriginProtocolPolicy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OriginProtocol {
    HttpOnly,
    HttpsOnly,
    /// HTTPS when the viewer came over HTTPS, plain HTTP otherwise.
    MatchViewer,
}

/// An upstream endpoint lb sends requests to.
#[derive(Clone, Debug, PartialEq)]
pub struct Origin {
    pub id: String,
    /// The configured IP literal and port; for an origin configured by name, the
    /// unspecified address and the port (its addresses come from the resolver, see
    /// `crate::resolver`).
    pub address: SocketAddr,
    /// The name the origin is configured by, resolved by the control plane (never while
    /// the config is checked); `None` for IP literals.
    pub host: Option<String>,
    /// The Host every request to this origin carries instead of the client's (an S3
    /// bucket's domain); `None`: the client's Host goes through.
    pub host_header: Option<String>,
    /// Prefix added to every request path sent to this origin (CloudFront OriginPath).
    pub origin_path: String,
    /// Fixed headers lb adds to every request to this origin, replacing any the client sent.
    pub custom_headers: Vec<(String, String)>,
    pub protocol: OriginProtocol,
    /// HTTP/1.1 or HTTP/2 (over TLS, or cleartext with prior knowledge).
    pub http_version: OriginHttpVersion,
    /// The port for HTTPS connections; plain HTTP uses `address`'s port.
    pub https_port: u16,
    /// The name sent as SNI and checked against the origin's certificate: the configured
    /// one, else the host name the address came from, else the IP.
    pub tls_server_name: String,
    pub connect_timeout: Duration,
    /// Connection attempts per request (1-3, as CloudFront).
    pub connection_attempts: u8,
    /// Time from the end of the request to the response head.
    pub response_timeout: Duration,
    /// How long an idle pooled connection to this origin is kept.
    pub keepalive_timeout: Duration,
    /// Active checks; `None`: passive and kernel signals only.
    pub health_check: Option<HealthCheck>,
}

impl Origin {
    /// An origin with CloudFront's default timeouts.
    pub fn new(id: &str, address: SocketAddr) -> Self {
        Self {
            id: id.to_owned(),
            address,
            host: None,
            host_header: None,
            origin_path: String::new(),
            custom_headers: Vec::new(),
            protocol: OriginProtocol::HttpOnly,
            http_version: OriginHttpVersion::H1,
            https_port: 443,
            tls_server_name: address.ip().to_string(),
            connect_timeout: Duration::from_secs(10),
            connection_attempts: 3,
            response_timeout: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(5),
            health_check: None,
        }
    }
}

impl Origin {
    /// Whether a request that came in over TLS (`viewer_tls`) goes to this origin over TLS.
    pub fn uses_tls(&self, viewer_tls: bool) -> bool {
        match self.protocol {
            OriginProtocol::HttpOnly => false,
            OriginProtocol::HttpsOnly => true,
            OriginProtocol::MatchViewer => viewer_tls,
        }
    }

    /// The port to connect to, by scheme.
    pub fn port(&self, tls: bool) -> u16 {
        if tls {
            self.https_port
        } else {
            self.address.port()
        }
    }

    /// Every address lb may connect to for this origin at `ip` (both ports for
    /// match-viewer).
    pub fn endpoints_at(&self, ip: std::net::IpAddr) -> Vec<SocketAddr> {
        let http = SocketAddr::new(ip, self.address.port());
        let https = SocketAddr::new(ip, self.https_port);
        match self.protocol {
            OriginProtocol::HttpOnly => vec![http],
            OriginProtocol::HttpsOnly => vec![https],
            OriginProtocol::MatchViewer if self.https_port == self.address.port() => vec![http],
            OriginProtocol::MatchViewer => vec![http, https],
        }
    }

    /// The Host of requests lb makes on its own (health checks, error-page fetches):
    /// `host_header`, else the origin's name, else its `IP:port`.
    pub fn own_request_host(&self) -> String {
        self.host_header
            .clone()
            .or_else(|| self.host.clone())
            .unwrap_or_else(|| self.address.to_string())
    }

    /// The configured IP literal; `None` for an origin configured by name, whose
    /// addresses come from the resolver.
    pub fn literal_ip(&self) -> Option<std::net::IpAddr> {
        self.host.is_none().then(|| self.address.ip())
    }
}

/// How a group spreads requests over its members.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupMode {
    /// Active-passive: every request starts at the first usable member (CloudFront).
    Failover,
    /// Active-active, smooth weighted round robin.
    RoundRobin,
    /// Active-active, least outstanding requests (power of two random choices).
    LeastOutstanding,
    /// Active-active, peak-EWMA latency × outstanding requests (power of two choices).
    PeakEwma,
}

/// Members in priority order and what makes an attempt count as failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginGroup {
    pub id: String,
    /// Indexes into `Config::origins`, in priority order.
    pub members: Vec<usize>,
    pub failover_statuses: StatusSet,
    /// gRPC statuses of a trailers-only answer that move a gRPC call on.
    pub failover_grpc_statuses: Vec<u32>,
    pub mode: GroupMode,
    /// CloudFront-exact: always start at the first member, even if health says it is down.
    pub always_try_primary: bool,
    /// Weight of each member, same order as `members` (active-active modes).
    pub weights: Vec<u32>,
    /// When every member is down: try them all (true) or answer 503 (false).
    pub fail_open: bool,
}

/// A set of HTTP status codes (100-599) as a bitmap: membership is one load.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusSet([u64; 10]);

impl StatusSet {
    pub fn from_codes(codes: impl IntoIterator<Item = u16>) -> Self {
        let mut set = Self::default();
        for c in codes {
            if c < 640 {
                set.0[c as usize / 64] |= 1 << (c % 64);
            }
        }
        set
    }

    pub fn contains(&self, code: u16) -> bool {
        code < 640 && self.0[code as usize / 64] & (1 << (code % 64)) != 0
    }

    pub fn codes(&self) -> Vec<u16> {
        (100..600).filter(|c| self.contains(*c)).collect()
    }
}

impl std::fmt::Debug for StatusSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.codes()).finish()
    }
}

/// Where a behavior sends requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Origin(usize),
    Group(usize),
}

/// Methods a behavior accepts (CloudFront's AllowedMethods), as a bitmap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MethodSet(u16);

impl MethodSet {
    pub const ALL: Self = Self(0xff);

    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut bits = 0u16;
        for n in names {
            bits |= 1 << Self::bit(n).ok_or_else(|| format!("unknown method `{n}`"))?;
        }
        Ok(Self(bits))
    }

    fn bit(name: &str) -> Option<u16> {
        Some(match name {
            "GET" => 0,
            "HEAD" => 1,
            "OPTIONS" => 2,
            "PUT" => 3,
            "POST" => 4,
            "PATCH" => 5,
            "DELETE" => 6,
            "TRACE" => 7,
            _ => return None,
        })
    }

    pub fn allows(&self, method: &str) -> bool {
        Self::bit(method).is_some_and(|b| self.0 & (1 << b) != 0)
    }

    pub fn names(&self) -> Vec<&'static str> {
        [
            "GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE", "TRACE",
        ]
        .into_iter()
        .filter(|n| self.allows(n))
        .collect()
    }
}

/// CloudFront's ViewerProtocolPolicy: what a behavior does with a plain-HTTP request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ViewerProtocolPolicy {
    AllowAll,
    RedirectToHttps,
    HttpsOnly,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Behavior {
    /// `None` for the default behavior.
    pub path_pattern: Option<PathPattern>,
    pub target: Target,
    pub allowed_methods: MethodSet,
    pub viewer_protocol_policy: ViewerProtocolPolicy,
    /// `None`: responses of this behavior are never stored.
    pub cache: Option<BehaviorCache>,
    /// Lambda@Edge-style functions, at most one per trigger.
    pub functions: Vec<crate::functions::FunctionSpec>,
    /// Request rules of this behavior: run after the global ones when none of those
    /// matched.
    pub rules: crate::rules::RuleSet,
}

impl Behavior {
    /// The function this behavior runs at `trigger`.
    pub fn function(
        &self,
        trigger: crate::functions::Trigger,
    ) -> Option<&crate::functions::FunctionSpec> {
        self.functions.iter().find(|f| f.trigger == trigger)
    }
}

/// What to serve when the final answer is an error (CloudFront CustomErrorResponses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomErrorResponse {
    /// The origin status (or lb's own 502/503/504) this applies to.
    pub error_code: u16,
    /// Status sent to the client; `None` keeps `error_code`.
    pub response_code: Option<u16>,
    pub page: ErrorPage,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorPage {
    /// A local file, read at start-up.
    File { path: PathBuf, body: Vec<u8> },
    /// A path fetched through lb's own behaviors (CloudFront ResponsePagePath).
    Path(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverSettings {
    /// Request bodies up to this size are buffered so that GET/HEAD/OPTIONS can be replayed
    /// to the next member. Larger bodies stream, and then only connect failures move on.
    pub replay_body_limit: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observability {
    /// Write one access-log line per request.
    pub access_log: bool,
    /// Add `x-lb-attempts: origin:outcome:ms,...` to responses.
    pub attempts_header: bool,
    /// How each line looks.
    pub access_log_format: AccessLogFormat,
    /// Where the lines go (None: stderr). Reopened on SIGUSR1, for logrotate.
    pub access_log_file: Option<std::path::PathBuf>,
    /// Lines waiting for the writer thread, in bytes: beyond it, lines are dropped
    /// (and counted) rather than a worker waiting for a slow disk or a full pipe.
    pub access_log_buffer: usize,
}

/// The access log's line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// `TIME access CLIENT METHOD PATH STATUS MSms ATTEMPTS PROTOCOL`, every attempt as
    /// `origin:outcome:ms`.
    #[default]
    Lb,
    /// Apache/nginx combined (`%h - - [%t] "%r" %>s %b "%{Referer}i" "%{User-agent}i"`),
    /// with `%b` as `-` (lb does not count body bytes per request yet).
    Combined,
    /// One JSON object per line, with every attempt.
    Json,
}

impl Config {
    /// The behavior for `path`: the first matching pattern, else the default.
    /// The behavior for `path` and its scope (for rule references).
    pub fn behavior_and_scope(&self, path: &str) -> (&Behavior, crate::rules::RuleScope) {
        match self
            .behaviors
            .iter()
            .position(|b| b.path_pattern.as_ref().is_some_and(|p| p.matches(path)))
        {
            Some(i) => (
                &self.behaviors[i],
                crate::rules::RuleScope::Behavior(u16::try_from(i).unwrap_or(u16::MAX)),
            ),
            None => (
                &self.default_behavior,
                crate::rules::RuleScope::DefaultBehavior,
            ),
        }
    }

    /// The rule a reference names.
    pub fn rule(&self, r: crate::rules::RuleRef) -> Option<&crate::rules::Rule> {
        let set = match r.scope {
            crate::rules::RuleScope::Global => &self.rules,
            crate::rules::RuleScope::Behavior(i) => &self.behaviors.get(usize::from(i))?.rules,
            crate::rules::RuleScope::DefaultBehavior => &self.default_behavior.rules,
        };
        set.rules.get(usize::from(r.index))
    }

    pub fn behavior_for(&self, path: &str) -> &Behavior {
        self.behaviors
            .iter()
            .find(|b| b.path_pattern.as_ref().is_some_and(|p| p.matches(path)))
            .unwrap_or(&self.default_behavior)
    }

    /// Members to try for `target`, in order, and the group if there is one.
    pub fn members(&self, target: Target) -> (&[usize], Option<&OriginGroup>) {
        match target {
            Target::Origin(i) => (std::slice::from_ref(&ORIGIN_INDEXES[i]), None),
            Target::Group(g) => (&self.groups[g].members, Some(&self.groups[g])),
        }
    }

    /// Dense kernel slots for the origins, in config order. An origin reached on two
    /// ports (match-viewer) registers both, sharing its slot.
    /// Origins configured by name are not in it until they resolve (see
    /// [`Self::kernel_registrations_at`]).
    pub fn kernel_registrations(&self) -> Vec<crate::kernel::OriginRegistration> {
        self.kernel_registrations_at(|i| self.origins[i].literal_ip().into_iter().collect())
    }

    /// [`Self::kernel_registrations`] with origin `i` at every address in `ips_of(i)`
    /// (its name's addresses now), all sharing its slot.
    pub fn kernel_registrations_at(
        &self,
        ips_of: impl Fn(usize) -> Vec<std::net::IpAddr>,
    ) -> Vec<crate::kernel::OriginRegistration> {
        let mut registrations = Vec::with_capacity(self.origins.len());
        for (slot, o) in self.origins.iter().enumerate() {
            for ip in ips_of(slot) {
                registrations.extend(o.endpoints_at(ip).into_iter().map(|address| {
                    crate::kernel::OriginRegistration {
                        slot: slot as u32,
                        label: o.id.clone(),
                        address,
                    }
                }));
            }
        }
        registrations
    }

    /// Worker threads to start: the configured count, or one per core.
    pub fn worker_count(&self) -> usize {
        if self.listener.workers > 0 {
            self.listener.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// `members()` hands out a one-element slice for single-origin targets without allocating.
static ORIGIN_INDEXES: [usize; 1024] = {
    let mut a = [0usize; 1024];
    let mut i = 0;
    while i < 1024 {
        a[i] = i;
        i += 1;
    }
    a
};
