#!/usr/bin/env python3
"""Which ClickHouse column codecs store tickwire's data smallest: measured, not guessed.

    python3 perf/clickhouse_codecs.py DATA_DIR       (DATA_DIR: a `tickwire demo --out` dataset)

For the trades, book_tickers and depth_updates of the dataset, creates one MergeTree table per
codec candidate in ClickHouse 26.x (chdb, in-process), with every column of a kind (times, ids,
prices, quantities) under that codec, sorted as tickwire's tables are
(market, symbol, recv_time); loads the same rows into each, merges to one part, and prints the
compressed bytes per column type and codec, as a Markdown table. LZ4 (ClickHouse's default) is
the baseline of the same run.
"""

import sys
import tempfile

from chdb.session import Session

CODECS = ["LZ4", "ZSTD(1)", "ZSTD(3)", "Delta, ZSTD(1)", "DoubleDelta, ZSTD(1)", "T64, ZSTD(1)", "Gorilla, ZSTD(1)"]
# (table, source kind, columns by group). Types as in sql/clickhouse/001_tables.sql.
TABLES = {
    "trades": ("trade", {
        "time": [("recv_time", "DateTime64(9, 'UTC')"), ("trade_time", "DateTime64(6, 'UTC')")],
        "id": [("trade_id", "Int64")],
        "price": [("price", "Decimal(18, 8)")],
        "qty": [("qty", "Decimal(38, 8)")],
    }),
    "book_tickers": ("book_ticker", {
        "time": [("recv_time", "DateTime64(9, 'UTC')")],
        "id": [("update_id", "Int64")],
        "price": [("bid_price", "Decimal(18, 8)"), ("ask_price", "Decimal(18, 8)")],
        "qty": [("bid_qty", "Decimal(38, 8)"), ("ask_qty", "Decimal(38, 8)")],
    }),
    "depth_updates": ("depth_update", {
        "time": [("recv_time", "DateTime64(9, 'UTC')")],
        "id": [("first_update_id", "Int64"), ("final_update_id", "Int64")],
    }),
}
# Codecs a type cannot take.
INVALID = {("price", "Gorilla, ZSTD(1)"), ("qty", "Gorilla, ZSTD(1)"), ("qty", "T64, ZSTD(1)"),
           ("time", "Gorilla, ZSTD(1)"), ("id", "Gorilla, ZSTD(1)"),
           # Delta/DoubleDelta take 1-8 byte types; Decimal(38, 8) is 16 bytes.
           ("qty", "Delta, ZSTD(1)"), ("qty", "DoubleDelta, ZSTD(1)")}


def main():
    data = sys.argv[1]
    s = Session(tempfile.mkdtemp())
    s.query("CREATE DATABASE IF NOT EXISTS m")
    sizes = {}  # (group, codec) -> bytes
    rows_by_table = {}
    for table, (kind, groups) in TABLES.items():
        glob = f"{data}/{kind}/*/*/*.parquet"
        for codec in CODECS:
            cols = ["market LowCardinality(String)", "symbol LowCardinality(String)"]
            names = ["market", "symbol"]
            for group, columns in groups.items():
                c = codec if (group, codec) not in INVALID else "LZ4"
                for name, ty in columns:
                    cols.append(f"{name} {ty} CODEC({c})")
                    names.append(name)
            t = f"m.{table}_{abs(hash(codec)) % 10**8}"
            s.query(f"DROP TABLE IF EXISTS {t}")
            s.query(f"CREATE TABLE {t} ({', '.join(cols)}) ENGINE = MergeTree ORDER BY (market, symbol, recv_time) "
                    "SETTINGS min_bytes_for_wide_part = 0")  # wide parts: per-column sizes
            s.query(f"INSERT INTO {t} SELECT {', '.join(names)} FROM file('{glob}', Parquet) SETTINGS use_hive_partitioning = 1")
            s.query(f"OPTIMIZE TABLE {t} FINAL")
            rows_by_table[table] = int(str(s.query(f"SELECT count() FROM {t}", "TSV")).strip())
            for group, columns in groups.items():
                if (group, codec) in INVALID:
                    continue
                for name, _ in columns:
                    b = int(str(s.query(
                        f"SELECT sum(data_compressed_bytes) FROM system.columns WHERE database = 'm' "
                        f"AND table = '{t.split('.')[1]}' AND name = '{name}'", "TSV")).strip())
                    sizes[(group, codec)] = sizes.get((group, codec), 0) + b
    print("rows: " + ", ".join(f"{t} {n:,}" for t, n in rows_by_table.items()))
    print()
    print("| column group | " + " | ".join(CODECS) + " |")
    print("|---|" + "---:|" * len(CODECS))
    for group in ["time", "id", "price", "qty"]:
        base = sizes.get((group, "LZ4"))
        cells = []
        for codec in CODECS:
            b = sizes.get((group, codec))
            cells.append("n/a" if b is None else f"{b / 1024:,.0f} KiB ({b / base:.2f}x)")
        print(f"| {group} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
