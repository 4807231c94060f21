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
        println!("gauntlet proxy: Toxiproxy API on {} (seed {seed}); Ctrl-C stops it", server.url());
        stopped().await?;
        server.shutdown().await;
        Ok(Outcome::Passed)
    })
}

/// Waits for Ctrl-C, or SIGTERM where there is one (a supervisor stopping the proxy).
async fn stopped() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("could not listen for SIGTERM")?;
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => interrupted.context("could not wait for Ctrl-C")?,
            _ = term.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.context("could not wait for Ctrl-C")
    }
}

fn drawn_seed() -> u64 {
    rand::random()
}
