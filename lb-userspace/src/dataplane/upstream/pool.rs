//! Each worker's idle upstream connections, per origin and scheme (a match-viewer origin
//! has a plain and a TLS list). TLS connections are pooled like plain ones, so a
//! handshake is paid once per connection, not per request. Single-threaded: no locks.
//!
//! Connections are reused most-recently-idle first (warm, least likely to have been closed
//! by the origin). Before reuse, one non-blocking `recv(MSG_PEEK)` tells whether the
//! origin closed the connection (EOF), reset it, or sent unsolicited bytes; any of those
//! and the connection is dropped instead of failing a request.

use std::{os::fd::AsRawFd, time::Instant};

use nix::{errno::Errno, sys::socket::MsgFlags};

use crate::dataplane::stream::Stream;

/// Connections idle less than this are reused without the liveness peek.
const RECENTLY_USED: std::time::Duration = std::time::Duration::from_millis(250);

/// Idle connections kept per origin and worker.
const MAX_IDLE_PER_ORIGIN: usize = 256;

struct Idle {
    stream: Stream,
    /// When it went idle.
    since: Instant,
    /// Its last response had a body lb did not read (HEAD, 304 with a length): peeked
    /// for stray bytes before reuse however briefly it was idle.
    verify: bool,
    /// The origin's address epoch when it went idle: a connection from before the
    /// origin's name moved is not reused.
    epoch: u64,
}

#[derive(Default)]
pub(in crate::dataplane) struct Pool {
    idle: Vec<Vec<Idle>>,
}

impl Pool {
    /// A live idle connection to origin `index` (TLS or not) that has been idle less than
    /// `keepalive`, made while the origin's addresses were those of `epoch`.
    pub fn checkout(
        &mut self,
        index: usize,
        tls: bool,
        keepalive: std::time::Duration,
        epoch: u64,
    ) -> Option<Stream> {
        let list = self.idle.get_mut(slot(index, tls))?;
        let now = Instant::now();
        while let Some(Idle {
            stream,
            since,
            verify,
            epoch: made_in,
        }) = list.pop()
        {
            if made_in != epoch {
                // The name moved: connections to its old addresses all go.
                list.clear();
                return None;
            }
            if now.duration_since(since) >= keepalive {
                // Everything older is older still: drop them all.
                list.clear();
                return None;
            }
            // A connection idle only briefly cannot have hit the origin's keep-alive
            // timeout; the peek (a syscall) is for connections that sat in the pool.
            if (now.duration_since(since) < RECENTLY_USED && !verify) || still_open(&stream) {
                return Some(stream);
            }
        }
        None
    }

    /// Returns a connection whose last response was complete and allowed reuse; `verify`:
    /// check it for stray bytes at checkout even if it was idle only briefly.
    pub fn checkin(&mut self, index: usize, stream: Stream, verify: bool, epoch: u64) {
        if !stream.poolable() {
            // An HTTP/2 stream: its connection is shared and stays open without it.
            return;
        }
        let slot = slot(index, stream.is_tls());
        if self.idle.len() <= slot {
            self.idle.resize_with(slot + 1, Vec::new);
        }
        let list = &mut self.idle[slot];
        if list.len() >= MAX_IDLE_PER_ORIGIN {
            list.remove(0);
        }
        list.push(Idle {
            stream,
            since: Instant::now(),
            verify,
            epoch,
        });
    }

    /// Closes connections idle longer than their origin's keep-alive timeout.
    pub fn sweep(&mut self, keepalive: impl Fn(usize) -> std::time::Duration) {
        let now = Instant::now();
        for (slot, list) in self.idle.iter_mut().enumerate() {
            let limit = keepalive(slot / 2);
            list.retain(|idle| now.duration_since(idle.since) < limit);
        }
    }

    /// Drops every idle connection (shutdown, or origins changed).
    pub fn clear(&mut self) {
        self.idle.clear();
    }
}

fn slot(index: usize, tls: bool) -> usize {
    index * 2 + usize::from(tls)
}

/// True if the peer has neither closed nor reset the connection and sent nothing
/// unsolicited: exactly "would block" on a non-blocking peek.
/// On a TLS connection a close_notify alert counts as "sent something": dropped too.
fn still_open(stream: &Stream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        nix::sys::socket::recv(
            stream.as_raw_fd(),
            &mut byte,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT
        ),
        Err(Errno::EAGAIN)
    )
}
