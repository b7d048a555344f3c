//! Passing open sockets between lb processes over a Unix socket (SCM_RIGHTS), for an
//! upgrade that drops nothing: the new process receives the very listening sockets the
//! old one accepts on (the same kernel objects, with their accept queues), so no
//! connection finds a port without a listener. HAProxy and Pingora do the same.

use std::{
    io::{IoSlice, IoSliceMut},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::net::UnixStream,
    },
};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

/// Sockets passed in one message at most (SCM_MAX_FD is 253).
pub const MAX_FDS: usize = 253;

/// Sends `fds` and `payload` (at most 64 KiB) in one message.
pub fn send_fds(stream: &UnixStream, fds: &[RawFd], payload: &[u8]) -> std::io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(std::io::Error::other(format!(
            "{} sockets to pass, at most {MAX_FDS}",
            fds.len()
        )));
    }
    let len = (payload.len() as u32).to_be_bytes();
    let iov = [IoSlice::new(&len), IoSlice::new(payload)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    sendmsg::<()>(stream.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(std::io::Error::from)?;
    Ok(())
}

/// Receives what [`send_fds`] sent: the sockets (now owned by this process) and the
/// payload.
pub fn recv_fds(stream: &UnixStream) -> std::io::Result<(Vec<OwnedFd>, Vec<u8>)> {
    let mut buf = vec![0u8; 4 + 64 * 1024];
    let mut cmsg_space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (received, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(std::io::Error::from)?;
        let mut fds = Vec::new();
        for c in msg.cmsgs().map_err(std::io::Error::from)? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                for fd in raw {
                    // SAFETY: the kernel just installed `fd` in this process's table for
                    // this message (SCM_RIGHTS); nothing else refers to it, so this
                    // OwnedFd is its only owner and closes it exactly once.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        (msg.bytes, fds)
    };
    if received < 4 {
        return Err(std::io::Error::other("upgrade message too short"));
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let end = (4 + len).min(received);
    Ok((fds, buf[4..end].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_socket_crosses_and_still_accepts() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        send_fds(&a, &[listener.as_raw_fd()], b"hello").unwrap();
        drop(listener);
        let (fds, payload) = recv_fds(&b).unwrap();
        assert_eq!(payload, b"hello");
        let received = std::net::TcpListener::from(fds.into_iter().next().unwrap());
        let _client = std::net::TcpStream::connect(addr).unwrap();
        assert!(received.accept().is_ok());
    }
}
