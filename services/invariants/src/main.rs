//! `shop-invariants`: the sample shop's invariants as a Gauntlet external checker.
//!
//! ```text
//! shop-invariants check <invariant>   writes the verdict to $GAUNTLET_VERDICT
//! shop-invariants settled             exit 0 once every order ended (and events caught up), 1 until then
//! ```
//!
//! Gauntlet runs it with `GAUNTLET_HISTORY` and `GAUNTLET_FINAL_READS` (JSON Lines,
//! `gauntlet schema history`), `GAUNTLET_VERDICT` (where the verdict goes, `gauntlet
//! schema verdict`), `GAUNTLET_HISTORY_DROPPED` (operations the history could not keep)
//! and `GAUNTLET_SETTLE_WAITED` / `GAUNTLET_SETTLE_BOUND` (seconds).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use gauntlet::checks::external::VerdictFile;
use gauntlet::checks::op::HistoryLine;
use shop_invariants::{history, state::ShopState, Inputs, INVARIANTS};

const USAGE: &str = "usage: shop-invariants check <invariant> | shop-invariants settled\n\
    invariants: no_lost_orders, orders_terminate, money_conserved, stock_conserved, events_delivered\n\
    Run by `gauntlet run` as the external checker services/checks.toml declares; it reads\n\
    $GAUNTLET_HISTORY and $GAUNTLET_FINAL_READS and writes $GAUNTLET_VERDICT.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["check", name] if INVARIANTS.contains(&name) => match check(name) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("shop-invariants: {e:#}");
                ExitCode::from(2)
            }
        },
        ["check", name] => {
            eprintln!("shop-invariants: `{name}` is not an invariant of the shop\n{USAGE}");
            ExitCode::from(2)
        }
        ["settled"] => match settled() {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("shop-invariants: {e:#}");
                ExitCode::from(2)
            }
        },
        ["--help" | "-h"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn env_path(name: &str) -> anyhow::Result<PathBuf> {
    std::env::var_os(name)
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("${name} is not set: this program is run by `gauntlet run` (see --help)"))
}

fn env_secs(name: &str) -> Duration {
    std::env::var(name).ok().and_then(|s| s.parse::<f64>().ok()).map_or(Duration::ZERO, Duration::from_secs_f64)
}

fn read_lines(path: &std::path::Path) -> anyhow::Result<Vec<HistoryLine>> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}:{}: not a history line", path.display(), i + 1))
        })
        .collect()
}

fn check(name: &str) -> anyhow::Result<()> {
    let verdict_path = env_path("GAUNTLET_VERDICT")?;
    let finals = read_lines(&env_path("GAUNTLET_FINAL_READS")?)?;
    let lines = read_lines(&env_path("GAUNTLET_HISTORY")?)?;
    let dropped: u64 = std::env::var("GAUNTLET_HISTORY_DROPPED").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let ops = history::operations(&lines, shop_invariants::orders::PLACE_ORDER);
    let result = match ShopState::from_final_reads(&finals) {
        Ok(state) => shop_invariants::check(
            name,
            &Inputs {
                ops: &ops,
                history_complete: dropped == 0,
                state: &state,
                waited: env_secs("GAUNTLET_SETTLE_WAITED"),
                bound: env_secs("GAUNTLET_SETTLE_BOUND"),
            },
        )
        .unwrap_or_else(|| shop_invariants::unknown(name, "not a shop invariant")),
        Err(e) => shop_invariants::unknown(name, format!("{e:#}")),
    };
    std::fs::write(&verdict_path, serde_json::to_vec_pretty(&VerdictFile::from_result(&result))?)?;
    Ok(())
}

fn settled() -> anyhow::Result<bool> {
    let finals = read_lines(&env_path("GAUNTLET_FINAL_READS")?)?;
    let state = ShopState::from_final_reads(&finals)?;
    let open = state.orders.iter().filter(|o| !o.is_terminal()).count();
    if open > 0 {
        println!("{open} order(s) not yet PAID or CANCELLED");
    }
    Ok(state.settled())
}
