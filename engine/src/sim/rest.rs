//! The simulator's REST endpoints, limited as Binance limits them.
//!
//! `GET /api/v3/depth` and `/api/v3/exchangeInfo` on the spot server, `/fapi/v1/depth` and
//! `/fapi/v1/exchangeInfo` on USD-M, over HTTP/1.1 with keep-alive (exchangeInfo answers are
//! chunked, as Binance's large ones are). Every request has Binance's weight (spot depth 5 / 25
//! / 50 / 250 for limit <= 100 / 500 / 1000 / 5000; USD-M depth 2 / 5 / 10 / 20 for limit < 100
//! / < 500 / 500 / 1000 and more; exchangeInfo 20 spot, 1 USD-M), summed per client IP over the
//! current UTC minute against the limit the exchangeInfo's `rateLimits` announces (6,000 spot,
//! 2,400 USD-M), and returned in `X-MBX-USED-WEIGHT-1M` on every answer. Over it: `429` with
//! `Retry-After` (seconds to the next minute); a client that sends again before that is banned:
//! `418` with `Retry-After` for [`RestLimits::ban`], to every request of that IP, and a request
//! during a ban extends nothing (Binance lengthens repeated bans; one length is enough to test a
//! client that must never get there).
//!
//! USD-M also serves the series only REST has: `GET /fapi/v1/openInterest` (weight 1) and
//! `/futures/data/openInterestHist`, `topLongShortPositionRatio`, `topLongShortAccountRatio`,
//! `globalLongShortAccountRatio` (`symbol`, `period` 5m .. 1d, `limit` 1-500, default 30).
//! The `/futures/data/` ones weigh nothing against the minute but have a limit of their own,
//! [`RestLimits::data_per_5min`] requests per IP in 5 minutes (Binance: 1,000); over it 429,
//! and sending again before its `Retry-After` is a ban as above. Their points are a function
//! of (symbol, series, period, timestamp), so every answer that covers a timestamp gives the
//! same values for it, as Binance's history does; the newest point is the current period's
//! start. The docs show `timestamp` as a string for `topLongShortPositionRatio` and as a
//! number elsewhere; both are served so.

use super::market::SymbolSpec;
use super::{lock, Books, SimCounters};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tickwire_codecs::decimal::to_string as dec;
use tickwire_codecs::record::Market;
use tokio::net::TcpStream;

/// REST limits of a simulated server.
#[derive(Debug, Clone, Copy)]
pub struct RestLimits {
    /// Request weight a client IP may spend in one UTC minute (0: the market's default,
    /// 6,000 spot, 2,400 USD-M).
    pub weight_per_minute: u64,
    /// How long a client that sent after a 429 is banned (418).
    pub ban: Duration,
    /// WebSocket connection attempts an IP may make in 5 minutes (Binance: 300); over it the
    /// handshake is answered 429 (0: no limit).
    pub attempts_per_5min: u64,
    /// Listings: every this long one symbol beyond `listed` becomes TRADING and one listed
    /// synthetic symbol stops trading (`BREAK`).
    pub list_every: Option<Duration>,
    /// Symbols listed at the start (0: all); the others wait for their listing
    /// (`PENDING_TRADING`).
    pub listed: usize,
    /// `/futures/data/*` requests an IP may make in 5 minutes (Binance: 1,000; 0: no limit).
    pub data_per_5min: u64,
}

impl Default for RestLimits {
    fn default() -> Self {
        RestLimits {
            weight_per_minute: 0,
            ban: Duration::from_secs(120),
            attempts_per_5min: 300,
            list_every: None,
            listed: 0,
            data_per_5min: 1000,
        }
    }
}

impl RestLimits {
    /// The per-minute weight limit in force for `market`.
    pub fn limit(&self, market: Market) -> u64 {
        match self.weight_per_minute {
            0 => crate::source::rest::default_weight_limit(market),
            n => n,
        }
    }
}

pub use crate::source::rest::{depth_weight, exchange_info_weight};

#[derive(Debug, Default)]
struct Client {
    minute: u64,
    used: u64,
    /// Answered 429 until then: a request before it is a ban.
    limited_until: Option<Instant>,
    banned_until: Option<Instant>,
    /// `/futures/data/` requests of the last 5 minutes.
    data: std::collections::VecDeque<Instant>,
    /// A `/futures/data/` request was answered 429 until then.
    data_limited_until: Option<Instant>,
}

/// What a server has counted of its clients, per IP: REST weight, and WebSocket connection
/// attempts.
#[derive(Debug)]
pub struct RestState {
    clients: Mutex<HashMap<IpAddr, Client>>,
    attempts: Mutex<HashMap<IpAddr, std::collections::VecDeque<Instant>>>,
    /// When the server started (listings count from it).
    started: Instant,
}

impl Default for RestState {
    fn default() -> Self {
        RestState {
            clients: Default::default(),
            attempts: Default::default(),
            started: Instant::now(),
        }
    }
}

impl RestLimits {
    /// The listings that have happened `elapsed` after the start.
    pub fn listings(&self, elapsed: Duration) -> usize {
        self.list_every
            .filter(|e| !e.is_zero())
            .map_or(0, |e| (elapsed.as_millis() / e.as_millis()) as usize)
    }

    /// The status of symbol `i` after `k` listings: the fifteenth is halted; symbols beyond
    /// `listed` are pending until the `k`-th listing reaches them; the first `k` synthetic
    /// listed symbols (from the fifth, the fifteenth skipped) have stopped trading.
    pub fn status(&self, i: usize, k: usize, n: usize) -> &'static str {
        let listed = if self.listed == 0 {
            n
        } else {
            self.listed.min(n)
        };
        if i == 14 {
            return "HALT";
        }
        if i >= listed {
            return if i - listed < k {
                "TRADING"
            } else {
                "PENDING_TRADING"
            };
        }
        let rank = match i {
            0..=3 => return "TRADING",
            4..=13 => i - 4,
            _ => i - 5,
        };
        if rank < k {
            "BREAK"
        } else {
            "TRADING"
        }
    }
}

/// The window of [`RestLimits::attempts_per_5min`].
pub const ATTEMPT_WINDOW: Duration = Duration::from_secs(300);

enum Verdict {
    Serve { used: u64 },
    Limited { used: u64, retry_after: u64 },
    Banned { used: u64, retry_after: u64 },
}

impl RestState {
    /// Counts a WebSocket connection attempt of `ip`: false if it is over the limit of the
    /// last 5 minutes (a refused attempt counts too, as Binance counts attempts).
    pub fn attempt(&self, ip: IpAddr, limits: &RestLimits) -> bool {
        let now = Instant::now();
        let mut g = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        let q = g.entry(ip).or_default();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= ATTEMPT_WINDOW)
        {
            q.pop_front();
        }
        q.push_back(now);
        limits.attempts_per_5min == 0 || q.len() as u64 <= limits.attempts_per_5min
    }

    fn admit(&self, ip: IpAddr, weight: u64, limits: &RestLimits, market: Market) -> Verdict {
        let wall_ms = crate::source::clock::now_ns() / 1_000_000;
        let minute = (wall_ms / 60_000) as u64;
        let to_next_minute = 60 - ((wall_ms % 60_000) / 1000) as u64;
        let now = Instant::now();
        let mut g = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let c = g.entry(ip).or_default();
        if c.minute != minute {
            c.minute = minute;
            c.used = 0;
        }
        if let Some(until) = c.banned_until.filter(|u| *u > now) {
            return Verdict::Banned {
                used: c.used,
                retry_after: (until - now).as_secs().max(1),
            };
        }
        if c.limited_until.is_some_and(|u| u > now) {
            let until = now + limits.ban;
            c.banned_until = Some(until);
            return Verdict::Banned {
                used: c.used,
                retry_after: limits.ban.as_secs().max(1),
            };
        }
        if c.used + weight > limits.limit(market) {
            c.limited_until = Some(now + Duration::from_secs(to_next_minute));
            return Verdict::Limited {
                used: c.used,
                retry_after: to_next_minute,
            };
        }
        c.used += weight;
        Verdict::Serve { used: c.used }
    }

    /// Admits a `/futures/data/` request: weight 0, at most [`RestLimits::data_per_5min`]
    /// in 5 minutes; sending during a 429's wait (on either limit) is a ban.
    fn admit_data(&self, ip: IpAddr, limits: &RestLimits) -> Verdict {
        let now = Instant::now();
        let mut g = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let c = g.entry(ip).or_default();
        let used = c.used;
        if let Some(until) = c.banned_until.filter(|u| *u > now) {
            return Verdict::Banned {
                used,
                retry_after: (until - now).as_secs().max(1),
            };
        }
        if c.limited_until.is_some_and(|u| u > now) || c.data_limited_until.is_some_and(|u| u > now)
        {
            c.banned_until = Some(now + limits.ban);
            return Verdict::Banned {
                used,
                retry_after: limits.ban.as_secs().max(1),
            };
        }
        while c
            .data
            .front()
            .is_some_and(|t| now.duration_since(*t) >= ATTEMPT_WINDOW)
        {
            c.data.pop_front();
        }
        if limits.data_per_5min > 0 && c.data.len() as u64 >= limits.data_per_5min {
            let free_at = c.data.front().map_or(now, |t| *t + ATTEMPT_WINDOW);
            let wait = (free_at - now).as_secs() + 1;
            c.data_limited_until = Some(now + Duration::from_secs(wait));
            return Verdict::Limited {
                used,
                retry_after: wait,
            };
        }
        c.data.push_back(now);
        Verdict::Serve { used }
    }
}

/// The periods `/futures/data/` answers for, and their length in ms.
pub const DATA_PERIODS: [(&str, i64); 9] = [
    ("5m", 300_000),
    ("15m", 900_000),
    ("30m", 1_800_000),
    ("1h", 3_600_000),
    ("2h", 7_200_000),
    ("4h", 14_400_000),
    ("6h", 21_600_000),
    ("12h", 43_200_000),
    ("1d", 86_400_000),
];

/// Binance's answer to an unknown symbol.
const INVALID_SYMBOL: &str = r#"{"code":-1121,"msg":"Invalid symbol."}"#;

/// The `/futures/data/` series the simulator serves.
const DATA_SERIES: [&str; 4] = [
    "openInterestHist",
    "topLongShortPositionRatio",
    "topLongShortAccountRatio",
    "globalLongShortAccountRatio",
];

/// A well-mixed 64-bit hash of the parts (FNV-1a, then splitmix64's finalizer).
fn mix(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        h = (h ^ 0xff).wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Open interest of `s` at `ts_ms` (raw 1e-8 units): about 10,000 lots, moving with time.
fn open_interest_raw(s: &SymbolSpec, key: &[u8], ts_ms: i64) -> i128 {
    let h = mix(&[s.name.as_bytes(), key, &ts_ms.to_le_bytes()]);
    i128::from(s.lot.max(1)) * (10_000 + (h % 2_000) as i128)
}

/// One `/futures/data/` point of `series` for `s` at `ts_ms`, as Binance writes it.
fn data_point(s: &SymbolSpec, series: &str, period: &str, ts_ms: i64) -> String {
    match series {
        "openInterestHist" => {
            let oi = open_interest_raw(s, period.as_bytes(), ts_ms);
            let value = oi * i128::from(s.price) / 100_000_000;
            format!(
                r#"{{"symbol":"{}","sumOpenInterest":"{}","sumOpenInterestValue":"{}","timestamp":{ts_ms}}}"#,
                s.name,
                dec(oi, 8),
                dec(value, 8)
            )
        }
        _ => {
            // Shares in 1e-4 (0.3000 .. 0.6999), ratio long / short to 4 places.
            let h = mix(&[
                s.name.as_bytes(),
                series.as_bytes(),
                period.as_bytes(),
                &ts_ms.to_le_bytes(),
            ]);
            let long = 3_000 + (h % 4_000) as i64;
            let short = 10_000 - long;
            let ratio = (long * 10_000 + short / 2) / short;
            let f4 = |v: i64| format!("{}.{:04}", v / 10_000, v % 10_000);
            let (lk, sk) = if series == "topLongShortPositionRatio" {
                ("longPosition", "shortPosition")
            } else {
                ("longAccount", "shortAccount")
            };
            let ts = if series == "topLongShortPositionRatio" {
                format!("\"{ts_ms}\"")
            } else {
                ts_ms.to_string()
            };
            format!(
                r#"{{"symbol":"{}","longShortRatio":"{}","{lk}":"{}","{sk}":"{}","timestamp":{ts}}}"#,
                s.name,
                f4(ratio),
                f4(long),
                f4(short)
            )
        }
    }
}

/// The answer to a `/futures/data/` request: `limit` points up to the current period's start,
/// oldest first; or the error Binance gives.
pub fn data_answer(
    symbols: &[SymbolSpec],
    series: &str,
    symbol: &str,
    period: &str,
    limit: Option<&str>,
    now_ms: i64,
) -> Result<String, &'static str> {
    let s = symbols
        .iter()
        .find(|s| s.name == symbol)
        .ok_or(INVALID_SYMBOL)?;
    let p = DATA_PERIODS
        .iter()
        .find(|(n, _)| *n == period)
        .map(|(_, ms)| *ms)
        .ok_or(r#"{"code":-1120,"msg":"Invalid period."}"#)?;
    let n: i64 = match limit {
        None => 30,
        Some(l) => l
            .parse()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or(r#"{"code":-1130,"msg":"Invalid data sent for a parameter."}"#)?,
    };
    let last = now_ms / p * p;
    let mut out = String::from("[");
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&data_point(s, series, period, last - (n - 1 - i) * p));
    }
    out.push(']');
    Ok(out)
}

/// The answer to `GET /fapi/v1/openInterest`: the open interest now.
pub fn open_interest_answer(
    symbols: &[SymbolSpec],
    symbol: &str,
    now_ms: i64,
) -> Result<String, &'static str> {
    let s = symbols
        .iter()
        .find(|s| s.name == symbol)
        .ok_or(INVALID_SYMBOL)?;
    // It moves once a second, like the exchange's.
    let oi = open_interest_raw(s, b"live", now_ms / 1000);
    Ok(format!(
        r#"{{"openInterest":"{}","symbol":"{}","time":{now_ms}}}"#,
        dec(oi, s.qty_dp),
        s.name
    ))
}

/// Where a REST request goes.
enum Route {
    Depth,
    ExchangeInfo,
    OpenInterest,
    /// A `/futures/data/` series (its name).
    Data(&'static str),
}

/// The route of a request line's path, if it is one of the REST endpoints of `market`.
fn route(market: Market, path: &str) -> Option<Route> {
    match (market, path) {
        (Market::Spot, "/api/v3/depth") | (Market::Usdm, "/fapi/v1/depth") => Some(Route::Depth),
        (Market::Spot, "/api/v3/exchangeInfo") | (Market::Usdm, "/fapi/v1/exchangeInfo") => {
            Some(Route::ExchangeInfo)
        }
        (Market::Usdm, "/fapi/v1/openInterest") => Some(Route::OpenInterest),
        (Market::Usdm, p) => p
            .strip_prefix("/futures/data/")
            .and_then(|name| DATA_SERIES.iter().find(|s| **s == name))
            .map(|s| Route::Data(s)),
        _ => None,
    }
}

/// The shared parts a REST connection answers from.
pub(super) struct Ctx<'a> {
    pub(super) market: Market,
    pub(super) symbols: &'a [SymbolSpec],
    pub(super) books: &'a Books,
    pub(super) counters: &'a SimCounters,
    pub(super) state: &'a RestState,
    pub(super) limits: RestLimits,
}

/// Serves REST requests on `sock` until the client closes it, asks to, or is idle 30 s.
pub(super) async fn serve(sock: TcpStream, ctx: Ctx<'_>) {
    let ip = sock
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let ctx = &ctx;
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        // A body (none is expected) is not read; hyper drains or drops it.
        let target = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let a = answer(req.method().as_str(), &target, ip, ctx);
        async move { Ok::<_, std::convert::Infallible>(a.into_response()) }
    });
    // hyper's HTTP/1.1 server: keep-alive until the client closes (or the server stops and
    // drops this future), a request head within 30 s and of 16 KiB at most; header names in
    // lower case, as Binance's (through its CDN) arrive.
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(16 * 1024)
        .serve_connection(hyper_util::rt::TokioIo::new(sock), svc)
        .await;
}

/// One answer to `method target`.
fn answer(method: &str, target: &str, ip: IpAddr, ctx: &Ctx<'_>) -> Answer {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let param = |k: &str| {
        params
            .iter()
            .find_map(|(n, v)| (n == k).then_some(v.as_str()))
    };
    let Some(route) = route(ctx.market, path).filter(|_| method == "GET") else {
        return response(404, &[], r#"{"code":-1,"msg":"Not found."}"#, false);
    };
    let limit: usize = param("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
    let weight = match route {
        Route::Depth => depth_weight(ctx.market, limit),
        Route::ExchangeInfo => exchange_info_weight(ctx.market),
        Route::OpenInterest => 1,
        Route::Data(_) => 0,
    };
    let c = ctx.counters;
    c.rest_requests.fetch_add(1, Ordering::Relaxed);
    let verdict = match route {
        Route::Data(_) => ctx.state.admit_data(ip, &ctx.limits),
        _ => ctx.state.admit(ip, weight, &ctx.limits, ctx.market),
    };
    match verdict {
        Verdict::Banned { used, retry_after } => {
            c.rest_banned.fetch_add(1, Ordering::Relaxed);
            let body = format!(
                r#"{{"code":-1003,"msg":"Way too many requests; IP banned for {retry_after} s. Please use the websocket for live updates to avoid bans."}}"#
            );
            response(
                418,
                &[("Retry-After", retry_after.to_string()), used_header(used)],
                &body,
                false,
            )
        }
        Verdict::Limited { used, retry_after } if matches!(route, Route::Data(_)) => {
            c.rest_limited.fetch_add(1, Ordering::Relaxed);
            response(
                429,
                &[("Retry-After", retry_after.to_string()), used_header(used)],
                r#"{"code":-1003,"msg":"Too many requests; current limit of IP is 1000 requests per 5 minutes."}"#,
                false,
            )
        }
        Verdict::Limited { used, retry_after } => {
            c.rest_limited.fetch_add(1, Ordering::Relaxed);
            let body = format!(
                r#"{{"code":-1003,"msg":"Too much request weight used; current limit is {} request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."}}"#,
                ctx.limits.limit(ctx.market)
            );
            response(
                429,
                &[("Retry-After", retry_after.to_string()), used_header(used)],
                &body,
                false,
            )
        }
        Verdict::Serve { used } => {
            c.rest_weight.fetch_add(weight, Ordering::Relaxed);
            let now_ms = crate::source::clock::now_ns() / 1_000_000;
            let symbol = param("symbol").unwrap_or("").to_ascii_uppercase();
            match route {
                Route::OpenInterest | Route::Data(_) => {
                    let answer = match route {
                        Route::Data(series) => data_answer(
                            ctx.symbols,
                            series,
                            &symbol,
                            param("period").unwrap_or(""),
                            param("limit"),
                            now_ms,
                        ),
                        _ => open_interest_answer(ctx.symbols, &symbol, now_ms),
                    };
                    match answer {
                        Ok(body) => {
                            c.rest_data.fetch_add(1, Ordering::Relaxed);
                            response(200, &[used_header(used)], &body, false)
                        }
                        Err(e) => response(400, &[used_header(used)], e, false),
                    }
                }
                Route::ExchangeInfo => {
                    c.rest_exchange_info.fetch_add(1, Ordering::Relaxed);
                    let k = ctx.limits.listings(ctx.state.started.elapsed());
                    let body = exchange_info(ctx.market, ctx.symbols, &ctx.limits, k);
                    response(200, &[used_header(used)], &body, true)
                }
                Route::Depth => {
                    let book = ctx
                        .books
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&symbol)
                        .cloned();
                    match book {
                        Some(m) => {
                            c.rest_snapshots.fetch_add(1, Ordering::Relaxed);
                            let body = lock(&m).depth_json(limit.clamp(1, 5000), now_ms);
                            response(200, &[used_header(used)], &body, false)
                        }
                        None => response(400, &[used_header(used)], INVALID_SYMBOL, false),
                    }
                }
            }
        }
    }
}

fn used_header(used: u64) -> (&'static str, String) {
    ("X-MBX-USED-WEIGHT-1M", used.to_string())
}

/// An answer: status, headers, JSON body; `chunked` sends the body in chunks of at most
/// 16 KiB (as Binance sends exchangeInfo), else with a Content-Length.
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    chunked: bool,
}

type Frames =
    std::vec::IntoIter<Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>>;
type AnswerBody = http_body_util::Either<
    http_body_util::Full<bytes::Bytes>,
    http_body_util::StreamBody<futures_util::stream::Iter<Frames>>,
>;

impl Answer {
    fn into_response(self) -> hyper::Response<AnswerBody> {
        let b = bytes::Bytes::from(self.body);
        let body = if self.chunked {
            let frames: Vec<_> = (0..b.len())
                .step_by(16 * 1024)
                .map(|i| {
                    Ok(hyper::body::Frame::data(
                        b.slice(i..(i + 16 * 1024).min(b.len())),
                    ))
                })
                .collect();
            http_body_util::Either::Right(http_body_util::StreamBody::new(
                futures_util::stream::iter(frames),
            ))
        } else {
            http_body_util::Either::Left(http_body_util::Full::new(b))
        };
        let mut r = hyper::Response::new(body);
        *r.status_mut() = hyper::StatusCode::from_u16(self.status)
            .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
        let h = r.headers_mut();
        h.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json;charset=UTF-8"),
        );
        for (k, v) in self.headers {
            if let Ok(v) = hyper::header::HeaderValue::from_str(&v) {
                h.insert(k, v);
            }
        }
        r
    }
}

fn response(status: u16, headers: &[(&'static str, String)], body: &str, chunked: bool) -> Answer {
    Answer {
        status,
        headers: headers.to_vec(),
        body: body.to_string(),
        chunked,
    }
}

/// A decimal string of `raw` 1e-8 units with 8 places, as exchangeInfo writes filters.
fn dec8(raw: i64) -> String {
    format!("{}.{:08}", raw / 100_000_000, raw % 100_000_000)
}

/// exchangeInfo as Binance answers it, for `symbols`: `rateLimits` and, per symbol, status,
/// assets, precisions and the PRICE_FILTER / LOT_SIZE filters. Every tenth synthetic USD-M
/// symbol (after the first four) is a quarterly contract, and the fifteenth of each market is
/// not trading (`BREAK` spot, `SETTLING` USD-M), so filters have something to filter.
pub fn exchange_info(
    market: Market,
    symbols: &[SymbolSpec],
    limits: &RestLimits,
    listings: usize,
) -> String {
    let now_ms = crate::source::clock::now_ns() / 1_000_000;
    let mut out = format!(
        r#"{{"timezone":"UTC","serverTime":{now_ms},"rateLimits":[{{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":{}}},{{"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":100}},{{"rateLimitType":"RAW_REQUESTS","interval":"MINUTE","intervalNum":5,"limit":61000}}],"exchangeFilters":[],"symbols":["#,
        limits.limit(market)
    );
    for (i, s) in symbols.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let quote = ["USDT", "USDC", "FDUSD", "BTC"]
            .into_iter()
            .find(|q| s.name.ends_with(q) && s.name.len() > q.len())
            .unwrap_or("USDT");
        let base = &s.name[..s.name.len() - quote.len()];
        let status = limits.status(i, listings, symbols.len());
        let tick = dec8(s.tick);
        let step = dec8(10i64.pow(8 - s.qty_dp.min(8) as u32));
        match market {
            Market::Spot => out.push_str(&format!(
                r#"{{"symbol":"{}","status":"{}","baseAsset":"{base}","baseAssetPrecision":8,"quoteAsset":"{quote}","quotePrecision":8,"quoteAssetPrecision":8,"orderTypes":["LIMIT","LIMIT_MAKER","MARKET"],"isSpotTradingAllowed":true,"filters":[{{"filterType":"PRICE_FILTER","minPrice":"{tick}","maxPrice":"1000000.00000000","tickSize":"{tick}"}},{{"filterType":"LOT_SIZE","minQty":"{step}","maxQty":"9000000.00000000","stepSize":"{step}"}}],"permissions":[],"permissionSets":[["SPOT"]]}}"#,
                s.name,
                status
            )),
            Market::Usdm => {
                let quarterly = i >= 4 && i % 10 == 9;
                out.push_str(&format!(
                    r#"{{"symbol":"{}","pair":"{}","contractType":"{}","deliveryDate":{},"onboardDate":1569398400000,"status":"{}","baseAsset":"{base}","quoteAsset":"{quote}","marginAsset":"{quote}","pricePrecision":{},"quantityPrecision":{},"baseAssetPrecision":8,"quotePrecision":8,"underlyingType":"COIN","triggerProtect":"0.0500","filters":[{{"filterType":"PRICE_FILTER","minPrice":"{tick}","maxPrice":"1000000","tickSize":"{tick}"}},{{"filterType":"LOT_SIZE","minQty":"{step}","maxQty":"1000000","stepSize":"{step}"}}],"orderTypes":["LIMIT","MARKET"],"timeInForce":["GTC","IOC","FOK","GTX"]}}"#,
                    s.name,
                    s.name,
                    if quarterly { "CURRENT_QUARTER" } else { "PERPETUAL" },
                    if quarterly { 1_782_460_800_000i64 } else { 4_133_404_800_000 },
                    match status {
                        "HALT" => "SETTLING",
                        "BREAK" => "CLOSE",
                        s => s,
                    },
                    s.price_dp,
                    s.qty_dp,
                ));
            }
        }
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_binances() {
        assert_eq!(
            [100, 500, 1000, 5000].map(|l| depth_weight(Market::Spot, l)),
            [5, 25, 50, 250]
        );
        assert_eq!(
            [50, 100, 500, 1000].map(|l| depth_weight(Market::Usdm, l)),
            [2, 5, 10, 20]
        );
    }

    #[test]
    fn listings_list_a_pending_symbol_and_stop_an_old_one_each_time() {
        let l = RestLimits {
            list_every: Some(Duration::from_secs(2)),
            listed: 20,
            ..Default::default()
        };
        let n = 36;
        assert_eq!(l.listings(Duration::from_millis(1_999)), 0);
        assert_eq!(l.listings(Duration::from_millis(4_000)), 2);
        let trading = |k: usize| (0..n).filter(|&i| l.status(i, k, n) == "TRADING").count();
        // 20 listed, one of them halted; each listing adds one and stops one.
        assert_eq!([trading(0), trading(1), trading(5)], [19, 19, 19]);
        assert_eq!(l.status(20, 0, n), "PENDING_TRADING");
        assert_eq!(l.status(20, 1, n), "TRADING");
        assert_eq!((l.status(4, 1, n), l.status(5, 1, n)), ("BREAK", "TRADING"));
        assert_eq!(l.status(0, 9, n), "TRADING", "the four majors stay");
        assert_eq!(l.status(14, 0, n), "HALT");
        assert_eq!(RestLimits::default().listings(Duration::from_secs(99)), 0);
    }

    #[test]
    fn connection_attempts_over_the_limit_are_refused() {
        let state = RestState::default();
        let limits = RestLimits {
            attempts_per_5min: 3,
            ..Default::default()
        };
        let (a, b) = (IpAddr::from([127, 0, 0, 9]), IpAddr::from([127, 0, 0, 10]));
        let seen: Vec<bool> = (0..5).map(|_| state.attempt(a, &limits)).collect();
        assert_eq!(seen, [true, true, true, false, false]);
        assert!(state.attempt(b, &limits), "per IP");
        let none = RestLimits {
            attempts_per_5min: 0,
            ..Default::default()
        };
        assert!(state.attempt(a, &none), "0: no limit");
    }

    #[test]
    fn over_the_minute_is_429_and_sending_on_is_418() {
        let state = RestState::default();
        let limits = RestLimits {
            weight_per_minute: 100,
            ban: Duration::from_secs(60),
            ..Default::default()
        };
        let ip = IpAddr::from([127, 0, 0, 9]);
        let mut served = 0;
        let first = loop {
            match state.admit(ip, 50, &limits, Market::Spot) {
                Verdict::Serve { used } => {
                    served += 1;
                    assert_eq!(used, 50 * served);
                }
                v => break v,
            }
        };
        // The minute may turn during the test: then a third request is served first.
        assert!(served >= 2, "{served}");
        assert!(matches!(
            first,
            Verdict::Limited {
                retry_after: 1..=60,
                ..
            }
        ));
        assert!(matches!(
            state.admit(ip, 5, &limits, Market::Spot),
            Verdict::Banned {
                retry_after: 60,
                ..
            }
        ));
        // Another IP has a budget of its own.
        assert!(matches!(
            state.admit(IpAddr::from([127, 0, 0, 10]), 50, &limits, Market::Spot),
            Verdict::Serve { used: 50 }
        ));
    }

    #[test]
    fn exchange_info_is_json_with_the_filters() {
        let syms = super::super::market::synthetic_symbols(40);
        for m in [Market::Spot, Market::Usdm] {
            let v: serde_json::Value =
                serde_json::from_str(&exchange_info(m, &syms, &RestLimits::default(), 0))
                    .expect("json");
            let list = v["symbols"].as_array().expect("symbols");
            assert_eq!(list.len(), 40);
            assert_eq!(v["rateLimits"][0]["limit"], RestLimits::default().limit(m));
            assert!(list
                .iter()
                .all(|s| s["filters"][0]["tickSize"].as_str().is_some()));
            assert_eq!(list.iter().filter(|s| s["status"] != "TRADING").count(), 1);
        }
    }

    #[test]
    fn a_series_point_is_the_same_in_every_answer_that_covers_it() {
        let syms = super::super::market::default_symbols();
        let now = 1_764_000_123_456;
        for series in DATA_SERIES {
            let long: Vec<serde_json::Value> = serde_json::from_str(
                &data_answer(&syms, series, "ETHUSDT", "15m", Some("40"), now).expect("answer"),
            )
            .expect("json");
            let short: Vec<serde_json::Value> = serde_json::from_str(
                &data_answer(&syms, series, "ETHUSDT", "15m", None, now + 60_000).expect("answer"),
            )
            .expect("json");
            assert_eq!((long.len(), short.len()), (40, 30));
            assert_eq!(&long[10..], &short[..], "{series}");
            let ts = |v: &serde_json::Value| match &v["timestamp"] {
                serde_json::Value::String(s) => s.parse::<i64>().expect("digits"),
                n => n.as_i64().expect("number"),
            };
            assert_eq!(
                ts(&long[39]),
                now / 900_000 * 900_000,
                "newest: this period's start"
            );
            assert_eq!(ts(&long[1]) - ts(&long[0]), 900_000);
        }
        assert!(data_answer(&syms, "openInterestHist", "ETHUSDT", "7m", None, now).is_err());
        assert!(data_answer(&syms, "openInterestHist", "NOPEUSDT", "5m", None, now).is_err());
        assert!(data_answer(&syms, "openInterestHist", "ETHUSDT", "5m", Some("501"), now).is_err());
        let live: serde_json::Value =
            serde_json::from_str(&open_interest_answer(&syms, "BTCUSDT", now).expect("live"))
                .expect("json");
        assert_eq!(live["time"], now);
        assert!(live["openInterest"].as_str().is_some());
    }
}
