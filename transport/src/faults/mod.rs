//! Seeded fault injection at the datagram boundary.
//!
//! [`Faults`] takes one datagram at a time (`from`, `to`, send time, bytes) and returns the
//! copies that arrive and when: zero (lost or partitioned), one, or two (duplicated), each
//! possibly delayed, held back (reordered) or with bits flipped. The same object serves the
//! tokio driver, which applies it to outgoing datagrams over real sockets, and the
//! simulator, which calls it for every datagram of its in-memory network.
//!
//! Determinism: one `u64` seed in the [`FaultPlan`] derives a separate ChaCha8 stream per
//! directed link, and every datagram consumes a fixed number of draws from its link's
//! stream. So the k-th datagram from `a` to `b` meets the same fate in every run with the
//! same seed, even when links interleave differently (as they do over real sockets).
//! Partitions are the exception by design: they depend on the send time.
//!
//! Order of decisions per datagram: partition, bandwidth queue, loss, duplication, then per
//! copy: delay + jitter, reordering hold-back, corruption.
//!
//! ```
//! use shutter_transport::faults::{FaultPlan, Faults, LinkFaults};
//! use shutter_transport::Time;
//! use shutter_vclock::NodeId;
//!
//! let mut faults = Faults::new(FaultPlan::uniform(7, LinkFaults::lossy(0.5))).unwrap();
//! let mut out = Vec::new();
//! for _ in 0..100 {
//!     faults.apply(Time::ZERO, NodeId(0), NodeId(1), b"hello", &mut out);
//! }
//! let stats = faults.stats();
//! assert_eq!(stats.dropped_loss + stats.delivered, 100);
//! assert_eq!(out.len() as u64, stats.delivered);
//! ```

mod config;
mod link;
mod loss;
mod partition;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use shutter_vclock::NodeId;

pub use config::{FaultConfigError, FaultPlan, LinkFaults, LinkOverride, LossModel, Partition};

use crate::time::Time;
use link::LinkState;

/// One copy of a datagram that survives the faults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatagramCopy {
    /// When it arrives at the receiver (never before the send time).
    pub at: Time,
    /// Its bytes, possibly corrupted.
    pub bytes: Vec<u8>,
}

/// What the faults did so far, summed over all links.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultStats {
    /// Datagrams handed to [`Faults::apply`].
    pub datagrams: u64,
    /// Copies that came out (`datagrams - dropped + duplicated`).
    pub delivered: u64,
    /// Datagrams dropped by the loss model.
    pub dropped_loss: u64,
    /// Datagrams dropped by a partition.
    pub dropped_partition: u64,
    /// Extra copies created.
    pub duplicated: u64,
    /// Copies with flipped bits.
    pub corrupted: u64,
    /// Copies held back by the reordering delay.
    pub reordered: u64,
    /// Copies that arrive later than they were sent (any delay, jitter, queueing).
    pub delayed: u64,
}

/// Fault injector for every link of a cluster; see the module docs.
pub struct Faults {
    plan: FaultPlan,
    epoch: Time,
    /// Boxed: a link state holds its own ChaCha generator (hundreds of bytes), which
    /// the map would otherwise move whenever it grows. A hash map, since it is only
    /// ever looked up by link, never iterated (so its order cannot matter): a B-tree
    /// over the ~8000 links of a 256-node simulation took four node visits, mostly
    /// cache misses, per datagram.
    links: HashMap<(NodeId, NodeId), Box<LinkState>>,
    stats: FaultStats,
}

impl Faults {
    /// An injector whose partition windows count from `Time::ZERO` (simulator time).
    pub fn new(plan: FaultPlan) -> Result<Faults, FaultConfigError> {
        Faults::with_epoch(plan, Time::ZERO)
    }

    /// An injector whose partition windows count from `epoch` (a driver passes its start
    /// time, since its clock reads wall-clock microseconds).
    pub fn with_epoch(plan: FaultPlan, epoch: Time) -> Result<Faults, FaultConfigError> {
        plan.validate()?;
        Ok(Faults {
            plan,
            epoch,
            links: HashMap::new(),
            stats: FaultStats::default(),
        })
    }

    /// One datagram from `from` to `to` sent at `now`: appends its surviving copies, with
    /// their arrival times, to `out` (not sorted; the caller queues them by `at`).
    pub fn apply(
        &mut self,
        now: Time,
        from: NodeId,
        to: NodeId,
        datagram: &[u8],
        out: &mut Vec<DatagramCopy>,
    ) {
        self.stats.datagrams += 1;
        let faults = self.plan.link(from, to);
        if self.plan.partitions.is_empty() && faults.is_perfect() {
            // Perfect links draw nothing: their configuration never changes, so skipping
            // the draws cannot misalign their stream.
            self.stats.delivered += 1;
            out.push(DatagramCopy {
                at: now,
                bytes: datagram.to_vec(),
            });
            return;
        }
        let cut = partition::partitioned(&self.plan.partitions, now - self.epoch, from, to);
        let seed = self.plan.seed;
        self.links
            .entry((from, to))
            .or_insert_with(|| Box::new(LinkState::new(seed, from, to)))
            .apply(faults, cut, now, datagram, out, &mut self.stats);
    }

    /// Counters so far.
    pub fn stats(&self) -> &FaultStats {
        &self.stats
    }

    /// The plan this injector follows.
    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("plan", &self.plan)
            .field("epoch", &self.epoch)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
