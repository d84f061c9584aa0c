//! A tiny deterministic lossy network for testing `Core`s: virtual time jumps to the
//! earliest deadline or arrival; loss, duplication, delay jitter (reordering), corruption
//! and partitions are drawn from one seed. A bounded step count turns livelock into a
//! failure instead of a hang.

#![allow(dead_code, unreachable_pub)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet, VecDeque};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shutter_transport::Time;
use shutter_transport::core::{Config, Core, Event, MessageId, SendError};
use shutter_vclock::NodeId;

/// Seed from `SHUTTER_SEED` or the given default; printed with a replay command.
pub fn seed(default: u64, test: &str, binary: &str) -> u64 {
    let seed = std::env::var("SHUTTER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    println!(
        "seed={seed}; replay: SHUTTER_SEED={seed} cargo test -p shutter-transport --test {binary} {test} -- --nocapture"
    );
    seed
}

/// Link faults, applied independently to every datagram.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub loss: f64,
    pub dup: f64,
    pub corrupt: f64,
    /// One-way delay in microseconds: `base + uniform(0..jitter)`; jitter reorders.
    pub base: u64,
    pub jitter: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            loss: 0.0,
            dup: 0.0,
            corrupt: 0.0,
            base: 200,
            jitter: 0,
        }
    }
}

/// One simulated node.
pub struct Node {
    pub core: Core,
    pub up: bool,
    /// Every event, in order.
    pub events: Vec<Event>,
    /// Messages waiting for window space: (to, bytes).
    pub backlog: VecDeque<(NodeId, Vec<u8>)>,
    /// (to, id) -> payload of every message accepted by `send`.
    pub sent: BTreeMap<(NodeId, MessageId), Vec<u8>>,
}

impl Node {
    pub fn delivered(&self) -> impl Iterator<Item = (NodeId, MessageId, &Vec<u8>)> {
        self.events.iter().filter_map(|e| match e {
            Event::Delivered {
                from, id, bytes, ..
            } => Some((*from, *id, bytes)),
            _ => None,
        })
    }

    pub fn acked(&self) -> impl Iterator<Item = (NodeId, MessageId)> + '_ {
        self.events.iter().filter_map(|e| match e {
            Event::Acked { to, id } => Some((*to, *id)),
            _ => None,
        })
    }

    pub fn count(&self, pred: impl Fn(&Event) -> bool) -> usize {
        self.events.iter().filter(|e| pred(e)).count()
    }
}

/// A datagram on the wire: (arrival time, sequence, to, from, bytes).
type InFlight = (u64, u64, usize, usize, Vec<u8>);

/// The simulated network.
pub struct Net {
    pub nodes: Vec<Node>,
    pub now: Time,
    pub faults: Faults,
    /// Directed links (from, to) that drop everything.
    pub cut: HashSet<(usize, usize)>,
    pub steps: u64,
    pub max_steps: u64,
    pub seed: u64,
    rng: ChaCha8Rng,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    config: Config,
}

impl Net {
    /// `n` fully connected nodes with `config` (local and incarnation overridden).
    pub fn new(n: usize, config: Config, faults: Faults, seed: u64) -> Net {
        let nodes = (0..n).map(|i| Self::make_node(&config, n, i, 1)).collect();
        Net {
            nodes,
            now: Time::ZERO,
            faults,
            cut: HashSet::new(),
            steps: 0,
            max_steps: 2_000_000,
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
            queue: BinaryHeap::new(),
            seq: 0,
            config,
        }
    }

    fn make_node(config: &Config, n: usize, i: usize, incarnation: u64) -> Node {
        let cfg = Config {
            local: NodeId(i as u32),
            incarnation,
            seed: i as u64,
            ..config.clone()
        };
        let mut core = Core::new(cfg).expect("valid config");
        for j in 0..n {
            core.add_peer(NodeId(j as u32));
        }
        Node {
            core,
            up: true,
            events: Vec::new(),
            backlog: VecDeque::new(),
            sent: BTreeMap::new(),
        }
    }

    /// Crashes node `i` and starts it again with a fresh core and `incarnation`.
    pub fn restart(&mut self, i: usize, incarnation: u64) {
        let n = self.nodes.len();
        self.nodes[i] = Self::make_node(&self.config, n, i, incarnation);
        self.flush(i);
    }

    /// Queues a message; it is sent as soon as the window allows.
    pub fn send(&mut self, from: usize, to: usize, bytes: Vec<u8>) {
        self.nodes[from]
            .backlog
            .push_back((NodeId(to as u32), bytes));
        self.flush(from);
    }

    /// Queues a message without flushing (so that several can share datagrams).
    pub fn queue(&mut self, from: usize, to: usize, bytes: Vec<u8>) {
        self.nodes[from]
            .backlog
            .push_back((NodeId(to as u32), bytes));
    }

    /// Moves backlog into the core while windows allow, keeping per-destination order.
    fn pump(&mut self, i: usize) {
        let now = self.now;
        let node = &mut self.nodes[i];
        let mut blocked = HashSet::new();
        let mut keep = VecDeque::new();
        while let Some((to, bytes)) = node.backlog.pop_front() {
            if blocked.contains(&to) {
                keep.push_back((to, bytes));
                continue;
            }
            match node.core.send(now, to, bytes.clone()) {
                Ok(id) => {
                    node.sent.insert((to, id), bytes);
                }
                Err(SendError::WindowFull) => {
                    blocked.insert(to);
                    keep.push_back((to, bytes));
                }
                Err(e) => panic!("send failed: {e}"),
            }
        }
        node.backlog = keep;
    }

    /// Drains transmits and events of node `i` (the documented call order).
    pub fn flush(&mut self, i: usize) {
        if !self.nodes[i].up {
            return;
        }
        self.pump(i);
        while let Some(t) = self.nodes[i].core.poll_transmit(self.now) {
            self.transmit(i, t.to.0 as usize, t.bytes);
        }
        while let Some(e) = self.nodes[i].core.poll_event() {
            self.nodes[i].events.push(e);
        }
        // Writable events may have opened the window.
        if !self.nodes[i].backlog.is_empty() {
            let before = self.nodes[i].backlog.len();
            self.pump(i);
            if self.nodes[i].backlog.len() != before {
                self.flush(i);
            }
        }
    }

    fn transmit(&mut self, from: usize, to: usize, bytes: Vec<u8>) {
        let f = self.faults;
        if self.cut.contains(&(from, to)) || self.rng.random_bool(f.loss) {
            return;
        }
        let copies = if self.rng.random_bool(f.dup) { 2 } else { 1 };
        for _ in 0..copies {
            let mut b = bytes.clone();
            if self.rng.random_bool(f.corrupt) {
                let bit = self.rng.random_range(0..b.len() * 8);
                b[bit / 8] ^= 1 << (bit % 8);
            }
            let delay = f.base
                + if f.jitter > 0 {
                    self.rng.random_range(0..f.jitter)
                } else {
                    0
                };
            self.seq += 1;
            self.queue
                .push(Reverse((self.now.0 + delay, self.seq, to, from, b)));
        }
    }

    /// Advances to the next arrival or deadline; false if nothing is pending at all.
    pub fn step(&mut self) -> bool {
        self.steps += 1;
        assert!(
            self.steps <= self.max_steps,
            "livelock? {} steps at {:?} (seed {}; rerun with SHUTTER_SEED={})",
            self.steps,
            self.now,
            self.seed,
            self.seed
        );
        let Some(next) = self.next_deadline() else {
            return false;
        };
        self.now = Time(self.now.0.max(next));
        while let Some(Reverse(q)) = self.queue.peek() {
            if q.0 > self.now.0 {
                break;
            }
            let Reverse((_, _, to, from, bytes)) = self.queue.pop().expect("peeked");
            if self.nodes[to].up {
                self.nodes[to]
                    .core
                    .handle_datagram(self.now, NodeId(from as u32), &bytes);
                self.flush(to);
            }
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].up
                && self.nodes[i]
                    .core
                    .poll_timeout()
                    .is_some_and(|t| t <= self.now)
            {
                self.nodes[i].core.handle_timeout(self.now);
                self.flush(i);
            }
        }
        true
    }

    /// Steps until `done` holds (true) or virtual time passes `limit` (false).
    pub fn run_until(&mut self, limit: Time, mut done: impl FnMut(&Net) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            if self.now > limit || !self.step() {
                return done(self);
            }
        }
    }

    /// Earliest pending event (µs): a datagram arrival or a live node's timer.
    fn next_deadline(&self) -> Option<u64> {
        let arrival = self.queue.peek().map(|Reverse(q)| q.0);
        let timer = self
            .nodes
            .iter()
            .filter(|n| n.up)
            .filter_map(|n| n.core.poll_timeout())
            .min()
            .map(|t| t.0);
        [arrival, timer].into_iter().flatten().min()
    }

    /// When the next arrival or timer is due (µs), for callers that inject sends at
    /// exact times between steps.
    pub fn next_event_at(&self) -> Option<u64> {
        self.next_deadline()
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: std::time::Duration) {
        let end = self.now + d;
        while self.now < end {
            match self.next_deadline() {
                Some(t) if t <= end.0 => {
                    self.step();
                }
                _ => {
                    self.now = end;
                }
            }
        }
    }

    /// Cuts (or heals) both directions between `a` and `b`.
    pub fn partition(&mut self, a: usize, b: usize, on: bool) {
        for l in [(a, b), (b, a)] {
            if on {
                self.cut.insert(l);
            } else {
                self.cut.remove(&l);
            }
        }
    }

    /// Whether every message ever accepted by `send` was delivered and acked, and no
    /// backlog remains.
    pub fn all_done(&self) -> bool {
        self.nodes
            .iter()
            .all(|n| n.backlog.is_empty() && n.core.stats().messages_acked == n.sent.len() as u64)
    }

    /// Checks exactly-once delivery with correct contents for every sent message.
    pub fn check_exactly_once(&self) {
        for (j, receiver) in self.nodes.iter().enumerate() {
            let mut seen = HashSet::new();
            for (from, id, bytes) in receiver.delivered() {
                assert!(
                    seen.insert((from, id)),
                    "seed {}: {from}->{j} {id:?} delivered twice",
                    self.seed
                );
                let sent = &self.nodes[from.0 as usize].sent[&(NodeId(j as u32), id)];
                assert!(
                    sent == bytes,
                    "seed {}: {from}->{j} {id:?} corrupted",
                    self.seed
                );
            }
            for (i, sender) in self.nodes.iter().enumerate() {
                for &(to, id) in sender.sent.keys() {
                    if to.0 as usize == j {
                        assert!(
                            seen.contains(&(NodeId(i as u32), id)),
                            "seed {}: {i}->{j} {id:?} lost",
                            self.seed
                        );
                    }
                }
            }
        }
        for n in &self.nodes {
            let mut acked = HashSet::new();
            for a in n.acked() {
                assert!(acked.insert(a), "seed {}: {a:?} acked twice", self.seed);
            }
        }
    }
}

/// A payload naming its sender, receiver and sequence number, padded to `len` bytes
/// with a pattern derived from them so corruption would show.
pub fn payload(from: usize, to: usize, seq: u64, len: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(len.max(16));
    b.extend_from_slice(&(from as u32).to_le_bytes());
    b.extend_from_slice(&(to as u32).to_le_bytes());
    b.extend_from_slice(&seq.to_le_bytes());
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (from as u64) << 32 ^ to as u64;
    while b.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.push(x as u8);
    }
    b
}

/// A seeded random generator for tests.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}
