//! What every `skyhop` command shares as a process: the tokio runtime it runs
//! on, logging to stderr, and the exit code it ends with. The commands of
//! [`super`] use these; nothing here knows a command.

use super::FrontError;

/// The process exit code for a command's result, printing the error.
pub fn exit_code(result: Result<(), FrontError>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skyhop: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A multi-threaded tokio runtime for one command.
pub(super) fn tokio_runtime() -> Result<tokio::runtime::Runtime, FrontError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(FrontError::Tokio)
}

/// Logs to stderr, `RUST_LOG` overriding `default`.
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
