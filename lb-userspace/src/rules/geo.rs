//! Where a client is: country and autonomous system from MaxMind databases (mmdb, read
//! with the `maxminddb` crate into memory at load), and which address is the client's
//! when lb sits behind trusted proxies.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use maxminddb::PathElement;

use super::Cidr;

/// One database, loaded whole. Compared by path (a reload re-reads it).
pub struct GeoDb {
    path: PathBuf,
    reader: maxminddb::Reader<Vec<u8>>,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb").field("path", &self.path).finish()
    }
}

impl PartialEq for GeoDb {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}

impl GeoDb {
    pub fn open(path: &Path) -> Result<Self, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let reader = maxminddb::Reader::from_source(bytes)
            .map_err(|e| format!("{} is not a MaxMind database: {e}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            reader,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database's kind, as its metadata names it (`GeoLite2-Country`, `GeoLite2-ASN`).
    pub fn kind(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// The ISO country code of `ip` (borrowed from the database; no allocation).
    pub fn country(&self, ip: IpAddr) -> Option<&str> {
        let found = self.reader.lookup(ip).ok()?;
        found
            .decode_path::<&str>(&[PathElement::Key("country"), PathElement::Key("iso_code")])
            .ok()
            .flatten()
    }

    pub fn asn(&self, ip: IpAddr) -> Option<u32> {
        let found = self.reader.lookup(ip).ok()?;
        found
            .decode_path::<u32>(&[PathElement::Key("autonomous_system_number")])
            .ok()
            .flatten()
    }
}

/// The databases rules may use.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Geo {
    pub country: Option<Arc<GeoDb>>,
    pub asn: Option<Arc<GeoDb>>,
}

/// Which address rules see as the client's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientAddress {
    /// Peers whose forwarded header is believed (load balancers and CDNs in front of lb).
    pub trusted_proxies: Vec<Cidr>,
    /// The header they put the client's address in (lower case), e.g. `x-forwarded-for`.
    pub header: String,
}

impl ClientAddress {
    /// The TCP peer, or, when the peer is a trusted proxy, the rightmost address in the
    /// forwarded header that is not itself a trusted proxy (addresses further left were
    /// written by whoever the first untrusted hop was, and prove nothing).
    pub fn resolve<'a>(
        &self,
        peer: IpAddr,
        fields: impl Iterator<Item = (&'a str, &'a [u8])>,
    ) -> IpAddr {
        if self.trusted_proxies.is_empty() || !self.trusted(peer) {
            return peer;
        }
        // Several fields of the name are one list, in order.
        let mut client = peer;
        let mut values: Vec<&[u8]> = fields
            .filter(|(n, _)| n.eq_ignore_ascii_case(&self.header))
            .map(|(_, v)| v)
            .collect();
        values.reverse();
        for value in values {
            for item in value.rsplit(|&b| b == b',') {
                let Some(ip) = std::str::from_utf8(item)
                    .ok()
                    .and_then(|s| s.trim().parse::<IpAddr>().ok())
                else {
                    // Garbage in the chain: stop at the last address that was sound.
                    return client;
                };
                client = ip;
                if !self.trusted(ip) {
                    return ip;
                }
            }
        }
        client
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(name: &str) -> Option<GeoDb> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/geo")
            .join(name);
        if !path.exists() {
            eprintln!("SKIPPED: {} not present", path.display());
            return None;
        }
        Some(GeoDb::open(&path).unwrap())
    }

    #[test]
    fn countries_and_asns_from_maxminds_test_databases() {
        let Some(country) = db("GeoLite2-Country-Test.mmdb") else {
            return;
        };
        assert_eq!(country.kind(), "GeoLite2-Country");
        assert_eq!(country.country("81.2.69.142".parse().unwrap()), Some("GB"));
        assert_eq!(
            country.country("89.160.20.130".parse().unwrap()),
            Some("SE")
        );
        assert_eq!(
            country.country("216.160.83.57".parse().unwrap()),
            Some("US")
        );
        assert_eq!(country.country("127.0.0.1".parse().unwrap()), None);
        let asn = db("GeoLite2-ASN-Test.mmdb").unwrap();
        assert_eq!(asn.asn("1.128.0.1".parse().unwrap()), Some(1221));
        assert_eq!(asn.asn("12.81.92.7".parse().unwrap()), Some(7018));
        assert_eq!(asn.asn("10.0.0.1".parse().unwrap()), None);
        assert!(GeoDb::open(Path::new("/nonexistent.mmdb")).is_err());
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let settings = ClientAddress {
            trusted_proxies: vec![
                Cidr::parse("127.0.0.0/8").unwrap(),
                Cidr::parse("10.0.0.0/8").unwrap(),
            ],
            header: "x-forwarded-for".into(),
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let xff = |v: &'static str| [("X-Forwarded-For", v.as_bytes())].into_iter();
        // From a trusted peer: the rightmost untrusted address.
        assert_eq!(
            settings.resolve(ip("127.0.0.1"), xff("6.6.6.6, 81.2.69.142, 10.1.1.1")),
            ip("81.2.69.142")
        );
        // From an untrusted peer: the peer, whatever the header says.
        assert_eq!(
            settings.resolve(ip("192.0.2.1"), xff("81.2.69.142")),
            ip("192.0.2.1")
        );
        // Garbage: the last sound address.
        assert_eq!(
            settings.resolve(ip("127.0.0.1"), xff("81.2.69.142, nonsense, 10.0.0.9")),
            ip("10.0.0.9")
        );
        // Several fields are one list; no field: the peer.
        let two = [
            ("x-forwarded-for", b"89.160.20.130".as_slice()),
            ("x-forwarded-for", b"10.0.0.2".as_slice()),
        ];
        assert_eq!(
            settings.resolve(ip("127.0.0.1"), two.into_iter()),
            ip("89.160.20.130")
        );
        assert_eq!(
            settings.resolve(ip("127.0.0.1"), std::iter::empty()),
            ip("127.0.0.1")
        );
    }
}
