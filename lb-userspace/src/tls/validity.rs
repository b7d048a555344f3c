//! A certificate's validity period, read straight from its DER (RFC 5280 §4.1): just
//! enough of a DER reader to reach `tbsCertificate.validity`, so lb can warn about an
//! expired or expiring listener certificate and export its expiry as a metric without an
//! X.509 library.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// When a certificate starts and stops being valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// The validity of the certificate `der`, or `None` if it is not the DER this expects.
pub fn validity(der: &[u8]) -> Option<Validity> {
    let (certificate, _) = element(der, SEQUENCE)?;
    let (mut tbs, _) = element(certificate, SEQUENCE)?;
    // version [0] EXPLICIT is optional (absent in v1 certificates).
    if tbs.first() == Some(&0xa0) {
        tbs = element(tbs, 0xa0)?.1;
    }
    let tbs = element(tbs, INTEGER)?.1; // serialNumber
    let tbs = element(tbs, SEQUENCE)?.1; // signature AlgorithmIdentifier
    let tbs = element(tbs, SEQUENCE)?.1; // issuer Name
    let (validity, _) = element(tbs, SEQUENCE)?;
    let (not_before, rest) = time(validity)?;
    let (not_after, _) = time(rest)?;
    Some(Validity {
        not_before,
        not_after,
    })
}

const INTEGER: u8 = 0x02;
const SEQUENCE: u8 = 0x30;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The content of the element at the start of `input` if its tag is `tag`, and what
/// follows it.
fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| acc << 8 | *b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// A UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn time(input: &[u8]) -> Option<(SystemTime, &[u8])> {
    let (utc, (text, rest)) = match *input.first()? {
        UTC_TIME => (true, element(input, UTC_TIME)?),
        GENERALIZED_TIME => (false, element(input, GENERALIZED_TIME)?),
        _ => return None,
    };
    let digits = |range: std::ops::Range<usize>| -> Option<u64> {
        let s = std::str::from_utf8(text.get(range)?).ok()?;
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (year, at) = if utc {
        let yy = digits(0..2)?;
        (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
    } else {
        (digits(0..4)?, 4)
    };
    if text.len() != at + 11 || text[at + 10] != b'Z' {
        return None;
    }
    let month = digits(at..at + 2)?;
    let day = digits(at + 2..at + 4)?;
    let hour = digits(at + 4..at + 6)?;
    let minute = digits(at + 6..at + 8)?;
    let second = digits(at + 8..at + 10)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let days = days_from_civil(year as i64, month as i64, day as i64);
    let secs = days * 86_400 + (hour * 3600 + minute * 60 + second.min(60)) as i64;
    let at = if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    };
    Some((at, rest))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn civil_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }

    #[test]
    fn reads_both_time_forms_and_rejects_junk() {
        // 2021-01-01T00:00:00Z as UTCTime, 2050-06-15T12:30:00Z as GeneralizedTime.
        let mut period = vec![SEQUENCE, 32];
        period.extend_from_slice(&[UTC_TIME, 13]);
        period.extend_from_slice(b"210101000000Z");
        period.extend_from_slice(&[GENERALIZED_TIME, 15]);
        period.extend_from_slice(b"20500615123000Z");
        let mut tbs = vec![0xa0, 3, INTEGER, 1, 2]; // version v3
        tbs.extend_from_slice(&[INTEGER, 1, 7]); // serial
        tbs.extend_from_slice(&[SEQUENCE, 0]); // algorithm
        tbs.extend_from_slice(&[SEQUENCE, 0]); // issuer
        tbs.extend_from_slice(&period);
        let mut cert = vec![SEQUENCE, tbs.len() as u8 + 2, SEQUENCE, tbs.len() as u8];
        cert.extend_from_slice(&tbs);
        let v = validity(&cert).unwrap();
        assert_eq!(v.not_before, unix(1_609_459_200));
        assert_eq!(v.not_after, unix(2_538_909_000));
        assert_eq!(validity(&cert[..cert.len() - 3]), None);
        assert_eq!(validity(b"not a certificate"), None);
        assert_eq!(validity(&[]), None);
    }
}
