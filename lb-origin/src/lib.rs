//! A real HTTP/1.1 origin server for lb's tests, demo and benchmarks.
//!
//! Behaviour is chosen per request with query parameters, or for the whole server through
//! its handle (or `/_control`), so a test can make an origin fail exactly the way it needs:
//!
//! | query | effect |
//! | --- | --- |
//! | `status=N` | respond with status N |
//! | `size=N` | body of N bytes (default: a short identity line) |
//! | `delay_ms=N` | wait N ms before the response head |
//! | `chunked=1` | send the body chunked |
//! | `fail=reset` | reset the connection (RST) instead of answering |
//! | `fail=close` | close the connection (FIN) without answering |
//! | `fail=hang` | never answer (until the peer closes) |
//! | `fail=close-mid-body` | announce `size` bytes, send half, close |
//! | `fail=slow` | send the body 1 KiB at a time, `slow_ms` apart (default 50) |
//! | `cc=V`, `vary=V`, `expires=V`, `last_modified=V` (`%20` for spaces), `etag=T`, `set_cookie=1` | add that response field |
//! | `echo_lang=1` | `x-lang:` the request's Accept-Language |
//! | (with `etag=T`) `If-None-Match: "T"` | 304 |
//! | `fail=reject-body` | answer 413 without reading the body, then close (the unread body makes the kernel reset) |
//!
//! Paths: `/health` (health status, 200 by default), `/echo` (echoes the request body),
//! `/count` (reads the body, answers with its length), `/headers` (answers with the request
//! head as received), `/ws` (101 Switching Protocols, then echoes raw bytes),
//! `/_control?status=N|health=N` (server-wide; `status=0` clears), `/_control/stats`.
//! Every response carries `x-origin: <name>` and `x-served: <requests the server has read>`.
//!
//! [`Origin::start_tls`] serves the same over HTTPS (rustls, TLS 1.2/1.3), for tests of
//! lb's HTTPS origins; [`Origin::start_h2c`] and [`Origin::start_h2_tls`] over HTTP/2.

use std::{
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU16, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

mod h2;

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
};

/// A client connection: plain TCP or TLS over it. The TCP socket underneath is what the
/// `reset` fault acts on.
trait Conn: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    fn tcp(&self) -> &TcpStream;
}

impl Conn for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Conn for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// Shared, live-adjustable state of one origin.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    name: String,
    /// Status every request gets (except /health and /_control); 0 = none.
    forced_status: AtomicU16,
    /// Status of /health.
    health_status: AtomicU16,
    connections: AtomicU64,
    requests: AtomicU64,
    /// Requests whose body was read to its end.
    completed: AtomicU64,
    /// Server-wide misbehaviour (a [`Fault`] as u8; 0: none).
    forced_fault: std::sync::atomic::AtomicU8,
    /// Server-wide delay before every response head, in ms.
    forced_delay_ms: AtomicU64,
    /// Keep-alive connections idle this long are reset (SO_LINGER 0), in ms; 0: never.
    idle_reset_ms: AtomicU64,
}

/// A way to fail every request, set for the whole server with [`Origin::set_fault`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Reset the connection (RST) instead of answering.
    Reset = 1,
    /// Close the connection (FIN) without answering.
    Close = 2,
    /// Never answer.
    Hang = 3,
    /// HTTP/2: a GOAWAY (last stream 0) on every new connection, so no stream is
    /// processed; HTTP/1.1: like `Close`.
    GoAway = 4,
}

/// A running origin. Dropping it stops the server and closes its connections.
pub struct Origin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Origin {
    /// Starts an origin named `name` on `addr` (port 0 picks a free port), on its own thread.
    pub fn start(name: &str, addr: SocketAddr) -> io::Result<Self> {
        Self::start_with(name, addr, None)
    }

    /// Like [`Origin::start`], but serving HTTPS with `tls` (certificate, ALPN, versions).
    pub fn start_tls(
        name: &str,
        addr: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
    ) -> io::Result<Self> {
        Self::start_with(name, addr, Some(tls))
    }

    /// Like [`Origin::start`], speaking HTTP/2 with prior knowledge (h2c) instead of
    /// HTTP/1.1 (see the `h2` module for how faults look on a stream).
    pub fn start_h2c(name: &str, addr: SocketAddr) -> io::Result<Self> {
        Self::start_with_protocol(name, addr, None, true)
    }

    /// HTTPS with ALPN `h2` only (`tls` must offer it), speaking HTTP/2.
    pub fn start_h2_tls(
        name: &str,
        addr: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
    ) -> io::Result<Self> {
        Self::start_with_protocol(name, addr, Some(tls), true)
    }

    fn start_with(
        name: &str,
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<Self> {
        Self::start_with_protocol(name, addr, tls, false)
    }

    fn start_with_protocol(
        name: &str,
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
        http2: bool,
    ) -> io::Result<Self> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        socket.set_nonblocking(true)?;
        let std_listener: std::net::TcpListener = socket.into();
        let addr = std_listener.local_addr()?;
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            health_status: AtomicU16::new(200),
            ..Shared::default()
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let task_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("origin-{name}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("register listener");
                    tokio::select! {
                        _ = accept_loop(listener, task_shared, tls, http2) => {}
                        _ = stop_rx => {}
                    }
                });
                // Dropping the runtime cancels every connection task, closing their sockets.
            })?;
        Ok(Self {
            addr,
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Makes every ordinary request answer `status` (None: back to normal).
    pub fn set_forced_status(&self, status: Option<u16>) {
        self.shared
            .forced_status
            .store(status.unwrap_or(0), Ordering::Relaxed);
    }

    /// Makes every ordinary request fail with `fault` (None: back to normal).
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.shared
            .forced_fault
            .store(fault.map_or(0, |f| f as u8), Ordering::Relaxed);
    }

    /// Delays every response head by `delay` (zero: no delay).
    pub fn set_delay(&self, delay: Duration) {
        self.shared
            .forced_delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Resets (RST, SO_LINGER 0) every keep-alive connection left idle for `after`, as
    /// some servers and middleboxes do (None: keep them open).
    pub fn set_idle_reset(&self, after: Option<Duration>) {
        self.shared
            .idle_reset_ms
            .store(after.map_or(0, |d| d.as_millis() as u64), Ordering::Relaxed);
    }

    /// What `/health` answers.
    pub fn set_health_status(&self, status: u16) {
        self.shared.health_status.store(status, Ordering::Relaxed);
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Requests whose head was read so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Requests that arrived complete (head and whole body).
    pub fn completed(&self) -> u64 {
        self.shared.completed.load(Ordering::Relaxed)
    }

    /// Blocks until the server thread ends (it does not, unless stopped): for the binary.
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Stops accepting and closes every connection.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<Arc<rustls::ServerConfig>>,
    http2: bool,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        shared.connections.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        match &acceptor {
            None if http2 => {
                tokio::spawn(h2::serve(stream, shared));
            }
            None => {
                tokio::spawn(serve(stream, shared));
            }
            Some(acceptor) => {
                let accept = acceptor.accept(stream);
                tokio::spawn(async move {
                    // A client that rejects the certificate simply goes away.
                    if let Ok(stream) = accept.await {
                        if http2 {
                            h2::serve(stream, shared).await;
                        } else {
                            serve(stream, shared).await;
                        }
                    }
                });
            }
        }
    }
}

/// The parts of a request head the origin acts on (owned, the head buffer is reused).
#[derive(Debug, Default)]
struct Request {
    method: String,
    path: String,
    query: String,
    head: Vec<u8>,
    content_length: Option<u64>,
    chunked: bool,
    close: bool,
    expect_continue: bool,
    upgrade: bool,
}

impl Request {
    fn param(&self, key: &str) -> Option<&str> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == key).then_some(v)
        })
    }

    /// A request field's value, from the head as received.
    fn head_field(&self, name: &str) -> Option<String> {
        String::from_utf8_lossy(&self.head)
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    }

    fn param_u64(&self, key: &str) -> Option<u64> {
        self.param(key).and_then(|v| v.parse().ok())
    }
}

pub(crate) const PATTERN: &[u8; 64 * 1024] = &{
    let mut p = [0u8; 64 * 1024];
    let mut i = 0;
    while i < p.len() {
        p[i] = b'a' + (i % 26) as u8;
        i += 1;
    }
    p
};

async fn serve<S: Conn>(mut stream: S, shared: Arc<Shared>) {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    loop {
        let idle_reset = shared.idle_reset_ms.load(Ordering::Relaxed);
        let next = if idle_reset > 0 && buf.is_empty() {
            match tokio::time::timeout(
                Duration::from_millis(idle_reset),
                read_head(&mut stream, &mut buf),
            )
            .await
            {
                Ok(next) => next,
                Err(_) => {
                    let _ = socket2::SockRef::from(stream.tcp()).set_linger(Some(Duration::ZERO));
                    return;
                }
            }
        } else {
            read_head(&mut stream, &mut buf).await
        };
        let Some(req) = next else {
            return;
        };
        shared.requests.fetch_add(1, Ordering::Relaxed);
        if req.expect_continue
            && (stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
                || stream.flush().await.is_err())
        {
            return;
        }
        if req.param("fail") == Some("reject-body") {
            // Like a server enforcing a body limit from the head alone: answer, close,
            // and let the unread body turn the close into a reset.
            let head = format!(
                "HTTP/1.1 413 Payload Too Large\r\nx-origin: {}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                shared.name
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.flush().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            return;
        }
        let mut body = Vec::new();
        let keep_body = req.path.ends_with("/echo");
        let received =
            match read_body(&mut stream, &mut buf, &req, keep_body.then_some(&mut body)).await {
                Some(n) => n,
                None => return,
            };
        shared.completed.fetch_add(1, Ordering::Relaxed);
        let result = respond(&mut stream, &shared, &req, body, received).await;
        // TLS buffers records; plain TCP has nothing to flush.
        let flushed = stream.flush().await.is_ok();
        match result {
            Ok(true) if !req.close && flushed => {}
            _ => return,
        }
    }
}

/// Answers one request. Ok(true): the connection may carry another request.
async fn respond<S: Conn>(
    stream: &mut S,
    shared: &Shared,
    req: &Request,
    echo: Vec<u8>,
    received: u64,
) -> io::Result<bool> {
    let ordinary = !req.path.starts_with("/_control") && req.path != "/health";
    let forced_delay = shared.forced_delay_ms.load(Ordering::Relaxed);
    if let Some(ms) = req
        .param_u64("delay_ms")
        .or((ordinary && forced_delay > 0).then_some(forced_delay))
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let forced_fault = match shared.forced_fault.load(Ordering::Relaxed) {
        1 if ordinary => Some("reset"),
        2 | 4 if ordinary => Some("close"),
        3 if ordinary => Some("hang"),
        _ => None,
    };
    match req.param("fail").or(forced_fault) {
        Some("reset") => {
            let _ = socket2::SockRef::from(stream.tcp()).set_linger(Some(Duration::ZERO));
            return Ok(false);
        }
        Some("close") => return Ok(false),
        Some("hang") => {
            // Hold the connection open until the peer gives up.
            let mut sink = [0u8; 1024];
            while stream.read(&mut sink).await.is_ok_and(|n| n > 0) {}
            return Ok(false);
        }
        _ => {}
    }
    if req.path == "/ws" && req.upgrade {
        stream
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n")
            .await?;
        let (mut r, mut w) = tokio::io::split(stream);
        let _ = tokio::io::copy(&mut r, &mut w).await;
        return Ok(false);
    }
    let forced = shared.forced_status.load(Ordering::Relaxed);
    let (status, body): (u16, Body) = if req.path.starts_with("/_control") {
        control(shared, req)
    } else if req.path == "/health" {
        (
            shared.health_status.load(Ordering::Relaxed),
            Body::Text(format!("{}\n", shared.name)),
        )
    } else if forced != 0 {
        (
            forced,
            Body::Text(format!("{} forced {forced}\n", shared.name)),
        )
    } else {
        // A conditional request for the ETag this response would carry: 304.
        let unchanged = req.param("etag").is_some_and(|tag| {
            req.head_field("if-none-match")
                .is_some_and(|v| v.contains(&format!("\"{tag}\"")))
        });
        let status = if unchanged {
            304
        } else {
            req.param_u64("status").map_or(200, |s| s as u16)
        };
        let body = if req.path.ends_with("/echo") {
            Body::Bytes(echo)
        } else if req.path.ends_with("/count") {
            Body::Text(format!("received {received} bytes\n"))
        } else if req.path.ends_with("/headers") {
            Body::Bytes(req.head.clone())
        } else if let Some(size) = req.param_u64("size") {
            Body::Pattern(size)
        } else {
            Body::Text(format!("{} {} {}\n", shared.name, req.method, req.path))
        };
        (status, body)
    };
    let no_body =
        req.method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status);
    let len = body.len();
    let chunked = req.param("chunked") == Some("1") && !no_body;
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nx-origin: {}\r\ncontent-type: text/plain\r\nx-served: {}\r\n",
        reason(status),
        shared.name,
        shared.requests.load(Ordering::Relaxed)
    );
    // Caching fields on request, for the cache's tests.
    for (param, field) in [
        ("cc", "cache-control"),
        ("vary", "vary"),
        ("expires", "expires"),
        ("last_modified", "last-modified"),
        ("amz_meta_last_modified", "x-amz-meta-last-modified"),
    ] {
        if let Some(v) = req.param(param) {
            head.push_str(&format!("{field}: {}\r\n", v.replace("%20", " ")));
        }
    }
    if let Some(tag) = req.param("etag") {
        head.push_str(&format!("etag: \"{tag}\"\r\n"));
    }
    if req.param("set_cookie").is_some() {
        head.push_str("set-cookie: session=secret; Path=/\r\n");
    }
    if req.param("echo_lang").is_some() {
        let lang = req
            .head_field("accept-language")
            .unwrap_or_else(|| "-".into());
        head.push_str(&format!("x-lang: {lang}\r\n"));
    }
    if chunked {
        head.push_str("transfer-encoding: chunked\r\n");
    } else if status != 204 && !(100..200).contains(&status) {
        head.push_str(&format!("content-length: {len}\r\n"));
    }
    if req.close {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    let mid_body_close = req.param("fail") == Some("close-mid-body");
    let slow = (req.param("fail") == Some("slow")).then(|| req.param_u64("slow_ms").unwrap_or(50));
    // Like real servers, send a small response in one write: head and body together.
    if !no_body && !chunked && !mid_body_close && slow.is_none() && len <= 16 * 1024 {
        let mut whole = head.into_bytes();
        match &body {
            Body::Text(t) => whole.extend_from_slice(t.as_bytes()),
            Body::Bytes(b) => whole.extend_from_slice(b),
            Body::Pattern(n) => whole.extend_from_slice(&PATTERN[..*n as usize]),
        }
        stream.write_all(&whole).await?;
        return Ok(true);
    }
    stream.write_all(head.as_bytes()).await?;
    if no_body {
        return Ok(true);
    }
    let limit = if mid_body_close { len / 2 } else { len };
    body.write(stream, limit, chunked, slow).await?;
    if mid_body_close {
        return Ok(false);
    }
    if chunked {
        stream.write_all(b"0\r\n\r\n").await?;
    }
    Ok(true)
}

fn control(shared: &Shared, req: &Request) -> (u16, Body) {
    if req.path == "/_control/stats" {
        return (
            200,
            Body::Text(format!(
                "{{\"name\":\"{}\",\"connections\":{},\"requests\":{}}}\n",
                shared.name,
                shared.connections.load(Ordering::Relaxed),
                shared.requests.load(Ordering::Relaxed)
            )),
        );
    }
    if let Some(s) = req.param_u64("status") {
        shared.forced_status.store(s as u16, Ordering::Relaxed);
    }
    if let Some(s) = req.param_u64("health") {
        shared.health_status.store(s as u16, Ordering::Relaxed);
    }
    (200, Body::Text("ok\n".into()))
}

enum Body {
    Text(String),
    Bytes(Vec<u8>),
    Pattern(u64),
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Text(t) => t.len() as u64,
            Body::Bytes(b) => b.len() as u64,
            Body::Pattern(n) => *n,
        }
    }

    async fn write<S: Conn>(
        &self,
        stream: &mut S,
        limit: u64,
        chunked: bool,
        slow_ms: Option<u64>,
    ) -> io::Result<()> {
        let piece_max = if slow_ms.is_some() {
            1024
        } else {
            PATTERN.len()
        };
        let mut sent = 0u64;
        while sent < limit {
            let piece = (limit - sent).min(piece_max as u64) as usize;
            let bytes: &[u8] = match self {
                Body::Text(t) => &t.as_bytes()[sent as usize..sent as usize + piece],
                Body::Bytes(b) => &b[sent as usize..sent as usize + piece],
                Body::Pattern(_) => &PATTERN[..piece],
            };
            if chunked {
                stream
                    .write_all(format!("{piece:x}\r\n").as_bytes())
                    .await?;
                stream.write_all(bytes).await?;
                stream.write_all(b"\r\n").await?;
            } else {
                stream.write_all(bytes).await?;
            }
            sent += piece as u64;
            if let Some(ms) = slow_ms {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
        Ok(())
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Reads one request head into `buf`; returns it parsed and leaves body bytes in `buf`.
async fn read_head<S: Conn>(stream: &mut S, buf: &mut Vec<u8>) -> Option<Request> {
    loop {
        if !buf.is_empty() {
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut slots);
            match req.parse(buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let parsed = to_request(&req, &buf[..n]);
                    buf.drain(..n);
                    return Some(parsed);
                }
                Ok(httparse::Status::Partial) if buf.len() < 64 * 1024 => {}
                _ => {
                    let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
                    return None;
                }
            }
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn to_request(req: &httparse::Request<'_, '_>, head: &[u8]) -> Request {
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut r = Request {
        method: req.method.unwrap_or("GET").to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        head: head.to_vec(),
        close: req.version == Some(0),
        ..Request::default()
    };
    for h in req.headers.iter() {
        let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
        match h.name.to_ascii_lowercase().as_str() {
            "content-length" => r.content_length = v.trim().parse().ok(),
            "transfer-encoding" => r.chunked = v.contains("chunked"),
            "connection" => {
                if v.contains("close") {
                    r.close = true;
                }
                if v.contains("keep-alive") {
                    r.close = false;
                }
            }
            "expect" => r.expect_continue = v.trim() == "100-continue",
            "upgrade" => r.upgrade = true,
            _ => {}
        }
    }
    r
}

/// Reads the request body, keeping it in `keep` if given; returns its length.
async fn read_body<S: Conn>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    req: &Request,
    mut keep: Option<&mut Vec<u8>>,
) -> Option<u64> {
    let mut total = 0u64;
    let mut chunk = vec![0u8; 64 * 1024];
    if let Some(len) = req.content_length.filter(|_| !req.chunked) {
        while total < len {
            if buf.is_empty() {
                let n = stream.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
                buf.extend_from_slice(&chunk[..n]);
            }
            let take = (len - total).min(buf.len() as u64) as usize;
            if let Some(k) = keep.as_deref_mut() {
                k.extend_from_slice(&buf[..take]);
            }
            buf.drain(..take);
            total += take as u64;
        }
        return Some(total);
    }
    if !req.chunked {
        return Some(0);
    }
    // A lenient chunked reader: lb (the client here) always sends canonical chunks.
    loop {
        let line_end = loop {
            if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                break p;
            }
            let n = stream.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
            buf.extend_from_slice(&chunk[..n]);
        };
        let line = std::str::from_utf8(&buf[..line_end]).ok()?;
        let size = u64::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        buf.drain(..line_end + 2);
        if size == 0 {
            // Trailers, then the blank line.
            loop {
                let end = loop {
                    if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                        break p;
                    }
                    let n = stream.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
                    buf.extend_from_slice(&chunk[..n]);
                };
                buf.drain(..end + 2);
                if end == 0 {
                    return Some(total);
                }
            }
        }
        let mut left = size;
        while left > 0 {
            if buf.is_empty() {
                let n = stream.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
                buf.extend_from_slice(&chunk[..n]);
            }
            let take = left.min(buf.len() as u64) as usize;
            if let Some(k) = keep.as_deref_mut() {
                k.extend_from_slice(&buf[..take]);
            }
            buf.drain(..take);
            left -= take as u64;
            total += take as u64;
        }
        while buf.len() < 2 {
            let n = stream.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..2);
    }
}

/// A TLS 1.2/1.3 server config (ALPN http/1.1) from a PEM chain and key, for
/// [`Origin::start_tls`].
pub fn tls_config_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate PEM: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("key PEM: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// [`tls_config_from_pem`] from files.
pub fn tls_config_from_files(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    tls_config_from_pem(&read(cert)?, &read(key)?)
}
