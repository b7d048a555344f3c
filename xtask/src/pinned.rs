//! The benchmarks' processes: each pinned to a core with taskset, found again by a key
//! (which contender it is), and stopped politely when the set is dropped.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context as _;

pub(crate) struct Pinned<K> {
    children: Vec<(Option<K>, Child)>,
}

impl<K> Default for Pinned<K> {
    fn default() -> Self {
        Self {
            children: Vec::new(),
        }
    }
}

impl<K: PartialEq + Copy> Pinned<K> {
    /// Starts `program args` on `core` (output discarded); `key` finds it later.
    pub fn spawn(
        &mut self,
        key: Option<K>,
        core: &str,
        program: &Path,
        args: &[&str],
    ) -> anyhow::Result<()> {
        let child = Command::new("taskset")
            .arg("-c")
            .arg(core)
            .arg(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        self.children.push((key, child));
        Ok(())
    }

    /// The pid of `key`'s process and its direct children (nginx's workers): taskset
    /// execs the program, so the spawned child's pid is the program's.
    pub fn pids(&self, key: K) -> Vec<u32> {
        match self.children.iter().find(|(k, _)| *k == Some(key)) {
            Some((_, child)) => crate::bench::process_and_children(child.id()),
            None => Vec::new(),
        }
    }
}

impl<K: PartialEq + Copy> Pinned<K> {
    /// Kills `key`'s process at once (SIGKILL: a crash) and forgets it.
    pub fn stop(&mut self, key: K) {
        if let Some(at) = self.children.iter().position(|(k, _)| *k == Some(key)) {
            let (_, mut child) = self.children.remove(at);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl<K> Drop for Pinned<K> {
    /// SIGTERM first, so nginx's master stops its workers (SIGKILL would orphan them, and
    /// an orphaned worker keeps the port and serves the next run); SIGKILL after 3 s.
    fn drop(&mut self) {
        for (_, child) in &self.children {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for (_, child) in &mut self.children {
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
