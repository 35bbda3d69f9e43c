//! The `tickwire` binary: a thin shell over `tickwire_engine`.

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use tickwire_engine::cmd::logging::LogFormat;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// tickwire: low-latency, zero-copy market-data ingest.
#[derive(Debug, Parser)]
#[command(name = "tickwire", version, about)]
struct Cli {
    /// How log lines are written to stderr: text, or one JSON object a line. Which lines:
    /// TICKWIRE_LOG (else RUST_LOG), e.g. `warn,tickwire_engine::source=debug`; default info.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Decode Binance frames (one per line) into decode JSON, one output line per input line.
    Decode(tickwire_engine::cmd::decode::Args),
    /// Run the local Binance simulator and the engine together: Parquet + ZMQ PUB, stats on
    /// stderr, a JSON summary as the last stdout line.
    Demo(tickwire_engine::cmd::demo::Args),
    /// Replay a raw capture through the same decode, sequence checks and books into Parquet;
    /// a JSON summary as the last stdout line.
    Replay(tickwire_engine::cmd::replay::Args),
    /// Run the engine as a TOML config file says (sources or the simulator, sinks, ZMQ, HTTP).
    Run(tickwire_engine::cmd::run::Args),
    /// Serve the Binance-compatible local simulator (spot and USD-M), with optional faults;
    /// prints what it sent as JSON on exit.
    Sim(tickwire_engine::cmd::sim::Args),
    /// Subscribe to a tickwire ZMQ PUB and print records as JSON lines; reports sequence gaps.
    Subscribe(tickwire_engine::cmd::subscribe::Args),
    /// Move market data older than a cutoff from the hot ClickHouse to cold ClickHouse and/or
    /// a Parquet archive, window by window, verified, optionally cleaned from the hot tier; a
    /// JSON summary as the last stdout line.
    Tier(tickwire_engine::cmd::tier::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = tickwire_engine::cmd::logging::init(cli.log_format) {
        eprintln!("tickwire: {e}");
        return ExitCode::from(2);
    }
    let r = match cli.cmd {
        Cmd::Decode(a) => tickwire_engine::cmd::decode::run(a),
        Cmd::Demo(a) => tickwire_engine::cmd::demo::run(a),
        Cmd::Replay(a) => tickwire_engine::cmd::replay::run(a),
        Cmd::Run(a) => tickwire_engine::cmd::run::run(a),
        Cmd::Sim(a) => tickwire_engine::cmd::sim::run(a),
        Cmd::Subscribe(a) => tickwire_engine::cmd::subscribe::run(a),
        Cmd::Tier(a) => tickwire_engine::cmd::tier::run(a),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{}", tickwire_engine::cmd::error_line(&e));
            ExitCode::from(2)
        }
    }
}
