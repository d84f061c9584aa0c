//! The binary's log output on stderr: `tracing-subscriber`, timestamped, as text or as
//! one JSON object per line (`--log-format json`, for log shippers).
//!
//! How much is shown: `RUST_LOG` when set (full `EnvFilter` syntax), else the
//! verbosity flags: `-q` errors only, default warnings plus the node's own operational
//! lines (snapshots completed and aborted, rollbacks, checkpoints), `-v` info from every
//! crate, `-vv` debug, `-vvv` trace.

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `TIMESTAMP LEVEL target: message`, one line each.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields.message`, ...).
    Json,
}

/// The filter directive the flags ask for when `RUST_LOG` is unset.
pub fn default_directive(verbose: u8, quiet: bool) -> &'static str {
    if quiet {
        return "error";
    }
    match verbose {
        // The node's operational lines are info in this crate; other crates' info is
        // chatter an operator asks for with -v.
        0 => "warn,shutter_cli=info",
        1 => "info",
        2 => "debug",
        _ => "trace",
    }
}

/// Installs the subscriber. A second call (tests re-executing themselves as nodes in one
/// process) leaves the first in place.
pub fn init(verbose: u8, quiet: bool, format: LogFormat) {
    // An unparsable RUST_LOG falls back to the flags rather than silencing everything.
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(&spec)
            .unwrap_or_else(|_| EnvFilter::new(default_directive(verbose, quiet))),
        _ => EnvFilter::new(default_directive(verbose, quiet)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_choose_the_level() {
        assert_eq!(default_directive(0, true), "error");
        assert_eq!(default_directive(3, true), "error");
        assert_eq!(default_directive(0, false), "warn,shutter_cli=info");
        assert_eq!(default_directive(2, false), "debug");
        assert_eq!(default_directive(9, false), "trace");
    }
}
