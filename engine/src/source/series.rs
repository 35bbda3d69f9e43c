//! The records that come from REST answers rather than stream frames: `instrument` (each
//! recorded symbol's exchangeInfo entry, at start and on every change) and the USD-M series
//! only REST serves, `open_interest` and `long_short_ratio`, polled by `[[pollers]]`.
//!
//! Everything goes through the market's [`RestHost`] (its weight budget, and for
//! `/futures/data/` its own 5-minute request window), at [`Class::Poll`], below snapshots. A
//! series point is written once: points are kept by their timestamp, and only those newer
//! than the last one written for (series, symbol) are emitted. A poll that comes late (the
//! budget, an outage) asks for every period missed since (`limit` up to 500), so nothing
//! between two polls is skipped. After a restart the first poll asks for `history` points
//! again: rows already stored from before come again, identical (a reader deduplicates by
//! `(symbol, series, period, event_time)`).
//!
//! Records are published on ZMQ and put on the queue like the sources' (the [`Emitter`]);
//! the pipeline writes them to every sink and the cache.

use crate::pipeline::publish::SharedPublisher;
use crate::pipeline::queue::{Bundle, FullPolicy, Msg, QueueCounters};
use crate::source::rest::{Class, ExchangeInfo, Instrument as Info, RestHost, DATA_WINDOW};
use crossbeam_channel::{SendTimeoutError, Sender};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tickwire_codecs::decimal::{parse_i128, parse_i64, DpSet, Wide, DP_NULL};
use tickwire_codecs::record::{
    Header, Instrument, Interval, Kind, LongShortRatio, Market, OpenInterest, RatioSeries, Record,
    SymbolId, Text16, Text24, NULL_I64,
};
use tickwire_codecs::symbol::SymbolTable;

/// Puts records made from REST answers where the sources put theirs: ZMQ first, then the
/// queue (waiting at most `max_wait` for room, then counted as dropped).
#[derive(Debug)]
pub struct Emitter {
    pub tx: Sender<Bundle>,
    pub publish: Option<Arc<SharedPublisher>>,
    pub queue: Arc<QueueCounters>,
    pub symbols: Arc<SymbolTable>,
    pub full: FullPolicy,
    /// With a capture: every record emitted is kept in it (one stream for the process).
    pub capture: Option<Mutex<crate::source::capture::ConnCapture>>,
}

impl Emitter {
    /// Publishes and queues `recs` (in bundles of at most [`crate::pipeline::queue::MAX_BUNDLE`]).
    pub fn emit(&self, recs: Vec<Record>) {
        if let Some(c) = &self.capture {
            let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
            for r in &recs {
                let name = self.symbols.name(r.header().symbol).unwrap_or_default();
                c.record(r, &name);
            }
            c.flush();
        }
        for chunk in recs.chunks(crate::pipeline::queue::MAX_BUNDLE) {
            let bundle: Bundle = chunk.iter().map(|r| Msg::new(*r, &[])).collect();
            if let Some(p) = &self.publish {
                p.publish(&bundle);
            }
            let n = bundle.len() as u64;
            let r = match self.full {
                FullPolicy::Block { max_wait } => self.tx.send_timeout(bundle, max_wait),
                FullPolicy::DropNewest => self.tx.try_send(bundle).map_err(|e| match e {
                    crossbeam_channel::TrySendError::Full(m) => SendTimeoutError::Timeout(m),
                    crossbeam_channel::TrySendError::Disconnected(m) => {
                        SendTimeoutError::Disconnected(m)
                    }
                }),
            };
            let c = match r {
                Ok(()) => &self.queue.pushed,
                Err(_) => &self.queue.dropped,
            };
            c.fetch_add(n, Ordering::Relaxed);
        }
    }
}

fn price(s: &str, dp: &mut DpSet, i: usize, what: &str) -> Result<i64, String> {
    let p = parse_i64(s.as_bytes()).map_err(|e| format!("{what} {s:?}: {e}"))?;
    dp.set(i, p.dp);
    Ok(p.raw)
}

fn qty(s: &str, dp: &mut DpSet, i: usize, what: &str) -> Result<Wide, String> {
    let p = parse_i128(s.as_bytes()).map_err(|e| format!("{what} {s:?}: {e}"))?;
    dp.set(i, p.dp);
    Ok(Wide::new(p.raw))
}

fn ms_to_us(ms: Option<i64>) -> i64 {
    ms.and_then(|m| m.checked_mul(1000)).unwrap_or(NULL_I64)
}

/// The `instrument` record of one exchangeInfo entry.
pub fn instrument_record(
    market: Market,
    symbol: SymbolId,
    i: &Info,
    server_time_ms: Option<i64>,
    recv_ns: i64,
) -> Result<Record, String> {
    let mut dp = DpSet::ALL_NULL;
    let tick = i.tick_size.as_deref().ok_or("no PRICE_FILTER.tickSize")?;
    let step = i.step_size.as_deref().ok_or("no LOT_SIZE.stepSize")?;
    let text24 = |s: &str, what: &str| {
        Text24::new(s).ok_or_else(|| format!("{what} {s:?} is longer than 24 bytes"))
    };
    let text16 = |s: &str, what: &str| {
        Text16::new(s).ok_or_else(|| format!("{what} {s:?} is longer than 16 bytes"))
    };
    Ok(Record::Instrument(Instrument {
        header: Header::new(
            Kind::Instrument,
            market,
            symbol,
            ms_to_us(server_time_ms),
            recv_ns,
        ),
        tick_size: price(tick, &mut dp, 0, "tickSize")?,
        step_size: qty(step, &mut dp, 1, "stepSize")?,
        min_qty: match &i.min_qty {
            Some(m) => qty(m, &mut dp, 2, "minQty")?,
            None => Wide::new(0),
        },
        price_precision: i.price_precision.unwrap_or(NULL_I64),
        quantity_precision: i.quantity_precision.unwrap_or(NULL_I64),
        base_asset_precision: i.base_asset_precision.unwrap_or(NULL_I64),
        quote_precision: i.quote_precision.unwrap_or(NULL_I64),
        onboard_date: ms_to_us(i.onboard_date),
        delivery_date: ms_to_us(i.delivery_date),
        dp,
        status: text24(&i.status, "status")?,
        contract_type: text24(i.contract_type.as_deref().unwrap_or(""), "contractType")?,
        base_asset: text16(&i.base_asset, "baseAsset")?,
        quote_asset: text16(&i.quote_asset, "quoteAsset")?,
    }))
}

/// The exchangeInfo entries last written as `instrument` records, per symbol, so that only
/// changes are written again.
#[derive(Debug, Clone)]
pub struct Instruments {
    pub market: Market,
    last: HashMap<String, Info>,
}

impl Instruments {
    /// Nothing written yet.
    pub fn new(market: Market) -> Self {
        Instruments {
            market,
            last: HashMap::new(),
        }
    }

    /// The records of the entries of `info` that are new or changed, for the symbols in
    /// `recorded` and those written before (so a delisting's status change is written too).
    /// Entries that cannot be read are logged and counted in `host`'s `unreadable`.
    pub fn changes(
        &mut self,
        info: &ExchangeInfo,
        recorded: &HashSet<String>,
        symbols: &SymbolTable,
        host: &RestHost,
    ) -> Vec<Record> {
        let now = crate::source::clock::now_ns();
        let mut out = Vec::new();
        for i in &info.symbols {
            if !recorded.contains(&i.symbol) && !self.last.contains_key(&i.symbol) {
                continue;
            }
            if self.last.get(&i.symbol) == Some(i) {
                continue;
            }
            let made = symbols
                .intern(i.symbol.as_bytes())
                .map_err(|e| e.to_string())
                .and_then(|id| instrument_record(self.market, id, i, info.server_time, now));
            match made {
                Ok(r) => {
                    out.push(r);
                    self.last.insert(i.symbol.clone(), i.clone());
                }
                Err(e) => {
                    host.stats.unreadable.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "{} exchangeInfo {}: {e}; no instrument record",
                        self.market.as_str(),
                        i.symbol
                    );
                }
            }
        }
        out
    }
}

/// A series a poller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Series {
    /// `GET /fapi/v1/openInterest`: the open interest now (weight 1).
    OpenInterest,
    /// `/futures/data/openInterestHist`: open interest and its value per period.
    OpenInterestHist,
    /// One of the `/futures/data/` long/short ratios.
    Ratio(RatioSeries),
}

impl Series {
    /// Every series, by its Binance name.
    pub const ALL: [Series; 5] = [
        Series::OpenInterest,
        Series::OpenInterestHist,
        Series::Ratio(RatioSeries::TopPosition),
        Series::Ratio(RatioSeries::TopAccount),
        Series::Ratio(RatioSeries::GlobalAccount),
    ];

    /// Binance's name (the endpoint's last path segment).
    pub fn name(self) -> &'static str {
        match self {
            Series::OpenInterest => "openInterest",
            Series::OpenInterestHist => "openInterestHist",
            Series::Ratio(r) => r.as_str(),
        }
    }

    /// The series called `name`.
    pub fn parse(name: &str) -> Option<Series> {
        Series::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether it is one of the `/futures/data/` endpoints (their own request window).
    pub fn is_data(self) -> bool {
        self != Series::OpenInterest
    }

    /// The request weight against the minute.
    pub fn weight(self) -> u64 {
        match self {
            Series::OpenInterest => 1,
            _ => 0,
        }
    }

    /// The request path.
    pub fn path(self, symbol: &str, period: Interval, limit: usize) -> String {
        match self {
            Series::OpenInterest => format!("/fapi/v1/openInterest?symbol={symbol}"),
            s => format!(
                "/futures/data/{}?symbol={symbol}&period={}&limit={limit}",
                s.name(),
                period.as_str()
            ),
        }
    }
}

/// The length of a `/futures/data/` period in ms (`None`: not one of its periods).
pub fn period_ms(i: Interval) -> Option<i64> {
    Some(match i {
        Interval::M5 => 300_000,
        Interval::M15 => 900_000,
        Interval::M30 => 1_800_000,
        Interval::H1 => 3_600_000,
        Interval::H2 => 7_200_000,
        Interval::H4 => 14_400_000,
        Interval::H6 => 21_600_000,
        Interval::H12 => 43_200_000,
        Interval::D1 => 86_400_000,
        _ => return None,
    })
}

/// A time in ms, written as a number or as a string of digits.
fn time_ms(v: Option<&serde_json::Value>) -> Option<i64> {
    match v? {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn field<'a>(v: &'a serde_json::Value, k: &str) -> Result<&'a str, String> {
    v.get(k)
        .and_then(|x| x.as_str())
        .ok_or_else(|| format!("no {k}"))
}

/// The points of one answer of `series` as (timestamp ms, record), in the answer's order.
/// A point that cannot be read is an error for the whole answer (nothing of it is written).
pub fn parse_points(
    series: Series,
    period: Interval,
    body: &str,
    symbol: SymbolId,
    recv_ns: i64,
) -> Result<Vec<(i64, Record)>, String> {
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let header = |kind, ts_ms: i64| {
        Header::new(
            kind,
            Market::Usdm,
            symbol,
            ts_ms.saturating_mul(1000),
            recv_ns,
        )
    };
    if series == Series::OpenInterest {
        let ts = time_ms(v.get("time")).ok_or("no time")?;
        let mut dp = DpSet::ALL_NULL;
        dp.set(1, DP_NULL);
        let oi = qty(field(&v, "openInterest")?, &mut dp, 0, "openInterest")?;
        return Ok(vec![(
            ts,
            Record::OpenInterest(OpenInterest {
                header: header(Kind::OpenInterest, ts),
                open_interest: oi,
                open_interest_value: Wide::new(0),
                dp,
                period: 0,
                pad: [0; 7],
            }),
        )]);
    }
    let list = v.as_array().ok_or("not a list of points")?;
    let mut out = Vec::with_capacity(list.len());
    for p in list {
        let ts = time_ms(p.get("timestamp")).ok_or("a point without a timestamp")?;
        let mut dp = DpSet::ALL_NULL;
        let rec = match series {
            Series::OpenInterestHist => Record::OpenInterest(OpenInterest {
                header: header(Kind::OpenInterest, ts),
                open_interest: qty(field(p, "sumOpenInterest")?, &mut dp, 0, "sumOpenInterest")?,
                open_interest_value: qty(
                    field(p, "sumOpenInterestValue")?,
                    &mut dp,
                    1,
                    "sumOpenInterestValue",
                )?,
                dp,
                period: period as u8,
                pad: [0; 7],
            }),
            Series::Ratio(r) => {
                // Position ratios name their shares longPosition / shortPosition (the docs
                // show longAccount / shortAccount for them too): either is taken.
                let share =
                    |a: &str, b: &str| p.get(a).or_else(|| p.get(b)).and_then(|x| x.as_str());
                let long = share("longAccount", "longPosition");
                let short = share("shortAccount", "shortPosition");
                Record::LongShortRatio(LongShortRatio {
                    header: header(Kind::LongShortRatio, ts),
                    long_short_ratio: price(
                        field(p, "longShortRatio")?,
                        &mut dp,
                        0,
                        "longShortRatio",
                    )?,
                    long_share: match long {
                        Some(s) => price(s, &mut dp, 1, "long share")?,
                        None => 0,
                    },
                    short_share: match short {
                        Some(s) => price(s, &mut dp, 2, "short share")?,
                        None => 0,
                    },
                    dp,
                    series: r as u8,
                    period: period as u8,
                    pad: [0; 6],
                })
            }
            Series::OpenInterest => unreachable!("handled above"),
        };
        out.push((ts, rec));
    }
    Ok(out)
}

/// Which series a poller asks for, for which symbols.
#[derive(Debug, Clone, PartialEq)]
pub struct PollPlan {
    pub series: Vec<Series>,
    /// The period of the `/futures/data/` series.
    pub period: Interval,
    /// These USD-M symbols, or (`None`) every USD-M symbol recorded, followed as listings
    /// change.
    pub symbols: Option<Vec<String>>,
    /// How often `openInterest` (the live value) is asked for.
    pub every: Duration,
    /// Points asked for on a series' first poll.
    pub history: usize,
}

/// The symbols being recorded, per market (a `symbols = ["*"]` source's change as listings
/// do): what `symbols = ["*"]` of a poller means.
#[derive(Debug, Default)]
pub struct Recorded {
    sets: [Mutex<HashSet<String>>; 2],
}

impl Recorded {
    fn set(&self, m: Market) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.sets[m as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
    /// Adds symbols recorded on `m`.
    pub fn add(&self, m: Market, syms: &[String]) {
        self.set(m).extend(syms.iter().cloned());
    }
    /// Removes symbols no longer recorded on `m`.
    pub fn remove(&self, m: Market, syms: &[String]) {
        let mut g = self.set(m);
        for s in syms {
            g.remove(s);
        }
    }
    /// The symbols recorded on `m`, sorted.
    pub fn of(&self, m: Market) -> Vec<String> {
        let mut v: Vec<String> = self.set(m).iter().cloned().collect();
        v.sort();
        v
    }
    /// The set recorded on `m`.
    pub fn set_of(&self, m: Market) -> HashSet<String> {
        self.set(m).clone()
    }
}

/// One (series, symbol) a poller follows.
#[derive(Debug)]
struct Item {
    /// The timestamp of the newest point written (ms), or none yet.
    last: Option<i64>,
    next: Instant,
}

/// When a `/futures/data/` point of the period after `now_ms` is there to be asked for: the
/// next period start, and a few seconds for the exchange to publish it.
fn next_period(now_ms: i64, p: i64) -> Duration {
    Duration::from_millis((p - now_ms.rem_euclid(p) + 5_000) as u64)
}

/// How many points to ask for: `history` the first time, then every period since the last
/// point written and one more (at most 500, Binance's limit).
pub fn points_to_ask(last: Option<i64>, now_ms: i64, period_ms: i64, history: usize) -> usize {
    match last {
        None => history.clamp(1, 500),
        Some(t) => (((now_ms - t).max(0) / period_ms) as usize + 2).min(500),
    }
}

/// Runs one `[[pollers]]` entry until the task is dropped.
pub async fn run_poller(
    plan: PollPlan,
    host: Arc<RestHost>,
    recorded: Arc<Recorded>,
    emit: Arc<Emitter>,
) {
    let Some(pms) = period_ms(plan.period) else {
        return;
    };
    let mut items: HashMap<(Series, String), Item> = HashMap::new();
    // `/futures/data/` requests are spread evenly over their window.
    let data_gap = DATA_WINDOW / host.data_cap().max(1) as u32;
    let mut last_data: Option<Instant> = None;
    let mut failed = 0u64;
    let mut last_log: Option<Instant> = None;
    loop {
        let symbols = match &plan.symbols {
            Some(s) => s.clone(),
            None => recorded.of(Market::Usdm),
        };
        let now = Instant::now();
        items.retain(|(_, sym), _| symbols.contains(sym));
        for sym in &symbols {
            for &s in &plan.series {
                items.entry((s, sym.clone())).or_insert(Item {
                    last: None,
                    next: now,
                });
            }
        }
        let mut due: Vec<(Instant, Series, String)> = items
            .iter()
            .filter(|(_, it)| it.next <= now)
            .map(|((s, sym), it)| (it.next, *s, sym.clone()))
            .collect();
        due.sort_by(|a, b| a.0.cmp(&b.0).then(a.2.cmp(&b.2)));
        for (_, series, sym) in due {
            if series.is_data() {
                if let Some(t) = last_data {
                    tokio::time::sleep_until((t + data_gap).into()).await;
                }
                last_data = Some(Instant::now());
            }
            let Some(item) = items.get(&(series, sym.clone())) else {
                continue;
            };
            let wall_ms = crate::source::clock::now_ns() / 1_000_000;
            let limit = points_to_ask(item.last, wall_ms, pms, plan.history);
            let path = series.path(&sym, plan.period, limit);
            let answer = host.get(Class::Poll, path, series.weight()).await;
            let mut newest = item.last;
            match answer.map_err(|e| e.to_string()).and_then(|body| {
                let id = emit
                    .symbols
                    .intern(sym.as_bytes())
                    .map_err(|e| format!("symbol: {e}"))?;
                parse_points(
                    series,
                    plan.period,
                    &body,
                    id,
                    crate::source::clock::now_ns(),
                )
                .inspect_err(|_| {
                    host.stats.unreadable.fetch_add(1, Ordering::Relaxed);
                })
            }) {
                Ok(mut points) => {
                    points.sort_by_key(|p| p.0);
                    let mut fresh = Vec::with_capacity(points.len());
                    for (ts, r) in points {
                        if newest.is_none_or(|n| ts > n) {
                            newest = Some(ts);
                            fresh.push(r);
                        }
                    }
                    emit.emit(fresh);
                }
                Err(e) => {
                    failed += 1;
                    if last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                        tracing::warn!(
                            "poll {} {sym}: {e} ({failed} polls failed so far; tried again next round)",
                            series.name()
                        );
                        last_log = Some(Instant::now());
                    }
                }
            }
            if let Some(it) = items.get_mut(&(series, sym)) {
                it.last = newest;
                let wait = match series {
                    Series::OpenInterest => plan.every,
                    _ => next_period(crate::source::clock::now_ns() / 1_000_000, pms),
                };
                it.next = Instant::now() + wait;
            }
        }
        let soonest = items.values().map(|i| i.next).min();
        // Looked at again within a second: symbols come and go with listings.
        let until = soonest
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1))
            .min(Instant::now() + Duration::from_secs(1));
        tokio::time::sleep_until(until.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym() -> SymbolId {
        SymbolId(3)
    }

    #[test]
    fn ratio_points_keep_the_exchanges_decimals_and_take_either_timestamp_form() {
        let body = r#"[{"symbol":"BTCUSDT","longShortRatio":"1.4342","longPosition":"0.5891","shortPosition":"0.4108","timestamp":"1583139600000"},
                       {"symbol":"BTCUSDT","longShortRatio":"0.9","longAccount":"0.4737","shortAccount":"0.5263","timestamp":1583139900000}]"#;
        let pts = parse_points(
            Series::Ratio(RatioSeries::TopPosition),
            Interval::M5,
            body,
            sym(),
            7,
        )
        .expect("points");
        assert_eq!(
            pts.iter().map(|p| p.0).collect::<Vec<_>>(),
            [1_583_139_600_000, 1_583_139_900_000]
        );
        let Record::LongShortRatio(r) = pts[1].1 else {
            panic!("kind")
        };
        assert_eq!((r.long_short_ratio, r.dp.get(0)), (90_000_000, Some(1)));
        assert_eq!((r.long_share, r.dp.get(1)), (47_370_000, Some(4)));
        assert_eq!(r.series, RatioSeries::TopPosition as u8);
        assert_eq!(r.period, Interval::M5 as u8);
        assert_eq!(r.header.event_time, 1_583_139_900_000_000);
        let mut json = Vec::new();
        tickwire_codecs::json::write_record(&mut json, &pts[0].1, "BTCUSDT", &[]);
        let json = String::from_utf8(json).expect("utf8");
        assert!(
            json.contains(
                r#""long_short_ratio":"1.4342","long_share":"0.5891","short_share":"0.4108""#
            ),
            "{json}"
        );
    }

    #[test]
    fn open_interest_live_and_per_period() {
        let live = parse_points(
            Series::OpenInterest,
            Interval::M5,
            r#"{"openInterest":"10659.509","symbol":"BTCUSDT","time":1589437530011}"#,
            sym(),
            1,
        )
        .expect("live");
        let Record::OpenInterest(o) = live[0].1 else {
            panic!("kind")
        };
        assert_eq!(
            (o.open_interest.get(), o.dp.get(0)),
            (1_065_950_900_000, Some(3))
        );
        assert_eq!((o.dp.get(1), o.period), (None, 0));
        let hist = parse_points(
            Series::OpenInterestHist,
            Interval::H1,
            r#"[{"symbol":"BTCUSDT","sumOpenInterest":"20403.63700000","sumOpenInterestValue":"150570784.07809979","timestamp":1583127900000}]"#,
            sym(),
            1,
        )
        .expect("hist");
        let Record::OpenInterest(h) = hist[0].1 else {
            panic!("kind")
        };
        assert_eq!(h.open_interest_value.get(), 15_057_078_407_809_979);
        assert_eq!(h.period, Interval::H1 as u8);
    }

    #[test]
    fn unreadable_answers_are_errors_not_records() {
        for (series, body) in [
            (Series::OpenInterest, r#"{"openInterest":"1.2.3","time":1}"#),
            (Series::OpenInterest, r#"{"openInterest":"1.5"}"#),
            (
                Series::OpenInterestHist,
                r#"{"code":-1120,"msg":"Invalid period."}"#,
            ),
            (
                Series::Ratio(RatioSeries::GlobalAccount),
                r#"[{"longShortRatio":"abc","timestamp":1}]"#,
            ),
            (
                Series::Ratio(RatioSeries::GlobalAccount),
                r#"[{"longShortRatio":"1.0"}]"#,
            ),
            (Series::OpenInterestHist, "not json"),
        ] {
            assert!(
                parse_points(series, Interval::M5, body, sym(), 1).is_err(),
                "{body}"
            );
        }
    }

    #[test]
    fn a_late_poll_asks_for_every_period_missed() {
        let p = 300_000;
        assert_eq!(points_to_ask(None, 10 * p, p, 30), 30);
        assert_eq!(points_to_ask(None, 10 * p, p, 9_999), 500);
        // On time: the newest point and the next one.
        assert_eq!(points_to_ask(Some(10 * p), 10 * p + 6_000, p, 30), 2);
        // Three periods late: the three missed and one more.
        assert_eq!(points_to_ask(Some(10 * p), 13 * p + 6_000, p, 30), 5);
        assert_eq!(points_to_ask(Some(0), 10_000 * p, p, 30), 500);
    }

    #[test]
    fn instruments_are_written_once_and_again_on_a_change() {
        let host = RestHost::new(
            Market::Usdm,
            "http://127.0.0.1:9",
            &[],
            crate::source::rest::RestOptions::default(),
        )
        .expect("host");
        let table = SymbolTable::new();
        let entry = |status: &str| Info {
            symbol: "BTCUSDT".into(),
            status: status.into(),
            base_asset: "BTC".into(),
            quote_asset: "USDT".into(),
            contract_type: Some("PERPETUAL".into()),
            tick_size: Some("0.10".into()),
            step_size: Some("0.001".into()),
            min_qty: Some("0.001".into()),
            price_precision: Some(2),
            quantity_precision: Some(3),
            base_asset_precision: Some(8),
            quote_precision: Some(8),
            onboard_date: Some(1_569_398_400_000),
            delivery_date: None,
        };
        let info = |e: Vec<Info>| ExchangeInfo {
            weight_per_minute: None,
            server_time: Some(1_700_000_000_000),
            symbols: e,
        };
        let recorded: HashSet<String> = ["BTCUSDT".to_string()].into();
        let mut t = Instruments::new(Market::Usdm);
        let mut other = entry("TRADING");
        other.symbol = "ETHUSDT".into();
        let first = t.changes(
            &info(vec![entry("TRADING"), other.clone()]),
            &recorded,
            &table,
            &host,
        );
        assert_eq!(first.len(), 1, "only the recorded symbol");
        let Record::Instrument(i) = first[0] else {
            panic!("kind")
        };
        assert_eq!((i.tick_size, i.dp.get(0)), (10_000_000, Some(2)));
        assert_eq!((i.step_size.get(), i.dp.get(1)), (100_000, Some(3)));
        assert_eq!(i.status.as_str(), "TRADING");
        assert_eq!(i.contract_type.get(), Some("PERPETUAL"));
        assert_eq!(i.onboard_date, 1_569_398_400_000_000);
        assert_eq!(i.delivery_date, NULL_I64);
        assert_eq!(i.header.event_time, 1_700_000_000_000_000);
        assert!(t
            .changes(&info(vec![entry("TRADING")]), &recorded, &table, &host)
            .is_empty());
        // Delisted (no longer recorded): its change of status is still written.
        let gone = t.changes(&info(vec![entry("BREAK")]), &HashSet::new(), &table, &host);
        assert_eq!(gone.len(), 1);
        // An entry that cannot be read is counted, not written.
        let mut bad = entry("TRADING");
        bad.tick_size = None;
        assert!(t
            .changes(&info(vec![bad]), &recorded, &table, &host)
            .is_empty());
        assert_eq!(host.stats.unreadable.load(Ordering::Relaxed), 1);
    }
}
