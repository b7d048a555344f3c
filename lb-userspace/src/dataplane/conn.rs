//! A stream (plain or TLS) with its own read buffer, using monoio's owned-buffer I/O.
//! Both the client and the origin side of an exchange are one of these. The buffer is
//! taken when there is something to read and given back to the worker's
//! [`BufferPool`] when the connection goes idle with nothing buffered.

use std::io;

use monoio::{
    buf::{IoBuf, IoBufMut},
    io::{AsyncReadRent, AsyncWriteRentExt},
};

use super::{buffers::BufferPool, stream::Stream};

/// Read size used when the buffer is empty or full.
pub(super) const READ_CHUNK: usize = 16 * 1024;

/// The buffer an idle connection's pending read holds (see `fill_idle`).
pub(super) const IDLE_READ: usize = 512;

pub(super) struct BufferedStream {
    pub stream: Stream,
    buf: Vec<u8>,
    /// Unconsumed data is `buf[start..]`.
    start: usize,
}

impl BufferedStream {
    /// Wraps `stream` with a recycled (cleared) buffer.
    pub fn with_buffer(stream: Stream, mut buf: Vec<u8>) -> Self {
        buf.clear();
        Self {
            stream,
            buf,
            start: 0,
        }
    }

    /// The stream and the buffer, for recycling. Unconsumed bytes are discarded.
    pub fn into_parts(self) -> (Stream, Vec<u8>) {
        (self.stream, self.buf)
    }

    /// The stream and the bytes read from it but not consumed (for a handover to
    /// another protocol's reader).
    pub fn into_parts_keeping_data(mut self) -> (Stream, Vec<u8>) {
        self.buf.drain(..self.start);
        (self.stream, self.buf)
    }

    /// Bytes read but not yet consumed.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// The unconsumed bytes, to be rewritten in place (the request line's version).
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..]
    }

    /// Gives a full-size buffer back to `pool` if it holds nothing unconsumed (a small
    /// idle-read buffer is kept for the next idle read).
    pub fn release(&mut self, pool: &BufferPool) {
        if !self.has_data() {
            self.start = 0;
            if self.buf.capacity() <= IDLE_READ {
                self.buf.clear();
            } else {
                pool.put(std::mem::take(&mut self.buf));
            }
        }
    }

    /// Frees the small idle-read buffer, if that is all the stream holds: a connection
    /// that waits for readability needs none between requests.
    pub fn shed_idle_buffer(&mut self) {
        if !self.has_data() && self.buf.capacity() <= IDLE_READ {
            self.buf = Vec::new();
            self.start = 0;
        }
    }

    /// The read of an idle connection, into a small buffer of its own ([`IDLE_READ`]
    /// bytes): one read per request, as a buffered read costs, without holding a
    /// full-size buffer while idle. (Waiting for readability first would hold none, but
    /// costs a second io_uring operation and wake-up per request: measured at about 3 us
    /// of CPU, a sixth of lb's per-request cost.) Most request heads fit; a larger one
    /// moves to a pooled buffer on the next [`fill_from`](Self::fill_from).
    pub async fn fill_idle(&mut self) -> io::Result<usize> {
        if self.buf.capacity() == 0 {
            self.buf = Vec::with_capacity(IDLE_READ);
            self.start = 0;
        }
        if self.buf.capacity() == self.buf.len() {
            return self.fill().await;
        }
        self.read_into_spare().await
    }

    /// [`fill`](Self::fill), moving to a full-size buffer from `pool` first if the
    /// stream has none or only its small idle one.
    pub async fn fill_from(&mut self, pool: &BufferPool) -> io::Result<usize> {
        if self.buf.capacity() < READ_CHUNK {
            let mut full = pool.take();
            full.extend_from_slice(self.data());
            self.buf = full;
            self.start = 0;
        }
        self.fill().await
    }

    pub fn has_data(&self) -> bool {
        self.start < self.buf.len()
    }

    pub fn consume(&mut self, n: usize) {
        debug_assert!(self.start + n <= self.buf.len());
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Reads more bytes after the unconsumed ones. Returns how many arrived (0: EOF).
    /// Cancel-safe in the sense that matters here: if the future is dropped (timeout), the
    /// buffer is lost and the caller must close the connection.
    pub async fn fill(&mut self) -> io::Result<usize> {
        if self.start > 0 && self.buf.capacity() - self.buf.len() < READ_CHUNK / 2 {
            self.buf.copy_within(self.start.., 0);
            self.buf.truncate(self.buf.len() - self.start);
            self.start = 0;
        }
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 2 {
            self.buf.reserve(READ_CHUNK);
        }
        self.read_into_spare().await
    }

    /// One read into the buffer's spare capacity (after its bytes), which must be
    /// non-empty.
    async fn read_into_spare(&mut self) -> io::Result<usize> {
        let buf = std::mem::take(&mut self.buf);
        let start = std::mem::take(&mut self.start);
        let (len, cap) = (buf.len(), buf.capacity());
        let (result, slice) = self.stream.read(buf.slice_mut(len..cap)).await;
        self.buf = slice.into_inner();
        self.start = start;
        result
    }

    /// Writes the first `n` unconsumed bytes to `dst` and consumes them: body bytes go
    /// from one socket to the other straight out of this buffer.
    pub async fn forward(&mut self, dst: &mut Stream, n: usize) -> io::Result<()> {
        debug_assert!(n <= self.data().len());
        let buf = std::mem::take(&mut self.buf);
        let start = std::mem::take(&mut self.start);
        let (result, slice) = dst.write_all(buf.slice(start..start + n)).await;
        self.buf = slice.into_inner();
        self.start = start;
        result?;
        self.consume(n);
        Ok(())
    }
}

/// Writes all of `out` to `stream`, keeping the buffer for reuse.
pub(super) async fn write_all(stream: &mut Stream, out: &mut Vec<u8>) -> io::Result<()> {
    let buf = std::mem::take(out);
    let (result, buf) = stream.write_all(buf).await;
    *out = buf;
    result.map(|_| ())
}

/// Writes `out[from..]` to `stream`, keeping the buffer.
pub(super) async fn write_from(
    stream: &mut Stream,
    out: &mut Vec<u8>,
    from: usize,
) -> io::Result<()> {
    let buf = std::mem::take(out);
    let end = buf.len();
    let (result, slice) = stream.write_all(buf.slice(from..end)).await;
    *out = slice.into_inner();
    result.map(|_| ())
}
