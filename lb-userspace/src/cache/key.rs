//! The cache key of a request, and what of the request reaches the origin.
//!
//! As with CloudFront's `ForwardedValues`, what is in the key is exactly what the origin
//! gets: the host and the path always, and only the query parameters, headers and
//! cookies the behavior names. Nothing outside the key can change a stored response, so
//! an unkeyed header cannot poison the cache. Header names are compared without case;
//! query parameters and cookies by exact name. Keyed query parameters are sorted, so
//! `?a=1&b=2` and `?b=2&a=1` share an entry.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Which query parameters are part of the key (and forwarded).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueryKey {
    /// The query string is dropped (CloudFront: `QueryString: false`).
    #[default]
    None,
    /// Every parameter (`QueryString: true` without `QueryStringCacheKeys`).
    All,
    /// Only these names (`QueryStringCacheKeys`).
    Only(Vec<String>),
}

/// Which cookies are part of the key (and forwarded).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CookieKey {
    /// No cookie reaches the origin (CloudFront: `Forward: none`).
    #[default]
    None,
    All,
    Only(Vec<String>),
}

/// What identifies a cached response of one behavior.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPolicy {
    pub query: QueryKey,
    /// Header names (lower-case) in the key, forwarded to the origin.
    pub headers: Vec<String>,
    pub cookies: CookieKey,
}

impl KeyPolicy {
    /// Whether the origin gets header `name` (end-to-end fields other than Cookie).
    pub fn forwards_header(&self, name: &str) -> bool {
        self.headers.iter().any(|h| h.eq_ignore_ascii_case(name))
    }

    fn keeps_query(&self, name: &str) -> bool {
        match &self.query {
            QueryKey::None => false,
            QueryKey::All => true,
            QueryKey::Only(names) => names.iter().any(|n| n == name),
        }
    }

    fn keeps_cookie(&self, name: &str) -> bool {
        match &self.cookies {
            CookieKey::None => false,
            CookieKey::All => true,
            CookieKey::Only(names) => names.iter().any(|n| n == name),
        }
    }

    /// The query string the origin gets: the kept parameters in their original order
    /// (empty: no `?`).
    pub fn forwarded_query(&self, query: &str, out: &mut String) {
        out.clear();
        for param in query.split('&').filter(|p| !p.is_empty()) {
            let name = param.split('=').next().unwrap_or("");
            if self.keeps_query(name) {
                if !out.is_empty() {
                    out.push('&');
                }
                out.push_str(param);
            }
        }
    }

    /// The `Cookie` value the origin gets: the kept cookies in their original order.
    pub fn forwarded_cookies<'a>(&self, values: impl Iterator<Item = &'a [u8]>, out: &mut Vec<u8>) {
        out.clear();
        for value in values {
            for cookie in value.split(|&b| b == b';') {
                let cookie = cookie.trim_ascii();
                let name = cookie.split(|&b| b == b'=').next().unwrap_or(b"");
                if std::str::from_utf8(name).is_ok_and(|n| self.keeps_cookie(n)) {
                    if !out.is_empty() {
                        out.extend_from_slice(b"; ");
                    }
                    out.extend_from_slice(cookie);
                }
            }
        }
    }

    /// Writes the primary key of a request into `out`: host (lower-case), path (as
    /// behaviors match it), the kept query parameters sorted, the keyed headers and the
    /// kept cookies. Reuses `out`'s capacity.
    pub fn write_key<'a>(
        &self,
        out: &mut String,
        host: &[u8],
        path: &str,
        query: &str,
        fields: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
    ) {
        out.clear();
        for &b in host {
            out.push(b.to_ascii_lowercase() as char);
        }
        out.push_str(path);
        let mut params: Vec<&str> = query
            .split('&')
            .filter(|p| !p.is_empty() && self.keeps_query(p.split('=').next().unwrap_or("")))
            .collect();
        if !params.is_empty() {
            params.sort_unstable();
            out.push('?');
            out.push_str(&params.join("&"));
        }
        for name in &self.headers {
            let _ = write!(out, "\n{name}:");
            for (_, value) in fields.clone().filter(|(n, _)| n.eq_ignore_ascii_case(name)) {
                out.push_str(&String::from_utf8_lossy(value));
                out.push(',');
            }
        }
        if self.cookies != CookieKey::None {
            let mut cookies = Vec::new();
            self.forwarded_cookies(
                fields
                    .clone()
                    .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
                    .map(|(_, v)| v),
                &mut cookies,
            );
            out.push_str("\ncookie:");
            out.push_str(&String::from_utf8_lossy(&cookies));
        }
    }
}

/// The request's values of the fields a stored response varies on (RFC 9111 §4.1): one
/// string per name, the field's values joined, `None` when absent.
pub fn vary_values<'a>(
    names: &[String],
    fields: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
) -> Vec<Option<String>> {
    names
        .iter()
        .map(|name| {
            let mut values = fields
                .clone()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| String::from_utf8_lossy(v.trim_ascii()).into_owned())
                .peekable();
            values.peek()?;
            Some(values.collect::<Vec<_>>().join(", "))
        })
        .collect()
}

/// `Vary: *`: the response varies on something outside the request, so no request can
/// ever match a stored copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VaryAll;

/// The field names of a response's `Vary` values, lower-cased.
pub fn vary_names<'a>(values: impl Iterator<Item = &'a [u8]>) -> Result<Vec<String>, VaryAll> {
    let mut names = Vec::new();
    for value in values {
        for name in value.split(|&b| b == b',') {
            let name = String::from_utf8_lossy(name.trim_ascii()).to_ascii_lowercase();
            if name == "*" {
                return Err(VaryAll);
            }
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(
        pairs: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = (&'a str, &'a [u8])> + Clone {
        pairs.iter().map(|(n, v)| (*n, v.as_bytes()))
    }

    #[test]
    fn the_key_holds_host_path_and_only_what_the_behavior_names() {
        let p = KeyPolicy {
            query: QueryKey::Only(vec!["v".into(), "lang".into()]),
            headers: vec!["accept-language".into()],
            cookies: CookieKey::Only(vec!["session".into()]),
        };
        let f = [
            ("Accept-Language", "fr"),
            ("User-Agent", "x"),
            ("Cookie", "track=1; session=abc"),
        ];
        let mut a = String::new();
        p.write_key(
            &mut a,
            b"Example.COM",
            "/p",
            "v=2&utm=x&lang=de",
            fields(&f),
        );
        assert_eq!(
            a,
            "example.com/p?lang=de&v=2\naccept-language:fr,\ncookie:session=abc"
        );
        let mut b = String::new();
        let g = [
            ("accept-language", "fr"),
            ("Cookie", "session=abc; other=2"),
        ];
        p.write_key(&mut b, b"example.com", "/p", "lang=de&v=2", fields(&g));
        assert_eq!(
            a, b,
            "unkeyed parameters, headers and cookies do not matter"
        );
        let none = KeyPolicy::default();
        none.write_key(&mut b, b"h", "/p", "a=1", fields(&f));
        assert_eq!(b, "h/p");
    }

    #[test]
    fn the_origin_gets_only_what_is_keyed() {
        let p = KeyPolicy {
            query: QueryKey::Only(vec!["v".into()]),
            headers: vec![],
            cookies: CookieKey::Only(vec!["s".into()]),
        };
        let mut q = String::new();
        p.forwarded_query("a=1&v=2&v=3&b", &mut q);
        assert_eq!(q, "v=2&v=3");
        let mut c = Vec::new();
        p.forwarded_cookies(
            [b"a=1; s=2".as_slice(), b"s=3".as_slice()].into_iter(),
            &mut c,
        );
        assert_eq!(c, b"s=2; s=3");
        assert!(!p.forwards_header("accept"));
        let all = KeyPolicy {
            query: QueryKey::All,
            ..KeyPolicy::default()
        };
        all.forwarded_query("a=1&b=2", &mut q);
        assert_eq!(q, "a=1&b=2");
    }

    #[test]
    fn vary_names_and_values() {
        assert_eq!(
            vary_names(
                [
                    b"Accept-Encoding, accept-language".as_slice(),
                    b"Accept-Encoding".as_slice()
                ]
                .into_iter()
            ),
            Ok(vec![
                "accept-encoding".to_string(),
                "accept-language".to_string()
            ])
        );
        assert_eq!(vary_names([b"a, *".as_slice()].into_iter()), Err(VaryAll));
        let f = [("Accept-Encoding", "gzip"), ("accept-encoding", "br ")];
        assert_eq!(
            vary_values(&["accept-encoding".into(), "x".into()], fields(&f)),
            vec![Some("gzip, br".into()), None]
        );
    }
}
