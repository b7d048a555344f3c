//! TLS material built from files: the HTTPS listener's certificates (chosen by SNI) and
//! the trust store for HTTPS origins. This module imports neither monoio nor tokio: the
//! data plane wraps its streams with monoio-rustls and the control plane's health checks
//! use tokio-rustls, both with the configs built here.
//!
//! Protocols are TLS 1.3 and 1.2 only, with rustls's cipher suites (AEAD only: AES-GCM
//! and ChaCha20-Poly1305, ECDHE key exchange); ALPN offers and accepts `http/1.1`.
//! Material is loaded at start and at every reload, so a renewed certificate takes effect
//! with `POST /reload` or SIGHUP and a bad file is refused before anything changes.

mod error;
mod sni;
mod validity;

use std::{path::Path, sync::Arc};

use rustls::{
    ClientConfig, RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    sign::CertifiedKey,
};

pub use error::TlsError;
pub use sni::SniResolver;
pub use validity::{Validity, validity};

use crate::config::{CertificateFiles, Config, OriginTls};

/// ALPN protocol lb speaks on both sides.
const HTTP11: &[u8] = b"http/1.1";
/// ALPN for HTTP/2 over TLS (RFC 9113 §3.2).
pub const H2: &[u8] = b"h2";

/// Everything TLS a snapshot needs; rebuilt from the files on reload.
pub struct TlsMaterial {
    /// The listener's config; `None` without an HTTPS listener.
    pub server: Option<Arc<ServerConfig>>,
    /// For connections to HTTPS origins (and their health checks).
    pub origin: Arc<ClientConfig>,
    /// The same trust, offering only `h2` by ALPN: for `protocol_version = "h2"` origins.
    pub origin_h2: Arc<ClientConfig>,
    /// Each listener certificate file and its leaf's validity (for warnings and metrics).
    pub certificates: Vec<(std::path::PathBuf, Option<Validity>)>,
}

/// Certificates expiring sooner than this get a warning at every load.
const EXPIRY_WARNING: std::time::Duration = std::time::Duration::from_secs(14 * 86_400);

impl TlsMaterial {
    /// Reads the certificate, key and CA files `config` names.
    pub fn load(config: &Config) -> Result<Self, TlsError> {
        Self::load_keeping_tickets(config, None)
    }

    /// Like [`TlsMaterial::load`], for a reload: session tickets issued before it (by
    /// `previous`) stay valid, so renewing a certificate does not force every returning
    /// client into a full handshake.
    pub fn reload(config: &Config, previous: &TlsMaterial) -> Result<Self, TlsError> {
        Self::load_keeping_tickets(config, previous.server.as_ref())
    }

    fn load_keeping_tickets(
        config: &Config,
        previous: Option<&Arc<ServerConfig>>,
    ) -> Result<Self, TlsError> {
        let server = match &config.tls {
            Some(listener) => Some(Arc::new(server_config(
                &listener.certificates,
                config.http2.enabled,
                previous.map(|p| Arc::clone(&p.ticketer)),
            )?)),
            None => None,
        };
        let certificates = config
            .tls
            .iter()
            .flat_map(|t| &t.certificates)
            .map(|files| (files.cert.clone(), leaf_validity(&files.cert)))
            .collect();
        let origin = origin_config(&config.origin_tls)?;
        let mut origin_h2 = origin.clone();
        origin_h2.alpn_protocols = vec![H2.to_vec()];
        let material = Self {
            server,
            origin: Arc::new(origin),
            origin_h2: Arc::new(origin_h2),
            certificates,
        };
        material.warn_about_validity(std::time::SystemTime::now());
        Ok(material)
    }

    /// One warning per listener certificate that is expired, not yet valid, or expiring
    /// within two weeks: lb still serves it (refusing to start helps nobody), but says so.
    fn warn_about_validity(&self, now: std::time::SystemTime) {
        for (path, validity) in &self.certificates {
            let Some(v) = validity else { continue };
            let path = path.display();
            if v.not_after <= now {
                tracing::warn!("{path}: the certificate has EXPIRED; clients will reject it");
            } else if v.not_before > now {
                tracing::warn!("{path}: the certificate is not valid yet; clients will reject it");
            } else if let Ok(left) = v.not_after.duration_since(now)
                && left < EXPIRY_WARNING
            {
                tracing::warn!(
                    "{path}: the certificate expires in {} hours",
                    left.as_secs() / 3600
                );
            }
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The listener's config: certificates by SNI (the first is the default), session
/// resumption by tickets (keys rotate every 6 hours; `ticketer` carries them over a
/// reload) and by session id, ALPN `h2` (when `http2`) then `http/1.1`.
pub fn server_config(
    certificates: &[CertificateFiles],
    http2: bool,
    ticketer: Option<Arc<dyn rustls::server::ProducesTickets>>,
) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let mut keys = Vec::with_capacity(certificates.len());
    for files in certificates {
        keys.push(Arc::new(certified_key(files, &provider)?));
    }
    let resolver = SniResolver::new(keys).map_err(|(index, message)| TlsError::File {
        path: certificates[index].cert.clone(),
        message,
    })?;
    let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(VERSIONS)
        .map_err(TlsError::Rustls)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = if http2 {
        vec![H2.to_vec(), HTTP11.to_vec()]
    } else {
        vec![HTTP11.to_vec()]
    };
    config.ticketer = match ticketer {
        Some(t) => t,
        None => rustls::crypto::ring::Ticketer::new().map_err(TlsError::Rustls)?,
    };
    Ok(config)
}

/// The config for HTTPS origins: the system's roots (unless turned off) plus `ca_files`.
pub fn origin_config(settings: &OriginTls) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    if settings.system_roots {
        let found = rustls_native_certs::load_native_certs();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 && settings.ca_files.is_empty() {
            tracing::warn!(
                "no system CA certificates found (Debian: apt install ca-certificates); \
                 HTTPS origins will fail verification unless a CA file is configured \
                 ([origin_tls] ca_files or --origin-ca)"
            );
        }
    }
    for path in &settings.ca_files {
        let mut added = 0;
        for cert in read_certificates(path)? {
            roots.add(cert).map_err(|e| TlsError::File {
                path: path.clone(),
                message: format!("not a usable CA certificate: {e}"),
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(TlsError::File {
                path: path.clone(),
                message: "no PEM CERTIFICATE block".into(),
            });
        }
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(TlsError::Rustls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![HTTP11.to_vec()];
    Ok(config)
}

fn certified_key(
    files: &CertificateFiles,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = read_certificates(&files.cert)?;
    if chain.is_empty() {
        return Err(TlsError::File {
            path: files.cert.clone(),
            message: "no PEM CERTIFICATE block".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::File {
        path: files.key.clone(),
        message: format!("no usable PEM private key: {e}"),
    })?;
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::File {
            path: files.key.clone(),
            message: format!("unsupported private key: {e}"),
        })?;
    let certified = CertifiedKey::new(chain, key);
    certified.keys_match().map_err(|e| TlsError::File {
        path: files.key.clone(),
        message: format!(
            "does not match the certificate in {}: {e}",
            files.cert.display()
        ),
    })?;
    Ok(certified)
}

/// The validity of the first certificate in `path` (its leaf).
fn leaf_validity(path: &Path) -> Option<Validity> {
    let leaf = read_certificates(path).ok()?.into_iter().next()?;
    validity(&leaf)
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_error = |e: rustls::pki_types::pem::Error| TlsError::File {
        path: path.to_owned(),
        message: e.to_string(),
    };
    CertificateDer::pem_file_iter(path)
        .map_err(file_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(file_error)
}
