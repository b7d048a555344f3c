//! A connection as the data plane sees it: plain TCP, or TLS over TCP (monoio-rustls), on
//! either side. One enum rather than generics keeps one copy of the exchange code; the
//! match per I/O call costs nothing next to the syscall or io_uring submission behind it.
//!
//! A TLS stream whose read or write was cut short (its future dropped by a timeout) is
//! broken for good: monoio-rustls lends its record buffer to the in-flight operation and
//! never gets it back, and the next operation would panic. lb closes such connections
//! anyway; [`Tls`] remembers the cut and turns any later use into an error, so a close
//! path (close_notify, a 408) cannot touch a broken buffer. A read can itself write (an
//! alert for a bad record goes out before the read returns), so a cut read counts as a
//! cut write too: a TLS client that times out gets no 408 and no close_notify, only the
//! close.

use std::{
    io,
    os::fd::{AsRawFd, RawFd},
};

use monoio::{
    BufResult,
    buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut},
    io::{AsyncReadRent, AsyncWriteRent},
    net::TcpStream,
};
use monoio_rustls::{ClientTlsStream, ServerTlsStream};

pub(super) enum Stream {
    Plain(TcpStream),
    /// A viewer's HTTPS connection (lb is the server).
    ServerTls(Tls<ServerTlsStream<TcpStream>>),
    /// A connection to an HTTPS origin (lb is the client).
    ClientTls(Tls<ClientTlsStream<TcpStream>>),
    /// One HTTP/2 stream of a viewer, read and written as an HTTP/1.1 connection that
    /// carries one request ([`super::h2_stream`]).
    H2(Box<super::h2_stream::H2Stream>),
    /// One HTTP/2 stream to an origin, written and read as an HTTP/1.1 connection that
    /// carries one request ([`super::h2_upstream`]).
    H2Up(Box<super::h2_upstream::H2Upstream>),
}

/// A monoio-rustls stream (boxed: rustls state is large) and whether an operation on it
/// was cut short.
pub(super) struct Tls<S> {
    pub stream: Box<S>,
    fd: RawFd,
    read_cut: bool,
    write_cut: bool,
}

impl<S> Tls<S> {
    pub fn new(stream: S, fd: RawFd) -> Self {
        Self {
            stream: Box::new(stream),
            fd,
            read_cut: false,
            write_cut: false,
        }
    }

    /// Whether every operation so far ran to completion (the stream is usable).
    pub fn intact(&self) -> bool {
        !self.read_cut && !self.write_cut
    }
}

fn broken() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "TLS stream unusable after an interrupted operation",
    )
}

impl Stream {
    /// Whether the viewer (or origin) connection is HTTPS: for an HTTP/2 stream, whether
    /// its connection is.
    pub fn is_tls(&self) -> bool {
        match self {
            Self::Plain(_) => false,
            Self::ServerTls(_) | Self::ClientTls(_) => true,
            Self::H2(s) => s.is_tls(),
            // Only asked of client streams, and for the pool's slot (never pooled).
            Self::H2Up(_) => false,
        }
    }

    /// An HTTP/2 stream to an origin that the origin refused unprocessed.
    pub fn refused_by_origin(&self) -> bool {
        matches!(self, Self::H2Up(s) if s.refused())
    }

    /// Whether this connection may go back to the pool after its response: an HTTP/2
    /// stream cannot (its connection is shared and stays open without it).
    pub fn poolable(&self) -> bool {
        !matches!(self, Self::H2(_) | Self::H2Up(_))
    }

    /// An HTTP/2 stream: it carries one request, and closing it closes no connection.
    pub fn is_h2(&self) -> bool {
        matches!(self, Self::H2(_))
    }

    /// Waits until the socket has something to read (or is closed), holding no buffer.
    /// On TLS a read is the only way to know (rustls may hold decrypted bytes already):
    /// this returns at once.
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.readable(false).await,
            Self::ServerTls(_) | Self::ClientTls(_) | Self::H2(_) | Self::H2Up(_) => Ok(()),
        }
    }
}

impl AsRawFd for Stream {
    /// The TCP socket underneath (for the pool's liveness peek).
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Self::Plain(s) => s.as_raw_fd(),
            Self::ServerTls(t) => t.fd,
            Self::ClientTls(t) => t.fd,
            Self::H2(s) => s.fd(),
            Self::H2Up(s) => s.fd(),
        }
    }
}

impl<S: AsyncReadRent + AsyncWriteRent> Tls<S> {
    // Reads may write (alerts), so they mark both halves while in flight.
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        if !self.intact() {
            return (Err(broken()), buf);
        }
        // Both stay set if this future is dropped mid-read.
        (self.read_cut, self.write_cut) = (true, true);
        let result = self.stream.read(buf).await;
        (self.read_cut, self.write_cut) = (false, false);
        result
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        if !self.intact() {
            return (Err(broken()), buf);
        }
        (self.read_cut, self.write_cut) = (true, true);
        let result = self.stream.readv(buf).await;
        (self.read_cut, self.write_cut) = (false, false);
        result
    }

    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        if self.write_cut {
            return (Err(broken()), buf);
        }
        self.write_cut = true;
        let result = self.stream.write(buf).await;
        self.write_cut = false;
        result
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        if self.write_cut {
            return (Err(broken()), buf);
        }
        self.write_cut = true;
        let result = self.stream.writev(buf).await;
        self.write_cut = false;
        result
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.write_cut {
            return Err(broken());
        }
        self.write_cut = true;
        let result = self.stream.flush().await;
        self.write_cut = false;
        result
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        if self.write_cut {
            return Err(broken());
        }
        self.write_cut = true;
        let result = self.stream.shutdown().await;
        self.write_cut = false;
        result
    }
}

// The TLS arms are boxed: monoio-rustls's futures are large, and without the box every
// future that reads or writes a Stream (an idle connection's read included) would be as
// large as a TLS one, even on plain connections. One allocation per TLS operation is
// small next to its crypto.
impl AsyncReadRent for Stream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Self::Plain(s) => s.read(buf).await,
            Self::ServerTls(t) => Box::pin(t.read(buf)).await,
            Self::ClientTls(t) => Box::pin(t.read(buf)).await,
            Self::H2(s) => {
                let mut buf = buf;
                let result = Box::pin(s.read_into(&mut buf)).await;
                (result, buf)
            }
            Self::H2Up(s) => {
                let mut buf = buf;
                let result = Box::pin(s.read_into(&mut buf)).await;
                (result, buf)
            }
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Self::Plain(s) => s.readv(buf).await,
            Self::ServerTls(t) => Box::pin(t.readv(buf)).await,
            Self::ClientTls(t) => Box::pin(t.readv(buf)).await,
            // Nothing reads an HTTP/2 stream with vectors.
            Self::H2(_) | Self::H2Up(_) => (Err(io::ErrorKind::Unsupported.into()), buf),
        }
    }
}

impl AsyncWriteRent for Stream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Self::Plain(s) => s.write(buf).await,
            Self::ServerTls(t) => Box::pin(t.write(buf)).await,
            Self::ClientTls(t) => Box::pin(t.write(buf)).await,
            Self::H2(s) => {
                let result = Box::pin(s.write_from(crate::kernel::owned_bytes(&buf))).await;
                (result, buf)
            }
            Self::H2Up(s) => {
                let result = Box::pin(s.write_from(crate::kernel::owned_bytes(&buf))).await;
                (result, buf)
            }
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Self::Plain(s) => s.writev(buf).await,
            Self::ServerTls(t) => Box::pin(t.writev(buf)).await,
            Self::ClientTls(t) => Box::pin(t.writev(buf)).await,
            // Nothing writes an HTTP/2 stream with vectors.
            Self::H2(_) | Self::H2Up(_) => (Err(io::ErrorKind::Unsupported.into()), buf),
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush().await,
            Self::ServerTls(t) => t.flush().await,
            Self::ClientTls(t) => t.flush().await,
            Self::H2(_) | Self::H2Up(_) => Ok(()),
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.shutdown().await,
            Self::ServerTls(t) => t.shutdown().await,
            Self::ClientTls(t) => t.shutdown().await,
            Self::H2(s) => {
                s.finish();
                Ok(())
            }
            // Dropping the stream resets it if its exchange did not finish.
            Self::H2Up(_) => Ok(()),
        }
    }
}
