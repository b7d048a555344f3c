//! A deliberately simple HTTP/1.1 client over std TCP, so tests control every byte:
//! split writes, pipelining, raw heads.

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

pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to lb");
    }

    /// Sends `bytes` in pieces of `piece` bytes with `pause` between them.
    pub fn send_split(&mut self, bytes: &[u8], piece: usize, pause: Duration) {
        for part in bytes.chunks(piece) {
            if self.stream.write_all(part).is_err() {
                return; // lb may close early once it has seen enough to refuse
            }
            std::thread::sleep(pause);
        }
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
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
            resp.body = self.read_chunked();
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

    fn read_chunked(&mut self) -> Vec<u8> {
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
            body.extend_from_slice(&self.buf[..size]);
            assert_eq!(&self.buf[size..size + 2], b"\r\n");
            self.buf.drain(..size + 2);
            if size == 0 {
                return body;
            }
        }
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
        matches!(self.stream.read(&mut b), Ok(0))
            || matches!(self.stream.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
    }
}

/// GET `path` on a new connection.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    let mut c = Client::connect(addr);
    c.request(&format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"))
}
