//! Certificates for TLS tests (rcgen, generated per test: nothing secret in the repo) and
//! a blocking rustls client for the HTTP test client.

use std::{path::PathBuf, sync::Arc};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, pem::PemObject};

use crate::process::TestDir;

/// A private CA that issues test certificates.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its key, as PEM text.
#[derive(Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// When a certificate is valid.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// 2020 to 4000.
    Current,
    /// 2020 to 2021.
    Expired,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `names` (DNS names or IP literals).
    pub fn issue(&self, names: &[&str], validity: Validity) -> IssuedCert {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("lb test"),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = match validity {
            Validity::Current => rcgen::date_time_ymd(4000, 1, 1),
            Validity::Expired => rcgen::date_time_ymd(2021, 1, 1),
        };
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A rustls client config that trusts only this CA (TLS 1.2 and 1.3).
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        client_config_for(
            &self.pem(),
            &[&rustls::version::TLS13, &rustls::version::TLS12],
        )
    }
}

/// A client config trusting `ca_pem`, offering exactly `versions`, ALPN http/1.1.
pub fn client_config_for(
    ca_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

impl IssuedCert {
    /// Writes `<name>.pem` and `<name>.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &TestDir, name: &str) -> (PathBuf, PathBuf) {
        (
            dir.write(&format!("{name}.pem"), &self.cert_pem),
            dir.write(&format!("{name}.key"), &self.key_pem),
        )
    }

    /// The leaf's DER, to compare with what a server presented.
    pub fn der(&self) -> Vec<u8> {
        CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap()
            .to_vec()
    }

    /// An HTTPS lb-origin server config for this certificate.
    pub fn origin_config(&self) -> Arc<rustls::ServerConfig> {
        lb_origin::tls_config_from_pem(self.cert_pem.as_bytes(), self.key_pem.as_bytes()).unwrap()
    }
}
