//! `tickwire run --config FILE`: the engine as configured (see `tickwire.example.toml`).

use crate::config;
use crate::runner;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

/// `tickwire run` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// TOML configuration file; `TICKWIRE_<SECTION>__<KEY>` variables override its keys.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Validate the configuration, print the connection URLs, try to reach every sink (exit 1
    /// if one cannot be reached) and exit.
    #[arg(long)]
    pub check: bool,
    /// Stop cleanly (flush, summary) after this many seconds without a record taken in: for
    /// backfills, a JetStream writer draining its stream, and tests.
    #[arg(long, value_name = "SECS")]
    pub exit_when_idle: Option<f64>,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg =
        config::load(&args.config).with_context(|| format!("config {}", args.config.display()))?;
    if args.check {
        if cfg.simulator.enabled {
            println!("simulator: in-process, {} msg/s", cfg.simulator.rate);
        }
        for (m, u) in cfg.urls() {
            println!("{}: {u}", m.as_str());
        }
        let mut unreachable = 0;
        // `symbols = ["*"]`: read exchangeInfo (through the weight budget) and show what it
        // selects.
        let all: Vec<config::SourcePlan> = cfg
            .plans()
            .into_iter()
            .filter(|p| p.all.is_some())
            .collect();
        if !all.is_empty() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let mut hosts = Vec::new();
            match rt.block_on(runner::resolve_sources(
                &all,
                false,
                Default::default(),
                &mut hosts,
                1,
                None,
                &Default::default(),
            )) {
                Ok((conns, _)) => {
                    for c in conns {
                        println!("{}: {}", c.market.as_str(), c.url);
                    }
                }
                Err(e) => {
                    unreachable += 1;
                    println!("symbols = [\"*\"]: {}", crate::cmd::error_line(&e));
                }
            }
        }
        for (sink, r) in cfg.check_sinks() {
            match r {
                Ok(what) => println!("{sink}: ok, {what}"),
                Err(why) => {
                    unreachable += 1;
                    println!("{sink}: cannot be reached: {why}");
                }
            }
        }
        if unreachable > 0 {
            tracing::error!("{unreachable} sink(s) or exchange(s) cannot be reached");
            return Ok(ExitCode::from(1));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut settings = cfg.settings()?;
    settings.exit_when_idle = args
        .exit_when_idle
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(std::time::Duration::from_secs_f64);
    println!("{}", runner::run(settings)?);
    Ok(ExitCode::SUCCESS)
}
