//! Resource faults on a node: a CPU share, a memory limit, a full disk. Unlike the
//! other node operations each takes a size, holds while the fault lasts, and reports
//! what it did when it is released (the throttling the kernel counted, the OOM kills,
//! the bytes left free), so a run proves the starvation happened.
//!
//! [`cgroup`] caps CPU and memory through a cgroup of the node's own (v1 `cpu` and
//! `memory` controllers, or v2's `cpu.max` and `memory.max`); [`disk`] gives a node's
//! data folder a size-limited filesystem of the run's (a tmpfs with `size=`) and fills
//! it. Both leave nothing behind: every release, teardown and the reaper remove the
//! cgroups, fillers and mounts they made.

pub mod cgroup;
pub mod container;
pub mod disk;

use std::fmt;

/// The most bytes a memory limit or a disk may be given (1 TiB): a bound on sizes
/// read from files.
pub const MAX_BYTES: u64 = 1 << 40;

/// The size of a node's data filesystem when the scenario gives none.
pub const DEFAULT_DISK_SIZE: u64 = 64 << 20;

/// Which of a node's packets a `packet_loss` fault drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Arriving.
    In,
    /// Leaving.
    Out,
    /// Both ways.
    Both,
}

impl Direction {
    /// From a scenario's `direction`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "in" => Some(Self::In),
            "out" => Some(Self::Out),
            "both" => Some(Self::Both),
            _ => None,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::In => "in",
            Self::Out => "out",
            Self::Both => "in and out",
        })
    }
}

/// A resource fault on one node, held while the fault lasts.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeLimit {
    /// At most `share` of one core (0 < share <= 64).
    Cpu { share: f64 },
    /// At most `bytes` of memory (page cache included); beyond it the kernel reclaims,
    /// then OOM-kills.
    Memory { bytes: u64 },
    /// The data folder (a filesystem of `size` bytes) filled until `leave` bytes are free.
    DiskFull { leave: u64, size: u64 },
    /// Each packet of the node (in `direction`; only those of its calls to `peer`, when
    /// named) dropped with `probability`, in the node's own network namespace (docker).
    PacketLoss { probability: f64, direction: Direction, peer: Option<String> },
}

impl NodeLimit {
    /// Its name in scenario files: `cpu`, `memory`, `disk_full`.
    pub fn op(&self) -> &'static str {
        match self {
            Self::Cpu { .. } => "cpu",
            Self::Memory { .. } => "memory",
            Self::DiskFull { .. } => "disk_full",
            Self::PacketLoss { .. } => "packet_loss",
        }
    }
}

impl fmt::Display for NodeLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu { share } => write!(f, "cpu {}", percent(*share)),
            Self::Memory { bytes } => write!(f, "memory {}", Bytes(*bytes)),
            Self::DiskFull { leave, .. } => write!(f, "disk_full leaving {}", Bytes(*leave)),
            Self::PacketLoss { probability, direction, peer: None } => {
                write!(f, "packet_loss {} {direction}", percent(*probability))
            }
            Self::PacketLoss { probability, direction, peer: Some(p) } => {
                write!(f, "packet_loss {} {direction} on calls to {p}", percent(*probability))
            }
        }
    }
}

/// What this machine lacks to hold resource faults, each said with why: root, the cpu
/// and memory cgroup controllers, a tmpfs mount. Empty when it can hold them all.
pub fn missing_capabilities() -> Vec<String> {
    // SAFETY: geteuid cannot fail and touches no memory.
    let root = unsafe { nix::libc::geteuid() } == 0;
    let mut missing: Vec<String> = [
        (!root).then(|| "not root (cgroups and mounts need it)".to_string()),
        cgroup::Hierarchy::find(cgroup::Resource::Cpu).err(),
        cgroup::Hierarchy::find(cgroup::Resource::Memory).err(),
    ]
    .into_iter()
    .flatten()
    .collect();
    if root {
        if let Err(e) = disk::probe(&std::env::temp_dir()) {
            missing.push(format!("tmpfs cannot be mounted: {e}"));
        }
    }
    missing
}

/// A share as a percentage with at most one decimal: `20%`, `1.5%`.
pub fn percent(share: f64) -> String {
    let p = format!("{:.1}", share * 100.0);
    format!("{}%", p.strip_suffix(".0").unwrap_or(&p))
}

/// What a resource fault did, read back when it was released.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitEffect {
    /// How much it bit, in the unit `detail` names (throttled periods, times the memory
    /// limit was hit, bytes of filler); 0 is nothing.
    pub touched: u64,
    /// What was read, for people.
    pub detail: String,
    /// The node died while the limit held (an OOM kill): it must be started again.
    pub node_ended: bool,
}

/// A byte count shown in binary units: `64.0 MiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        let mut v = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while v >= 1024.0 && unit + 1 < UNITS.len() {
            v /= 1024.0;
            unit += 1;
        }
        write!(f, "{v:.1} {}", UNITS[unit])
    }
}

/// Parses a size: `64MiB`, `1.5GiB`, `512KiB`, `10MB` (powers of ten), `4096` (bytes).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("`{text}` is not a size like \"64MiB\" or \"1MiB\""))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("`{text}`: unknown unit `{other}` (use B, KiB, MiB, GiB, KB, MB or GB)")),
    };
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes > MAX_BYTES as f64 {
        return Err(format!("`{text}` is more than {}", Bytes(MAX_BYTES)));
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_binary_and_decimal_units() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1.5 GiB"), Ok(3 << 29));
        assert_eq!(parse_bytes("10MB"), Ok(10_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("lots").unwrap_err().contains("not a size"));
        assert!(parse_bytes("3 furlongs").unwrap_err().contains("unknown unit"));
        assert!(parse_bytes("2048GiB").is_err(), "bounded");
    }

    #[test]
    fn shares_are_shown_as_percentages() {
        assert_eq!(percent(0.2), "20%");
        assert_eq!(percent(0.015), "1.5%");
    }

    #[test]
    fn bytes_are_shown_in_binary_units() {
        assert_eq!(Bytes(512).to_string(), "512 B");
        assert_eq!(Bytes(1 << 20).to_string(), "1.0 MiB");
        assert_eq!(Bytes(65_850_000).to_string(), "62.8 MiB");
    }
}
