//! The run ledger: a file per running cluster under `<runs>/active/`, naming every
//! process and container the run started, so that anything a crashed harness left
//! behind is found and removed by the next `gauntlet up` (or `gauntlet down`).
//!
//! The first line of defence is the reaper ([`spawn_reaper`], [`watch`]): a small
//! process of its own, in the manner of testcontainers' Ryuk, started with every run,
//! that outlives a harness killed with `kill -9` and removes what the run started
//! within a fraction of a second. The ledger and the next `up`/`down` are the second.
//!
//! A process is only ever ended if its pid still belongs to the process we started:
//! the ledger records each process's start time (field 22 of `/proc/<pid>/stat`) and a
//! recycled pid has another.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::runtime::NodeStatus;

/// One started process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerProcess {
    pub node: String,
    pub pid: u32,
    /// Its start time in clock ticks since boot.
    pub start_time: u64,
}

/// What one run has started, as written to its ledger file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub run_id: String,
    pub runtime: String,
    pub cluster: String,
    pub run_dir: PathBuf,
    /// The `gauntlet` process that owns the run.
    pub owner_pid: u32,
    pub owner_start_time: u64,
    /// Where clients reach the ingress.
    pub ingress: Vec<String>,
    /// The Toxiproxy API the run's edges are on, if any.
    pub toxiproxy: Option<String>,
    pub processes: Vec<LedgerProcess>,
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub nodes: Vec<NodeStatus>,
    /// The proxies the run created on its Toxiproxy API (removed when it is reaped, so
    /// an external `--toxiproxy` is left as it was found).
    #[serde(default)]
    pub proxies: Vec<String>,
    /// The cgroup folders of the run's resource faults (`<mount>/gauntlet/<run>`).
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
    /// The size-limited filesystems mounted at nodes' data folders.
    #[serde(default)]
    pub mounts: Vec<PathBuf>,
    /// The docker volumes created for the run (a Compose file's named volumes).
    #[serde(default)]
    pub volumes: Vec<String>,
}

/// The ledger folder: `<runs>/active`.
#[derive(Debug, Clone)]
pub struct Ledger {
    dir: PathBuf,
}

/// What cleaning up after a dead run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reaped {
    pub run_id: String,
    pub processes: Vec<String>,
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    /// Cgroups and mounts of resource faults removed.
    pub limits: Vec<String>,
    pub volumes: Vec<String>,
}

impl Ledger {
    /// The ledger under `runs_root`.
    pub fn new(runs_root: &Path) -> Self {
        Self { dir: runs_root.join("active") }
    }

    fn file(&self, run_id: &str) -> PathBuf {
        self.dir.join(format!("{run_id}.json"))
    }

    /// Writes (atomically) the entry of a run.
    pub fn write(&self, entry: &LedgerEntry) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!(".{}.tmp", entry.run_id));
        std::fs::write(&tmp, serde_json::to_vec_pretty(entry).map_err(std::io::Error::other)?)?;
        std::fs::rename(tmp, self.file(&entry.run_id))
    }

    /// Forgets a run (after a clean teardown).
    pub fn remove(&self, run_id: &str) {
        let _ = std::fs::remove_file(self.file(run_id));
    }

    /// Every run entry, readable or not skipped.
    pub fn entries(&self) -> Vec<LedgerEntry> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut out: Vec<LedgerEntry> = dir
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect();
        out.sort_by(|a, b| a.run_id.cmp(&b.run_id));
        out
    }

    /// Runs whose owner is still alive.
    pub fn live(&self) -> Vec<LedgerEntry> {
        self.entries().into_iter().filter(|e| same_process(e.owner_pid, e.owner_start_time)).collect()
    }

    /// Removes what runs whose owner died left behind: their processes (by pid, when
    /// the pid is still the process we started), containers and networks.
    pub fn reap_dead(&self) -> Vec<Reaped> {
        let mut out = Vec::new();
        for entry in self.entries() {
            if same_process(entry.owner_pid, entry.owner_start_time) {
                continue;
            }
            out.push(reap(&entry));
            self.remove(&entry.run_id);
        }
        out
    }
}

/// Ends every process and removes every container, network and proxy of `entry`.
pub fn reap(entry: &LedgerEntry) -> Reaped {
    let mut r = Reaped { run_id: entry.run_id.clone(), ..Default::default() };
    for p in &entry.processes {
        if same_process(p.pid, p.start_time) {
            kill_group(p.pid);
            r.processes.push(format!("{} (pid {})", p.node, p.pid));
        }
    }
    // One `docker rm` for all: a container at a time would take seconds.
    if !entry.containers.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(entry.containers.iter().map(String::as_str));
        if docker(&args) {
            r.containers.extend(entry.containers.iter().cloned());
        } else {
            r.containers.extend(entry.containers.iter().filter(|c| docker(&["rm", "-f", "-v", c])).cloned());
        }
    }
    // A volume goes once no container holds it.
    for v in &entry.volumes {
        if docker(&["volume", "rm", "-f", v]) {
            r.volumes.push(v.clone());
        }
    }
    // After the processes: a cgroup goes once empty, a mount once nobody works in it.
    for m in &entry.mounts {
        let _ = super::limits::disk::release(m);
        if super::limits::disk::is_mount(m) && super::limits::disk::unmount(m).is_ok() {
            r.limits.push(format!("mount {}", m.display()));
        }
    }
    for c in entry.cgroups.iter().filter(|c| c.exists()) {
        if super::limits::cgroup::remove_run(c).is_ok() {
            r.limits.push(format!("cgroup {}", c.display()));
        }
    }
    if let (Some(api), false) = (&entry.toxiproxy, entry.proxies.is_empty()) {
        remove_proxies(api, &entry.proxies);
    }
    for n in &entry.networks {
        if docker(&["network", "rm", n]) {
            r.networks.push(n.clone());
        }
    }
    r
}

/// Deletes `names` from the Toxiproxy API at `api` (best effort: an embedded proxy died
/// with its harness, and then there is nothing to delete).
fn remove_proxies(api: &str, names: &[String]) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
    rt.block_on(async {
        let Ok(http) = reqwest::Client::builder().timeout(std::time::Duration::from_millis(500)).no_proxy().build()
        else {
            return;
        };
        for name in names {
            if http.delete(format!("{}/proxies/{name}", api.trim_end_matches('/'))).send().await.is_err() {
                return; // nobody there
            }
        }
    });
}

/// How often the reaper looks at its run.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Watches run `run_id` of `ledger` until its owner (`owner_pid`, started at
/// `owner_start`) is gone, then removes what the run started and forgets it. Returns
/// `None` when the run ended cleanly (its entry was removed while its owner lived), or
/// when `limit` passed.
pub fn watch(
    ledger: &Ledger,
    run_id: &str,
    owner_pid: u32,
    owner_start: u64,
    limit: std::time::Duration,
) -> Option<Reaped> {
    let deadline = std::time::Instant::now() + limit;
    let mut seen = None;
    while std::time::Instant::now() < deadline {
        let entry = ledger.entries().into_iter().find(|e| e.run_id == run_id);
        if !same_process(owner_pid, owner_start) {
            // The last entry read stands in for one the owner was writing as it died.
            let last = entry.or(seen)?;
            let reaped = reap(&last);
            ledger.remove(run_id);
            return Some(reaped);
        }
        match entry {
            Some(e) => seen = Some(e),
            None if seen.is_some() => return None,
            None => {}
        }
        std::thread::sleep(WATCH_EVERY);
    }
    None
}

/// Starts the reaper of run `run_id`: `program reap ...` (the `gauntlet` binary) in a
/// process group of its own, so neither `kill -9` of the harness nor a Ctrl-C to the
/// terminal's group ends it. It watches this process; see [`watch`].
pub fn spawn_reaper(program: &Path, runs_root: &Path, run_id: &str) -> std::io::Result<u32> {
    use std::os::unix::process::CommandExt;
    let (pid, start) = me();
    let mut child = std::process::Command::new(program)
        .args(["reap", "--runs"])
        .arg(runs_root)
        .args(["--run-id", run_id, "--owner-pid", &pid.to_string(), "--owner-start", &start.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()?;
    let id = child.id();
    // Reaped when it exits while we live (a clean teardown); by init otherwise.
    std::thread::spawn(move || child.wait());
    Ok(id)
}

fn docker(args: &[&str]) -> bool {
    std::process::Command::new("docker")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// SIGKILL to the process group led by `pid` (each node is its own group).
pub fn kill_group(pid: u32) {
    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::Pid;
    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
}

/// The start time (clock ticks since boot) of process `pid`, if it exists.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after its end.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// Is `pid` alive and still the process that started at `start`? (A zombie is not.)
pub fn same_process(pid: u32, start: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let zombie = stat.rfind(')').and_then(|i| stat.get(i + 2..i + 3)) == Some("Z");
    !zombie && start_time(pid) == Some(start)
}

/// This process's pid and start time.
pub fn me() -> (u32, u64) {
    let pid = std::process::id();
    (pid, start_time(pid).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::{CommandExt, ExitStatusExt};

    use super::*;

    #[test]
    fn start_time_tells_this_process() {
        let (pid, start) = me();
        assert!(start > 0);
        assert!(same_process(pid, start));
        assert!(!same_process(pid, start + 1), "a recycled pid has another start time");
    }

    #[test]
    fn the_watch_reaps_a_dead_owners_run_and_leaves_a_clean_one_alone() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(dir.path());
        let (pid, start) = me();
        // A "dead" owner (another start time), its node a real child of this test.
        let mut node = std::process::Command::new("sleep").arg("30").process_group(0).spawn().unwrap();
        let p = LedgerProcess { node: "n-0".into(), pid: node.id(), start_time: start_time(node.id()).unwrap() };
        let run = LedgerEntry { run_id: "r".into(), processes: vec![p], ..Default::default() };
        ledger.write(&run).unwrap();
        let reaped = watch(&ledger, "r", pid, start + 1, std::time::Duration::from_secs(5)).expect("reaped");
        assert_eq!(reaped.processes.len(), 1);
        assert!(node.wait().unwrap().signal().is_some(), "the node was killed");
        assert!(ledger.entries().is_empty(), "and the run forgotten");
        // A live owner whose entry goes away ended cleanly: nothing to do.
        ledger.write(&LedgerEntry { run_id: "c".into(), ..Default::default() }).unwrap();
        let clean = ledger.clone();
        let remover = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            clean.remove("c");
        });
        assert_eq!(watch(&ledger, "c", pid, start, std::time::Duration::from_secs(5)), None);
        remover.join().unwrap();
    }

    #[test]
    fn entries_round_trip_and_dead_owners_are_reaped() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(dir.path());
        let (pid, start) = me();
        let live = LedgerEntry { run_id: "a".into(), owner_pid: pid, owner_start_time: start, ..Default::default() };
        let dead =
            LedgerEntry { run_id: "b".into(), owner_pid: pid, owner_start_time: start + 7, ..Default::default() };
        ledger.write(&live).unwrap();
        ledger.write(&dead).unwrap();
        assert_eq!(ledger.entries().len(), 2);
        assert_eq!(ledger.live(), vec![live.clone()]);
        let reaped = ledger.reap_dead();
        assert_eq!(reaped.len(), 1);
        assert_eq!(reaped[0].run_id, "b");
        assert_eq!(ledger.entries(), vec![live]);
    }
}
