//! A deliberately simple HTTP/1.1 client over std TCP (or rustls over it), so tests
//! control every byte: split writes, pipelining, raw heads.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The trailer fields of a chunked body.
    pub trailers: Vec<(String, String)>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the client reads and writes: the TCP stream itself, or rustls over it.
trait Io: Read + Write + Send {}
impl<T: Read + Write + Send> Io for T {}

pub struct Client {
    /// The TCP socket (timeouts, shutdown; raw writes on plain connections).
    pub stream: TcpStream,
    io: Box<dyn Io>,
    buf: Vec<u8>,
    tls: Option<TlsInfo>,
}

/// What the TLS handshake settled.
#[derive(Clone, Debug)]
pub struct TlsInfo {
    pub version: rustls::ProtocolVersion,
    pub alpn: Option<Vec<u8>>,
    /// The server's leaf certificate (DER).
    pub leaf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            io: Box::new(stream.try_clone().unwrap()),
            stream,
            buf: Vec::new(),
            tls: None,
        }
    }

    /// Connects over TLS with `config`, sending `server_name` as SNI, and completes the
    /// handshake (Err: the handshake failed, with rustls's reason).
    pub fn connect_tls(
        addr: SocketAddr,
        server_name: &str,
        config: std::sync::Arc<rustls::ClientConfig>,
    ) -> Result<Self, String> {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        let name = rustls::pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
        let mut conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
        let mut tcp = stream.try_clone().unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
        }
        let tls = TlsInfo {
            version: conn.protocol_version().unwrap(),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            leaf: conn.peer_certificates().unwrap()[0].to_vec(),
        };
        Ok(Self {
            io: Box::new(rustls::StreamOwned::new(conn, tcp)),
            stream,
            buf: Vec::new(),
            tls: Some(tls),
        })
    }

    /// The handshake's outcome (None: plain TCP).
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).expect("write to lb");
        self.io.flush().expect("flush to lb");
    }

    /// Sends `bytes` in pieces of `piece` bytes with `pause` between them.
    pub fn send_split(&mut self, bytes: &[u8], piece: usize, pause: Duration) {
        for part in bytes.chunks(piece) {
            if self
                .io
                .write_all(part)
                .and_then(|_| self.io.flush())
                .is_err()
            {
                return; // lb may close early once it has seen enough to refuse
            }
            std::thread::sleep(pause);
        }
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 64 * 1024];
        match self.io.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(e) => panic!("reading from lb: {e}"),
        }
    }

    /// Reads one response. `head_request`: the request was HEAD (no body follows).
    pub fn read_response(&mut self, head_request: bool) -> Response {
        let (status, headers, head_len) = loop {
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut slots);
            if let Ok(httparse::Status::Complete(n)) = r.parse(&self.buf) {
                let headers = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect::<Vec<_>>();
                break (r.code.unwrap(), headers, n);
            }
            assert!(
                self.fill() > 0,
                "lb closed before a full response head: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        self.buf.drain(..head_len);
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
            trailers: Vec::new(),
        };
        let no_body =
            head_request || status == 204 || status == 304 || (100..200).contains(&status);
        if no_body {
            return resp;
        }
        if resp
            .header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked"))
        {
            (resp.body, resp.trailers) = self.read_chunked();
        } else if let Some(len) = resp
            .header("content-length")
            .map(|v| v.trim().parse::<usize>().unwrap())
        {
            while self.buf.len() < len {
                assert!(self.fill() > 0, "lb closed inside a Content-Length body");
            }
            resp.body = self.buf.drain(..len).collect();
        } else {
            while self.fill() > 0 {}
            resp.body = std::mem::take(&mut self.buf);
        }
        resp
    }

    fn read_chunked(&mut self) -> (Vec<u8>, Vec<(String, String)>) {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break p;
                }
                assert!(self.fill() > 0, "lb closed inside a chunk size line");
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&self.buf[..line_end]).unwrap(), 16)
                    .expect("lb sends canonical chunk sizes");
            self.buf.drain(..line_end + 2);
            while self.buf.len() < size + 2 {
                assert!(self.fill() > 0, "lb closed inside a chunk");
            }
            if size == 0 {
                // The trailer section: field lines up to an empty line.
                let mut trailers = Vec::new();
                loop {
                    let line_end = loop {
                        if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                            break p;
                        }
                        assert!(self.fill() > 0, "lb closed inside the trailer section");
                    };
                    let line: Vec<u8> = self.buf.drain(..line_end + 2).collect();
                    let line = String::from_utf8_lossy(&line[..line_end]).into_owned();
                    if line.is_empty() {
                        return (body, trailers);
                    }
                    let (name, value) = line.split_once(':').expect("a trailer field line");
                    trailers.push((name.trim().to_owned(), value.trim().to_owned()));
                }
            }
            body.extend_from_slice(&self.buf[..size]);
            assert_eq!(&self.buf[size..size + 2], b"\r\n");
            self.buf.drain(..size + 2);
        }
    }

    /// True if the next read is an orderly end: EOF on TCP, close_notify then EOF on TLS
    /// (rustls reports a FIN without close_notify as an error).
    pub fn clean_eof(&mut self) -> bool {
        let mut b = [0u8; 1];
        self.buf.is_empty() && matches!(self.io.read(&mut b), Ok(0))
    }

    /// Reads exactly `n` bytes (after any already buffered), e.g. from a tunnel.
    pub fn read_exact_bytes(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(
                self.fill() > 0,
                "lb closed after {} of {n} bytes",
                self.buf.len()
            );
        }
        self.buf.drain(..n).collect()
    }

    /// Sends `raw` and reads the response.
    pub fn request(&mut self, raw: &str) -> Response {
        self.send(raw.as_bytes());
        self.read_response(raw.starts_with("HEAD "))
    }

    /// True if lb closed the connection (EOF) within the read timeout, with nothing unread.
    pub fn closed_by_peer(&mut self) -> bool {
        self.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut b = [0u8; 1];
        matches!(self.io.read(&mut b), Ok(0))
            || matches!(self.io.read(&mut b), Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof))
    }
}

/// GET `path` on a new connection.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    let mut c = Client::connect(addr);
    c.request(&format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"))
}
