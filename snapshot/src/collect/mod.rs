//! The collection protocol both engines share: how an initiator gathers the nodes'
//! [`LocalReport`]s, assembles and checks the [`crate::GlobalSnapshot`], and announces
//! the outcome; how aborts travel (a participant tells the initiator, the initiator
//! tells everyone); deadlines; which nodes a snapshot still waits for; and the bounded
//! set of finished ids that keeps late control messages from resurrecting a snapshot.
//!
//! Each engine keeps only how it cuts and records (Mattern: vector time and counts;
//! Chandy-Lamport: markers) and wraps the protocol's messages ([`Msg`]) in its own
//! control type (`From<Msg>`).

mod collector;
mod recent;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use shutter_transport::Time;
use shutter_vclock::NodeId;

use crate::engine::EngineConfig;
use crate::global::{AbortReason, InitiateError, SnapshotEvent};
use crate::wire::{LocalReport, SnapshotId};

pub(crate) use collector::Collector;
use recent::Recent;

/// The protocol's messages; each engine's control type carries them.
#[derive(Debug)]
pub(crate) enum Msg {
    /// Participant to initiator: state, cut and channel states.
    Report(Box<LocalReport>),
    /// Initiator to all: completed, forget it; the life of the receiver's part.
    Done(SnapshotId, u64),
    /// Abandon the snapshot (participant to initiator, initiator to all).
    Abort(SnapshotId, AbortReason),
}

/// An engine's output queues, in the order things were produced.
#[derive(Debug)]
pub(crate) struct Outputs<C> {
    pub(crate) transmits: VecDeque<(NodeId, C)>,
    pub(crate) events: VecDeque<SnapshotEvent>,
}

impl<C> Default for Outputs<C> {
    fn default() -> Self {
        Self {
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }
}

/// Initiator and participant bookkeeping of the collection protocol.
#[derive(Debug)]
pub(crate) struct Collection {
    me: NodeId,
    /// Sorted, deduplicated membership including `me`.
    nodes: Vec<NodeId>,
    timeout: Duration,
    max_active: usize,
    /// Snapshots this node initiated and is collecting.
    collecting: BTreeMap<SnapshotId, Collector>,
    finished: Recent,
    /// Whether collectors gather count rows (Mattern) before reports.
    rows: bool,
    /// This node's reports to other initiators, kept until the outcome is known: a
    /// `Done` commits them (`SnapshotEvent::Committed`), an abort drops them.
    kept: BTreeMap<SnapshotId, LocalReport>,
}

impl Collection {
    /// For an engine configured with `cfg`; `rows`: see [`Collector::new`].
    pub(crate) fn new(cfg: &EngineConfig, rows: bool) -> Self {
        let mut nodes = cfg.nodes.clone();
        nodes.push(cfg.me);
        nodes.sort_unstable();
        nodes.dedup();
        Self {
            me: cfg.me,
            nodes,
            timeout: cfg.timeout,
            max_active: cfg.max_active,
            collecting: BTreeMap::new(),
            finished: Recent::new(cfg.remember_finished),
            rows,
            kept: BTreeMap::new(),
        }
    }

    /// Every node, this one included, sorted.
    pub(crate) fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    /// The other nodes, sorted.
    pub(crate) fn others(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .copied()
            .filter(|&n| n != self.me)
            .collect()
    }

    pub(crate) fn is_member(&self, n: NodeId) -> bool {
        self.nodes.binary_search(&n).is_ok()
    }

    /// True if `id` completed or aborted here recently: its messages are ignored.
    pub(crate) fn is_finished(&self, id: &SnapshotId) -> bool {
        self.finished.contains(id)
    }

    /// No snapshot is being collected here, and no report waits for its outcome.
    pub(crate) fn is_idle(&self) -> bool {
        self.collecting.is_empty() && self.kept.is_empty()
    }

    /// Starts collecting `id`, initiated here at `now`.
    pub(crate) fn start(&mut self, now: Time, id: SnapshotId) -> Result<(), InitiateError> {
        if self.collecting.len() >= self.max_active {
            return Err(InitiateError::TooManyActive(self.max_active));
        }
        self.collecting
            .insert(id, Collector::new(now, now + self.timeout, self.rows));
        Ok(())
    }

    /// Checks that a new snapshot could start (before the engine ticks for it).
    pub(crate) fn can_start(&self) -> Result<(), InitiateError> {
        if self.collecting.len() >= self.max_active {
            return Err(InitiateError::TooManyActive(self.max_active));
        }
        Ok(())
    }

    /// The collector of `id`, if this node is collecting it.
    pub(crate) fn collector_mut(&mut self, id: &SnapshotId) -> Option<&mut Collector> {
        self.collecting.get_mut(id)
    }

    /// Counts one control message of `id` (sent or received) if collecting it.
    pub(crate) fn count(&mut self, id: Option<SnapshotId>) {
        if let Some(col) = id.and_then(|id| self.collecting.get_mut(&id)) {
            col.control_messages += 1;
        }
    }

    /// Queues `c` to `to`, counted against the snapshot it is about.
    pub(crate) fn send<C>(&mut self, out: &mut Outputs<C>, to: NodeId, id: SnapshotId, c: C) {
        self.count(Some(id));
        out.transmits.push_back((to, c));
    }

    /// A participant's part is done: the report goes to the initiator (or is filed here).
    /// Returns true if it completed the snapshot here (or aborted it at the check).
    pub(crate) fn report<C: From<Msg>>(
        &mut self,
        now: Time,
        report: LocalReport,
        out: &mut Outputs<C>,
    ) -> bool {
        let id = report.id;
        if id.initiator == self.me {
            self.on_report(now, self.me, report, out)
        } else {
            self.kept.insert(id, report.clone());
            self.send(out, id.initiator, id, Msg::Report(Box::new(report)).into());
            false
        }
    }

    /// Initiator: a report arrived; assemble, check and announce when all are in.
    /// Returns true if the snapshot ended here.
    pub(crate) fn on_report<C: From<Msg>>(
        &mut self,
        now: Time,
        from: NodeId,
        report: LocalReport,
        out: &mut Outputs<C>,
    ) -> bool {
        let id = report.id;
        let Some(col) = self.collecting.get_mut(&id) else {
            return false;
        };
        // With rows, a report before every row was in would mean a forged or confused
        // peer: ignore it.
        if self.rows && !col.expected_sent {
            return false;
        }
        col.reports.entry(from).or_insert(report);
        self.conclude_if_complete(now, id, out)
    }

    /// Initiator: completes `id` if every report is in (final ones, or the early ones
    /// [`Collector::settle_closed`] filed). Returns true if the snapshot ended here.
    pub(crate) fn conclude_if_complete<C: From<Msg>>(
        &mut self,
        now: Time,
        id: SnapshotId,
        out: &mut Outputs<C>,
    ) -> bool {
        let Some(col) = self.collecting.get(&id) else {
            return false;
        };
        if col.reports.len() < self.nodes.len() {
            return false;
        }
        self.conclude(now, id, out);
        true
    }

    /// Participant: keeps `report` (sent early, with its row) until the outcome is known,
    /// unless a later report replaces it.
    pub(crate) fn keep(&mut self, report: LocalReport) {
        self.kept.insert(report.id, report);
    }

    /// Initiator: every report of `id` is in; assemble, check and announce.
    fn conclude<C: From<Msg>>(&mut self, now: Time, id: SnapshotId, out: &mut Outputs<C>) {
        let Some(mut col) = self.collecting.remove(&id) else {
            return;
        };
        self.finished.insert(id);
        let others = self.others();
        col.control_messages += others.len() as u64;
        let mine = col.reports.get(&self.me).cloned();
        let snap_lives: BTreeMap<NodeId, u64> =
            col.reports.iter().map(|(n, r)| (*n, r.life)).collect();
        match col.finish(id, &self.nodes, now) {
            Ok(snap) => {
                for to in others {
                    let life = snap_lives.get(&to).copied().unwrap_or(0);
                    out.transmits.push_back((to, Msg::Done(id, life).into()));
                }
                tracing::debug!(%id, control = snap.control_messages, "snapshot completed");
                out.events
                    .push_back(SnapshotEvent::Completed(Box::new(snap)));
                if let Some(mine) = mine {
                    out.events
                        .push_back(SnapshotEvent::Committed(Box::new(mine)));
                }
            }
            Err(reason) => self.announce_abort(id, reason, None, out),
        }
    }

    /// Participant: the initiator announced `id` complete; this node's part of it is
    /// committed, if it is the part the initiator used (`life`, where engines have
    /// lives).
    pub(crate) fn on_done<C>(&mut self, id: SnapshotId, life: Option<u64>, out: &mut Outputs<C>) {
        self.finished.insert(id);
        if let Some(part) = self
            .kept
            .remove(&id)
            .filter(|p| life.is_none_or(|l| l == p.life))
        {
            out.events
                .push_back(SnapshotEvent::Committed(Box::new(part)));
        }
    }

    /// Abandons `id` here. `part` is this node's participant part, if it had one
    /// (`Some(reported)`). The initiator tells everyone except `told_by`; a participant
    /// tells the initiator unless the initiator is who told it, and stays quiet if its
    /// part was already reported (the outcome is then the initiator's call).
    pub(crate) fn abort<C: From<Msg>>(
        &mut self,
        id: SnapshotId,
        reason: AbortReason,
        told_by: Option<NodeId>,
        part: Option<bool>,
        out: &mut Outputs<C>,
    ) {
        self.finished.insert(id);
        self.kept.remove(&id);
        let col = self.collecting.remove(&id);
        if id.initiator == self.me {
            if col.is_some() {
                self.announce_abort(id, reason, told_by, out);
            }
            return;
        }
        let Some(reported) = part else { return };
        if reported && told_by.is_none() {
            return;
        }
        if told_by != Some(id.initiator) {
            out.transmits
                .push_back((id.initiator, Msg::Abort(id, reason.clone()).into()));
        }
        tracing::debug!(%id, %reason, "snapshot aborted");
        out.events.push_back(SnapshotEvent::Aborted { id, reason });
    }

    /// Initiator: tells everyone except `told_by` that `id` is abandoned, and reports it.
    fn announce_abort<C: From<Msg>>(
        &mut self,
        id: SnapshotId,
        reason: AbortReason,
        told_by: Option<NodeId>,
        out: &mut Outputs<C>,
    ) {
        for n in self.others() {
            if Some(n) != told_by {
                out.transmits
                    .push_back((n, Msg::Abort(id, reason.clone()).into()));
            }
        }
        tracing::debug!(%id, %reason, "snapshot aborted");
        out.events.push_back(SnapshotEvent::Aborted { id, reason });
    }

    /// Nodes the collection of `id` still waits for (`None` if not collecting it).
    pub(crate) fn missing(&self, id: &SnapshotId) -> Option<Vec<NodeId>> {
        self.collecting.get(id).map(|c| c.missing(&self.nodes))
    }

    /// Snapshots being collected whose deadline has passed.
    pub(crate) fn expired(&self, now: Time) -> Vec<SnapshotId> {
        self.collecting
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Snapshots being collected that still wait for `peer`'s report.
    pub(crate) fn waiting_for(&self, peer: NodeId) -> Vec<SnapshotId> {
        if !self.is_member(peer) {
            return Vec::new();
        }
        self.collecting
            .iter()
            .filter(|(_, c)| !c.reports.contains_key(&peer))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The earliest collection deadline.
    pub(crate) fn poll_timeout(&self) -> Option<Time> {
        self.collecting.values().map(|c| c.deadline).min()
    }
}
