//! The `shutter` command line: argument definitions and dispatch. The library exists so
//! the multi-process tests can run a node in their own binary ([`main_from`]) and the
//! fuzz targets can reach the parsers; it is not a stable API.
//!
//! | command | what it does |
//! |---|---|
//! | `shutter demo` | a local cluster of bank nodes on 127.0.0.1 under injected faults, periodic snapshots from rotating initiators, each verified; summary table, `--json`, `--out` report directory |
//! | `shutter node` | one bank node of a real cluster described by a peers file, with a TCP admin channel |
//! | `shutter snapshot` | asks a running cluster (through one node's admin channel) for a snapshot and saves it |
//! | `shutter status` | asks every node of a running cluster for its balance and counters |
//! | `shutter inspect` | prints and verifies a saved snapshot file |
//! | `shutter report` | re-prints the summary of a report directory (`report.json`) or the percentiles of an `.hlog` |
//!
//! Exit codes: 0 success, 1 runtime failure (including an inconsistent snapshot or a
//! violated invariant), 2 usage error (bad flag, bad peers file).

pub mod admin;
pub mod app;
pub mod args;
pub mod demo;
pub mod faults;
pub mod inspect;
pub mod key;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod peers;
pub mod report;
pub mod resolve;
pub mod rollback;
pub mod snapshot;
pub mod status;
pub mod summary;
pub mod svg;

use std::fmt;
use std::process::ExitCode;

use clap::Parser;

pub use args::{Cli, Command, DemoArgs};

/// An error that is the user's to fix (bad flag value, bad peers file): exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Shorthand: an `anyhow` error that maps to exit code 2.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(message.into()))
}

/// Parses the process arguments, runs the command and returns the exit code.
pub fn main() -> ExitCode {
    main_from(std::env::args_os())
}

/// Like [`main`] with explicit arguments (the first one is the program name); test
/// binaries that re-execute themselves as `shutter` nodes use it.
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        // clap prints help/version to stdout (exit 0) and errors to stderr (exit 2).
        Err(e) => e.exit(),
    };
    logging::init(cli.verbose, cli.quiet, cli.log_format);
    match run(cli) {
        Ok(code) => code,
        // `shutter ... | head`: the reader left; nothing to report.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            if e.downcast_ref::<UsageError>().is_some()
                || e.chain().any(|c| c.downcast_ref::<UsageError>().is_some())
            {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes, each said once: a cause whose text its parent's message
/// already contains (`cannot read X: No such file (os error 2)` wrapping the io error)
/// is not repeated.
pub fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Runs one parsed command on a fresh tokio runtime.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let quiet = cli.quiet;
    match cli.command {
        Command::Inspect(a) => inspect::run(&a),
        Command::Report(a) => report::run(&a),
        Command::Keygen(a) => key::keygen(&a),
        command => {
            // A local cluster owns the machine: its workers are pinned one per CPU
            // (see `shutter_transport::driver::runtime`); a node only when asked.
            let pin = match &command {
                Command::Demo(a) => !a.no_pin,
                Command::Node(a) => a.pin,
                _ => false,
            };
            let rt = shutter_transport::driver::runtime::multi_thread(Some(2), pin)?;
            // On a worker, not in `block_on`'s thread: the nodes' events then wake a
            // task rather than a thread that preempts a worker.
            let task = rt.spawn(async move {
                match command {
                    Command::Demo(a) => demo::run(DemoArgs { quiet, ..a }).await,
                    Command::Node(a) => node::run(a).await,
                    Command::Snapshot(a) => snapshot::run(a).await,
                    Command::Status(a) => status::run(a).await,
                    Command::Rollback(a) => rollback::run(a).await,
                    Command::Remove(a) => rollback::remove(a).await,
                    Command::Add(a) => rollback::add(a).await,
                    Command::Inspect(_) | Command::Report(_) | Command::Keygen(_) => {
                        unreachable!("handled above")
                    }
                }
            });
            match rt.block_on(task) {
                Ok(result) => result,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Resolves when the process is asked to stop: SIGINT (Ctrl-C) or SIGTERM (what
/// `kill`, systemd and container runtimes send). Never resolves if neither can be
/// listened for.
pub(crate) async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => {
                if r.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            _ = term => {}
        }
    }
    #[cfg(not(unix))]
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
