//! `shutter demo`: a [`LocalCluster`] of bank nodes on 127.0.0.1 under injected faults,
//! snapshots initiated every `--interval` by rotating initiators, every completed
//! snapshot verified (cut consistency, channel states, money conserved), then transfers
//! stop, the network drains and the final balances must add up to the opening total.
//!
//! Latency: snapshot latency is initiation to completion at the initiator (snapshots are
//! started on a fixed schedule, not after the previous one finishes, so a slow snapshot
//! cannot hide the next one's wait); delivery latency is the transport's, from the
//! sender's stamp at first transmission to delivery, so retransmission delay counts.
//! Per-node histograms are merged with `add`. The interval log has one `delivery` and one
//! `snapshot` histogram per second of the run.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result, bail};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use shutter_vclock::NodeId;
use tokio::time::{Instant, MissedTickBehavior};

use crate::app::{Shared, TaggedBank};
use crate::args::DemoArgs;
use crate::summary::{FaultSummary, Summary};
use crate::{faults, report, usage};
use shutter_snapshot::bank::{Bank, BankConfig, BankInvariant, BankState};
use shutter_snapshot::persist;
use shutter_snapshot::report::{HistogramJson, IntervalLog, Percentiles, merge, new_histogram};
use shutter_snapshot::runtime::{LocalCluster, NodeConfig, NodeEvent, NodeStats};
use shutter_snapshot::verify::{check_invariant, check_structure};
use shutter_snapshot::wire::SnapshotId;
use shutter_snapshot::{AbortWhy, GlobalSnapshot};
use shutter_transport::auth::{Auth, KeyRing};

/// Snapshots taken when neither `--snapshots` nor `--duration` is given.
pub const DEFAULT_SNAPSHOTS: u64 = 20;
/// Traffic flows this long before the first snapshot.
const WARMUP: Duration = Duration::from_millis(300);
/// Sampling period of the interval log.
const SAMPLE: Duration = Duration::from_secs(1);
/// Longest wait for the network to drain after transfers stop.
const QUIESCE: Duration = Duration::from_secs(10);
/// Verification failures kept verbatim.
const MAX_FAILURES: usize = 10;

/// Progress output: a bar on a terminal, plain lines otherwise, nothing with `--quiet`.
struct Progress {
    bar: Option<ProgressBar>,
    lines: bool,
}

impl Progress {
    fn new(quiet: bool, len: u64) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let bar = (!quiet && tty).then(|| {
            let bar = ProgressBar::new(len);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} snapshots  {msg}",
                )
                .expect("static template"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress {
            bar,
            lines: !quiet && !tty,
        }
    }

    fn line(&self, text: impl FnOnce() -> String) {
        if let Some(bar) = &self.bar {
            bar.set_message(text());
        } else if self.lines {
            eprintln!("{}", text());
        }
    }

    fn set(&self, pos: u64, msg: impl FnOnce() -> String) {
        if let Some(bar) = &self.bar {
            bar.set_position(pos);
            bar.set_message(msg());
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Counters of snapshot outcomes while the demo runs.
#[derive(Default)]
struct Outcomes {
    pending: BTreeMap<SnapshotId, Instant>,
    started: u64,
    completed: u64,
    aborted: u64,
    consistent: u64,
    violations: u64,
    initiate_failures: u64,
    abort_reasons: BTreeMap<String, u64>,
    failed_checks: u64,
    failures: Vec<String>,
    failed_snapshots: Vec<GlobalSnapshot>,
    last: Option<GlobalSnapshot>,
}

impl Outcomes {
    fn fail(&mut self, text: String) {
        if self.failures.len() < MAX_FAILURES {
            self.failures.push(text);
        }
    }

    /// Verifies a completed snapshot; returns a one-line verdict.
    fn completed(
        &mut self,
        snap: GlobalSnapshot,
        total: u64,
        interval: &mut Histogram<u64>,
    ) -> String {
        self.pending.remove(&snap.id);
        self.completed += 1;
        let latency = snap.timings.latency_micros();
        interval.saturating_record(latency.clamp(1, interval.high()));
        let mut ok = true;
        let consistency = check_structure(&snap);
        let mut verdict = match &consistency {
            Ok(()) => {
                self.consistent += 1;
                "consistent".to_string()
            }
            Err(e) => {
                ok = false;
                self.fail(format!("snapshot {}: {e}", snap.id));
                format!("INCONSISTENT: {e}")
            }
        };
        match check_invariant(&snap, &BankInvariant { total }) {
            Ok(()) => verdict.push_str(", money conserved"),
            Err(e) => {
                ok = false;
                self.violations += 1;
                self.fail(format!("snapshot {}: {e}", snap.id));
                verdict.push_str(&format!(", {e}"));
            }
        }
        let line = format!(
            "snapshot {} completed in {:.1} ms: {verdict}, {} transfers in flight",
            snap.id,
            latency as f64 / 1000.0,
            snap.recorded_messages()
        );
        if !ok && self.failed_snapshots.len() < MAX_FAILURES {
            self.failed_snapshots.push(snap.clone());
        }
        self.last = Some(snap);
        line
    }
}

/// Sums over the nodes' current statistics.
struct Sample {
    delivery: Histogram<u64>,
    sent: u64,
    delivered: u64,
}

async fn sample(cluster: &LocalCluster) -> Result<Sample> {
    let mut stats = Vec::new();
    for node in cluster.nodes() {
        stats.push(node.stats().await.context("reading node statistics")?);
    }
    Ok(Sample {
        delivery: merge(stats.iter().map(|s| &s.transport.core.delivery_latency)),
        sent: stats.iter().map(|s| s.app_messages_sent).sum(),
        delivered: stats.iter().map(|s| s.app_messages_delivered).sum(),
    })
}

/// The interval log under construction: cumulative delivery histogram at the last sample.
struct Intervals {
    log: IntervalLog,
    t0: Instant,
    last_at: Instant,
    last_delivery: Histogram<u64>,
    snapshot: Histogram<u64>,
}

impl Intervals {
    fn push(&mut self, now: Instant, delivery_cumulative: &Histogram<u64>) {
        let mut interval = delivery_cumulative.clone();
        if interval.subtract(&self.last_delivery).is_err() {
            // Counts only grow; if a node's histogram was reset, keep the cumulative one.
            interval = delivery_cumulative.clone();
        }
        let offset = self.last_at - self.t0;
        let length = now - self.last_at;
        self.log.push(offset, length, "delivery", interval);
        let snap = std::mem::replace(&mut self.snapshot, new_histogram());
        self.log.push(offset, length, "snapshot", snap);
        self.last_at = now;
        self.last_delivery = delivery_cumulative.clone();
    }
}

/// `shutter demo`.
pub async fn run(args: DemoArgs) -> Result<ExitCode> {
    let plan = faults::plan_from(&args).map_err(usage)?;
    let target = match (args.snapshots, args.duration) {
        (None, None) => Some(DEFAULT_SNAPSHOTS),
        (s, _) => s,
    };
    if target == Some(0) || args.duration.is_some_and(|d| d.is_zero()) {
        return Err(usage("--snapshots and --duration must be positive"));
    }
    if args.interval.is_zero() || args.tick.is_zero() || args.snapshot_timeout.is_zero() {
        return Err(usage(
            "--interval, --tick and --snapshot-timeout must be positive",
        ));
    }
    let json_to_stdout = args.json.as_deref() == Some(Path::new("-"));
    check_outputs(&args, json_to_stdout)?;
    let (scrape_tx, mut scrapes) = tokio::sync::mpsc::channel::<crate::metrics::Scrape>(4);
    let metrics_server = match args.metrics {
        Some(addr) => Some(tokio::spawn(crate::metrics::serve(
            crate::metrics::bind(addr).await?,
            scrape_tx,
        ))),
        None => None,
    };
    let mut aborted_by_node: BTreeMap<NodeId, BTreeMap<&'static str, u64>> = BTreeMap::new();
    let n = args.nodes;
    let bank = BankConfig {
        seed: args.seed,
        ..BankConfig::default()
    };
    let expected_total = u64::from(n) * bank.initial;
    let shared = Arc::new(Shared::default());
    let mut base = NodeConfig {
        faults: Some(plan),
        ..args
            .algorithm
            .node_config(args.snapshot_timeout, args.tick, args.seed)
    };
    // Zero setup and still secure: a fresh cluster key for this run only.
    base.transport.auth = if args.insecure {
        tracing::warn!("--insecure: the demo's datagrams are plain (not authenticated)");
        Auth::Insecure
    } else {
        Auth::Keys(KeyRing::random().context("making the demo's cluster key")?)
    };
    let started_wall = SystemTime::now();
    let mut cluster = LocalCluster::start(n as usize, base, |id| {
        TaggedBank::new(Bank::new(id, bank), shared.clone())
    })
    .await
    .context("starting the local cluster")?;
    let t0 = Instant::now();

    let bar_len = target.unwrap_or_else(|| {
        let d = args.duration.unwrap_or_default().saturating_sub(WARMUP);
        (d.as_secs_f64() / args.interval.as_secs_f64()).ceil() as u64
    });
    let progress = Progress::new(args.quiet || json_to_stdout, bar_len.max(1));
    progress.line(|| {
        format!(
            "{n} bank nodes on 127.0.0.1, {} snapshots every {:?}, faults: loss {} dup {} reorder {} corrupt {}",
            args.algorithm.name(),
            args.interval,
            args.loss,
            args.dup,
            args.reorder,
            args.corrupt
        )
    });

    let mut out = Outcomes::default();
    let mut intervals = Intervals {
        log: IntervalLog {
            start: Some(started_wall),
            intervals: Vec::new(),
        },
        t0,
        last_at: t0,
        last_delivery: new_histogram(),
        snapshot: new_histogram(),
    };
    let mut initiate = tokio::time::interval_at(t0 + WARMUP, args.interval);
    initiate.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut sampler = tokio::time::interval_at(t0 + SAMPLE, SAMPLE);
    sampler.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let stop_at = args.duration.map(|d| t0 + d);
    let mut next_initiator = 0u32;
    // Set once no more snapshots will be started: then wait for the pending ones.
    let mut starting_done: Option<Instant> = None;
    let grace = args.snapshot_timeout + Duration::from_secs(5);
    // Ctrl-C or SIGTERM: start no more snapshots, let the running ones finish (a second
    // signal stops waiting), then drain, summarize and write the reports as usual.
    let mut interrupted = false;
    let stop = crate::stop_requested();
    tokio::pin!(stop);

    loop {
        if let Some(done) = starting_done {
            if out.pending.is_empty() || done.elapsed() > grace {
                break;
            }
        }
        tokio::select! {
            _ = &mut stop => {
                if interrupted {
                    break;
                }
                interrupted = true;
                progress.line(|| "interrupted: no more snapshots; finishing the running ones".into());
                starting_done = Some(Instant::now());
                stop.set(crate::stop_requested());
            }
            _ = initiate.tick(), if starting_done.is_none() => {
                let now = Instant::now();
                if stop_at.is_some_and(|s| now >= s) {
                    starting_done = Some(now);
                    continue;
                }
                let on = NodeId(next_initiator % n);
                next_initiator += 1;
                match cluster.initiate(on).await {
                    Ok(id) => {
                        out.pending.insert(id, now);
                        out.started += 1;
                    }
                    Err(e) => {
                        out.initiate_failures += 1;
                        progress.line(|| format!("{on} refused to initiate: {e}"));
                    }
                }
                if target.is_some_and(|t| out.started + out.initiate_failures >= t) {
                    starting_done = Some(Instant::now());
                }
            }
            Some(scrape) = scrapes.recv() => {
                let mut nodes = Vec::new();
                for node in cluster.nodes() {
                    nodes.push(crate::metrics::NodeSample {
                        stats: node.stats().await.context("reading node statistics")?,
                        aborted_by_reason: aborted_by_node.get(&node.id()).cloned().unwrap_or_default(),
                        admin_refused: 0,
                    });
                }
                let _ = scrape.send(crate::metrics::render(&nodes));
            }
            _ = sampler.tick() => {
                let s = sample(&cluster).await?;
                intervals.push(Instant::now(), &s.delivery);
                let (c, k, a) = (out.completed, out.consistent, out.aborted);
                progress.set(c + a, || format!(
                    "completed {c} (consistent {k}), aborted {a}, transfers {}/{}",
                    s.delivered, s.sent
                ));
            }
            event = cluster.next_event() => {
                let Some((node, event)) = event else {
                    bail!("every node stopped before the demo finished");
                };
                match event {
                    NodeEvent::Completed(snap) => {
                        let line = out.completed(snap, expected_total, &mut intervals.snapshot);
                        progress.line(|| line);
                    }
                    NodeEvent::Aborted { id, reason } if node == id.initiator => {
                        if out.pending.remove(&id).is_some() {
                            out.aborted += 1;
                            out.failed_checks += u64::from(reason.why == AbortWhy::FailedCheck);
                            *out.abort_reasons.entry(reason.why.to_string()).or_default() += 1;
                            *aborted_by_node
                                .entry(node)
                                .or_default()
                                .entry(crate::metrics::reason_label(&reason.why))
                                .or_default() += 1;
                            progress.line(|| format!("snapshot {id} aborted: {reason}"));
                        }
                    }
                    NodeEvent::Aborted { .. }
                    | NodeEvent::LocalCut { .. }
                    | NodeEvent::Committed(_)
                    | NodeEvent::Resumed { .. } => {}
                }
                let (c, k, a) = (out.completed, out.consistent, out.aborted);
                progress.set(c + a, || format!("completed {c} (consistent {k}), aborted {a}"));
            }
            // Wakes the loop to check the grace deadline.
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
    if let Some(server) = metrics_server {
        server.abort();
    }
    let unfinished = out.pending.len() as u64;
    for (id, _) in std::mem::take(&mut out.pending) {
        out.fail(format!(
            "snapshot {id} neither completed nor aborted within {grace:?}"
        ));
    }

    // Stop transfers and let the network drain, then count the money.
    shared.paused.store(true, Ordering::Relaxed);
    progress.line(|| "transfers stopped; waiting for the network to drain".to_string());
    let drain_start = Instant::now();
    let mut quiesced = false;
    let mut last = sample(&cluster).await?;
    while drain_start.elapsed() < QUIESCE {
        if last.sent == last.delivered {
            // Ticks may still be running one last transfer: confirm once more.
            tokio::time::sleep(args.tick * 2 + Duration::from_millis(20)).await;
            let again = sample(&cluster).await?;
            if again.sent == again.delivered && again.sent == last.sent {
                quiesced = true;
                last = again;
                break;
            }
            last = again;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            last = sample(&cluster).await?;
        }
    }
    let mut final_total = 0u64;
    for node in cluster.nodes() {
        final_total += node
            .app_state::<BankState>()
            .await
            .context("reading a final balance")?
            .balance;
    }
    intervals.push(Instant::now(), &last.delivery);
    let duration = t0.elapsed();
    let stats = cluster
        .shutdown()
        .await
        .context("shutting the cluster down")?;
    progress.finish();

    let delivery = merge(stats.iter().map(|s| &s.transport.core.delivery_latency));
    let snapshot = merge(stats.iter().map(|s| s.snapshots.latency()));
    let mut summary = summarize(&args, &stats, &out, duration);
    summary.started_at = shutter_snapshot::report::rfc3339(started_wall);
    summary.snapshots_unfinished = unfinished;
    summary.duplicates_delivered = shared.duplicates.load(Ordering::Relaxed);
    summary.expected_total = expected_total;
    summary.final_total = final_total;
    summary.quiesced = quiesced;
    summary.snapshot_latency_us = Percentiles::of(&snapshot);
    summary.delivery_latency_us = Percentiles::of(&delivery);
    if !quiesced {
        out.fail(format!(
            "the network did not drain within {QUIESCE:?} ({} of {} transfers delivered)",
            last.delivered, last.sent
        ));
    }
    if final_total != expected_total {
        out.fail(format!(
            "final balances add up to {final_total}, expected {expected_total}"
        ));
    }
    if out.completed == 0 {
        out.fail("no snapshot completed: the run proves nothing".to_string());
    }
    summary.failures = out.failures.clone();
    summary.judge();

    // The files first, but a failure to write them (a disk filled up during the run)
    // must not cost the table: it is printed either way, the error after it.
    let written = (|| -> Result<()> {
        if let Some(dir) = &args.out {
            report::write_dir(dir, &summary, &delivery, &snapshot, &intervals.log)?;
            if let Some(last) = &out.last {
                persist::save(&dir.join("last.snap"), last)?;
            }
            for snap in &out.failed_snapshots {
                let name = format!("failed-{}-{}.snap", snap.id.initiator, snap.id.s);
                persist::save(&dir.join(name), snap)?;
            }
        }
        if let Some(p) = args.json.as_ref().filter(|_| !json_to_stdout) {
            let json = serde_json::to_string_pretty(&summary)?;
            std::fs::write(p, json + "\n").with_context(|| format!("writing {}", p.display()))?;
        }
        Ok(())
    })();
    let hist = HistogramJson::of("snapshot_latency_us", &snapshot);
    if json_to_stdout {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        summary.print_table_with(&mut std::io::stderr().lock(), Some(&hist))?;
    } else {
        summary.print_table_with(&mut std::io::stdout().lock(), Some(&hist))?;
    }
    written?;
    if let Some(dir) = &args.out {
        if !json_to_stdout {
            println!("report written to {}", dir.display());
        }
    }
    std::io::stdout().flush()?;
    Ok(if interrupted {
        eprintln!("interrupted: the summary covers what ran");
        ExitCode::from(130)
    } else if summary.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Makes sure the report can be written before the run starts, not after (a file given
/// as `--out`, or `--json` into a missing directory, failed only once everything had
/// run). Creates the `--out` directory.
fn check_outputs(args: &DemoArgs, json_to_stdout: bool) -> Result<()> {
    if let Some(dir) = &args.out {
        if dir.exists() && !dir.is_dir() {
            return Err(usage(format!(
                "--out {}: exists and is not a directory",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--out {}: cannot create the directory", dir.display()))
            .map_err(|e| usage(crate::describe(&e)))?;
    }
    if let Some(p) = args.json.as_ref().filter(|_| !json_to_stdout) {
        if p.is_dir() {
            return Err(usage(format!(
                "--json {}: is a directory (give a file name)",
                p.display()
            )));
        }
        let parent = p.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(d) = parent.filter(|d| !d.is_dir()) {
            return Err(usage(format!(
                "--json {}: directory {} does not exist",
                p.display(),
                d.display()
            )));
        }
    }
    Ok(())
}

/// The summary fields that come from flags, outcomes and final node statistics.
fn summarize(args: &DemoArgs, stats: &[NodeStats], out: &Outcomes, duration: Duration) -> Summary {
    let sum = |f: &dyn Fn(&NodeStats) -> u64| stats.iter().map(f).sum::<u64>();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Summary {
        schema_version: crate::summary::SCHEMA_VERSION,
        tool: concat!("shutter ", env!("CARGO_PKG_VERSION")).to_string(),
        command_line: std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        algorithm: args.algorithm.name().to_string(),
        seed: args.seed,
        nodes: args.nodes,
        duration_s: (duration.as_secs_f64() * 10.0).round() / 10.0,
        faults: FaultSummary {
            loss: args.loss,
            dup: args.dup,
            reorder: args.reorder,
            corrupt: args.corrupt,
            jitter_ms: ms(args.jitter),
            delay_ms: ms(args.delay),
            partitions: args
                .partition
                .iter()
                .map(|p| {
                    let side = |s: &[u32]| {
                        s.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
                    };
                    format!(
                        "{:?}..{:?}:{}{}{}",
                        p.start,
                        p.end,
                        side(&p.side_a),
                        if p.one_way { ">" } else { "|" },
                        side(&p.side_b)
                    )
                })
                .collect(),
        },
        snapshots_started: out.started,
        snapshots_completed: out.completed,
        snapshots_aborted: out.aborted,
        snapshots_failed_check: out.failed_checks,
        snapshots_unfinished: 0,
        initiate_failures: out.initiate_failures,
        snapshots_consistent: out.consistent,
        invariant_violations: out.violations,
        abort_reasons: out.abort_reasons.clone(),
        failures: Vec::new(),
        messages_sent: sum(&|s| s.app_messages_sent),
        messages_delivered: sum(&|s| s.app_messages_delivered),
        duplicates_delivered: 0,
        retransmits: sum(&|s| s.transport.core.retransmits),
        datagrams_sent: sum(&|s| s.transport.core.datagrams_sent),
        bytes_sent: sum(&|s| s.transport.core.bytes_sent),
        pings_sent: sum(&|s| s.transport.core.pings_sent),
        datagrams_dropped_by_faults: sum(&|s| {
            s.transport.faults.dropped_loss + s.transport.faults.dropped_partition
        }),
        // Sealed, a network duplicate of a datagram is indistinguishable from a replay.
        transport_duplicates_dropped: sum(&|s| {
            s.transport.core.duplicates_dropped
                + s.transport.core.duplicate_packets
                + s.transport.core.replayed_dropped
        }),
        // Sealed, a corrupted datagram fails authentication instead of the CRC.
        corrupt_dropped: sum(&|s| {
            s.transport.core.corrupt_dropped + s.transport.core.auth_failed_dropped
        }),
        malformed_envelopes: sum(&|s| s.malformed_envelopes + s.lean_undecodable),
        latency_note: "snapshot: initiation to completion at the initiator, snapshots started \
                       on a fixed schedule; delivery: sender's stamp at first transmission to \
                       delivery (retransmission delay included), every transport message (transfers and \
                       snapshot control, so more than messages_delivered); per-node histograms \
                       merged with add"
            .to_string(),
        ..Summary::default()
    }
}
