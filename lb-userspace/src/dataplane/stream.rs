//! A connection as the data plane sees it: plain TCP, or TLS over TCP (monoio-rustls), on
//! either side. One enum rather than generics keeps one copy of the exchange code; the
//! match per I/O call costs nothing next to the syscall or io_uring submission behind it.

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
    /// A viewer's HTTPS connection (lb is the server). Boxed: rustls state is large.
    ServerTls(Box<ServerTlsStream<TcpStream>>, RawFd),
    /// A connection to an HTTPS origin (lb is the client).
    ClientTls(Box<ClientTlsStream<TcpStream>>, RawFd),
}

impl Stream {
    pub fn is_tls(&self) -> bool {
        !matches!(self, Self::Plain(_))
    }
}

impl AsRawFd for Stream {
    /// The TCP socket underneath (for the pool's liveness peek).
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Self::Plain(s) => s.as_raw_fd(),
            Self::ServerTls(_, fd) | Self::ClientTls(_, fd) => *fd,
        }
    }
}

impl AsyncReadRent for Stream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Self::Plain(s) => s.read(buf).await,
            Self::ServerTls(s, _) => s.read(buf).await,
            Self::ClientTls(s, _) => s.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Self::Plain(s) => s.readv(buf).await,
            Self::ServerTls(s, _) => s.readv(buf).await,
            Self::ClientTls(s, _) => s.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for Stream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Self::Plain(s) => s.write(buf).await,
            Self::ServerTls(s, _) => s.write(buf).await,
            Self::ClientTls(s, _) => s.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Self::Plain(s) => s.writev(buf).await,
            Self::ServerTls(s, _) => s.writev(buf).await,
            Self::ClientTls(s, _) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush().await,
            Self::ServerTls(s, _) => s.flush().await,
            Self::ClientTls(s, _) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.shutdown().await,
            Self::ServerTls(s, _) => s.shutdown().await,
            Self::ClientTls(s, _) => s.shutdown().await,
        }
    }
}
