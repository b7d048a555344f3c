//! The process's file-descriptor limit. A load balancer holds two descriptors per proxied
//! request (client and origin) plus idle pooled connections, so the usual soft limit of
//! 1024 is far too low: `lb run` raises the soft limit to the hard one at start and logs
//! both figures, and the default `listener.max_connections` is derived from the result.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// The soft RLIMIT_NOFILE in force (1024 if it cannot be read).
pub fn current() -> u64 {
    getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft)
}

/// Raises the soft limit to the hard limit. Returns (before, after).
pub fn raise_to_hard() -> (u64, u64) {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return (1024, 1024);
    };
    if soft >= hard {
        return (soft, soft);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => (soft, hard),
        Err(_) => (soft, soft),
    }
}
