//! Request paths as behaviors match them (RFC 3986 §6.2.2): percent-encoded unreserved
//! bytes decoded, hex digits of the other escapes upper-cased, dot segments removed
//! (§5.2.4). `/%61pi/x` and `/x/../api/x` both match `/api/*`. The origin still receives
//! the path as the client sent it.

use super::chunked::hex_value;

/// Writes the normalised path part of `target` (no query) into `out`, or leaves `out`
/// empty when it equals the received path part (the common case: no allocation).
pub fn normalize_path(target: &str, out: &mut String) {
    out.clear();
    let path = target.split('?').next().unwrap_or("");
    if !path.starts_with('/') || !needs_work(path.as_bytes()) {
        return;
    }
    let mut decoded = Vec::with_capacity(path.len());
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|b| hex_value(*b)),
                bytes.get(i + 2).and_then(|b| hex_value(*b)),
            )
        {
            let byte = h << 4 | l;
            if is_unreserved(byte) {
                decoded.push(byte);
            } else {
                decoded.extend_from_slice(&[
                    b'%',
                    bytes[i + 1].to_ascii_uppercase(),
                    bytes[i + 2].to_ascii_uppercase(),
                ]);
            }
            i += 3;
            continue;
        }
        decoded.push(bytes[i]);
        i += 1;
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut parts = decoded[1..].split(|&b| b == b'/').peekable();
    let mut trailing_slash = false;
    while let Some(seg) = parts.next() {
        let last = parts.peek().is_none();
        match seg {
            b"." => trailing_slash = last,
            b".." => {
                segments.pop();
                trailing_slash = last;
            }
            s => {
                segments.push(s);
                trailing_slash = false;
            }
        }
    }
    out.push('/');
    for (k, seg) in segments.iter().enumerate() {
        if k > 0 {
            out.push('/');
        }
        // Only unreserved bytes were decoded, so this stays ASCII.
        out.push_str(std::str::from_utf8(seg).unwrap_or(""));
    }
    if trailing_slash && !segments.is_empty() {
        out.push('/');
    }
    if out == path {
        out.clear();
    }
}

/// Whether `path` has an escape or a dot segment (anything normalisation could change).
fn needs_work(path: &[u8]) -> bool {
    path.contains(&b'%')
        || path
            .split(|&b| b == b'/')
            .any(|seg| seg == b"." || seg == b"..")
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::normalize_path;

    fn norm(p: &str) -> String {
        let mut out = String::new();
        normalize_path(p, &mut out);
        if out.is_empty() {
            p.split('?').next().unwrap().to_owned()
        } else {
            out
        }
    }

    #[test]
    fn dot_segments_and_unreserved_escapes_are_resolved() {
        assert_eq!(norm("/%61pi/x"), "/api/x");
        assert_eq!(norm("/x/../api/x"), "/api/x");
        assert_eq!(norm("/./api/./x?q=/../"), "/api/x");
        assert_eq!(norm("/../../api"), "/api");
        assert_eq!(norm("/a/b/.."), "/a/");
        assert_eq!(norm("/a/%2e%2E/api"), "/api");
        assert_eq!(norm("/a%2fb"), "/a%2Fb", "reserved escapes stay encoded");
        assert_eq!(norm("/a%zz"), "/a%zz", "a broken escape is kept as is");
    }

    #[test]
    fn plain_paths_are_left_alone_without_allocating() {
        let mut out = String::new();
        normalize_path("/api/v1/items?x=1", &mut out);
        assert!(out.is_empty());
        assert_eq!(out.capacity(), 0);
        normalize_path("*", &mut out);
        assert!(out.is_empty());
    }
}
