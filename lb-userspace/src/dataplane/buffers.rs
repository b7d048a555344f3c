//! Each worker's spare I/O buffers. Connections take buffers when a request arrives and
//! give them back when its exchange ends, so an idle keep-alive connection holds none and
//! a busy worker does not allocate per request. Single-threaded: no locks. Bounded in
//! count and in the size of what it keeps, so one large response does not pin memory.

use std::cell::RefCell;

use super::{access_log::AttemptRecord, conn::READ_CHUNK, request_head::RequestHead};

/// Buffers kept per worker.
const MAX_SPARE: usize = 64;
/// Larger buffers are freed rather than kept (a 64 KiB inline body plus its head fits).
const MAX_KEPT_CAPACITY: usize = 80 * 1024;
/// Request heads whose buffers grew past this are freed rather than kept.
const MAX_KEPT_HEAD: usize = 16 * 1024;

#[derive(Default)]
pub(super) struct BufferPool {
    spare: RefCell<Vec<Vec<u8>>>,
    /// Request heads (their field tables and raw bytes keep their capacity) and
    /// attempt lists, for the next request on any connection.
    heads: RefCell<Vec<(RequestHead, Vec<AttemptRecord>)>>,
}

impl BufferPool {
    /// An empty buffer with at least [`READ_CHUNK`] bytes of capacity.
    pub fn take(&self) -> Vec<u8> {
        self.spare
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(READ_CHUNK))
    }

    /// Returns a buffer (its contents are discarded).
    pub fn put(&self, mut buf: Vec<u8>) {
        if buf.capacity() < READ_CHUNK || buf.capacity() > MAX_KEPT_CAPACITY {
            return;
        }
        let mut spare = self.spare.borrow_mut();
        if spare.len() < MAX_SPARE {
            buf.clear();
            spare.push(buf);
        }
    }

    /// A request head and attempt list with room from earlier requests.
    pub fn take_head(&self) -> (RequestHead, Vec<AttemptRecord>) {
        self.heads.borrow_mut().pop().unwrap_or_default()
    }

    /// Returns a request's head and attempt list for reuse.
    pub fn put_head(&self, head: RequestHead, mut attempts: Vec<AttemptRecord>) {
        let mut heads = self.heads.borrow_mut();
        if heads.len() < MAX_SPARE && head.capacity() <= MAX_KEPT_HEAD {
            attempts.clear();
            heads.push((head, attempts));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.spare.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_the_pool_is_bounded() {
        let pool = BufferPool::default();
        let a = pool.take();
        assert!(a.capacity() >= READ_CHUNK);
        let ptr = a.as_ptr();
        pool.put(a);
        let again = pool.take();
        assert_eq!(again.as_ptr(), ptr, "the same buffer comes back");
        drop(again);
        pool.put(Vec::new());
        pool.put(Vec::with_capacity(1 << 20));
        assert_eq!(pool.len(), 0, "empty and oversized buffers are freed");
        for _ in 0..MAX_SPARE + 10 {
            pool.put(Vec::with_capacity(READ_CHUNK));
        }
        assert_eq!(pool.len(), MAX_SPARE);
    }
}
