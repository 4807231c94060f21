//! A full disk: a node's data folder on a size-limited filesystem made for the run (a
//! tmpfs with `size=`, mounted before the node starts so its files live there from the
//! first), filled by a filler file until a given number of bytes is free. Releasing
//! deletes the filler; teardown unmounts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::Bytes;

/// The filler's name in the data folder.
pub const FILLER: &str = ".gauntlet-disk-full";
/// The chunk a filler is written in where the filesystem cannot preallocate.
const CHUNK: usize = 1 << 20;

/// How a data folder was filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filled {
    /// The filler's size.
    pub written: u64,
    /// Bytes free once it was written, read back.
    pub free: u64,
}

/// Mounts a tmpfs of `size` bytes at `dir` (made if missing).
pub fn mount(dir: &Path, size: u64) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run `mount` ({e}): disk_full needs util-linux's mount"))?;
    if !out.status.success() {
        return Err(format!(
            "cannot mount a tmpfs at {} ({}): disk_full needs root (CAP_SYS_ADMIN) to mount the node's data folder",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Unmounts `dir` (lazily if it is busy), if it is a mount point.
pub fn unmount(dir: &Path) -> Result<(), String> {
    if !is_mount(dir) {
        return Ok(());
    }
    let run = |args: &[&str]| Command::new("umount").args(args).arg(dir).output();
    match run(&[]) {
        Ok(o) if o.status.success() => Ok(()),
        _ => match run(&["-l"]) {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!("cannot unmount {}: {}", dir.display(), String::from_utf8_lossy(&o.stderr).trim())),
            Err(e) => Err(format!("cannot run `umount` for {}: {e}", dir.display())),
        },
    }
}

/// Whether `dir` is a mount point.
pub fn is_mount(dir: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    // Field 5 is the mount point (spaces escaped as \040).
    info.lines().filter_map(|l| l.split(' ').nth(4)).any(|m| Path::new(&m.replace("\\040", " ")) == dir)
}

/// Whether a tmpfs can be mounted here: mounts and unmounts a small one under `scratch`.
pub fn probe(scratch: &Path) -> Result<(), String> {
    let dir = scratch.join(".gauntlet-mount-probe");
    mount(&dir, 1 << 16)?;
    let r = unmount(&dir);
    let _ = std::fs::remove_dir(&dir);
    r
}

/// Bytes free to an unprivileged writer on the filesystem of `dir`.
pub fn free(dir: &Path) -> Result<u64, String> {
    let s = nix::sys::statvfs::statvfs(dir).map_err(|e| format!("statvfs {}: {e}", dir.display()))?;
    Ok(s.blocks_available() as u64 * s.fragment_size() as u64)
}

/// Fills the filesystem of `dir` with a filler file until `leave` bytes are free.
pub fn fill(dir: &Path, leave: u64) -> Result<Filled, String> {
    let before = free(dir)?;
    let target = before.saturating_sub(leave);
    let path = dir.join(FILLER);
    let mut file = std::fs::File::create(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    let preallocated = target == 0
        || nix::fcntl::fallocate(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            nix::fcntl::FallocateFlags::empty(),
            0,
            target as i64,
        )
        .is_ok();
    if !preallocated {
        let chunk = vec![0u8; CHUNK];
        let mut left = target;
        // Bounded: one pass per chunk of the target.
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            match file.write_all(&chunk[..n]) {
                Ok(()) => left -= n as u64,
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(e) => return Err(format!("writing {}: {e}", path.display())),
            }
        }
        let _ = file.sync_all();
    }
    let written = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok(Filled { written, free: free(dir)? })
}

/// Deletes the filler of `dir`, if there is one.
pub fn release(dir: &Path) -> Result<(), String> {
    match std::fs::remove_file(dir.join(FILLER)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("deleting the filler in {}: {e}", dir.display())),
    }
}

/// What filling `dir` did, for the report.
pub fn describe(dir: &Path, filled: Filled, free_at_end: Option<u64>) -> String {
    let mut s = format!("filled {} to {} free (wrote {})", dir.display(), Bytes(filled.free), Bytes(filled.written));
    if let Some(end) = free_at_end {
        s.push_str(&format!("; {} free when it ended", Bytes(end)));
    }
    s
}

/// The data folders of `dirs` that are mount points (what teardown must unmount).
pub fn mounted(dirs: &[PathBuf]) -> Vec<PathBuf> {
    dirs.iter().filter(|d| is_mount(d)).cloned().collect()
}
