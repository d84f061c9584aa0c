//! `shutter-bench`: runs the side-by-side benchmark of issue 14 (all parts, or one),
//! prints the tables with the issue's targets judged against this run, and writes JSON.
//!
//! ```text
//! cargo run --release -p shutter-bench -- all --json bench.json
//! cargo run --release -p shutter-bench -- headers          # one part (see --help)
//! cargo run --release -p shutter-bench -- all --tiny       # every part at test size
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use shutter_bench::report::Section;
use shutter_bench::{Run, headers, netlat, rate, simwall, snapshots, throughput, utc_now};

#[derive(Parser, Debug)]
#[command(about = "shutter's side-by-side benchmark (issue 14): tables, targets, JSON")]
struct Args {
    #[command(subcommand)]
    part: Part,
    /// Write every table as JSON here.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Test sizes: seconds in all, figures meaningless.
    #[arg(long, global = true)]
    tiny: bool,
    /// netlat: only these drop rates, percent (comma-separated), for a quick A/B of one
    /// row; the default is the issue's 0,1,5,10,20.
    #[arg(long, global = true, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(0..=100))]
    drop: Option<Vec<u8>>,
    /// snapshots: only these cluster sizes (comma-separated), for a quick A/B of one
    /// cell; the default is the issue's 8,64.
    #[arg(long, global = true, value_delimiter = ',', value_parser = clap::value_parser!(u16).range(2..=1024))]
    sizes: Option<Vec<u16>>,
    /// snapshots: only these loss rates, percent (comma-separated); the default is the
    /// issue's 0,10,20.
    #[arg(long, global = true, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(0..=100))]
    losses: Option<Vec<u8>>,
    /// Leave the runtime's worker threads unpinned (by default each is pinned to one
    /// CPU, as `shutter demo` does; see `shutter_transport::driver::runtime`), to
    /// compare.
    #[arg(long, global = true)]
    no_pin: bool,
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Every part below, in order of priority.
    All,
    /// (e) header bytes per application message, N=8/32/64, three traffic patterns.
    Headers,
    /// (a) 64 B message rate: Endpoint vs raw UDP sendmmsg/recvmmsg batch 64.
    Rate,
    /// (c) snapshot latency at 0/10/20% loss, 8 and 64 nodes, both algorithms, warm and cold.
    Snapshots,
    /// (d) application throughput with no snapshots, every 100 ms, every 10 ms.
    Throughput,
    /// (f) simulator wall time per simulated second at 64/128/256 nodes.
    Sim,
    /// (b) one-way latency at 0/1/5/10/20% nftables drop between namespaces: shutter vs
    /// TCP vs KCP (root, `ip`, `nft`; skipped with the reason otherwise).
    Netlat,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shutter-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a part as a task on the runtime's workers, not in `block_on`'s thread: the
/// clusters' events then wake a task, not a thread that preempts a worker on a 2-CPU
/// machine (64-node snapshot p99 2.9-3.4 ms against 3.3-7.0 ms in `block_on`, pinned
/// workers both times; ARCHITECTURE.md).
fn on_workers<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    part: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    rt.block_on(async move { tokio::spawn(part).await })
        .context("a benchmark task panicked")?
}

fn run(args: &Args) -> Result<()> {
    let pinned = !args.no_pin;
    let rt = shutter_transport::driver::runtime::multi_thread(None, pinned)
        .context("starting the tokio runtime")?;
    let mut out = Run {
        started: utc_now(),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        pinned,
        sections: Vec::new(),
    };
    println!(
        "shutter-bench, {} UTC, {} CPUs, runtime workers {}",
        out.started,
        out.cpus,
        if pinned {
            "pinned one per CPU"
        } else {
            "unpinned"
        }
    );
    let want = |p: Part| args.part == Part::All || args.part == p;
    let tiny = args.tiny;
    let emit = |s: Section, out: &mut Run| {
        println!("\n{}", s.render());
        out.sections.push(s);
    };
    if want(Part::Headers) {
        let o = if tiny {
            headers::Opts::tiny()
        } else {
            headers::Opts::full()
        };
        emit(headers::run(&o), &mut out);
    }
    if want(Part::Rate) {
        let o = if tiny {
            rate::Opts::tiny()
        } else {
            rate::Opts::full()
        };
        emit(
            on_workers(&rt, async move { rate::run(&o).await })?,
            &mut out,
        );
    }
    if want(Part::Snapshots) {
        let mut o = if tiny {
            snapshots::Opts::tiny()
        } else {
            snapshots::Opts::full()
        };
        if let Some(sizes) = &args.sizes {
            o.sizes = sizes.iter().map(|&n| usize::from(n)).collect();
        }
        if let Some(losses) = &args.losses {
            o.losses = losses.iter().map(|&l| f64::from(l) / 100.0).collect();
        }
        emit(
            on_workers(&rt, async move { snapshots::run(&o).await })?,
            &mut out,
        );
    }
    if want(Part::Throughput) {
        let o = if tiny {
            throughput::Opts::tiny()
        } else {
            throughput::Opts::full()
        };
        emit(
            on_workers(&rt, async move { throughput::run(&o).await })?,
            &mut out,
        );
    }
    if want(Part::Sim) {
        let o = if tiny {
            simwall::Opts::tiny()
        } else {
            simwall::Opts::full()
        };
        emit(simwall::run(&o), &mut out);
    }
    if want(Part::Netlat) {
        let mut o = if tiny {
            netlat::Opts::tiny()
        } else {
            netlat::Opts::full()
        };
        if let Some(drop) = &args.drop {
            o.losses.clone_from(drop);
        }
        emit(netlat::run(&o)?, &mut out);
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&out)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}
