//! The README's usage block of each command names exactly the flags the command has (read
//! from the binary's own `--help`), so the two cannot drift apart.

use std::collections::BTreeSet;
use std::process::Command;

fn cli_flags(cmd: &str) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_tickwire"))
        .args([cmd, "--help"])
        .output()
        .expect("tickwire runs");
    assert!(out.status.success(), "tickwire {cmd} --help");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l.strip_prefix("-h, ").unwrap_or(l);
            let l = match l.find(", --") {
                Some(i) if l.starts_with('-') && !l.starts_with("--") => &l[i + 2..],
                _ => l,
            };
            let name = l.strip_prefix("--")?;
            let name: String = name
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            (name != "help").then(|| format!("--{name}"))
        })
        .collect()
}

fn readme_flags(cmd: &str) -> BTreeSet<String> {
    let readme = include_str!("../../README.md");
    let head = format!("## `tickwire {cmd}`");
    let at = readme
        .find(&head)
        .unwrap_or_else(|| panic!("README has no {head}"));
    let rest = &readme[at..];
    let start = rest.find("```\n").expect("a usage block") + 4;
    let block = &rest[start..start + rest[start..].find("```").expect("its end")];
    block
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_string)
        .collect()
}

#[test]
fn every_readme_usage_block_agrees_with_the_cli() {
    for cmd in [
        "decode",
        "demo",
        "replay",
        "run",
        "sim",
        "subscribe",
        "tier",
    ] {
        let (cli, readme) = (cli_flags(cmd), readme_flags(cmd));
        assert!(!cli.is_empty(), "{cmd}: no flags read from --help");
        let missing: Vec<_> = cli.difference(&readme).collect();
        let unknown: Vec<_> = readme.difference(&cli).collect();
        assert!(
            missing.is_empty() && unknown.is_empty(),
            "README usage of `tickwire {cmd}`: missing {missing:?}, not flags of the command {unknown:?}"
        );
    }
}
