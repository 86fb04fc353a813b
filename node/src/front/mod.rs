//! What a person touches: the `skyhop` commands (`run`, `send`, `status`,
//! `trace`, `chat`, `demo`), the interactive chat prompt and the
//! control-API client. It sits on top of [`crate::runtime`]: the front calls
//! the runtime, never the other way round.
//!
//! - [`run`]: `skyhop run`, its flags and `--config` file ([`run::plan_run`]);
//! - [`commands`]: `skyhop send | status | trace`;
//! - [`chat`]: `skyhop chat`, the interactive prompt;
//! - [`demo`]: `skyhop demo`, a small overlay in one process;
//! - [`client`]: which running node a command means, and calls to its
//!   control API over [`http`];
//! - [`describe`]: the human text of the control API's answers;
//! - [`process`]: the tokio runtime, logging and exit code every command shares;
//! - [`error`]: [`FrontError`], why a command failed.

pub mod chat;
pub mod client;
pub mod commands;
pub mod demo;
pub mod describe;
pub mod error;
pub mod http;
pub mod process;
pub mod run;

pub use error::FrontError;

#[cfg(test)]
mod tests;
