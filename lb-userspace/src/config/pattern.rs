//! CloudFront path patterns: `*` matches any run of characters (including `/` and none),
//! `?` matches exactly one character, everything else matches itself, case-sensitively.
//! The pattern is matched against the whole path without the query string; a leading `/`
//! is optional in the pattern, as in CloudFront.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPattern {
    /// As written, for logs and export.
    source: String,
    /// With the leading `/` ensured.
    normalized: Vec<u8>,
}

impl PathPattern {
    pub fn new(pattern: &str) -> Self {
        let normalized = if pattern.starts_with('/') || pattern.starts_with('*') {
            pattern.as_bytes().to_vec()
        } else {
            [b"/", pattern.as_bytes()].concat()
        };
        Self {
            source: pattern.to_owned(),
            normalized,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `path` (query string allowed; it is ignored) matches.
    pub fn matches(&self, path: &str) -> bool {
        let path = path.split('?').next().unwrap_or("");
        wildcard_match(&self.normalized, path.as_bytes())
    }
}

/// Iterative wildcard matching with single-star backtracking: O(len(p) * len(s)) worst
/// case, no allocation, no recursion.
fn wildcard_match(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::PathPattern;

    #[test]
    fn cloudfront_wildcards() {
        let cases = [
            ("/api/*", "/api/users", true),
            ("/api/*", "/api/", true),
            ("/api/*", "/api", false),
            ("api/*", "/api/x", true),
            ("/images/*.jpg", "/images/a/b/c.jpg", true),
            ("/images/*.jpg", "/images/c.png", false),
            ("/file?.txt", "/file1.txt", true),
            ("/file?.txt", "/file12.txt", false),
            ("/a*b*c", "/axxbyyc", true),
            ("/a*b*c", "/axxbyy", false),
            ("*", "/anything", true),
            ("/API/*", "/api/x", false),
            ("/static/*", "/static/x?query=/api/", true),
        ];
        for (pattern, path, want) in cases {
            assert_eq!(
                PathPattern::new(pattern).matches(path),
                want,
                "{pattern} vs {path}"
            );
        }
    }
}
