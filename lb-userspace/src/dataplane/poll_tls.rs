//! TLS for HTTP/2 connections, in poll form (tokio's I/O traits, which `h2` drives):
//! rustls over a plain TCP socket adapted by monoio-compat. `h2` reads and writes a
//! connection concurrently; monoio-rustls's streams support only one operation at a
//! time through that adapter (a flush and a write in flight together corrupt its write
//! buffer), so HTTP/2 keeps rustls state here instead, where each poll is synchronous
//! and only the socket underneath has operations in flight.
//!
//! The handshake itself ([`handshake`]) runs on the monoio socket with owned buffers,
//! before the protocol (HTTP/1.1 or HTTP/2) is known; every byte it read is given to
//! rustls, so nothing is lost whichever stream type the connection continues in.

use std::{
    io::{self, Read, Write},
    ops::{Deref, DerefMut},
    pin::Pin,
    task::{Context, Poll},
};

use monoio::{
    io::{AsyncReadRent, AsyncWriteRentExt},
    net::TcpStream,
};
use rustls::{ConnectionCommon, SideData};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Completes a TLS handshake on `tcp` (client or server side, as `conn` is).
pub(in crate::dataplane) async fn handshake<C, SD>(
    tcp: &mut TcpStream,
    conn: &mut C,
) -> io::Result<()>
where
    C: DerefMut<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    let mut out = Vec::new();
    let mut input = Vec::with_capacity(16 * 1024);
    loop {
        while conn.wants_write() {
            out.clear();
            conn.write_tls(&mut out)?;
            let (written, back) = tcp.write_all(out).await;
            out = back;
            written?;
        }
        if !conn.is_handshaking() {
            return Ok(());
        }
        input.clear();
        let (read, back) = tcp.read(input).await;
        input = back;
        if read? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let mut pending = &input[..];
        while !pending.is_empty() {
            if conn.read_tls(&mut pending)? == 0 {
                return Err(io::Error::other("TLS input buffer full"));
            }
            if let Err(e) = conn.process_new_packets() {
                // The alert for the error goes out before the close.
                out.clear();
                let _ = conn.write_tls(&mut out);
                let _ = tcp.write_all(out).await;
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }
}

/// A TLS connection after its handshake, for `h2`.
pub(in crate::dataplane) struct PollTls<IO, C> {
    io: IO,
    conn: C,
    /// The peer closed the TCP connection.
    eof: bool,
    /// close_notify is queued.
    closing: bool,
}

impl<IO, C> PollTls<IO, C> {
    pub fn new(io: IO, conn: C) -> Self {
        Self {
            io,
            conn,
            eof: false,
            closing: false,
        }
    }
}

/// `std::io` over a poll-style stream for rustls's `read_tls`/`write_tls`: pending is
/// "would block".
struct SyncIo<'a, 'b, IO> {
    io: &'a mut IO,
    cx: &'a mut Context<'b>,
}

impl<IO: AsyncRead + Unpin> Read for SyncIo<'_, '_, IO> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut buf = ReadBuf::new(buf);
        match Pin::new(&mut *self.io).poll_read(self.cx, &mut buf) {
            Poll::Ready(Ok(())) => Ok(buf.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<IO: AsyncWrite + Unpin> Write for SyncIo<'_, '_, IO> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match Pin::new(&mut *self.io).poll_flush(self.cx) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<IO, C, SD> PollTls<IO, C>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    C: DerefMut + Deref<Target = ConnectionCommon<SD>> + Unpin,
    SD: SideData,
{
    /// Writes what rustls has queued; `Ready(Ok)` once nothing is left.
    fn poll_write_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.wants_write() {
            let mut sync = SyncIo {
                io: &mut self.io,
                cx,
            };
            match self.conn.write_tls(&mut sync) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Reads TLS records from the socket into rustls: `Ready(Ok(false))` at EOF.
    fn poll_read_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let mut sync = SyncIo {
            io: &mut self.io,
            cx,
        };
        match self.conn.read_tls(&mut sync) {
            Ok(0) => Poll::Ready(Ok(false)),
            Ok(_) => {
                if let Err(e) = self.conn.process_new_packets() {
                    // Best effort: the alert.
                    let _ = self.poll_write_tls(cx);
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                }
                Poll::Ready(Ok(true))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl<IO, C, SD> AsyncRead for PollTls<IO, C>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    C: DerefMut + Deref<Target = ConnectionCommon<SD>> + Unpin,
    SD: SideData,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.conn.reader().read(buf.initialize_unfilled()) {
                Ok(n) => {
                    // 0: the peer's close_notify, a clean end.
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            if this.eof {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            match this.poll_read_tls(cx) {
                Poll::Ready(Ok(true)) => {
                    // Reading may queue records to send (key updates).
                    if let Poll::Ready(Err(e)) = this.poll_write_tls(cx) {
                        return Poll::Ready(Err(e));
                    }
                }
                Poll::Ready(Ok(false)) => this.eof = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<IO, C, SD> AsyncWrite for PollTls<IO, C>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    C: DerefMut + Deref<Target = ConnectionCommon<SD>> + Unpin,
    SD: SideData,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            let n = this.conn.writer().write(buf)?;
            // Encrypted records go out as far as the socket takes them; what it does not
            // take yet stays queued in rustls (bounded by its buffer limit).
            let flushed = this.poll_write_tls(cx);
            if n > 0 {
                if let Poll::Ready(Err(e)) = flushed {
                    return Poll::Ready(Err(e));
                }
                return Poll::Ready(Ok(n));
            }
            match flushed {
                // rustls's buffer was full and is now drained: try again.
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.conn.writer().flush()?;
        match this.poll_write_tls(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !std::mem::replace(&mut this.closing, true) {
            this.conn.send_close_notify();
        }
        match this.poll_write_tls(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io).poll_shutdown(cx),
            other => other,
        }
    }
}
