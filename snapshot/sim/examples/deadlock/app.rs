//! The deadlock application: every node owns a few locks and runs transactions that
//! take locks owned by other nodes, one at a time, keeping what they got until they
//! have all of them (two-phase locking), work a few ticks and release everything. Two
//! transactions that take the same locks in opposite orders can end up each holding
//! what the other waits for: a deadlock. Nothing here ever breaks one (no timeouts, no
//! aborts), so a deadlock is *stable*: once the wait-for graph has a cycle, it has it
//! forever.
//!
//! A deadlock detector reads a snapshot, builds the wait-for graph ([`wait_for_graph`])
//! and looks for a cycle ([`find_cycle`]). Over a consistent cut *with its channel
//! contents* the graph is exactly the one of a state the system really went through, so
//! a cycle it shows is real, and by stability still there at the end of the run. That
//! is what [`Detector::verdict`] checks. Read otherwise, the graph lies:
//!
//! * ignoring the messages in flight, a lock whose release is on its way still looks
//!   held, and the releaser, already waiting in its next transaction for a lock the
//!   waiter holds, closes a cycle that never exists (a *phantom deadlock*);
//! * reading each node at a different moment ([`Poller`], the classic centralised
//!   detector asking one site at a time) joins edges that never coexisted.
//!
//! # The protocol
//!
//! Messages ([`Msg`]) go between a transaction's node and the owner of a lock:
//! `Request` (queue me), `Grant` (the lock is yours), `Release` (I am done with it).
//! The owner keeps, per lock, the holder and a FIFO queue of waiters. Every message
//! names the requester's transaction, so a `Release` of one transaction and the
//! `Request` of the next one from the same node, reordered on the wire, are told apart.
//!
//! The topology is complete ([`shutter_sim::Topology::complete`]): any transaction may
//! need a lock at any node, and each request is answered on the reverse channel, so
//! every ordered pair of nodes is a channel the application uses.
//!
//! # Why the graph of a consistent cut is exact
//!
//! An edge `t -> h` means: `t`'s transaction waits for a lock `l` (its request is in
//! `l`'s queue at the owner, or on the way there) and `h` holds `l` (the owner's table
//! says so, and no release of `l` by `h` is on the way). The owner records the holder
//! when it sends the grant, so a grant in flight already counts as held by the
//! requester: the requester no longer waits on anybody for `l` even though its own
//! state still says "waiting". A release in flight makes the lock free (its queue head
//! gets it on arrival, so nobody waits on a *node* for it yet). Only holders are edge
//! targets, not the waiters queued ahead: each transaction waits for one lock at a
//! time, so a path through queued waiters ends at the same lock's holder anyway, and a
//! cycle through them is a cycle through the holders.
//!
//! If the cut is consistent, every transaction on a cycle holds a lock the next one
//! waits for and waits itself, so none of them can ever proceed: the cycle is real and
//! stays. [`lock_tables_agree`] checks the bookkeeping behind that: every lock's holder
//! and waiters as its owner sees them, adjusted by the messages in flight, are exactly
//! the transactions that think they hold or wait for it.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::rc::Rc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use shutter_sim::{
    Context, Cut, End, LogKind, NodeId, Process, Report, SnapshotId, Time, Undeliverable,
};

/// A lock: the node that owns it and its number there, written `n2.0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct LockId {
    pub(crate) owner: NodeId,
    pub(crate) index: u8,
}

impl LockId {
    /// Parses `n2.0` (or `2.0`).
    fn parse(text: &str) -> Option<LockId> {
        let (owner, index) = text.split_once('.')?;
        let owner = owner.strip_prefix('n').unwrap_or(owner).parse().ok()?;
        Some(LockId {
            owner: NodeId(owner),
            index: index.parse().ok()?,
        })
    }
}

impl fmt::Display for LockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.owner, self.index)
    }
}

/// A transaction: its node and its number there, written `n4#20`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct TxnId {
    pub(crate) node: NodeId,
    pub(crate) n: u64,
}

impl fmt::Display for TxnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.node, self.n)
    }
}

/// `[n1#3, n4#20]`.
fn list<'a>(txns: impl IntoIterator<Item = &'a TxnId>) -> String {
    let names: Vec<String> = txns.into_iter().map(TxnId::to_string).collect();
    format!("[{}]", names.join(", "))
}

/// One lock in its owner's table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LockEntry {
    /// The transaction the lock was granted to (the grant may still be on its way).
    pub(crate) holder: Option<TxnId>,
    /// Transactions whose request arrived while the lock was held, first come first.
    pub(crate) queue: Vec<TxnId>,
}

/// The transaction a node runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Txn {
    /// Its number at this node.
    pub(crate) n: u64,
    /// The locks it takes, in this order.
    pub(crate) plan: Vec<LockId>,
    /// The locks granted so far (a prefix of `plan`).
    pub(crate) held: Vec<LockId>,
    /// The lock requested and not granted yet.
    pub(crate) waiting: Option<LockId>,
    /// Ticks of work left once every lock is held; then everything is released.
    pub(crate) work_left: u32,
}

/// What a snapshot records of a node: its lock table and its transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LockState {
    /// The locks this node owns, by number.
    pub(crate) table: Vec<LockEntry>,
    /// The running transaction, if any.
    pub(crate) txn: Option<Txn>,
    /// Transactions begun here so far (the last one's number).
    pub(crate) begun: u64,
    /// Transactions that released their locks and finished.
    pub(crate) committed: u64,
    /// Random draws of the workload so far: the next draw is a function of the seed,
    /// the node and this count, so a node restored from a snapshot draws again what it
    /// drew after that cut.
    pub(crate) draws: u64,
}

/// What the nodes send each other (postcard-encoded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Msg {
    /// To the owner: transaction `txn` of the sender wants lock `lock`.
    Request { lock: u8, txn: u64 },
    /// From the owner: lock `lock` is now held by transaction `txn` of the receiver.
    Grant { lock: u8, txn: u64 },
    /// To the owner: transaction `txn` of the sender is done with lock `lock`.
    Release { lock: u8, txn: u64 },
}

impl Msg {
    pub(crate) fn encode(self) -> Vec<u8> {
        postcard::to_allocvec(&self).expect("postcard encoding into a Vec cannot fail")
    }

    fn decode(payload: &[u8]) -> Option<Msg> {
        postcard::from_bytes(payload).ok()
    }
}

/// What the nodes do on their own.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Workload {
    /// Seed of every random choice.
    pub(crate) seed: u64,
    /// Locks each node owns.
    pub(crate) locks: u8,
    /// Chance per tick that an idle node begins a random transaction (0: only
    /// commands begin transactions).
    pub(crate) begin: f64,
    /// Ticks a transaction works once it holds all its locks.
    pub(crate) work: u32,
}

impl Workload {
    /// Random two-lock transactions, often enough that some runs deadlock and some do
    /// not.
    pub(crate) fn random(seed: u64) -> Workload {
        Workload {
            seed,
            locks: 4,
            begin: 0.6,
            work: 1,
        }
    }
}

/// One node: a lock manager for the locks it owns and a transaction at a time.
#[derive(Debug)]
pub(crate) struct Locks {
    me: NodeId,
    workload: Workload,
    state: LockState,
}

impl Locks {
    /// Node `me`, owning `workload.locks` free locks, no transaction yet.
    pub(crate) fn new(me: NodeId, workload: Workload) -> Locks {
        Locks {
            me,
            workload,
            state: LockState {
                table: vec![LockEntry::default(); usize::from(workload.locks)],
                txn: None,
                begun: 0,
                committed: 0,
                draws: 0,
            },
        }
    }

    /// The current state.
    pub(crate) fn state(&self) -> &LockState {
        &self.state
    }

    /// The generator of the next random draw (unique per node and draw in a run).
    fn draw(&mut self) -> ChaCha8Rng {
        self.state.draws += 1;
        ChaCha8Rng::seed_from_u64(
            self.workload.seed.rotate_left(20) ^ (u64::from(self.me.0) << 44) ^ self.state.draws,
        )
    }

    /// Two locks at two different other nodes, in random order.
    fn random_plan(&mut self, peers: &[NodeId]) -> Vec<LockId> {
        let locks = self.workload.locks;
        let all: Vec<LockId> = peers
            .iter()
            .flat_map(|&owner| (0..locks).map(move |index| LockId { owner, index }))
            .collect();
        if all.is_empty() {
            return Vec::new();
        }
        let mut rng = self.draw();
        let first = all[rng.random_range(0..all.len())];
        let rest: Vec<LockId> = all.into_iter().filter(|l| l.owner != first.owner).collect();
        if rest.is_empty() {
            return vec![first];
        }
        vec![first, rest[rng.random_range(0..rest.len())]]
    }

    fn begin(&mut self, ctx: &mut Context, plan: Vec<LockId>) {
        if plan.is_empty() || self.state.txn.is_some() {
            return;
        }
        self.state.begun += 1;
        self.state.txn = Some(Txn {
            n: self.state.begun,
            plan,
            held: Vec::new(),
            waiting: None,
            work_left: self.workload.work.max(1),
        });
        self.request_next(ctx);
    }

    /// Requests the next lock of the plan, if any is left.
    fn request_next(&mut self, ctx: &mut Context) {
        let Some(t) = &mut self.state.txn else {
            return;
        };
        if let Some(&next) = t.plan.get(t.held.len()) {
            t.waiting = Some(next);
            let msg = Msg::Request {
                lock: next.index,
                txn: t.n,
            };
            ctx.send(next.owner, msg.encode());
        }
    }

    fn release_all(&mut self, ctx: &mut Context) {
        let Some(t) = self.state.txn.take() else {
            return;
        };
        for l in t.held {
            let msg = Msg::Release {
                lock: l.index,
                txn: t.n,
            };
            ctx.send(l.owner, msg.encode());
        }
        self.state.committed += 1;
    }

    /// Owner side: `txn` asks for lock `index`.
    fn on_request(&mut self, ctx: &mut Context, index: u8, txn: TxnId) {
        let Some(entry) = self.state.table.get_mut(usize::from(index)) else {
            return;
        };
        // The transport delivers each message once; this guards the table anyway.
        if entry.holder == Some(txn) || entry.queue.contains(&txn) {
            return;
        }
        if entry.holder.is_some() {
            entry.queue.push(txn);
        } else {
            entry.holder = Some(txn);
            let grant = Msg::Grant {
                lock: index,
                txn: txn.n,
            };
            ctx.send(txn.node, grant.encode());
        }
    }

    /// Owner side: `txn` is done with lock `index`; the first waiter gets it.
    fn on_release(&mut self, ctx: &mut Context, index: u8, txn: TxnId) {
        let Some(entry) = self.state.table.get_mut(usize::from(index)) else {
            return;
        };
        if entry.holder != Some(txn) {
            return;
        }
        entry.holder = None;
        if !entry.queue.is_empty() {
            let next = entry.queue.remove(0);
            entry.holder = Some(next);
            let grant = Msg::Grant {
                lock: index,
                txn: next.n,
            };
            ctx.send(next.node, grant.encode());
        }
    }

    /// Transaction side: the owner `from` granted lock `index` to transaction `n`.
    fn on_grant(&mut self, ctx: &mut Context, from: NodeId, index: u8, n: u64) {
        let lock = LockId { owner: from, index };
        let Some(t) = &mut self.state.txn else {
            return;
        };
        // A grant nobody waits for would be a protocol bug; the lock table check
        // shows it (the owner names a holder that does not know), so it is not hidden
        // by taking the lock here.
        if t.n != n || t.waiting != Some(lock) {
            return;
        }
        t.waiting = None;
        t.held.push(lock);
        self.request_next(ctx);
    }
}

impl Process for Locks {
    type State = LockState;

    /// A transaction holding everything works a tick (and releases after its last
    /// one); an idle node may begin one, right after releasing too.
    fn on_tick(&mut self, ctx: &mut Context) {
        if let Some(t) = &mut self.state.txn
            && t.waiting.is_none()
            && t.held.len() == t.plan.len()
        {
            t.work_left = t.work_left.saturating_sub(1);
            if t.work_left == 0 {
                self.release_all(ctx);
            }
        }
        // A waiting transaction waits for its grant, possibly forever.
        if self.state.txn.is_none() && self.workload.begin > 0.0 {
            let begin = self.workload.begin.min(1.0);
            if self.draw().random_bool(begin) {
                let plan = self.random_plan(ctx.peers());
                self.begin(ctx, plan);
            }
        }
    }

    fn on_message(&mut self, ctx: &mut Context, from: NodeId, payload: &[u8]) {
        // Only this application sends here (datagrams are authenticated), so an
        // undecodable payload would be a bug; the lock table check would show its
        // effect, and there is nothing better to do with it than to drop it.
        let Some(msg) = Msg::decode(payload) else {
            return;
        };
        match msg {
            Msg::Request { lock, txn } => self.on_request(ctx, lock, TxnId { node: from, n: txn }),
            Msg::Release { lock, txn } => self.on_release(ctx, lock, TxnId { node: from, n: txn }),
            Msg::Grant { lock, txn } => self.on_grant(ctx, from, lock, txn),
        }
    }

    /// A message the receiver's previous life never acknowledged goes to its new life
    /// again. With recovery (which this application needs: a lock table lost in a crash
    /// cannot be rebuilt by its users) the stack only gives back messages of the
    /// current history, and the receiver's new life continues that history (restored
    /// from the same snapshot), so it still needs the message. A message sent before a
    /// rollback is undone by it and never given back.
    fn on_undeliverable(
        &mut self,
        ctx: &mut Context,
        to: NodeId,
        payload: &[u8],
        _: Undeliverable,
    ) {
        ctx.send(to, payload.to_vec());
    }

    /// `begin n2.0 n3.0`: begin a transaction taking these locks in this order (if no
    /// transaction runs and every lock is another node's). Anything else is ignored.
    fn on_command(&mut self, ctx: &mut Context, command: &[u8]) {
        let Ok(text) = std::str::from_utf8(command) else {
            return;
        };
        let mut words = text.split_whitespace();
        if words.next() != Some("begin") {
            return;
        }
        let Some(plan) = words.map(LockId::parse).collect::<Option<Vec<LockId>>>() else {
            return;
        };
        let valid = |l: &LockId| ctx.peers().contains(&l.owner) && l.index < self.workload.locks;
        let distinct = plan.iter().collect::<BTreeSet<_>>().len() == plan.len();
        if distinct && plan.iter().all(valid) {
            self.begin(ctx, plan);
        }
    }

    fn snapshot(&self) -> LockState {
        self.state.clone()
    }

    fn restore(&mut self, state: LockState) {
        self.state = state;
    }
}

/// Wait-for edges `waiter -> holder` between nodes (a node runs one transaction at a
/// time, so a node stands for its transaction).
pub(crate) type Edges = BTreeSet<(NodeId, NodeId)>;

/// The messages in flight, decoded.
#[derive(Default)]
struct Wire {
    /// `(owner, lock)` -> transactions whose request is on its way there.
    requests: BTreeMap<(NodeId, u8), Vec<TxnId>>,
    /// `(owner, lock, holder)` of every release on its way.
    releases: BTreeSet<(NodeId, u8, TxnId)>,
    /// `(owner, lock, grantee)` of every grant on its way.
    grants: BTreeSet<(NodeId, u8, TxnId)>,
}

impl Wire {
    fn decode<'a>(
        in_flight: impl IntoIterator<Item = (NodeId, NodeId, &'a [u8])>,
    ) -> Result<Wire, String> {
        let mut wire = Wire::default();
        for (from, to, payload) in in_flight {
            let msg = Msg::decode(payload)
                .ok_or_else(|| format!("{from} -> {to}: a message that does not decode"))?;
            match msg {
                Msg::Request { lock, txn } => wire
                    .requests
                    .entry((to, lock))
                    .or_default()
                    .push(TxnId { node: from, n: txn }),
                Msg::Release { lock, txn } => {
                    wire.releases
                        .insert((to, lock, TxnId { node: from, n: txn }));
                }
                Msg::Grant { lock, txn } => {
                    wire.grants.insert((from, lock, TxnId { node: to, n: txn }));
                }
            }
        }
        Ok(wire)
    }

    /// The holder of `lock` once the releases in flight arrive (before anything else
    /// happens): the owner's, unless it is releasing.
    fn holder(&self, lock: LockId, entry: &LockEntry) -> Option<TxnId> {
        entry
            .holder
            .filter(|h| !self.releases.contains(&(lock.owner, lock.index, *h)))
    }

    /// Everyone waiting for `lock`: its queue and the requests on their way.
    fn waiters<'a>(
        &'a self,
        lock: LockId,
        entry: &'a LockEntry,
    ) -> impl Iterator<Item = TxnId> + 'a {
        let on_the_way = self.requests.get(&(lock.owner, lock.index));
        entry
            .queue
            .iter()
            .chain(on_the_way.into_iter().flatten())
            .copied()
    }
}

/// The wait-for graph of the nodes' `states` with the messages `in_flight` across the
/// cut (`(from, to, payload)`; pass none for a state with nothing in flight). Built
/// from the owners' lock tables: see the module docs for why it is exact over a
/// consistent cut. Errs on a payload that does not decode.
pub(crate) fn wait_for_graph<'a>(
    states: impl IntoIterator<Item = (NodeId, &'a LockState)>,
    in_flight: impl IntoIterator<Item = (NodeId, NodeId, &'a [u8])>,
) -> Result<Edges, String> {
    let wire = Wire::decode(in_flight)?;
    let mut edges = Edges::new();
    for (owner, state) in states {
        for (index, entry) in (0..=u8::MAX).zip(&state.table) {
            let lock = LockId { owner, index };
            let Some(holder) = wire.holder(lock, entry) else {
                continue;
            };
            for w in wire.waiters(lock, entry) {
                // A node never waits for itself in a consistent state; a mix of
                // moments could make it look so, which is no deadlock either.
                if w.node != holder.node {
                    edges.insert((w.node, holder.node));
                }
            }
        }
    }
    Ok(edges)
}

/// The wait-for graph of a snapshot.
pub(crate) fn cut_graph(cut: &Cut<'_, LockState>) -> Result<Edges, String> {
    wait_for_graph(cut.states(), cut.in_flight())
}

/// Every lock's holder and waiters as its owner sees them, adjusted by the messages in
/// flight, are exactly the transactions that believe they hold it (or have its grant on
/// the way) and wait for it. A consistent cut with its channels always passes; one
/// that misses or doubles a message does not.
pub(crate) fn lock_tables_agree<'a>(
    states: impl IntoIterator<Item = (NodeId, &'a LockState)>,
    in_flight: impl IntoIterator<Item = (NodeId, NodeId, &'a [u8])>,
) -> Result<(), String> {
    let states: Vec<(NodeId, &LockState)> = states.into_iter().collect();
    let wire = Wire::decode(in_flight)?;
    // What the transactions believe, by lock.
    let mut holders: BTreeMap<LockId, BTreeSet<TxnId>> = BTreeMap::new();
    let mut waiters: BTreeMap<LockId, BTreeSet<TxnId>> = BTreeMap::new();
    for &(node, state) in &states {
        let Some(t) = &state.txn else { continue };
        let txn = TxnId { node, n: t.n };
        for &l in &t.held {
            holders.entry(l).or_default().insert(txn);
        }
        if let Some(l) = t.waiting {
            if wire.grants.contains(&(l.owner, l.index, txn)) {
                holders.entry(l).or_default().insert(txn);
            } else {
                waiters.entry(l).or_default().insert(txn);
            }
        }
    }
    let mut owned = BTreeSet::new();
    for (owner, state) in states {
        for (index, entry) in (0..=u8::MAX).zip(&state.table) {
            let lock = LockId { owner, index };
            owned.insert(lock);
            let held: BTreeSet<TxnId> = wire.holder(lock, entry).into_iter().collect();
            let believed = holders.remove(&lock).unwrap_or_default();
            if held != believed {
                return Err(format!(
                    "{lock}: its owner has it held by {}, transactions holding it: {}",
                    list(&held),
                    list(&believed)
                ));
            }
            let queued: Vec<TxnId> = wire.waiters(lock, entry).collect();
            let queued_set: BTreeSet<TxnId> = queued.iter().copied().collect();
            let waiting = waiters.remove(&lock).unwrap_or_default();
            if queued.len() != queued_set.len() || queued_set != waiting {
                return Err(format!(
                    "{lock}: its owner has waiters {}, transactions waiting for it: {}",
                    list(&queued),
                    list(&waiting)
                ));
            }
        }
    }
    if let Some((lock, txns)) = holders
        .into_iter()
        .chain(waiters)
        .find(|(l, _)| !owned.contains(l))
    {
        return Err(format!(
            "{lock} is no node's lock, yet {} hold or wait for it",
            list(&txns)
        ));
    }
    Ok(())
}

/// A cycle of `edges`, as the nodes along it starting from the smallest, if there is
/// one.
pub(crate) fn find_cycle(edges: &Edges) -> Option<Vec<NodeId>> {
    let mut out: BTreeMap<NodeId, Vec<NodeId>> = BTreeMap::new();
    for &(a, b) in edges {
        out.entry(a).or_default().push(b);
    }
    // Depth-first search keeping the path; a node seen on the path again closes a
    // cycle. `done` nodes lead to no cycle.
    let mut done = BTreeSet::new();
    for &start in out.keys() {
        if done.contains(&start) {
            continue;
        }
        let mut path: Vec<NodeId> = vec![start];
        let mut next: Vec<usize> = vec![0];
        while let (Some(&node), Some(i)) = (path.last(), next.last_mut()) {
            let succ = out.get(&node).and_then(|s| s.get(*i)).copied();
            *i += 1;
            match succ {
                None => {
                    done.insert(node);
                    path.pop();
                    next.pop();
                }
                Some(s) if done.contains(&s) => {}
                Some(s) => {
                    if let Some(at) = path.iter().position(|p| *p == s) {
                        let mut cycle = path[at..].to_vec();
                        let min = (0..cycle.len()).min_by_key(|&k| cycle[k]).unwrap_or(0);
                        cycle.rotate_left(min);
                        return Some(cycle);
                    }
                    path.push(s);
                    next.push(0);
                }
            }
        }
    }
    None
}

/// The node-disjoint cycles of `edges`, one after the other: find one, drop its nodes'
/// edges, look again. In a consistent wait-for graph every node waits for at most one
/// node, so these are all its cycles.
pub(crate) fn find_cycles(edges: &Edges) -> Vec<Vec<NodeId>> {
    let mut left = edges.clone();
    let mut cycles = Vec::new();
    while let Some(c) = find_cycle(&left) {
        left.retain(|(a, _)| !c.contains(a));
        cycles.push(c);
    }
    cycles
}

/// True if every edge of `cycle` is in `edges`.
pub(crate) fn has_cycle(edges: &Edges, cycle: &[NodeId]) -> bool {
    (0..cycle.len()).all(|i| edges.contains(&(cycle[i], cycle[(i + 1) % cycle.len()])))
}

/// `n0 -> n1 -> n0`.
pub(crate) fn show(cycle: &[NodeId]) -> String {
    let mut s: Vec<String> = cycle.iter().map(NodeId::to_string).collect();
    s.extend(cycle.first().map(NodeId::to_string));
    s.join(" -> ")
}

/// One completed snapshot as the detector saw it.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) id: SnapshotId,
    /// When its initiator started it.
    pub(crate) started: Time,
    /// Every node's own vector clock entry at its cut. Every event that can change a
    /// lock table or a transaction (a send or a receive) ticks it, so it orders the
    /// local cuts of different snapshots at one node.
    pub(crate) cut: BTreeMap<NodeId, u64>,
    /// The states at the cut.
    pub(crate) states: BTreeMap<NodeId, LockState>,
    /// The exact wait-for graph.
    pub(crate) edges: Edges,
    /// The deadlocks it shows.
    pub(crate) cycles: Vec<Vec<NodeId>>,
}

/// The deadlock detector of a run: one snapshot after the other as they complete,
/// then the state at the end. Shared with the checks the run calls
/// ([`Detector::watch`]).
#[derive(Debug, Default)]
pub(crate) struct Detector {
    /// Every completed snapshot, in completion order.
    pub(crate) seen: Vec<Seen>,
    /// The wait-for graph once the run settled (nothing in flight).
    pub(crate) end: Option<Edges>,
}

/// A deadlock the detector found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) cycle: Vec<NodeId>,
    /// The first snapshot that showed it.
    pub(crate) by: SnapshotId,
    /// When that snapshot started.
    pub(crate) started: Time,
}

/// A reported deadlock that was not one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Phantom {
    pub(crate) cycle: Vec<NodeId>,
    /// The snapshot it was read from.
    pub(crate) by: SnapshotId,
    /// What does not have it: the exact graph of a snapshot of the same history whose
    /// cut is not earlier, or the end state.
    pub(crate) disproved_by: String,
}

impl fmt::Display for Phantom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "phantom deadlock {} read from snapshot {}: {} does not have it",
            show(&self.cycle),
            self.by,
            self.disproved_by
        )
    }
}

/// What [`Detector::verdict`] concluded about one way of reading the snapshots.
#[derive(Clone, Debug, Default)]
pub(crate) struct Verdict {
    /// The deadlocks reported in the history the run ended in, each with the first
    /// snapshot that showed it.
    pub(crate) found: Vec<Found>,
    /// Reported deadlocks that were not real.
    pub(crate) phantoms: Vec<Phantom>,
}

/// The deadlocks a snapshot shows, read exactly (its cut and its channels).
pub(crate) fn exact(seen: &Seen) -> Vec<Vec<NodeId>> {
    seen.cycles.clone()
}

/// The deadlocks a snapshot seems to show to a detector that reads the nodes' lock
/// tables at the cut but ignores the messages in flight.
pub(crate) fn channel_blind(seen: &Seen) -> Vec<Vec<NodeId>> {
    let states = seen.states.iter().map(|(n, s)| (*n, s));
    // Without messages to decode there is nothing to fail on.
    find_cycles(&wait_for_graph(states, []).unwrap_or_default())
}

impl Detector {
    /// A detector to share with the checks of one run.
    pub(crate) fn shared() -> Rc<RefCell<Detector>> {
        Rc::new(RefCell::new(Detector::default()))
    }

    /// `sim` with the checks: every snapshot's lock tables agree and its wait-for graph
    /// is recorded, and at the end the tables agree, every waiting transaction is
    /// blocked by a deadlock or by a transaction at work, and the final graph is
    /// recorded.
    pub(crate) fn watch(
        this: &Rc<RefCell<Detector>>,
        sim: shutter_sim::Sim<Locks>,
    ) -> shutter_sim::Sim<Locks> {
        let at_cut = Rc::clone(this);
        let at_end = Rc::clone(this);
        sim.invariant("lock tables agree", |cut| {
            lock_tables_agree(cut.states(), cut.in_flight())
        })
        .invariant("wait-for graph", move |cut| {
            let edges = cut_graph(cut)?;
            let snap = cut.snapshot();
            at_cut.borrow_mut().seen.push(Seen {
                id: snap.id,
                started: snap.timings.started,
                cut: snap.cuts.iter().map(|(n, c)| (*n, c.get(*n))).collect(),
                states: cut.states().map(|(n, s)| (n, s.clone())).collect(),
                cycles: find_cycles(&edges),
                edges,
            });
            Ok(())
        })
        .at_end("lock tables agree", |end| {
            lock_tables_agree(end.processes().map(|(n, p)| (n, p.state())), [])
        })
        .at_end("every waiting transaction is blocked", move |end| {
            let edges = end_graph(end)?;
            blocked_for_a_reason(end, &edges)?;
            at_end.borrow_mut().end = Some(edges);
            Ok(())
        })
    }

    /// Judges the deadlocks `read` reports from each snapshot (called once per
    /// snapshot, in completion order) against the truth.
    ///
    /// A deadlock is stable, so a cycle that was real by some snapshot's cut is in the
    /// exact graph of that snapshot, of every snapshot whose cut comes after it and of
    /// the end state; a reported cycle missing from any of them is a phantom. Snapshots
    /// overlap (one may complete before another whose cut is earlier), so "after" is
    /// the order of the cuts ([`precedes`]), not of completion; snapshots whose cuts
    /// cross are not compared.
    ///
    /// With crashes the run is not one history: a rollback to snapshot `R` continues
    /// from `R`'s cut and abandons whatever happened after it, deadlocks included. So
    /// the snapshots are followed in the order the event log has them, a rollback to
    /// `R` keeps only those whose cut precedes `R`'s, and each report is held against
    /// the history it was made in. Errs if the log does not add up (a rollback to a
    /// snapshot outside the current history, no end state).
    pub(crate) fn verdict(
        &self,
        report: &Report,
        mut read: impl FnMut(&Seen) -> Vec<Vec<NodeId>>,
    ) -> Result<Verdict, String> {
        let by_id: BTreeMap<SnapshotId, &Seen> = self.seen.iter().map(|s| (s.id, s)).collect();
        // The current history: its snapshots with the reports not disproved yet.
        let mut history: Vec<(&Seen, Vec<Vec<NodeId>>)> = Vec::new();
        let mut verdict = Verdict::default();
        for entry in &report.log {
            match &entry.kind {
                LogKind::Completed(id) => {
                    // Absent if it failed the structural checks: a violation already.
                    let Some(&snap) = by_id.get(id) else { continue };
                    history.push((snap, read(snap)));
                    let last = history.len() - 1;
                    for i in 0..history.len() {
                        let other = history[i].0;
                        // Reports from earlier cuts (and from this one) against this
                        // snapshot's graph, and this one's against later cuts'.
                        if precedes(other, snap) {
                            let what = || format!("the exact graph of snapshot {}", snap.id);
                            disprove(
                                &mut history[i].1,
                                other.id,
                                &snap.edges,
                                &mut verdict.phantoms,
                                what,
                            );
                        }
                        if i != last && precedes(snap, other) {
                            let what = || format!("the exact graph of snapshot {}", other.id);
                            disprove(
                                &mut history[last].1,
                                snap.id,
                                &other.edges,
                                &mut verdict.phantoms,
                                what,
                            );
                        }
                    }
                }
                LogKind::RolledBack(Some(to)) => {
                    let target = history.iter().find(|(s, _)| s.id == *to).map(|(s, _)| *s);
                    // The opening checkpoint (`shutter_snapshot::recovery::GENESIS`)
                    // precedes every snapshot.
                    if target.is_none() && to.s != 0 {
                        return Err(format!(
                            "{}: rolled back to {to}, which is no snapshot of the current history",
                            entry.node
                        ));
                    }
                    // Reports from the abandoned part can no longer be judged: the
                    // history they were made in is gone.
                    history.retain(|(s, _)| target.is_some_and(|t| precedes(s, t)));
                }
                _ => {}
            }
        }
        let end = self
            .end
            .as_ref()
            .ok_or("no end state: the end checks did not run")?;
        for (snap, cycles) in &mut history {
            let what = || "the end state".to_string();
            disprove(cycles, snap.id, end, &mut verdict.phantoms, what);
            for c in cycles.iter() {
                if !verdict.found.iter().any(|f| &f.cycle == c) {
                    verdict.found.push(Found {
                        cycle: c.clone(),
                        by: snap.id,
                        started: snap.started,
                    });
                }
            }
        }
        Ok(verdict)
    }
}

/// True if every node's cut in `a` is at or before its cut in `b`, so the global state
/// of `b` comes after that of `a` in the run.
pub(crate) fn precedes(a: &Seen, b: &Seen) -> bool {
    a.cut
        .iter()
        .all(|(n, own)| b.cut.get(n).is_some_and(|later| own <= later))
}

/// Moves the `cycles` read from snapshot `by` that `truth` lacks to `phantoms`.
fn disprove(
    cycles: &mut Vec<Vec<NodeId>>,
    by: SnapshotId,
    truth: &Edges,
    phantoms: &mut Vec<Phantom>,
    what: impl Fn() -> String,
) {
    cycles.retain(|c| {
        let real = has_cycle(truth, c);
        if !real {
            phantoms.push(Phantom {
                cycle: c.clone(),
                by,
                disproved_by: what(),
            });
        }
        real
    });
}

/// Runs [`Detector::verdict`] over the exact reading into the report: a phantom
/// becomes a violation, so the report shows it with the replay line.
pub(crate) fn judge(detector: &Rc<RefCell<Detector>>, report: &mut Report) -> Verdict {
    if !report.passed() {
        return Verdict::default();
    }
    let verdict = detector.borrow().verdict(report, exact);
    match verdict {
        Ok(v) => {
            for p in &v.phantoms {
                report.violations.push(p.to_string());
            }
            v
        }
        Err(why) => {
            report.violations.push(format!("deadlock detector: {why}"));
            Verdict::default()
        }
    }
}

fn end_graph(end: &End<'_, Locks>) -> Result<Edges, String> {
    wait_for_graph(end.processes().map(|(n, p)| (n, p.state())), [])
}

/// At the end (ticks stopped, nothing in flight) a transaction still waiting must be
/// stuck behind a deadlock or behind a transaction at work (which would release on its
/// next tick). Every waiting node having an edge says so: following the edges from it
/// (one per node) ends on a cycle or on a holder that does not wait, that is, at work.
/// A waiting transaction without an edge lost its grant.
fn blocked_for_a_reason(end: &End<'_, Locks>, edges: &Edges) -> Result<(), String> {
    let next: BTreeMap<NodeId, NodeId> = edges.iter().copied().collect();
    for (node, p) in end.processes() {
        let Some(lock) = p.state().txn.as_ref().and_then(|t| t.waiting) else {
            continue;
        };
        if !next.contains_key(&node) {
            return Err(format!(
                "{node} waits for {lock}, yet waits for nobody: the lock is free, or its owner \
                 does not know"
            ));
        }
    }
    Ok(())
}

/// A naive detector: it asks one node at a time for its lock table (here: node `k mod
/// n` of the `k`-th snapshot) and builds the graph from the newest answer of each,
/// ignoring the messages in flight. The answers are from different moments.
#[derive(Debug, Default)]
pub(crate) struct Poller {
    views: BTreeMap<NodeId, LockState>,
    polls: usize,
}

impl Poller {
    /// The next poll: `seen`'s state of the node whose turn it is. Once every node
    /// answered, the cycle this view shows, if any.
    pub(crate) fn poll(&mut self, seen: &Seen) -> Option<Vec<NodeId>> {
        let nodes: Vec<NodeId> = seen.states.keys().copied().collect();
        if nodes.is_empty() {
            return None;
        }
        let node = nodes[self.polls % nodes.len()];
        self.polls += 1;
        self.views.insert(node, seen.states.get(&node)?.clone());
        if self.views.len() < nodes.len() {
            return None;
        }
        let edges = wait_for_graph(self.views.iter().map(|(n, s)| (*n, s)), []).ok()?;
        find_cycle(&edges)
    }
}
