//! `tickwire decode`: frames in, decode JSON out, one line for one line.
//!
//! Every input line gives exactly one output line, in order, so the two files line up:
//! a record object (see `tickwire_codecs::json`), `{"kind":"records","records":[..]}` for a
//! frame that holds several records (all-market array streams), `{"kind":"control",..}`,
//! `{"kind":"unknown","event":..}` or `{"kind":"error","error":"<what and where>"}`.
//! A summary of counts goes to stderr at the end.

use anyhow::Context;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::pipeline::queue::Msg;
use tickwire_codecs::binance::{Control, DecodeStats, Decoder, ErrorClass, Frame, TimeUnit};
use tickwire_codecs::json::{write_json_str, write_record};
use tickwire_codecs::record::{Kind, Level, Market, Record};
use tickwire_codecs::symbol::SymbolTable;

/// Market argument.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum MarketArg {
    /// Binance spot.
    Spot,
    /// Binance USD-M futures.
    Usdm,
}

impl From<MarketArg> for Market {
    fn from(m: MarketArg) -> Market {
        match m {
            MarketArg::Spot => Market::Spot,
            MarketArg::Usdm => Market::Usdm,
        }
    }
}

/// `tickwire decode` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which endpoint the frames came from (payloads differ).
    #[arg(long, value_enum)]
    pub market: MarketArg,
    /// Integer times in the frames are microseconds (spot `timeUnit=MICROSECOND`).
    #[arg(long)]
    pub micros: bool,
    /// Stream name of a raw (`/ws/<stream>`) capture, for frames that do not name their symbol.
    #[arg(long)]
    pub stream: Option<String>,
    /// File of frames, one per line; standard input when absent.
    pub file: Option<PathBuf>,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let input: Box<dyn Read> = match &args.file {
        Some(p) => Box::new(
            std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
        ),
        None => Box::new(std::io::stdin().lock()),
    };
    let unit = if args.micros {
        TimeUnit::Micros
    } else {
        TimeUnit::Millis
    };
    let table = SymbolTable::new();
    let mut dec = Decoder::new(args.market.into(), table.clone()).with_time_unit(unit);
    let mut names = crate::pipeline::names::Names::new(table);
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut line = Vec::with_capacity(1 << 16);
    let mut buf = Vec::with_capacity(1 << 16);
    let mut recs: Vec<Msg> = Vec::new();
    let stream = args.stream.as_deref().map(str::as_bytes);
    loop {
        line.clear();
        if reader
            .read_until(b'\n', &mut line)
            .with_context(|| match &args.file {
                Some(p) => format!("reading frames from {}", p.display()),
                None => "reading frames from standard input".into(),
            })?
            == 0
        {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let recv = crate::source::clock::now_ns();
        recs.clear();
        buf.clear();
        let r = dec.decode_stream(&line, stream, recv, &mut |r: &Record, lv: &[Level]| {
            // Keep only the record's own levels, re-based at zero.
            recs.push(Msg::new(*r, lv));
        });
        match r {
            Ok(Frame::Data { .. }) if recs.len() == 1 => {
                let m = &recs[0];
                write_record(
                    &mut buf,
                    &m.rec,
                    names.get(m.rec.header().symbol),
                    m.levels(),
                );
            }
            Ok(Frame::Data { .. }) => {
                buf.extend_from_slice(b"{\"kind\":\"records\",\"records\":[");
                for (i, m) in recs.iter().enumerate() {
                    if i > 0 {
                        buf.push(b',');
                    }
                    write_record(
                        &mut buf,
                        &m.rec,
                        names.get(m.rec.header().symbol),
                        m.levels(),
                    );
                }
                buf.extend_from_slice(b"]}");
            }
            Ok(Frame::Control(c)) => write_control(&mut buf, &c),
            Ok(Frame::Unknown { event }) => {
                buf.extend_from_slice(b"{\"kind\":\"unknown\",\"event\":");
                write_json_str(&mut buf, String::from_utf8_lossy(event).as_bytes());
                buf.push(b'}');
            }
            Err(e) => {
                buf.extend_from_slice(b"{\"kind\":\"error\",\"error\":");
                write_json_str(&mut buf, e.to_string().as_bytes());
                buf.push(b'}');
            }
        }
        buf.push(b'\n');
        out.write_all(&buf).context("writing stdout")?;
    }
    out.flush().context("writing stdout")?;
    eprintln!("{}", summary(dec.stats()));
    Ok(ExitCode::SUCCESS)
}

fn write_control(buf: &mut Vec<u8>, c: &Control<'_>) {
    let raw_or_null = |v: &[u8]| {
        if v.is_empty() {
            b"null".to_vec()
        } else {
            v.to_vec()
        }
    };
    match c {
        Control::Result { id, result } => {
            buf.extend_from_slice(b"{\"kind\":\"control\",\"type\":\"result\",\"id\":");
            buf.extend_from_slice(&raw_or_null(id));
            buf.extend_from_slice(b",\"result\":");
            buf.extend_from_slice(result);
        }
        Control::Error { id, code, msg } => {
            buf.extend_from_slice(b"{\"kind\":\"control\",\"type\":\"error\",\"id\":");
            buf.extend_from_slice(&raw_or_null(id));
            buf.extend_from_slice(b",\"code\":");
            buf.extend_from_slice(itoa::Buffer::new().format(*code).as_bytes());
            buf.extend_from_slice(b",\"msg\":");
            // `msg` is the frame's string content, already JSON-escaped.
            buf.push(b'"');
            buf.extend_from_slice(String::from_utf8_lossy(msg).as_bytes());
            buf.push(b'"');
        }
        Control::ServerShutdown { event_time } => {
            buf.extend_from_slice(
                b"{\"kind\":\"control\",\"type\":\"server_shutdown\",\"event_time\":",
            );
            buf.extend_from_slice(itoa::Buffer::new().format(*event_time).as_bytes());
        }
    }
    buf.push(b'}');
}

/// The stderr summary line.
pub fn summary(s: &DecodeStats) -> String {
    let mut o = format!("{{\"frames\":{},\"records\":{{", s.frames);
    for (i, k) in Kind::ALL.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        o.push_str(&format!("\"{}\":{}", k.as_str(), s.records[k.index()]));
    }
    o.push_str(&format!(
        "}},\"controls\":{},\"unknown\":{},\"errors\":{{",
        s.controls, s.unknown
    ));
    for (i, c) in ErrorClass::ALL.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        o.push_str(&format!("\"{}\":{}", c.as_str(), s.errors[*c as usize]));
    }
    o.push_str(&format!("}},\"error_total\":{}}}", s.total_errors()));
    o
}
