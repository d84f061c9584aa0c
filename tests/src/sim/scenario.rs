//! What one simulated run does, as a plain value: cluster size, link faults, partitions,
//! crashes and the snapshot schedule. Everything is explicit data (no hidden randomness
//! beyond `seed`, which feeds the fault injector and the bank), so proptest can generate
//! and shrink a [`Scenario`] and the swarm can draw one per seed, VOPR-style.

use std::fmt;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shutter_transport::faults::{LinkFaults, LossModel, Partition};
use shutter_vclock::NodeId;

/// How a node goes away and comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashKind {
    /// The node stops processing anything (datagrams to it are dropped, its timers and
    /// app ticks do not run) and then resumes with all its state, transport included.
    Pause,
    /// The transport restarts: its `Core` is discarded, with everything queued or
    /// unacknowledged in it, and rebuilt with a strictly greater incarnation. The process
    /// (bank) and the snapshot engine keep their state, as a process whose network stack
    /// was reset would. Messages in flight at the crash may be lost for good.
    Restart,
    /// A real crash (kill -9, power loss): everything in the node's memory is gone, the
    /// bank, the snapshot engine with its vector clock, the transport and the backlog.
    /// It comes back as a new process: a fresh bank with the opening balance (the money
    /// it held is gone; the checks account for it), a new engine life and a new
    /// transport incarnation. Nothing it needs is on disk (see
    /// `shutter_snapshot::life`), so the disk may be lost with it.
    Crash,
}

/// One crash of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crash {
    /// The node.
    pub node: u32,
    /// When it goes away (virtual ms).
    pub at_ms: u64,
    /// How long it stays away (ms).
    pub down_ms: u64,
    /// Pause or transport restart.
    pub kind: CrashKind,
}

/// A membership change: which node leaves or joins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// The node dies for good at that moment (or once a first snapshot completed: a
    /// removal needs one that holds the node's part) and is removed from the cluster.
    Remove(u32),
    /// The node, present from the start but waiting to join (no money, empty disk),
    /// is added.
    Add(u32),
}

/// One membership change, requested through member `via` at `at_ms` (with
/// `sim::Options::recovery` only: changes are rollback rounds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberChange {
    /// When (virtual ms; before the traffic stops).
    pub at_ms: u64,
    /// The member that coordinates it.
    pub via: u32,
    /// What changes.
    pub change: ChangeKind,
}

/// A complete description of one simulated run.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Seed of the fault injector and of the bank's transfers.
    pub seed: u64,
    /// Cluster size (2..=32).
    pub nodes: usize,
    /// Faults of every directed link.
    pub faults: LinkFaults,
    /// Timed partitions; all end before the traffic stops, so the network heals.
    pub partitions: Vec<Partition>,
    /// Crashes; all nodes are back before the traffic stops.
    pub crashes: Vec<Crash>,
    /// Snapshot initiations `(initiator, at_ms)`.
    pub initiations: Vec<(u32, u64)>,
    /// Membership changes, in time order (nodes added here start waiting to join).
    pub changes: Vec<MemberChange>,
    /// Application traffic (bank ticks) and initiations happen in `[0, traffic_ms)`.
    pub traffic_ms: u64,
    /// Bank tick interval per node (ms).
    pub tick_ms: u64,
}

impl Scenario {
    /// A fault-free scenario: `nodes` nodes, one snapshot by node 0 every 100 ms.
    pub fn calm(seed: u64, nodes: usize) -> Scenario {
        Scenario {
            seed,
            nodes,
            faults: LinkFaults {
                delay: Duration::from_micros(300),
                ..LinkFaults::default()
            },
            partitions: Vec::new(),
            crashes: Vec::new(),
            initiations: (1..10).map(|k| (0, k * 100)).collect(),
            changes: Vec::new(),
            traffic_ms: 1000,
            tick_ms: 5,
        }
    }

    /// Draws a scenario from `seed`: every fault is present with some probability and,
    /// when present, has a random strength (loss 0-50 %, duplication 0-50 %, ...).
    pub fn random(seed: u64) -> Scenario {
        let mut r = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5eed_5eed_5eed);
        let nodes = if r.random_bool(0.8) {
            r.random_range(2..=8)
        } else {
            r.random_range(9..=32)
        };
        let traffic_ms = r.random_range(800..=2000);
        let mut faults = LinkFaults {
            delay: Duration::from_micros(r.random_range(50..=3000)),
            ..LinkFaults::default()
        };
        if r.random_bool(0.7) {
            faults.loss = if r.random_bool(0.5) {
                LossModel::Bernoulli {
                    p: r.random_range(0.0..=0.5),
                }
            } else {
                LossModel::GilbertElliott {
                    p_good_to_bad: r.random_range(0.01..=0.2),
                    p_bad_to_good: r.random_range(0.2..=0.8),
                    loss_in_good: r.random_range(0.0..=0.1),
                    loss_in_bad: r.random_range(0.5..=1.0),
                }
            };
        }
        if r.random_bool(0.5) {
            faults.duplicate = r.random_range(0.0..=0.5);
        }
        if r.random_bool(0.6) {
            faults.jitter = Duration::from_micros(r.random_range(100..=10_000));
        }
        if r.random_bool(0.4) {
            faults.reorder = r.random_range(0.01..=0.3);
            faults.reorder_delay = Duration::from_micros(r.random_range(500..=20_000));
        }
        if r.random_bool(0.3) {
            faults.corrupt = r.random_range(0.0..=0.1);
        }
        let mut partitions = Vec::new();
        if r.random_bool(0.35) {
            for _ in 0..r.random_range(1..=3) {
                partitions.push(random_partition(&mut r, nodes, traffic_ms));
            }
        }
        let mut crashes = Vec::new();
        if r.random_bool(0.3) {
            for _ in 0..r.random_range(1..=2) {
                let at_ms = r.random_range(100..traffic_ms / 2);
                crashes.push(Crash {
                    node: r.random_range(0..nodes as u32),
                    at_ms,
                    down_ms: r.random_range(20..=(traffic_ms - at_ms - 50).min(1500)),
                    kind: match r.random_range(0..3) {
                        0 => CrashKind::Pause,
                        1 => CrashKind::Restart,
                        _ => CrashKind::Crash,
                    },
                });
            }
        }
        let n_init = r.random_range(1..=8usize.min(nodes));
        let mut initiators: Vec<u32> = (0..nodes as u32).collect();
        for i in 0..n_init {
            let j = r.random_range(i..initiators.len());
            initiators.swap(i, j);
        }
        let mut initiations = Vec::new();
        for &k in &initiators[..n_init] {
            let mut t = r.random_range(0..200);
            while t < traffic_ms {
                initiations.push((k, t));
                t += r.random_range(100..=600);
            }
        }
        initiations.sort_by_key(|&(k, t)| (t, k));
        // Fewer ticks in big clusters keep the cost per seed roughly flat.
        let tick_ms = (nodes as u64 * 2).clamp(5, 40);
        Scenario {
            seed,
            nodes,
            faults,
            partitions,
            crashes,
            initiations,
            changes: Vec::new(),
            traffic_ms,
            tick_ms,
        }
    }

    /// The node ids of the cluster.
    pub fn node_ids(&self) -> Vec<NodeId> {
        (0..self.nodes as u32).map(NodeId).collect()
    }

    /// Short labels of the fault kinds present (for coverage counts).
    pub fn fault_kinds(&self) -> Vec<&'static str> {
        let f = &self.faults;
        let mut k = Vec::new();
        match f.loss {
            LossModel::None => {}
            LossModel::Bernoulli { .. } => k.push("loss"),
            LossModel::GilbertElliott { .. } => k.push("burst-loss"),
        }
        if f.duplicate > 0.0 {
            k.push("dup");
        }
        if !f.jitter.is_zero() {
            k.push("jitter");
        }
        if f.reorder > 0.0 {
            k.push("reorder");
        }
        if f.corrupt > 0.0 {
            k.push("corrupt");
        }
        if self.partitions.iter().any(|p| p.one_way) {
            k.push("partition-1way");
        }
        if self.partitions.iter().any(|p| !p.one_way) {
            k.push("partition-2way");
        }
        if self.crashes.iter().any(|c| c.kind == CrashKind::Pause) {
            k.push("pause");
        }
        if self.crashes.iter().any(|c| c.kind == CrashKind::Restart) {
            k.push("restart");
        }
        if self.crashes.iter().any(|c| c.kind == CrashKind::Crash) {
            k.push("crash");
        }
        k
    }

    /// Number of distinct initiators.
    pub fn initiator_count(&self) -> usize {
        let mut k: Vec<u32> = self.initiations.iter().map(|(k, _)| *k).collect();
        k.sort_unstable();
        k.dedup();
        k.len()
    }
}

fn random_partition(r: &mut ChaCha8Rng, nodes: usize, traffic_ms: u64) -> Partition {
    let start = r.random_range(50..traffic_ms / 2);
    let end = r.random_range(start + 20..=(start + 1500).min(traffic_ms - 50));
    let mut side_a = Vec::new();
    let mut side_b = Vec::new();
    let isolate = r.random_range(0..nodes as u32);
    let split = r.random_bool(0.5);
    for n in 0..nodes as u32 {
        let a = if split {
            r.random_bool(0.5)
        } else {
            n == isolate
        };
        if a { &mut side_a } else { &mut side_b }.push(NodeId(n));
    }
    if side_a.is_empty() {
        side_a.push(side_b.remove(0));
    }
    if side_b.is_empty() {
        side_b.push(side_a.remove(0));
    }
    Partition {
        start: Duration::from_millis(start),
        end: Duration::from_millis(end),
        side_a,
        side_b,
        one_way: r.random_bool(0.4),
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lf = &self.faults;
        write!(
            f,
            "nodes={} initiators={}",
            self.nodes,
            self.initiator_count()
        )?;
        match lf.loss {
            LossModel::None => {}
            LossModel::Bernoulli { p } => write!(f, " loss={:.0}%", p * 100.0)?,
            LossModel::GilbertElliott {
                p_good_to_bad,
                p_bad_to_good,
                loss_in_good,
                loss_in_bad,
            } => write!(
                f,
                " ge-loss(p={p_good_to_bad:.2},r={p_bad_to_good:.2},good={loss_in_good:.2},bad={loss_in_bad:.2})"
            )?,
        }
        if lf.duplicate > 0.0 {
            write!(f, " dup={:.0}%", lf.duplicate * 100.0)?;
        }
        write!(f, " delay={:?}", lf.delay)?;
        if !lf.jitter.is_zero() {
            write!(f, " jitter={:?}", lf.jitter)?;
        }
        if lf.reorder > 0.0 {
            write!(
                f,
                " reorder={:.0}%/{:?}",
                lf.reorder * 100.0,
                lf.reorder_delay
            )?;
        }
        if lf.corrupt > 0.0 {
            write!(f, " corrupt={:.1}%", lf.corrupt * 100.0)?;
        }
        for p in &self.partitions {
            write!(
                f,
                " partition({:?}..{:?} {:?}{}{:?})",
                p.start,
                p.end,
                p.side_a.iter().map(|n| n.0).collect::<Vec<_>>(),
                if p.one_way { "->" } else { "<->" },
                p.side_b.iter().map(|n| n.0).collect::<Vec<_>>()
            )?;
        }
        for c in &self.crashes {
            write!(
                f,
                " {:?}(n{} at {}ms for {}ms)",
                c.kind, c.node, c.at_ms, c.down_ms
            )?;
        }
        for c in &self.changes {
            write!(f, " {:?}(at {}ms via n{})", c.change, c.at_ms, c.via)?;
        }
        write!(
            f,
            " snapshots={} traffic={}ms tick={}ms",
            self.initiations.len(),
            self.traffic_ms,
            self.tick_ms
        )
    }
}
