//! Choosing the listener's certificate by the client's SNI name.
//!
//! Names come from the certificates themselves (their subjectAltNames, wildcards
//! included), checked with webpki, so the config lists files and never repeats names.
//! Each handshake tries the certificates in config order and the first valid for the
//! name wins; no SNI, or no match, gets the first (the default, as nginx's default
//! server). A check costs about a microsecond, small next to the handshake's crypto.

use std::sync::Arc;

use rustls::{
    pki_types::{CertificateDer, ServerName},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

#[derive(Debug)]
pub struct SniResolver {
    keys: Vec<Arc<CertifiedKey>>,
}

impl SniResolver {
    /// Fails with the index of a certificate webpki cannot parse.
    pub fn new(keys: Vec<Arc<CertifiedKey>>) -> Result<Self, (usize, String)> {
        for (i, key) in keys.iter().enumerate() {
            let leaf = key
                .cert
                .first()
                .ok_or((i, "empty certificate chain".to_owned()))?;
            webpki::EndEntityCert::try_from(leaf)
                .map_err(|e| (i, format!("leaf certificate not usable: {e}")))?;
        }
        Ok(Self { keys })
    }

    /// The index of the certificate for `name` (`None`: the default).
    pub fn choose(&self, name: Option<&str>) -> usize {
        let Some(name) = name else { return 0 };
        let Ok(server_name) = ServerName::try_from(name) else {
            return 0;
        };
        self.keys
            .iter()
            .position(|key| valid_for(&key.cert[0], &server_name))
            .unwrap_or(0)
    }
}

fn valid_for(leaf: &CertificateDer<'_>, name: &ServerName<'_>) -> bool {
    webpki::EndEntityCert::try_from(leaf)
        .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(name).is_ok())
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.keys[self.choose(hello.server_name())]))
    }
}
