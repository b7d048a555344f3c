//! What users write, checked and turned into what lb runs.
//!
//! This is the foundation's subset: origins (id and address) and `[kernel]`. Origin
//! groups, behaviors and the CloudFront JSON reader arrive with the origin-groups work.

mod error;

use std::{
    collections::HashSet,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use toml::Spanned;

pub use error::ConfigError;

use crate::kernel::{KernelSettings, OriginRegistration};

/// The TOML file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    origins: Vec<OriginSpec>,
    #[serde(default)]
    kernel: KernelSettings,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OriginSpec {
    id: Spanned<String>,
    address: Spanned<String>,
}

/// A validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub origins: Vec<Origin>,
    pub kernel: KernelSettings,
}

/// An upstream endpoint lb sends requests to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub id: String,
    pub address: SocketAddr,
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
        let raw: ConfigFile = toml::from_str(text).map_err(|e| {
            at(
                e.span().unwrap_or(0..0),
                String::new(),
                e.message().to_owned(),
            )
        })?;
        let mut ids = HashSet::new();
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
            if !ids.insert(id.to_owned()) {
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
            origins.push(Origin {
                id: id.to_owned(),
                address,
            });
        }
        Ok(Self {
            origins,
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
}

/// Used where the caller built the config in code (the demo); reads like a file name in errors.
pub fn embedded(name: &str) -> PathBuf {
    PathBuf::from(format!("<embedded {name}>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("lb.toml"))
    }

    #[test]
    fn parses_origins_and_kernel_settings() {
        let c = parse(
            r#"
            [[origins]]
            id = "primary"
            address = "127.0.0.1:8081"

            [kernel]
            enabled = false
            interfaces = ["lo"]
            pin_path = "/sys/fs/bpf/lb-test"
            "#,
        )
        .unwrap();
        assert_eq!(c.origins[0].id, "primary");
        assert_eq!(c.origins[0].address, "127.0.0.1:8081".parse().unwrap());
        assert!(!c.kernel.enabled);
        assert_eq!(c.kernel.interfaces, ["lo"]);
        assert_eq!(c.kernel_registrations()[0].slot, 0);
    }

    #[test]
    fn duplicate_id_names_file_line_column_and_field() {
        let e = parse(
            "[[origins]]\nid = \"a\"\naddress = \"127.0.0.1:1\"\n[[origins]]\nid = \"a\"\naddress = \"127.0.0.1:2\"\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "lb.toml:5:6: origins[1].id: duplicate origin id `a`");
    }

    #[test]
    fn bad_address_and_unknown_field_are_located() {
        let e = parse("[[origins]]\nid = \"a\"\naddress = \"localhost\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("lb.toml:3:11: origins[0].address: `localhost` is not an IP:port"),
            "{e}"
        );
        let e = parse("[kernel]\nenabld = true\n").unwrap_err().to_string();
        assert!(e.starts_with("lb.toml:2:1: unknown field `enabld`"), "{e}");
    }
}
