//! Where access-log lines go: one writer thread per process (`lb-access-log`), fed
//! batches of lines through a queue bounded in bytes. Workers never write the log
//! themselves, so a slow disk or a pipe nobody reads never stalls a request: when the
//! queue is full, a batch is dropped and its lines counted
//! (`lb_access_log_dropped_lines_total`).
//!
//! The file (if any) is opened in append mode and reopened on SIGUSR1, so logrotate can
//! move it away (`postrotate: kill -USR1`).

use std::{
    fs::{File, OpenOptions},
    io::Write as _,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed},
        mpsc,
    },
    time::Duration,
};

enum Message {
    Lines {
        batch: Vec<u8>,
        lines: u64,
    },
    /// Everything before it is written: answer.
    Flush(mpsc::Sender<()>),
}

/// The writer's end as the rest of lb holds it.
pub struct LogSink {
    tx: mpsc::Sender<Message>,
    queued_bytes: Arc<AtomicUsize>,
    limit: usize,
    reopen: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
}

enum Output {
    Stderr,
    File { path: PathBuf, file: File },
}

impl Output {
    fn open(path: &PathBuf) -> std::io::Result<File> {
        OpenOptions::new().create(true).append(true).open(path)
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Stderr => std::io::stderr().lock().write_all(bytes),
            Self::File { file, .. } => file.write_all(bytes),
        }
    }
}

impl LogSink {
    /// Starts the writer for `file` (None: stderr) with at most `limit` bytes queued. A
    /// file that cannot be opened is an error (the caller says where and stops).
    pub fn start(file: Option<PathBuf>, limit: usize) -> std::io::Result<Arc<Self>> {
        let mut output = match file {
            None => Output::Stderr,
            Some(path) => {
                let file = Output::open(&path).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("access log {}: {e}", path.display()))
                })?;
                Output::File { path, file }
            }
        };
        let (tx, rx) = mpsc::channel::<Message>();
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let reopen = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let written = Arc::new(AtomicU64::new(0));
        {
            let (queued_bytes, reopen, dropped, written) = (
                Arc::clone(&queued_bytes),
                Arc::clone(&reopen),
                Arc::clone(&dropped),
                Arc::clone(&written),
            );
            std::thread::Builder::new()
                .name("lb-access-log".into())
                .spawn(move || {
                    for message in rx {
                        match message {
                            Message::Lines { batch, lines } => {
                                if reopen.swap(false, Relaxed)
                                    && let Output::File { path, file } = &mut output
                                {
                                    match Output::open(path) {
                                        Ok(f) => *file = f,
                                        Err(e) => tracing::warn!(path = %path.display(), error = %e, "access log not reopened; writing to the old file"),
                                    }
                                }
                                match output.write(&batch) {
                                    Ok(()) => written.fetch_add(lines, Relaxed),
                                    Err(_) => dropped.fetch_add(lines, Relaxed),
                                };
                                queued_bytes.fetch_sub(batch.len(), Relaxed);
                            }
                            Message::Flush(done) => {
                                let _ = done.send(());
                            }
                        }
                    }
                })?;
        }
        Ok(Arc::new(Self {
            tx,
            queued_bytes,
            limit,
            reopen,
            dropped,
            written,
        }))
    }

    /// Hands `batch` (`lines` complete lines) to the writer, or drops it if the queue is
    /// full. Never blocks.
    pub fn submit(&self, batch: Vec<u8>, lines: u64) {
        let len = batch.len();
        if len == 0 {
            return;
        }
        if self.queued_bytes.fetch_add(len, Relaxed) + len > self.limit {
            self.queued_bytes.fetch_sub(len, Relaxed);
            self.dropped.fetch_add(lines, Relaxed);
            return;
        }
        if self.tx.send(Message::Lines { batch, lines }).is_err() {
            self.queued_bytes.fetch_sub(len, Relaxed);
            self.dropped.fetch_add(lines, Relaxed);
        }
    }

    /// SIGUSR1: the file is reopened before the next batch is written.
    pub fn reopen(&self) {
        self.reopen.store(true, Relaxed);
    }

    /// Lines dropped because the queue was full or the write failed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Lines written.
    pub fn written(&self) -> u64 {
        self.written.load(Relaxed)
    }

    /// Waits up to `limit` for what was submitted so far to be written (at exit).
    pub fn flush(&self, limit: Duration) -> bool {
        let (done, wait) = mpsc::channel();
        if self.tx.send(Message::Flush(done)).is_err() {
            return false;
        }
        wait.recv_timeout(limit).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_reach_the_file_and_a_reopen_follows_a_rename() {
        let dir = std::env::temp_dir().join(format!("lb-sink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("access.log");
        let sink = LogSink::start(Some(path.clone()), 1 << 20).unwrap();
        sink.submit(b"one\ntwo\n".to_vec(), 2);
        assert!(sink.flush(Duration::from_secs(5)));
        std::fs::rename(&path, dir.join("access.log.1")).unwrap();
        sink.reopen();
        sink.submit(b"three\n".to_vec(), 1);
        assert!(sink.flush(Duration::from_secs(5)));
        assert_eq!(
            std::fs::read_to_string(dir.join("access.log.1")).unwrap(),
            "one\ntwo\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
        assert_eq!((sink.written(), sink.dropped()), (3, 0));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        // A writer that cannot keep up: a file on a pipe nobody reads would block; here
        // the limit is smaller than one batch, so the batch is dropped at once.
        let dir = std::env::temp_dir().join(format!("lb-sink-full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sink = LogSink::start(Some(dir.join("a.log")), 8).unwrap();
        sink.submit(b"0123456789\n".to_vec(), 1);
        assert!(sink.flush(Duration::from_secs(5)));
        assert_eq!((sink.written(), sink.dropped()), (0, 1));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
