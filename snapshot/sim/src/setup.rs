//! [`Sim`]: what a simulated run does, set up with a builder, then run.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shutter_snapshot::process::Process;
use shutter_snapshot::topology::Topology;
use shutter_snapshot::{chandy_lamport, mattern};
use shutter_transport::faults::{LinkFaults, LinkOverride, Partition};
use shutter_vclock::NodeId;

use crate::cut::{Cut, End, Progress};
use crate::report::Report;
use crate::script::Script;
use crate::world::World;

/// Which snapshot algorithm the nodes run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Algorithm {
    /// Mattern's vector-time algorithm over the unordered transport (production).
    #[default]
    Mattern,
    /// Chandy-Lamport's markers over the transport's ordered (FIFO) mode. It cannot
    /// roll back, so crashed nodes come back fresh (as with [`Sim::recovery`] off).
    ChandyLamport,
    /// Chandy-Lamport over unordered delivery: broken on purpose, to see the checks
    /// catch it.
    ChandyLamportUnordered,
}

/// A typed check over a completed snapshot.
pub(crate) type SnapCheck<S> = Box<dyn Fn(&Cut<'_, S>) -> Result<(), String>>;
/// A check over the processes at the end.
pub(crate) type EndCheck<P> = Box<dyn Fn(&End<'_, P>) -> Result<(), String>>;
/// A condition that ends the traffic early.
pub(crate) type StopWhen<P> = Box<dyn Fn(&Progress<'_, P>) -> bool>;

/// One crash of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CrashPlan {
    pub(crate) node: NodeId,
    pub(crate) at: Duration,
    pub(crate) down: Duration,
    pub(crate) lose_disk: bool,
}

/// One simulated run of the process built by `F`, set up step by step and then run
/// ([`Sim::run_for`]). Defaults: seed 0, Mattern, perfect links with 200 µs delay, no
/// crashes, a tick every 10 ms, no snapshots, recovery on.
pub struct Sim<P: Process> {
    pub(crate) topology: Topology,
    pub(crate) factory: Box<dyn FnMut(NodeId) -> P>,
    pub(crate) seed: u64,
    pub(crate) algorithm: Algorithm,
    pub(crate) faults: LinkFaults,
    pub(crate) links: Vec<LinkOverride>,
    pub(crate) partitions: Vec<Partition>,
    pub(crate) crashes: Vec<CrashPlan>,
    pub(crate) random_crashes: usize,
    pub(crate) tick: Option<Duration>,
    pub(crate) ticks_at: Vec<Duration>,
    pub(crate) snapshot_every: Option<Duration>,
    pub(crate) snapshots: Vec<(Duration, NodeId)>,
    pub(crate) commands: Vec<(Duration, NodeId, Vec<u8>)>,
    pub(crate) recovery: bool,
    pub(crate) log: bool,
    pub(crate) snapshot_timeout: Duration,
    pub(crate) invariants: Vec<(String, SnapCheck<P::State>)>,
    pub(crate) end_checks: Vec<(String, EndCheck<P>)>,
    pub(crate) max_steps: u64,
    pub(crate) stop_when: Option<StopWhen<P>>,
}

impl<P: Process + 'static> Sim<P> {
    /// A cluster of the nodes of `topology`, each running the process `factory` builds
    /// for it. The factory is called again for a node that comes back after a crash:
    /// the new process starts as on a first start and then gets the state restored.
    pub fn new(topology: Topology, factory: impl FnMut(NodeId) -> P + 'static) -> Self {
        Sim {
            topology,
            factory: Box::new(factory),
            seed: 0,
            algorithm: Algorithm::Mattern,
            faults: LinkFaults {
                delay: Duration::from_micros(200),
                ..LinkFaults::default()
            },
            links: Vec::new(),
            partitions: Vec::new(),
            crashes: Vec::new(),
            random_crashes: 0,
            tick: Some(Duration::from_millis(10)),
            ticks_at: Vec::new(),
            snapshot_every: None,
            snapshots: Vec::new(),
            commands: Vec::new(),
            recovery: true,
            log: true,
            snapshot_timeout: Duration::from_millis(1500),
            invariants: Vec::new(),
            end_checks: Vec::new(),
            max_steps: 5_000_000,
            stop_when: None,
        }
    }

    /// The seed of every random choice (faults, random crashes, transport ids).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The snapshot algorithm.
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// The faults of every directed link (datagrams of the application and of the
    /// protocol alike).
    pub fn faults(mut self, faults: LinkFaults) -> Self {
        self.faults = faults;
        self
    }

    /// Different faults on the link `from -> to`.
    pub fn link(mut self, from: NodeId, to: NodeId, faults: LinkFaults) -> Self {
        self.links.push(LinkOverride { from, to, faults });
        self
    }

    /// Cuts `side_a` off from `side_b` (both ways) in `[from, until)` of virtual time.
    pub fn partition(
        mut self,
        side_a: &[NodeId],
        side_b: &[NodeId],
        from: Duration,
        until: Duration,
    ) -> Self {
        self.partitions.push(Partition {
            start: from,
            end: until,
            side_a: side_a.to_vec(),
            side_b: side_b.to_vec(),
            one_way: false,
        });
        self
    }

    /// A real crash of `node` at `at` (kill -9: its process, engine, vector clock and
    /// transport are gone); `down` later a new process comes back with its disk.
    pub fn crash(mut self, node: NodeId, at: Duration, down: Duration) -> Self {
        self.crashes.push(CrashPlan {
            node,
            at,
            down,
            lose_disk: false,
        });
        self
    }

    /// A crash that loses the node's disk too: it comes back with nothing.
    pub fn crash_losing_disk(mut self, node: NodeId, at: Duration, down: Duration) -> Self {
        self.crashes.push(CrashPlan {
            node,
            at,
            down,
            lose_disk: true,
        });
        self
    }

    /// `count` more crashes drawn from the seed: random nodes, random moments in the
    /// first 80% of the run, down 1-100 ms each.
    pub fn random_crashes(mut self, count: usize) -> Self {
        self.random_crashes = count;
        self
    }

    /// How often every process's [`Process::on_tick`] runs (`None`: never). Ticks stop
    /// when the run's traffic time ends.
    pub fn tick(mut self, every: Option<Duration>) -> Self {
        self.tick = every;
        self
    }

    /// One extra [`Process::on_tick`] of every process that is up at `at`, besides the
    /// periodic ones (with `tick(None)` these are the only ticks, so a test can pin
    /// every one). In the traffic time only, as commands; at the instant of a periodic
    /// tick, processes tick twice.
    pub fn tick_at(mut self, at: Duration) -> Self {
        self.ticks_at.push(at);
        self
    }

    /// Starts a snapshot every `every`, initiators taking turns in node order (a node
    /// that is down skips its turn).
    pub fn snapshot_every(mut self, every: Duration) -> Self {
        self.snapshot_every = Some(every);
        self
    }

    /// Starts a snapshot at `node` at `at`.
    pub fn snapshot_at(mut self, at: Duration, node: NodeId) -> Self {
        self.snapshots.push((at, node));
        self
    }

    /// Hands `command` to `node`'s [`Process::on_command`] at `at` (a scripted
    /// workload: the process decides what the bytes mean).
    pub fn command(mut self, at: Duration, node: NodeId, command: impl Into<Vec<u8>>) -> Self {
        self.commands.push((at, node, command.into()));
        self
    }

    /// Puts the steps of `script` on this run at their times: its sends and commands,
    /// snapshots, crashes, partitions (each until the `heal` after it, or for the whole
    /// run) and ticks. Run for longer than [`Script::duration`]: steps happen in the
    /// traffic time only.
    pub fn script(self, script: &Script) -> Self {
        script.apply(self)
    }

    /// With recovery (the default, as `shutter node`) every node keeps a checkpoint
    /// store of the snapshots it committed, and a node back from a crash rolls the
    /// cluster back to the newest snapshot every member holds. Without, it comes back
    /// as a fresh process and rejoins (its state and what it held are gone).
    pub fn recovery(mut self, on: bool) -> Self {
        self.recovery = on;
        self
    }

    /// Keep the event log in the report (on by default; off saves memory on long
    /// runs).
    pub fn log(mut self, on: bool) -> Self {
        self.log = on;
        self
    }

    /// How long a snapshot may take before its initiator aborts it (1.5 s).
    pub fn snapshot_timeout(mut self, timeout: Duration) -> Self {
        self.snapshot_timeout = timeout;
        self
    }

    /// A property every completed snapshot must have, over the decoded states and the
    /// channel contents: `Err(why)` is reported as a violation naming the snapshot.
    pub fn invariant(
        mut self,
        name: &str,
        check: impl Fn(&Cut<'_, P::State>) -> Result<(), String> + 'static,
    ) -> Self {
        self.invariants.push((name.to_string(), Box::new(check)));
        self
    }

    /// A property of the live processes once the run ended and the network is quiet.
    pub fn at_end(
        mut self,
        name: &str,
        check: impl Fn(&End<'_, P>) -> Result<(), String> + 'static,
    ) -> Self {
        self.end_checks.push((name.to_string(), Box::new(check)));
        self
    }

    /// Ends the traffic time early, at the first moment `condition` holds (checked
    /// after every step); the run then settles and checks as usual. For example
    /// `.stop_when(|p| p.completed() >= 10)`, with [`Sim::run_for`] as the upper
    /// bound. [`Report::stopped_at`] says when it did.
    pub fn stop_when(mut self, condition: impl Fn(&Progress<'_, P>) -> bool + 'static) -> Self {
        self.stop_when = Some(Box::new(condition));
        self
    }

    /// Bound on simulation steps; a run that needs more is reported as a livelock.
    pub fn max_steps(mut self, steps: u64) -> Self {
        self.max_steps = steps;
        self
    }

    /// The crashes of the run: the explicit ones plus the random ones, by time.
    pub(crate) fn crash_plan(&self, traffic: Duration) -> Vec<CrashPlan> {
        let mut all = self.crashes.clone();
        let nodes = self.topology.nodes();
        let mut r = ChaCha8Rng::seed_from_u64(self.seed ^ 0xc4a5_11ed_c4a5_11ed);
        let window = (traffic.as_micros() as u64 * 8 / 10).max(1);
        for _ in 0..self.random_crashes {
            if nodes.is_empty() {
                break;
            }
            all.push(CrashPlan {
                node: nodes[r.random_range(0..nodes.len())],
                at: Duration::from_micros(r.random_range(0..window)),
                down: Duration::from_millis(r.random_range(1..=100)),
                lose_disk: false,
            });
        }
        all.sort_by_key(|c| (c.at, c.node));
        all
    }

    /// Runs `traffic` of virtual time (ticks, commands, snapshots and crashes happen in
    /// it), then lets everything settle (no new traffic, every node back up, every
    /// message delivered or given up, every snapshot finished) and checks.
    pub fn run_for(self, traffic: Duration) -> Report {
        match self.algorithm {
            Algorithm::Mattern => World::<P, mattern::Engine>::new(self, traffic, false).run(),
            Algorithm::ChandyLamport => {
                World::<P, chandy_lamport::Engine>::new(self, traffic, true).run()
            }
            Algorithm::ChandyLamportUnordered => {
                World::<P, chandy_lamport::Engine>::new(self, traffic, false).run()
            }
        }
    }
}
