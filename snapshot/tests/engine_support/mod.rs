//! A tiny in-test network for hand-built schedules: every message sits in a numbered
//! in-flight table until the test delivers it, so the order is exactly what the test
//! chooses. Works for any [`SnapshotEngine`]. Also an oracle for channel exactness.

// Each test file uses a different subset of the helpers, and `pub` here only means
// "visible to the test file", which the unreachable_pub lint cannot know.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::time::Duration;

use shutter_snapshot::verify;
use shutter_snapshot::{
    AbortReason, AppHeader, GlobalSnapshot, SnapshotEngine, SnapshotEvent, SnapshotId,
};
use shutter_transport::Time;
use shutter_vclock::{NodeId, VClock};

/// What travels.
#[derive(Clone, Debug)]
pub enum Body<C> {
    App(AppHeader, Vec<u8>),
    Control(C),
}

/// One message in flight.
#[derive(Clone, Debug)]
pub struct Msg<C> {
    pub from: NodeId,
    pub to: NodeId,
    pub body: Body<C>,
}

/// One node: its engine and a trivial application that remembers which app messages it
/// delivered (its "state" is that list).
pub struct Peer<E> {
    pub engine: E,
    pub delivered: Vec<u64>,
    pub events: Vec<SnapshotEvent>,
}

pub fn state_bytes(delivered: &[u64]) -> Vec<u8> {
    postcard::to_allocvec(delivered).unwrap()
}

pub fn decode_state(bytes: &[u8]) -> Vec<u64> {
    postcard::from_bytes(bytes).unwrap()
}

pub fn payload_id(p: &[u8]) -> u64 {
    u64::from_le_bytes(p.try_into().unwrap())
}

pub struct Net<E: SnapshotEngine> {
    pub peers: BTreeMap<NodeId, Peer<E>>,
    pub flight: BTreeMap<u64, Msg<E::Control>>,
    /// Every app message ever sent: id -> (from, to, ts).
    pub sent_log: BTreeMap<u64, (NodeId, NodeId, VClock)>,
    next: u64,
    pub now: Time,
}

pub fn n(i: u32) -> NodeId {
    NodeId(i)
}

impl<E: SnapshotEngine> Net<E> {
    pub fn new(size: u32, make: impl Fn(NodeId, Vec<NodeId>) -> E) -> Self {
        let ids: Vec<NodeId> = (0..size).map(NodeId).collect();
        let peers = ids
            .iter()
            .map(|&id| {
                let p = Peer {
                    engine: make(id, ids.clone()),
                    delivered: Vec::new(),
                    events: Vec::new(),
                };
                (id, p)
            })
            .collect();
        Self {
            peers,
            flight: BTreeMap::new(),
            sent_log: BTreeMap::new(),
            next: 0,
            now: Time(1_000),
        }
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    fn push(&mut self, m: Msg<E::Control>) -> u64 {
        let id = self.next;
        self.next += 1;
        self.flight.insert(id, m);
        id
    }

    /// Moves the engine's queued control messages into flight, events into the log.
    fn drain(&mut self, node: NodeId) {
        loop {
            let p = self.peers.get_mut(&node).unwrap();
            let Some((to, c)) = p.engine.poll_transmit() else {
                break;
            };
            self.push(Msg {
                from: node,
                to,
                body: Body::Control(c),
            });
        }
        let p = self.peers.get_mut(&node).unwrap();
        while let Some(e) = p.engine.poll_event() {
            p.events.push(e);
        }
    }

    /// Sends an application message; its payload is its message id.
    pub fn send(&mut self, from: NodeId, to: NodeId) -> u64 {
        let now = self.now;
        let header = self
            .peers
            .get_mut(&from)
            .unwrap()
            .engine
            .on_app_send(now, to);
        let id = self.next;
        self.sent_log.insert(id, (from, to, header.ts.clone()));
        let got = self.push(Msg {
            from,
            to,
            body: Body::App(header, id.to_le_bytes().to_vec()),
        });
        assert_eq!(got, id);
        self.drain(from);
        id
    }

    pub fn initiate(&mut self, k: NodeId) -> SnapshotId {
        let now = self.now;
        let p = self.peers.get_mut(&k).unwrap();
        let state = state_bytes(&p.delivered);
        let id = p.engine.initiate(now, state).unwrap();
        self.drain(k);
        id
    }

    /// The transport session `from -> to` ended (`SnapshotEngine::handle_link_reset` at `from`).
    pub fn handle_link_reset(&mut self, from: NodeId, to: NodeId) {
        let now = self.now;
        self.peers
            .get_mut(&from)
            .unwrap()
            .engine
            .handle_link_reset(now, to);
        self.drain(from);
    }

    /// Delivers in-flight message `id` to its destination. False if the engine ruled
    /// an application message stale (not delivered to the application).
    pub fn deliver(&mut self, id: u64) -> bool {
        let m = self.flight.remove(&id).expect("message not in flight");
        let now = self.now;
        let p = self.peers.get_mut(&m.to).unwrap();
        let Peer {
            engine, delivered, ..
        } = p;
        match m.body {
            Body::App(header, payload) => {
                let snapshot = delivered.clone();
                let d = engine.handle_app_receive(now, m.from, &header, &payload, &mut || {
                    state_bytes(&snapshot)
                });
                if d.stale {
                    self.drain(m.to);
                    return false;
                }
                delivered.push(payload_id(&payload));
            }
            Body::Control(c) => {
                let snapshot = delivered.clone();
                engine.handle_control(now, m.from, c, &mut || state_bytes(&snapshot));
            }
        }
        self.drain(m.to);
        true
    }

    /// Returns a copy of an in-flight message (to deliver it twice, for instance).
    pub fn duplicate(&mut self, id: u64) -> u64 {
        let m = self.flight.get(&id).unwrap().clone();
        self.push(m)
    }

    pub fn drop_msg(&mut self, id: u64) {
        self.flight.remove(&id);
    }

    pub fn controls(&self) -> Vec<u64> {
        self.flight
            .iter()
            .filter(|(_, m)| matches!(m.body, Body::Control(_)))
            .map(|(i, _)| *i)
            .collect()
    }

    pub fn controls_where(&self, f: impl Fn(&Msg<E::Control>) -> bool) -> Vec<u64> {
        self.flight
            .iter()
            .filter(|(_, m)| matches!(m.body, Body::Control(_)) && f(m))
            .map(|(i, _)| *i)
            .collect()
    }

    /// Delivers control messages (oldest first) until none is in flight.
    pub fn deliver_controls(&mut self) {
        while let Some(&id) = self.controls().first() {
            self.deliver(id);
        }
    }

    /// Delivers control messages except those matching `hold`, until none is left.
    pub fn deliver_controls_except(&mut self, hold: impl Fn(&Msg<E::Control>) -> bool) {
        while let Some(&id) = self.controls_where(|m| !hold(m)).first() {
            self.deliver(id);
        }
    }

    /// Delivers everything, oldest first, until the network is empty.
    pub fn deliver_all(&mut self) {
        while let Some((&id, _)) = self.flight.first_key_value() {
            self.deliver(id);
        }
    }

    pub fn unreachable(&mut self, at: NodeId, peer: NodeId) {
        let now = self.now;
        self.peers
            .get_mut(&at)
            .unwrap()
            .engine
            .handle_peer_unreachable(now, peer);
        self.drain(at);
    }

    /// Fires every engine timer that is due.
    pub fn fire_timers(&mut self) {
        let now = self.now;
        let ids: Vec<NodeId> = self.peers.keys().copied().collect();
        for id in ids {
            let p = self.peers.get_mut(&id).unwrap();
            if p.engine.poll_timeout().is_some_and(|t| t <= now) {
                p.engine.handle_timeout(now);
            }
            self.drain(id);
        }
    }

    pub fn completed(&self) -> Vec<GlobalSnapshot> {
        self.peers
            .values()
            .flat_map(|p| &p.events)
            .filter_map(|e| match e {
                SnapshotEvent::Completed(s) => Some((**s).clone()),
                _ => None,
            })
            .collect()
    }

    pub fn aborted(&self) -> Vec<(NodeId, SnapshotId, AbortReason)> {
        self.peers
            .iter()
            .flat_map(|(n, p)| p.events.iter().map(move |e| (*n, e)))
            .filter_map(|(n, e)| match e {
                SnapshotEvent::Aborted { id, reason } => Some((n, *id, reason.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn local_cuts(&self, id: SnapshotId) -> Vec<NodeId> {
        self.peers
            .iter()
            .filter(|(_, p)| {
                p.events
                    .iter()
                    .any(|e| matches!(e, SnapshotEvent::LocalCut { id: i, .. } if *i == id))
            })
            .map(|(n, _)| *n)
            .collect()
    }

    /// Ground truth: messages sent before the sender's cut and not delivered before the
    /// receiver's cut (the receiver's recorded state lists what it had delivered).
    pub fn oracle_channels(&self, snap: &GlobalSnapshot) -> BTreeMap<(NodeId, NodeId), Vec<u64>> {
        let mut out: BTreeMap<(NodeId, NodeId), Vec<u64>> = BTreeMap::new();
        for (&id, (from, to, ts)) in &self.sent_log {
            let cut_from = &snap.cuts[from];
            let delivered_before = decode_state(&snap.states[to]);
            if ts.get(*from) <= cut_from.get(*from) && !delivered_before.contains(&id) {
                out.entry((*from, *to)).or_default().push(id);
            }
        }
        out
    }

    /// The recorded channel states as message ids, sorted per channel, empty ones dropped.
    pub fn recorded_channels(snap: &GlobalSnapshot) -> BTreeMap<(NodeId, NodeId), Vec<u64>> {
        snap.channels
            .iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(k, m)| {
                let mut ids: Vec<u64> = m.iter().map(|r| payload_id(&r.payload)).collect();
                ids.sort_unstable();
                (*k, ids)
            })
            .collect()
    }

    /// Cut consistency, channel sanity and exact channel states against the oracle.
    pub fn check(&self, snap: &GlobalSnapshot) -> Result<(), String> {
        verify::check_all(snap, &[]).map_err(|e| e.to_string())?;
        let want = self.oracle_channels(snap);
        let got = Self::recorded_channels(snap);
        if want != got {
            return Err(format!(
                "channel states differ: oracle {want:?}, recorded {got:?}"
            ));
        }
        Ok(())
    }

    /// True when no engine holds snapshot state or queued output.
    pub fn all_timers_clear(&self) -> bool {
        self.peers
            .values()
            .all(|p| p.engine.poll_timeout().is_none())
    }
}
