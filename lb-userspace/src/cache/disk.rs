//! The disk tier: every object stored in memory is also written to a file, so a restart
//! (a crash, an upgrade, a reboot) during an origin outage still has stale copies to
//! serve, and the memory tier's evictions are not the end of an object.
//!
//! One file per primary key (all of its Vary variants), named by a stable hash of the key
//! and holding the key itself, so a hash collision is detected on read rather than
//! serving another key's answer. Files are written whole to a temporary name and renamed,
//! so a reader never sees half a file; the format is lb's own, bounds-checked on decode
//! (a corrupt file is dropped, never served).
//!
//! Who does what:
//! - the data plane never blocks on the disk for writes: it hands the variants to one
//!   writer thread (`lb-cache-disk`) through a channel, and drops the write (counted) when
//!   more than [`MAX_PENDING_BYTES`] are queued;
//! - the data plane reads on a memory miss whose key the index holds, with io_uring
//!   (`monoio::fs::read`), and promotes what it read into memory;
//! - the index (which keys have files, weighted by file size) is a `moka` cache with the
//!   tier's byte budget; its size evictions delete files through the writer;
//! - at start-up the directory is scanned (each file's header only) to rebuild the index.

use std::{
    fs,
    io::{self, Read},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, SystemTime},
};

use bytes::Bytes;

use super::store::{Object, Purge, Variants};

/// Bytes of writes queued for the writer thread beyond which new writes are dropped: a
/// slow disk must not grow lb's memory.
pub const MAX_PENDING_BYTES: u64 = 64 << 20;

const MAGIC: &[u8; 4] = b"LBC1";
const SUFFIX: &str = "obj";

/// Why a file could not be used. A file that fails to decode is deleted, not served.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0}: not an lb cache file or truncated")]
    Corrupt(PathBuf),
    #[error("{0}: holds another key (hash collision)")]
    OtherKey(PathBuf),
}

/// What the disk tier holds and did, for `lb cache stats` and the metrics.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DiskStats {
    pub path: String,
    pub objects: u64,
    pub bytes: u64,
    pub budget_bytes: u64,
    pub evictions: u64,
    /// Objects read back into memory on a memory miss.
    pub reads: u64,
    pub read_errors: u64,
    pub writes: u64,
    pub write_errors: u64,
    /// Writes dropped because the writer was behind.
    pub dropped_writes: u64,
}

#[derive(Default)]
struct Counters {
    evictions: AtomicU64,
    reads: AtomicU64,
    read_errors: AtomicU64,
    writes: AtomicU64,
    write_errors: AtomicU64,
    dropped_writes: AtomicU64,
    pending_bytes: AtomicU64,
}

enum Job {
    Write {
        key: Box<str>,
        variants: Arc<Variants>,
        estimate: u64,
    },
    Remove {
        key: Box<str>,
    },
    Purge(Purge),
}

/// The disk tier of one process.
pub struct DiskTier {
    dir: PathBuf,
    budget: u64,
    index: moka::sync::Cache<Box<str>, u32>,
    jobs: mpsc::Sender<Job>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for DiskTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskTier")
            .field("dir", &self.dir)
            .field("budget", &self.budget)
            .finish()
    }
}

impl DiskTier {
    /// Opens (creating it if needed) the tier in `dir`, indexes the files already there
    /// and starts the writer thread.
    pub fn open(dir: &Path, budget: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        // A directory lb cannot write to would fail every write later: find out now.
        let probe = dir.join(".lb-write-probe");
        fs::write(&probe, b"")?;
        let _ = fs::remove_file(&probe);
        let counters = Arc::new(Counters::default());
        let (jobs, queue) = mpsc::channel();
        let evicted = jobs.clone();
        let evictions = Arc::clone(&counters);
        let index = moka::sync::Cache::builder()
            .max_capacity(budget)
            .weigher(|_key, size: &u32| *size)
            .eviction_listener(move |key: Arc<Box<str>>, _size, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    evictions.evictions.fetch_add(1, Ordering::Relaxed);
                    let _ = evicted.send(Job::Remove {
                        key: Box::clone(&key),
                    });
                }
            })
            .build();
        let tier = Self {
            dir: dir.to_owned(),
            budget,
            index,
            jobs,
            counters,
        };
        tier.scan();
        let writer = Writer {
            dir: tier.dir.clone(),
            index: tier.index.clone(),
            counters: Arc::clone(&tier.counters),
        };
        std::thread::Builder::new()
            .name("lb-cache-disk".into())
            .spawn(move || writer.run(queue))?;
        Ok(tier)
    }

    /// Rebuilds the index from the files' headers; drops leftovers of interrupted writes
    /// and files that are not lb's.
    fn scan(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(&path);
                continue;
            }
            if !name.ends_with(SUFFIX) {
                continue;
            }
            match read_key(&path) {
                Ok((key, size)) if path_for(&self.dir, &key) == path => {
                    self.index.insert(key.into(), size);
                }
                Ok(_) | Err(_) => {
                    tracing::warn!(file = %path.display(), "cache disk tier: dropping a file that does not decode");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        self.index.run_pending_tasks();
    }

    /// The file to read for `key`, if the tier holds it.
    pub fn path(&self, key: &str) -> Option<PathBuf> {
        self.index
            .contains_key(key)
            .then(|| path_for(&self.dir, key))
    }

    /// Decodes a file read for `key`. A file that does not decode, or holds another key,
    /// is forgotten (and deleted by the writer).
    pub fn decode(&self, key: &str, path: &Path, bytes: Vec<u8>) -> Result<Vec<Object>, DiskError> {
        let result = decode(Bytes::from(bytes))
            .ok_or_else(|| DiskError::Corrupt(path.to_owned()))
            .and_then(|(stored_key, objects)| {
                if stored_key == key {
                    Ok(objects)
                } else {
                    Err(DiskError::OtherKey(path.to_owned()))
                }
            });
        match &result {
            Ok(_) => {
                self.counters.reads.fetch_add(1, Ordering::Relaxed);
            }
            Err(DiskError::OtherKey(_)) => {
                // The file is another key's: keep it, forget this key.
                self.counters.read_errors.fetch_add(1, Ordering::Relaxed);
                self.index.invalidate(key);
            }
            Err(_) => self.forget(key),
        }
        result
    }

    /// Counts a failed read and forgets the key (its file is gone or unreadable).
    pub fn read_failed(&self, key: &str) {
        self.forget(key);
    }

    fn forget(&self, key: &str) {
        self.counters.read_errors.fetch_add(1, Ordering::Relaxed);
        self.index.invalidate(key);
        let _ = self.jobs.send(Job::Remove { key: key.into() });
    }

    /// Queues a write of `key`'s variants; drops it (counted) when the writer is behind.
    pub(super) fn write(&self, key: &str, variants: Arc<Variants>) {
        let estimate = u64::from(variants.weight());
        let pending = self
            .counters
            .pending_bytes
            .fetch_add(estimate, Ordering::Relaxed);
        if pending + estimate > MAX_PENDING_BYTES {
            self.counters
                .pending_bytes
                .fetch_sub(estimate, Ordering::Relaxed);
            self.counters.dropped_writes.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let job = Job::Write {
            key: key.into(),
            variants,
            estimate,
        };
        if self.jobs.send(job).is_err() {
            self.counters.dropped_writes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops the files `purge` names; the keys dropped. Ordered after the writes queued
    /// before it, so a purge is not undone by a write already in flight.
    pub(super) fn purge(&self, purge: &Purge) -> Vec<String> {
        let keys = self
            .index
            .iter()
            .filter(|(k, _)| purge.matches(k))
            .map(|(k, _)| k.to_string())
            .collect();
        let _ = self.jobs.send(Job::Purge(purge.clone()));
        keys
    }

    pub fn keys(&self, limit: usize) -> Vec<String> {
        self.index
            .iter()
            .take(limit)
            .map(|(k, _)| k.to_string())
            .collect()
    }

    pub fn stats(&self) -> DiskStats {
        self.index.run_pending_tasks();
        let c = &self.counters;
        DiskStats {
            path: self.dir.display().to_string(),
            objects: self.index.entry_count(),
            bytes: self.index.weighted_size(),
            budget_bytes: self.budget,
            evictions: c.evictions.load(Ordering::Relaxed),
            reads: c.reads.load(Ordering::Relaxed),
            read_errors: c.read_errors.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
            dropped_writes: c.dropped_writes.load(Ordering::Relaxed),
        }
    }

    /// Waits until the writer has done every job queued before this call (for tests and
    /// an orderly shutdown).
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.counters.pending_bytes.load(Ordering::Relaxed) > 0 {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }
}

/// The writer thread's side.
struct Writer {
    dir: PathBuf,
    index: moka::sync::Cache<Box<str>, u32>,
    counters: Arc<Counters>,
}

impl Writer {
    fn run(self, queue: mpsc::Receiver<Job>) {
        let mut buf = Vec::new();
        while let Ok(job) = queue.recv() {
            match job {
                Job::Write {
                    key,
                    variants,
                    estimate,
                } => {
                    buf.clear();
                    encode(&key, &variants.0, &mut buf);
                    drop(variants);
                    match self.write_file(&key, &buf) {
                        Ok(()) => {
                            self.counters.writes.fetch_add(1, Ordering::Relaxed);
                            let size = buf.len().min(u32::MAX as usize) as u32;
                            self.index.insert(key, size);
                        }
                        Err(e) => {
                            self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(error = %e, dir = %self.dir.display(), "cache disk tier: write failed");
                        }
                    }
                    self.counters
                        .pending_bytes
                        .fetch_sub(estimate, Ordering::Relaxed);
                    if buf.capacity() > 4 << 20 {
                        buf = Vec::new();
                    }
                }
                Job::Remove { key } => {
                    // Written again since it was evicted: the new file stays.
                    if !self.index.contains_key(&key) {
                        let _ = fs::remove_file(path_for(&self.dir, &key));
                    }
                }
                Job::Purge(purge) => {
                    let doomed: Vec<Arc<Box<str>>> = self
                        .index
                        .iter()
                        .filter(|(k, _)| purge.matches(k))
                        .map(|(k, _)| k)
                        .collect();
                    for key in doomed {
                        self.index.invalidate(key.as_ref());
                        let _ = fs::remove_file(path_for(&self.dir, &key));
                    }
                }
            }
        }
    }

    fn write_file(&self, key: &str, bytes: &[u8]) -> io::Result<()> {
        let path = path_for(&self.dir, key);
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, bytes)?;
        fs::rename(&tmp, &path).inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
    }
}

/// The file that holds `key`: FNV-1a of the key, stable across builds and restarts
/// (std's hasher is not promised to be).
fn path_for(dir: &Path, key: &str) -> PathBuf {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    dir.join(format!("{hash:016x}.{SUFFIX}"))
}

/// Reads a file's key and size without reading its body.
fn read_key(path: &Path) -> io::Result<(String, u32)> {
    let mut file = fs::File::open(path)?;
    let size = file.metadata()?.len();
    let mut head = [0u8; 16];
    file.read_exact(&mut head)?;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "not an lb cache file");
    if &head[..4] != MAGIC || u64::from_le_bytes(head[4..12].try_into().unwrap_or_default()) != size
    {
        return Err(bad());
    }
    let key_len = u32::from_le_bytes(head[12..16].try_into().unwrap_or_default()) as u64;
    if key_len > size.saturating_sub(16) || key_len > 1 << 20 {
        return Err(bad());
    }
    let mut key = vec![0; key_len as usize];
    file.read_exact(&mut key)?;
    let key = String::from_utf8(key).map_err(|_| bad())?;
    Ok((key, size.min(u64::from(u32::MAX)) as u32))
}

// The format, little-endian: "LBC1", u64 file length, u32 key length, key, u32 variant
// count, then per variant: u16 status, str reason, u32 field count and (str name, bytes
// value) each, u64 received (µs since the epoch), u64 initial age, lifetime,
// stale-while-revalidate and stale-if-error (ms), u8 must-revalidate, u32 Vary count
// and (str name, u8 present, str value) each, bytes body. `str` and `bytes` are a u32
// length and the bytes.

fn encode(key: &str, objects: &[Arc<Object>], out: &mut Vec<u8>) {
    fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
    }
    fn millis(out: &mut Vec<u8>, d: Duration) {
        out.extend_from_slice(&(d.as_millis().min(u64::MAX as u128) as u64).to_le_bytes());
    }
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&0u64.to_le_bytes());
    bytes(out, key.as_bytes());
    out.extend_from_slice(&(objects.len() as u32).to_le_bytes());
    for o in objects {
        out.extend_from_slice(&o.status.to_le_bytes());
        bytes(out, o.reason.as_bytes());
        out.extend_from_slice(&(o.fields.len() as u32).to_le_bytes());
        for (name, value) in &o.fields {
            bytes(out, name.as_bytes());
            bytes(out, value);
        }
        let received = o
            .received
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        out.extend_from_slice(&(received.as_micros() as u64).to_le_bytes());
        millis(out, o.initial_age);
        millis(out, o.lifetime);
        millis(out, o.stale_while_revalidate);
        millis(out, o.stale_if_error);
        out.push(u8::from(o.must_revalidate));
        out.extend_from_slice(&(o.vary.len() as u32).to_le_bytes());
        for (name, value) in o.vary.iter().zip(&o.vary_values) {
            bytes(out, name.as_bytes());
            out.push(u8::from(value.is_some()));
            bytes(out, value.as_deref().unwrap_or("").as_bytes());
        }
        bytes(out, &o.body);
    }
    let len = out.len() as u64;
    out[4..12].copy_from_slice(&len.to_le_bytes());
}

/// A bounds-checked reader over a file's bytes.
struct Cursor {
    data: Bytes,
    at: usize,
}

impl Cursor {
    fn take(&mut self, n: usize) -> Option<Bytes> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len())?;
        let b = self.data.slice(self.at..end);
        self.at = end;
        Some(b)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?[..].try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?[..].try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?[..].try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<Bytes> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
    fn millis(&mut self) -> Option<Duration> {
        Some(Duration::from_millis(self.u64()?))
    }
    /// A count of items each at least `min` bytes long, checked against what is left so
    /// a corrupt count cannot make the decoder allocate.
    fn count(&mut self, min: usize) -> Option<usize> {
        let n = self.u32()? as usize;
        (n.saturating_mul(min) <= self.data.len() - self.at).then_some(n)
    }
}

fn decode(data: Bytes) -> Option<(String, Vec<Object>)> {
    let mut c = Cursor { data, at: 0 };
    if &c.take(4)?[..] != MAGIC || c.u64()? != c.data.len() as u64 {
        return None;
    }
    let key = c.string()?;
    let n = c.count(32)?;
    let mut objects = Vec::with_capacity(n);
    for _ in 0..n {
        let status = c.u16()?;
        let reason = c.string()?.into_boxed_str();
        let nfields = c.count(8)?;
        let mut fields = Vec::with_capacity(nfields);
        for _ in 0..nfields {
            let name = c.string()?.into_boxed_str();
            let value = c.bytes()?.to_vec().into_boxed_slice();
            fields.push((name, value));
        }
        let received = SystemTime::UNIX_EPOCH + Duration::from_micros(c.u64()?);
        let initial_age = c.millis()?;
        let lifetime = c.millis()?;
        let stale_while_revalidate = c.millis()?;
        let stale_if_error = c.millis()?;
        let must_revalidate = c.u8()? != 0;
        let nvary = c.count(9)?;
        let mut vary = Vec::with_capacity(nvary);
        let mut vary_values = Vec::with_capacity(nvary);
        for _ in 0..nvary {
            vary.push(c.string()?);
            let present = c.u8()? != 0;
            let value = c.string()?;
            vary_values.push(present.then_some(value));
        }
        let body = c.bytes()?;
        objects.push(Object {
            status,
            reason,
            fields,
            body,
            received,
            initial_age,
            lifetime,
            stale_while_revalidate,
            stale_if_error,
            must_revalidate,
            vary,
            vary_values,
        });
    }
    (c.at == c.data.len()).then_some((key, objects))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(body: &str, vary: Option<&str>) -> Arc<Object> {
        Arc::new(Object {
            status: 200,
            reason: "OK".into(),
            fields: vec![
                ("content-type".into(), b"text/plain".to_vec().into()),
                ("etag".into(), b"\"v1\"".to_vec().into()),
            ],
            body: Bytes::from(body.to_owned()),
            received: SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
            initial_age: Duration::from_secs(5),
            lifetime: Duration::from_secs(60),
            stale_while_revalidate: Duration::from_secs(7),
            stale_if_error: Duration::from_secs(3600),
            must_revalidate: true,
            vary: vary.iter().map(|_| "accept-encoding".to_owned()).collect(),
            vary_values: vary.iter().map(|v| Some(v.to_string())).collect(),
        })
    }

    #[test]
    fn objects_round_trip_through_the_format() {
        let objects = [object("gzip body", Some("gzip")), object("plain", None)];
        let mut buf = Vec::new();
        encode("a.test/x?y=1", &objects, &mut buf);
        let (key, back) = decode(Bytes::from(buf)).expect("decodes");
        assert_eq!(key, "a.test/x?y=1");
        assert_eq!(back.len(), 2);
        for (a, b) in objects.iter().zip(&back) {
            assert_eq!(a.status, b.status);
            assert_eq!(a.reason, b.reason);
            assert_eq!(a.fields, b.fields);
            assert_eq!(a.body, b.body);
            assert_eq!(a.received, b.received);
            assert_eq!(a.initial_age, b.initial_age);
            assert_eq!(a.lifetime, b.lifetime);
            assert_eq!(a.stale_while_revalidate, b.stale_while_revalidate);
            assert_eq!(a.stale_if_error, b.stale_if_error);
            assert_eq!(a.must_revalidate, b.must_revalidate);
            assert_eq!(a.vary, b.vary);
            assert_eq!(a.vary_values, b.vary_values);
        }
    }

    #[test]
    fn every_truncation_and_a_flipped_length_are_rejected() {
        let mut buf = Vec::new();
        encode("k", &[object("body", Some("br"))], &mut buf);
        for len in 0..buf.len() {
            assert!(
                decode(Bytes::copy_from_slice(&buf[..len])).is_none(),
                "{len}"
            );
        }
        // A huge field count must not allocate or panic.
        let mut bad = buf.clone();
        let at = 4 + 8 + 4 + 1 + 4 + 2 + 4 + 2;
        bad[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(Bytes::from(bad)).is_none());
        let mut bad = buf;
        bad[0] = b'X';
        assert!(decode(Bytes::from(bad)).is_none());
    }

    /// A fresh directory under the system's temp dir, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("lb-disk-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            Self(dir)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn wait_for(tier: &DiskTier, key: &str) -> PathBuf {
        assert!(tier.flush(Duration::from_secs(5)));
        tier.index.run_pending_tasks();
        tier.path(key).expect("written")
    }

    #[test]
    fn written_objects_are_found_again_after_a_restart_and_purges_reach_the_files() {
        let dir = TempDir::new("restart");
        {
            let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
            let variants = Arc::new(Variants(vec![object("one", None)]));
            tier.write("a.test/one", variants);
            tier.write("a.test/two", Arc::new(Variants(vec![object("two", None)])));
            let path = wait_for(&tier, "a.test/one");
            let objects = tier
                .decode("a.test/one", &path, fs::read(&path).unwrap())
                .unwrap();
            assert_eq!(&objects[0].body[..], b"one");
            // The same file read for another key: refused, not served.
            let other = tier.decode("a.test/two", &path, fs::read(&path).unwrap());
            assert!(matches!(other, Err(DiskError::OtherKey(_))), "{other:?}");
        }
        // A leftover temporary file and a stranger are cleaned up at start-up.
        fs::write(dir.path().join("0000000000000000.tmp"), b"half").unwrap();
        fs::write(dir.path().join("0000000000000001.obj"), b"garbage").unwrap();
        let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
        let path = tier.path("a.test/one").expect("indexed at start-up");
        assert!(
            tier.path("a.test/two").is_some(),
            "its own file is still there"
        );
        assert!(!dir.path().join("0000000000000000.tmp").exists());
        assert!(!dir.path().join("0000000000000001.obj").exists());
        let purge = Purge::Path {
            pattern: crate::config::PathPattern::new("/one"),
            host: None,
        };
        assert_eq!(tier.purge(&purge), ["a.test/one"]);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while path.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!path.exists(), "the purge deletes the file");
    }

    #[test]
    fn the_budget_evicts_files() {
        let dir = TempDir::new("budget");
        let tier = DiskTier::open(dir.path(), 64 * 1024).unwrap();
        let body = "x".repeat(10 * 1024);
        for i in 0..20 {
            tier.write(
                &format!("k{i}"),
                Arc::new(Variants(vec![object(&body, None)])),
            );
            assert!(tier.flush(Duration::from_secs(5)));
        }
        let stats = tier.stats();
        assert!(stats.bytes <= 64 * 1024, "{stats:?}");
        assert!(stats.evictions > 0, "{stats:?}");
        assert_eq!(stats.writes, 20);
        // Evicted keys' files go too (the writer deletes them after the eviction).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let files = fs::read_dir(dir.path()).unwrap().count() as u64;
            if files == tier.stats().objects || std::time::Instant::now() > deadline {
                assert_eq!(files, tier.stats().objects);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
