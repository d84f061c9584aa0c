//! Snapshot latency and control traffic of the node runtime over loopback UDP.
//!
//! Runs an 8-node bank cluster (`LocalCluster`, one process) at 0% and then 20%
//! Bernoulli loss on every link, takes snapshots one at a time from rotating initiators
//! under live traffic, and prints per-snapshot completion latency (p50/p99/max, from the
//! merged hdrhistograms) and control messages per snapshot, plus the transport's
//! delivery latency for comparison.
//!
//! ```text
//! cargo run --release -p shutter-snapshot --example runtime_latency -- [SNAPSHOTS] [mattern|chandy-lamport]
//! ```
//!
//! Bounded: SNAPSHOTS (default 100) per loss rate, 60 s per snapshot at most.

use std::time::{Duration, Instant};

use shutter_snapshot::bank::{Bank, BankConfig, BankInvariant};
use shutter_snapshot::metrics::SnapshotMetrics;
use shutter_snapshot::runtime::{Algorithm, LocalCluster, NodeConfig, NodeEvent};
use shutter_snapshot::verify;
use shutter_transport::faults::{FaultPlan, LinkFaults};
use shutter_vclock::NodeId;

const NODES: u32 = 8;
const INITIAL: u64 = 1_000;

type Error = Box<dyn std::error::Error>;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let snapshots: u32 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
    let algorithm: Algorithm = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or_default();
    println!(
        "{NODES} nodes, bank traffic every 5 ms per node, {snapshots} sequential snapshots, {algorithm}"
    );
    println!(
        "{:>5} | {:>9} {:>9} {:>9} | {:>8} {:>8} | {:>10} {:>10} | {:>7}",
        "loss",
        "p50 ms",
        "p99 ms",
        "max ms",
        "ctl p50",
        "ctl max",
        "deliv p50",
        "deliv p99",
        "wall s"
    );
    for loss in [0.0, 0.2] {
        run(loss, snapshots, algorithm).await?;
    }
    Ok(())
}

async fn run(loss: f64, snapshots: u32, algorithm: Algorithm) -> Result<(), Error> {
    let base = NodeConfig {
        faults: (loss > 0.0).then(|| FaultPlan::uniform(1, LinkFaults::lossy(loss))),
        algorithm,
        snapshot_timeout: Duration::from_secs(30),
        tick_interval: Duration::from_millis(5),
        ..NodeConfig::default()
    };
    let bank = |id| {
        Bank::new(
            id,
            BankConfig {
                seed: 1,
                initial: INITIAL,
                transfer_probability: 0.5,
                max_transfer: 50,
            },
        )
    };
    let mut cluster = LocalCluster::start(NODES as usize, base, bank).await?;
    let invariant = BankInvariant {
        total: u64::from(NODES) * INITIAL,
    };
    let started = Instant::now();
    for i in 0..snapshots {
        let id = cluster.initiate(NodeId(i % NODES)).await?;
        loop {
            let event = tokio::time::timeout(Duration::from_secs(60), cluster.next_event())
                .await?
                .ok_or("cluster stopped")?;
            match event {
                (_, NodeEvent::Completed(snap)) if snap.id == id => {
                    verify::check_all(&snap, &[&invariant])?;
                    break;
                }
                (node, NodeEvent::Aborted { id, reason }) => {
                    return Err(format!("snapshot {id} aborted at {node}: {reason}").into());
                }
                _ => {}
            }
        }
    }
    let wall = started.elapsed();
    let stats = cluster.shutdown().await?;
    let mut metrics = SnapshotMetrics::new();
    let mut delivery = stats[0].transport.core.delivery_latency.clone();
    delivery.reset();
    for s in &stats {
        metrics.merge(&s.snapshots)?;
        delivery.add(&s.transport.core.delivery_latency)?;
    }
    let ms = |us: u64| us as f64 / 1e3;
    let lat = metrics.latency();
    let ctl = metrics.control_messages();
    println!(
        "{:>4.0}% | {:>9.2} {:>9.2} {:>9.2} | {:>8} {:>8} | {:>10.2} {:>10.2} | {:>7.1}",
        loss * 100.0,
        ms(lat.value_at_quantile(0.5)),
        ms(lat.value_at_quantile(0.99)),
        ms(lat.max()),
        ctl.value_at_quantile(0.5),
        ctl.max(),
        ms(delivery.value_at_quantile(0.5)),
        ms(delivery.value_at_quantile(0.99)),
        wall.as_secs_f64(),
    );
    assert_eq!(metrics.completed(), u64::from(snapshots));
    Ok(())
}
