//! The ClickHouse DDL runs on the real server the test command starts (Debian's 18.16, the
//! legacy dialect), and the tables it creates have exactly the Arrow schemas' columns.

use tickwire_codecs::arrow::schema;
use tickwire_codecs::record::Kind;
use tickwire_sinks::clickhouse::ddl::{schema_sql, statements, table_name, Dialect};
use tickwire_tests::clickhouse;

#[test]
fn ddl_creates_every_table_with_the_arrow_columns() {
    let version =
        clickhouse("SELECT version()").expect("ClickHouse is up (the test command starts it)");
    let dialect = Dialect::for_version(version.trim());
    let db = format!("tickwire_ddl_test_{}", std::process::id());
    // Twice: the schema is idempotent.
    for round in 0..2 {
        for stmt in statements(dialect, &db) {
            clickhouse(&stmt).unwrap_or_else(|e| panic!("round {round}: {stmt}\n-> {e}"));
        }
    }
    assert!(schema_sql(dialect, "tickwire").contains(&statements(dialect, "tickwire")[1]));
    for &k in Kind::ALL {
        let cols = clickhouse(&format!("DESCRIBE TABLE {db}.{} FORMAT TSV", table_name(k)))
            .expect("columns");
        let got: Vec<&str> = cols.lines().filter_map(|l| l.split('\t').next()).collect();
        let mut want: Vec<String> = Vec::new();
        for f in schema(k).fields() {
            match (dialect, f.name().as_str()) {
                (Dialect::Legacy, n @ ("bids" | "asks")) => {
                    want.push(format!("{n}.price"));
                    want.push(format!("{n}.qty"));
                }
                (_, n) => want.push(n.to_string()),
            }
        }
        want.push(tickwire_sinks::clickhouse::ddl::BATCH_COLUMN.to_string());
        assert_eq!(got, want, "{k:?} on ClickHouse {version}");
    }
    clickhouse(&format!("DROP DATABASE {db}")).expect("drop");
}
