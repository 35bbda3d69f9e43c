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
            eprintln!("tickwire: {unreachable} sink(s) cannot be reached");
            return Ok(ExitCode::from(1));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let settings = cfg.settings()?;
    println!("{}", runner::run(settings)?);
    Ok(ExitCode::SUCCESS)
}
