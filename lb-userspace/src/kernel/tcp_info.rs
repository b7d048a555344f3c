//! `TCP_INFO` on one of lb's own connections: whether the kernel has hit a retransmission
//! timeout on it with bytes still unacknowledged. The data plane asks only after the
//! kernel's socket events show a retransmission to that origin, so this syscall is on the
//! failure path, never on the request path.

use std::os::fd::RawFd;

/// What `TCP_INFO` says about a connection carrying a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpProgress {
    /// Segments sent and not yet acknowledged.
    pub unacked: u32,
    /// Retransmission timeouts fired since the last acknowledgement (`icsk_retransmits`);
    /// loss probes and fast retransmits do not count.
    pub rto_retransmits: u8,
    /// Exponential backoff steps of the retransmission timer.
    pub backoff: u8,
}

impl TcpProgress {
    /// Request bytes sit unacknowledged after at least one retransmission timeout: the
    /// path to the origin, or the origin itself, stopped answering.
    pub fn stalled(&self) -> bool {
        self.unacked > 0 && (self.rto_retransmits > 0 || self.backoff > 0)
    }
}

/// Reads `TCP_INFO` of `fd`; `None` if the kernel refuses (not a TCP socket, closed).
/// Taking a raw descriptor is sound: getsockopt on a number that is not (or no longer)
/// the caller's socket reads nothing into lb's memory but a `tcp_info`, or fails.
pub fn tcp_progress(fd: RawFd) -> Option<TcpProgress> {
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt only reads `fd` as a number; `info` is a writable,
    // zero-initialised tcp_info and `len` its size, so the kernel writes at most that
    // many bytes (older kernels write fewer, leaving zeros).
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: zero-initialised above and partially or fully written by the kernel; every
    // bit pattern is a valid tcp_info (plain integers).
    let info = unsafe { info.assume_init() };
    Some(TcpProgress {
        unacked: info.tcpi_unacked,
        rto_retransmits: info.tcpi_retransmits,
        backoff: info.tcpi_backoff,
    })
}

#[cfg(test)]
mod tests {
    use std::{io::Write, os::fd::AsRawFd};

    use super::*;

    #[test]
    fn a_healthy_loopback_connection_is_not_stalled() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let p = tcp_progress(client.as_raw_fd()).expect("TCP_INFO on a TCP socket");
        assert_eq!((p.rto_retransmits, p.backoff), (0, 0));
        assert!(!p.stalled());
        assert!(
            TcpProgress {
                unacked: 1,
                rto_retransmits: 1,
                backoff: 1
            }
            .stalled()
        );
        assert!(
            !TcpProgress {
                unacked: 0,
                rto_retransmits: 1,
                backoff: 1
            }
            .stalled(),
            "everything acknowledged"
        );
    }
}
