//! (d) Application throughput without snapshots, with one every 100 ms and one every
//! 10 ms, side by side.
//!
//! A cluster of [`Flood`] processes (each sends `burst` 64 B messages round-robin to its
//! peers every 1 ms tick: more than the cluster delivers on a small machine, so the
//! delivered rate is its capacity) runs for a warm-up, then for `duration` while the
//! driver initiates snapshots on schedule from rotating initiators. Throughput =
//! application messages delivered cluster-wide during that window / its length. The
//! three modes alternate round by round. Every completed snapshot is checked.

use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use shutter_snapshot::process::{Context, Process};
use shutter_snapshot::runtime::{Algorithm, LocalCluster, NodeEvent};
use shutter_vclock::NodeId;
use tokio::time::{Instant, MissedTickBehavior};

use crate::cluster::{check, config};
use crate::cpu::process_cpu;
use crate::report::{Goal, Section, Target, median, num, text};

/// A load generator: `burst` messages per tick, round-robin over the peers.
#[derive(Debug)]
pub struct Flood {
    burst: usize,
    next: usize,
    state: FloodState,
}

/// What a [`Flood`] node has sent and received (its snapshot state).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct FloodState {
    /// Messages sent.
    pub sent: u64,
    /// Messages received.
    pub received: u64,
}

impl Flood {
    /// A node sending `burst` messages per tick.
    pub fn new(burst: usize) -> Flood {
        Flood {
            burst,
            next: 0,
            state: FloodState::default(),
        }
    }
}

impl Process for Flood {
    type State = FloodState;

    fn on_message(&mut self, _ctx: &mut Context, _from: NodeId, _payload: &[u8]) {
        self.state.received += 1;
    }

    fn on_tick(&mut self, ctx: &mut Context) {
        let n = ctx.peers().len();
        if n == 0 {
            return;
        }
        for _ in 0..self.burst {
            let to = ctx.peers()[self.next % n];
            self.next = self.next.wrapping_add(1);
            ctx.send(to, vec![0x5a; 64]);
            self.state.sent += 1;
        }
    }

    fn snapshot(&self) -> FloodState {
        self.state
    }

    fn restore(&mut self, state: FloodState) {
        self.state = state;
    }
}

/// Sizes of one run.
#[derive(Clone, Debug)]
pub struct Opts {
    /// Nodes.
    pub nodes: usize,
    /// Messages per node per 1 ms tick.
    pub burst: usize,
    /// Traffic before measuring.
    pub warmup: Duration,
    /// Measured window.
    pub duration: Duration,
    /// Interleaved rounds.
    pub rounds: usize,
}

impl Opts {
    /// About half a minute in all.
    pub fn full() -> Opts {
        Opts {
            nodes: 8,
            burst: 8,
            warmup: Duration::from_millis(500),
            duration: Duration::from_secs(2),
            rounds: 3,
        }
    }

    /// Seconds-long size for tests.
    pub fn tiny() -> Opts {
        Opts {
            nodes: 3,
            burst: 1,
            warmup: Duration::from_millis(50),
            duration: Duration::from_millis(300),
            rounds: 1,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Measure {
    rate: f64,
    cpu_us: f64,
    started: u64,
    completed: u64,
    aborted: u64,
    refused: u64,
    failed_checks: u64,
    /// Transport counters summed over the nodes for the whole run (no loss is injected
    /// here: every one of these is the hosts' doing, not the network's).
    rto_expirations: u64,
    probe_copies: u64,
    spurious_losses: u64,
    urgent_copies: u64,
}

async fn delivered(cluster: &LocalCluster) -> Result<u64> {
    let mut sum = 0;
    for node in cluster.nodes() {
        sum += node.stats().await?.app_messages_delivered;
    }
    Ok(sum)
}

async fn once(opts: &Opts, every: Option<Duration>) -> Result<Measure> {
    let base = config(Algorithm::Mattern, 0.0, Duration::from_millis(1), 14);
    let burst = opts.burst;
    let mut cluster = LocalCluster::start(opts.nodes, base, |_| Flood::new(burst)).await?;
    tokio::time::sleep(opts.warmup).await;
    let mut m = Measure::default();
    let d0 = delivered(&cluster).await?;
    let cpu0 = process_cpu();
    let t0 = Instant::now();
    let end = t0 + opts.duration;
    let mut ticker = tokio::time::interval(every.unwrap_or(opts.duration * 2));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut k = 0u32;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(end) => break,
            _ = ticker.tick(), if every.is_some() => {
                match cluster.initiate(NodeId(k % opts.nodes as u32)).await {
                    Ok(_) => m.started += 1,
                    Err(_) => m.refused += 1,
                }
                k += 1;
            }
            ev = cluster.next_event() => match ev {
                Some((_, NodeEvent::Completed(snap))) => {
                    m.completed += 1;
                    if !check(&snap, &[]) {
                        m.failed_checks += 1;
                    }
                }
                Some((_, NodeEvent::Aborted { .. })) => m.aborted += 1,
                Some(_) => {}
                None => break,
            },
        }
    }
    let elapsed = t0.elapsed();
    let d1 = delivered(&cluster).await?;
    let cpu = process_cpu().saturating_sub(cpu0);
    for node in cluster.nodes() {
        let c = node.stats().await?.transport.core;
        m.rto_expirations += c.rto_expirations;
        m.probe_copies += c.probe_copies;
        m.spurious_losses += c.spurious_losses;
        m.urgent_copies += c.urgent_copies;
    }
    cluster.shutdown().await?;
    let n = d1.saturating_sub(d0);
    m.rate = n as f64 / elapsed.as_secs_f64().max(1e-9);
    m.cpu_us = cpu.as_secs_f64() * 1e6 / n.max(1) as f64;
    Ok(m)
}

/// Runs the three modes interleaved and judges the 10 ms cost target.
pub async fn run(opts: &Opts) -> Result<Section> {
    let modes: [(&str, Option<Duration>); 3] = [
        ("no snapshots", None),
        ("every 100 ms", Some(Duration::from_millis(100))),
        ("every 10 ms", Some(Duration::from_millis(10))),
    ];
    let mut all: Vec<Vec<Measure>> = vec![Vec::new(); modes.len()];
    for round in 0..opts.rounds.max(1) {
        // Rotate which mode goes first so none always follows a teardown.
        for j in 0..modes.len() {
            let i = (round + j) % modes.len();
            all[i].push(once(opts, modes[i].1).await?);
            // Let the previous cluster's sockets and tasks wind down.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let mut s = Section::new(
        "throughput",
        format!(
            "application messages delivered/s, {} Mattern nodes on loopback offered {} msgs/s each, {} s windows, median of {} interleaved rounds",
            opts.nodes,
            opts.burst * 1000,
            opts.duration.as_secs_f64(),
            opts.rounds.max(1)
        ),
        &[
            "snapshots",
            "msgs/s (median)",
            "min",
            "max",
            "cost %",
            "CPU us/msg",
            "completed",
            "aborted",
            "refused",
            "failed checks",
            "probe timeouts",
            "probe copies",
            "spurious losses",
            "urgent copies",
        ],
    );
    let base = median(&all[0].iter().map(|m| m.rate).collect::<Vec<_>>());
    let mut cost10 = None;
    for (i, (name, _)) in modes.iter().enumerate() {
        let rates: Vec<f64> = all[i].iter().map(|m| m.rate).collect();
        let med = median(&rates);
        let cost = 100.0 * (1.0 - med / base);
        if i == 2 {
            cost10 = Some(cost);
        }
        let sum = |f: fn(&Measure) -> u64| all[i].iter().map(f).sum::<u64>() as f64;
        s.row(vec![
            text(*name),
            num(med.round()),
            num(rates.iter().copied().fold(f64::INFINITY, f64::min).round()),
            num(rates.iter().copied().fold(0.0, f64::max).round()),
            num(cost),
            num(median(&all[i].iter().map(|m| m.cpu_us).collect::<Vec<_>>())),
            num(sum(|m| m.completed)),
            num(sum(|m| m.aborted)),
            num(sum(|m| m.refused)),
            num(sum(|m| m.failed_checks)),
            num(sum(|m| m.rto_expirations)),
            num(sum(|m| m.probe_copies)),
            num(sum(|m| m.spurious_losses)),
            num(sum(|m| m.urgent_copies)),
        ]);
    }
    s.targets.push(Target::new(
        "throughput cost of a snapshot every 10 ms <= 5 %",
        cost10,
        Goal::AtMost,
        5.0,
        "%",
    ));
    s.notes.push(
        "cost % = 1 - median rate / median rate without snapshots; counts are summed over rounds; no loss is injected, so probe timeouts (with their copies), spurious losses and urgent copies all come from the hosts (late timers, stalled tasks); a probe timeout declares nothing lost"
            .into(),
    );
    Ok(s)
}
