//! An origin that answers with exactly the bytes a test scripts, so tests can send what
//! no well-behaved server would (ambiguous framing, stray bytes, 1xx floods) and see
//! every byte lb sent it.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{Arc, Mutex},
    time::Duration,
};

/// One step of a scripted answer.
#[derive(Clone, Debug)]
pub enum Step {
    Write(Vec<u8>),
    Sleep(Duration),
    /// Close the connection (FIN).
    Close,
    /// Reset the connection (RST: SO_LINGER 0, then close).
    Reset,
    /// Keep the connection open without answering, until lb closes it.
    Hang,
}

/// What the script is told about a request.
#[derive(Clone, Debug)]
pub struct Request {
    /// Connections accepted before this one's.
    pub connection: usize,
    /// Requests earlier on the same connection.
    pub on_connection: usize,
    /// The request head as received.
    pub head: String,
}

type Script = dyn Fn(&Request) -> Vec<Step> + Send + Sync;

/// A running raw origin; its thread ends with the test process.
pub struct RawOrigin {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    received: Arc<Mutex<Vec<u8>>>,
}

impl RawOrigin {
    pub fn start(script: impl Fn(&Request) -> Vec<Step> + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind raw origin");
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let received = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let (reqs, recv) = (Arc::clone(&requests), Arc::clone(&received));
        std::thread::spawn(move || {
            for (connection, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { continue };
                let (script, reqs, recv) =
                    (Arc::clone(&script), Arc::clone(&reqs), Arc::clone(&recv));
                std::thread::spawn(move || serve(stream, connection, &*script, &reqs, &recv));
            }
        });
        Self {
            addr,
            requests,
            received,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request head received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Every byte received so far, on all connections.
    pub fn received(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }
}

fn serve(
    mut stream: TcpStream,
    connection: usize,
    script: &Script,
    requests: &Mutex<Vec<Request>>,
    received: &Mutex<Vec<u8>>,
) {
    let mut buf = Vec::new();
    let mut on_connection = 0;
    loop {
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            if !read_more(&mut stream, &mut buf, received) {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        // Content-Length bodies are read; chunked ones up to their last chunk.
        let lower = head.to_ascii_lowercase();
        let length = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let chunked = lower.contains("transfer-encoding: chunked");
        loop {
            let done = match length {
                Some(n) => buf.len() >= n,
                None if chunked => buf.windows(5).any(|w| w == b"0\r\n\r\n"),
                None => true,
            };
            if done {
                break;
            }
            if !read_more(&mut stream, &mut buf, received) {
                return;
            }
        }
        match length {
            Some(n) => drop(buf.drain(..n)),
            None if chunked => {
                let end = buf.windows(5).position(|w| w == b"0\r\n\r\n").unwrap() + 5;
                buf.drain(..end);
            }
            None => {}
        }
        let request = Request {
            connection,
            on_connection,
            head,
        };
        requests.lock().unwrap().push(request.clone());
        on_connection += 1;
        for step in script(&request) {
            match step {
                Step::Write(bytes) => {
                    if stream.write_all(&bytes).is_err() {
                        return;
                    }
                }
                Step::Sleep(d) => std::thread::sleep(d),
                Step::Close => return,
                Step::Reset => {
                    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                    return;
                }
                Step::Hang => {
                    let mut sink = [0u8; 1024];
                    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
                    return;
                }
            }
        }
    }
}

/// Reads what is there into `buf` (and the record of everything received); false at
/// EOF or on an error.
fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>, received: &Mutex<Vec<u8>>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            received.lock().unwrap().extend_from_slice(&chunk[..n]);
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// A complete response with a body.
pub fn ok(body: &str) -> Step {
    Step::Write(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}
