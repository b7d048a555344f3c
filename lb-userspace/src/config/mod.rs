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

use std::{net::SocketAddr, path::Path};

pub use error::ConfigError;
pub use file::IoDriver;
pub use model::*;
pub use pattern::PathPattern;

/// Command-line values that override the file, whatever its format.
#[derive(Clone, Copy, Debug, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
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
    pub fn load(path: &Path, overrides: Overrides) -> Result<Loaded, ConfigError> {
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
            };
            cloudfront::parse(&text, path, &defaults)?
        } else {
            (native::parse(&text, path)?, Vec::new())
        };
        let mut warnings = warnings;
        warnings.extend(config.unsupported_tls_notes());
        if let Some(listen) = overrides.listen {
            config.listener.address = listen;
        }
        if let Some(admin) = overrides.admin {
            config.admin.address = Some(admin);
        }
        Ok(Loaded { config, warnings })
    }

    /// Validates native TOML `text`, naming `file` in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        native::parse(text, file)
    }

    /// What this build cannot honour yet: TLS to origins and on the listener. lb runs, and
    /// says so once per setting at start-up, rather than refusing a valid CloudFront config.
    pub fn unsupported_tls_notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for o in &self.origins {
            if o.protocol != OriginProtocol::HttpOnly {
                notes.push(format!(
                    "origin `{}`: protocol {} needs TLS to origins, which this build of lb does not have yet; \
                     it connects with plain HTTP to {}",
                    o.id,
                    if o.protocol == OriginProtocol::HttpsOnly { "https-only" } else { "match-viewer" },
                    o.address
                ));
            }
        }
        let behaviors = self
            .behaviors
            .iter()
            .chain(std::iter::once(&self.default_behavior));
        for b in behaviors {
            if b.viewer_protocol_policy != ViewerProtocolPolicy::AllowAll {
                let which = b
                    .path_pattern
                    .as_ref()
                    .map_or("default behavior".to_owned(), |p| {
                        format!("behavior {}", p.as_str())
                    });
                notes.push(format!(
                    "{which}: viewer protocol policy needs an HTTPS listener, which this build of lb does not have yet; \
                     requests are served over plain HTTP as with allow-all"
                ));
            }
        }
        notes
    }

    /// The equivalent native TOML.
    pub fn to_toml(&self) -> String {
        export::to_toml(self)
    }
}

/// Used where the caller built the config in code (the demo); reads like a file name in errors.
pub fn embedded(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("<embedded {name}>"))
}

#[cfg(test)]
mod tests;
