//! The responses lb itself generates: a status, and a one-line reason in the body that
//! also goes to the access log; custom error pages; redirects. The Connection field is
//! the one [`super::fate`] decided.

use std::io::Write as _;

use crate::http::ResponseConnection;

fn connection(out: &mut Vec<u8>, connection: ResponseConnection<'_>) {
    match connection {
        ResponseConnection::Close => out.extend_from_slice(b"connection: close\r\n"),
        ResponseConnection::KeepAlive => out.extend_from_slice(b"connection: keep-alive\r\n"),
        ResponseConnection::Default | ResponseConnection::Upgrade(_) => {}
    }
}

/// Writes a complete `text/plain` response.
pub(super) fn write(out: &mut Vec<u8>, status: u16, reason: &str, conn: ResponseConnection<'_>) {
    out.clear();
    let body_len = "lb: ".len() + reason.len() + 1;
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {body_len}\r\n",
        canonical_reason(status)
    );
    crate::http::put_date(out);
    connection(out, conn);
    let _ = write!(out, "\r\nlb: {reason}\n");
}

/// Writes a complete response with a body lb already has (custom error pages).
pub(super) fn write_page(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &[u8],
    headers: &[(String, String)],
    body: &[u8],
    conn: ResponseConnection<'_>,
) {
    out.clear();
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\ncontent-type: ",
        canonical_reason(status)
    );
    out.extend_from_slice(content_type);
    for (name, value) in headers {
        let _ = write!(out, "\r\n{name}: {value}");
    }
    let _ = write!(out, "\r\ncontent-length: {}\r\nvia: 1.1 lb\r\n", body.len());
    crate::http::put_date(out);
    connection(out, conn);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// Writes a redirect to `location` with a short text body.
pub(super) fn write_redirect(
    out: &mut Vec<u8>,
    status: u16,
    location: &[u8],
    conn: ResponseConnection<'_>,
) {
    out.clear();
    let body = b"lb: moved to HTTPS\n";
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nlocation: ",
        canonical_reason(status)
    );
    out.extend_from_slice(location);
    let _ = write!(
        out,
        "\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n",
        body.len()
    );
    crate::http::put_date(out);
    connection(out, conn);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

pub(super) fn canonical_reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        _ => "Error",
    }
}
