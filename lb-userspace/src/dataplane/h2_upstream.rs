//! One HTTP/2 stream to an origin, seen by an attempt as an HTTP/1.1 connection that
//! carries one request: what the attempt writes (the request head lb built, then the
//! body) becomes HEADERS and DATA frames on a stream of the origin's shared connection,
//! and what it reads is the origin's response as HTTP/1.1 (chunked when it has no
//! Content-Length, with its trailers in the last chunk).
//!
//! The attempt code (custom headers, origin path, rules, functions, the cache key, body
//! replay, response timeouts) thus stays one for both versions. A stream the origin
//! refused (REFUSED_STREAM, or beyond a GOAWAY's last stream id) was not processed:
//! [`H2Upstream::refused`] says so, and the attempt fails over as after a connect
//! failure, whatever the method.

use std::{io, os::fd::RawFd};

use bytes::Bytes;
use h2::{RecvStream, SendStream, client::ResponseFuture, client::SendRequest};
use http::{HeaderName, HeaderValue, Request, uri::Scheme};

use super::h2_stream::{BodyFrames, Http1Bytes, h2_io};
use crate::http::{HopByHop, MAX_HEADERS, httparse_headers};

/// Largest request head an attempt writes (lb built it; this bounds a bug).
const MAX_REQUEST_HEAD: usize = 256 * 1024;

pub(super) struct H2Upstream {
    send_request: Option<SendRequest<Bytes>>,
    scheme: Scheme,
    /// `:authority` when the request has no Host field.
    default_authority: String,
    fd: RawFd,
    request: RequestState,
    send: Option<SendStream<Bytes>>,
    response: Option<ResponseFuture>,
    head_request: bool,
    /// The response as HTTP/1.1 bytes for the attempt to read.
    output: Http1Bytes,
    /// The origin refused the stream: nothing of the request was processed.
    refused: bool,
}

enum RequestState {
    Head(Vec<u8>),
    Body(BodyFrames),
}

impl H2Upstream {
    pub fn new(
        send_request: SendRequest<Bytes>,
        tls: bool,
        default_authority: String,
        fd: RawFd,
    ) -> Self {
        Self {
            send_request: Some(send_request),
            scheme: if tls { Scheme::HTTPS } else { Scheme::HTTP },
            default_authority,
            fd,
            request: RequestState::Head(Vec::new()),
            send: None,
            response: None,
            head_request: false,
            output: Http1Bytes::new(Vec::new()),
            refused: false,
        }
    }

    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// The origin refused the stream (REFUSED_STREAM or GOAWAY): it processed nothing.
    pub fn refused(&self) -> bool {
        self.refused
    }

    fn check_refused(&mut self, e: &h2::Error) {
        if e.reason() == Some(h2::Reason::REFUSED_STREAM) || (e.is_go_away() && e.is_remote()) {
            self.refused = true;
        }
    }

    /// Takes request bytes (HTTP/1.1) and sends them as frames.
    pub async fn write_from(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let total = data.len();
        while !data.is_empty() {
            match &mut self.request {
                RequestState::Head(head) => {
                    head.extend_from_slice(data);
                    data = &[];
                    let head = std::mem::take(head);
                    let rest = self.start_request(head)?;
                    if !rest.is_empty() {
                        Box::pin(self.write_from(&rest)).await?;
                    }
                }
                RequestState::Body(frames) => {
                    let Some(send) = &mut self.send else {
                        return Err(io::ErrorKind::NotConnected.into());
                    };
                    match frames.send(send, data).await {
                        Ok(taken) => data = &data[taken..],
                        Err(e) => {
                            // Why the stream failed shows in its response.
                            if let Some(response) = &mut self.response {
                                if let std::task::Poll::Ready(Err(e)) =
                                    futures_poll_once(response).await
                                {
                                    self.check_refused(&e);
                                }
                            }
                            return Err(e);
                        }
                    }
                }
            }
        }
        Ok(total)
    }

    /// Parses the request head; sends HEADERS once it is complete. Returns the bytes that
    /// followed it (the start of the body).
    fn start_request(&mut self, head: Vec<u8>) -> io::Result<Vec<u8>> {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut slots);
        let end = match parsed.parse(&head) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if head.len() <= MAX_REQUEST_HEAD => {
                self.request = RequestState::Head(head);
                return Ok(Vec::new());
            }
            _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "request head")),
        };
        let bad = |_| io::Error::new(io::ErrorKind::InvalidData, "request head");
        let method =
            http::Method::from_bytes(parsed.method.unwrap_or("GET").as_bytes()).map_err(bad)?;
        self.head_request = method == http::Method::HEAD;
        let headers = parsed.headers.iter().as_slice();
        let hop = HopByHop::new(httparse_headers(headers));
        let authority = headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("host"))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .unwrap_or(&self.default_authority)
            .to_owned();
        let uri = http::Uri::builder()
            .scheme(self.scheme.clone())
            .authority(authority)
            .path_and_query(parsed.path.unwrap_or("/"))
            .build()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "request target"))?;
        let mut request = Request::builder().method(method).uri(uri);
        let mut length = None;
        let mut chunked = false;
        let mut grpc = false;
        for h in headers {
            if h.name.eq_ignore_ascii_case("content-length") {
                length = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok());
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = true;
                continue;
            } else if h.name.eq_ignore_ascii_case("content-type") {
                grpc = h.value.starts_with(b"application/grpc");
            }
            if h.name.eq_ignore_ascii_case("host") || hop.contains(h.name) {
                continue;
            }
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(h.name.as_bytes()),
                HeaderValue::from_bytes(h.value),
            ) else {
                continue;
            };
            request = request.header(name, value);
        }
        if grpc {
            // gRPC servers tell proxies that drop trailers by this field's absence.
            request = request.header("te", "trailers");
        }
        let request = request
            .body(())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "request head"))?;
        let no_body = !chunked && length.unwrap_or(0) == 0;
        let Some(mut send_request) = self.send_request.take() else {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "second request"));
        };
        let (response, send) = match send_request.send_request(request, no_body) {
            Ok(pair) => pair,
            Err(e) => {
                self.check_refused(&e);
                // The connection went away before the stream opened: nothing was sent.
                if !e.is_go_away() || e.is_remote() {
                    self.refused = true;
                }
                return Err(h2_io(e));
            }
        };
        self.response = Some(response);
        self.send = Some(send);
        self.request = RequestState::Body(match (chunked, length) {
            _ if no_body => BodyFrames::Done,
            (true, _) => BodyFrames::chunked(),
            (false, Some(n)) => BodyFrames::Length(n),
            (false, None) => BodyFrames::Done,
        });
        Ok(head[end..].to_vec())
    }

    /// Copies response bytes (HTTP/1.1) into `buf`; `Ok(0)` after the response ends.
    pub async fn read_into<T: monoio::buf::IoBufMut>(&mut self, buf: &mut T) -> io::Result<usize> {
        loop {
            if let Some(n) = self.output.take_ready(buf) {
                return Ok(n);
            }
            if let Some(response) = self.response.take() {
                let response = match response.await {
                    Ok(r) => r,
                    Err(e) => {
                        self.check_refused(&e);
                        return Err(h2_io(e));
                    }
                };
                self.response_head(response);
                continue;
            }
            if !self.output.next_frame().await? {
                return Ok(0);
            }
        }
    }

    /// The response head as HTTP/1.1; a body without Content-Length goes chunked.
    fn response_head(&mut self, response: http::Response<RecvStream>) {
        let (parts, body) = response.into_parts();
        let status = parts.status;
        let out = &mut self.output.out;
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &parts.headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let bodiless = self.head_request
            || status.is_informational()
            || status == http::StatusCode::NO_CONTENT
            || status == http::StatusCode::NOT_MODIFIED;
        let has_length = parts.headers.contains_key(http::header::CONTENT_LENGTH);
        // A response that ended with its head (gRPC's trailers-only answers) says so
        // with a zero length, so that it stays one HEADERS frame for an HTTP/2 client.
        let empty = body.is_end_stream();
        if !bodiless && !has_length && empty {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        let chunked = !bodiless && !has_length && !empty;
        if chunked {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        out.extend_from_slice(b"\r\n");
        self.output.chunked = chunked;
        self.output.body = (!bodiless).then_some(body);
    }
}

/// Polls a future once (without waiting): whether it is already done.
async fn futures_poll_once<F: std::future::Future + Unpin>(
    f: &mut F,
) -> std::task::Poll<F::Output> {
    std::future::poll_fn(|cx| std::task::Poll::Ready(std::pin::Pin::new(&mut *f).poll(cx))).await
}
