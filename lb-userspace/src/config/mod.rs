//! What users write, checked and turned into what lb runs.
//!
//! Today: the listener, limits, origins with their timeouts, the default behavior's target
//! and `[kernel]`. Origin groups, path behaviors and CloudFront JSON come with the
//! origin-groups work.

mod error;
mod file;

use std::{collections::HashMap, net::SocketAddr, path::Path, time::Duration};

pub use error::ConfigError;
pub use file::IoDriver;

use crate::{
    http::HeadLimits,
    kernel::{KernelSettings, OriginRegistration},
};

/// A validated configuration, ready to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub listener: Listener,
    pub limits: Limits,
    pub origins: Vec<Origin>,
    /// Index into `origins` that requests go to.
    pub default_target: usize,
    pub kernel: KernelSettings,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub address: SocketAddr,
    /// Worker threads; 0 in the file means one per core.
    pub workers: usize,
    pub pin_workers: bool,
    pub io_driver: IoDriver,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub drain_timeout: Duration,
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
}

/// An upstream endpoint lb sends requests to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub id: String,
    pub address: SocketAddr,
    pub connect_timeout: Duration,
    /// Connection attempts per request (1-3, as CloudFront).
    pub connection_attempts: u8,
    /// Time from the end of the request to the response head.
    pub response_timeout: Duration,
    /// How long an idle pooled connection to this origin is kept.
    pub keepalive_timeout: Duration,
}

impl Origin {
    /// An origin with CloudFront's default timeouts.
    pub fn new(id: &str, address: SocketAddr) -> Self {
        Self {
            id: id.to_owned(),
            address,
            connect_timeout: Duration::from_secs(10),
            connection_attempts: 3,
            response_timeout: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(5),
        }
    }
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            file: path.to_owned(),
            message: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    /// Validates `text`, naming `file` in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let at = |span: std::ops::Range<usize>, field: String, message: String| {
            ConfigError::at(file, text, span, field, message)
        };
        let raw: file::ConfigFile = toml::from_str(text).map_err(|e| {
            at(
                e.span().unwrap_or(0..0),
                String::new(),
                e.message().to_owned(),
            )
        })?;
        let address = raw.listener.address.get_ref().parse().map_err(|_| {
            at(
                raw.listener.address.span(),
                "listener.address".into(),
                format!(
                    "`{}` is not an IP:port address",
                    raw.listener.address.get_ref()
                ),
            )
        })?;
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut origins = Vec::with_capacity(raw.origins.len());
        for (i, spec) in raw.origins.iter().enumerate() {
            let id = spec.id.get_ref().trim();
            if id.is_empty() {
                return Err(at(
                    spec.id.span(),
                    format!("origins[{i}].id"),
                    "must not be empty".into(),
                ));
            }
            if ids.insert(id.to_owned(), i).is_some() {
                return Err(at(
                    spec.id.span(),
                    format!("origins[{i}].id"),
                    format!("duplicate origin id `{id}`"),
                ));
            }
            let address: SocketAddr = spec.address.get_ref().parse().map_err(|_| {
                at(
                    spec.address.span(),
                    format!("origins[{i}].address"),
                    format!(
                        "`{}` is not an IP:port address (for example 127.0.0.1:8080 or [::1]:8080)",
                        spec.address.get_ref()
                    ),
                )
            })?;
            let attempts = *spec.connection_attempts.get_ref();
            if !(1..=3).contains(&attempts) {
                return Err(at(
                    spec.connection_attempts.span(),
                    format!("origins[{i}].connection_attempts"),
                    format!("must be 1, 2 or 3 (got {attempts})"),
                ));
            }
            origins.push(Origin {
                id: id.to_owned(),
                address,
                connect_timeout: spec.connect_timeout,
                connection_attempts: attempts,
                response_timeout: spec.response_timeout,
                keepalive_timeout: spec.keepalive_timeout,
            });
        }
        let default_target = match &raw.default_behavior {
            Some(b) => *ids.get(b.target.get_ref().as_str()).ok_or_else(|| {
                at(
                    b.target.span(),
                    "default_behavior.target".into(),
                    format!("unknown origin id `{}`", b.target.get_ref()),
                )
            })?,
            None => 0,
        };
        let l = &raw.limits;
        Ok(Self {
            listener: Listener {
                address,
                workers: raw.listener.workers,
                pin_workers: raw.listener.pin_workers,
                io_driver: raw.listener.io_driver,
                drain_timeout: raw.listener.drain_timeout,
            },
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
            },
            origins,
            default_target,
            kernel: raw.kernel,
        })
    }

    /// Dense kernel slots for the origins, in config order.
    pub fn kernel_registrations(&self) -> Vec<OriginRegistration> {
        self.origins
            .iter()
            .enumerate()
            .map(|(slot, o)| OriginRegistration {
                slot: slot as u32,
                label: o.id.clone(),
                address: o.address,
            })
            .collect()
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

/// Used where the caller built the config in code (the demo); reads like a file name in errors.
pub fn embedded(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("<embedded {name}>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("lb.toml"))
    }

    #[test]
    fn parses_a_full_file() {
        let c = parse(
            r#"
            [listener]
            address = "127.0.0.1:9000"
            workers = 2
            io_driver = "epoll"
            drain_timeout = "3s"

            [limits]
            max_request_body = 1024
            header_timeout = "500ms"

            [[origins]]
            id = "primary"
            address = "127.0.0.1:8081"
            connect_timeout = "2s"
            connection_attempts = 2

            [[origins]]
            id = "secondary"
            address = "127.0.0.1:8082"

            [default_behavior]
            target = "secondary"

            [kernel]
            enabled = false
            "#,
        )
        .unwrap();
        assert_eq!(c.listener.address, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.listener.io_driver, IoDriver::Epoll);
        assert_eq!(c.worker_count(), 2);
        assert_eq!(c.limits.header_timeout, Duration::from_millis(500));
        assert_eq!(c.limits.max_request_body, 1024);
        assert_eq!(c.origins[0].connect_timeout, Duration::from_secs(2));
        assert_eq!(c.origins[0].connection_attempts, 2);
        assert_eq!(
            c.origins[1].response_timeout,
            Duration::from_secs(30),
            "CloudFront default"
        );
        assert_eq!(c.default_target, 1);
        assert!(!c.kernel.enabled);
    }

    #[test]
    fn errors_name_file_line_column_and_field() {
        let cases = [
            (
                "[[origins]]\nid = \"a\"\naddress = \"127.0.0.1:1\"\n[[origins]]\nid = \"a\"\naddress = \"127.0.0.1:2\"\n",
                "lb.toml:5:6: origins[1].id: duplicate origin id `a`",
            ),
            (
                "[[origins]]\nid = \"a\"\naddress = \"localhost\"\n",
                "lb.toml:3:11: origins[0].address: `localhost` is not an IP:port address",
            ),
            (
                "[kernel]\nenabld = true\n",
                "lb.toml:2:1: unknown field `enabld`",
            ),
            (
                "[[origins]]\nid = \"a\"\naddress = \"127.0.0.1:1\"\nconnection_attempts = 4\n",
                "lb.toml:4:23: origins[0].connection_attempts: must be 1, 2 or 3 (got 4)",
            ),
            (
                "[[origins]]\nid = \"a\"\naddress = \"127.0.0.1:1\"\n[default_behavior]\ntarget = \"b\"\n",
                "lb.toml:5:10: default_behavior.target: unknown origin id `b`",
            ),
            (
                "[limits]\nheader_timeout = \"10 parsecs\"\n",
                "lb.toml:2:18: ",
            ),
        ];
        for (text, want) in cases {
            let got = parse(text).unwrap_err().to_string();
            assert!(got.starts_with(want), "got {got:?}, want prefix {want:?}");
        }
    }
}
