//! Clock faults on a node: its wall clock set ahead or behind by an offset, optionally
//! drifting from there, while the fault lasts.
//!
//! Only the wall clock moves (`CLOCK_REALTIME`, what `SystemTime` and a `Date` header
//! read), as when NTP is wrong or a host's clock jumps: monotonic time, which timers and
//! timeouts run on, is untouched. A jump mid-run is a second clock fault starting when
//! the first ends (the offset goes from the first's to the second's at once).
//!
//! A process or container node has it through libfaketime ([`Faketime`]), preloaded into nodes a
//! clock fault targets and changed live by rewriting the node's timestamp file; the
//! simulation moves the node's platform clock.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::plan::NodeId;

/// The largest offset a clock fault may set, either way (a year).
pub const MAX_OFFSET: Duration = Duration::from_secs(365 * 24 * 3600);

/// The largest drift, seconds gained or lost per second (a clock at 1.5× or 0.5×).
pub const MAX_DRIFT: f64 = 0.5;

/// How often a drifting clock's offset is stepped on a process node.
pub const DRIFT_STEP: Duration = Duration::from_millis(100);

/// Where Debian and others install libfaketime, in the order looked at.
pub const FAKETIME_LIBRARIES: [&str; 3] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
];

/// A node's clock as a clock fault sets it: `offset` from true time when the fault
/// strikes, then gaining `drift` seconds per second (losing, when negative).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockSkew {
    /// Milliseconds ahead (positive) or behind (negative).
    pub offset_ms: i64,
    /// Seconds gained per second of true time; 0 for a clock that keeps time.
    pub drift: f64,
}

impl ClockSkew {
    /// The offset, in seconds, after the fault has held for `held`.
    pub fn offset_after(&self, held: Duration) -> f64 {
        self.offset_ms as f64 / 1000.0 + self.drift * held.as_secs_f64()
    }

    /// True time `now` as the skewed clock shows it after the fault has held for `held`.
    pub fn apply(&self, now: SystemTime, held: Duration) -> SystemTime {
        shift(now, self.offset_after(held))
    }
}

impl fmt::Display for ClockSkew {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "clock {}", signed_secs(self.offset_ms as f64 / 1000.0))?;
        if self.drift != 0.0 {
            write!(f, " drifting {}ms/s", signed(self.drift * 1000.0))?;
        }
        Ok(())
    }
}

/// `t` moved by `secs` seconds (back when negative).
pub fn shift(t: SystemTime, secs: f64) -> SystemTime {
    let by = Duration::from_secs_f64(secs.abs().min(MAX_OFFSET.as_secs_f64() * 2.0));
    if secs >= 0.0 {
        t + by
    } else {
        t.checked_sub(by).unwrap_or(SystemTime::UNIX_EPOCH)
    }
}

/// Seconds with a sign and at most three decimals: `+90s`, `-30.5s`.
pub fn signed_secs(secs: f64) -> String {
    format!("{}s", signed(secs))
}

fn signed(v: f64) -> String {
    let text = format!("{:.3}", v.abs());
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{}{text}", if v < 0.0 { "-" } else { "+" })
}

/// Parses an offset: `+90s`, `-30s`, `+1m30s`, `-250ms`; no sign is ahead.
pub fn parse_offset(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let (sign, rest) = match t.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, t.strip_prefix('+').unwrap_or(t)),
    };
    let d = humantime::parse_duration(rest.trim())
        .map_err(|e| format!("`{text}` is not an offset like \"+90s\" or \"-30s\": {e}"))?;
    if d > MAX_OFFSET {
        return Err(format!("`{text}` is more than a year; a clock fault moves a clock by at most that"));
    }
    Ok(sign * d.as_millis() as i64)
}

/// Parses a drift: `+50ms/s` (gains 50 ms each second), `-1s/m`, `+0.1s/s`.
pub fn parse_drift(text: &str) -> Result<f64, String> {
    let bad = |why: &str| format!("`{text}` is not a drift like \"+50ms/s\" (gained per second): {why}");
    let (amount, per) = text.trim().rsplit_once('/').ok_or_else(|| bad("no `/s`, `/m` or `/h`"))?;
    let per = match per.trim() {
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(bad(&format!("unknown unit `/{other}`"))),
    };
    let ms = parse_offset(amount).map_err(|e| bad(&e))?;
    let drift = ms as f64 / 1000.0 / per;
    if drift.abs() > MAX_DRIFT {
        return Err(format!("`{text}` drifts more than {}ms/s", MAX_DRIFT * 1000.0));
    }
    Ok(drift)
}

/// libfaketime on this machine, which moves a process's wall clock by what a file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Faketime {
    /// The library to preload.
    pub library: PathBuf,
}

impl Faketime {
    /// libfaketime, or why a clock fault cannot be held here and how to fix it.
    pub fn find() -> Result<Self, String> {
        Self::find_in(&FAKETIME_LIBRARIES)
    }

    /// The first of `places` that exists, or why none does and how to fix it.
    pub fn find_in(places: &[&str]) -> Result<Self, String> {
        places.iter().map(PathBuf::from).find(|p| p.exists()).map(|library| Self { library }).ok_or_else(|| {
            format!(
                "libfaketime is not installed (looked for {}): install it with `apt-get install faketime`",
                places.join(", ")
            )
        })
    }

    /// The environment that makes a process's wall clock follow `file`, read again at
    /// every call. Monotonic time is left true (timers and timeouts keep their pace, as
    /// when NTP moves a host's clock), file times too, and no shared memory is left
    /// behind by a node that is killed.
    /// `library` and `file` are the paths as the node sees them (a container mounts
    /// them elsewhere).
    pub fn env(library: &Path, file: &Path) -> Vec<(String, String)> {
        [
            ("LD_PRELOAD", library.display().to_string()),
            ("FAKETIME_TIMESTAMP_FILE", file.display().to_string()),
            ("FAKETIME_NO_CACHE", "1".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
            ("FAKETIME_DISABLE_SHM", "1".into()),
            ("NO_FAKE_STAT", "1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// Sets the clock a libfaketime timestamp file stands for to `offset_secs` from true
/// time, atomically (a process reading it mid-write would see no offset at all).
pub fn write_offset(file: &Path, offset_secs: f64) -> std::io::Result<()> {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, format!("{:+.3}s\n", offset_secs))?;
    std::fs::rename(&tmp, file)
}

/// The clocks of the nodes a run's clock faults target, each a libfaketime timestamp
/// file in one folder of the run, which the node reads at every call; the runtimes that
/// start nodes with libfaketime (processes, containers) share it.
pub struct NodeClocks {
    dir: PathBuf,
    faketime: Option<Faketime>,
    nodes: Vec<NodeId>,
    /// The tasks stepping drifting clocks forward, by node.
    drifts: BTreeMap<NodeId, tokio::task::JoinHandle<()>>,
}

impl NodeClocks {
    /// Clocks kept in `dir` (made when a node is first started with one).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir, faketime: None, nodes: Vec::new(), drifts: BTreeMap::new() }
    }

    /// Finds libfaketime for the clocks of `nodes`, or says why they cannot be moved.
    pub fn prepare(&mut self, nodes: &[NodeId]) -> Result<(), String> {
        let Some(first) = nodes.first() else { return Ok(()) };
        let faketime = Faketime::find().map_err(|why| format!("`op = \"clock\"` on {first}: {why}"))?;
        self.faketime = Some(faketime);
        for id in nodes {
            if !self.nodes.contains(id) {
                self.nodes.push(id.clone());
            }
        }
        Ok(())
    }

    /// libfaketime, if a node's clock is to be moved.
    pub fn faketime(&self) -> Option<&Faketime> {
        self.faketime.as_ref()
    }

    /// The folder of the timestamp files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The name of node `id`'s timestamp file in [`NodeClocks::dir`].
    pub fn file_name(id: &NodeId) -> String {
        format!("{id}.faketime")
    }

    /// Whether a clock fault targets node `id` (it must start with libfaketime).
    pub fn targets(&self, id: &NodeId) -> bool {
        self.faketime.is_some() && self.nodes.contains(id)
    }

    /// Makes node `id`'s timestamp file at true time ("+0") unless it exists: a node
    /// restarted keeps its machine's clock.
    pub fn ensure_file(&self, id: &NodeId) -> std::io::Result<PathBuf> {
        let file = self.dir.join(Self::file_name(id));
        if !file.exists() {
            std::fs::create_dir_all(&self.dir)?;
            write_offset(&file, 0.0)?;
        }
        Ok(file)
    }

    /// Sets node `id`'s clock to `skew` from now, or back to true time (`None`).
    pub fn set(&mut self, id: &NodeId, skew: Option<ClockSkew>) -> Result<(), String> {
        if let Some(stepping) = self.drifts.remove(id) {
            stepping.abort();
        }
        if !self.targets(id) {
            return match skew {
                None => Ok(()),
                Some(_) => Err(format!(
                    "the clock of {id} cannot be moved: it was not started with libfaketime (the runtime was not told \
                     of the clock fault before the cluster started)"
                )),
            };
        }
        let file = self.ensure_file(id).map_err(|e| format!("making the clock file of {id}: {e}"))?;
        let skew = skew.unwrap_or(ClockSkew { offset_ms: 0, drift: 0.0 });
        write_offset(&file, skew.offset_after(Duration::ZERO))
            .map_err(|e| format!("setting the clock of {id} in {}: {e}", file.display()))?;
        if skew.drift != 0.0 {
            // libfaketime's own rate (`x1.05`) would speed the node's sleeps up too; a
            // drifting wall clock is stepped instead, every DRIFT_STEP.
            let struck = std::time::Instant::now();
            let stepping = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(DRIFT_STEP).await;
                    if let Err(e) = write_offset(&file, skew.offset_after(struck.elapsed())) {
                        eprintln!("warning: the drifting clock in {} stopped: {e}", file.display());
                        return;
                    }
                }
            });
            self.drifts.insert(id.clone(), stepping);
        }
        Ok(())
    }

    /// Stops every drifting clock's stepping (at teardown).
    pub fn stop(&mut self) {
        for (_, stepping) in std::mem::take(&mut self.drifts) {
            stepping.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_read_with_a_sign_and_no_sign_is_ahead() {
        assert_eq!(parse_offset("+90s"), Ok(90_000));
        assert_eq!(parse_offset("-30s"), Ok(-30_000));
        assert_eq!(parse_offset("1m30s"), Ok(90_000));
        assert_eq!(parse_offset("-250ms"), Ok(-250));
        assert!(parse_offset("soon").unwrap_err().contains("not an offset"));
        assert!(parse_offset("+400days").unwrap_err().contains("a year"));
    }

    #[test]
    fn drifts_read_as_time_gained_per_unit_of_time() {
        assert_eq!(parse_drift("+50ms/s"), Ok(0.05));
        assert_eq!(parse_drift("-6s/m"), Ok(-0.1));
        assert!(parse_drift("+50ms").unwrap_err().contains("/s"));
        assert!(parse_drift("+2s/s").unwrap_err().contains("more than"));
    }

    #[test]
    fn a_drifting_clock_moves_from_its_offset() {
        let skew = ClockSkew { offset_ms: 90_000, drift: 0.05 };
        assert_eq!(skew.offset_after(Duration::ZERO), 90.0);
        assert!((skew.offset_after(Duration::from_secs(10)) - 90.5).abs() < 1e-9);
        assert_eq!(skew.to_string(), "clock +90s drifting +50ms/s");
        assert_eq!(ClockSkew { offset_ms: -30_500, drift: 0.0 }.to_string(), "clock -30.5s");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(ClockSkew { offset_ms: -30_000, drift: 0.0 }.apply(t, Duration::ZERO), t - Duration::from_secs(30));
    }

    #[test]
    fn a_missing_libfaketime_is_refused_naming_the_package() {
        let e = Faketime::find_in(&["/nonexistent/libfaketime.so.1"]).unwrap_err();
        assert!(e.contains("/nonexistent/libfaketime.so.1") && e.contains("apt-get install faketime"), "{e}");
    }

    #[test]
    fn a_node_no_clock_fault_targets_cannot_be_moved_but_can_always_be_put_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut clocks = NodeClocks::new(dir.path().join("clocks"));
        let id = NodeId::parse("api-0").unwrap();
        assert!(clocks
            .set(&id, Some(ClockSkew { offset_ms: 1000, drift: 0.0 }))
            .unwrap_err()
            .contains("not started with libfaketime"));
        assert_eq!(clocks.set(&id, None), Ok(()));
    }

    #[test]
    fn the_timestamp_file_holds_a_signed_offset_in_seconds() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("clock.rc");
        write_offset(&file, -30.5).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "-30.500s\n");
        write_offset(&file, 0.0).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "+0.000s\n");
    }
}
