//! NATS JetStream between machines: collectors publish every record into a stream
//! ([`collector`]), writers read it back through a durable pull consumer into the same
//! pipeline as a WebSocket source ([`writer`]).
//!
//! A message is one subject's records: subject `<prefix>.<kind>.<market>.<SYMBOL>`, payload
//! the concatenated binary payloads of the ZMQ PUB (version 1, see [`crate::pipeline::publish`]), each
//! with its own per-subject sequence number; at most [`MAX_RECORDS`] records or
//! [`MAX_PAYLOAD`] bytes a message.

pub mod collector;
pub mod writer;

use tickwire_codecs::record::{Kind, Market};

/// The most records in one message.
pub const MAX_RECORDS: usize = 256;
/// A message is sealed once its payload is this large.
pub const MAX_PAYLOAD: usize = 64 << 10;

/// The subject of a record: `<prefix>.<kind>.<market>.<SYMBOL>`; a symbol with characters a
/// subject token cannot hold has them replaced by `_` (Binance's symbols never do).
pub fn subject(prefix: &str, kind: Kind, market: Market, symbol: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + symbol.len() + 24);
    s.push_str(prefix);
    s.push('.');
    s.push_str(kind.as_str());
    s.push('.');
    s.push_str(market.as_str());
    s.push('.');
    if symbol.is_empty() {
        s.push('_');
    }
    s.extend(symbol.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            c
        } else {
            '_'
        }
    }));
    s
}

/// Splits a subject back into kind, market and symbol (after the prefix).
pub fn parse_subject<'a>(prefix: &str, subject: &'a str) -> Option<(Kind, Market, &'a str)> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    let mut it = rest.splitn(3, '.');
    let (k, m) = (it.next()?, it.next()?);
    let kind = *Kind::ALL.iter().find(|x| x.as_str() == k)?;
    let market = *Market::ALL.iter().find(|x| x.as_str() == m)?;
    let symbol = it.next()?;
    Some((kind, market, symbol))
}

/// The stable shard of a symbol, 0..n: FNV-1a of its upper-case name, so every collector,
/// on any machine and build, puts a symbol in the same shard.
pub fn shard_of(symbol: &str, n: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in symbol.bytes() {
        h ^= u64::from(b.to_ascii_uppercase());
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(n.max(1))) as u32
}

/// Parses `shard = "i/n"` (1 <= i <= n) into (i - 1, n).
pub fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: expected \"i/n\", e.g. \"1/2\""))?;
    let i: u32 = i
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: i is not a number"))?;
    let n: u32 = n
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: n is not a number"))?;
    if n == 0 || i == 0 || i > n {
        return Err(format!("{s:?}: needs 1 <= i <= n"));
    }
    Ok((i - 1, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip() {
        let s = subject("tickwire", Kind::AggTrade, Market::Usdm, "BTCUSDT");
        assert_eq!(s, "tickwire.agg_trade.usdm.BTCUSDT");
        assert_eq!(
            parse_subject("tickwire", &s),
            Some((Kind::AggTrade, Market::Usdm, "BTCUSDT"))
        );
        assert_eq!(subject("p", Kind::Gap, Market::Spot, ""), "p.gap.spot._");
        assert_eq!(
            subject("p", Kind::Trade, Market::Spot, "A.B*"),
            "p.trade.spot.A_B_"
        );
        assert_eq!(parse_subject("other", &s), None);
    }

    #[test]
    fn shards_split_without_overlap_or_gap() {
        let names: Vec<String> = (0..500).map(|i| format!("SYM{i}USDT")).collect();
        for n in 1..5 {
            let mut counts = vec![0; n as usize];
            for s in &names {
                counts[shard_of(s, n) as usize] += 1;
            }
            assert_eq!(counts.iter().sum::<usize>(), names.len());
            assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
        }
        assert_eq!(shard_of("btcusdt", 7), shard_of("BTCUSDT", 7));
        assert_eq!(parse_shard("2/3"), Ok((1, 3)));
        assert!(parse_shard("0/3").is_err());
        assert!(parse_shard("4/3").is_err());
        assert!(parse_shard("x").is_err());
    }
}
