//! Mattern's vector-time snapshot algorithm for unordered channels.
//!
//! Node `i` keeps a vector clock `V_i`. A snapshot `(k, s)` starts when initiator `k`
//! ticks (`s = V_k[k]`) and records its state. A node joins `(k, s)` at the first of: the
//! initiator's [`Control::Begin`] arrives, or an application message announcing `(k, s)`
//! in its [`AppHeader::joined`] arrives; the join records the local state *before* that
//! message is delivered, and raises `V_i[k]` to `s` so everything the node sends
//! afterwards is post-cut (`ts[k] >= s`). Channel state `i -> j` is the pre-cut
//! messages `j` receives after joining. Every application message carries a per-channel
//! sequence number, so the pre-cut messages on `i -> j` are exactly numbers
//! `1..=c`, where `c` is what `i` had sent to `j` at its cut; `j` knows it has them all
//! when every number up to `c` is resolved. The counts travel through the initiator: each
//! node sends its report as it stands at the cut ([`Control::Cut`]), whose send counts
//! are its row. Once every row is in, a node whose incoming channels were all closed at
//! its cut (each pre-cut message delivered before it: `delivered == c` for every
//! sender) is done,
//! since no channel state can follow; only the others get their column
//! ([`Control::Expect`]) and report again ([`Control::Report`]) once their channels
//! close. The initiator then assembles and announces [`Control::Done`]. That is between
//! `3 (N - 1)` control messages (nothing in flight at any cut: two one-way delays) and
//! `5 (N - 1)`; exactly-once delivery makes the numbering sound, no FIFO is assumed
//! anywhere.
//!
//! A participant that sent its row waits for the initiator's verdict (its column, Done
//! or Abort) and does not abort on its own after that, as after a final report: its
//! report may already complete the snapshot. `Done` names the life of the part used, so
//! a process that restarted and joined again commits nothing.
//!
//! # Restarts
//!
//! When a transport session ends ([`SnapshotEngine::handle_link_reset`]: the peer restarted, or
//! this node's transport did), messages it had not delivered are gone for good. The
//! sender then tells the receiver [`Control::Lost`]: every number up to what it had sent
//! is resolved, and any straggler is discarded ([`Delivery::stale`]) rather than
//! delivered after snapshots counted it as lost. Numbers are per engine *life*
//! ([`EngineConfig::life`]), so a restarted process numbers afresh.
//!
//! # Call order (sans-IO)
//!
//! Mutate (`on_app_send`, `handle_app_receive`, `initiate`, `handle_control`,
//! `handle_peer_unreachable`, `handle_timeout`), then drain `poll_transmit` and `poll_event`
//! until `None`, then re-arm the timer from `poll_timeout`. See [`crate::engine`].
//!
//! # Bounded state
//!
//! At most [`EngineConfig::max_active`] snapshots initiated here run at once; every
//! joined snapshot has a deadline; recorded channel state per snapshot is capped by
//! [`EngineConfig::max_channel_bytes`]; finished ids are remembered in a bounded set.

mod inbound;
mod participant;

use std::collections::BTreeMap;

use shutter_transport::Time;
use shutter_vclock::{NodeId, VClock};

use crate::collect::{Collection, Msg, Outputs};
pub use crate::engine::EngineConfig;
use crate::engine::SnapshotEngine;
use crate::global::{AbortReason, AbortWhy, Delivery, InitiateError, SnapshotEvent};
use crate::wire::{AppHeader, Control, CutCounts, ExpectedCount, LocalReport, SnapshotId};
use inbound::Inbound;
use participant::Participant;

/// Mattern snapshot engine for one node. Sans-IO; see the module docs for the call order.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    clock: VClock,
    /// Application messages sent per destination in this life (= last sequence number).
    sent: BTreeMap<NodeId, u64>,
    /// Resolved sequence numbers per source.
    inbound: BTreeMap<NodeId, Inbound>,
    /// Snapshots this node has joined and not yet forgotten.
    active: BTreeMap<SnapshotId, Participant>,
    /// The collection protocol (initiator bookkeeping, aborts, finished ids).
    col: Collection,
    out: Outputs<Control>,
}

impl Engine {
    /// A fresh engine with the zero clock.
    pub fn new(cfg: EngineConfig) -> Self {
        Self::restored(cfg, VClock::new())
    }

    /// An engine resuming from a restored snapshot: its clock starts at the node's cut
    /// clock, its own entry raised to [`EngineConfig::clock_floor`] (the events after the
    /// cut were used by the life that took it), and message counts start at zero (every
    /// node restores together, so counts agree). Re-delivered channel messages go through
    /// [`Engine::absorb`].
    pub fn restored(cfg: EngineConfig, mut clock: VClock) -> Self {
        raise_own_entry(&mut clock, cfg.me, cfg.clock_floor);
        Self {
            col: Collection::new(&cfg, true),
            cfg,
            clock,
            sent: BTreeMap::new(),
            inbound: BTreeMap::new(),
            active: BTreeMap::new(),
            out: Outputs::default(),
        }
    }

    /// Merges the timestamp of a message re-delivered from a restored channel state
    /// (it is not counted: it belongs to the previous run).
    pub fn absorb(&mut self, ts: &VClock) {
        self.clock.merge(ts);
        self.clock.tick(self.cfg.me);
    }

    /// Membership, sorted.
    pub fn nodes(&self) -> &[NodeId] {
        self.col.nodes()
    }

    /// Snapshots this node has joined and still tracks.
    pub fn active(&self) -> impl Iterator<Item = SnapshotId> + '_ {
        self.active.keys().copied()
    }

    /// True if nothing is in progress here (no snapshot state, nothing queued).
    pub fn is_idle(&self) -> bool {
        self.active.is_empty()
            && self.col.is_idle()
            && self.out.transmits.is_empty()
            && self.out.events.is_empty()
    }

    fn me(&self) -> NodeId {
        self.cfg.me
    }

    fn is_member(&self, n: NodeId) -> bool {
        self.col.is_member(n)
    }

    fn send(&mut self, to: NodeId, c: Control) {
        self.col.count(c.id());
        self.out.transmits.push_back((to, c));
    }

    /// Joins every snapshot in `ids` not joined or finished yet, all at this one point:
    /// one local state (taken through `state` at most once) and one cut clock, recorded
    /// before any of the joins raises the clock, so no join leaks into another's cut.
    fn join_all(
        &mut self,
        now: Time,
        ids: &[SnapshotId],
        state: &mut dyn FnMut() -> Vec<u8>,
    ) -> Vec<SnapshotId> {
        let new: Vec<SnapshotId> = ids
            .iter()
            .copied()
            .filter(|id| {
                // A node joins its own snapshots only by initiating them: one it does not
                // know was started by an earlier life of this node, before a crash.
                id.initiator != self.cfg.me
                    && id.s >= self.cfg.ids_from
                    && !self.active.contains_key(id)
                    && !self.col.is_finished(id)
                    && self.is_member(id.initiator)
            })
            .collect();
        if new.is_empty() {
            return new;
        }
        let cut = self.clock.clone();
        let local = state();
        for &id in &new {
            self.join(now, id, local.clone(), cut.clone());
        }
        // From here on everything this node sends must be post-cut: ts[k] >= s.
        for id in &new {
            if self.clock.get(id.initiator) < id.s {
                self.clock.set(id.initiator, id.s);
            }
        }
        new
    }

    /// Takes the local cut for `id` with `state` and `cut`, then reports the send counts
    /// to the initiator. The caller raises the clock afterwards.
    fn join(&mut self, now: Time, id: SnapshotId, state: Vec<u8>, cut: VClock) {
        // The send counts at the cut: the participant keeps them for its report, the
        // initiator gets them as this node's row.
        let row: Vec<(NodeId, u64)> = self.sent.iter().map(|(n, c)| (*n, *c)).collect();
        let p = Participant {
            id,
            cut,
            cut_at: now,
            // Participants wait twice as long as the initiator so that the initiator's
            // verdict, which names the missing nodes, normally reaches them first.
            deadline: now + self.cfg.timeout * 2,
            state,
            expected: None,
            channels: BTreeMap::new(),
            channel_bytes: 0,
            reported: false,
            counts: CutCounts {
                sent: row.clone(),
                delivered: self
                    .inbound
                    .iter()
                    .map(|(n, ib)| (*n, ib.life(), ib.delivered()))
                    .collect(),
                lost: Vec::new(),
            },
        };
        self.out.events.push_back(SnapshotEvent::LocalCut {
            id,
            at: now,
            clock: p.cut.clone(),
        });
        let early = p.early_report(self.cfg.life, &self.inbound);
        self.active.insert(id, p);
        if id.initiator == self.me() {
            self.on_row(now, self.me(), early);
        } else {
            // Kept for the commit, should the initiator complete from the early reports.
            self.col.keep(early.clone());
            self.send(
                id.initiator,
                Control::Cut {
                    report: Box::new(early),
                },
            );
        }
    }

    /// Initiator: a row of the count matrix arrived, with the sender's report at its
    /// cut. Once every row is in, a node whose incoming channels were all closed at its
    /// cut is done (its report at the cut is final); each other node gets its column.
    /// If no node is left, the snapshot completes at once.
    fn on_row(&mut self, now: Time, from: NodeId, early: LocalReport) {
        let id = early.id;
        let nodes = self.col.nodes().to_vec();
        let Some(col) = self.col.collector_mut(&id) else {
            return;
        };
        let Some(row) = early.counts.as_ref().map(|c| c.sent.clone()) else {
            return;
        };
        if col.rows.contains_key(&from) {
            return;
        }
        col.rows.insert(from, (early.life, row));
        col.early.insert(from, early);
        if col.expected_sent || col.rows.len() < nodes.len() {
            return;
        }
        // A node whose channels were all closed at its cut has its final report in
        // already; only the others get their column and report again.
        col.expected_sent = true;
        let open = col.settle_closed(&nodes);
        if open.is_empty() {
            if self.col.conclude_if_complete(now, id, &mut self.out) {
                self.active.remove(&id);
            }
            return;
        }
        let columns: Vec<(NodeId, Vec<ExpectedCount>)> = open
            .into_iter()
            .map(|to| (to, col.column(&nodes, to)))
            .collect();
        for (to, counts) in columns {
            if to == self.me() {
                self.on_expect(now, id, counts);
            } else {
                self.send(to, Control::Expect { id, counts });
            }
        }
    }

    /// Participant: the counts that close our channels arrived.
    fn on_expect(&mut self, now: Time, id: SnapshotId, counts: Vec<ExpectedCount>) {
        if let Some(p) = self.active.get_mut(&id)
            && p.expected.is_none()
        {
            p.expected = Some(
                counts
                    .into_iter()
                    .map(|(from, life, n)| (from, (life, n)))
                    .collect(),
            );
            self.maybe_report(now, id);
        }
    }

    /// Sends (or files, at the initiator) our report once all channels are closed.
    fn maybe_report(&mut self, now: Time, id: SnapshotId) {
        let Some(p) = self.active.get_mut(&id) else {
            return;
        };
        if p.reported || !p.channels_closed(&self.inbound) {
            return;
        }
        let report = p.take_report(self.cfg.life, &self.inbound);
        if self.col.report(now, report, &mut self.out) {
            self.active.remove(&id);
        }
    }

    /// `from` declared its numbers up to `upto` resolved: channels may close now.
    fn on_lost(&mut self, now: Time, from: NodeId, life: u64, upto: u64) {
        self.inbound
            .entry(from)
            .or_default()
            .resolve_upto(life, upto);
        let ids: Vec<SnapshotId> = self.active.keys().copied().collect();
        for id in ids {
            self.maybe_report(now, id);
        }
    }

    fn others(&self) -> Vec<NodeId> {
        self.col.others()
    }

    /// Abandons `id` here (see [`Collection::abort`]). A participant that awaits the
    /// initiator's verdict ([`Participant::awaits_verdict`]) counts as reported.
    fn abort(&mut self, id: SnapshotId, reason: AbortReason, told_by: Option<NodeId>) {
        let me = self.cfg.me;
        let part = self
            .active
            .remove(&id)
            .map(|p| p.reported || (id.initiator != me && p.awaits_verdict()));
        self.col.abort(id, reason, told_by, part, &mut self.out);
    }

    /// Nodes a snapshot is still waiting for, as seen from here. Where this node itself
    /// is the hold-up because a channel is still open, the senders are named instead.
    fn missing(&self, id: SnapshotId) -> Vec<NodeId> {
        let me = self.me();
        let mine = self.active.get(&id);
        let my_open = mine
            .map(|p| p.open_channels(&self.inbound))
            .unwrap_or_default();
        let mut m = match (self.col.missing(&id), mine) {
            (Some(mut m), _) => {
                if m.contains(&me) && !my_open.is_empty() {
                    m.retain(|n| *n != me);
                    m.extend(my_open);
                }
                m
            }
            (None, Some(p)) if p.expected.is_some() && !p.reported => my_open,
            _ => vec![id.initiator],
        };
        m.sort_unstable();
        m.dedup();
        m
    }
}

/// Raises `me`'s entry of `clock` to at least `floor` (a new life's first value).
pub(crate) fn raise_own_entry(clock: &mut VClock, me: NodeId, floor: u64) {
    if clock.get(me) < floor {
        clock.set(me, floor);
    }
}

impl SnapshotEngine for Engine {
    type Control = Control;

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
        let seq = self.sent.entry(to).or_default();
        *seq += 1;
        let seq = *seq;
        self.clock.tick(self.cfg.me);
        AppHeader {
            ts: self.clock.clone(),
            joined: self.active.keys().copied().collect(),
            life: self.cfg.life,
            seq,
        }
    }

    fn handle_app_receive(
        &mut self,
        now: Time,
        from: NodeId,
        header: &AppHeader,
        payload: &[u8],
        state: &mut dyn FnMut() -> Vec<u8>,
    ) -> Delivery {
        // 0. A number already resolved was counted as lost (or is a duplicate): it must
        //    not reach the application, nor touch any snapshot.
        let fresh = self
            .inbound
            .entry(from)
            .or_default()
            .admit(header.life, header.seq);
        if !fresh {
            tracing::debug!(%from, life = header.life, seq = header.seq, "stale message discarded");
            return Delivery {
                stale: true,
                ..Delivery::default()
            };
        }
        // 1. Join announced snapshots before anything else happens to this message.
        let mut delivery = Delivery {
            joined: self.join_all(now, &header.joined, state),
            recorded_in: 0,
            stale: false,
        };
        // 2. Classify against every joined snapshot: pre-cut messages received after the
        //    cut are channel state.
        let mut over_limit = Vec::new();
        let ids: Vec<SnapshotId> = self.active.keys().copied().collect();
        for id in ids {
            let p = self.active.get_mut(&id).expect("listed above");
            if id.is_post_cut(&header.ts) || p.reported {
                continue;
            }
            p.record(from, &header.ts, payload);
            delivery.recorded_in += 1;
            if p.channel_bytes > self.cfg.max_channel_bytes {
                over_limit.push(id);
            }
        }
        // 3. The receive event itself (its number was resolved by `admit` above).
        if let Some(ib) = self.inbound.get_mut(&from) {
            ib.count_delivery();
        }
        self.clock.merge(&header.ts);
        self.clock.tick(self.cfg.me);
        for id in over_limit {
            let reason = AbortReason {
                missing: Vec::new(),
                why: AbortWhy::ChannelStateTooLarge,
            };
            self.abort(id, reason, None);
        }
        let ids: Vec<SnapshotId> = self.active.keys().copied().collect();
        for id in ids {
            self.maybe_report(now, id);
        }
        delivery
    }

    fn initiate(&mut self, now: Time, state: Vec<u8>) -> Result<SnapshotId, InitiateError> {
        self.col.can_start()?;
        let s = self.clock.tick(self.cfg.me);
        let id = SnapshotId {
            initiator: self.cfg.me,
            s,
        };
        self.col.start(now, id)?;
        // Begin is a message from k sent after every cut k has taken, so like an app
        // message it announces them: a receiver joins those first, and the clock raise
        // Begin causes cannot leak into their cuts.
        let joined: Vec<SnapshotId> = self.active.keys().copied().collect();
        for to in self.others() {
            self.send(
                to,
                Control::Begin {
                    id,
                    joined: joined.clone(),
                },
            );
        }
        let cut = self.clock.clone();
        self.join(now, id, state, cut);
        Ok(id)
    }

    fn handle_control(
        &mut self,
        now: Time,
        from: NodeId,
        control: Control,
        state: &mut dyn FnMut() -> Vec<u8>,
    ) {
        if !self.is_member(from) {
            return;
        }
        let Some(id) = control.id() else {
            if let Control::Lost { life, upto } = control {
                self.on_lost(now, from, life, upto);
            }
            return;
        };
        if !self.is_member(id.initiator) || self.col.is_finished(&id) || id.s < self.cfg.ids_from {
            return;
        }
        self.col.count(Some(id));
        let from_initiator = from == id.initiator;
        let i_initiated = id.initiator == self.me();
        match control {
            Control::Begin { id, mut joined } if from_initiator && !i_initiated => {
                joined.push(id);
                self.join_all(now, &joined, state);
            }
            Control::Cut { report } if i_initiated => self.on_row(now, from, *report),
            Control::Expect { id, counts } if from_initiator => self.on_expect(now, id, counts),
            Control::Report(report) if i_initiated => {
                if self.col.on_report(now, from, *report, &mut self.out) {
                    self.active.remove(&id);
                }
            }
            Control::Done { id, life } if from_initiator && !i_initiated => {
                self.active.remove(&id);
                self.col.on_done(id, Some(life), &mut self.out);
            }
            Control::Abort { id, reason } if i_initiated || from_initiator => {
                self.abort(id, reason, Some(from));
            }
            other => tracing::debug!(%from, ?other, "ignoring misdirected control message"),
        }
    }

    fn handle_link_reset(&mut self, _now: Time, peer: NodeId) {
        let upto = self.sent.get(&peer).copied().unwrap_or(0);
        if upto > 0 && self.is_member(peer) && peer != self.me() {
            let life = self.cfg.life;
            self.out
                .transmits
                .push_back((peer, Control::Lost { life, upto }));
        }
    }

    fn handle_peer_unreachable(&mut self, _now: Time, peer: NodeId) {
        let mut doomed = self.col.waiting_for(peer);
        for (&id, p) in &self.active {
            // A participant awaiting the initiator's verdict waits for it (the deadline
            // ends the wait if it never comes); with no column yet, no channel is open.
            if id.initiator == self.me() || p.awaits_verdict() {
                continue;
            }
            if id.initiator == peer || p.open_channels(&self.inbound).contains(&peer) {
                doomed.push(id);
            }
        }
        doomed.sort_unstable();
        doomed.dedup();
        for id in doomed {
            let mut missing = self.missing(id);
            if !missing.contains(&peer) {
                missing.push(peer);
                missing.sort_unstable();
            }
            let reason = AbortReason {
                missing,
                why: AbortWhy::Unreachable(peer),
            };
            // Telling an unreachable initiator is pointless but harmless.
            self.abort(id, reason, None);
        }
    }

    fn absorb(&mut self, ts: &VClock) {
        Engine::absorb(self, ts);
    }

    fn rebuild(
        &self,
        clock: VClock,
        life: u64,
        floor: u64,
        ids_from: u64,
        nodes: &[NodeId],
    ) -> Option<Self> {
        let cfg = EngineConfig {
            life,
            clock_floor: floor,
            ids_from,
            ..self.cfg.among(nodes)
        };
        Some(Engine::restored(cfg, clock))
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
            let reason = AbortReason {
                missing: self.missing(id),
                why: AbortWhy::Timeout,
            };
            self.abort(id, reason, None);
        }
    }

    fn poll_transmit(&mut self) -> Option<(NodeId, Control)> {
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

impl From<Msg> for Control {
    fn from(m: Msg) -> Control {
        match m {
            Msg::Report(r) => Control::Report(r),
            Msg::Done(id, life) => Control::Done { id, life },
            Msg::Abort(id, reason) => Control::Abort { id, reason },
        }
    }
}
