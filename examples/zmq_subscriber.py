#!/usr/bin/env python3
"""Subscribe to tickwire's ZMQ PUB with pyzmq (libzmq) and decode the binary payload layout.

    python3 examples/zmq_subscriber.py --connect tcp://127.0.0.1:5556 --topic trade.

Each message is [topic, payload]; topic is "<kind>.<market>.<SYMBOL>". The binary payload
(version 1, little-endian) is a 16-byte header, the record's fixed-size bytes, and for depth
kinds its levels (see README, "ZMQ wire format"). Decimals are rebuilt exactly, with the places
the exchange sent; times are integer microseconds (recv_time nanoseconds). Sequence numbers are
per topic and start at 1: a hole means the publisher refused messages to a slow subscriber.
"""

import argparse
import json
import struct
import sys

KINDS = {1: "trade", 2: "agg_trade", 3: "book_ticker", 4: "depth_update", 5: "depth_snapshot",
         6: "kline", 7: "mark_price", 8: "liquidation", 9: "ticker", 10: "gap",
         11: "instrument", 12: "open_interest", 13: "long_short_ratio"}
MARKETS = {0: "spot", 1: "usdm"}
INTERVALS = ["", "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M"]
SIDES = ["", "BUY", "SELL"]
ORDER_TYPES = ["", "LIMIT", "MARKET", "STOP", "TAKE_PROFIT", "STOP_MARKET", "TAKE_PROFIT_MARKET",
               "TRAILING_STOP_MARKET", "LIQUIDATION"]
TIFS = ["", "GTC", "IOC", "FOK", "GTX", "GTD", "RPI"]
STATUSES = ["", "NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "REJECTED", "EXPIRED", "EXPIRED_IN_MATCH"]
GAP_REASONS = ["", "sequence", "reconnect", "resync"]
RATIO_SERIES = ["", "topLongShortPositionRatio", "topLongShortAccountRatio", "globalLongShortAccountRatio"]
NULL_I64 = -(1 << 63)

# Field layouts after the 24-byte header: (name, type[, dp index or enum table]).
# Types: i64, time, px (i64, scale 1e-8), qty (i128 as two u64, scale 1e-8), dp (u64 nibbles),
# u8, bool, enum, text<N> (N bytes of ASCII, NUL-padded; empty is null), pad<N>,
# levels (u32 start, u32 bids, u32 asks, u32 pad).
LAYOUTS = {
    "trade": [("trade_id", "i64"), ("price", "px", 0), ("qty", "qty", 1), ("trade_time", "time"),
              ("dp", "dp"), ("is_buyer_maker", "bool"), ("", "pad7")],
    "agg_trade": [("agg_trade_id", "i64"), ("first_trade_id", "i64"), ("last_trade_id", "i64"),
                  ("price", "px", 0), ("qty", "qty", 1), ("trade_time", "time"), ("dp", "dp"),
                  ("is_buyer_maker", "bool"), ("", "pad7")],
    "book_ticker": [("update_id", "i64"), ("bid_price", "px", 0), ("bid_qty", "qty", 1),
                    ("ask_price", "px", 2), ("ask_qty", "qty", 3), ("transaction_time", "time"), ("dp", "dp")],
    "depth_update": [("first_update_id", "i64"), ("final_update_id", "i64"), ("prev_final_update_id", "i64"),
                     ("transaction_time", "time"), ("levels", "levels")],
    "depth_snapshot": [("last_update_id", "i64"), ("levels", "levels")],
    "kline": [("open_time", "time"), ("close_time", "time"), ("first_trade_id", "i64"), ("last_trade_id", "i64"),
              ("trade_count", "i64"), ("open", "px", 0), ("high", "px", 1), ("low", "px", 2), ("close", "px", 3),
              ("volume", "qty", 4), ("quote_volume", "qty", 5), ("taker_buy_base_volume", "qty", 6),
              ("taker_buy_quote_volume", "qty", 7), ("dp", "dp"), ("interval", "enum", INTERVALS),
              ("is_closed", "bool"), ("", "pad6")],
    "mark_price": [("mark_price", "px", 0), ("index_price", "px", 1), ("estimated_settle_price", "px", 2),
                   ("funding_rate", "px", 3), ("next_funding_time", "time"), ("dp", "dp")],
    "liquidation": [("orig_qty", "qty", 0), ("last_filled_qty", "qty", 3), ("filled_qty", "qty", 4),
                    ("price", "px", 1), ("avg_price", "px", 2), ("trade_time", "time"), ("dp", "dp"),
                    ("side", "enum", SIDES), ("order_type", "enum", ORDER_TYPES),
                    ("time_in_force", "enum", TIFS), ("order_status", "enum", STATUSES), ("", "pad4")],
    "ticker": [("price_change", "px", 0), ("price_change_percent", "px", 1), ("weighted_avg_price", "px", 2),
               ("last_price", "px", 3), ("best_bid_price", "px", 5), ("best_ask_price", "px", 7),
               ("open_price", "px", 9), ("high_price", "px", 10), ("low_price", "px", 11),
               ("last_qty", "qty", 4), ("best_bid_qty", "qty", 6), ("best_ask_qty", "qty", 8),
               ("volume", "qty", 12), ("quote_volume", "qty", 13), ("open_time", "time"), ("close_time", "time"),
               ("first_trade_id", "i64"), ("last_trade_id", "i64"), ("trade_count", "i64"), ("dp", "dp")],
    "gap": [("expected", "i64"), ("got", "i64"), ("stream", "enum", [""] + list(KINDS.values())),
            ("reason", "enum", GAP_REASONS), ("", "pad6")],
    "instrument": [("tick_size", "px", 0), ("step_size", "qty", 1), ("min_qty", "qty", 2),
                   ("price_precision", "i64"), ("quantity_precision", "i64"), ("base_asset_precision", "i64"),
                   ("quote_precision", "i64"), ("onboard_date", "time"), ("delivery_date", "time"), ("dp", "dp"),
                   ("status", "text24"), ("contract_type", "text24"), ("base_asset", "text16"),
                   ("quote_asset", "text16")],
    "open_interest": [("open_interest", "qty", 0), ("open_interest_value", "qty", 1), ("dp", "dp"),
                      ("period", "enum", INTERVALS), ("", "pad7")],
    "long_short_ratio": [("long_short_ratio", "px", 0), ("long_share", "px", 1), ("short_share", "px", 2),
                         ("dp", "dp"), ("series", "enum", RATIO_SERIES), ("period", "enum", INTERVALS),
                         ("", "pad6")],
}


def decimal_text(raw, dp):
    """The exact decimal text of `raw` units of 1e-8 with `dp` places (as Binance wrote it)."""
    neg, a = raw < 0, abs(raw)
    i, f = divmod(a, 10 ** 8)
    if f % 10 ** (8 - dp) != 0:
        dp = 8
    s = str(i)
    if dp:
        s += "." + str(f // 10 ** (8 - dp)).zfill(dp)
    return ("-" if neg else "") + s


def decode(topic, payload):
    """Decodes one message into a dict with the decode JSON's names, plus `seq`."""
    version, kind_code, market_code, _r, size, seq = struct.unpack_from("<BBBBIQ", payload, 0)
    if version != 1:
        raise ValueError(f"unknown payload version {version}")
    kind = KINDS[kind_code]
    recv_time, event_time, _sym, _k, _e, _m, _ = struct.unpack_from("<qqIBBBB", payload, 16)
    out = {"kind": kind, "exchange": "binance", "market": MARKETS[market_code],
           "symbol": topic.decode().rsplit(".", 1)[-1],
           "event_time": None if event_time == NULL_I64 else event_time, "recv_time": recv_time, "seq": seq}
    raw = {}
    off = 16 + 24
    for field in LAYOUTS[kind]:
        name, typ = field[0], field[1]
        if typ in ("i64", "time", "px"):
            (v,) = struct.unpack_from("<q", payload, off)
            off += 8
        elif typ == "qty":
            lo, hi = struct.unpack_from("<Qq", payload, off)
            v = (hi << 64) | lo
            off += 16
        elif typ == "dp":
            (v,) = struct.unpack_from("<Q", payload, off)
            off += 8
        elif typ in ("u8", "bool", "enum"):
            v = payload[off]
            off += 1
        elif typ == "levels":
            v = struct.unpack_from("<IIII", payload, off)
            off += 16
        elif typ.startswith("text"):
            n = int(typ[4:])
            v = payload[off:off + n].split(b"\0", 1)[0].decode()
            off += n
        else:  # padN
            off += int(typ[3:])
            continue
        raw[name] = (typ, v, field[2] if len(field) > 2 else None)
    assert off == 16 + size, (kind, off, size)
    dp = raw.get("dp", (None, 0, None))[1]
    for name, (typ, v, extra) in raw.items():
        if name == "dp":
            continue
        if typ in ("i64", "time"):
            out[name] = None if v == NULL_I64 else v
        elif typ in ("px", "qty"):
            places = (dp >> (4 * extra)) & 0xF
            out[name] = None if places == 0xF else decimal_text(v, places)
        elif typ == "bool":
            out[name] = bool(v)
        elif typ.startswith("text"):
            out[name] = v or None
        elif typ == "enum":
            out[name] = extra[v] if 0 < v < len(extra) else None
        elif typ == "levels":
            _start, nb, na, _ = v
            levels = []
            for _ in range(nb + na):
                price, lo, hi, pdp, qdp = struct.unpack_from("<qQqBB", payload, off)
                off += 32
                levels.append([decimal_text(price, pdp), decimal_text((hi << 64) | lo, qdp)])
            out["bids"], out["asks"] = levels[:nb], levels[nb:]
    return out


class SeqCheck:
    """Per-topic sequence check. The first message of a topic sets its baseline (a subscriber
    that joins a running engine starts wherever the topic is: counted in `joined`); only a jump
    after that is a gap, i.e. messages this subscriber did not get."""

    def __init__(self):
        self.last, self.joined, self.gaps = {}, 0, 0

    def check(self, topic, seq):
        """Takes the next `seq` of `topic`; returns the gap it shows, or None."""
        last = self.last.get(topic)
        self.last[topic] = seq
        if last is None:
            self.joined += seq != 1
            return None
        if seq != last + 1:
            self.gaps += 1
            return {"topic": topic.decode(), "expected": last + 1, "got": seq}
        return None


def main():
    import zmq

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connect", default="tcp://127.0.0.1:5556")
    ap.add_argument("--topic", action="append", default=[])
    ap.add_argument("--count", type=int, default=0, help="exit after this many messages")
    args = ap.parse_args()
    sock = zmq.Context().socket(zmq.SUB)
    sock.connect(args.connect)
    for t in args.topic or [""]:
        sock.setsockopt(zmq.SUBSCRIBE, t.encode())
    seqs, n = SeqCheck(), 0
    while not args.count or n < args.count:
        topic, payload = sock.recv_multipart()
        rec = decode(topic, payload)
        gap = seqs.check(topic, rec["seq"])
        if gap:
            print(json.dumps({"gap": gap}), file=sys.stderr)
        print(json.dumps(rec))
        n += 1
    print(json.dumps({"messages": n, "topics": len(seqs.last), "joined": seqs.joined, "gaps": seqs.gaps}),
          file=sys.stderr)


if __name__ == "__main__":
    main()
