//! Making sure a BPF filesystem is mounted where lb pins its maps.

use std::path::Path;

use nix::sys::statfs::{BPF_FS_MAGIC, statfs};

use super::KernelError;

/// Where the kernel conventionally mounts bpffs.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";

/// Mounts bpffs at `/sys/fs/bpf` if `pin_dir` lies under it and nothing is mounted there,
/// then checks that `pin_dir`'s parent really is on bpffs. Pins elsewhere must already be
/// on a bpffs the operator mounted.
pub fn ensure_bpffs_mounted(pin_dir: &Path) -> Result<(), KernelError> {
    let parent = pin_dir.parent().unwrap_or(Path::new("/"));
    if is_bpffs(parent) {
        return Ok(());
    }
    if parent.starts_with(BPFFS_ROOT) && !is_bpffs(Path::new(BPFFS_ROOT)) {
        nix::mount::mount(
            Some("bpf"),
            BPFFS_ROOT,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| KernelError::Bpffs {
            path: BPFFS_ROOT.into(),
            message: format!("not mounted, and mounting it failed: {e}"),
        })?;
        tracing::info!(path = BPFFS_ROOT, "mounted bpffs");
    }
    if !is_bpffs(parent) {
        return Err(KernelError::Bpffs {
            path: parent.to_owned(),
            message: "is not on a BPF filesystem (mount -t bpf bpf <dir>)".into(),
        });
    }
    Ok(())
}

fn is_bpffs(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == BPF_FS_MAGIC)
}
