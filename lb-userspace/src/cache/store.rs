//! The memory tier: one store for the whole process, shared by every worker, so the hit
//! ratio does not divide by the number of workers.
//!
//! It is a `moka` cache (TinyLFU admission, LRU eviction, weighted by bytes): lookups are
//! lock-free reads of a concurrent hash table, and the bookkeeping moka does for eviction
//! is batched and runs under a `try_lock`, so a worker never waits for another on the
//! request path. Values are `Arc`s: a hit is a hash lookup, a reference count and,
//! when the response varies, a comparison of its Vary values.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use bytes::Bytes;

use super::key::vary_values;

/// Variants kept per primary key (one per combination of the Vary fields' values).
const MAX_VARIANTS: usize = 8;

/// One stored response.
#[derive(Debug)]
pub struct Object {
    pub status: u16,
    pub reason: Box<str>,
    /// End-to-end fields as the origin sent them, without framing and hop-by-hop fields
    /// and without `Age` (lb writes its own).
    pub fields: Vec<(Box<str>, Box<[u8]>)>,
    pub body: Bytes,
    /// When lb received it, and how old it was then (RFC 9111 §4.2.3).
    pub received: SystemTime,
    pub initial_age: Duration,
    /// How long it is fresh from its creation.
    pub lifetime: Duration,
    /// How long after going stale it may still be served while a refresh runs
    /// (`stale-while-revalidate`) and when the origins fail (`stale-if-error`, or the
    /// behavior's own allowance).
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
    /// `must-revalidate` and friends: never served stale, whatever else allows it.
    pub must_revalidate: bool,
    /// The request fields it varies on, and the values the request that filled it had.
    pub vary: Vec<String>,
    pub vary_values: Vec<Option<String>>,
}

impl Object {
    /// Its current age (RFC 9111 §4.2.3).
    pub fn age(&self, now: SystemTime) -> Duration {
        self.initial_age + now.duration_since(self.received).unwrap_or(Duration::ZERO)
    }

    /// How long it has been stale (`None` while fresh).
    pub fn staleness(&self, now: SystemTime) -> Option<Duration> {
        self.age(now)
            .checked_sub(self.lifetime)
            .filter(|s| !s.is_zero())
    }

    /// The bytes it holds, for the byte budget.
    pub fn weight(&self) -> usize {
        self.body.len()
            + self.reason.len()
            + self
                .fields
                .iter()
                .map(|(n, v)| n.len() + v.len() + 32)
                .sum::<usize>()
            + 256
    }

    /// Whether it answers a request with these fields (its Vary values match).
    pub fn matches<'a>(&self, fields: impl Iterator<Item = (&'a str, &'a [u8])> + Clone) -> bool {
        self.vary.is_empty() || vary_values(&self.vary, fields) == self.vary_values
    }

    /// A field of the stored response.
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| &v[..])
    }
}

/// The variants stored under one primary key.
#[derive(Debug, Default)]
pub(super) struct Variants(pub(super) Vec<Arc<Object>>);

impl Variants {
    pub(super) fn weight(&self) -> u32 {
        self.0
            .iter()
            .map(|o| o.weight())
            .sum::<usize>()
            .min(u32::MAX as usize) as u32
    }
}

/// What the store holds, for `lb cache stats` and the metrics.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StoreStats {
    /// Keys held (each with up to 8 Vary variants).
    pub objects: u64,
    pub bytes: u64,
    pub budget_bytes: u64,
    /// Keys evicted to stay within the budget (not expiries or purges).
    pub evictions: u64,
    /// Keys being filled now by one request that others wait for.
    pub filling: u64,
    /// The disk tier, when one is configured and could be opened.
    pub disk: Option<super::disk::DiskStats>,
}

/// Which entries `lb cache purge` drops.
#[derive(Clone, Debug)]
pub enum Purge {
    /// One key exactly as `lb cache stats --keys` lists it.
    Key(String),
    /// Every entry whose path matches a CloudFront-style pattern (`/img/*`, `/a.css`),
    /// with all of its query, header and cookie variants; on one host if given.
    Path {
        pattern: crate::config::PathPattern,
        host: Option<String>,
    },
}

impl Purge {
    pub(super) fn matches(&self, key: &str) -> bool {
        match self {
            Self::Key(k) => k == key,
            Self::Path { pattern, host } => {
                let primary = key.split('\n').next().unwrap_or("");
                let (key_host, path) = primary
                    .find('/')
                    .map_or((primary, ""), |at| primary.split_at(at));
                host.as_deref()
                    .is_none_or(|h| h.eq_ignore_ascii_case(key_host))
                    && pattern.matches(path)
            }
        }
    }
}

/// The process's cache: the memory tier, and the disk tier behind it when configured.
pub struct Store {
    memory: moka::sync::Cache<Box<str>, Arc<Variants>>,
    budget: u64,
    inflight: Arc<super::Inflight>,
    evictions: Arc<AtomicU64>,
    disk: Option<super::disk::DiskTier>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("budget", &self.budget)
            .finish()
    }
}

impl Store {
    /// A store holding at most `budget` bytes (bodies plus an estimate of their heads).
    pub fn new(budget: u64) -> Self {
        let evictions = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&evictions);
        Self {
            memory: moka::sync::Cache::builder()
                .max_capacity(budget)
                .weigher(|_key, v: &Arc<Variants>| v.weight())
                .eviction_listener(move |_key, _value, cause| {
                    if cause == moka::notification::RemovalCause::Size {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .build(),
            budget,
            inflight: Arc::default(),
            evictions,
            disk: None,
        }
    }

    /// The store `settings` describe. A disk tier that cannot be opened (no such
    /// directory and no right to create it, a read-only file system) is a warning: lb
    /// runs with the memory tier alone.
    pub fn open(settings: &crate::config::CacheSettings) -> Self {
        let mut store = Self::new(settings.memory_bytes);
        if let Some(dir) = &settings.disk_path {
            match super::disk::DiskTier::open(dir, settings.disk_bytes) {
                Ok(disk) => {
                    let held = disk.stats();
                    tracing::info!(dir = %dir.display(), objects = held.objects, bytes = held.bytes, "cache disk tier open");
                    store.disk = Some(disk);
                }
                Err(e) => tracing::warn!(
                    dir = %dir.display(),
                    error = %e,
                    "cache disk tier unavailable; caching in memory only"
                ),
            }
        }
        store
    }

    /// The disk tier's file for `key` when memory does not hold the key: the data plane
    /// reads it (asynchronously) and hands the bytes to [`Store::load`].
    pub fn on_disk(&self, key: &str) -> Option<std::path::PathBuf> {
        let disk = self.disk.as_ref()?;
        if self.memory.contains_key(key) {
            return None;
        }
        disk.path(key)
    }

    /// Puts what the disk tier held for `key` back in memory; false when the bytes do not
    /// decode (the file is then forgotten).
    pub fn load(&self, key: &str, path: &std::path::Path, bytes: std::io::Result<Vec<u8>>) -> bool {
        let Some(disk) = &self.disk else {
            return false;
        };
        let objects = match bytes {
            Ok(bytes) => disk.decode(key, path, bytes),
            Err(source) => Err(super::disk::DiskError::Io {
                path: path.to_owned(),
                source,
            }),
        };
        match objects {
            Ok(objects) => {
                let variants = objects.into_iter().map(Arc::new).collect();
                self.memory.insert(key.into(), Arc::new(Variants(variants)));
                true
            }
            Err(e) => {
                if matches!(e, super::disk::DiskError::Io { .. }) {
                    disk.read_failed(key);
                }
                tracing::warn!(error = %e, "cache disk tier: cannot use a stored object");
                false
            }
        }
    }

    /// Leads the fill of `key`, or waits for the one in flight (collapsed forwarding).
    pub fn join(&self, key: &str) -> super::Join {
        self.inflight.join(key)
    }

    /// The stored response for `key` whose Vary values match `fields`.
    pub fn lookup<'a>(
        &self,
        key: &str,
        fields: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
    ) -> Option<Arc<Object>> {
        let variants = self.memory.get(key)?;
        variants
            .0
            .iter()
            .find(|o| o.matches(fields.clone()))
            .cloned()
    }

    /// Stores `object` under `key`, replacing the variant with the same Vary values.
    pub fn insert(&self, key: &str, object: Object) {
        self.insert_shared(key, Arc::new(object));
    }

    /// [`Store::insert`] of an object the caller also keeps.
    pub fn insert_shared(&self, key: &str, object: Arc<Object>) {
        let mut variants: Vec<Arc<Object>> = self
            .memory
            .get(key)
            .map(|v| {
                v.0.iter()
                    .filter(|o| o.vary != object.vary || o.vary_values != object.vary_values)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        variants.insert(0, object);
        variants.truncate(MAX_VARIANTS);
        let variants = Arc::new(Variants(variants));
        if let Some(disk) = &self.disk {
            disk.write(key, Arc::clone(&variants));
        }
        self.memory.insert(key.into(), variants);
    }

    /// Drops the entries `purge` names (every Vary variant of each); the keys dropped.
    /// A control-plane operation: it walks the whole table.
    pub fn purge(&self, purge: &Purge) -> Vec<String> {
        let mut gone = self.purge_memory(purge);
        if let Some(disk) = &self.disk {
            gone.extend(disk.purge(purge));
            gone.sort_unstable();
            gone.dedup();
        }
        gone
    }

    fn purge_memory(&self, purge: &Purge) -> Vec<String> {
        if let Purge::Key(key) = purge {
            return match self.memory.remove(key.as_str()) {
                Some(_) => vec![key.clone()],
                None => Vec::new(),
            };
        }
        let doomed: Vec<Arc<Box<str>>> = self
            .memory
            .iter()
            .filter(|(k, _)| purge.matches(k))
            .map(|(k, _)| k)
            .collect();
        for k in &doomed {
            self.memory.invalidate(k.as_ref());
        }
        doomed.iter().map(|k| k.to_string()).collect()
    }

    /// Up to `limit` keys, for `lb cache stats --keys`.
    /// Keys in memory first, then those only on disk.
    pub fn keys(&self, limit: usize) -> Vec<String> {
        let mut keys: Vec<String> = self
            .memory
            .iter()
            .take(limit)
            .map(|(k, _)| k.to_string())
            .collect();
        if let Some(disk) = &self.disk {
            let more = disk.keys(usize::MAX).into_iter();
            let more = more.filter(|k| !self.memory.contains_key(k.as_str()));
            keys.extend(more.take(limit.saturating_sub(keys.len())));
        }
        keys
    }

    /// Waits (bounded) until the disk tier has written what it was given.
    pub fn flush(&self, timeout: std::time::Duration) -> bool {
        self.disk.as_ref().is_none_or(|d| d.flush(timeout))
    }

    pub fn stats(&self) -> StoreStats {
        self.memory.run_pending_tasks();
        StoreStats {
            objects: self.memory.entry_count(),
            bytes: self.memory.weighted_size(),
            budget_bytes: self.budget,
            evictions: self.evictions.load(Ordering::Relaxed),
            filling: self.inflight.len() as u64,
            disk: self.disk.as_ref().map(super::disk::DiskTier::stats),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(body: &str, vary: &[&str], values: &[Option<&str>]) -> Object {
        Object {
            status: 200,
            reason: "OK".into(),
            fields: vec![("content-type".into(), b"text/plain".to_vec().into())],
            body: Bytes::from(body.to_owned()),
            received: SystemTime::UNIX_EPOCH + Duration::from_secs(1000),
            initial_age: Duration::from_secs(5),
            lifetime: Duration::from_secs(60),
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            must_revalidate: false,
            vary: vary.iter().map(|s| s.to_string()).collect(),
            vary_values: values.iter().map(|v| v.map(String::from)).collect(),
        }
    }

    #[test]
    fn age_and_staleness() {
        let o = object("x", &[], &[]);
        let t = o.received + Duration::from_secs(10);
        assert_eq!(o.age(t), Duration::from_secs(15));
        assert_eq!(o.staleness(t), None);
        let t = o.received + Duration::from_secs(70);
        assert_eq!(o.staleness(t), Some(Duration::from_secs(15)));
    }

    #[test]
    fn variants_are_chosen_by_their_vary_values_and_replaced_one_by_one() {
        let store = Store::new(1 << 20);
        store.insert("k", object("gzip", &["accept-encoding"], &[Some("gzip")]));
        store.insert("k", object("plain", &["accept-encoding"], &[None]));
        let gz = [("Accept-Encoding", b"gzip".as_slice())];
        let none: [(&str, &[u8]); 0] = [];
        assert_eq!(
            &store.lookup("k", gz.iter().copied()).unwrap().body[..],
            b"gzip"
        );
        assert_eq!(
            &store.lookup("k", none.iter().copied()).unwrap().body[..],
            b"plain"
        );
        let br = [("Accept-Encoding", b"br".as_slice())];
        assert!(store.lookup("k", br.iter().copied()).is_none());
        store.insert("k", object("gzip2", &["accept-encoding"], &[Some("gzip")]));
        assert_eq!(
            &store.lookup("k", gz.iter().copied()).unwrap().body[..],
            b"gzip2"
        );
        assert_eq!(
            &store.lookup("k", none.iter().copied()).unwrap().body[..],
            b"plain"
        );
        assert_eq!(store.purge(&Purge::Key("k".into())), ["k"]);
        assert!(store.lookup("k", gz.iter().copied()).is_none());
        assert!(store.purge(&Purge::Key("k".into())).is_empty());
    }

    #[test]
    fn the_byte_budget_evicts() {
        let store = Store::new(64 * 1024);
        let big = "x".repeat(10 * 1024);
        for i in 0..40 {
            store.insert(&format!("k{i}"), object(&big, &[], &[]));
        }
        let stats = store.stats();
        assert!(stats.bytes <= 64 * 1024, "{stats:?}");
        assert!(stats.objects < 40, "{stats:?}");
        assert_eq!(stats.evictions, 40 - stats.objects, "{stats:?}");
    }

    #[test]
    fn purge_by_path_pattern_takes_every_variant_and_respects_the_host() {
        let store = Store::new(1 << 20);
        for key in [
            "a.test/img/1.png",
            "a.test/img/2.png?v=1",
            "a.test/img/2.png?v=1\naccept-language:fr,",
            "b.test/img/1.png",
            "a.test/css/site.css",
        ] {
            store.insert(key, object("x", &[], &[]));
        }
        let path = |pattern: &str, host: Option<&str>| Purge::Path {
            pattern: crate::config::PathPattern::new(pattern),
            host: host.map(str::to_owned),
        };
        let mut gone = store.purge(&path("/img/*", Some("A.test")));
        gone.sort();
        assert_eq!(
            gone,
            [
                "a.test/img/1.png",
                "a.test/img/2.png?v=1",
                "a.test/img/2.png?v=1\naccept-language:fr,"
            ]
        );
        assert_eq!(store.purge(&path("/img/1.png", None)), ["b.test/img/1.png"]);
        assert!(store.purge(&path("/css/other.css", None)).is_empty());
        assert_eq!(store.keys(10), ["a.test/css/site.css"]);
    }
}
