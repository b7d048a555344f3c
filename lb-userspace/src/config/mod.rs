//! What users write, checked and turned into what lb runs.
//!
//! Two formats become the same [`Config`]: lb's native TOML (`file.rs`, `native.rs`) and
//! CloudFront's DistributionConfig JSON (`cloudfront.rs`). `export.rs` turns a Config back
//! into TOML for `lb import cloudfront`.

mod cloudfront;
mod error;
mod export;
mod file;
mod model;
mod native;
mod pattern;
mod rules_file;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

pub use error::ConfigError;
pub use file::{IoDriver, UnderscoreHeaders};
pub use model::*;
pub use pattern::PathPattern;

/// Command-line values that override the file, whatever its format. CloudFront JSON has
/// no place for certificate files, so the TLS flags are how such configs get HTTPS.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    /// HTTPS listener address (`--tls-listen`); needs `cert` and `key`.
    pub tls_listen: Option<SocketAddr>,
    /// PEM certificate chain and key (`--cert`, `--key`); replace the file's certificates.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Extra trusted CA files for HTTPS origins (`--origin-ca`), added to the file's.
    pub origin_ca: Vec<PathBuf>,
    /// The files of the functions a CloudFront JSON config's ARNs name (`--function`).
    pub functions: Vec<(String, PathBuf)>,
    /// Fixed addresses for origin names (`--resolve NAME=ADDR`), before `[dns.hosts]`.
    pub resolve: Vec<(String, Vec<std::net::IpAddr>)>,
    /// `--no-kernel`: the eBPF part stays off whatever the file says.
    pub no_kernel: bool,
}

/// `NAME=ADDR[,ADDR...]` of `--resolve`: a name lb looks up, and the addresses to use
/// for it instead of DNS.
pub fn parse_resolve_flag(s: &str) -> Result<(String, Vec<std::net::IpAddr>), String> {
    let Some((name, addresses)) = s.split_once('=') else {
        return Err(format!("`{s}`: expected NAME=ADDR[,ADDR...]"));
    };
    native::validate_host_name(name)?;
    let ips = native::parse_ip_list(addresses.split(','))?;
    Ok((name.to_ascii_lowercase(), ips))
}

impl Overrides {
    fn apply_tls(&self, config: &mut Config) -> Result<(), ConfigError> {
        let flag_error = |message: &str| ConfigError::Flags {
            message: message.to_owned(),
        };
        let certificate = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some(CertificateFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None) => None,
            _ => return Err(flag_error("--cert and --key go together")),
        };
        match (self.tls_listen, certificate, config.tls.as_mut()) {
            (Some(address), Some(c), _) => {
                config.tls = Some(TlsListener {
                    address,
                    certificates: vec![c],
                })
            }
            (Some(address), None, Some(tls)) => tls.address = address,
            (Some(_), None, None) => {
                return Err(flag_error(
                    "--tls-listen needs --cert and --key (the config has no [tls] certificates)",
                ));
            }
            (None, Some(c), Some(tls)) => tls.certificates = vec![c],
            (None, Some(_), None) => {
                return Err(flag_error(
                    "--cert/--key need --tls-listen (or [tls] in the config)",
                ));
            }
            (None, None, _) => {}
        }
        if let Some(tls) = &config.tls
            && listeners_collide(tls.address, config.listener.address)
        {
            return Err(flag_error(
                "the HTTPS listener address must differ from the HTTP one",
            ));
        }
        config
            .origin_tls
            .ca_files
            .extend(self.origin_ca.iter().cloned());
        Ok(())
    }
}

/// A loaded config and what lb should say about it at start-up.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// Fields not implemented or only partly honoured (one line each).
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads `path` (TOML, or CloudFront JSON when it ends in `.json` or starts with `{`),
    /// validates it and applies `overrides`.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Loaded, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            file: path.to_owned(),
            message: e.to_string(),
        })?;
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
            || text.trim_start().starts_with('{');
        let (mut config, warnings) = if is_json {
            let defaults = cloudfront::JsonDefaults {
                listen: overrides
                    .listen
                    .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("valid")),
                functions: overrides.functions.clone(),
            };
            cloudfront::parse(&text, path, &defaults)?
        } else {
            (native::parse(&text, path)?, Vec::new())
        };
        let mut warnings = warnings;
        if let Some(listen) = overrides.listen {
            config.listener.address = listen;
        }
        overrides.apply_tls(&mut config)?;
        warnings.extend(config.tls_notes());
        if let Some(admin) = overrides.admin {
            config.admin.address = Some(admin);
        }
        if overrides.no_kernel {
            config.kernel.enabled = false;
        }
        for (name, ips) in &overrides.resolve {
            config.dns.hosts.insert(name.clone(), ips.clone());
        }
        Ok(Loaded { config, warnings })
    }

    /// Validates native TOML `text`, naming `file` in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        native::parse(text, file)
    }

    /// Settings that are valid but cannot work as written: lb runs, and says so once
    /// per setting at start-up.
    pub fn tls_notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.tls.is_none() {
            let behaviors = self
                .behaviors
                .iter()
                .chain(std::iter::once(&self.default_behavior));
            for b in behaviors {
                let which = b
                    .path_pattern
                    .as_ref()
                    .map_or("default behavior".to_owned(), |p| {
                        format!("behavior {}", p.as_str())
                    });
                match b.viewer_protocol_policy {
                    ViewerProtocolPolicy::AllowAll => {}
                    ViewerProtocolPolicy::RedirectToHttps => notes.push(format!(
                        "{which}: redirect-to-https, but lb has no HTTPS listener \
                         ([tls] or --tls-listen/--cert/--key): redirects go to https://<host>/ on port 443"
                    )),
                    ViewerProtocolPolicy::HttpsOnly => notes.push(format!(
                        "{which}: https-only, but lb has no HTTPS listener \
                         ([tls] or --tls-listen/--cert/--key): every request gets 403"
                    )),
                }
            }
        }
        notes
    }

    /// The equivalent native TOML.
    pub fn to_toml(&self) -> String {
        export::to_toml(self)
    }
}

/// Whether two listen addresses would take the same port: equal, or the same port with
/// a wildcard on either side (SO_REUSEPORT would let both bind and split the traffic).
/// Port 0 never collides: each gets its own.
pub(crate) fn listeners_collide(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Used where the caller built the config in code (the demo); reads like a file name in errors.
pub fn embedded(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("<embedded {name}>"))
}

#[cfg(test)]
mod tests;
