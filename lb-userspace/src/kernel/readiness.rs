//! An epoll set for the data plane's idle client connections. A connection that waits a
//! long time for its next request is not worth a task, a pending io_uring operation and
//! their state (about 500 bytes); it is worth what nginx gives it: an entry in the
//! kernel's interest list and a small record. The worker parks such sockets here with
//! `EPOLLONESHOT` and waits for the whole set with one io_uring poll on the epoll
//! descriptor itself; a socket that becomes readable (or hangs up) is reported once and
//! goes back to a task of its own.
//!
//! The sockets stay owned by the caller: this set only holds their numbers. Closing a
//! socket removes it from the set (the kernel drops the entry when the last reference to
//! the file goes), so nothing here needs to hear about closes.

use std::{
    io,
    os::fd::{AsFd, AsRawFd, OwnedFd},
};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollTimeout};

/// What a parked socket waits for: data, the peer's FIN (`EPOLLRDHUP`), and errors and
/// hang-ups (always reported), once.
const INTEREST: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32;

/// Most events fetched by one [`ReadinessSet::ready`] call.
pub const READY_BATCH: usize = 128;

pub struct ReadinessSet {
    epoll: Epoll,
    events: Vec<EpollEvent>,
}

impl ReadinessSet {
    pub fn new() -> io::Result<Self> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(io::Error::from)?;
        Ok(Self {
            epoll,
            events: vec![EpollEvent::empty(); READY_BATCH],
        })
    }

    /// A second descriptor of the set, readable while any parked socket is ready: what the
    /// worker's runtime polls.
    pub fn notifier(&self) -> io::Result<OwnedFd> {
        self.epoll.0.as_fd().try_clone_to_owned()
    }

    /// Parks `fd` until it is readable; `token` comes back from [`ready`](Self::ready).
    /// `known` says the socket was parked before (it is still in the set, disarmed by its
    /// one-shot report): it is re-armed instead of added.
    pub fn watch(&self, fd: &impl AsRawFd, token: u64, known: bool) -> io::Result<()> {
        let op = if known {
            libc::EPOLL_CTL_MOD
        } else {
            libc::EPOLL_CTL_ADD
        };
        let mut event = libc::epoll_event {
            events: INTEREST,
            u64: token,
        };
        // SAFETY: epoll_ctl reads `event` (a live, initialised epoll_event) and takes both
        // descriptors as numbers: a number that is not an open socket makes it fail
        // (EBADF, EPERM), never touch lb's memory.
        let rc =
            unsafe { libc::epoll_ctl(self.epoll.0.as_raw_fd(), op, fd.as_raw_fd(), &mut event) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        // A socket parked before but since removed from the set (or never added): add it.
        if known && e.raw_os_error() == Some(libc::ENOENT) {
            return self.watch(fd, token, false);
        }
        Err(e)
    }

    /// Tokens of the parked sockets that became ready (at most [`READY_BATCH`]), without
    /// waiting. Each is disarmed until parked again.
    pub fn ready(&mut self, tokens: &mut Vec<u64>) -> io::Result<usize> {
        let n = self
            .epoll
            .wait(&mut self.events, EpollTimeout::ZERO)
            .map_err(io::Error::from)?;
        tokens.extend(self.events[..n].iter().map(EpollEvent::data));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::{io::Write, net::TcpListener, os::unix::net::UnixStream};

    use super::*;

    #[test]
    fn a_parked_socket_is_reported_once_per_arming() {
        let mut set = ReadinessSet::new().unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        set.watch(&b, 7, false).unwrap();
        let mut tokens = Vec::new();
        assert_eq!(set.ready(&mut tokens).unwrap(), 0, "nothing to read yet");
        a.write_all(b"x").unwrap();
        assert_eq!(set.ready(&mut tokens).unwrap(), 1);
        assert_eq!(tokens, [7]);
        // One-shot: still readable, but not reported until re-armed.
        tokens.clear();
        assert_eq!(set.ready(&mut tokens).unwrap(), 0);
        set.watch(&b, 9, true).unwrap();
        assert_eq!(set.ready(&mut tokens).unwrap(), 1);
        assert_eq!(tokens, [9]);
    }

    #[test]
    fn a_hang_up_is_reported_and_a_closed_socket_leaves_the_set() {
        let mut set = ReadinessSet::new().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        set.watch(&b, 1, false).unwrap();
        drop(a);
        let mut tokens = Vec::new();
        assert_eq!(
            set.ready(&mut tokens).unwrap(),
            1,
            "the peer's close is reported"
        );
        // Closed: re-arming as known falls back to adding a new socket of that number.
        let (_c, d) = UnixStream::pair().unwrap();
        drop(b);
        set.watch(&d, 2, true).unwrap();
    }

    #[test]
    fn the_notifier_is_readable_while_a_parked_socket_is_ready() {
        let set = ReadinessSet::new().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        set.watch(&server, 3, false).unwrap();
        let notifier = set.notifier().unwrap();
        let readable = || {
            let mut fds = [nix::poll::PollFd::new(
                notifier.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).unwrap() == 1
        };
        assert!(!readable());
        client.write_all(b"GET").unwrap();
        assert!(readable());
    }

    #[test]
    fn a_number_that_is_no_descriptor_is_refused() {
        let set = ReadinessSet::new().unwrap();
        struct Raw(i32);
        impl AsRawFd for Raw {
            fn as_raw_fd(&self) -> i32 {
                self.0
            }
        }
        assert!(set.watch(&Raw(-1), 1, false).is_err());
        assert!(set.watch(&Raw(-1), 1, true).is_err());
    }
}
