//! Forwarding the XDP program's aya-log records into lb's tracing output.
//!
//! aya-log hands records to the `log` facade; tracing-subscriber's `tracing-log` bridge
//! turns them into tracing events, so they share lb's format and filter. This lives in the
//! kernel module because registering the ring buffer's fd with the reactor is `unsafe`.

use tokio::io::{Interest, unix::AsyncFd};

/// The reader of the program's log ring buffer.
pub type ProgramLogReader = aya_log::EbpfLogger<&'static dyn log::Log>;

/// Forwards records until the reactor fails; runs on the control plane's runtime.
pub async fn forward_program_logs(reader: ProgramLogReader) {
    // SAFETY: the EbpfLogger owns the ring buffer map's fd, which stays open and unchanged
    // until the logger is dropped, and the AsyncFd owns the logger, so the fd outlives the
    // registration; `as_raw_fd` always returns that same descriptor.
    let registered = unsafe { AsyncFd::register_with_interest(reader, Interest::READABLE) };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(error = %e, "cannot poll the XDP program's log buffer; its logs are lost");
            return;
        }
    };
    loop {
        let mut guard = match fd.readable_mut().await {
            Ok(guard) => guard,
            Err(e) => {
                tracing::warn!(error = %e, "XDP log buffer poll failed; its logs are lost");
                return;
            }
        };
        guard.get_inner_mut().flush();
        guard.clear_ready();
    }
}
