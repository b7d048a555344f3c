//! Collapsed forwarding: concurrent misses (or revalidations) of one key send one
//! request to the origins; the others wait for it, across workers, and are then served
//! from the store.
//!
//! Keys being filled sit in a sharded table (a short critical section per miss, never on
//! a hit). The first request for a key *leads*: it goes to the origins holding a
//! [`Lead`]; dropping it (once its answer is stored, or was not storable, or failed)
//! wakes every waiter through a oneshot channel, which works across threads.

use std::{
    collections::HashMap,
    hash::BuildHasher,
    sync::{Arc, Mutex},
};

use futures_channel::oneshot;

const SHARDS: usize = 64;

type Waiters = Vec<oneshot::Sender<()>>;
type Shard = Mutex<HashMap<Box<str>, Waiters>>;

/// Keys being filled, and who waits for each.
pub struct Inflight {
    shards: Box<[Shard]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for Inflight {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
        }
    }
}

/// What a miss does.
pub enum Join {
    /// Ask the origins; the fill ends when this is dropped.
    Lead(Lead),
    /// Someone else is asking: resolves (or is cancelled) when that fill ends.
    Wait(oneshot::Receiver<()>),
}

/// The one fill in flight for a key. Dropping it wakes the waiters.
pub struct Lead {
    inflight: Arc<Inflight>,
    key: Box<str>,
}

impl Inflight {
    fn shard(&self, key: &str) -> &Shard {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    /// Leads the fill of `key`, or waits for the one in flight.
    pub fn join(self: &Arc<Self>, key: &str) -> Join {
        let mut shard = self
            .shard(key)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match shard.get_mut(key) {
            Some(waiters) => {
                let (tx, rx) = oneshot::channel();
                waiters.push(tx);
                Join::Wait(rx)
            }
            None => {
                shard.insert(key.into(), Vec::new());
                Join::Lead(Lead {
                    inflight: Arc::clone(self),
                    key: key.into(),
                })
            }
        }
    }

    /// Keys being filled now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.len()))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        let waiters = self
            .inflight
            .shard(&self.key)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&self.key)
            .unwrap_or_default();
        for w in waiters {
            let _ = w.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_leads_the_others_wait_until_it_is_done() {
        let inflight = Arc::new(Inflight::default());
        let Join::Lead(lead) = inflight.join("k") else {
            panic!("the first leads")
        };
        let Join::Wait(mut a) = inflight.join("k") else {
            panic!("the second waits")
        };
        let Join::Wait(mut b) = inflight.join("k") else {
            panic!("the third waits")
        };
        assert!(matches!(inflight.join("other"), Join::Lead(_)));
        assert_eq!(a.try_recv(), Ok(None), "not yet");
        // Waiters are woken from another thread.
        std::thread::spawn(move || drop(lead)).join().unwrap();
        assert_eq!(a.try_recv(), Ok(Some(())));
        assert_eq!(b.try_recv(), Ok(Some(())));
        assert!(inflight.is_empty());
        assert!(
            matches!(inflight.join("k"), Join::Lead(_)),
            "a new fill leads again"
        );
    }
}
