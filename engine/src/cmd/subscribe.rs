//! `tickwire subscribe`: a ZMQ SUB client that prints records as decode JSON lines.
//!
//! Reads either payload encoding (binary records are turned back into decode JSON; JSON
//! payloads are printed as they are), checks each topic's sequence numbers (binary) and
//! reports every hole on stderr as `{"gap":{"topic":..,"expected":..,"got":..}}`. The first
//! message of a topic sets its baseline (a subscriber that joins a running engine starts
//! wherever the topic is; those topics are counted as `joined`); only a jump after that is a
//! gap. At the end (after `--count` messages, or `--idle-ms` without one) it prints a summary
//! to stderr.

use crate::pipeline::publish::decode_binary;
use anyhow::Context;
use rustc_hash::FxHashMap;
use std::io::Write;
use std::process::ExitCode;
use tickwire_codecs::json::write_record;

/// `tickwire subscribe` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address of the publisher.
    #[arg(long, default_value = "tcp://127.0.0.1:5556")]
    pub connect: String,
    /// Topic prefix to subscribe to (repeatable; none: everything).
    #[arg(long)]
    pub topic: Vec<String>,
    /// Exit after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
    /// Exit after this many ms without a message (once at least one came).
    #[arg(long)]
    pub idle_ms: Option<u64>,
    /// Print nothing per message, only the summary.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB).context("zmq socket")?;
    sub.set_rcvhwm(1_000_000).context("rcvhwm")?;
    sub.connect(&args.connect)
        .with_context(|| format!("connect {}", args.connect))?;
    if args.topic.is_empty() {
        sub.set_subscribe(b"").context("subscribe")?;
    }
    for t in &args.topic {
        sub.set_subscribe(t.as_bytes()).context("subscribe")?;
    }
    if let Some(ms) = args.idle_ms {
        sub.set_rcvtimeo(ms as i32).context("rcvtimeo")?;
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut seqs: FxHashMap<Vec<u8>, u64> = FxHashMap::default();
    let (mut messages, mut gaps, mut bad, mut joined) = (0u64, 0u64, 0u64, 0u64);
    let mut line = Vec::with_capacity(4096);
    loop {
        if args.count.is_some_and(|c| messages >= c) {
            break;
        }
        let parts = match sub.recv_multipart(0) {
            Ok(p) => p,
            Err(zmq::Error::EAGAIN) if messages > 0 => break,
            Err(zmq::Error::EAGAIN) => continue,
            Err(e) => return Err(e).context("recv"),
        };
        let [topic, payload] = &parts[..] else {
            bad += 1;
            continue;
        };
        messages += 1;
        line.clear();
        if payload.first() == Some(&b'{') {
            line.extend_from_slice(payload);
        } else {
            match decode_binary(payload) {
                Ok((rec, levels, seq)) => {
                    match seqs.insert(topic.clone(), seq) {
                        // The baseline: the engine numbers each topic from 1.
                        None => joined += u64::from(seq != 1),
                        Some(last) if seq != last + 1 => {
                            gaps += 1;
                            eprintln!(
                                "{{\"gap\":{{\"topic\":\"{}\",\"expected\":{},\"got\":{seq}}}}}",
                                String::from_utf8_lossy(topic),
                                last + 1
                            );
                        }
                        Some(_) => {}
                    }
                    let symbol = topic.rsplit(|&c| c == b'.').next().unwrap_or(b"");
                    write_record(&mut line, &rec, &String::from_utf8_lossy(symbol), &levels);
                }
                Err(e) => {
                    bad += 1;
                    tracing::warn!("{e}");
                    continue;
                }
            }
        }
        if !args.quiet {
            line.push(b'\n');
            out.write_all(&line).context("stdout")?;
        }
    }
    out.flush().context("stdout")?;
    eprintln!(
        "{{\"messages\":{messages},\"topics\":{},\"joined\":{joined},\"gaps\":{gaps},\"bad\":{bad}}}",
        seqs.len()
    );
    Ok(ExitCode::SUCCESS)
}
