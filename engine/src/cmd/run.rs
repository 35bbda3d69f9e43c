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
    /// Validate the configuration, print the connection URLs and exit.
    #[arg(long)]
    pub check: bool,
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
        return Ok(ExitCode::SUCCESS);
    }
    let settings = cfg.settings().context("building sinks")?;
    println!("{}", runner::run(settings)?);
    Ok(ExitCode::SUCCESS)
}
