//! One line per request, with every attempt: `origin:outcome:ms` (lb's format), or the
//! combined or JSON format. Lines collect in a per-worker buffer and go, in batches, to
//! the process's log writer thread ([`LogSink`]): logging takes no lock and no syscall
//! on the request path, and a log destination that does not keep up costs dropped
//! lines (counted), never a stalled worker.

use std::{cell::RefCell, io::Write as _, net::IpAddr, sync::Arc, time::SystemTime};

use crate::{
    config::{AccessLogFormat, Origin},
    log_sink::LogSink,
};

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
    /// Complete lines in `buf`.
    lines: std::cell::Cell<u64>,
    sink: Option<Arc<LogSink>>,
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
    /// Request fields the combined and JSON formats show (looked up only for them).
    pub host: Option<&'a [u8]>,
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
}

/// One attempt in a JSON line.
#[derive(serde::Serialize)]
struct JsonAttempt<'a> {
    origin: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    ms: u32,
}

#[derive(serde::Serialize)]
struct JsonLine<'a> {
    time: String,
    client: IpAddr,
    method: &'a str,
    path: &'a str,
    protocol: &'static str,
    host: Option<std::borrow::Cow<'a, str>>,
    status: u16,
    duration_ms: u32,
    attempts: Vec<JsonAttempt<'a>>,
    referer: Option<std::borrow::Cow<'a, str>>,
    user_agent: Option<std::borrow::Cow<'a, str>>,
}

impl AccessLog {
    pub fn new(enabled: bool, sink: Option<Arc<LogSink>>) -> Self {
        Self {
            enabled: enabled && sink.is_some(),
            buf: RefCell::new(Vec::with_capacity(FLUSH_AT + 1024)),
            lines: std::cell::Cell::new(0),
            sink,
        }
    }

    pub fn record(&self, e: &AccessEntry<'_>, origins: &[Origin], format: AccessLogFormat) {
        if !self.enabled {
            return;
        }
        let mut buf = self.buf.borrow_mut();
        match format {
            AccessLogFormat::Lb => write_lb(&mut buf, e, origins),
            AccessLogFormat::Combined => write_combined(&mut buf, e),
            AccessLogFormat::Json => write_json(&mut buf, e, origins),
        }
        self.lines.set(self.lines.get() + 1);
        if buf.len() >= FLUSH_AT {
            drop(buf);
            self.flush();
        }
    }

    /// Hands the buffered lines to the writer thread (never waits for it).
    pub fn flush(&self) {
        let Some(sink) = &self.sink else { return };
        let mut buf = self.buf.borrow_mut();
        if buf.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut *buf, Vec::with_capacity(FLUSH_AT + 1024));
        sink.submit(batch, self.lines.replace(0));
    }
}

fn write_lb(buf: &mut Vec<u8>, e: &AccessEntry<'_>, origins: &[Origin]) {
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
        write_attempts(buf, e.attempts, origins);
    }
    buf.push(b' ');
    buf.extend_from_slice(e.protocol.as_bytes());
    buf.push(b'\n');
}

/// `%h - - [%t] "%r" %>s %b "%{Referer}i" "%{User-agent}i"`.
fn write_combined(buf: &mut Vec<u8>, e: &AccessEntry<'_>) {
    // "Fri, 04 Dec 2026 18:05:01 GMT" → "04/Dec/2026:18:05:01 +0000".
    let date = httpdate::fmt_http_date(SystemTime::now());
    let (day, month, year, time) = (&date[5..7], &date[8..11], &date[12..16], &date[17..25]);
    let _ = write!(
        buf,
        "{} - - [{day}/{month}/{year}:{time} +0000] \"{} {} {}\" {} - \"",
        e.client, e.method, e.path, e.protocol, e.status
    );
    quoted(buf, e.referer);
    buf.extend_from_slice(b"\" \"");
    quoted(buf, e.user_agent);
    buf.extend_from_slice(b"\"\n");
}

/// A field inside double quotes: `-` when absent, `"` and `\` escaped.
fn quoted(buf: &mut Vec<u8>, value: Option<&[u8]>) {
    let Some(value) = value else {
        buf.push(b'-');
        return;
    };
    for &b in value {
        if b == b'"' || b == b'\\' {
            buf.push(b'\\');
        }
        buf.push(b);
    }
}

fn text(v: Option<&[u8]>) -> Option<std::borrow::Cow<'_, str>> {
    v.map(String::from_utf8_lossy)
}

fn write_json(buf: &mut Vec<u8>, e: &AccessEntry<'_>, origins: &[Origin]) {
    let line = JsonLine {
        time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        client: e.client,
        method: e.method,
        path: e.path,
        protocol: e.protocol,
        host: text(e.host),
        status: e.status,
        duration_ms: e.total_ms,
        attempts: e
            .attempts
            .iter()
            .map(|a| JsonAttempt {
                origin: origins.get(a.origin).map_or("?", |o| o.id.as_str()),
                status: match a.outcome {
                    Outcome::Status(s) => Some(s),
                    Outcome::Error(_) => None,
                },
                error: match a.outcome {
                    Outcome::Status(_) => None,
                    Outcome::Error(e) => Some(e),
                },
                ms: a.ms,
            })
            .collect(),
        referer: text(e.referer),
        user_agent: text(e.user_agent),
    };
    if serde_json::to_writer(&mut *buf, &line).is_ok() {
        buf.push(b'\n');
    }
}
