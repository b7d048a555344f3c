//! A certificate's validity period (RFC 5280 §4.1 `tbsCertificate.validity`), read with
//! x509-parser, so lb can warn about an expired or expiring listener certificate and
//! export its expiry as a metric.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// When a certificate starts and stops being valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// The validity of the DER certificate `der`, or `None` if it does not parse.
pub fn validity(der: &[u8]) -> Option<Validity> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    let period = certificate.validity();
    Some(Validity {
        not_before: at(period.not_before.timestamp()),
        not_after: at(period.not_after.timestamp()),
    })
}

/// A Unix timestamp (seconds; negative before 1970) as a SystemTime.
fn at(unix: i64) -> SystemTime {
    if unix >= 0 {
        UNIX_EPOCH + Duration::from_secs(unix as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_validity_of_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["lb.test".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2021, 1, 1);
        params.not_after = rcgen::date_time_ymd(2050, 6, 15);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let v = validity(cert.der()).unwrap();
        assert_eq!(
            v.not_before,
            UNIX_EPOCH + Duration::from_secs(1_609_459_200)
        );
        assert_eq!(v.not_after, UNIX_EPOCH + Duration::from_secs(2_538_864_000));
        assert_eq!(validity(b"not a certificate"), None);
        assert_eq!(validity(&cert.der()[..40]), None);
    }

    #[test]
    fn times_before_1970() {
        assert_eq!(at(-86_400), UNIX_EPOCH - Duration::from_secs(86_400));
    }
}
