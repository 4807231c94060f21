//! One seed of a scenario in simulation, from the cluster plan to the judged outcome.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use gauntlet::cluster::plan::{ClusterPlan, Ports};
use gauntlet::scenario::{RunOutcome, Scenario};
use shop_kit::platform::{self, Platform};

use crate::fabric::{self, Link};
use crate::net::{self, Node, EPOCH_SECS};
use crate::world::{HostCommand, SimWorld};

/// Ports of the fabric's proxies: one per slot, from here up.
const FABRIC_PORTS: u16 = 20_000;
/// The simulated network's delay per message, drawn uniformly up to this: loopback-like.
const MAX_MESSAGE_LATENCY: Duration = Duration::from_millis(1);
/// Simulated time past the scenario's own that the simulation may take before it is
/// called stuck.
const MARGIN: Duration = Duration::from_secs(120);

/// Why a scenario cannot be simulated (yet): each reason names what is refused.
#[derive(Debug)]
pub struct Refused(pub Vec<String>);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "this scenario cannot be simulated: {}", self.0.join("; "))
    }
}

impl std::error::Error for Refused {}

/// The services the simulator can run, by the binary name the cluster file gives.
const HOSTED: &[&str] = &["shop-users", "shop-catalog", "shop-payments", "shop-orders", "shop-gateway"];

/// The shop binary a service runs, if the simulator hosts it.
fn hosted(spec: &gauntlet::cluster::ServiceSpec) -> Option<&str> {
    match &spec.run {
        gauntlet::cluster::RunSpec::Binary(b) if HOSTED.contains(&b.as_str()) => Some(b),
        _ => None,
    }
}

/// Everything in `scenario` the simulator cannot mean faithfully, or `Ok`.
pub fn check_supported(scenario: &Scenario) -> Result<(), Refused> {
    let mut why = Vec::new();
    for s in &scenario.cluster.spec.services {
        if hosted(s).is_none() {
            why.push(format!(
                "service `{}` runs {}, which the simulator does not host (it hosts the shop's users, catalog, payments, orders and gateway; the broker and notifications are not simulated yet)",
                s.name,
                match &s.run {
                    gauntlet::cluster::RunSpec::Binary(b) => format!("binary `{b}`"),
                    gauntlet::cluster::RunSpec::Command(c) => format!("`{}`", c.first().map_or("", String::as_str)),
                    gauntlet::cluster::RunSpec::External => "outside the cluster (external)".to_string(),
                }
            ));
        }
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(Refused(why))
    }
}

/// Runs `scenario` with seed `seed` in simulation, writing into `run_dir` (databases,
/// `history.jsonl`, `final-reads.jsonl`, the report, `outcome.json`). The same seed and build
/// give the same files, byte for byte.
///
/// With `buggify` (the seed search), the seed also draws fault times and targets within
/// the scenario's bounds, the network's delays and host order ([`crate::buggify`]).
pub fn run_seed(scenario: &Scenario, seed: u64, run_dir: &Path, buggify: bool) -> anyhow::Result<RunOutcome> {
    check_supported(scenario)?;
    let mut scenario = scenario.clone();
    scenario.reseed(seed);
    // A checker that is a binary of the workspace (the shop's) runs as itself, built in
    // this build's profile when missing.
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    gauntlet::scenario::data::resolve_binaries(&mut scenario.declared, profile, &|m| eprintln!("{m}"))?;
    let network = if buggify {
        crate::buggify::perturb(&mut scenario, seed)
    } else {
        crate::buggify::Network { max_latency: MAX_MESSAGE_LATENCY, random_order: false }
    };
    let scenario = Arc::new(scenario);
    if run_dir.exists() {
        std::fs::remove_dir_all(run_dir).with_context(|| format!("clearing {}", run_dir.display()))?;
    }
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let run_dir = run_dir.canonicalize()?;
    let mut plan = ClusterPlan::new(scenario.cluster.spec.clone(), &run_dir, Ports::Fixed, &scenario.cluster.replicas)?;
    for node in &mut plan.nodes {
        if let Some(env) = scenario.cluster.env.get(&node.id.service) {
            node.env.extend(env.clone());
        }
    }

    // Every slot becomes a proxy on the fabric.
    let links: Vec<(gauntlet::cluster::plan::Slot, Link)> = plan
        .slots
        .iter()
        .enumerate()
        .map(|(i, slot)| {
            let provider = plan
                .nodes
                .iter()
                .find(|n| n.id.service == slot.edge.to && n.id.replica == slot.replica)
                .map(|n| (n.id.to_string(), n.addr.port()))
                .unwrap_or_default();
            let http = plan.scheme_of(slot) == "http";
            (slot.clone(), Link::new(slot.proxy_name(), FABRIC_PORTS + i as u16, provider, http, seed))
        })
        .collect();
    let url_of = |name: &str| {
        links.iter().find(|(s, _)| s.proxy_name() == name).map(|(_, l)| format!("http://{}:{}", fabric::HOST, l.port))
    };
    let slot_urls: BTreeMap<String, String> =
        plan.slots.iter().filter_map(|s| url_of(&s.proxy_name()).map(|u| (s.proxy_name(), u))).collect();
    let upstreams = gauntlet::cluster::wiring::upstream_env(&plan, &slot_urls);
    let ingress = gauntlet::cluster::wiring::ingress_urls(&plan, &slot_urls);
    let ingress = ingress.first().context("the cluster has no ingress slot")?.trim_start_matches("http://").to_string();

    let total = scenario.load.duration() + scenario.recovery.settle + scenario.steady_state.timeout * 2;
    let schedule = gauntlet::scenario::schedule::Schedule::of(&scenario);
    std::fs::write(run_dir.join(gauntlet::scenario::schedule::FILE), serde_json::to_vec_pretty(&schedule)?)?;
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(seed)
        .epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH_SECS))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::ZERO)
        .max_message_latency(network.max_latency)
        .simulation_duration(total + MARGIN);
    if network.random_order {
        builder.enable_random_order();
    }
    let mut sim = builder.build();

    let fabric_links: Vec<Link> = links.iter().map(|(_, l)| l.clone()).collect();
    sim.host(fabric::HOST, move || {
        let links = fabric_links.clone();
        async move {
            let serving = links.into_iter().map(|l| tokio::task::spawn_local(l.serve()));
            for s in futures::future::join_all(serving).await {
                s??;
            }
            Ok(())
        }
    });

    let lives: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
    let stops: crate::world::Stops = Arc::default();
    let clocks: net::Clocks = Arc::default();
    for node in &plan.nodes {
        let name = node.id.to_string();
        let mut env: BTreeMap<String, String> = node.env.clone();
        if let Some(up) = upstreams.get(&node.id) {
            env.extend(up.clone());
        }
        env.insert("SHOP_BIND".into(), "0.0.0.0".into());
        let (service, binary, port) =
            (node.id.service.clone(), hosted(&node.service).unwrap_or_default().to_string(), node.addr.port());
        let (lives, stops, clocks) = (lives.clone(), stops.clone(), clocks.clone());
        sim.host(node.id.to_string().as_str(), move || {
            let life = {
                let mut lives = lives.lock().unwrap_or_else(PoisonError::into_inner);
                let l = lives.entry(name.clone()).or_insert(0);
                *l += 1;
                *l - 1
            };
            let node: Arc<dyn Platform> = Node::new(seed, &name, life, clocks.clone());
            let (env, service, binary) = (env.clone(), service.clone(), binary.clone());
            // Each incarnation can be stopped gracefully (`stop`) through its own switch.
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
            stops.lock().unwrap_or_else(PoisonError::into_inner).insert(name.clone(), (stop_tx, stopped.clone()));
            platform::scope(Some(node), async move {
                let (app, grace) = match build(&binary, &service, port, env).await {
                    Ok(built) => built,
                    Err(e) => return Err(format!("{service}: {e:#}").into()),
                };
                net::serve(app, port, stop_rx, grace).await?;
                stopped.store(true, std::sync::atomic::Ordering::Relaxed);
                // A stopped process is gone; the simulation crashes the host when it sees
                // this, which ends its background tasks too.
                std::future::pending::<()>().await;
                Ok(())
            })
        });
    }

    let hosts: Vec<String> = [fabric::HOST.to_string(), "load".to_string()]
        .into_iter()
        .chain(plan.nodes.iter().map(|n| n.id.to_string()))
        .collect();
    // The executor runs on the load host, on the world as it runs on any: the one way
    // from steady state to report.
    let commands: crate::world::Commands = Arc::default();
    let world = SimWorld::new(plan, links.clone(), ingress, (commands.clone(), stops, clocks));
    let out: Arc<Mutex<Option<Result<RunOutcome, String>>>> = Arc::default();
    {
        let (scenario, out) = (scenario.clone(), out.clone());
        sim.client("load", async move {
            // Nothing interrupts a simulation from inside; the sender stays alive so the
            // executor's interrupt never fires.
            let (_never, interrupt) = tokio::sync::watch::channel(false);
            let outcome = gauntlet::world::run_on(world, &scenario, interrupt, &|_| {}).await;
            *out.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome.map_err(|e| format!("{e:#}")));
            Ok(())
        });
    }
    // The simulation's own loop: between steps, the crashes and restarts the timeline
    // asked for (only the owner of the simulation can do them).
    let simulated = loop {
        let due: Vec<_> = commands.lock().unwrap_or_else(PoisonError::into_inner).drain(..).collect();
        for command in due {
            let (host, crashed) = match &command {
                HostCommand::Crash(host) => (host, true),
                HostCommand::Restart(host) => (host, false),
                HostCommand::Hold(host) | HostCommand::Release(host) => {
                    // A frozen process: its peers' connections stay open and nothing
                    // crosses them, both ways, until it is thawed.
                    let hold = matches!(command, HostCommand::Hold(_));
                    for peer in hosts.iter().filter(|h| *h != host) {
                        if hold {
                            sim.hold(host.as_str(), peer.as_str());
                        } else {
                            sim.release(host.as_str(), peer.as_str());
                        }
                    }
                    continue;
                }
            };
            for (_, link) in links.iter().filter(|(_, l)| l.upstream.0 == *host) {
                link.set_upstream_crashed(crashed);
            }
            if crashed {
                sim.crash(host.as_str());
            } else {
                sim.bounce(host.as_str());
            }
        }
        match sim.step() {
            Ok(true) => break Ok(()),
            Ok(false) => {}
            Err(e) => break Err(e),
        }
    };
    let outcome = out.lock().unwrap_or_else(PoisonError::into_inner).take();
    let outcome = match (simulated, outcome) {
        (_, Some(Ok(o))) => o,
        (_, Some(Err(e))) => anyhow::bail!("the run failed: {e}"),
        (Err(e), None) => anyhow::bail!("the simulation failed: {e}"),
        (Ok(()), None) => anyhow::bail!("the simulation ended without the run's outcome"),
    };
    let simulated = serde_json::json!({
        "seed": seed,
        "buggify": buggify,
        "simulated_secs": sim.elapsed().as_secs_f64(),
        "max_message_latency_us": network.max_latency.as_micros() as u64,
        "random_host_order": network.random_order,
    });
    std::fs::write(run_dir.join("simulated.json"), serde_json::to_vec_pretty(&simulated)?)?;
    Ok(outcome)
}

/// Builds service `service`'s app as its binary would, from `env`.
async fn build(
    binary: &str,
    service: &str,
    port: u16,
    env: BTreeMap<String, String>,
) -> anyhow::Result<(axum::Router, Duration)> {
    let env = shop_kit::Env::from_pairs(env);
    let needs_db = binary != "shop-gateway";
    let config = shop_kit::ServiceConfig::from_env(&env, service, port, needs_db)?;
    let grace = config.shutdown_grace;
    shop_kit::breakage::check_at_start_up(&env, service)?;
    let metrics = shop_kit::metrics::Metrics::new(service);
    let app = match binary {
        "shop-users" => shop_users::build(config, env, metrics).await?,
        "shop-catalog" => shop_catalog::build(config, env, metrics).await?,
        "shop-payments" => shop_payments::build(config, env, metrics).await?,
        "shop-orders" => shop_orders::build(config, env, metrics).await?,
        "shop-gateway" => shop_gateway::build(config, env, metrics).await?,
        other => anyhow::bail!("the simulator does not host `{other}`"),
    };
    Ok((app.into_router(), grace))
}

/// Where a seed's run goes under `out`: `out/seed-<N>`.
pub fn seed_dir(out: &Path, seed: u64) -> PathBuf {
    out.join(format!("seed-{seed}"))
}
