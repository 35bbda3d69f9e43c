//! Helpers for tickwire's end-to-end tests: the built binary and the shared fixtures.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
}

/// `shared/fixtures/binance`, beside the checkout (or `$TICKWIRE_SHARED/fixtures/binance`).
pub fn fixtures() -> Option<PathBuf> {
    let shared = std::env::var_os("TICKWIRE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared"));
    let p = shared.join("fixtures/binance");
    p.is_dir().then_some(p)
}

/// The `tickwire` binary of this profile, built once per test process (like `escargot`):
/// the tests exercise the real executable, not a library call.
pub fn tickwire() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = !cfg!(debug_assertions);
        let mut c = Command::new(cargo);
        c.current_dir(workspace()).args([
            "build",
            "--quiet",
            "-p",
            "tickwire-engine",
            "--bin",
            "tickwire",
        ]);
        if release {
            c.arg("--release");
        }
        let st = c.status().expect("cargo runs");
        assert!(st.success(), "building tickwire failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("target"));
        target
            .join(if release { "release" } else { "debug" })
            .join("tickwire")
    })
}

/// POSTs `sql` to the ClickHouse HTTP interface at `$TICKWIRE_CLICKHOUSE_URL`
/// (default `http://127.0.0.1:8123`) and returns the body, or the server's error text.
pub fn clickhouse(sql: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let url =
        std::env::var("TICKWIRE_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into());
    let hostport = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut s = std::net::TcpStream::connect(&hostport)
        .map_err(|e| format!("ClickHouse at {url} unreachable: {e}"))?;
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{sql}",
        sql.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    if head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200") {
        Ok(body)
    } else {
        Err(body)
    }
}

fn dechunk(mut b: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = b.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        b = rest[n..].trim_start_matches("\r\n");
    }
    out
}
