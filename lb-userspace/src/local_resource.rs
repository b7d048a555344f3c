//! The local resources lb itself can run out of while opening a connection. Both planes
//! need the same answer to "is this error lb's or the origin's?": the data plane answers
//! such a request 503 without blaming the origin, the health checker records no check,
//! and the metrics count it by resource.

use std::io;

use nix::errno::Errno;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalResource {
    /// EMFILE: this process's file-descriptor limit.
    ProcessFds,
    /// ENFILE: the system-wide file limit.
    SystemFds,
    /// EADDRNOTAVAIL: no local port left for the origin's address.
    LocalPorts,
    /// ENOBUFS / ENOMEM: kernel memory for sockets.
    KernelMemory,
}

impl LocalResource {
    /// Every resource, in metric order.
    pub const ALL: [Self; 4] = [
        Self::ProcessFds,
        Self::SystemFds,
        Self::LocalPorts,
        Self::KernelMemory,
    ];

    /// The local resource behind an error from socket() or connect(), if it is one.
    pub fn classify(e: &io::Error) -> Option<Self> {
        match Errno::from_raw(e.raw_os_error()?) {
            Errno::EMFILE => Some(Self::ProcessFds),
            Errno::ENFILE => Some(Self::SystemFds),
            Errno::EADDRNOTAVAIL => Some(Self::LocalPorts),
            Errno::ENOBUFS | Errno::ENOMEM => Some(Self::KernelMemory),
            _ => None,
        }
    }

    /// Position in [`Self::ALL`] (the metrics' slot).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The `resource` label of `lb_local_errors_total`.
    pub const fn label(self) -> &'static str {
        match self {
            Self::ProcessFds => "process_fds",
            Self::SystemFds => "system_fds",
            Self::LocalPorts => "local_ports",
            Self::KernelMemory => "kernel_memory",
        }
    }

    /// What a client reads in lb's 503.
    pub const fn text(self) -> &'static str {
        match self {
            Self::ProcessFds => "out of file descriptors (process limit)",
            Self::SystemFds => "out of file descriptors (system limit)",
            Self::LocalPorts => "out of local ports",
            Self::KernelMemory => "out of kernel socket memory",
        }
    }
}
