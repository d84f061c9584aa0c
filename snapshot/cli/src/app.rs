//! The bank as the CLI runs it: [`Bank`] plus a message tag that lets the CLI count
//! application-level duplicate deliveries, and a pause switch so the demo can stop
//! transfers and check that money is conserved once the network is quiet.
//!
//! Each outgoing transfer is the bank's own payload (the postcard amount) followed by a
//! 16-byte tag: the sender's incarnation (wall-clock µs at process creation) and a
//! per-incarnation sequence number, both little endian. [`shutter_snapshot::bank::decode_transfer`]
//! reads the amount and ignores trailing bytes, so snapshot files,
//! [`shutter_snapshot::bank::BankInvariant`] and `shutter inspect` see plain bank transfers. The tag
//! is not part of the snapshotted state: it only observes the runtime.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use shutter_vclock::NodeId;

use shutter_snapshot::bank::{Bank, BankState};
use shutter_snapshot::process::{Context, Process, Undeliverable};

/// Length of the tag appended to every transfer.
pub const TAG_LEN: usize = 16;

/// Switches and counters shared by every node of a process (the demo has many nodes in
/// one process, `shutter node` one).
#[derive(Debug, Default)]
pub struct Shared {
    /// While set, ticks send no transfers.
    pub paused: AtomicBool,
    /// Tagged messages delivered more than once.
    pub duplicates: AtomicU64,
    /// Messages delivered without a tag (not sent by this wrapper).
    pub untagged: AtomicU64,
    /// Admin connections refused for failed authentication.
    pub admin_refused: std::sync::Arc<AtomicU64>,
}

/// Which tags of one sender incarnation were delivered: everything below `low`, plus `above`.
#[derive(Debug, Default)]
struct Seen {
    low: u64,
    above: BTreeSet<u64>,
}

impl Seen {
    /// Records `seq`; false if it was already delivered.
    fn insert(&mut self, seq: u64) -> bool {
        if seq < self.low || !self.above.insert(seq) {
            return false;
        }
        while self.above.remove(&self.low) {
            self.low += 1;
        }
        true
    }
}

/// [`Bank`] with tagged transfers.
#[derive(Debug)]
pub struct TaggedBank {
    bank: Bank,
    incarnation: u64,
    next_seq: u64,
    /// Per (sender, incarnation). Bounded in practice: deliveries eventually fill gaps.
    seen: BTreeMap<(NodeId, u64), Seen>,
    shared: Arc<Shared>,
}

impl TaggedBank {
    /// Wraps `bank`.
    pub fn new(bank: Bank, shared: Arc<Shared>) -> Self {
        Self {
            bank,
            incarnation: shutter_transport::Time::wall_clock_now().as_micros(),
            next_seq: 0,
            seen: BTreeMap::new(),
            shared,
        }
    }

    fn tag_outgoing(&mut self, ctx: &mut Context) {
        for (to, mut payload) in ctx.take_outgoing() {
            payload.extend_from_slice(&self.incarnation.to_le_bytes());
            payload.extend_from_slice(&self.next_seq.to_le_bytes());
            self.next_seq += 1;
            ctx.send(to, payload);
        }
    }
}

/// Splits a tagged payload into the bank payload and `(incarnation, seq)`.
pub fn split_tag(payload: &[u8]) -> (&[u8], Option<(u64, u64)>) {
    if payload.len() <= TAG_LEN {
        return (payload, None);
    }
    let (body, tag) = payload.split_at(payload.len() - TAG_LEN);
    let inc = u64::from_le_bytes(tag[..8].try_into().expect("8 bytes"));
    let seq = u64::from_le_bytes(tag[8..].try_into().expect("8 bytes"));
    (body, Some((inc, seq)))
}

impl Process for TaggedBank {
    type State = BankState;

    fn on_start(&mut self, ctx: &mut Context) {
        self.bank.on_start(ctx);
        self.tag_outgoing(ctx);
    }

    fn on_message(&mut self, ctx: &mut Context, from: NodeId, payload: &[u8]) {
        let (body, tag) = split_tag(payload);
        match tag {
            Some((inc, seq)) => {
                if !self.seen.entry((from, inc)).or_default().insert(seq) {
                    self.shared.duplicates.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                self.shared.untagged.fetch_add(1, Ordering::Relaxed);
            }
        }
        // A duplicate is still delivered: this wrapper observes the runtime, it does not
        // repair it (the conservation checks then fail too).
        self.bank.on_message(ctx, from, body);
        self.tag_outgoing(ctx);
    }

    fn on_tick(&mut self, ctx: &mut Context) {
        if self.shared.paused.load(Ordering::Relaxed) {
            return;
        }
        self.bank.on_tick(ctx);
        self.tag_outgoing(ctx);
    }

    fn on_command(&mut self, ctx: &mut Context, command: &[u8]) {
        self.bank.on_command(ctx, command);
        self.tag_outgoing(ctx);
    }

    fn on_undeliverable(
        &mut self,
        ctx: &mut Context,
        to: NodeId,
        payload: &[u8],
        why: Undeliverable,
    ) {
        let (body, _) = split_tag(payload);
        self.bank.on_undeliverable(ctx, to, body, why);
        self.tag_outgoing(ctx);
    }

    fn on_inherit(
        &mut self,
        ctx: &mut Context,
        removed: NodeId,
        state: BankState,
        in_flight: &[(NodeId, Vec<u8>)],
    ) {
        let untagged: Vec<(NodeId, Vec<u8>)> = in_flight
            .iter()
            .map(|(from, p)| (*from, split_tag(p).0.to_vec()))
            .collect();
        self.bank.on_inherit(ctx, removed, state, &untagged);
        self.tag_outgoing(ctx);
    }

    fn snapshot(&self) -> BankState {
        self.bank.snapshot()
    }

    fn restore(&mut self, state: BankState) {
        self.bank.restore(state);
        // The deliveries remembered belong to the run that was rolled back: the
        // restored state has not seen the ones after its cut, and the recorded ones among
        // them are delivered again, rightly. Only later duplicates count.
        self.seen.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shutter_snapshot::bank::{BankConfig, decode_transfer};
    use shutter_transport::Time;

    #[test]
    fn tags_are_invisible_to_the_bank_and_duplicates_are_counted() {
        let shared = Arc::new(Shared::default());
        let cfg = BankConfig {
            transfer_probability: 1.0,
            ..BankConfig::default()
        };
        let mut a = TaggedBank::new(Bank::new(NodeId(0), cfg), shared.clone());
        let mut b = TaggedBank::new(Bank::new(NodeId(1), cfg), shared.clone());
        let mut ctx = Context::new(NodeId(0), Time::ZERO, vec![NodeId(1)]);
        a.on_tick(&mut ctx);
        a.on_tick(&mut ctx);
        let out = ctx.take_outgoing();
        assert_eq!(out.len(), 2);
        let amount = decode_transfer(&out[1].1).unwrap();
        let mut ctx_b = Context::new(NodeId(1), Time::ZERO, vec![NodeId(0)]);
        b.on_message(&mut ctx_b, NodeId(0), &out[1].1);
        b.on_message(&mut ctx_b, NodeId(0), &out[0].1);
        assert_eq!(shared.duplicates.load(Ordering::Relaxed), 0);
        b.on_message(&mut ctx_b, NodeId(0), &out[1].1);
        assert_eq!(shared.duplicates.load(Ordering::Relaxed), 1);
        assert!(b.snapshot().balance > 1_000 + amount);
        shared.paused.store(true, Ordering::Relaxed);
        a.on_tick(&mut ctx);
        assert!(ctx.take_outgoing().is_empty());
    }

    /// After a rollback the recorded in-flight transfers are delivered again, once: that
    /// is not a duplicate (found by `cluster_processes`, whose restarted node now rolls
    /// the cluster back).
    #[test]
    fn a_restore_forgets_the_deliveries_of_the_rolled_back_run() {
        let shared = Arc::new(Shared::default());
        let mut a = TaggedBank::new(Bank::new(NodeId(0), BankConfig::default()), shared.clone());
        let mut b = TaggedBank::new(Bank::new(NodeId(1), BankConfig::default()), shared.clone());
        let mut ctx = Context::new(NodeId(0), Time::ZERO, vec![NodeId(1)]);
        a.on_command(
            &mut ctx,
            &shutter_snapshot::bank::transfer_command(NodeId(1), 5),
        );
        let (_, payload) = ctx.take_outgoing().pop().expect("a transfer");
        let cut = b.snapshot();
        let mut ctx = Context::new(NodeId(1), Time::ZERO, vec![NodeId(0)]);
        b.on_message(&mut ctx, NodeId(0), &payload);
        b.restore(cut);
        b.on_message(&mut ctx, NodeId(0), &payload);
        assert_eq!(shared.duplicates.load(Ordering::Relaxed), 0);
        b.on_message(&mut ctx, NodeId(0), &payload);
        assert_eq!(shared.duplicates.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn seen_window_compacts() {
        let mut s = Seen::default();
        for seq in [2, 0, 1, 4] {
            assert!(s.insert(seq));
        }
        assert_eq!((s.low, s.above.len()), (3, 1));
        assert!(!s.insert(1) && !s.insert(4));
    }
}
