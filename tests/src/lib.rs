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
