//! `gauntlet proxy`: runs the embedded Toxiproxy-compatible fault proxy until stopped.

use anyhow::Context as _;
use clap::Args;

use crate::exit::{CliError, Outcome};
use crate::faults::ProxyServer;

/// Options of `gauntlet proxy`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Address of the Toxiproxy HTTP API.
    #[arg(long, default_value = "127.0.0.1:8474")]
    pub listen: String,
    /// Seed of every random fault decision; the same seed gives the same decisions.
    /// Without it a seed is drawn and printed, so the run can be replayed.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Runs the proxy server until interrupted (Ctrl-C or SIGTERM).
pub fn run(args: ProxyArgs) -> Result<Outcome, CliError> {
    let seed = args.seed.unwrap_or_else(drawn_seed);
    let runtime = tokio::runtime::Runtime::new().context("could not start the async runtime")?;
    runtime.block_on(async {
        let server = ProxyServer::start(&args.listen, seed)
            .await
            .with_context(|| format!("could not start the fault proxy API on {}", args.listen))?;
        // Listening before announcing: a supervisor that stops the proxy as soon as it
        // is announced must not kill it with the signal's default action.
        let stopped = stop_signal()?;
        println!("gauntlet proxy: Toxiproxy API on {} (seed {seed}); Ctrl-C stops it", server.url());
        stopped.await?;
        server.shutdown().await;
        Ok(Outcome::Passed)
    })
}

/// Listens for Ctrl-C, and SIGTERM where there is one (a supervisor stopping the
/// proxy), from now on; the future ends at the first of them.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = anyhow::Result<()>>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("could not listen for SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("could not listen for Ctrl-C")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
            Ok(())
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async { tokio::signal::ctrl_c().await.context("could not wait for Ctrl-C") })
    }
}

fn drawn_seed() -> u64 {
    rand::random()
}
