//! Streaming bodies between the two sides of an exchange with bounded memory: bytes move
//! from one connection's read buffer to the other socket, one buffer-full at a time.
//!
//! Content-Length bodies pass through untouched. Chunked bodies are decoded strictly and
//! re-encoded canonically, their allowed trailer fields kept (or sent raw, without
//! trailers, to HTTP/1.0 clients). Close-delimited responses
//! become chunked for HTTP/1.1 clients, so their connection can stay open.

use std::time::Duration;

use super::{
    conn::{BufferedStream, write_all, write_from},
    stream::Stream,
};
use crate::http::{CHUNK_HEADER_RESERVE, ChunkedDecoder, ChunkedError, encode_chunk_header};

/// Which side of the exchange a body failure came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    Client,
    Origin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BodyErrorKind {
    /// No progress within the body timeout.
    Timeout,
    /// The peer closed before the body ended.
    Closed,
    /// A socket error.
    Io,
    /// The chunked framing was invalid.
    Framing(ChunkedError),
    /// The body exceeded the configured limit.
    TooLarge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BodyError {
    pub side: Side,
    pub kind: BodyErrorKind,
}

impl BodyError {
    fn new(side: Side, kind: BodyErrorKind) -> Self {
        Self { side, kind }
    }
}

/// How the body goes out to the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Encoding {
    /// Bytes as decoded (or as received, for Content-Length).
    Raw,
    /// Canonical chunked framing.
    Chunked,
}

/// Where a body comes from and how it is delimited there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Source {
    Length(u64),
    Chunked,
    UntilClose,
}

/// How one body moves: where it comes from, how it goes out, and its bounds.
#[derive(Clone, Copy, Debug)]
pub(super) struct BodyPlan {
    pub source: Source,
    pub encoding: Encoding,
    /// Who `src` is, so failures name the right side.
    pub src_side: Side,
    /// Longest pause without progress.
    pub idle: Duration,
    /// Largest decoded size (chunked sources).
    pub limit: u64,
}

/// A copy of a body's decoded bytes, kept while it fits: the cache stores a response
/// while it streams to the client.
#[derive(Debug)]
pub(super) struct Capture {
    pub bytes: Vec<u8>,
    limit: usize,
    /// The body outgrew `limit`: nothing is kept.
    pub overflowed: bool,
}

impl Capture {
    pub fn new(limit: usize, expected: Option<u64>) -> Self {
        let overflowed = expected.is_some_and(|n| n > limit as u64);
        let reserve = expected.map_or(0, |n| (n as usize).min(limit));
        Self {
            bytes: if overflowed {
                Vec::new()
            } else {
                Vec::with_capacity(reserve)
            },
            limit,
            overflowed,
        }
    }

    pub fn take(&mut self, data: &[u8]) {
        if self.overflowed {
            return;
        }
        if self.bytes.len() + data.len() > self.limit {
            self.overflowed = true;
            self.bytes = Vec::new();
        } else {
            self.bytes.extend_from_slice(data);
        }
    }
}

/// Copies one body from `src` (starting with its buffered bytes) to `dst`, keeping a
/// copy of the decoded bytes in `capture` if given.
pub(super) async fn forward(
    src: &mut BufferedStream,
    dst: &mut Stream,
    plan: BodyPlan,
    scratch: &mut Vec<u8>,
    mut capture: Option<&mut Capture>,
) -> Result<u64, BodyError> {
    let BodyPlan {
        source,
        encoding,
        src_side,
        idle,
        limit,
    } = plan;
    let dst_side = match src_side {
        Side::Client => Side::Origin,
        Side::Origin => Side::Client,
    };
    match source {
        Source::Length(n) => copy_length(src, dst, n, src_side, dst_side, idle, &mut capture)
            .await
            .map(|()| n),
        Source::Chunked => {
            let sides = (src_side, dst_side);
            copy_chunked(
                src,
                dst,
                encoding,
                sides,
                idle,
                limit,
                scratch,
                &mut capture,
            )
            .await
        }
        Source::UntilClose => {
            let sides = (src_side, dst_side);
            copy_until_close(src, dst, encoding, sides, idle, scratch, &mut capture).await
        }
    }
}

/// Runs one socket operation with the body's idle timeout, blaming `side` for a timeout
/// or an error.
async fn timed<T>(
    side: Side,
    idle: Duration,
    op: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, BodyError> {
    match monoio::time::timeout(idle, op).await {
        Err(_) => Err(BodyError::new(side, BodyErrorKind::Timeout)),
        Ok(Err(_)) => Err(BodyError::new(side, BodyErrorKind::Io)),
        Ok(Ok(v)) => Ok(v),
    }
}

/// Reads more into `src`; maps timeouts, EOF and errors to `side`.
async fn fill(src: &mut BufferedStream, side: Side, idle: Duration) -> Result<usize, BodyError> {
    timed(side, idle, src.fill()).await
}

async fn copy_length(
    src: &mut BufferedStream,
    dst: &mut Stream,
    n: u64,
    src_side: Side,
    dst_side: Side,
    idle: Duration,
    capture: &mut Option<&mut Capture>,
) -> Result<(), BodyError> {
    let mut left = n;
    while left > 0 {
        if !src.has_data() && fill(src, src_side, idle).await? == 0 {
            return Err(BodyError::new(src_side, BodyErrorKind::Closed));
        }
        let take = left.min(src.data().len() as u64) as usize;
        if let Some(c) = capture {
            c.take(&src.data()[..take]);
        }
        timed(dst_side, idle, src.forward(dst, take)).await?;
        left -= take as u64;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn copy_chunked(
    src: &mut BufferedStream,
    dst: &mut Stream,
    encoding: Encoding,
    (src_side, dst_side): (Side, Side),
    idle: Duration,
    limit: u64,
    scratch: &mut Vec<u8>,
    capture: &mut Option<&mut Capture>,
) -> Result<u64, BodyError> {
    // Trailers (gRPC's status) go on when the body stays chunked.
    let mut decoder = match encoding {
        Encoding::Chunked => ChunkedDecoder::keeping_trailers(),
        Encoding::Raw => ChunkedDecoder::new(),
    };
    let mut total = 0u64;
    loop {
        if !src.has_data() && fill(src, src_side, idle).await? == 0 {
            return Err(BodyError::new(src_side, BodyErrorKind::Closed));
        }
        scratch.clear();
        if encoding == Encoding::Chunked {
            scratch.resize(CHUNK_HEADER_RESERVE, 0);
        }
        let base = scratch.len();
        let progress = decoder
            .decode(src.data(), scratch)
            .map_err(|e| BodyError::new(src_side, BodyErrorKind::Framing(e)))?;
        src.consume(progress.consumed);
        let produced = scratch.len() - base;
        total += produced as u64;
        if total > limit {
            return Err(BodyError::new(src_side, BodyErrorKind::TooLarge));
        }
        if produced > 0 {
            if let Some(c) = capture {
                c.take(&scratch[base..]);
            }
            let from = match encoding {
                Encoding::Chunked => encode_chunk_header(scratch),
                Encoding::Raw => base,
            };
            write_timed(dst, scratch, from, dst_side, idle).await?;
        }
        if progress.done {
            if encoding == Encoding::Chunked {
                scratch.clear();
                scratch.extend_from_slice(b"0\r\n");
                for (name, value) in decoder.take_trailers() {
                    scratch.extend_from_slice(name.as_bytes());
                    scratch.extend_from_slice(b": ");
                    scratch.extend_from_slice(&value);
                    scratch.extend_from_slice(b"\r\n");
                }
                scratch.extend_from_slice(b"\r\n");
                timed(dst_side, idle, write_all(dst, scratch)).await?;
            }
            return Ok(total);
        }
    }
}

async fn copy_until_close(
    src: &mut BufferedStream,
    dst: &mut Stream,
    encoding: Encoding,
    (src_side, dst_side): (Side, Side),
    idle: Duration,
    scratch: &mut Vec<u8>,
    capture: &mut Option<&mut Capture>,
) -> Result<u64, BodyError> {
    let mut total = 0u64;
    loop {
        if !src.has_data() && fill(src, src_side, idle).await? == 0 {
            if encoding == Encoding::Chunked {
                write_last_chunk(dst, scratch, dst_side, idle).await?;
            }
            return Ok(total);
        }
        let n = src.data().len();
        total += n as u64;
        if let Some(c) = capture {
            c.take(src.data());
        }
        match encoding {
            Encoding::Raw => timed(dst_side, idle, src.forward(dst, n)).await?,
            Encoding::Chunked => {
                scratch.clear();
                scratch.resize(CHUNK_HEADER_RESERVE, 0);
                scratch.extend_from_slice(src.data());
                src.consume(n);
                let from = encode_chunk_header(scratch);
                write_timed(dst, scratch, from, dst_side, idle).await?;
            }
        }
    }
}

async fn write_timed(
    dst: &mut Stream,
    buf: &mut Vec<u8>,
    from: usize,
    side: Side,
    idle: Duration,
) -> Result<(), BodyError> {
    timed(side, idle, write_from(dst, buf, from)).await
}

async fn write_last_chunk(
    dst: &mut Stream,
    scratch: &mut Vec<u8>,
    side: Side,
    idle: Duration,
) -> Result<(), BodyError> {
    scratch.clear();
    scratch.extend_from_slice(b"0\r\n\r\n");
    timed(side, idle, write_all(dst, scratch)).await
}
