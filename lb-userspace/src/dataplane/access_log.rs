//! One line per request, with every attempt: `origin:outcome:ms`. Lines collect in a
//! per-worker buffer and go to stderr in batches (one write(2) per flush), so logging
//! takes no lock and one syscall per batch rather than per request.

use std::{cell::RefCell, io::Write as _, net::IpAddr, time::SystemTime};

use crate::config::Origin;

/// Flush when the buffer holds this much.
const FLUSH_AT: usize = 32 * 1024;

/// What one attempt came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    Status(u16),
    Error(&'static str),
}

#[derive(Clone, Copy, Debug)]
pub(super) struct AttemptRecord {
    pub origin: usize,
    pub outcome: Outcome,
    pub ms: u32,
}

/// `primary:503:2,secondary:200:1`.
pub(super) fn write_attempts(out: &mut Vec<u8>, attempts: &[AttemptRecord], origins: &[Origin]) {
    for (i, a) in attempts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let id = origins.get(a.origin).map_or("?", |o| o.id.as_str());
        let _ = match a.outcome {
            Outcome::Status(s) => write!(out, "{id}:{s}:{}", a.ms),
            Outcome::Error(e) => write!(out, "{id}:{e}:{}", a.ms),
        };
    }
}

pub(super) struct AccessLog {
    enabled: bool,
    buf: RefCell<Vec<u8>>,
}

/// One finished request, as the access log records it.
pub(super) struct AccessEntry<'a> {
    pub client: IpAddr,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub total_ms: u32,
    pub attempts: &'a [AttemptRecord],
    /// The viewer's protocol: `HTTP/1.0`, `HTTP/1.1` or `HTTP/2.0`.
    pub protocol: &'static str,
}

impl AccessLog {
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            buf: RefCell::new(Vec::with_capacity(FLUSH_AT + 1024)),
        }
    }

    pub fn record(&self, e: &AccessEntry<'_>, origins: &[Origin]) {
        if !self.enabled {
            return;
        }
        let mut buf = self.buf.borrow_mut();
        let _ = write!(
            buf,
            "{} access {} {} {} {} {}ms ",
            humantime::format_rfc3339_millis(SystemTime::now()),
            e.client,
            e.method,
            e.path,
            e.status,
            e.total_ms
        );
        if e.attempts.is_empty() {
            buf.push(b'-');
        } else {
            write_attempts(&mut buf, e.attempts, origins);
        }
        buf.push(b' ');
        buf.extend_from_slice(e.protocol.as_bytes());
        buf.push(b'\n');
        if buf.len() >= FLUSH_AT {
            flush_into_stderr(&mut buf);
        }
    }

    pub fn flush(&self) {
        flush_into_stderr(&mut self.buf.borrow_mut());
    }
}

fn flush_into_stderr(buf: &mut Vec<u8>) {
    let mut written = 0;
    while written < buf.len() {
        match nix::unistd::write(std::io::stderr(), &buf[written..]) {
            Ok(n) if n > 0 => written += n,
            Err(nix::errno::Errno::EINTR) => {}
            _ => break, // stderr gone: drop the batch rather than stall the worker
        }
    }
    buf.clear();
}
