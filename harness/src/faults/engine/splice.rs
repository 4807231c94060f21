//! Zero-copy forwarding for the link's fast path on Linux: socket to pipe to socket with
//! `splice(2)`, so the bytes never cross into user space.
//!
//! Each call moves one batch and drains the pipe before returning, so no byte is ever
//! left in the pipe when the link leaves the fast path.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// The pipe's capacity, and the most one batch moves.
const PIPE_SIZE: usize = 1024 * 1024;

/// Which side of a batch failed.
pub(crate) enum SpliceError {
    /// Reading the source failed.
    Read(io::Error),
    /// Writing the destination failed (the peer is gone).
    Write,
}

/// A pipe for one link's zero-copy forwarding.
pub(crate) struct Splicer {
    read: OwnedFd,
    write: OwnedFd,
    batch: usize,
}

impl Splicer {
    /// A splicer, or `None` where pipes cannot be had (then the link copies).
    pub(crate) fn new() -> Option<Self> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).ok()?;
        let size = i32::try_from(PIPE_SIZE).unwrap_or(i32::MAX);
        // A bigger pipe means fewer calls; the default 64 KiB still works.
        let batch = fcntl(write.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(size))
            .ok()
            .and_then(|got| usize::try_from(got).ok())
            .unwrap_or(64 * 1024);
        Some(Self { read, write, batch })
    }

    /// The most one batch moves.
    pub(crate) fn batch(&self) -> usize {
        self.batch
    }

    /// Moves what `src` has now into `dst`: `Ok(None)` when nothing was ready after
    /// all, `Ok(Some(0))` at the end of the stream, `Ok(Some(n))` after moving `n` bytes.
    pub(crate) async fn forward(&mut self, src: &TcpStream, dst: &TcpStream) -> Result<Option<usize>, SpliceError> {
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        let moved = src.try_io(Interest::READABLE, || {
            splice(src, None, &self.write, None, self.batch, flags).map_err(io::Error::from)
        });
        let n = match moved {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(SpliceError::Read(e)),
        };
        let mut left = n;
        while left > 0 {
            dst.writable().await.map_err(|_| SpliceError::Write)?;
            let sent = dst.try_io(Interest::WRITABLE, || {
                splice(&self.read, None, dst, None, left, flags).map_err(io::Error::from)
            });
            match sent {
                Ok(0) => return Err(SpliceError::Write),
                Ok(m) => left -= m.min(left),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => return Err(SpliceError::Write),
            }
        }
        Ok(Some(n))
    }
}
