//! Idle client connections parked outside any task. A keep-alive connection whose client
//! is slow to send its next request (a *cold* one, see [`Pace`]) gives up its task: its
//! socket goes into the worker's epoll set ([`ReadinessSet`]) and its few fields into a
//! slot here, about 200 bytes in all where a waiting task with its pending poll holds
//! over 500. One task per worker ([`run`]) waits for the whole set with a single io_uring
//! poll on the epoll descriptor, and gives each socket that becomes readable (or hangs
//! up) a task again ([`resume_client`]). Idle timeouts are checked by the worker's idle
//! sweep ([`Parking::expire`]) and a drain closes every parked connection at once.
//!
//! A socket that cannot be parked (no epoll set, a failed `epoll_ctl`, TLS: rustls may
//! hold decrypted bytes only a read can find) waits in its own task as before.

use std::{
    cell::RefCell,
    net::SocketAddr,
    rc::Rc,
    time::{Duration, Instant},
};

use monoio::net::TcpStream;

use super::{
    client::{Pace, resume_client},
    task_guard::Guarded,
    worker::Worker,
};
use crate::kernel::{READY_BATCH, ReadinessSet};

/// An idle client connection without a task.
pub(super) struct Parked {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub pace: Pace,
    /// When it was parked: its idle timeout runs from here.
    pub since: Instant,
}

struct Slot {
    /// Bumped each time the slot is freed, so that a stale token finds nothing.
    generation: u32,
    conn: Option<Parked>,
}

/// The worker's parked connections. Single-threaded: no locks.
pub(super) struct Parking {
    /// None when the epoll set could not be made, or its wait failed: nothing is parked.
    set: RefCell<Option<ReadinessSet>>,
    slots: RefCell<Vec<Slot>>,
    /// The vacant slots (every other slot holds a connection).
    free: RefCell<Vec<u32>>,
}

impl Parking {
    pub fn new(worker_index: usize) -> Self {
        let set = match ReadinessSet::new() {
            Ok(set) => Some(set),
            Err(e) => {
                tracing::warn!(worker = worker_index, error = %e,
                    "no epoll set for idle connections; each waits in a task of its own");
                None
            }
        };
        Self {
            set: RefCell::new(set),
            slots: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
        }
    }

    /// Connections parked now.
    pub fn len(&self) -> usize {
        self.slots.borrow().len() - self.free.borrow().len()
    }

    /// Parks `conn` until its socket is readable: `Some(conn)` back if it cannot be parked.
    #[must_use]
    pub fn park(&self, mut conn: Parked) -> Option<Parked> {
        let set = self.set.borrow();
        let Some(set) = set.as_ref() else {
            return Some(conn);
        };
        let mut slots = self.slots.borrow_mut();
        let index = match self.free.borrow_mut().pop() {
            Some(i) => i,
            None => {
                let Ok(i) = u32::try_from(slots.len()) else {
                    return Some(conn);
                };
                slots.push(Slot {
                    generation: 0,
                    conn: None,
                });
                i
            }
        };
        let slot = &mut slots[index as usize];
        let token = (u64::from(slot.generation) << 32) | u64::from(index);
        if let Err(e) = set.watch(&conn.stream, token, conn.pace.parked_before) {
            tracing::debug!(error = %e, "could not park an idle connection");
            self.free.borrow_mut().push(index);
            return Some(conn);
        }
        conn.pace.parked_before = true;
        slot.conn = Some(conn);
        None
    }

    /// Takes the connection of slot `index` out, freeing the slot.
    fn take(&self, index: u32) -> Option<Parked> {
        let mut slots = self.slots.borrow_mut();
        let slot = slots.get_mut(index as usize)?;
        let conn = slot.conn.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.borrow_mut().push(index);
        Some(conn)
    }

    /// Moves the connections whose sockets became ready into `out`: true if there may be
    /// more (a full batch).
    fn take_ready(&self, tokens: &mut Vec<u64>, out: &mut Vec<Parked>) -> std::io::Result<bool> {
        tokens.clear();
        let n = match self.set.borrow_mut().as_mut() {
            Some(set) => set.ready(tokens)?,
            None => return Ok(false),
        };
        for &token in tokens.iter() {
            let (generation, index) = ((token >> 32) as u32, token as u32);
            let current = self
                .slots
                .borrow()
                .get(index as usize)
                .is_some_and(|s| s.generation == generation);
            if current && let Some(conn) = self.take(index) {
                out.push(conn);
            }
        }
        Ok(n == READY_BATCH)
    }

    /// Closes the connections parked for `idle_timeout` or more; returns how many.
    pub fn expire(&self, now: Instant, idle_timeout: Duration) -> usize {
        let expired: Vec<u32> = self
            .slots
            .borrow()
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.conn
                    .as_ref()
                    .is_some_and(|c| now.saturating_duration_since(c.since) >= idle_timeout)
            })
            .map(|(i, _)| i as u32)
            .collect();
        // Dropping a stream closes it: an idle client gets a FIN, as from a task.
        expired.into_iter().filter_map(|i| self.take(i)).count()
    }

    /// Stops parking and hands every parked connection back (the epoll wait failed).
    fn disable(&self) -> Vec<Parked> {
        *self.set.borrow_mut() = None;
        self.take_all()
    }

    fn take_all(&self) -> Vec<Parked> {
        let len = self.slots.borrow().len();
        (0..len as u32).filter_map(|i| self.take(i)).collect()
    }
}

/// The worker's parking task: gives each parked connection whose socket becomes readable
/// a task again, and closes them all when the worker drains.
pub(super) async fn run(worker: Rc<Worker>) {
    let notifier = {
        let set = worker.parking.set.borrow();
        let Some(set) = set.as_ref() else { return };
        set.notifier()
            .map(std::os::unix::net::UnixStream::from)
            .and_then(monoio::net::UnixStream::from_std)
    };
    // The epoll descriptor is held as a Unix stream only to be polled for readability
    // by the runtime: it is never read or written.
    let notifier = match notifier {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot poll the idle-connection set; idle connections wait in tasks");
            worker.parking.disable();
            return;
        }
    };
    let mut tokens = Vec::with_capacity(READY_BATCH);
    let mut ready = Vec::with_capacity(READY_BATCH);
    loop {
        let woke = monoio::select! {
            r = notifier.readable(false) => r,
            _ = worker.drain.wait() => break,
        };
        let mut result = woke.map(|()| true);
        while let Ok(true) = result {
            result = worker.parking.take_ready(&mut tokens, &mut ready);
            for conn in ready.drain(..) {
                resume(&worker, conn);
            }
        }
        if let Err(e) = result {
            tracing::warn!(error = %e, "the idle-connection set failed; idle connections wait in tasks from now on");
            for conn in worker.parking.disable() {
                resume(&worker, conn);
            }
            return;
        }
    }
    let parked = worker.parking.take_all();
    worker.release_connections(parked.len());
}

fn resume(worker: &Rc<Worker>, conn: Parked) {
    monoio::spawn(Guarded::new(
        "client connection",
        resume_client(Rc::clone(worker), conn),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a parked connection costs in lb's memory besides its socket: this slot (in a
    /// vector that grows by doubling) and monoio's shared descriptor (about 40 bytes).
    /// The `tests/idle_memory.rs` bound rests on it.
    #[test]
    fn a_parked_connection_is_small() {
        let slot = std::mem::size_of::<Slot>();
        assert!(slot <= 160, "a parking slot is {slot} bytes");
    }
}
