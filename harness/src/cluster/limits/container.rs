//! Faults on a container's own resources, for the docker runtime: real packet drops in
//! its network namespace, and its CPU and memory capped through the engine.
//!
//! **Packet loss.** A table of nftables rules is loaded into the container's network
//! namespace (`nsenter -t <pid> -n nft -f -`): each packet the fault covers is counted,
//! then dropped with the fault's probability (`numgen random mod 10000 < N`), so TCP
//! retransmits for real, with the kernel's own timers. The kernel draws which packets
//! go, not the run's seed: a real drop cannot be replayed packet for packet (the proxy's
//! `loss` toxic is the seeded model). A peer narrows the rules to the node's calls to
//! that provider: packets to and from the proxy slots it reaches the provider through.
//! Lifting the fault reads the counters back and deletes the table; a container that was
//! restarted meanwhile has a new namespace, and its rules went with the old one.
//!
//! **CPU and memory.** `docker update --cpus` and `--memory`, so the engine knows the
//! limit; the kernel's counts are read from the container's own cgroup. The engine
//! cannot unset a limit it set (0 means "unchanged"), so lifting one sets it back to
//! what the container had, or to the machine's cores and memory when it had none.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::AsyncWriteExt as _;

use super::cgroup::{cgroup_of, cpu_stat_in, memory_stat_in, CpuStat, MemoryStat, Resource};
use super::{percent, Bytes, Direction, LimitEffect};

/// The nftables table a packet-loss fault loads into a node's namespace.
pub const TABLE: &str = "gauntlet_loss";

/// The probability's resolution: `numgen random mod 10000`.
const SCALE: u32 = 10_000;

/// What this machine lacks to drop packets in a container's namespace, each with how
/// to get it; empty when it has all.
pub fn packet_loss_missing() -> Vec<String> {
    // SAFETY: geteuid cannot fail and touches no memory.
    let root = unsafe { nix::libc::geteuid() } == 0;
    let on_path = |p: &str| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .any(|d| d.join(p).is_file())
    };
    [
        (!root).then(|| "not root (entering a container's network namespace needs it)".to_string()),
        (!on_path("nft")).then(|| "no `nft` (apt-get install nftables)".to_string()),
        (!on_path("nsenter")).then(|| "no `nsenter` (apt-get install util-linux)".to_string()),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The nftables script of a packet-loss fault: `matches` are the packets it covers, by
/// hook (`input` or `output`), each counted and then dropped with `probability`.
pub fn loss_script(probability: f64, matches: &[(&str, String)]) -> String {
    let n = (probability * f64::from(SCALE)).round().clamp(0.0, f64::from(SCALE)) as u32;
    let mut s = format!("table inet {TABLE} {{\n");
    for hook in ["input", "output"] {
        // Before Docker's own rules (priority filter = 0): a dropped packet goes nowhere.
        s.push_str(&format!("  chain {hook} {{\n    type filter hook {hook} priority -10; policy accept;\n"));
        for (_, m) in matches.iter().filter(|(h, _)| *h == hook) {
            s.push_str(&format!("    {m} counter\n    {m} numgen random mod {SCALE} < {n} counter drop\n"));
        }
        s.push_str("  }\n");
    }
    s.push_str("}\n");
    s
}

/// The packets a packet-loss fault covers, by hook: all but loopback, or only those of
/// the connections to `slots` (`ip:port` of the proxy slots the node calls a peer
/// through), in `direction`.
pub fn loss_matches(direction: Direction, slots: Option<&[(String, u16)]>) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    match slots {
        None => {
            if direction != Direction::Out {
                out.push(("input", "meta iifname != \"lo\"".to_string()));
            }
            if direction != Direction::In {
                out.push(("output", "meta oifname != \"lo\"".to_string()));
            }
        }
        Some(slots) => {
            for (ip, port) in slots {
                if direction != Direction::Out {
                    out.push(("input", format!("ip saddr {ip} tcp sport {port}")));
                }
                if direction != Direction::In {
                    out.push(("output", format!("ip daddr {ip} tcp dport {port}")));
                }
            }
        }
    }
    out
}

/// Runs `nft` in the network namespace of process `pid`, `script` on its stdin.
async fn nft(pid: u32, args: &[&str], script: Option<&str>) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new("nsenter");
    cmd.args(["-t", &pid.to_string(), "-n", "nft"]).args(args);
    cmd.stdin(if script.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot run nsenter: {e}"))?;
    if let (Some(text), Some(mut stdin)) = (script, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).await.map_err(|e| format!("writing the rules to nft: {e}"))?;
    }
    let out = child.wait_with_output().await.map_err(|e| format!("nft: {e}"))?;
    if !out.status.success() {
        return Err(format!("nft {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Loads the packet-loss table into process `pid`'s network namespace.
pub async fn drop_packets(pid: u32, script: &str) -> Result<(), String> {
    // A table left by an earlier fault is replaced.
    let _ = nft(pid, &["delete", "table", "inet", TABLE], None).await;
    nft(pid, &["-f", "-"], Some(script)).await.map(|_| ())
}

/// Packets the table counted: (covered, dropped).
pub async fn dropped(pid: u32) -> Result<(u64, u64), String> {
    let json = nft(pid, &["-j", "list", "table", "inet", TABLE], None).await?;
    Ok(count_drops(&json))
}

/// (covered, dropped) from `nft -j list table`: a counter in a rule that drops counts
/// drops, any other counter the packets the fault covered.
pub fn count_drops(json: &str) -> (u64, u64) {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let mut covered = 0;
    let mut drops = 0;
    for item in v["nftables"].as_array().into_iter().flatten() {
        let Some(expr) = item["rule"]["expr"].as_array() else { continue };
        let packets: u64 = expr.iter().filter_map(|e| e["counter"]["packets"].as_u64()).sum();
        if expr.iter().any(|e| e.get("drop").is_some()) {
            drops += packets;
        } else {
            covered += packets;
        }
    }
    (covered, drops)
}

/// Deletes the packet-loss table from process `pid`'s namespace.
pub async fn stop_dropping(pid: u32) -> Result<(), String> {
    nft(pid, &["delete", "table", "inet", TABLE], None).await.map(|_| ())
}

/// What a packet-loss fault did, for the report.
pub fn describe_loss(probability: f64, covered: u64, drops: u64, node: &str, scope: &str) -> String {
    let share = if covered == 0 { 0.0 } else { drops as f64 / covered as f64 };
    format!(
        "dropped {drops} of {covered} packet(s) ({}, at {}) in {node}'s own network namespace, {scope}; TCP retransmitted them",
        percent(share),
        percent(probability)
    )
}

/// The engine's answer to `docker <args>`.
async fn docker(args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new("docker")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if !out.status.success() {
        return Err(format!("docker {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The host pid of a container's first process (0 when it is not running).
pub async fn container_pid(id: &str) -> Result<u32, String> {
    docker(&["inspect", "-f", "{{.State.Pid}}", id]).await?.parse().map_err(|e| format!("the pid of {id}: {e}"))
}

/// The address of container `name` on `network`.
pub async fn container_ip(name: &str, network: &str) -> Result<String, String> {
    let ip =
        docker(&["inspect", "-f", &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"), name])
            .await?;
    if ip.is_empty() {
        return Err(format!("container {name} has no address on {network}"));
    }
    Ok(ip)
}

/// What a container was given before a limit: (nano-CPUs, memory, memory+swap); 0 is none.
pub async fn container_limits(id: &str) -> Result<(u64, i64, i64), String> {
    let text =
        docker(&["inspect", "-f", "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}", id])
            .await?;
    let mut parts = text.split_whitespace().map(|p| p.parse::<i64>().unwrap_or(0));
    let (cpus, memory, swap) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    Ok((cpus.max(0) as u64, memory, swap))
}

/// Caps container `id` at `share` of a core; returns its cgroup's counts so far.
pub async fn cap_cpu(id: &str, share: f64) -> Result<CpuStat, String> {
    docker(&["update", "--cpus", &format!("{share:.3}"), id]).await?;
    Ok(cpu_stat_in(&cgroup_of(container_pid(id).await?, Resource::Cpu)?.0))
}

/// Sets container `id`'s CPUs back to `nano_cpus` (0: the machine's cores) and returns
/// its cgroup's counts now.
pub async fn uncap_cpu(id: &str, nano_cpus: u64) -> Result<CpuStat, String> {
    let pid = container_pid(id).await?;
    let stat = cgroup_of(pid, Resource::Cpu).map(|(dir, _)| cpu_stat_in(&dir)).unwrap_or_default();
    let cores = if nano_cpus == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
    } else {
        nano_cpus as f64 / 1e9
    };
    docker(&["update", "--cpus", &format!("{cores:.3}"), id]).await?;
    Ok(stat)
}

/// Caps container `id`'s memory (swap included) at `bytes`; returns its counts so far.
pub async fn cap_memory(id: &str, bytes: u64) -> Result<MemoryStat, String> {
    let pid = container_pid(id).await?;
    let (dir, v2) = cgroup_of(pid, Resource::Memory)?;
    let before = memory_stat_in(&dir, v2);
    let b = bytes.to_string();
    docker(&["update", "--memory", &b, "--memory-swap", &b, id]).await?;
    Ok(before)
}

/// What the memory cap did so far (empty when the container is gone).
pub async fn memory_now(id: &str) -> MemoryStat {
    match container_pid(id).await.and_then(|pid| cgroup_of(pid, Resource::Memory)) {
        Ok((dir, v2)) => memory_stat_in(&dir, v2),
        Err(_) => MemoryStat::default(),
    }
}

/// Whether the engine saw container `id` OOM-killed.
pub async fn oom_killed(id: &str) -> bool {
    docker(&["inspect", "-f", "{{.State.OOMKilled}}", id]).await.is_ok_and(|s| s == "true")
}

/// Sets container `id`'s memory back to `(memory, swap)` (0: the machine's memory).
pub async fn uncap_memory(id: &str, memory: i64, swap: i64) -> Result<(), String> {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        })
        .map_or(1 << 40, |kb| kb * 1024);
    let memory = if memory <= 0 { total } else { memory as u64 };
    docker(&["update", "--memory", &memory.to_string(), "--memory-swap", &memory.to_string(), id]).await?;
    if swap < 0 || swap as u64 > memory {
        docker(&["update", "--memory-swap", &swap.to_string(), id]).await?;
    }
    Ok(())
}

/// The effect of a CPU cap between two readings of its cgroup.
pub fn describe_cpu(share: f64, before: CpuStat, after: CpuStat) -> LimitEffect {
    let throttled = after.throttled.saturating_sub(before.throttled);
    let periods = after.periods.saturating_sub(before.periods);
    let time = after.throttled_time.saturating_sub(before.throttled_time);
    LimitEffect {
        touched: throttled,
        detail: format!(
            "throttled in {throttled} of {periods} periods, {:.1} s in all, at a {} share of a core (docker update --cpus)",
            time.as_secs_f64(),
            percent(share)
        ),
        node_ended: false,
    }
}

/// The effect of a memory cap.
pub fn describe_memory(bytes: u64, before: MemoryStat, after: MemoryStat, oom_killed: bool) -> LimitEffect {
    let hit = after.hit.saturating_sub(before.hit);
    let mut detail = format!("held to {} (peak {}, docker update --memory)", Bytes(bytes), Bytes(after.max_usage));
    if hit > 0 {
        detail.push_str(&format!(", the limit hit {hit} time(s) and memory reclaimed"));
    }
    detail.push_str(if oom_killed {
        "; the container was OOM-killed: it is started again on its data now that the fault ended"
    } else {
        "; no process was OOM-killed"
    });
    LimitEffect { touched: hit + u64::from(oom_killed), detail, node_ended: oom_killed }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_counts_then_drops_what_it_covers() {
        let all = loss_script(0.05, &loss_matches(Direction::Both, None));
        assert!(all.contains("meta iifname != \"lo\" counter\n"), "{all}");
        assert!(all.contains("meta oifname != \"lo\" numgen random mod 10000 < 500 counter drop"), "{all}");
        let calls = loss_matches(Direction::Out, Some(&[("172.18.0.2".to_string(), 10001)]));
        assert_eq!(calls, vec![("output", "ip daddr 172.18.0.2 tcp dport 10001".to_string())]);
        let back = loss_matches(Direction::In, Some(&[("172.18.0.2".to_string(), 10001)]));
        assert_eq!(back, vec![("input", "ip saddr 172.18.0.2 tcp sport 10001".to_string())]);
    }

    #[test]
    fn drops_are_told_from_covered_packets() {
        let json = r#"{"nftables":[{"metainfo":{}},{"rule":{"expr":[{"match":{}},{"counter":{"packets":40,"bytes":1}}]}},
            {"rule":{"expr":[{"match":{}},{"numgen":{}},{"counter":{"packets":3,"bytes":1}},{"drop":null}]}}]}"#;
        assert_eq!(count_drops(json), (40, 3));
        assert_eq!(count_drops("not json"), (0, 0));
    }
}
