//! What a rule tests: one field of the request against one operator. Every test borrows
//! from the request as parsed; none allocates.

use std::net::IpAddr;

/// How a text is compared. Names and values are compared byte for byte (header values
/// are not case-folded; hosts and header names are).
#[derive(Clone, Debug)]
pub enum TextTest {
    Equals(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    Regex(regex::Regex),
    /// The field is there (any value).
    Present,
    /// The field is not there.
    Absent,
}

impl PartialEq for TextTest {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Regex(a), Self::Regex(b)) => a.as_str() == b.as_str(),
            (Self::Equals(a), Self::Equals(b))
            | (Self::Prefix(a), Self::Prefix(b))
            | (Self::Suffix(a), Self::Suffix(b))
            | (Self::Contains(a), Self::Contains(b)) => a == b,
            (Self::Present, Self::Present) | (Self::Absent, Self::Absent) => true,
            _ => false,
        }
    }
}

impl TextTest {
    /// Whether a field with `value` (None: the field is absent) passes.
    pub fn passes(&self, value: Option<&[u8]>) -> bool {
        let Some(value) = value else {
            return matches!(self, Self::Absent);
        };
        match self {
            Self::Equals(s) => value == s.as_bytes(),
            Self::Prefix(s) => value.starts_with(s.as_bytes()),
            Self::Suffix(s) => value.ends_with(s.as_bytes()),
            Self::Contains(s) => memchr::memmem::find(value, s.as_bytes()).is_some(),
            Self::Regex(re) => std::str::from_utf8(value).is_ok_and(|v| re.is_match(v)),
            Self::Present => true,
            Self::Absent => false,
        }
    }

    /// As `lb rules explain` shows it.
    pub fn describe(&self) -> String {
        match self {
            Self::Equals(s) => format!("equals {s:?}"),
            Self::Prefix(s) => format!("starts with {s:?}"),
            Self::Suffix(s) => format!("ends with {s:?}"),
            Self::Contains(s) => format!("contains {s:?}"),
            Self::Regex(re) => format!("matches /{}/", re.as_str()),
            Self::Present => "is present".into(),
            Self::Absent => "is absent".into(),
        }
    }
}

/// A network in CIDR notation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128).
    pub fn parse(s: &str) -> Option<Self> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self {
            network: addr,
            prefix,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// How the path is tested (without the query string).
#[derive(Clone, Debug, PartialEq)]
pub enum PathTest {
    /// CloudFront's glob, as behaviors use.
    Glob(crate::config::PathPattern),
    Exact(String),
    Prefix(String),
    Regex(TextTest),
}

/// One condition of a rule; `negate` inverts it.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub test: Test,
    pub negate: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Test {
    /// The Host header without its port, case-insensitively.
    Host(String),
    Path(PathTest),
    /// Any of these methods.
    Method(Vec<String>),
    Header {
        name: String,
        test: TextTest,
    },
    Cookie {
        name: String,
        test: TextTest,
    },
    Query {
        name: String,
        test: TextTest,
    },
    /// The client's address (the TCP peer, or what a trusted proxy forwarded) is in one
    /// of these networks.
    Client(Vec<Cidr>),
    /// A share of requests for canaries and A/B tests: those whose key hashes into
    /// `[from, to)` of 10,000 buckets. The same key always lands in the same bucket, so a
    /// user sticks to one side, and rules with the same key and adjacent ranges split
    /// one population without overlap.
    Split {
        from: u32,
        to: u32,
        key: SplitKey,
    },
    /// The client's country (ISO code, upper case) per the country database.
    Country(Vec<String>),
    /// The client's autonomous system per the ASN database.
    Asn(Vec<u32>),
}

/// What a split hashes. A request without it (no such cookie, header or parameter)
/// falls back to its client address, so it still sticks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SplitKey {
    Cookie(String),
    Header(String),
    Query(String),
    Client,
}

impl SplitKey {
    pub fn parse(s: &str) -> Option<Self> {
        if s == "client" {
            return Some(Self::Client);
        }
        let (kind, name) = s.split_once(':')?;
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        match kind {
            "cookie" => Some(Self::Cookie(name.into())),
            "header" => Some(Self::Header(name.to_ascii_lowercase())),
            "query" => Some(Self::Query(name.into())),
            _ => None,
        }
    }
}

impl std::fmt::Display for SplitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cookie(n) => write!(f, "cookie:{n}"),
            Self::Header(n) => write!(f, "header:{n}"),
            Self::Query(n) => write!(f, "query:{n}"),
            Self::Client => write!(f, "client"),
        }
    }
}

/// Buckets a split divides requests into (a share is set to 0.01%).
pub const SPLIT_BUCKETS: u32 = 10_000;

/// FNV-1a: stable across builds and restarts, so a user keeps their side of a split.
fn bucket(bytes: &[u8]) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Fold the high bits in: FNV's low bits alone are weak for short keys.
    ((hash ^ (hash >> 32)) % u64::from(SPLIT_BUCKETS)) as u32
}

/// The parts of a request rules look at.
#[derive(Clone)]
pub struct RuleRequest<'a, H> {
    pub method: &'a str,
    pub host: Option<&'a [u8]>,
    /// The target as received: path and query.
    pub target: &'a str,
    pub fields: H,
    /// The client's address: the TCP peer, or what a trusted proxy forwarded.
    pub client: IpAddr,
    pub geo: &'a super::geo::Geo,
}

impl<'a, H: Iterator<Item = (&'a str, &'a [u8])> + Clone> RuleRequest<'a, H> {
    fn path(&self) -> &'a str {
        self.target.split('?').next().unwrap_or("")
    }

    fn query(&self) -> &'a str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.fields
            .clone()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    fn cookie(&self, name: &str) -> Option<&'a [u8]> {
        self.fields
            .clone()
            .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
            .flat_map(|(_, v)| v.split(|&b| b == b';'))
            .find_map(|pair| {
                let pair = pair.trim_ascii();
                let eq = pair.iter().position(|&b| b == b'=')?;
                (&pair[..eq] == name.as_bytes()).then(|| &pair[eq + 1..])
            })
    }

    fn query_param(&self, name: &str) -> Option<&'a [u8]> {
        self.query().split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then_some(v.as_bytes())
        })
    }

    fn host_without_port(&self) -> Option<&'a [u8]> {
        let host = self.host?;
        if host.first() == Some(&b'[') {
            let end = host.iter().position(|&b| b == b']')?;
            return Some(&host[..=end]);
        }
        Some(match host.iter().rposition(|&b| b == b':') {
            Some(colon) => &host[..colon],
            None => host,
        })
    }
}

impl Condition {
    pub fn holds<'a, H: Iterator<Item = (&'a str, &'a [u8])> + Clone>(
        &self,
        req: &RuleRequest<'a, H>,
    ) -> bool {
        let result = match &self.test {
            Test::Host(h) => req
                .host_without_port()
                .is_some_and(|v| v.eq_ignore_ascii_case(h.as_bytes())),
            Test::Path(PathTest::Glob(p)) => p.matches(req.path()),
            Test::Path(PathTest::Exact(p)) => req.path() == p,
            Test::Path(PathTest::Prefix(p)) => req.path().starts_with(p.as_str()),
            Test::Path(PathTest::Regex(t)) => t.passes(Some(req.path().as_bytes())),
            Test::Method(methods) => methods.iter().any(|m| m == req.method),
            Test::Header { name, test } => test.passes(req.header(name)),
            Test::Cookie { name, test } => test.passes(req.cookie(name)),
            Test::Query { name, test } => test.passes(req.query_param(name)),
            Test::Client(nets) => nets.iter().any(|n| n.contains(req.client)),
            Test::Split { from, to, key } => {
                let value = match key {
                    SplitKey::Cookie(n) => req.cookie(n),
                    SplitKey::Header(n) => req.header(n),
                    SplitKey::Query(n) => req.query_param(n),
                    SplitKey::Client => None,
                };
                let b = match value {
                    Some(v) => bucket(v),
                    None => match req.client {
                        IpAddr::V4(v4) => bucket(&v4.octets()),
                        IpAddr::V6(v6) => bucket(&v6.octets()),
                    },
                };
                (*from..*to).contains(&b)
            }
            Test::Country(codes) => req
                .geo
                .country
                .as_ref()
                .and_then(|db| db.country(req.client))
                .is_some_and(|c| codes.iter().any(|code| code == c)),
            Test::Asn(asns) => req
                .geo
                .asn
                .as_ref()
                .and_then(|db| db.asn(req.client))
                .is_some_and(|a| asns.contains(&a)),
        };
        result != self.negate
    }

    /// As `lb rules explain` shows it.
    pub fn describe(&self) -> String {
        let not = if self.negate { "not: " } else { "" };
        let what = match &self.test {
            Test::Host(h) => format!("host is {h:?}"),
            Test::Path(PathTest::Glob(p)) => format!("path matches {:?}", p.as_str()),
            Test::Path(PathTest::Exact(p)) => format!("path is {p:?}"),
            Test::Path(PathTest::Prefix(p)) => format!("path starts with {p:?}"),
            Test::Path(PathTest::Regex(t)) => format!("path {}", t.describe()),
            Test::Method(m) => format!("method is one of {}", m.join(", ")),
            Test::Header { name, test } => format!("header {name} {}", test.describe()),
            Test::Cookie { name, test } => format!("cookie {name} {}", test.describe()),
            Test::Query { name, test } => format!("query parameter {name} {}", test.describe()),
            Test::Client(nets) => format!(
                "client address in {}",
                nets.iter()
                    .map(Cidr::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Test::Split { from, to, key } => format!(
                "{key} hashes into {}%..{}% of the split",
                f64::from(*from) / 100.0,
                f64::from(*to) / 100.0
            ),
            Test::Country(codes) => format!("client country is one of {}", codes.join(", ")),
            Test::Asn(asns) => format!(
                "client AS is one of {}",
                asns.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        format!("{not}{what}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(
        fields: &'a [(&'a str, &'a [u8])],
        target: &'a str,
        client: &str,
    ) -> RuleRequest<'a, impl Iterator<Item = (&'a str, &'a [u8])> + Clone> {
        RuleRequest {
            method: "GET",
            host: Some(b"Shop.Example:8080"),
            target,
            fields: fields.iter().copied(),
            client: client.parse().unwrap(),
            geo: &NO_GEO,
        }
    }

    static NO_GEO: crate::rules::geo::Geo = crate::rules::geo::Geo {
        country: None,
        asn: None,
    };

    fn cond(test: Test) -> Condition {
        Condition {
            test,
            negate: false,
        }
    }

    #[test]
    fn each_test_and_its_negation() {
        let fields: &[(&str, &[u8])] = &[
            ("X-Beta", b"yes-please"),
            ("Cookie", b"a=1; ab=b-group"),
            ("cookie", b"late=1"),
        ];
        let r = req(fields, "/api/v1/users?v=2&debug", "10.1.2.3");
        let text = |name: &str, test: TextTest| Test::Header {
            name: name.into(),
            test,
        };
        let cases: Vec<(Test, bool)> = vec![
            (Test::Host("shop.example".into()), true),
            (Test::Host("other".into()), false),
            (
                Test::Path(PathTest::Glob(crate::config::PathPattern::new("/api/*"))),
                true,
            ),
            (Test::Path(PathTest::Exact("/api/v1/users".into())), true),
            (Test::Path(PathTest::Exact("/api".into())), false),
            (Test::Path(PathTest::Prefix("/api/".into())), true),
            (
                Test::Path(PathTest::Regex(TextTest::Regex(
                    regex::Regex::new("^/api/v[0-9]+/").unwrap(),
                ))),
                true,
            ),
            (Test::Method(vec!["POST".into()]), false),
            (Test::Method(vec!["HEAD".into(), "GET".into()]), true),
            (text("x-beta", TextTest::Equals("yes-please".into())), true),
            (text("x-beta", TextTest::Equals("yes".into())), false),
            (text("x-beta", TextTest::Prefix("yes".into())), true),
            (text("x-beta", TextTest::Suffix("please".into())), true),
            (text("x-beta", TextTest::Contains("s-p".into())), true),
            (text("x-beta", TextTest::Present), true),
            (text("x-beta", TextTest::Absent), false),
            (text("x-missing", TextTest::Absent), true),
            (text("x-missing", TextTest::Prefix("".into())), false),
            (
                Test::Cookie {
                    name: "ab".into(),
                    test: TextTest::Equals("b-group".into()),
                },
                true,
            ),
            (
                Test::Cookie {
                    name: "late".into(),
                    test: TextTest::Present,
                },
                true,
            ),
            (
                Test::Cookie {
                    name: "b".into(),
                    test: TextTest::Present,
                },
                false,
            ),
            (
                Test::Query {
                    name: "v".into(),
                    test: TextTest::Equals("2".into()),
                },
                true,
            ),
            (
                Test::Query {
                    name: "debug".into(),
                    test: TextTest::Present,
                },
                true,
            ),
            (
                Test::Query {
                    name: "x".into(),
                    test: TextTest::Present,
                },
                false,
            ),
            (Test::Client(vec![Cidr::parse("10.0.0.0/8").unwrap()]), true),
            (Test::Client(vec![Cidr::parse("10.1.2.4").unwrap()]), false),
        ];
        for (test, want) in cases {
            let c = cond(test.clone());
            assert_eq!(c.holds(&r), want, "{}", c.describe());
            let n = Condition { test, negate: true };
            assert_eq!(n.holds(&r), !want, "{}", n.describe());
        }
    }

    #[test]
    fn splits_are_sticky_and_adjacent_ranges_partition_the_population() {
        let (mut a, mut b, mut c) = (0, 0, 0);
        let split = |from, to| Condition {
            test: Test::Split {
                from,
                to,
                key: SplitKey::Cookie("uid".into()),
            },
            negate: false,
        };
        let (first, second, third) = (split(0, 2000), split(2000, 5000), split(5000, 10_000));
        for i in 0..10_000 {
            let cookie = format!("uid=user-{i}");
            let fields = [("Cookie", cookie.as_bytes())];
            let r = req(&fields, "/", "10.0.0.1");
            let hits = [first.holds(&r), second.holds(&r), third.holds(&r)];
            assert_eq!(hits.iter().filter(|&&h| h).count(), 1, "exactly one side");
            // Sticky: the same user again lands on the same side.
            assert_eq!(first.holds(&r), hits[0]);
            a += usize::from(hits[0]);
            b += usize::from(hits[1]);
            c += usize::from(hits[2]);
        }
        for (got, want) in [(a, 2000), (b, 3000), (c, 5000)] {
            assert!(got.abs_diff(want) < 250, "{a} {b} {c}");
        }
        // No cookie: the client address decides, the same way each time.
        let none: [(&str, &[u8]); 0] = [];
        let r = req(&none, "/", "192.0.2.7");
        let side = first.holds(&r);
        assert_eq!(first.holds(&r), side);
        assert!(SplitKey::parse("cookie:").is_none());
        assert_eq!(
            SplitKey::parse("header:X-User"),
            Some(SplitKey::Header("x-user".into()))
        );
    }

    #[test]
    fn cidrs() {
        let net = Cidr::parse("192.168.0.0/16").unwrap();
        assert!(net.contains("192.168.200.1".parse().unwrap()));
        assert!(net.contains("::ffff:192.168.1.1".parse().unwrap()));
        assert!(!net.contains("192.169.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("2001:db9::5".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nope/8").is_none());
    }
}
