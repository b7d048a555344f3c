//! 1 GiB through lb in each direction with bounded memory: bodies are streamed, never
//! held whole. lb's peak resident set (VmHWM) must stay under `RSS_BOUND_MIB`.

use std::{
    io::{Read, Write},
    time::Instant,
};

use lb_origin::Origin;
use lb_tests::{
    http::Client,
    process::{LbConfig, LbServer},
};

const GIB: u64 = 1 << 30;
/// lb's peak RSS bound while moving 1 GiB: buffers are 16-64 KiB per connection.
const RSS_BOUND_MIB: u64 = 64;

fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib / 1024
}

fn setup() -> (Origin, LbServer) {
    let origin = Origin::start("primary", "127.0.0.1:0".parse().unwrap()).unwrap();
    let lb = LbServer::start(
        &LbConfig::new()
            .origin("primary", origin.addr(), "")
            .limits("max_request_body = 2147483648"),
    );
    (origin, lb)
}

#[test]
fn one_gib_download_streams_with_bounded_memory() {
    let (_origin, lb) = setup();
    let mut c = Client::connect(lb.addr);
    let started = Instant::now();
    c.send(format!("GET /big?size={GIB} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    // Read the head, then count the body without keeping it.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains(&format!("content-length: {GIB}")), "{head}");
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    while total < GIB {
        let n = c.stream.read(&mut buf).unwrap();
        assert!(n > 0, "lb closed after {total} bytes");
        total += n as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    let rss = peak_rss_mib(lb.pid());
    println!(
        "1 GiB download through lb: {:.1} s ({:.0} MiB/s), lb peak RSS {rss} MiB (bound {RSS_BOUND_MIB} MiB)",
        secs,
        1024.0 / secs
    );
    assert_eq!(total, GIB);
    assert!(rss < RSS_BOUND_MIB, "lb peak RSS {rss} MiB");
}

#[test]
fn one_gib_chunked_upload_streams_with_bounded_memory() {
    let (origin, lb) = setup();
    let mut c = Client::connect(lb.addr);
    let started = Instant::now();
    c.send(b"POST /count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    let piece = vec![b'u'; 256 * 1024];
    let mut framed = format!("{:x}\r\n", piece.len()).into_bytes();
    framed.extend_from_slice(&piece);
    framed.extend_from_slice(b"\r\n");
    let mut sent = 0u64;
    while sent < GIB {
        c.stream.write_all(&framed).unwrap();
        sent += piece.len() as u64;
    }
    c.send(b"0\r\n\r\n");
    let r = c.read_response(false);
    let secs = started.elapsed().as_secs_f64();
    let rss = peak_rss_mib(lb.pid());
    println!(
        "1 GiB chunked upload through lb: {:.1} s ({:.0} MiB/s), lb peak RSS {rss} MiB (bound {RSS_BOUND_MIB} MiB)",
        secs,
        1024.0 / secs
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), format!("received {GIB} bytes\n"));
    assert_eq!(origin.completed(), 1);
    assert!(rss < RSS_BOUND_MIB, "lb peak RSS {rss} MiB");
}

#[test]
fn one_gib_content_length_upload_streams_with_bounded_memory() {
    let (_origin, lb) = setup();
    let mut c = Client::connect(lb.addr);
    c.send(format!("PUT /count HTTP/1.1\r\nHost: t\r\nContent-Length: {GIB}\r\n\r\n").as_bytes());
    let piece = vec![b'c'; 1 << 20];
    for _ in 0..1024 {
        c.stream.write_all(&piece).unwrap();
    }
    let r = c.read_response(false);
    assert_eq!(r.text(), format!("received {GIB} bytes\n"));
    let rss = peak_rss_mib(lb.pid());
    println!("1 GiB Content-Length upload: lb peak RSS {rss} MiB");
    assert!(rss < RSS_BOUND_MIB, "lb peak RSS {rss} MiB");
}
