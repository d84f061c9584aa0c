//! Snapshot metrics: completion latency (initiation to completion, µs, both stamps from
//! the initiator's clock), control messages per snapshot and recorded channel messages
//! per snapshot, as hdrhistograms so nodes can be merged with `add` (never by averaging
//! percentiles). Feed it [`SnapshotEvent`]s with [`SnapshotMetrics::observe`]; print or
//! export the histograms with [`crate::report`].

use std::sync::OnceLock;

use hdrhistogram::Histogram;
use hdrhistogram::errors::AdditionError;

use crate::global::{GlobalSnapshot, SnapshotEvent};

/// Histograms and counters over snapshots seen by one node (or merged over many).
#[derive(Clone, Debug)]
pub struct SnapshotMetrics {
    /// Built on the first completed snapshot: a latency histogram (1 µs to 1 h at 3
    /// digits) is 188 KB of counts to allocate and zero, and most nodes never initiate a
    /// snapshot (in the simulator at 256 nodes, one per node was 3.5% of the run).
    /// `None` reads as an empty one ([`empty_latency`]).
    latency_us: Option<Histogram<u64>>,
    /// The two count histograms are built on the first completed snapshot too (each is
    /// 16 KB to zero; at 256 nodes building them was 1.5% of the simulator's run).
    /// `None` reads as an empty one ([`empty_counts`]).
    control_messages: Option<Histogram<u64>>,
    recorded_messages: Option<Histogram<u64>>,
    completed: u64,
    aborted: u64,
    failed_checks: u64,
}

impl Default for SnapshotMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl SnapshotMetrics {
    /// Empty metrics.
    pub fn new() -> Self {
        Self {
            latency_us: None,
            control_messages: None,
            recorded_messages: None,
            completed: 0,
            aborted: 0,
            failed_checks: 0,
        }
    }

    /// Records a completed snapshot.
    pub fn record_completed(&mut self, snap: &GlobalSnapshot) {
        self.completed += 1;
        // Latencies beyond the histogram's hour are clamped rather than dropped.
        let latency = self
            .latency_us
            .get_or_insert_with(crate::report::new_histogram);
        let lat = snap.timings.latency_micros().min(latency.high());
        latency.saturating_record(lat);
        self.control_messages
            .get_or_insert_with(new_counts)
            .saturating_record(snap.control_messages);
        self.recorded_messages
            .get_or_insert_with(new_counts)
            .saturating_record(snap.recorded_messages() as u64);
    }

    /// Counts an aborted snapshot.
    pub fn record_aborted(&mut self) {
        self.aborted += 1;
    }

    /// Counts a snapshot this node initiated that failed the check before completion
    /// (`AbortWhy::FailedCheck`; must never happen).
    pub fn record_failed_check(&mut self) {
        self.failed_checks += 1;
    }

    /// Snapshots initiated here that failed the check before completion (also counted
    /// as aborted).
    pub fn failed_checks(&self) -> u64 {
        self.failed_checks
    }

    /// Updates from an engine event (local cuts and commits are ignored).
    pub fn observe(&mut self, event: &SnapshotEvent) {
        match event {
            SnapshotEvent::Completed(s) => self.record_completed(s),
            SnapshotEvent::Aborted { .. } => self.record_aborted(),
            SnapshotEvent::LocalCut { .. } | SnapshotEvent::Committed(_) => {}
        }
    }

    /// Initiation-to-completion latency in microseconds.
    pub fn latency(&self) -> &Histogram<u64> {
        self.latency_us.as_ref().unwrap_or_else(|| empty_latency())
    }

    /// Control messages per completed snapshot.
    pub fn control_messages(&self) -> &Histogram<u64> {
        self.control_messages
            .as_ref()
            .unwrap_or_else(|| empty_counts())
    }

    /// Recorded channel messages per completed snapshot.
    pub fn recorded_messages(&self) -> &Histogram<u64> {
        self.recorded_messages
            .as_ref()
            .unwrap_or_else(|| empty_counts())
    }

    /// Completed snapshots.
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// Aborted snapshots.
    pub fn aborted(&self) -> u64 {
        self.aborted
    }

    /// Adds another node's metrics into these.
    pub fn merge(&mut self, other: &SnapshotMetrics) -> Result<(), AdditionError> {
        // Adding an empty histogram changes nothing.
        if let Some(theirs) = &other.latency_us {
            self.latency_us
                .get_or_insert_with(crate::report::new_histogram)
                .add(theirs)?;
        }
        if let Some(theirs) = &other.control_messages {
            self.control_messages
                .get_or_insert_with(new_counts)
                .add(theirs)?;
        }
        if let Some(theirs) = &other.recorded_messages {
            self.recorded_messages
                .get_or_insert_with(new_counts)
                .add(theirs)?;
        }
        self.completed += other.completed;
        self.aborted += other.aborted;
        self.failed_checks += other.failed_checks;
        Ok(())
    }
}

/// A histogram of counts per snapshot. Counts have no natural ceiling: it resizes.
fn new_counts() -> Histogram<u64> {
    let mut counts = Histogram::new(3).expect("3 significant digits are valid");
    counts.auto(true);
    counts
}

/// A count histogram of metrics that saw no completed snapshot.
fn empty_counts() -> &'static Histogram<u64> {
    static EMPTY: OnceLock<Histogram<u64>> = OnceLock::new();
    EMPTY.get_or_init(new_counts)
}

/// The latency histogram of metrics that saw no completed snapshot.
fn empty_latency() -> &'static Histogram<u64> {
    static EMPTY: OnceLock<Histogram<u64>> = OnceLock::new();
    EMPTY.get_or_init(crate::report::new_histogram)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use shutter_transport::Time;
    use shutter_vclock::NodeId;

    use super::*;
    use crate::global::{AbortReason, AbortWhy, Timings};
    use crate::wire::{RecordedMessage, SnapshotId};

    fn snap(latency: u64, control: u64, recorded: usize) -> GlobalSnapshot {
        let id = SnapshotId {
            initiator: NodeId(0),
            s: 1,
        };
        let msg = RecordedMessage {
            ts: Default::default(),
            payload: vec![],
        };
        GlobalSnapshot {
            id,
            states: BTreeMap::new(),
            cuts: BTreeMap::new(),
            channels: [((NodeId(1), NodeId(0)), vec![msg; recorded])]
                .into_iter()
                .collect(),
            timings: Timings {
                started: Time(1_000),
                local_cuts: BTreeMap::new(),
                completed: Time(1_000 + latency),
            },
            control_messages: control,
            counts: Default::default(),
        }
    }

    #[test]
    fn records_and_merges() {
        let mut a = SnapshotMetrics::new();
        a.observe(&SnapshotEvent::Completed(Box::new(snap(500, 10, 2))));
        let mut b = SnapshotMetrics::new();
        b.record_completed(&snap(1_500, 20, 0));
        b.observe(&SnapshotEvent::Aborted {
            id: SnapshotId {
                initiator: NodeId(0),
                s: 2,
            },
            reason: AbortReason {
                missing: vec![NodeId(1)],
                why: AbortWhy::Timeout,
            },
        });
        a.merge(&b).unwrap();
        assert_eq!((a.completed(), a.aborted()), (2, 1));
        assert_eq!(a.latency().len(), 2);
        assert!(a.latency().equivalent(a.latency().max(), 1_500));
        assert_eq!(a.control_messages().max(), 20);
        assert_eq!(a.recorded_messages().max(), 2);
    }

    #[test]
    fn metrics_without_snapshots_read_as_empty_latency_histograms() {
        let empty = SnapshotMetrics::new();
        assert_eq!(empty.latency().len(), 0);
        assert_eq!(empty.control_messages().len(), 0);
        assert_eq!(empty.recorded_messages().len(), 0);
        assert_eq!(
            empty.latency().high(),
            crate::report::new_histogram().high()
        );
        let mut a = SnapshotMetrics::new();
        a.merge(&empty).unwrap();
        assert_eq!(a.latency().len(), 0);
        let mut b = SnapshotMetrics::new();
        b.record_completed(&snap(700, 1, 0));
        a.merge(&b).unwrap();
        b.merge(&empty).unwrap();
        assert_eq!((a.latency().len(), b.latency().len()), (1, 1));
        assert!(a.latency().equivalent(a.latency().max(), 700));
    }
}
