//! `tickwire tier`: one tiering pass, hot ClickHouse -> cold ClickHouse and/or Parquet
//! (see [`crate::tier`]). A progress line on a terminal; the JSON report as the last stdout
//! line; exit 1 when a window failed.

use crate::tier::{parse_duration_ns, parse_kind, Endpoint, Plan, Progress, Target, Tierer};
use anyhow::{anyhow, bail};
use std::io::Write;
use std::process::ExitCode;
#[cfg(test)]
use tickwire_codecs::record::Kind;
use tickwire_codecs::record::Market;

/// `tickwire tier` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The hot ClickHouse database (`clickhouse://host:port/database`), and for a manual
    /// transfer the first receive time (RFC 3339, `YYYY-MM-DD` or ms since the epoch); may be
    /// given twice, once as each.
    #[arg(long = "from", value_name = "URL|TIME")]
    pub from: Vec<String>,
    /// A target (`clickhouse://host:port/database` or `parquet:DIR`, repeatable), and for a
    /// manual transfer the end of the receive-time range (exclusive).
    #[arg(long = "to", value_name = "URL|TIME")]
    pub to: Vec<String>,
    /// Move batches whose rows are all older than this (`0s`, `90m`, `48h`, `3d`); `0s`
    /// moves everything. Needed unless a `--to TIME` bounds the transfer.
    #[arg(long, value_name = "DURATION")]
    pub older_than: Option<String>,
    /// Remove the verified windows from the hot tier (partition drop where a whole day was
    /// verified, else a delete of exactly the verified batches).
    #[arg(long)]
    pub cleanup: bool,
    /// Only these kinds (`trade`, `depth_update`, ... or table names: `trades`; repeatable or comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub kind: Vec<String>,
    /// Only this market (`spot`, `usdm`).
    #[arg(long)]
    pub market: Option<String>,
    /// Only this symbol.
    #[arg(long)]
    pub symbol: Option<String>,
    /// Rows per INSERT and per verification chunk.
    #[arg(long, default_value_t = 500_000)]
    pub chunk_rows: u64,
    /// Compression between tickwire and the servers: `lz4` (ClickHouse's block compression)
    /// or `none` (raw Native: less CPU on a loopback or a fast network).
    #[arg(long, default_value = "lz4", value_parser = ["lz4", "none"])]
    pub compression: String,
}

fn is_store(s: &str) -> bool {
    s.contains("://") || s.starts_with("parquet:")
}

/// RFC 3339, `YYYY-MM-DD` (midnight UTC) or ms since the epoch; in ns.
fn parse_when(s: &str) -> anyhow::Result<i64> {
    let t = if s.len() == 10 && s.as_bytes().get(4) == Some(&b'-') {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    crate::serve::query::parse_time(&t).map_err(|e| anyhow!(e))
}

/// The plan the arguments describe.
pub fn plan(args: &Args) -> anyhow::Result<Plan> {
    let (hot, from_t): (Vec<&String>, Vec<&String>) = args.from.iter().partition(|s| is_store(s));
    let (targets, to_t): (Vec<&String>, Vec<&String>) = args.to.iter().partition(|s| is_store(s));
    let [hot] = hot.as_slice() else {
        bail!("--from clickhouse://host:port/database: the hot database, once");
    };
    let hot = Endpoint::parse(hot).map_err(|e| anyhow!(e))?;
    let targets = targets
        .iter()
        .map(|t| Target::parse(t).map_err(|e| anyhow!(e)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if targets.is_empty() {
        bail!("--to clickhouse://host:port/database or --to parquet:DIR: at least one target");
    }
    if from_t.len() > 1 || to_t.len() > 1 {
        bail!("one --from TIME and one --to TIME at most");
    }
    let from_ns = from_t.first().map(|s| parse_when(s)).transpose()?;
    let to_ns = to_t.first().map(|s| parse_when(s)).transpose()?;
    let older_than_ns = match (&args.older_than, to_ns) {
        (Some(d), _) => parse_duration_ns(d).map_err(|e| anyhow!(e))?,
        (None, Some(_)) => 0,
        (None, None) => bail!("--older-than DURATION (0s moves everything) or a --to TIME"),
    };
    if args.chunk_rows == 0 {
        bail!("--chunk-rows must be at least 1");
    }
    let mut plan = Plan::new(hot, targets, older_than_ns);
    plan.cleanup = args.cleanup;
    plan.from_ns = from_ns;
    plan.to_ns = to_ns;
    plan.chunk_rows = args.chunk_rows;
    plan.lz4 = args.compression == "lz4";
    plan.symbol = args.symbol.clone();
    if !args.kind.is_empty() {
        plan.kinds = args
            .kind
            .iter()
            .map(|k| parse_kind(k).map_err(|e| anyhow!(e)))
            .collect::<anyhow::Result<_>>()?;
    }
    plan.market = args
        .market
        .as_deref()
        .map(|m| {
            Market::from_bytes(m.as_bytes()).ok_or_else(|| anyhow!("market {m:?}: spot or usdm"))
        })
        .transpose()?;
    Ok(plan)
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let plan = plan(&args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut shown =
        crate::cmd::progress::Progress::new("tier", crate::cmd::progress::Unit::Rows, 0);
    let mut bar = move |p: &Progress| {
        let note = format!("windows {}/{}", p.windows_done, p.windows_total);
        shown.set(p.rows_done, p.rows_total, &note);
        if p.windows_done == p.windows_total {
            shown.finish(&note);
        }
    };
    let report = rt.block_on(async {
        let t = Tierer::connect(plan).await?;
        tracing::info!("tier: hot {}", t.hot_label());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        t.run(now, &mut bar).await
    })?;
    for f in &report.failures {
        tracing::error!(
            "tier: {} {} {} -> {}: {}",
            f.table,
            f.market,
            f.day,
            f.target,
            f.reason
        );
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(&report)?)?;
    Ok(
        if report.windows.failed > 0 || !report.failures.is_empty() {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(from: &[&str], to: &[&str]) -> Args {
        Args {
            from: from.iter().map(|s| s.to_string()).collect(),
            to: to.iter().map(|s| s.to_string()).collect(),
            older_than: None,
            cleanup: false,
            kind: vec![],
            market: None,
            symbol: None,
            chunk_rows: 10,
            compression: "lz4".into(),
        }
    }

    #[test]
    fn urls_and_times_are_told_apart() {
        let a = args(
            &["clickhouse://h:8123/hot", "2026-12-01"],
            &[
                "parquet:/arch",
                "2026-12-02T00:00:00Z",
                "clickhouse://h:8124/cold",
            ],
        );
        let p = plan(&a).expect("plan");
        assert_eq!(p.hot.database, "hot");
        assert_eq!(p.targets.len(), 2);
        assert_eq!(p.from_ns, Some(1_796_083_200_000_000_000));
        assert_eq!(p.to_ns, Some(1_796_169_600_000_000_000));
        assert_eq!(p.older_than_ns, 0);
        // Without a bound, the age is required.
        assert!(plan(&args(&["clickhouse://h/hot"], &["parquet:/a"])).is_err());
        assert!(plan(&args(&["2026-12-01"], &["parquet:/a"])).is_err());
        let mut a = args(&["clickhouse://h/hot"], &["parquet:/a"]);
        a.older_than = Some("2d".into());
        a.kind = vec!["trade".into(), "depth_updates".into()];
        a.market = Some("usdm".into());
        let p = plan(&a).expect("plan");
        assert_eq!(p.kinds, vec![Kind::Trade, Kind::DepthUpdate]);
        assert_eq!(p.market, Some(Market::Usdm));
        a.kind = vec!["nope".into()];
        assert!(plan(&a).is_err());
    }
}
