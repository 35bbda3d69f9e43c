//! Subcommands of the `tickwire` binary, and what they share on the terminal: log lines
//! (`logging`) and progress (`progress`). A command builds `runner::Settings` (or, for
//! `decode`, `subscribe` and `tier`, does its one job) and reports; it owns no thread of the
//! data path.

pub mod decode;
pub mod demo;
pub mod logging;
pub mod progress;
pub mod replay;
pub mod run;
pub mod sim;
pub mod subscribe;
pub mod tier;

/// An error and its causes on one line, each cause once: a cause whose text an outer message
/// already carries (many errors print their source in their own message) is not repeated.
pub fn error_line(e: &anyhow::Error) -> String {
    tickwire_sinks::error_chain(e.as_ref())
}

#[cfg(test)]
mod tests {
    use super::error_line;

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        #[derive(Debug, thiserror::Error)]
        #[error("/proc/x: {0}")]
        struct Wrapped(#[source] std::io::Error);
        let e = anyhow::Error::new(Wrapped(io)).context("parquet sink");
        assert_eq!(
            error_line(&e),
            "parquet sink: /proc/x: No such file or directory"
        );
        let e = anyhow::anyhow!("refused").context("connect tcp://h:1");
        assert_eq!(error_line(&e), "connect tcp://h:1: refused");
    }
}
