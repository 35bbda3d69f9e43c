"""Modern ClickHouse (chdb, ClickHouse 26.x in-process) accepts tickwire's modern DDL and reads
the Parquet files tickwire writes into those tables, exactly.

The DDL is sql/clickhouse/001_tables.sql (generated from the Arrow schemas). Each kind's
Parquet files from the demo run are inserted with ClickHouse's own Parquet reader (hive
partitioning gives `market`); row counts must equal the engine's, and exact decimal sums must
equal pyarrow's over the same files.
"""

import decimal

import pyarrow.dataset as ds
import pytest

chdb_session = pytest.importorskip("chdb.session", reason="chdb is installed by scripts/test.sh")

from conftest import ROOT  # noqa: E402

TABLES = {"trade": "trades", "agg_trade": "agg_trades", "book_ticker": "book_tickers",
          "depth_update": "depth_updates", "depth_snapshot": "depth_snapshots", "kline": "klines",
          "mark_price": "mark_prices", "liquidation": "liquidations", "ticker": "tickers"}


@pytest.fixture(scope="module")
def ch(tmp_path_factory):
    s = chdb_session.Session(str(tmp_path_factory.mktemp("chdb")))
    sql = (ROOT / "sql" / "clickhouse" / "001_tables.sql").read_text()
    body = "\n".join(l for l in sql.splitlines() if not l.startswith("--"))
    for stmt in filter(None, (x.strip() for x in body.split(";"))):
        s.query(stmt)
    return s


def q(s, sql):
    return str(s.query(sql, "TSV")).strip()


def test_modern_ddl_creates_every_table(ch):
    tables = set(q(ch, "SELECT name FROM system.tables WHERE database = 'tickwire'").splitlines())
    assert set(TABLES.values()) | {"gaps"} <= tables
    ty = q(ch, "SELECT type FROM system.columns WHERE database='tickwire' AND table='trades' AND name='trade_time'")
    assert ty.replace("\\'", "'") == "DateTime64(6, 'UTC')"  # TSV escapes quotes


def test_parquet_loads_into_the_tables_exactly(ch, run):
    for kind, table in TABLES.items():
        # `_batch` is the sink's batch id, not in the Parquet files.
        cols = [c.split("\t")[0] for c in q(ch, f"DESCRIBE TABLE tickwire.{table}").splitlines() if not c.startswith("_batch")]
        glob = f"{run['out']}/{kind}/*/*/*.parquet"
        ch.query(f"INSERT INTO tickwire.{table} ({', '.join(cols)}) SELECT {', '.join(cols)} "
                 f"FROM file('{glob}', Parquet) SETTINGS use_hive_partitioning = 1")
        n = int(q(ch, f"SELECT count() FROM tickwire.{table}"))
        assert n == run["summary"]["records"][kind], kind
    # Exact decimals: the same sums as pyarrow over the same files.
    t = ds.dataset(run["out"] / "trade", format="parquet", partitioning="hive").to_table()
    want_qty = sum(t.column("qty").to_pylist(), decimal.Decimal(0))
    got_qty = decimal.Decimal(q(ch, "SELECT toString(sum(qty)) FROM tickwire.trades"))
    assert got_qty == want_qty
    # Levels survive as Array(Tuple(price, qty)).
    lv = q(ch, "SELECT toString(sum(length(bids)) + sum(length(asks))) FROM tickwire.depth_updates")
    t = ds.dataset(run["out"] / "depth_update", format="parquet", partitioning="hive").to_table()
    assert int(lv) == sum(len(b) + len(a) for b, a in zip(t.column("bids").to_pylist(), t.column("asks").to_pylist()))
    # Nullable columns keep their nulls.
    nulls = int(q(ch, "SELECT countIf(best_bid_price IS NULL) FROM tickwire.tickers WHERE market = 'usdm'"))
    assert nulls == int(q(ch, "SELECT count() FROM tickwire.tickers WHERE market = 'usdm'")) > 0
