//! Typed errors of the kernel module.

use std::path::PathBuf;

/// Why the kernel side could not do something. `lb` treats every one of these as
/// "run without kernel signals", so each message says what was missing.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("loading the XDP program failed{hint}: {source}")]
    Load {
        #[source]
        source: aya::EbpfError,
        hint: &'static str,
    },
    #[error("the XDP program `{name}` is missing from the embedded object")]
    ProgramMissing { name: &'static str },
    #[error("the map `{name}` is missing from the embedded object")]
    MapMissing { name: &'static str },
    #[error("{what} failed{hint}: {source}")]
    Program {
        what: String,
        #[source]
        source: aya::programs::ProgramError,
        hint: &'static str,
    },
    #[error("{what} failed: {source}")]
    Map {
        what: String,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("mapping `ORIGIN_SIGNALS` into memory failed: {source}")]
    Mmap {
        #[source]
        source: nix::Error,
    },
    #[error("bpffs at {path}: {message}")]
    Bpffs { path: PathBuf, message: String },
    #[error("pinning {name} at {path} failed: {source}")]
    Pin {
        name: &'static str,
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("no pinned lb maps at {path}: {reason}")]
    NotPinned { path: PathBuf, reason: String },
    #[error("origin slot {slot} is out of range (the kernel maps hold {max} slots)")]
    SlotOutOfRange { slot: u32, max: u32 },
    #[error("no interface to attach to: {0}")]
    NoInterface(String),
    #[error("tracefs: {0}")]
    Tracefs(String),
}

/// A hint appended to errors that are most often missing privileges.
pub(crate) fn privilege_hint(errno: Option<i32>) -> &'static str {
    match errno {
        Some(libc::EPERM) | Some(libc::EACCES) => " (needs root, or CAP_BPF and CAP_NET_ADMIN)",
        _ => "",
    }
}
