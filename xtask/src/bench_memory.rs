//! `cargo xtask bench idle-memory`: what an idle keep-alive client connection costs each
//! proxy. For lb, nginx and HAProxy in turn (one worker each, the bench configs): warm up
//! with 200 short connections, then open 2,000 connections that each fetch a 64 KiB body
//! and stay open, and report the growth of the proxy's RSS (all its processes) per
//! connection. `tests/idle_memory.rs` holds lb to the same measure.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::bench::{Contender, Procs};

const CONNECTIONS: usize = 2000;

pub fn bench_idle_memory() -> anyhow::Result<()> {
    crate::bench::ensure_tools()?;
    crate::bench::build_release()?;
    raise_fd_limit();
    let root = crate::workspace_root();
    let work = std::env::temp_dir().join(format!("lb-bench-mem-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let mut procs = Procs::default();
    procs.start(&work, &root)?;
    let mut rows = Vec::new();
    for c in [Contender::Lb, Contender::Nginx, Contender::Haproxy] {
        let pids = procs.set.pids(c);
        let addr = c.addr();
        for _ in 0..200 {
            get_64k(&mut TcpStream::connect(addr)?)?;
        }
        std::thread::sleep(Duration::from_millis(300));
        let before = rss(&pids);
        let started = Instant::now();
        let mut idle = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let mut s = TcpStream::connect(addr)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            get_64k(&mut s).with_context(|| c.name())?;
            idle.push(s);
        }
        std::thread::sleep(Duration::from_millis(500));
        let after = rss(&pids);
        let per = after.saturating_sub(before) as f64 / CONNECTIONS as f64;
        eprintln!(
            "{:<8} RSS {:>6} KiB -> {:>6} KiB: {per:.0} bytes per idle connection ({:.1} s)",
            c.name(),
            before / 1024,
            after / 1024,
            started.elapsed().as_secs_f64()
        );
        rows.push((c.name(), before, after, per));
        drop(idle);
        std::thread::sleep(Duration::from_millis(300));
    }
    drop(procs);
    let mut md = format!(
        "# Idle keep-alive connections ({})\n\n`cargo xtask bench idle-memory`: RSS growth of each proxy (all its processes) over {CONNECTIONS} client connections, each left idle after one 64 KiB response, one worker each.\n\n| proxy | RSS before | RSS after | bytes per idle connection |\n| --- | --- | --- | --- |\n",
        crate::bench::humantime_stamp()
    );
    for (name, before, after, per) in &rows {
        md.push_str(&format!(
            "| {name} | {} KiB | {} KiB | {per:.0} |\n",
            before / 1024,
            after / 1024
        ));
    }
    print!("{md}");
    let results = root.join("bench/results");
    std::fs::create_dir_all(&results)?;
    std::fs::write(results.join("idle_memory.md"), &md)?;
    eprintln!("wrote bench/results/idle_memory.md");
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// Sum of VmRSS over `pids`, in bytes.
fn rss(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum::<u64>()
        * 1024
}

/// One keep-alive GET of a 64 KiB body, read whole.
fn get_64k(s: &mut TcpStream) -> anyhow::Result<()> {
    s.write_all(b"GET /m?size=65536 HTTP/1.1\r\nHost: bench\r\n\r\n")?;
    let mut got = Vec::with_capacity(70_000);
    let mut buf = [0u8; 65536];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            bail!("closed before the whole response");
        }
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n")
            && got.len() >= end + 4 + 65536
        {
            return Ok(());
        }
    }
}
