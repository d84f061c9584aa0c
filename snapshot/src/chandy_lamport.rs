//! The Chandy-Lamport marker algorithm: the baseline, correct only over FIFO channels.
//!
//! The initiator records its state and sends a marker on every outgoing channel. A node
//! receiving its first marker records its state, sends markers on all its channels and
//! records every other incoming channel until that channel's marker arrives; the channel
//! the first marker came on is empty. Reports go to the initiator as in [`crate::mattern`].
//!
//! With a [`crate::topology`], markers go out on outgoing channels only and the node
//! waits for them on incoming channels only: one marker per channel.
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

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shutter_transport::Time;
use shutter_vclock::{NodeId, VClock};

use crate::collect::{Collection, Msg, Outputs};
use crate::engine::{EngineConfig, SnapshotEngine};
use crate::global::{AbortReason, AbortWhy, Delivery, InitiateError, SnapshotEvent};
use crate::wire::{AppHeader, CutCounts, LocalReport, RecordedMessage, SnapshotId};

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
    /// Message counts at the cut, for [`crate::verify::check_counts`].
    counts: CutCounts,
}

impl From<Msg> for ClControl {
    fn from(m: Msg) -> ClControl {
        match m {
            Msg::Report(r) => ClControl::Report(r),
            Msg::Done(id, _) => ClControl::Done { id },
            Msg::Abort(id, reason) => ClControl::Abort { id, reason },
        }
    }
}

/// Chandy-Lamport engine for one node (configured like every engine, [`EngineConfig`]).
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    clock: VClock,
    active: BTreeMap<SnapshotId, Part>,
    /// Application messages sent per receiver (the algorithm does not need them; the
    /// snapshot's counts do).
    sent: BTreeMap<NodeId, u64>,
    /// Per sender: its engine life and the messages of that life delivered here.
    delivered: BTreeMap<NodeId, (u64, u64)>,
    /// The collection protocol shared with Mattern (reports, outcome, finished ids).
    col: Collection,
    out: Outputs<ClControl>,
}

impl Engine {
    /// A fresh engine.
    pub fn new(cfg: EngineConfig) -> Self {
        let mut clock = VClock::new();
        crate::mattern::raise_own_entry(&mut clock, cfg.me, cfg.clock_floor);
        Self {
            col: Collection::new(&cfg, false),
            cfg,
            clock,
            active: BTreeMap::new(),
            sent: BTreeMap::new(),
            delivered: BTreeMap::new(),
            out: Outputs::default(),
        }
    }

    fn send(&mut self, to: NodeId, c: ClControl) {
        let id = c.id();
        self.col.send(&mut self.out, to, id, c);
    }

    /// Records the local state and sends a marker on every outgoing channel; `from` is
    /// the channel the first marker came on (empty by definition). Only incoming
    /// channels are recorded (see [`crate::topology`]).
    fn record(&mut self, now: Time, id: SnapshotId, state: Vec<u8>, from: Option<NodeId>) {
        let mut part = Part {
            cut: self.clock.clone(),
            cut_at: now,
            deadline: now + self.cfg.timeout * 2,
            state,
            open: self
                .cfg
                .incoming()
                .into_iter()
                .map(|n| (n, Vec::new()))
                .collect(),
            closed: BTreeMap::new(),
            reported: false,
            counts: CutCounts {
                sent: self.sent.iter().map(|(n, c)| (*n, *c)).collect(),
                delivered: self
                    .delivered
                    .iter()
                    .map(|(n, (life, c))| (*n, *life, *c))
                    .collect(),
                lost: Vec::new(),
            },
        };
        if let Some(f) = from
            && let Some(ch) = part.open.remove(&f)
        {
            part.closed.insert(f, ch);
        }
        self.out.events.push_back(SnapshotEvent::LocalCut {
            id,
            at: now,
            clock: part.cut.clone(),
        });
        self.active.insert(id, part);
        for to in self.cfg.outgoing() {
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
            // Chandy-Lamport cannot resume from a cut; its life only tells the counts
            // of a restarted node's processes apart.
            life: self.cfg.life,
            seen: Vec::new(),
            counts: Some(std::mem::take(&mut p.counts)),
        };
        if self.col.report(now, report, &mut self.out) {
            self.active.remove(&id);
        }
    }

    /// Initiator: a report arrived (see the collection protocol's `on_report`).
    fn on_report(&mut self, now: Time, from: NodeId, report: LocalReport) {
        let id = report.id;
        if self.col.on_report(now, from, report, &mut self.out) {
            self.active.remove(&id);
        }
    }

    /// Abandons `id` here (see the collection protocol's `abort`).
    fn abort(&mut self, id: SnapshotId, reason: AbortReason, told_by: Option<NodeId>) {
        let part = self.active.remove(&id).map(|p| p.reported);
        self.col.abort(id, reason, told_by, part, &mut self.out);
    }

    fn missing(&self, id: SnapshotId) -> Vec<NodeId> {
        let collecting = self.col.missing(&id);
        let is_collecting = collecting.is_some();
        let mut m: Vec<NodeId> = collecting.unwrap_or_else(|| vec![id.initiator]);
        if let Some(p) = self.active.get(&id)
            && !p.open.is_empty()
        {
            if !is_collecting {
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

    fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    fn on_app_send(&mut self, _now: Time, to: NodeId) -> AppHeader {
        self.clock.tick(self.cfg.me);
        *self.sent.entry(to).or_default() += 1;
        AppHeader {
            ts: self.clock.clone(),
            joined: Vec::new(),
            // FIFO channels and markers close channels here; no numbering needed. The
            // life lets receivers count per life of the sender.
            life: self.cfg.life,
            seq: 0,
        }
    }

    fn handle_app_receive(
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
        let (life, count) = self.delivered.entry(from).or_default();
        if header.life > *life {
            (*life, *count) = (header.life, 0);
        }
        if header.life == *life {
            *count += 1;
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
        self.col.can_start()?;
        let s = self.clock.tick(self.cfg.me);
        let id = SnapshotId {
            initiator: self.cfg.me,
            s,
        };
        self.col.start(now, id)?;
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
        if !self.col.is_member(from)
            || !self.col.is_member(id.initiator)
            || self.col.is_finished(&id)
        {
            return;
        }
        self.col.count(Some(id));
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
                self.col.on_done(id, None, &mut self.out);
            }
            ClControl::Abort { id, reason } if id.initiator == me || from == id.initiator => {
                self.abort(id, reason, Some(from));
            }
            _ => {}
        }
    }

    fn handle_peer_unreachable(&mut self, _now: Time, peer: NodeId) {
        let mut doomed = self.col.waiting_for(peer);
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
        let mut doomed = self.col.expired(now);
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
        self.out.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<SnapshotEvent> {
        self.out.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Time> {
        let a = self.col.poll_timeout().into_iter();
        let b = self
            .active
            .iter()
            .filter(|(id, _)| id.initiator != self.cfg.me)
            .map(|(_, p)| p.deadline);
        a.chain(b).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Topology;

    fn ring_engine(me: u32, n: u32) -> Engine {
        let cfg = EngineConfig {
            channels: Some(Topology::ring(n).channels_of(NodeId(me))),
            ..EngineConfig::new(NodeId(me), (0..n).map(NodeId).collect())
        };
        Engine::new(cfg)
    }

    fn markers(e: &mut Engine) -> Vec<NodeId> {
        let mut to = Vec::new();
        while let Some((n, c)) = e.poll_transmit() {
            if matches!(c, ClControl::Marker { .. }) {
                to.push(n);
            }
        }
        to
    }

    #[test]
    fn on_a_ring_one_marker_per_channel_and_only_incoming_channels_wait() {
        let now = Time::ZERO;
        let mut e0 = ring_engine(0, 4);
        let id = e0.initiate(now, vec![]).unwrap();
        assert_eq!(markers(&mut e0), vec![NodeId(1)]);
        // Node 1's only incoming channel is 0 -> 1, where the marker came from: its
        // cut is complete at once and it reports.
        let mut e1 = ring_engine(1, 4);
        e1.handle_control(now, NodeId(0), ClControl::Marker { id }, &mut Vec::new);
        let mut sent = Vec::new();
        while let Some((n, c)) = e1.poll_transmit() {
            sent.push((n, matches!(c, ClControl::Marker { .. })));
        }
        assert_eq!(sent, vec![(NodeId(2), true), (NodeId(0), false)]);
        // The initiator waits for its one incoming channel, 3 -> 0, only.
        assert_eq!(e0.missing(id), vec![NodeId(1), NodeId(2), NodeId(3)]);
        let p = e0.active.get(&id).unwrap();
        assert_eq!(p.open.keys().copied().collect::<Vec<_>>(), vec![NodeId(3)]);
    }
}
