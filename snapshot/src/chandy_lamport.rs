//! The Chandy-Lamport marker algorithm: the baseline, correct only over FIFO channels.
//!
//! The initiator records its state and sends a marker on every outgoing channel. A node
//! receiving its first marker records its state, sends markers on all its channels and
//! records every other incoming channel until that channel's marker arrives; the channel
//! the first marker came on is empty. Reports go to the initiator as in [`crate::mattern`].
//!
//! Correctness rests on the marker separating pre-cut from post-cut messages on each
//! channel, which FIFO guarantees. Over shutter's *unordered* transport a post-cut
//! message can overtake the marker (the receiver delivers it before its cut: an
//! inconsistent cut) and a marker can overtake a pre-cut message (it is never recorded:
//! money vanishes from the bank). `snapshot/tests/engine_chandy_lamport.rs` shows both;
//! use the transport's ordered mode, and send markers through the same ordered stream as
//! application messages, to run this engine correctly.
//!
//! Vector clocks are kept only so completed snapshots can be checked by
//! [`crate::verify`]; the algorithm does not use them. Same call order as every
//! [`SnapshotEngine`]: mutate, drain `poll_transmit`/`poll_event`, re-arm `poll_timeout`.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use shutter_transport::Time;
use shutter_vclock::{NodeId, VClock};

use crate::engine::SnapshotEngine;
use crate::global::{AbortReason, AbortWhy, Delivery, InitiateError, SnapshotEvent};
use crate::mattern::EngineConfig;
use crate::mattern::collector::Collector;
use crate::recent::Recent;
use crate::wire::{AppHeader, LocalReport, RecordedMessage, SnapshotId};

/// Chandy-Lamport control messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClControl {
    /// The marker: separates pre-cut from post-cut messages on a FIFO channel.
    Marker {
        /// The snapshot.
        id: SnapshotId,
    },
    /// Participant to initiator: state, cut and channel states.
    Report(Box<LocalReport>),
    /// Initiator to all: completed, forget it.
    Done {
        /// The snapshot.
        id: SnapshotId,
    },
    /// Abandon the snapshot (participant to initiator, initiator to all).
    Abort {
        /// The snapshot.
        id: SnapshotId,
        /// Who was missing and why.
        reason: AbortReason,
    },
}

impl ClControl {
    /// The snapshot this message is about.
    pub fn id(&self) -> SnapshotId {
        match self {
            ClControl::Marker { id } | ClControl::Done { id } | ClControl::Abort { id, .. } => *id,
            ClControl::Report(r) => r.id,
        }
    }
}

#[derive(Debug)]
struct Part {
    cut: VClock,
    cut_at: Time,
    deadline: Time,
    state: Vec<u8>,
    /// Channels still recording (no marker yet).
    open: BTreeMap<NodeId, Vec<RecordedMessage>>,
    /// Channels whose marker arrived.
    closed: BTreeMap<NodeId, Vec<RecordedMessage>>,
    reported: bool,
}

/// Chandy-Lamport engine for one node (reuses [`EngineConfig`]).
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    nodes: Vec<NodeId>,
    clock: VClock,
    active: BTreeMap<SnapshotId, Part>,
    collecting: BTreeMap<SnapshotId, Collector>,
    finished: Recent,
    transmits: VecDeque<(NodeId, ClControl)>,
    events: VecDeque<SnapshotEvent>,
}

impl Engine {
    /// A fresh engine.
    pub fn new(cfg: EngineConfig) -> Self {
        let mut nodes = cfg.nodes.clone();
        nodes.push(cfg.me);
        nodes.sort_unstable();
        nodes.dedup();
        let mut clock = VClock::new();
        crate::mattern::raise_own_entry(&mut clock, cfg.me, cfg.clock_floor);
        Self {
            finished: Recent::new(cfg.remember_finished),
            cfg,
            nodes,
            clock,
            active: BTreeMap::new(),
            collecting: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    fn others(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .copied()
            .filter(|&n| n != self.cfg.me)
            .collect()
    }

    fn send(&mut self, to: NodeId, c: ClControl) {
        if let Some(col) = self.collecting.get_mut(&c.id()) {
            col.control_messages += 1;
        }
        self.transmits.push_back((to, c));
    }

    /// Records the local state and sends markers everywhere; `from` is the channel the
    /// first marker came on (empty by definition).
    fn record(&mut self, now: Time, id: SnapshotId, state: Vec<u8>, from: Option<NodeId>) {
        let others = self.others();
        let mut part = Part {
            cut: self.clock.clone(),
            cut_at: now,
            deadline: now + self.cfg.timeout * 2,
            state,
            open: others.iter().map(|&n| (n, Vec::new())).collect(),
            closed: BTreeMap::new(),
            reported: false,
        };
        if let Some(f) = from
            && let Some(ch) = part.open.remove(&f)
        {
            part.closed.insert(f, ch);
        }
        self.events.push_back(SnapshotEvent::LocalCut {
            id,
            at: now,
            clock: part.cut.clone(),
        });
        self.active.insert(id, part);
        for to in others {
            self.send(to, ClControl::Marker { id });
        }
        self.maybe_report(now, id);
    }

    fn maybe_report(&mut self, now: Time, id: SnapshotId) {
        let Some(p) = self.active.get_mut(&id) else {
            return;
        };
        if p.reported || !p.open.is_empty() {
            return;
        }
        p.reported = true;
        let report = LocalReport {
            id,
            state: std::mem::take(&mut p.state),
            cut: p.cut.clone(),
            cut_at: p.cut_at,
            channels: std::mem::take(&mut p.closed).into_iter().collect(),
            // Chandy-Lamport has no lives: it does not survive restarts.
            life: 0,
            seen: Vec::new(),
        };
        if id.initiator == self.cfg.me {
            self.on_report(now, self.cfg.me, report);
        } else {
            self.send(id.initiator, ClControl::Report(Box::new(report)));
        }
    }

    fn on_report(&mut self, now: Time, from: NodeId, report: LocalReport) {
        let id = report.id;
        let Some(col) = self.collecting.get_mut(&id) else {
            return;
        };
        col.reports.entry(from).or_insert(report);
        if col.reports.len() < self.nodes.len() {
            return;
        }
        let mut col = self.collecting.remove(&id).expect("checked above");
        self.active.remove(&id);
        self.finished.insert(id);
        col.control_messages += self.others().len() as u64;
        // Over unordered delivery this check is what catches the baseline's broken cuts
        // (a post-cut message that overtook a marker shows as `CutAfterStart`).
        match col.finish(id, &self.nodes, now) {
            Ok(snap) => {
                for to in self.others() {
                    self.transmits.push_back((to, ClControl::Done { id }));
                }
                self.events
                    .push_back(SnapshotEvent::Completed(Box::new(snap)));
            }
            Err(reason) => self.announce_abort(id, reason, None),
        }
    }

    /// Initiator: tells everyone except `told_by` that `id` is abandoned, and reports it.
    fn announce_abort(&mut self, id: SnapshotId, reason: AbortReason, told_by: Option<NodeId>) {
        for n in self.others() {
            if Some(n) != told_by {
                let reason = reason.clone();
                self.transmits
                    .push_back((n, ClControl::Abort { id, reason }));
            }
        }
        self.events.push_back(SnapshotEvent::Aborted { id, reason });
    }

    fn abort(&mut self, id: SnapshotId, reason: AbortReason, told_by: Option<NodeId>) {
        self.finished.insert(id);
        let had = self.active.remove(&id);
        let col = self.collecting.remove(&id);
        if id.initiator == self.cfg.me {
            if col.is_some() {
                self.announce_abort(id, reason, told_by);
            }
            return;
        }
        let Some(p) = had else { return };
        if p.reported && told_by.is_none() {
            return;
        }
        if told_by != Some(id.initiator) {
            let reason = reason.clone();
            self.transmits
                .push_back((id.initiator, ClControl::Abort { id, reason }));
        }
        self.events.push_back(SnapshotEvent::Aborted { id, reason });
    }

    fn missing(&self, id: SnapshotId) -> Vec<NodeId> {
        let mut m: Vec<NodeId> = match self.collecting.get(&id) {
            Some(col) => self
                .nodes
                .iter()
                .copied()
                .filter(|n| !col.reports.contains_key(n))
                .collect(),
            None => vec![id.initiator],
        };
        if let Some(p) = self.active.get(&id)
            && !p.open.is_empty()
        {
            if !self.collecting.contains_key(&id) {
                m.clear();
            }
            m.retain(|n| *n != self.cfg.me);
            m.extend(p.open.keys().copied());
        }
        m.sort_unstable();
        m.dedup();
        m
    }
}

impl SnapshotEngine for Engine {
    type Control = ClControl;

    fn me(&self) -> NodeId {
        self.cfg.me
    }

    fn clock(&self) -> &VClock {
        &self.clock
    }

    fn on_app_send(&mut self, _now: Time, _to: NodeId) -> AppHeader {
        self.clock.tick(self.cfg.me);
        AppHeader {
            ts: self.clock.clone(),
            joined: Vec::new(),
            // FIFO channels and markers close channels here; no numbering needed.
            life: 0,
            seq: 0,
        }
    }

    fn on_app_receive(
        &mut self,
        _now: Time,
        from: NodeId,
        header: &AppHeader,
        payload: &[u8],
        _state: &mut dyn FnMut() -> Vec<u8>,
    ) -> Delivery {
        // No joining here: only markers trigger the local snapshot.
        let mut recorded_in = 0;
        for p in self.active.values_mut() {
            if let Some(ch) = p.open.get_mut(&from) {
                ch.push(RecordedMessage {
                    ts: header.ts.clone(),
                    payload: payload.to_vec(),
                });
                recorded_in += 1;
            }
        }
        self.clock.merge(&header.ts);
        self.clock.tick(self.cfg.me);
        Delivery {
            joined: Vec::new(),
            recorded_in,
            stale: false,
        }
    }

    fn initiate(&mut self, now: Time, state: Vec<u8>) -> Result<SnapshotId, InitiateError> {
        if self.collecting.len() >= self.cfg.max_active {
            return Err(InitiateError::TooManyActive(self.cfg.max_active));
        }
        let s = self.clock.tick(self.cfg.me);
        let id = SnapshotId {
            initiator: self.cfg.me,
            s,
        };
        self.collecting
            .insert(id, Collector::new(now, now + self.cfg.timeout));
        self.record(now, id, state, None);
        Ok(id)
    }

    fn handle_control(
        &mut self,
        now: Time,
        from: NodeId,
        control: ClControl,
        state: &mut dyn FnMut() -> Vec<u8>,
    ) {
        let id = control.id();
        let member = |n: &NodeId| self.nodes.binary_search(n).is_ok();
        if !member(&from) || !member(&id.initiator) || self.finished.contains(&id) {
            return;
        }
        if let Some(col) = self.collecting.get_mut(&id) {
            col.control_messages += 1;
        }
        let me = self.cfg.me;
        match control {
            ClControl::Marker { id } => match self.active.get_mut(&id) {
                // A marker of a snapshot this node started in an earlier life (before a
                // crash): not ours to record again.
                None if id.initiator == me => {}
                None => {
                    let s = state();
                    self.record(now, id, s, Some(from));
                }
                Some(p) => {
                    if let Some(ch) = p.open.remove(&from) {
                        p.closed.insert(from, ch);
                    }
                    self.maybe_report(now, id);
                }
            },
            ClControl::Report(r) if id.initiator == me => self.on_report(now, from, *r),
            ClControl::Done { id } if from == id.initiator => {
                self.active.remove(&id);
                self.finished.insert(id);
            }
            ClControl::Abort { id, reason } if id.initiator == me || from == id.initiator => {
                self.abort(id, reason, Some(from));
            }
            _ => {}
        }
    }

    fn peer_unreachable(&mut self, _now: Time, peer: NodeId) {
        let mut doomed: Vec<SnapshotId> = self
            .collecting
            .iter()
            .filter(|(_, c)| !c.reports.contains_key(&peer))
            .map(|(id, _)| *id)
            .collect();
        doomed.extend(
            self.active
                .iter()
                .filter(|(id, p)| {
                    !p.reported && (id.initiator == peer || p.open.contains_key(&peer))
                })
                .map(|(id, _)| *id),
        );
        doomed.sort_unstable();
        doomed.dedup();
        for id in doomed {
            let mut missing = self.missing(id);
            if !missing.contains(&peer) {
                missing.push(peer);
                missing.sort_unstable();
            }
            let why = AbortWhy::Unreachable(peer);
            self.abort(id, AbortReason { missing, why }, None);
        }
    }

    fn handle_timeout(&mut self, now: Time) {
        let mut doomed: Vec<SnapshotId> = self
            .collecting
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        doomed.extend(
            self.active
                .iter()
                .filter(|(id, p)| id.initiator != self.cfg.me && p.deadline <= now)
                .map(|(id, _)| *id),
        );
        for id in doomed {
            let missing = self.missing(id);
            let why = AbortWhy::Timeout;
            self.abort(id, AbortReason { missing, why }, None);
        }
    }

    fn poll_transmit(&mut self) -> Option<(NodeId, ClControl)> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<SnapshotEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Time> {
        let a = self.collecting.values().map(|c| c.deadline);
        let b = self
            .active
            .iter()
            .filter(|(id, _)| id.initiator != self.cfg.me)
            .map(|(_, p)| p.deadline);
        a.chain(b).min()
    }
}
