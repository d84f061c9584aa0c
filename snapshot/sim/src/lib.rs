//! A deterministic simulator for testing *your own* [`Process`] under lossy-link faults,
//! with consistent snapshots checked against your invariants.
//!
//! Every node runs the production per-node code, [`shutter_snapshot::stack::Stack`]
//! (your process, the snapshot engine, the transport core with sealed datagrams), so
//! what passes here is what `shutter node` and the runtime run. Around it the
//! simulator supplies virtual time, a seeded fault injector per link (loss, bursts,
//! duplication, reordering, delay, jitter, corruption, partitions) and real crashes:
//! a crashed node loses everything in memory and comes back as a new process built by
//! your factory, recovering from the checkpoints it had written (the cluster rolls
//! back to the newest snapshot every member holds, as `shutter node` does) or, with
//! [`Sim::recovery`] off, starting fresh.
//!
//! Every completed snapshot is checked: cut consistency and channel sanity
//! ([`shutter_snapshot::verify`]), then each of your [`Sim::invariant`]s over the
//! decoded states and channel contents ([`Cut`]). At the end, once the network is
//! quiet, each [`Sim::at_end`] check runs over the live processes. A failure names the
//! seed and the command that replays it ([`Report::assert_ok`]).
//!
//! ```
//! use std::time::Duration;
//! use serde::{Deserialize, Serialize};
//! use shutter_sim::{Context, LinkFaults, NodeId, Process, Sim, Topology};
//!
//! /// Passes one token around a one-way ring.
//! struct Ring { me: NodeId, tokens: u32 }
//! #[derive(Serialize, Deserialize)]
//! struct State { tokens: u32 }
//!
//! impl Process for Ring {
//!     type State = State;
//!     fn on_tick(&mut self, ctx: &mut Context) {
//!         if self.tokens > 0 {
//!             self.tokens -= 1;
//!             let next = ctx.peers()[0];
//!             ctx.send(next, vec![1]);
//!         }
//!     }
//!     fn on_message(&mut self, _: &mut Context, _: NodeId, _: &[u8]) { self.tokens += 1; }
//!     fn snapshot(&self) -> State { State { tokens: self.tokens } }
//!     fn restore(&mut self, s: State) { self.tokens = s.tokens; }
//! }
//!
//! for seed in shutter_sim::seeds(4) {
//!     Sim::new(Topology::ring(4), |me| Ring { me, tokens: u32::from(me == NodeId(0)) })
//!         .seed(seed)
//!         .faults(LinkFaults {
//!             duplicate: 0.1,
//!             reorder: 0.2,
//!             reorder_delay: Duration::from_millis(3),
//!             ..LinkFaults::lossy(0.1)
//!         })
//!         .crash(NodeId(2), Duration::from_millis(300), Duration::from_millis(50))
//!         .snapshot_every(Duration::from_millis(40))
//!         .invariant("one token", |cut| {
//!             let held: u32 = cut.states().map(|(_, s)| s.tokens).sum();
//!             let moving = cut.in_flight().count() as u32;
//!             if held + moving == 1 { Ok(()) } else { Err(format!("{} tokens", held + moving)) }
//!         })
//!         .run_for(Duration::from_secs(1))
//!         .assert_ok();
//! }
//! ```
//!
//! Modules: [`Sim`] (the builder and run), [`Cut`] and [`End`] (what invariants see),
//! [`Report`] (the outcome, the event log and the replay line), [`script`] (an exact
//! schedule of sends, snapshots, crashes, partitions and ticks, written as text or built
//! in Rust, put on a run with [`Sim::script`]), [`picture`] (a space-time diagram of one
//! snapshot as SVG: node lines, messages as arrows, the cut, the recorded channel
//! states; [`Report::svg`]). Determinism: all randomness comes from
//! the seed, every map is ordered, and nothing reads a clock; running the same setup
//! twice gives the same report.

mod cut;
mod node;
pub mod picture;
mod report;
pub mod script;
mod setup;
mod world;

pub use cut::{Cut, End, Progress};
pub use report::{LogEntry, LogKind, Report};
pub use setup::{Algorithm, Sim};

pub use shutter_snapshot::process::{Context, Process, Undeliverable};
pub use shutter_snapshot::topology::{Channels, Topology};
pub use shutter_snapshot::{AbortReason, GlobalSnapshot, RecordedMessage, SnapshotId};
pub use shutter_transport::Time;
pub use shutter_transport::faults::{LinkFaults, LossModel, Partition};
pub use shutter_vclock::NodeId;

/// The seeds a test should run: `SHUTTER_SIM_SEED=s` gives just `s` (replaying one
/// failure), `SHUTTER_SIM_SEEDS=n` gives `0..n`, and otherwise `0..default`.
pub fn seeds(default: u64) -> Vec<u64> {
    let var = |name| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if let Some(s) = var("SHUTTER_SIM_SEED") {
        return vec![s];
    }
    (0..var("SHUTTER_SIM_SEEDS").unwrap_or(default)).collect()
}
