//! Subcommands of the `tickwire` binary.

pub mod decode;
pub mod demo;
pub mod subscribe;
