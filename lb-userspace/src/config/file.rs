//! The TOML file as users write it. Every table denies unknown fields, so a typo is an
//! error with its line and column rather than a silently ignored setting.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::kernel::KernelSettings;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfigFile {
    #[serde(default)]
    pub listener: ListenerFile,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub origins: Vec<OriginFile>,
    pub default_behavior: Option<BehaviorFile>,
    #[serde(default)]
    pub kernel: KernelSettings,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct ListenerFile {
    pub address: Spanned<String>,
    pub workers: usize,
    pub pin_workers: bool,
    pub io_driver: IoDriver,
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for ListenerFile {
    fn default() -> Self {
        Self {
            address: Spanned::new(0..0, "127.0.0.1:8080".into()),
            workers: 0,
            pin_workers: true,
            io_driver: IoDriver::Auto,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Which monoio driver the workers use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
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

#[derive(Debug, Deserialize)]
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
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OriginFile {
    pub id: Spanned<String>,
    pub address: Spanned<String>,
    /// CloudFront's defaults: 10 s, 3 attempts, 30 s read timeout, 5 s keep-alive.
    #[serde(with = "humantime_serde", default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    #[serde(default = "default_attempts")]
    pub connection_attempts: Spanned<u8>,
    #[serde(with = "humantime_serde", default = "default_response_timeout")]
    pub response_timeout: Duration,
    #[serde(with = "humantime_serde", default = "default_keepalive")]
    pub keepalive_timeout: Duration,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BehaviorFile {
    pub target: Spanned<String>,
}
