//! CPU and memory caps through a cgroup of the node's own:
//! `<mount>/gauntlet/<run>/<node>`, holding every process of the node's process group.
//!
//! cgroup v1 (the `cpu` and `memory` controllers each mounted on its own) is written
//! through `cpu.cfs_quota_us` and `memory.limit_in_bytes`; cgroup v2, where it offers
//! the controller, through `cpu.max` and `memory.max`. Released, a cap is lifted, its
//! processes go back to the cgroup they came from, and its folder is removed.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The folder of Gauntlet's cgroups under a hierarchy's mount.
pub const GAUNTLET_DIR: &str = "gauntlet";
/// The most processes one node's group may have moved (a bound on a /proc scan's result).
const MAX_PIDS: usize = 4096;
/// The most /proc entries read while looking for a node's processes.
const MAX_PROC_ENTRIES: usize = 1 << 20;
/// How often, and how long apart, removing a cgroup is tried while its last
/// processes leave it.
const RMDIR_TRIES: u32 = 50;
const RMDIR_PAUSE: Duration = Duration::from_millis(20);
/// The CFS period the quota is a share of, when the cgroup does not say.
const DEFAULT_PERIOD_US: u64 = 100_000;
/// The smallest quota the kernel accepts.
const MIN_QUOTA_US: u64 = 1_000;

/// The resource a cgroup caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Cpu,
    Memory,
}

impl Resource {
    fn v1_name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Memory => "memory",
        }
    }

    /// The file that proves a v1 hierarchy has the controller.
    fn v1_file(self) -> &'static str {
        match self {
            Self::Cpu => "cpu.cfs_quota_us",
            Self::Memory => "memory.limit_in_bytes",
        }
    }
}

/// The cgroup hierarchy that controls one resource on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Its mount, e.g. /sys/fs/cgroup/cpu.
    pub root: PathBuf,
    /// cgroup v2 (unified) rather than v1.
    pub v2: bool,
    pub resource: Resource,
}

impl Hierarchy {
    /// Where `resource` can be capped here, or what is missing and how to get it.
    pub fn find(resource: Resource) -> Result<Self, String> {
        Self::find_under(Path::new("/sys/fs/cgroup"), resource)
    }

    fn find_under(base: &Path, resource: Resource) -> Result<Self, String> {
        let name = resource.v1_name();
        let v1 = base.join(name);
        if v1.join(resource.v1_file()).is_file() {
            return Ok(Self { root: v1, v2: false, resource });
        }
        for root in [base.to_path_buf(), base.join("unified")] {
            let offered = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
            if offered.split_whitespace().any(|c| c == name) {
                return Ok(Self { root, v2: true, resource });
            }
        }
        Err(format!(
            "no cgroup `{name}` controller on this machine: cgroup v1 has no {} and cgroup v2 offers no `{name}` in its \
             cgroup.controllers; mount the v1 controller (`mount -t cgroup -o {name} cgroup {}`) or enable it in v2, and \
             run as root",
            v1.join(resource.v1_file()).display(),
            v1.display()
        ))
    }

    /// The folder of run `run_id`'s cgroups.
    pub fn run_dir(&self, run_id: &str) -> PathBuf {
        self.root.join(GAUNTLET_DIR).join(run_id)
    }

    /// Makes the folder of run `run_id` (the proof that cgroups can be written here).
    pub fn prepare(&self, run_id: &str) -> Result<PathBuf, String> {
        let dir = self.run_dir(run_id);
        std::fs::create_dir_all(&dir).map_err(|e| {
            format!(
                "cannot create the cgroup {} ({e}): run as root, with the cgroup filesystem writable",
                dir.display()
            )
        })?;
        if self.v2 {
            // Controllers reach a cgroup only through its parents' subtree_control.
            let enable = format!("+{}", self.resource.v1_name());
            for d in [self.root.clone(), self.root.join(GAUNTLET_DIR), dir.clone()] {
                write(&d.join("cgroup.subtree_control"), &enable)?;
            }
        }
        Ok(dir)
    }
}

/// CPU throttling as a cgroup's `cpu.stat` counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuStat {
    /// Enforcement periods that elapsed with the group runnable.
    pub periods: u64,
    /// Of those, periods in which it used up its quota and was throttled.
    pub throttled: u64,
    /// Time spent throttled.
    pub throttled_time: Duration,
}

/// What a memory limit did, as the cgroup counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStat {
    /// Times the usage hit the limit (and memory was reclaimed).
    pub hit: u64,
    /// Processes the OOM killer ended in the group.
    pub oom_kills: u64,
    /// The highest usage seen.
    pub max_usage: u64,
    /// The usage now.
    pub usage: u64,
}

/// One node's cgroup for one resource, while it holds.
#[derive(Debug)]
pub struct NodeCgroup {
    hierarchy: Hierarchy,
    /// The cgroup's folder.
    pub dir: PathBuf,
    /// The cgroup the node's processes came from, to go back to.
    home: PathBuf,
}

impl NodeCgroup {
    /// Makes the cgroup of `node` under run `run_id` and moves every process of the
    /// process group `pgid` into it (children started later are born in it).
    pub fn create(hierarchy: &Hierarchy, run_id: &str, node: &str, pgid: u32) -> Result<Self, String> {
        let dir = hierarchy.prepare(run_id)?.join(node);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create the cgroup {} ({e})", dir.display())),
        }
        let home = current_cgroup(hierarchy, pgid).unwrap_or_else(|| hierarchy.root.clone());
        let cg = Self { hierarchy: hierarchy.clone(), dir, home };
        if hierarchy.resource == Resource::Memory && !hierarchy.v2 {
            // v1 leaves the memory a process already uses charged where it was unless
            // told to move it with the process (and newer kernels ignore even that: a
            // node is born in its memory cgroup, see `for_birth`).
            let _ = write(&cg.dir.join("memory.move_charge_at_immigrate"), "3");
        }
        cg.adopt(pgid)?;
        Ok(cg)
    }

    /// Makes the cgroup of `node` under run `run_id`, empty and without a cap, for the
    /// node to be born in (its memory is then charged to it from the first page).
    pub fn for_birth(hierarchy: &Hierarchy, run_id: &str, node: &str) -> Result<Self, String> {
        let dir = hierarchy.prepare(run_id)?.join(node);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create the cgroup {} ({e})", dir.display())),
        }
        Ok(Self { hierarchy: hierarchy.clone(), dir, home: hierarchy.root.clone() })
    }

    /// The file a process writes `0` to to join the cgroup.
    pub fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// Moves every process of the process group `pgid` into the cgroup.
    pub fn adopt(&self, pgid: u32) -> Result<(), String> {
        let cg = self;
        let pids = group_pids(pgid);
        if pids.is_empty() {
            return Err(format!("the node's process group {pgid} has no process (it is not running)"));
        }
        for pid in pids {
            // A process may have exited since the scan.
            if let Err(e) = write(&cg.dir.join("cgroup.procs"), &pid.to_string()) {
                if Path::new(&format!("/proc/{pid}")).exists() {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Caps the group at `share` of one core; returns the quota and period set (µs).
    pub fn cap_cpu(&self, share: f64) -> Result<(u64, u64), String> {
        if self.hierarchy.v2 {
            let quota = ((share * DEFAULT_PERIOD_US as f64) as u64).max(MIN_QUOTA_US);
            write(&self.dir.join("cpu.max"), &format!("{quota} {DEFAULT_PERIOD_US}"))?;
            return Ok((quota, DEFAULT_PERIOD_US));
        }
        let period = read_u64(&self.dir.join("cpu.cfs_period_us")).unwrap_or(DEFAULT_PERIOD_US);
        let quota = ((share * period as f64) as u64).max(MIN_QUOTA_US);
        write(&self.dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
        Ok((quota, period))
    }

    /// Caps the group's memory (swap included, where the kernel counts it) at `bytes`;
    /// the peak and the count of hits start again from here.
    pub fn cap_memory(&self, bytes: u64) -> Result<(), String> {
        if !self.hierarchy.v2 {
            for counter in ["memory.max_usage_in_bytes", "memory.failcnt"] {
                let _ = write(&self.dir.join(counter), "0");
            }
        }
        if self.hierarchy.v2 {
            write(&self.dir.join("memory.max"), &bytes.to_string())?;
            let swap = self.dir.join("memory.swap.max");
            if swap.exists() {
                write(&swap, "0")?;
            }
            return Ok(());
        }
        write(&self.dir.join("memory.limit_in_bytes"), &bytes.to_string()).map_err(|e| {
            format!("{e} (the node may use more than that and the kernel could not reclaim it: give a higher limit)")
        })?;
        let memsw = self.dir.join("memory.memsw.limit_in_bytes");
        if memsw.exists() {
            write(&memsw, &bytes.to_string())?;
        }
        Ok(())
    }

    /// Lifts the memory cap, keeping the cgroup (a node born in it stays in it).
    pub fn uncap_memory(&self) -> Result<(), String> {
        if self.hierarchy.v2 {
            return write(&self.dir.join("memory.max"), "max");
        }
        let memsw = self.dir.join("memory.memsw.limit_in_bytes");
        if memsw.exists() {
            write(&memsw, "-1")?;
        }
        write(&self.dir.join("memory.limit_in_bytes"), "-1")
    }

    /// The group's throttling so far.
    pub fn cpu_stat(&self) -> CpuStat {
        cpu_stat_in(&self.dir)
    }

    /// What the memory limit did so far.
    pub fn memory_stat(&self) -> MemoryStat {
        memory_stat_in(&self.dir, self.hierarchy.v2)
    }

    /// Lifts the cap, moves the group's processes back where they came from and
    /// removes the cgroup.
    pub fn release(self) -> Result<(), String> {
        let unlimited = if self.hierarchy.v2 { "max" } else { "-1" };
        let caps: &[&str] = match (self.hierarchy.resource, self.hierarchy.v2) {
            (Resource::Cpu, false) => &["cpu.cfs_quota_us"],
            (Resource::Cpu, true) => &["cpu.max"],
            // memsw first: it may not be below the memory limit.
            (Resource::Memory, false) => &["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"],
            (Resource::Memory, true) => &["memory.max"],
        };
        let mut first_error = None;
        for file in caps.iter().map(|f| self.dir.join(f)).filter(|f| f.exists()) {
            if let Err(e) = write(&file, unlimited) {
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = empty_into(&self.dir, &self.home).or_else(|_| empty_into(&self.dir, &self.hierarchy.root)) {
            first_error.get_or_insert(e);
        }
        if let Err(e) = remove_dir(&self.dir) {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Removes run folder `run_dir` (`<mount>/gauntlet/<run>`) and every node cgroup in
/// it, their processes moved to the hierarchy's root first; then `gauntlet/` if no
/// other run uses it. For teardown and the reaper: nothing is left behind.
pub fn remove_run(run_dir: &Path) -> Result<(), String> {
    if !run_dir.exists() {
        return Ok(());
    }
    let root = run_dir.parent().and_then(Path::parent).unwrap_or(Path::new("/sys/fs/cgroup"));
    let mut first_error = None;
    let children = std::fs::read_dir(run_dir).map(|d| d.filter_map(Result::ok).collect::<Vec<_>>());
    for child in children.unwrap_or_default().into_iter().filter(|e| e.path().is_dir()) {
        let dir = child.path();
        for cap in ["cpu.cfs_quota_us", "memory.memsw.limit_in_bytes", "memory.limit_in_bytes"] {
            if dir.join(cap).exists() {
                let _ = write(&dir.join(cap), "-1");
            }
        }
        let removed = empty_into(&dir, root).and_then(|()| remove_dir(&dir));
        if let Err(e) = removed {
            first_error.get_or_insert(e);
        }
    }
    if let Err(e) = remove_dir(run_dir) {
        first_error.get_or_insert(e);
    }
    if let Some(gauntlet) = run_dir.parent() {
        let _ = std::fs::remove_dir(gauntlet); // other runs may use it
    }
    first_error.map_or(Ok(()), Err)
}

/// Moves every process of cgroup `from` into cgroup `to`.
fn empty_into(from: &Path, to: &Path) -> Result<(), String> {
    let procs = std::fs::read_to_string(from.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().take(MAX_PIDS) {
        if let Err(e) = write(&to.join("cgroup.procs"), pid.trim()) {
            if Path::new(&format!("/proc/{}", pid.trim())).exists() {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Removes an empty cgroup, waiting a little for exiting processes to leave it.
fn remove_dir(dir: &Path) -> Result<(), String> {
    let mut last = None;
    for _ in 0..RMDIR_TRIES {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(RMDIR_PAUSE);
    }
    Err(format!("cannot remove the cgroup {}: {}", dir.display(), last.map(|e| e.to_string()).unwrap_or_default()))
}

/// The cgroup folder process `pid` is in, in `hierarchy`.
fn current_cgroup(hierarchy: &Hierarchy, pid: u32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let name = hierarchy.resource.v1_name();
    let path = text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let ours = if hierarchy.v2 { controllers.is_empty() } else { controllers.split(',').any(|c| c == name) };
        ours.then(|| path.to_string())
    })?;
    let dir = hierarchy.root.join(path.trim_start_matches('/'));
    dir.is_dir().then_some(dir)
}

/// Every process whose process group is `pgid`.
pub fn group_pids(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut out = Vec::new();
    for entry in dir.take(MAX_PROC_ENTRIES).filter_map(Result::ok) {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // After the command name: state, ppid, pgrp.
        let pgrp = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().nth(2)?.parse::<u32>().ok());
        if pgrp == Some(pgid) {
            out.push(pid);
            if out.len() >= MAX_PIDS {
                break;
            }
        }
    }
    out
}

/// The throttling a cgroup's `cpu.stat` in `dir` counts (v1 or v2).
pub fn cpu_stat_in(dir: &Path) -> CpuStat {
    let text = std::fs::read_to_string(dir.join("cpu.stat")).unwrap_or_default();
    let field =
        |name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<u64>().ok());
    let throttled_time = match (field("throttled_time"), field("throttled_usec")) {
        (Some(ns), _) => Duration::from_nanos(ns),
        (None, Some(us)) => Duration::from_micros(us),
        (None, None) => Duration::ZERO,
    };
    CpuStat { periods: field("nr_periods").unwrap_or(0), throttled: field("nr_throttled").unwrap_or(0), throttled_time }
}

/// What a memory cgroup in `dir` counts (`v2`: the unified hierarchy's files).
pub fn memory_stat_in(dir: &Path, v2: bool) -> MemoryStat {
    let keyed = |file: &str, key: &str| {
        let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse::<u64>().ok())
    };
    if v2 {
        return MemoryStat {
            hit: keyed("memory.events", "max").unwrap_or(0),
            oom_kills: keyed("memory.events", "oom_kill").unwrap_or(0),
            max_usage: read_u64(&dir.join("memory.peak")).unwrap_or(0),
            usage: read_u64(&dir.join("memory.current")).unwrap_or(0),
        };
    }
    MemoryStat {
        hit: read_u64(&dir.join("memory.failcnt")).unwrap_or(0),
        oom_kills: keyed("memory.oom_control", "oom_kill").unwrap_or(0),
        max_usage: read_u64(&dir.join("memory.max_usage_in_bytes")).unwrap_or(0),
        usage: read_u64(&dir.join("memory.usage_in_bytes")).unwrap_or(0),
    }
}

/// The folder of the cgroup process `pid` is in for `resource`, from /proc/PID/cgroup.
pub fn cgroup_of(pid: u32, resource: Resource) -> Result<(PathBuf, bool), String> {
    let hierarchy = Hierarchy::find(resource)?;
    let text =
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).map_err(|e| format!("/proc/{pid}/cgroup: {e}"))?;
    let name = resource.v1_name();
    let path = text
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let wanted = if hierarchy.v2 { controllers.is_empty() } else { controllers.split(',').any(|c| c == name) };
            wanted.then(|| path.to_string())
        })
        .next()
        .ok_or_else(|| format!("process {pid} is in no `{name}` cgroup"))?;
    Ok((hierarchy.root.join(path.trim_start_matches('/')), hierarchy.v2))
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("writing {value} to {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_without_the_controller_is_told_what_is_missing() {
        let empty = tempfile::tempdir().unwrap();
        let e = Hierarchy::find_under(empty.path(), Resource::Cpu).unwrap_err();
        assert!(e.contains("no cgroup `cpu` controller") && e.contains("cpu.cfs_quota_us"), "{e}");
        // v2 offering the controller is found.
        std::fs::create_dir(empty.path().join("unified")).unwrap();
        std::fs::write(empty.path().join("unified/cgroup.controllers"), "cpuset memory pids").unwrap();
        let h = Hierarchy::find_under(empty.path(), Resource::Memory).unwrap();
        assert!(h.v2 && h.root.ends_with("unified"));
        assert!(Hierarchy::find_under(empty.path(), Resource::Cpu).is_err(), "cpu is not offered");
    }

    #[test]
    fn this_process_is_found_in_its_own_group_scan_only_when_it_leads_one() {
        let me = std::process::id();
        let pgid = nix::unistd::getpgrp().as_raw() as u32;
        assert!(group_pids(pgid).contains(&me));
        assert!(group_pids(u32::MAX).is_empty());
    }
}
