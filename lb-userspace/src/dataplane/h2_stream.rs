//! One HTTP/2 stream of a viewer, seen by the exchange as a one-request HTTP/1.1
//! connection: reads yield the request as an HTTP/1.1 message (the head built from the
//! stream's pseudo-headers and fields, then the body from its DATA frames), and what the
//! exchange writes, an HTTP/1.1 response, is parsed and sent as HEADERS and DATA frames.
//!
//! This keeps one exchange for both protocols: behavior matching, rules, functions, the
//! cache, failover, custom error responses, limits and the access log run on every
//! HTTP/2 stream exactly as on an HTTP/1.1 request, and HTTP/1.1's strict head parser
//! checks every request a second time after h2's own RFC 9113 checks.
//!
//! Flow control holds both ways: request DATA is acknowledged (WINDOW_UPDATE) only as the
//! exchange reads it, and a response write waits for the client's window, so a client
//! that stops reading holds at most `http2.max_send_buffer` bytes of lb's memory and the
//! exchange's write timeout ends the stream.

use std::{
    io::{self, Write as _},
    os::fd::RawFd,
};

use bytes::{Buf, Bytes};
use h2::{RecvStream, SendStream, server::SendResponse};
use http::{HeaderName, HeaderValue, Request, Response};

use crate::http::{ChunkedDecoder, MAX_HEADERS, ResponseFraming, parse_response_head};

/// Largest response head the exchange writes (lb built it; this only bounds a bug).
const MAX_RESPONSE_HEAD: usize = 256 * 1024;

pub(super) struct H2Stream {
    /// The request as HTTP/1.1 bytes for the exchange to read.
    request: Http1Bytes,
    respond: Option<SendResponse<Bytes>>,
    send: Option<SendStream<Bytes>>,
    response: ResponseState,
    head_request: bool,
    tls: bool,
    fd: RawFd,
}

/// An HTTP/1.1 message made from an HTTP/2 stream, read by the exchange: the head (its
/// owner writes it into `out`), then the body from the stream's DATA frames, acknowledged
/// to the peer only as they are read, and chunked (with the trailers in the last chunk)
/// when the message has no length.
pub(super) struct Http1Bytes {
    /// Bytes ready to be read: the head, chunk framing.
    pub out: Vec<u8>,
    pos: usize,
    /// The body still to come (`None`: it ended, or there was none).
    pub body: Option<RecvStream>,
    /// DATA bytes being read.
    chunk: Bytes,
    /// The body is passed on chunked.
    pub chunked: bool,
    /// A chunk's closing CRLF is due once `chunk` is read.
    chunk_crlf: bool,
    /// Trailers taken early (a request's, while looking whether it had arrived whole).
    pub trailers: Option<http::HeaderMap>,
}

impl Http1Bytes {
    pub fn new(out: Vec<u8>) -> Self {
        Self {
            out,
            pos: 0,
            body: None,
            chunk: Bytes::new(),
            chunked: false,
            chunk_crlf: false,
            trailers: None,
        }
    }

    /// Copies bytes into `buf`; `Ok(0)` once the message has ended.
    pub async fn read_into<T: monoio::buf::IoBufMut>(&mut self, buf: &mut T) -> io::Result<usize> {
        loop {
            if let Some(n) = self.take_ready(buf) {
                return Ok(n);
            }
            if !self.next_frame().await? {
                return Ok(0);
            }
        }
    }

    /// Copies what is ready into `buf`, if anything is.
    pub fn take_ready<T: monoio::buf::IoBufMut>(&mut self, buf: &mut T) -> Option<usize> {
        use crate::kernel::fill_owned;
        if self.pos == self.out.len()
            && self.chunk.is_empty()
            && std::mem::take(&mut self.chunk_crlf)
        {
            self.out.extend_from_slice(b"\r\n");
        }
        if self.pos < self.out.len() {
            let n = fill_owned(buf, &self.out[self.pos..]);
            self.pos += n;
            if self.pos == self.out.len() {
                self.out.clear();
                self.pos = 0;
            }
            return Some(n);
        }
        if !self.chunk.is_empty() {
            let n = fill_owned(buf, &self.chunk);
            self.chunk.advance(n);
            if let Some(body) = &mut self.body {
                // The peer may send as much again.
                let _ = body.flow_control().release_capacity(n);
            }
            return Some(n);
        }
        None
    }

    /// Waits for the body's next DATA frame (or its end, with its trailers); false once
    /// the body has ended.
    pub async fn next_frame(&mut self) -> io::Result<bool> {
        let Some(body) = &mut self.body else {
            return Ok(false);
        };
        match body.data().await {
            Some(Ok(data)) => {
                if self.chunked && !data.is_empty() {
                    // Into the buffer itself: no allocation per DATA frame.
                    let _ = write!(self.out, "{:x}\r\n", data.len());
                    self.chunk_crlf = true;
                }
                self.chunk = data;
            }
            Some(Err(e)) => return Err(h2_io(e)),
            None => {
                let trailers = match self.trailers.take() {
                    Some(taken) => Some(taken),
                    None => body.trailers().await.map_err(h2_io)?,
                };
                self.body = None;
                if self.chunked {
                    self.out.extend_from_slice(b"0\r\n");
                    for (name, value) in trailers.iter().flatten() {
                        self.out.extend_from_slice(name.as_str().as_bytes());
                        self.out.extend_from_slice(b": ");
                        self.out.extend_from_slice(value.as_bytes());
                        self.out.extend_from_slice(b"\r\n");
                    }
                    self.out.extend_from_slice(b"\r\n");
                }
            }
        }
        Ok(true)
    }
}

/// Where the HTTP/1.1 response the exchange writes has got to.
enum ResponseState {
    /// Its head is being collected.
    Head(Vec<u8>),
    Body(BodyFrames),
}

/// An HTTP/1.1 body being turned into DATA frames on an HTTP/2 stream (a response to a
/// viewer, or a request to an origin), by how it is delimited.
pub(super) enum BodyFrames {
    Length(u64),
    /// Chunked: decoded, its trailer section sent as HTTP/2 trailers.
    Chunked(ChunkedDecoder, Vec<u8>),
    /// No length: the body ends when the stream is finished.
    UntilClose,
    Done,
}

impl BodyFrames {
    pub fn chunked() -> Self {
        Self::Chunked(ChunkedDecoder::keeping_trailers(), Vec::new())
    }

    /// Sends the part of `data` that belongs to the body, as the peer's window allows;
    /// the body's end ends the stream (with its trailers). Returns the bytes taken.
    pub async fn send(&mut self, send: &mut SendStream<Bytes>, data: &[u8]) -> io::Result<usize> {
        match self {
            Self::Length(left) => {
                let take = (data.len() as u64).min(*left) as usize;
                *left -= take as u64;
                let end = *left == 0;
                if end {
                    *self = Self::Done;
                }
                send_flow_controlled(send, &data[..take], end).await?;
                Ok(take)
            }
            Self::Chunked(decoder, decoded) => {
                decoded.clear();
                let progress = decoder
                    .decode(data, decoded)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "chunk framing"))?;
                let out = std::mem::take(decoded);
                if progress.done {
                    let trailers = decoder.take_trailers();
                    *self = Self::Done;
                    send_flow_controlled(send, &out, trailers.is_empty()).await?;
                    if !trailers.is_empty() {
                        send.send_trailers(header_map(trailers)).map_err(h2_io)?;
                    }
                } else {
                    send_flow_controlled(send, &out, false).await?;
                    if let Self::Chunked(_, buf) = self {
                        *buf = out;
                    }
                }
                Ok(progress.consumed)
            }
            Self::UntilClose => {
                send_flow_controlled(send, data, false).await?;
                Ok(data.len())
            }
            // Bytes beyond the body's end are not the stream's.
            Self::Done => Ok(data.len()),
        }
    }
}

/// Trailer fields as HTTP/2 trailers (fields h2 refuses are left out).
fn header_map(fields: Vec<(String, Vec<u8>)>) -> http::HeaderMap {
    let mut map = http::HeaderMap::with_capacity(fields.len());
    for (name, value) in fields {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// Why a stream's request cannot be given to the exchange (answered 400 directly).
pub(super) struct Malformed(pub &'static str);

impl H2Stream {
    /// The stream's request as an HTTP/1.1 message, or why it is malformed.
    pub fn new(
        request: Request<RecvStream>,
        respond: SendResponse<Bytes>,
        tls: bool,
        fd: RawFd,
    ) -> Result<Self, (Malformed, SendResponse<Bytes>)> {
        let (parts, body) = request.into_parts();
        let mut input = Vec::with_capacity(512);
        let head_request = parts.method == http::Method::HEAD;
        let chunked_body =
            !body.is_end_stream() && !parts.headers.contains_key(http::header::CONTENT_LENGTH);
        if let Err(why) = request_head(&parts, chunked_body, &mut input) {
            return Err((why, respond));
        }
        let mut request = Http1Bytes::new(input);
        request.body = (!body.is_end_stream()).then_some(body);
        request.chunked = chunked_body;
        Ok(Self {
            request,
            respond: Some(respond),
            send: None,
            response: ResponseState::Head(Vec::new()),
            head_request,
            tls,
            fd,
        })
    }

    /// A request body that has already arrived whole (up to `limit` bytes; a unary gRPC
    /// call's, a small form's) is given a Content-Length, so that it can be replayed
    /// to another member on failover. Only frames already received count: a body
    /// still on its way (a stream of messages) is passed on chunked as it comes.
    pub async fn take_whole_body(&mut self, limit: usize) {
        let request = &mut self.request;
        if !request.chunked {
            return;
        }
        // Let the connection's task read what came with the request's HEADERS.
        yield_once().await;
        let Some(body) = &mut request.body else {
            return;
        };
        let mut whole = Vec::new();
        loop {
            let polled = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(match body.poll_data(cx) {
                    std::task::Poll::Ready(data) => Some(data),
                    std::task::Poll::Pending => None,
                })
            })
            .await;
            match polled {
                Some(Some(Ok(data))) => {
                    whole.extend_from_slice(&data);
                    let _ = body.flow_control().release_capacity(data.len());
                    if whole.len() > limit {
                        break;
                    }
                }
                Some(None) => {
                    // A body ended by a trailer section stays chunked, to carry them.
                    request.trailers = poll_trailers_now(body).await;
                    if request.trailers.is_some() || !body.is_end_stream() {
                        break;
                    }
                    // The body ended: it is whole.
                    const CHUNKED_END: &[u8] =
                        b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n";
                    let out = &mut request.out;
                    debug_assert!(out.ends_with(CHUNKED_END));
                    out.truncate(out.len() - CHUNKED_END.len());
                    out.extend_from_slice(
                        format!(
                            "content-length: {}\r\nconnection: close\r\n\r\n",
                            whole.len()
                        )
                        .as_bytes(),
                    );
                    out.extend_from_slice(&whole);
                    request.chunked = false;
                    request.body = None;
                    return;
                }
                _ => break,
            }
        }
        // Not whole: what was taken goes first, as a chunk, and the rest follows.
        if !whole.is_empty() {
            let out = &mut request.out;
            let _ = write!(out, "{:x}\r\n", whole.len());
            out.extend_from_slice(&whole);
            out.extend_from_slice(b"\r\n");
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Copies request bytes into `buf`; `Ok(0)` at the end of the request.
    pub async fn read_into<T: monoio::buf::IoBufMut>(&mut self, buf: &mut T) -> io::Result<usize> {
        self.request.read_into(buf).await
    }

    /// Takes HTTP/1.1 response bytes and sends them as frames, waiting for the client's
    /// flow-control window. All of `data` is taken when this returns `Ok`.
    pub async fn write_from(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let total = data.len();
        while !data.is_empty() {
            match &mut self.response {
                ResponseState::Head(head) => {
                    head.extend_from_slice(data);
                    data = &[];
                    let head = std::mem::take(head);
                    let rest = self.start_response(head)?;
                    if !rest.is_empty() {
                        // Bytes after the head: the start of its body (or another head
                        // after a 1xx).
                        Box::pin(self.write_from(&rest)).await?;
                    }
                }
                ResponseState::Body(frames) => {
                    let Some(send) = &mut self.send else {
                        return Err(io::ErrorKind::NotConnected.into());
                    };
                    let taken = frames.send(send, data).await?;
                    data = &data[taken..];
                }
            }
        }
        Ok(total)
    }

    /// Parses the response head collected so far; sends it once complete. Returns the
    /// bytes that followed it.
    fn start_response(&mut self, head: Vec<u8>) -> io::Result<Vec<u8>> {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let parsed =
            match parse_response_head(&head, MAX_RESPONSE_HEAD, &mut slots, self.head_request) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => {
                    self.response = ResponseState::Head(head);
                    return Ok(Vec::new());
                }
                Err(_) => return Err(io::Error::new(io::ErrorKind::InvalidData, "response head")),
            };
        let rest = head[parsed.head_len..].to_vec();
        if (100..200).contains(&parsed.status) {
            // 100 Continue and other interim answers: HTTP/2 clients do not wait for
            // them (a request body is sent at once), so they are not passed on.
            self.response = ResponseState::Head(Vec::new());
            return Ok(rest);
        }
        let mut response = Response::builder().status(parsed.status);
        let hop = crate::http::HopByHop::new(crate::http::httparse_headers(parsed.headers));
        for h in parsed.headers {
            if hop.contains(h.name) {
                continue;
            }
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(h.name.as_bytes()),
                HeaderValue::from_bytes(h.value),
            ) else {
                continue;
            };
            response = response.header(name, value);
        }
        let response = response
            .body(())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "response head"))?;
        let (frames, end) = match parsed.framing {
            ResponseFraming::None | ResponseFraming::ContentLength(0) => (BodyFrames::Done, true),
            ResponseFraming::ContentLength(n) => (BodyFrames::Length(n), false),
            ResponseFraming::Chunked => (BodyFrames::chunked(), false),
            ResponseFraming::CloseDelimited => (BodyFrames::UntilClose, false),
        };
        let Some(mut respond) = self.respond.take() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "second response",
            ));
        };
        let send = respond.send_response(response, end).map_err(h2_io)?;
        self.send = Some(send);
        self.response = ResponseState::Body(frames);
        Ok(rest)
    }

    /// The exchange closed its side in order: a body delimited by the close ends here.
    pub fn finish(&mut self) {
        if matches!(self.response, ResponseState::Body(BodyFrames::UntilClose)) {
            if let Some(send) = &mut self.send {
                let _ = send.send_data(Bytes::new(), true);
            }
            self.response = ResponseState::Body(BodyFrames::Done);
        }
    }
}

impl Drop for H2Stream {
    /// A response that did not go out whole is reset, so the client sees a failed stream
    /// rather than a short one (HTTP/1.1's abortive close).
    fn drop(&mut self) {
        if matches!(self.response, ResponseState::Body(BodyFrames::Done)) {
            return;
        }
        if let Some(send) = &mut self.send {
            send.send_reset(h2::Reason::INTERNAL_ERROR);
        } else if let Some(respond) = &mut self.respond {
            respond.send_reset(h2::Reason::INTERNAL_ERROR);
        }
    }
}

/// Sends `data` on an HTTP/2 stream (`end`: and ends it), waiting for the peer's window:
/// nothing beyond what the peer allows (and h2's per-stream send buffer) is queued.
pub(super) async fn send_flow_controlled(
    send: &mut SendStream<Bytes>,
    mut data: &[u8],
    end: bool,
) -> io::Result<()> {
    if data.is_empty() {
        if end {
            send.send_data(Bytes::new(), true).map_err(h2_io)?;
        }
        return Ok(());
    }
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let granted = std::future::poll_fn(|cx| send.poll_capacity(cx)).await;
        let n = match granted {
            Some(Ok(n)) => n.min(data.len()),
            Some(Err(e)) => return Err(h2_io(e)),
            None => return Err(io::ErrorKind::BrokenPipe.into()),
        };
        if n == 0 {
            continue;
        }
        let last = end && n == data.len();
        send.send_data(Bytes::copy_from_slice(&data[..n]), last)
            .map_err(h2_io)?;
        data = &data[n..];
    }
    Ok(())
}

/// The trailers of a request body that has ended, if they have arrived (without
/// waiting).
async fn poll_trailers_now(body: &mut RecvStream) -> Option<http::HeaderMap> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match body.poll_trailers(cx) {
            std::task::Poll::Ready(Ok(trailers)) => trailers,
            _ => None,
        })
    })
    .await
}

/// Gives the other tasks of the worker one turn.
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if std::mem::replace(&mut yielded, true) {
            std::task::Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

pub(super) fn h2_io(e: h2::Error) -> io::Error {
    if let Some(io) = e.get_io() {
        return io::Error::new(io.kind(), e.to_string());
    }
    io::Error::new(io::ErrorKind::ConnectionReset, e.to_string())
}

/// Writes the HTTP/1.1 request head of a stream: request line in origin form (or
/// authority form for CONNECT), Host from `:authority`, fields as received with split
/// cookies joined (RFC 9113 §8.2.3), and `Connection: close` (the stream carries one
/// request).
fn request_head(
    parts: &http::request::Parts,
    chunked_body: bool,
    out: &mut Vec<u8>,
) -> Result<(), Malformed> {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    if parts.method == http::Method::CONNECT {
        let Some(authority) = parts.uri.authority() else {
            return Err(Malformed("CONNECT without :authority"));
        };
        out.extend_from_slice(authority.as_str().as_bytes());
    } else {
        match parts.uri.path_and_query() {
            Some(p) if !p.as_str().is_empty() => out.extend_from_slice(p.as_str().as_bytes()),
            _ => return Err(Malformed("missing :path")),
        }
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let host_field = parts.headers.get(http::header::HOST);
    match (parts.uri.authority(), host_field) {
        (Some(authority), Some(host)) if host.as_bytes() != authority.as_str().as_bytes() => {
            // RFC 9113 §8.3.1: a Host that differs from :authority makes it malformed.
            return Err(Malformed("host differs from :authority"));
        }
        (Some(authority), _) => {
            out.extend_from_slice(b"host: ");
            out.extend_from_slice(authority.as_str().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        (None, _) => {}
    }
    let mut cookies = parts
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .peekable();
    if cookies.peek().is_some() {
        out.extend_from_slice(b"cookie: ");
        for (i, c) in cookies.enumerate() {
            if i > 0 {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(c.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in &parts.headers {
        if name == http::header::COOKIE
            || (name == http::header::HOST && parts.uri.authority().is_some())
        {
            continue;
        }
        if name == http::header::TE {
            // Only `trailers` passes h2's checks; it is hop-by-hop in HTTP/1.1.
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if chunked_body {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    Ok(())
}
