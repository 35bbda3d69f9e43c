//! Subcommands of the `tickwire` binary.

pub mod decode;
pub mod demo;
pub mod run;
pub mod sim;
pub mod subscribe;
