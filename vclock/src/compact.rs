//! Compact clock encoding that stays exact over unordered, lossy, duplicating channels.
//!
//! Differential clocks (Singhal–Kshemkalyani) send only the entries that changed since the
//! previous message to the same peer. That is wrong without FIFO: if message 2 overtakes
//! message 1, the receiver applies a diff against a clock it never saw. Here the diff is
//! taken against a *named* baseline that the receiver provably holds:
//!
//! * the sender numbers its messages to a peer (`seq`, from 0, each used once — the
//!   transport's per-peer message number);
//! * when the peer acknowledges message `b`, the peer has decoded `b` and stored its clock;
//!   the sender adopts `clock(b)` as its baseline (the newest acknowledged one wins);
//! * a message `q` carries `q - b` and, for every entry that differs from `clock(b)`, the
//!   increment over it (clocks only grow, so increments are non-negative). The sender's own
//!   entry is always present. With no usable baseline the message is sent in full.
//!
//! The receiver keeps `clock(b)` until every message that may name `b` has arrived: the
//! sender only names a baseline less than `window` messages back, so `b` is no longer
//! needed once every seq in `(b, b + window)` has been received. Reordering, duplication
//! and loss therefore never produce a wrong clock. Memory is capped by `max_retained`; if
//! the cap forces an eviction (a peer that never fills a hole), decoding a message that
//! names an evicted baseline fails with [`CompactError::UnknownBase`] instead of guessing.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{MAX_NODES, NodeId, VClock};

/// Parameters shared by an [`Encoder`] and the [`Decoder`] on the other end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactConfig {
    /// A baseline is only named by messages fewer than this many seqs after it.
    pub window: u64,
    /// Most clocks either side keeps (unacknowledged at the sender, baselines at the receiver).
    pub max_retained: usize,
}

impl Default for CompactConfig {
    fn default() -> Self {
        Self {
            window: 1024,
            max_retained: 4096,
        }
    }
}

/// A clock as it travels: entries relative to a baseline message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactClock {
    /// `seq - base_seq`; 0 means "no baseline": increments are over the zero clock.
    pub base_back: u64,
    /// The entries, as increments over the baseline.
    pub entries: Entries,
}

/// Increments over a baseline, in whichever form is shorter on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entries {
    /// `(gap, increment)`: entry index is the previous index + 1 + `gap` (the first index is
    /// `gap`), its value is the baseline's value plus `increment`. Good when few changed.
    Sparse(Vec<(u32, u64)>),
    /// One increment per index from 0: good when most entries changed (e.g. no baseline).
    Dense(Vec<u64>),
}

/// Why a compact clock could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CompactError {
    /// The named baseline is not held (never received, or evicted under the memory cap).
    #[error("message {seq} names baseline {base} which this receiver does not hold")]
    UnknownBase {
        /// Seq of the message being decoded.
        seq: u64,
        /// Seq of the baseline it names.
        base: u64,
    },
    /// `base_back` points before seq 0.
    #[error("message {seq} names a baseline {back} messages back, before the first message")]
    BaseBeforeStart {
        /// Seq of the message being decoded.
        seq: u64,
        /// The `base_back` it carried.
        back: u64,
    },
    /// An entry index or value is out of range.
    #[error("message {seq} has an entry out of range")]
    OutOfRange {
        /// Seq of the message being decoded.
        seq: u64,
    },
    /// A duplicate of a message decoded earlier whose clock is no longer held (the
    /// transport drops duplicates before they get here; this is the honest answer if not).
    #[error("message {seq} is a duplicate of one already decoded")]
    Duplicate {
        /// Seq of the message being decoded.
        seq: u64,
    },
    /// The same seq arrived twice with different clocks (a sender bug or a forged datagram).
    #[error("message {seq} arrived twice with different clocks")]
    Conflict {
        /// Seq of the message being decoded.
        seq: u64,
    },
}

/// Sender side, one per destination peer.
#[derive(Clone, Debug, Default)]
pub struct Encoder {
    cfg: CompactConfig,
    /// Clocks of messages sent and not yet acknowledged, so an ack can promote one to baseline.
    unacked: BTreeMap<u64, VClock>,
    /// Newest acknowledged message and its clock.
    base: Option<(u64, VClock)>,
}

impl Encoder {
    /// A new encoder.
    pub fn new(cfg: CompactConfig) -> Self {
        Self {
            cfg,
            ..Self::default()
        }
    }

    /// Encodes `clock` for message `seq` sent by `own`. Seqs must increase from call to
    /// call and the clocks must not decrease (a node's clock only grows).
    pub fn encode(&mut self, seq: u64, own: NodeId, clock: &VClock) -> CompactClock {
        let base = self
            .base
            .as_ref()
            .filter(|(b, c)| *b < seq && seq - b < self.cfg.window && c.le(clock));
        let (base_back, base_clock) = match base {
            Some((b, c)) => (seq - b, Some(c)),
            None => (0, None),
        };
        let zero = VClock::new();
        let base_clock = base_clock.unwrap_or(&zero);
        let incs: Vec<u64> = (0..clock.len().max(own.index() + 1))
            .map(|i| clock.entries().get(i).copied().unwrap_or(0) - base_clock.get_index(i))
            .collect();
        let mut sparse = Vec::new();
        let mut next = 0usize;
        for (i, &inc) in incs.iter().enumerate() {
            // The own entry is always present, even when zero (never ticked).
            if inc != 0 || i == own.index() {
                sparse.push(((i - next) as u32, inc));
                next = i + 1;
            }
        }
        // A sparse pair costs at least two varint bytes, a dense slot at least one.
        let entries = if sparse.len() * 2 > incs.len() {
            Entries::Dense(incs)
        } else {
            Entries::Sparse(sparse)
        };
        self.unacked.insert(seq, clock.clone());
        while self.unacked.len() > self.cfg.max_retained {
            self.unacked.pop_first();
        }
        CompactClock { base_back, entries }
    }

    /// The peer acknowledged message `seq`: its clock becomes the baseline if newer.
    pub fn on_ack(&mut self, seq: u64) {
        if self.base.as_ref().is_some_and(|(b, _)| *b >= seq) {
            self.unacked.remove(&seq);
            return;
        }
        if let Some(clock) = self.unacked.remove(&seq) {
            // Older unacknowledged clocks can never become a better baseline.
            self.unacked = self.unacked.split_off(&seq);
            self.base = Some((seq, clock));
        }
    }

    /// Message `seq` was given up (never to be acknowledged): forget its clock.
    pub fn on_abandoned(&mut self, seq: u64) {
        self.unacked.remove(&seq);
    }

    /// Seq of the current baseline, if any.
    pub fn baseline(&self) -> Option<u64> {
        self.base.as_ref().map(|(b, _)| *b)
    }
}

/// Receiver side, one per source peer.
#[derive(Clone, Debug, Default)]
pub struct Decoder {
    cfg: CompactConfig,
    /// Clocks of received messages that a later message may still name as baseline.
    stored: BTreeMap<u64, VClock>,
    /// Every seq below this has been received.
    lowest_missing: u64,
    /// Received seqs at or above `lowest_missing`.
    above: BTreeSet<u64>,
}

impl Decoder {
    /// A new decoder.
    pub fn new(cfg: CompactConfig) -> Self {
        Self {
            cfg,
            ..Self::default()
        }
    }

    /// Decodes the clock of message `seq`. Duplicates decode to the same clock.
    pub fn decode(&mut self, seq: u64, c: &CompactClock) -> Result<VClock, CompactError> {
        if let Some(prev) = self.stored.get(&seq) {
            // A duplicate whose clock is still held: answer from memory (its baseline may
            // be gone by now), but refuse a copy that claims a different clock.
            return match self.reconstruct(seq, c) {
                Ok(clock) if clock != *prev => Err(CompactError::Conflict { seq }),
                _ => Ok(prev.clone()),
            };
        }
        if self.was_received(seq) {
            return Err(CompactError::Duplicate { seq });
        }
        let clock = self.reconstruct(seq, c)?;
        self.mark_received(seq);
        if seq.saturating_add(self.cfg.window) > self.lowest_missing {
            self.stored.insert(seq, clock.clone());
        }
        self.prune();
        Ok(clock)
    }

    /// Number of clocks held as possible baselines.
    pub fn retained(&self) -> usize {
        self.stored.len()
    }

    fn reconstruct(&self, seq: u64, c: &CompactClock) -> Result<VClock, CompactError> {
        let zero = VClock::new();
        let base = if c.base_back == 0 {
            &zero
        } else {
            let base = seq
                .checked_sub(c.base_back)
                .ok_or(CompactError::BaseBeforeStart {
                    seq,
                    back: c.base_back,
                })?;
            self.stored
                .get(&base)
                .ok_or(CompactError::UnknownBase { seq, base })?
        };
        let mut entries = base.entries().to_vec();
        let mut add = |i: usize, inc: u64| -> Result<(), CompactError> {
            if i >= MAX_NODES {
                return Err(CompactError::OutOfRange { seq });
            }
            if i >= entries.len() {
                entries.resize(i + 1, 0);
            }
            entries[i] = entries[i]
                .checked_add(inc)
                .ok_or(CompactError::OutOfRange { seq })?;
            Ok(())
        };
        match &c.entries {
            Entries::Sparse(pairs) => {
                let mut next = 0usize;
                for &(gap, inc) in pairs {
                    let i = next.saturating_add(gap as usize);
                    add(i, inc)?;
                    next = i + 1;
                }
            }
            Entries::Dense(incs) => {
                for (i, &inc) in incs.iter().enumerate() {
                    add(i, inc)?;
                }
            }
        }
        Ok(VClock::from_entries(entries))
    }

    fn was_received(&self, seq: u64) -> bool {
        seq < self.lowest_missing || self.above.contains(&seq)
    }

    fn mark_received(&mut self, seq: u64) {
        if seq < self.lowest_missing {
            return;
        }
        self.above.insert(seq);
        // Saturating: a hostile peer may number up to u64::MAX.
        while self.above.remove(&self.lowest_missing) {
            self.lowest_missing = self.lowest_missing.saturating_add(1);
        }
        if self.above.len() > self.cfg.max_retained {
            // A hole that never fills: give up on it so memory stays bounded. Messages in
            // the hole may later fail to decode (UnknownBase), never decode wrongly.
            if let Some(first) = self.above.pop_first() {
                self.lowest_missing = first.saturating_add(1);
                while self.above.remove(&self.lowest_missing) {
                    self.lowest_missing = self.lowest_missing.saturating_add(1);
                }
            }
        }
    }

    fn prune(&mut self) {
        // Baseline b can only be named by seqs in (b, b + window); once all of those have
        // arrived (they are below lowest_missing) nobody will name b again.
        let keep_from = self.lowest_missing.saturating_sub(self.cfg.window - 1);
        if self
            .stored
            .first_key_value()
            .is_some_and(|(b, _)| *b < keep_from)
        {
            self.stored = self.stored.split_off(&keep_from);
        }
        while self.stored.len() > self.cfg.max_retained {
            self.stored.pop_first();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(v: &[u64]) -> VClock {
        VClock::from_entries(v.to_vec())
    }

    #[test]
    fn reordered_message_decodes_against_named_baseline() {
        let cfg = CompactConfig::default();
        let (mut enc, mut dec) = (Encoder::new(cfg), Decoder::new(cfg));
        let me = NodeId(1);
        let c0 = clock(&[5, 1, 0, 9]);
        let m0 = enc.encode(0, me, &c0);
        assert_eq!(dec.decode(0, &m0), Ok(c0));
        enc.on_ack(0);
        let c1 = clock(&[5, 2, 0, 9]);
        let c2 = clock(&[6, 3, 0, 9]);
        let m1 = enc.encode(1, me, &c1);
        let m2 = enc.encode(2, me, &c2);
        assert_eq!(m1.base_back, 1);
        assert_eq!(
            m1.entries,
            Entries::Sparse(vec![(1, 1)]),
            "only the own entry differs"
        );
        // m2 overtakes m1: a FIFO diff would be wrong here, the named baseline is not.
        assert_eq!(dec.decode(2, &m2), Ok(c2));
        assert_eq!(dec.decode(1, &m1), Ok(c1.clone()));
        assert_eq!(dec.decode(1, &m1), Ok(c1), "duplicate decodes the same");
    }

    #[test]
    fn unknown_base_is_an_error_not_a_guess() {
        let mut dec = Decoder::new(CompactConfig::default());
        let m = CompactClock {
            base_back: 1,
            entries: Entries::Sparse(vec![(0, 1)]),
        };
        assert_eq!(
            dec.decode(5, &m),
            Err(CompactError::UnknownBase { seq: 5, base: 4 })
        );
        let m = CompactClock {
            base_back: 9,
            entries: Entries::Dense(vec![]),
        };
        assert!(matches!(
            dec.decode(5, &m),
            Err(CompactError::BaseBeforeStart { .. })
        ));
        let m = CompactClock {
            base_back: 0,
            entries: Entries::Sparse(vec![(u32::MAX, 1)]),
        };
        assert_eq!(dec.decode(0, &m), Err(CompactError::OutOfRange { seq: 0 }));
        let m = CompactClock {
            base_back: 0,
            entries: Entries::Dense(vec![1, u64::MAX]),
        };
        let mut dec2 = Decoder::new(CompactConfig::default());
        assert_eq!(dec2.decode(0, &m), Ok(clock(&[1, u64::MAX])));
    }

    #[test]
    fn full_clock_without_baseline_goes_dense() {
        let mut enc = Encoder::new(CompactConfig::default());
        let m = enc.encode(0, NodeId(0), &clock(&[3, 4, 5]));
        assert_eq!(m.entries, Entries::Dense(vec![3, 4, 5]));
    }

    #[test]
    fn own_entry_always_present_even_when_zero() {
        let mut enc = Encoder::new(CompactConfig::default());
        let m = enc.encode(0, NodeId(9), &clock(&[1]));
        assert_eq!(m.entries, Entries::Sparse(vec![(0, 1), (8, 0)]));
        let mut dec = Decoder::new(CompactConfig::default());
        assert_eq!(dec.decode(0, &m), Ok(clock(&[1])));
    }

    #[test]
    fn decoder_prunes_baselines_nobody_can_name() {
        let cfg = CompactConfig {
            window: 4,
            max_retained: 100,
        };
        let (mut enc, mut dec) = (Encoder::new(cfg), Decoder::new(cfg));
        let mut c = VClock::new();
        for seq in 0..50 {
            c.tick(NodeId(0));
            let m = enc.encode(seq, NodeId(0), &c);
            assert_eq!(dec.decode(seq, &m).as_ref(), Ok(&c));
            enc.on_ack(seq);
        }
        assert!(dec.retained() <= 4, "retained {}", dec.retained());
    }
}
