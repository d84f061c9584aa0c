//! Lean application headers: what [`crate::stack::Stack`] ships instead of a whole
//! [`AppHeader`] on every message.
//!
//! A whole header repeats per-peer constants (the sender's engine `life`, 8 bytes) and
//! the whole vector clock (2-3 bytes an entry) on every message. Here a message may
//! instead name a **baseline**: an earlier message on the same channel, of the same
//! sender life, that the receiver kept. It then carries only its sequence number and
//! clock as increments over the baseline's, and inherits the life. The increments take
//! the shortest of four forms ([`ClockDiff`]): runs of equal increments (a ring), sparse
//! `(gap, increment)` pairs (a few busy channels), bit-packed over their minimum with
//! outliers listed apart (all-to-all: every entry grew by a similar amount), or one
//! varint per entry.
//!
//! Exactness without FIFO, duplicates or guesses:
//!
//! * The sender names only a baseline the receiver's transport has **acknowledged**
//!   ([`Encoder::acked`]); the receiving stack decodes every delivered message before any
//!   other decision, so an acknowledged kept message is always in the receiver's table.
//!   Baselines are named by transport message id (`back` = own id minus the baseline's),
//!   ids being unique per session (pair of incarnations).
//! * The baseline a message names never goes backwards in id order (it is the newest
//!   acknowledged one when the message is handed to the transport). So once a message
//!   naming baseline `c` was decoded and every id below it was received, nothing still to
//!   come names anything older than `c`: the receiver drops those ([`Decoder::prune`]
//!   with the transport's [`shutter_transport::core::Core::received_below`]). The table
//!   is bounded by the transport's receive window.
//! * Sessions end on a restart of either side; both ends then forget the channel's
//!   baselines ([`Encoder::reset_peer`], [`Decoder::reset_peer`]), and the next message
//!   is whole again.
//! * A sender keeps at most [`MAX_PENDING`] kept messages unacknowledged per channel, so
//!   it holds few clocks; what it needs to give an abandoned message back to its process
//!   (life and own clock entry) it keeps per message in flight.
//!
//! The choice is per message and adaptive: a whole header is sent whenever it is not
//! longer, or no baseline of the current life is acknowledged yet. Lengths are those of
//! the wire form (module `frame`): one flags byte for `keep`, the head's form and what is
//! left out (an empty `joined`, a sequence increment equal to `back`), and whole clocks
//! bit-packed over their smallest entry where that is shorter.

use std::collections::BTreeMap;

use shutter_vclock::{MAX_NODES, NodeId, VClock};
use thiserror::Error;

use crate::wire::{AppHeader, ClockDiff, LeanApp, LeanHead};

mod frame;

/// Kept messages a sender has in flight per channel at most: a new one is kept only
/// while fewer are unacknowledged (two, so a fresh baseline is on its way while the last
/// one's acknowledgement returns).
pub const MAX_PENDING: usize = 2;

/// What a baseline supplies.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Base {
    life: u64,
    seq: u64,
    ts: VClock,
}

/// Why a lean header could not be decoded (the message is dropped and counted: an
/// honest sender never causes one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum LeanError {
    /// The named baseline is not (or no longer) kept here.
    #[error("unknown baseline {back} messages back")]
    UnknownBase {
        /// The `back` the message carried.
        back: u64,
    },
    /// Increments overflow, or describe more than `MAX_NODES` entries.
    #[error("clock increments out of range")]
    BadDiff,
}

/// What a sender needs to give back a message it never got acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InFlight {
    /// The sender engine's life when it sent the message.
    pub life: u64,
    /// The sender's own clock entry in the message's header.
    pub stamp: u64,
}

/// Sender side: the baselines per destination and the messages in flight.
#[derive(Debug, Default)]
pub struct Encoder {
    peers: BTreeMap<NodeId, Outgoing>,
    in_flight: BTreeMap<(NodeId, u64), InFlight>,
}

#[derive(Debug, Default)]
struct Outgoing {
    /// The newest acknowledged kept message: id and header.
    base: Option<(u64, Base)>,
    /// Kept messages not acknowledged yet.
    pending: Vec<(u64, Base)>,
}

impl Encoder {
    /// The lean form of the message that gets transport id `id` to `to`. Pure: call
    /// [`Encoder::sent`] once the transport took it.
    pub fn encode(&self, to: NodeId, id: u64, header: &AppHeader, payload: Vec<u8>) -> LeanApp {
        let out = self.peers.get(&to);
        let keep = out.is_none_or(|o| o.pending.len() < MAX_PENDING);
        let whole = || LeanHead::Whole {
            life: header.life,
            seq: header.seq,
            ts: header.ts.clone(),
        };
        let head = match out.and_then(|o| o.base.as_ref()) {
            Some((base_id, base))
                if base.life == header.life && *base_id < id && base.seq <= header.seq =>
            {
                let diffed = diff(&base.ts, &header.ts).map(|ts| LeanHead::Diff {
                    back: id - base_id,
                    seq: header.seq - base.seq,
                    ts,
                });
                // Sized against the cheap lower bound of a whole head first: a short diff
                // (a busy channel's) wins without sizing the whole clock's forms.
                let shorter = |d: &LeanHead| {
                    let n = frame::head_len(d);
                    n < frame::whole_len_at_least(header.life, header.seq, &header.ts)
                        || n < frame::whole_len(header.life, header.seq, &header.ts)
                };
                match diffed {
                    Some(d) if shorter(&d) => d,
                    _ => whole(),
                }
            }
            _ => whole(),
        };
        LeanApp {
            keep,
            head,
            joined: header.joined.clone(),
            payload,
        }
    }

    /// The transport took the message `encode` made, with id `id`.
    pub fn sent(&mut self, to: NodeId, id: u64, header: &AppHeader, keep: bool, stamp: u64) {
        self.in_flight.insert(
            (to, id),
            InFlight {
                life: header.life,
                stamp,
            },
        );
        if keep {
            self.peers.entry(to).or_default().pending.push((
                id,
                Base {
                    life: header.life,
                    seq: header.seq,
                    ts: header.ts.clone(),
                },
            ));
        }
    }

    /// The transport acknowledged message `id` to `to`: a kept one becomes the baseline
    /// if it is newer.
    pub fn acked(&mut self, to: NodeId, id: u64) {
        self.in_flight.remove(&(to, id));
        let Some(out) = self.peers.get_mut(&to) else {
            return;
        };
        if let Some(i) = out.pending.iter().position(|(p, _)| *p == id) {
            let (id, base) = out.pending.swap_remove(i);
            if out.base.as_ref().is_none_or(|(b, _)| *b < id) {
                out.base = Some((id, base));
            }
        }
    }

    /// The transport abandoned message `id` to `to` (its receiver restarted): what to
    /// give back, if it was an application message sent through here.
    pub fn abandoned(&mut self, to: NodeId, id: u64) -> Option<InFlight> {
        if let Some(out) = self.peers.get_mut(&to) {
            out.pending.retain(|(p, _)| *p != id);
        }
        self.in_flight.remove(&(to, id))
    }

    /// The session with `to` ended (it restarted, or left): its baselines are gone. The
    /// messages in flight stay until the transport abandons them.
    pub fn reset_peer(&mut self, to: NodeId) {
        self.peers.remove(&to);
    }

    /// This node's transport restarted: every session ended, and what was in flight will
    /// be neither acknowledged nor abandoned.
    pub fn reset_all(&mut self) {
        self.peers.clear();
        self.in_flight.clear();
    }

    /// Forgets what is in flight to `to` (its transport state was dropped).
    pub fn forget_peer(&mut self, to: NodeId) {
        self.peers.remove(&to);
        self.in_flight.retain(|(p, _), _| *p != to);
    }

    /// Clocks held (baselines and pending kept messages) and messages in flight.
    pub fn held(&self) -> (usize, usize) {
        let clocks = self
            .peers
            .values()
            .map(|o| o.pending.len() + usize::from(o.base.is_some()))
            .sum();
        (clocks, self.in_flight.len())
    }
}

/// Receiver side: the kept messages per sender.
#[derive(Debug, Default)]
pub struct Decoder {
    peers: BTreeMap<NodeId, BTreeMap<u64, Kept>>,
}

#[derive(Debug)]
struct Kept {
    base: Base,
    /// The lowest id of a message decoded against this baseline.
    named_by: Option<u64>,
}

impl Decoder {
    /// Decodes message `id` from `from` into the header the engine sees, keeping it as a
    /// baseline if it asks to be kept.
    pub fn decode(
        &mut self,
        from: NodeId,
        id: u64,
        app: LeanApp,
    ) -> Result<(AppHeader, Vec<u8>), LeanError> {
        let table = self.peers.entry(from).or_default();
        let (life, seq, ts) = match app.head {
            LeanHead::Whole { life, seq, ts } => (life, seq, ts),
            LeanHead::Diff { back, seq, ts } => {
                let unknown = LeanError::UnknownBase { back };
                let base_id = id.checked_sub(back).filter(|_| back > 0).ok_or(unknown)?;
                let kept = table.get_mut(&base_id).ok_or(unknown)?;
                let seq = kept.base.seq.checked_add(seq).ok_or(LeanError::BadDiff)?;
                let ts = apply(&kept.base.ts, &ts).ok_or(LeanError::BadDiff)?;
                kept.named_by = Some(kept.named_by.map_or(id, |n| n.min(id)));
                (kept.base.life, seq, ts)
            }
        };
        if app.keep {
            // The transport delivers an id once per session; should it come twice, the
            // first decoding stays the baseline.
            table.entry(id).or_insert_with(|| Kept {
                base: Base {
                    life,
                    seq,
                    ts: ts.clone(),
                },
                named_by: None,
            });
        }
        let header = AppHeader {
            ts,
            joined: app.joined,
            life,
            seq,
        };
        Ok((header, app.payload))
    }

    /// Every message from `from` with an id below `below` was received and decoded:
    /// drops the baselines nothing still to come can name.
    pub fn prune(&mut self, from: NodeId, below: u64) {
        let Some(table) = self.peers.get_mut(&from) else {
            return;
        };
        let newest_named = table
            .iter()
            .rev()
            .find(|(_, k)| k.named_by.is_some_and(|n| n < below))
            .map(|(&id, _)| id);
        if let Some(c) = newest_named {
            *table = table.split_off(&c);
        }
    }

    /// The session with `from` ended: its baselines are gone.
    pub fn reset_peer(&mut self, from: NodeId) {
        self.peers.remove(&from);
    }

    /// This node's transport restarted: every session ended.
    pub fn reset_all(&mut self) {
        self.peers.clear();
    }

    /// Baselines held, over all senders.
    pub fn held(&self) -> usize {
        self.peers.values().map(BTreeMap::len).sum()
    }
}

/// `now - base` entry-wise, in the shorter of the two forms; `None` if an entry went
/// down (a clock of another life, which the caller excludes, or not a successor).
fn diff(base: &VClock, now: &VClock) -> Option<ClockDiff> {
    let (b, n) = (base.entries(), now.entries());
    if b.len() > n.len() {
        return None;
    }
    let mut each = Vec::with_capacity(n.len());
    for (i, &v) in n.iter().enumerate() {
        each.push(v.checked_sub(b.get(i).copied().unwrap_or(0))?);
    }
    Some(shortest(each))
}

/// Increments `each` (entry by entry, from entry 0) in the shortest of the four forms.
fn shortest(mut each: Vec<u64>) -> ClockDiff {
    while each.last() == Some(&0) {
        each.pop();
    }
    // Every message is diffed, so the forms are sized first (without their common tag
    // byte) and only the shortest is built (the first of equals, in this order).
    let (min, bits) = pack_width(&each);
    let sizes = [
        pairs_len(runs(&each)),
        pairs_len(sparse(&each)),
        packed_len(
            each.len() as u64,
            min,
            packed_bytes(each.len(), bits),
            exceptions(&each, min, bits),
        ),
        each_len(&each),
    ];
    let best = (0..sizes.len()).min_by_key(|&i| sizes[i]).unwrap_or(3);
    match best {
        0 => ClockDiff::Runs(runs(&each).collect()),
        1 => ClockDiff::Sparse(sparse(&each).collect()),
        2 => pack_with(&each, min, bits),
        _ => ClockDiff::Each(each),
    }
}

/// `(count, step)` runs of equal steps.
fn runs(each: &[u64]) -> impl Iterator<Item = (u64, u64)> + '_ {
    each.chunk_by(|a, b| a == b)
        .map(|run| (run.len() as u64, run[0]))
}

/// `(gap, step)` for each step above 0 (see [`ClockDiff::Sparse`]).
fn sparse(each: &[u64]) -> impl Iterator<Item = (u64, u64)> + '_ {
    gapped(each, |d| (d > 0).then_some(d))
}

/// `(gap, value)` for each entry `pick` gives a value for, indexed as in
/// [`ClockDiff::Sparse`]: the first one's gap is its index, each later one's the
/// distance from the previous.
fn gapped<'a>(
    each: &'a [u64],
    pick: impl Fn(u64) -> Option<u64> + 'a,
) -> impl Iterator<Item = (u64, u64)> + 'a {
    let mut last = 0;
    each.iter().enumerate().filter_map(move |(i, &d)| {
        let v = pick(d)?;
        let gap = (i - last) as u64;
        last = i;
        Some((gap, v))
    })
}

/// Encoded bytes of a list of varint pairs (length, then the pairs).
fn pairs_len(pairs: impl Iterator<Item = (u64, u64)>) -> usize {
    let (n, bytes) = pairs.fold((0u64, 0usize), |(n, b), (x, y)| {
        (n + 1, b + varint_len(x) + varint_len(y))
    });
    varint_len(n) + bytes
}

/// Encoded bytes of a list of varints (length, then the values).
fn each_len(each: &[u64]) -> usize {
    varint_len(each.len() as u64) + each.iter().map(|&d| varint_len(d)).sum::<usize>()
}

/// Bytes that `count` entries of `bits` bits pack into.
fn packed_bytes(count: usize, bits: usize) -> usize {
    (count * bits).div_ceil(8)
}

/// Encoded bytes of a [`ClockDiff::Packed`]'s fields: count, min, the width byte, the
/// packed bytes with their length, and the exceptions.
fn packed_len(
    count: u64,
    min: u64,
    bytes: usize,
    extra: impl Iterator<Item = (u64, u64)>,
) -> usize {
    varint_len(count) + varint_len(min) + 1 + varint_len(bytes as u64) + bytes + pairs_len(extra)
}

/// The frame of reference for `each`: the smallest step, and the bit width for the
/// steps above it that makes the packed form shortest, the steps that need more bits
/// going as exceptions (costed at one byte of gap plus their varint, which is exact for
/// gaps under 128). Linear: the widths are tried from a histogram of bit lengths.
fn pack_width(each: &[u64]) -> (u64, usize) {
    let min = each.iter().copied().min().unwrap_or(0);
    // Per width w: how many entries need exactly w bits, and their varints' bytes.
    let mut needing = [(0usize, 0usize); 65];
    for &d in each {
        let v = d - min;
        needing[bit_width(v)].0 += 1;
        needing[bit_width(v)].1 += 1 + varint_len(v);
    }
    let mut best = (usize::MAX, 64);
    let mut above = (0usize, 0usize);
    for bits in (0..=64).rev() {
        let cost = packed_bytes(each.len(), bits) + varint_len(above.0 as u64) + above.1;
        if cost <= best.0 {
            best = (cost, bits);
        }
        above.0 += needing[bits].0;
        above.1 += needing[bits].1;
    }
    (min, best.1)
}

fn bit_width(v: u64) -> usize {
    64 - v.leading_zeros() as usize
}

/// `(gap, step - min)` of the steps that need more than `bits` bits over `min`.
fn exceptions(each: &[u64], min: u64, bits: usize) -> impl Iterator<Item = (u64, u64)> + '_ {
    gapped(each, move |d| {
        (bit_width(d - min) > bits).then_some(d - min)
    })
}

/// The frame-of-reference form of `each` (see [`pack_width`]).
fn pack_with(each: &[u64], min: u64, bits: usize) -> ClockDiff {
    let mut packed = vec![0u8; packed_bytes(each.len(), bits)];
    for (i, &d) in each.iter().enumerate() {
        let v = d - min;
        if bit_width(v) > bits {
            continue;
        }
        for b in (0..bits).filter(|b| v >> b & 1 == 1) {
            let at = i * bits + b;
            packed[at / 8] |= 1 << (at % 8);
        }
    }
    ClockDiff::Packed {
        count: each.len() as u64,
        min,
        bits: bits as u8,
        packed,
        extra: exceptions(each, min, bits).collect(),
    }
}

/// [`pack_with`] at the width [`pack_width`] picks.
#[cfg(test)]
fn pack(each: &[u64]) -> ClockDiff {
    let (min, bits) = pack_width(each);
    pack_with(each, min, bits)
}

/// The increments of a [`ClockDiff::Packed`] before its `extra`; `None` if its fields
/// disagree (bits over 64, more than `MAX_NODES` entries, or a byte count other than
/// what they need).
fn unpack(count: u64, min: u64, bits: u8, packed: &[u8]) -> Option<Vec<u64>> {
    let count = usize::try_from(count).ok().filter(|&c| c <= MAX_NODES)?;
    let bits = usize::from(bits);
    if bits > 64 || packed.len() != packed_bytes(count, bits) {
        return None;
    }
    let mut each = Vec::with_capacity(count);
    for i in 0..count {
        let mut v = 0u64;
        for b in 0..bits {
            let at = i * bits + b;
            v |= u64::from(packed[at / 8] >> (at % 8) & 1) << b;
        }
        each.push(min.checked_add(v)?);
    }
    Some(each)
}

/// `base + d` entry-wise; `None` on overflow or more than `MAX_NODES` entries.
fn apply(base: &VClock, d: &ClockDiff) -> Option<VClock> {
    /// Adds `step` to entries `at..at + count`, growing the clock as needed.
    fn add(entries: &mut Vec<u64>, at: usize, count: u64, step: u64) -> Option<usize> {
        let end = usize::try_from(count)
            .ok()
            .and_then(|c| at.checked_add(c))
            .filter(|&e| e <= MAX_NODES)?;
        if step != 0 {
            if entries.len() < end {
                entries.resize(end, 0);
            }
            for e in &mut entries[at..end] {
                *e = e.checked_add(step)?;
            }
        }
        Some(end)
    }
    /// Adds each `(gap, step)`: its index is the previous one's plus `gap` (more than
    /// 0), the first one's is `gap`.
    fn add_sparse(entries: &mut Vec<u64>, pairs: &[(u64, u64)]) -> Option<()> {
        // `at` is one past the previous changed entry.
        let mut at = 0usize;
        for (k, &(gap, step)) in pairs.iter().enumerate() {
            let index = if k == 0 {
                usize::try_from(gap).ok()?
            } else {
                (at - 1).checked_add(usize::try_from(gap).ok().filter(|&g| g > 0)?)?
            };
            at = add(entries, index, 1, step)?;
        }
        Some(())
    }
    let mut entries = base.entries().to_vec();
    let mut at = 0usize;
    match d {
        ClockDiff::Runs(runs) => {
            for &(count, step) in runs {
                at = add(&mut entries, at, count, step)?;
            }
        }
        ClockDiff::Each(each) => {
            for &step in each {
                at = add(&mut entries, at, 1, step)?;
            }
        }
        ClockDiff::Packed {
            count,
            min,
            bits,
            packed,
            extra,
        } => {
            for step in unpack(*count, *min, *bits, packed)? {
                at = add(&mut entries, at, 1, step)?;
            }
            add_sparse(&mut entries, extra)?;
        }
        ClockDiff::Sparse(pairs) => add_sparse(&mut entries, pairs)?,
    }
    Some(VClock::from_entries(entries))
}

/// Bytes of a postcard varint.
fn varint_len(v: u64) -> usize {
    (64 - v.max(1).leading_zeros() as usize).div_ceil(7)
}

/// Encoded bytes of a diff (tag, then its fields).
fn diff_len(d: &ClockDiff) -> usize {
    1 + match d {
        ClockDiff::Runs(r) | ClockDiff::Sparse(r) => pairs_len(r.iter().copied()),
        ClockDiff::Each(e) => each_len(e),
        ClockDiff::Packed {
            count,
            min,
            packed,
            extra,
            ..
        } => packed_len(*count, *min, packed.len(), extra.iter().copied()),
    }
}

/// Encoded bytes of a whole clock (see `VClock`'s wire form).
fn clock_len(ts: &VClock) -> usize {
    match ts.base_offsets() {
        None => 1,
        Some((base, offsets)) => {
            varint_len(ts.len() as u64 + 1)
                + varint_len(base)
                + offsets.map(varint_len).sum::<usize>()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(life: u64, seq: u64, ts: &[u64]) -> AppHeader {
        AppHeader {
            ts: VClock::from_entries(ts.to_vec()),
            joined: vec![],
            life,
            seq,
        }
    }

    #[test]
    fn varint_lengths_match_postcard() {
        for v in [0u64, 1, 127, 128, 16_383, 16_384, u64::MAX >> 1, u64::MAX] {
            assert_eq!(
                varint_len(v),
                postcard::to_allocvec(&v).unwrap().len(),
                "{v}"
            );
        }
        let d = ClockDiff::Runs(vec![(3, 200), (1, 0)]);
        assert_eq!(diff_len(&d), postcard::to_allocvec(&d).unwrap().len());
        let d = ClockDiff::Each(vec![1, 300, 0]);
        assert_eq!(diff_len(&d), postcard::to_allocvec(&d).unwrap().len());
        let d = ClockDiff::Sparse(vec![(0, 300), (7, 1)]);
        assert_eq!(diff_len(&d), postcard::to_allocvec(&d).unwrap().len());
        for each in [vec![], vec![0; 9], vec![130, 140, 1 << 40, 129, 200, 7]] {
            let d = pack(&each);
            assert_eq!(diff_len(&d), postcard::to_allocvec(&d).unwrap().len());
        }
        for c in [vec![], vec![0, 5], vec![1 << 55, (1 << 55) + 300, 0, 7]] {
            let c = VClock::from_entries(c);
            assert_eq!(clock_len(&c), postcard::to_allocvec(&c).unwrap().len());
        }
    }

    #[test]
    fn whole_until_a_kept_message_is_acknowledged() {
        let me = NodeId(0);
        let to = NodeId(1);
        let mut enc = Encoder::default();
        let mut dec = Decoder::default();
        let big = 1u64 << 55;
        let h0 = header(big, 1, &[big + 10, big + 20, big + 30]);
        let a0 = enc.encode(to, 0, &h0, b"a".to_vec());
        assert!(a0.keep);
        assert!(matches!(a0.head, LeanHead::Whole { .. }));
        enc.sent(to, 0, &h0, a0.keep, h0.ts.get(me));
        assert_eq!(dec.decode(me, 0, a0).unwrap(), (h0.clone(), b"a".to_vec()));
        // Not acknowledged yet: still whole.
        let h1 = header(big, 2, &[big + 11, big + 21, big + 31]);
        let a1 = enc.encode(to, 1, &h1, vec![]);
        assert!(matches!(a1.head, LeanHead::Whole { .. }));
        enc.sent(to, 1, &h1, a1.keep, 0);
        enc.acked(to, 0);
        let h2 = header(big, 3, &[big + 12, big + 22, big + 32]);
        let a2 = enc.encode(to, 2, &h2, vec![]);
        assert_eq!(
            a2.head,
            LeanHead::Diff {
                back: 2,
                seq: 2,
                ts: ClockDiff::Runs(vec![(3, 2)])
            }
        );
        // Arrives before message 1: decodes all the same.
        assert_eq!(dec.decode(me, 2, a2).unwrap().0, h2);
        assert_eq!(dec.decode(me, 1, a1).unwrap().0, h1);
    }

    #[test]
    fn another_life_is_never_diffed_against() {
        let to = NodeId(1);
        let mut enc = Encoder::default();
        let h0 = header(5, 1, &[100, 200]);
        let a0 = enc.encode(to, 0, &h0, vec![]);
        enc.sent(to, 0, &h0, a0.keep, 100);
        enc.acked(to, 0);
        let later_life = header(6, 1, &[300, 400]);
        assert!(matches!(
            enc.encode(to, 1, &later_life, vec![]).head,
            LeanHead::Whole { .. }
        ));
        // A clock that went down is never diffed either.
        assert!(
            diff(
                &VClock::from_entries(vec![3, 4]),
                &VClock::from_entries(vec![3, 2])
            )
            .is_none()
        );
    }

    #[test]
    fn unknown_baseline_is_an_error_not_a_guess() {
        let mut dec = Decoder::default();
        let app = LeanApp {
            keep: false,
            head: LeanHead::Diff {
                back: 1,
                seq: 0,
                ts: ClockDiff::Each(vec![1]),
            },
            joined: vec![],
            payload: vec![],
        };
        assert_eq!(
            dec.decode(NodeId(1), 5, app.clone()),
            Err(LeanError::UnknownBase { back: 1 })
        );
        let mut zero = app.clone();
        zero.head = LeanHead::Diff {
            back: 0,
            seq: 0,
            ts: ClockDiff::Each(vec![]),
        };
        assert!(dec.decode(NodeId(1), 5, zero).is_err());
        let mut far = app;
        far.head = LeanHead::Diff {
            back: 9,
            seq: 0,
            ts: ClockDiff::Each(vec![]),
        };
        assert!(dec.decode(NodeId(1), 5, far).is_err());
    }

    #[test]
    fn every_form_round_trips() {
        let base = VClock::from_entries(vec![5, 0, 9, 9, 9, 9, 1]);
        for now in [
            vec![5, 0, 9, 9, 9, 9, 1],
            vec![6, 0, 9, 9, 9, 9, 1],
            vec![5, 0, 9, 9, 9, 9, 1, 0, 0, 4],
            vec![9, 4, 13, 13, 13, 13, 5, 4],
            vec![5, 7, 9, 9, 9, 9, 300],
            vec![7, 3, 10, 12, 15, 20, 2000],
        ] {
            let now = VClock::from_entries(now);
            let d = diff(&base, &now).expect("grew");
            let e: Vec<u64> = (0..now.len())
                .map(|i| now.entries()[i] - base.entries().get(i).copied().unwrap_or(0))
                .collect();
            let mut sparse = Vec::new();
            let mut last = 0;
            for (i, &x) in e.iter().enumerate().filter(|(_, x)| **x > 0) {
                sparse.push(((i - last) as u64, x));
                last = i;
            }
            let forms = [
                d,
                ClockDiff::Each(e.clone()),
                ClockDiff::Sparse(sparse),
                ClockDiff::Runs(e.iter().map(|&x| (1, x)).collect()),
            ];
            for f in forms {
                assert_eq!(apply(&base, &f).as_ref(), Some(&now), "{f:?}");
            }
        }
        // A sparse gap of 0 after the first entry would name the same entry twice.
        assert!(apply(&base, &ClockDiff::Sparse(vec![(1, 1), (0, 1)])).is_none());
    }

    #[test]
    fn packed_steps_take_the_width_of_the_bulk_and_list_outliers() {
        // All-to-all: 64 entries grew by 100-163, one node was heard of for the first time.
        let mut each: Vec<u64> = (0..64).map(|i| 100 + i).collect();
        each[9] = 1 << 50;
        let ClockDiff::Packed {
            count,
            min,
            bits,
            ref packed,
            ref extra,
        } = pack(&each)
        else {
            unreachable!()
        };
        assert_eq!((count, min, bits, packed.len()), (64, 100, 6, 48));
        assert_eq!(extra, &vec![(9, (1 << 50) - 100)]);
        let d = diff(&VClock::default(), &VClock::from_entries(each.clone())).unwrap();
        assert!(matches!(d, ClockDiff::Packed { .. }), "{d:?}");
        assert_eq!(diff_len(&d), 1 + 1 + 1 + 1 + 1 + 48 + 1 + 1 + 8);
        assert_eq!(
            apply(&VClock::default(), &d),
            Some(VClock::from_entries(each))
        );
    }

    #[test]
    fn malformed_packed_steps_are_refused() {
        let base = VClock::from_entries(vec![1, 2]);
        let packed = |count, min, bits, packed: Vec<u8>, extra| ClockDiff::Packed {
            count,
            min,
            bits,
            packed,
            extra,
        };
        assert_eq!(
            apply(&base, &packed(3, 1, 2, vec![0b10_01_00], vec![])),
            Some(VClock::from_entries(vec![2, 4, 3]))
        );
        // A byte short, a byte too many, a width over 64, too many entries.
        assert!(apply(&base, &packed(3, 1, 3, vec![0], vec![])).is_none());
        assert!(apply(&base, &packed(3, 1, 2, vec![0, 0], vec![])).is_none());
        assert!(apply(&base, &packed(1, 1, 65, vec![0; 9], vec![])).is_none());
        assert!(apply(&base, &packed(u64::MAX, 0, 0, vec![], vec![])).is_none());
        assert!(apply(&base, &packed(MAX_NODES as u64 + 1, 0, 0, vec![], vec![])).is_none());
        // Overflow in the frame, or in an exception on top of it.
        assert!(apply(&base, &packed(1, u64::MAX, 1, vec![1], vec![])).is_none());
        assert!(apply(&base, &packed(1, 1, 0, vec![], vec![(0, u64::MAX)])).is_none());
        assert!(apply(&base, &packed(2, 0, 0, vec![], vec![(1, 1), (0, 1)])).is_none());
    }

    proptest::proptest! {
        /// Whatever the increments, every form the encoder may pick decodes to the clock.
        #[test]
        fn packed_round_trips(
            base in proptest::collection::vec(0u64..1 << 60, 0..80),
            steps in proptest::collection::vec(
                proptest::prop_oneof![0u64..4, 100u64..200, 0u64..1 << 60], 0..80),
        ) {
            let now: Vec<u64> = (0..base.len().max(steps.len()))
                .map(|i| base.get(i).copied().unwrap_or(0) + steps.get(i).copied().unwrap_or(0))
                .collect();
            let (base, now) = (VClock::from_entries(base), VClock::from_entries(now));
            let mut each: Vec<u64> = (0..now.len())
                .map(|i| now.entries()[i] - base.entries().get(i).copied().unwrap_or(0))
                .collect();
            while each.last() == Some(&0) {
                each.pop();
            }
            let p = pack(&each);
            proptest::prop_assert_eq!(diff_len(&p), postcard::to_allocvec(&p).unwrap().len());
            proptest::prop_assert_eq!(apply(&base, &p), Some(now.clone()));
            let d = diff(&base, &now).expect("grew");
            // Sized without building: the sizes agree with the built forms, and the
            // shortest form is what diff picks.
            let (min, bits) = pack_width(&each);
            let sized = packed_len(
                each.len() as u64,
                min,
                packed_bytes(each.len(), bits),
                exceptions(&each, min, bits),
            );
            proptest::prop_assert_eq!(1 + sized, diff_len(&p));
            let forms = [
                ClockDiff::Runs(runs(&each).collect()),
                ClockDiff::Sparse(sparse(&each).collect()),
                p.clone(),
                ClockDiff::Each(each.clone()),
            ];
            let shortest = forms.iter().map(diff_len).min().unwrap();
            proptest::prop_assert_eq!(diff_len(&d), shortest);
            proptest::prop_assert_eq!(apply(&base, &d), Some(now));
        }
    }

    #[test]
    fn huge_runs_are_refused_without_allocating() {
        let base = VClock::from_entries(vec![1, 2]);
        assert!(apply(&base, &ClockDiff::Runs(vec![(u64::MAX, 0), (1, 1)])).is_none());
        assert!(apply(&base, &ClockDiff::Runs(vec![(MAX_NODES as u64, 0), (1, 1)])).is_none());
        assert!(apply(&base, &ClockDiff::Runs(vec![(1, u64::MAX)])).is_none());
        assert!(apply(&base, &ClockDiff::Sparse(vec![(u64::MAX, 1)])).is_none());
        assert!(apply(&base, &ClockDiff::Sparse(vec![(0, 1), (u64::MAX, 1)])).is_none());
        assert_eq!(
            apply(&base, &ClockDiff::Runs(vec![(2, 0), (1, 4)])),
            Some(VClock::from_entries(vec![1, 2, 4]))
        );
    }

    #[test]
    fn prune_keeps_what_an_undelivered_message_may_name() {
        let me = NodeId(0);
        let mut dec = Decoder::default();
        let whole = |ts: u64| LeanApp {
            keep: true,
            head: LeanHead::Whole {
                life: 1,
                seq: ts,
                ts: VClock::from_entries(vec![ts]),
            },
            joined: vec![],
            payload: vec![],
        };
        let naming = |back: u64| LeanApp {
            keep: false,
            head: LeanHead::Diff {
                back,
                seq: 1,
                ts: ClockDiff::Each(vec![1]),
            },
            joined: vec![],
            payload: vec![],
        };
        dec.decode(me, 0, whole(1)).unwrap();
        dec.decode(me, 1, whole(2)).unwrap();
        // Message 3 names baseline 1; message 2 (naming baseline 0) is not here yet.
        dec.decode(me, 3, naming(2)).unwrap();
        dec.prune(me, 2);
        assert_eq!(dec.held(), 2, "message 2 may still name baseline 0");
        dec.decode(me, 2, naming(2)).unwrap();
        dec.prune(me, 4);
        assert_eq!(
            dec.held(),
            1,
            "every id below 4 is in: baseline 0 is unreachable"
        );
        assert!(dec.decode(me, 4, naming(3)).is_ok());
    }
}
