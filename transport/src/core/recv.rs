//! Receive-side state for one peer: duplicate suppression, reassembly, ordered mode.
//!
//! Bounds: message ids are accepted only below `floor + dedup_window`, where `floor` is
//! the lowest id not yet received, so the dedup set holds at most `dedup_window` ids;
//! partial messages hold at most `max_reassembly_bytes` (a fragment that would exceed it
//! is refused, and its packet left unacknowledged so the sender retries later); the
//! ordered-mode reorder buffer holds at most `dedup_window` whole messages.

use std::collections::{BTreeMap, BTreeSet};

use crate::time::Time;
use crate::wire::DataFrame;

use super::config::Config;

/// A message ready for the application.
#[derive(Debug)]
pub(crate) struct Whole {
    pub(crate) id: u64,
    pub(crate) bytes: Vec<u8>,
    pub(crate) sent_at: Time,
}

/// What became of one DATA frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DataOutcome {
    /// Stored, or completed a message (see the output vector).
    Accepted,
    /// Already received; acknowledge again but do not deliver.
    Duplicate,
    /// Cannot be taken now (beyond the window, reassembly memory full); do not ack.
    Refused,
    /// Inconsistent with the protocol (bad lengths); drop the datagram.
    Invalid,
}

#[derive(Debug)]
struct Partial {
    count: u32,
    total: u32,
    data: Vec<u8>,
    have: Vec<bool>,
    have_count: u32,
    sent_at: Time,
}

/// Incoming state from one peer (one incarnation of it).
#[derive(Debug, Default)]
pub(crate) struct RecvState {
    /// Every id below this was received.
    floor: u64,
    /// Received ids above `floor`.
    above: BTreeSet<u64>,
    partials: BTreeMap<u64, Partial>,
    partial_bytes: usize,
    /// Ordered mode: next id to hand up, and whole messages waiting for it.
    next_deliver: u64,
    reorder: BTreeMap<u64, Whole>,
}

impl RecvState {
    /// Whether messages are partly received (we expect more from the peer).
    pub(crate) fn has_partials(&self) -> bool {
        !self.partials.is_empty()
    }

    /// Every message with a lower id was handed up (in ordered mode, delivered in order;
    /// otherwise as it completed).
    pub(crate) fn delivered_below(&self, cfg: &Config) -> u64 {
        if cfg.ordered {
            self.next_deliver
        } else {
            self.floor
        }
    }

    /// Handles one DATA frame; whole messages ready for delivery are pushed to `out`.
    pub(crate) fn on_data(
        &mut self,
        f: &DataFrame<'_>,
        cfg: &Config,
        out: &mut Vec<Whole>,
    ) -> DataOutcome {
        let id = f.message_id;
        if id < self.floor || self.above.contains(&id) {
            return DataOutcome::Duplicate;
        }
        if id - self.floor >= cfg.dedup_window {
            return DataOutcome::Refused;
        }
        let total = f.total_len as usize;
        if total > cfg.max_message {
            return DataOutcome::Invalid;
        }
        let Some((start, end)) = fragment_span(total, f.count, f.index) else {
            return DataOutcome::Invalid;
        };
        if f.payload.len() != end - start {
            return DataOutcome::Invalid;
        }
        let sent_at = Time(f.sent_at);
        if f.count == 1 && !self.partials.contains_key(&id) {
            self.complete(
                Whole {
                    id,
                    bytes: f.payload.to_vec(),
                    sent_at,
                },
                cfg,
                out,
            );
            return DataOutcome::Accepted;
        }
        let p = match self.partials.get_mut(&id) {
            Some(p) if p.count != f.count || p.total != f.total_len => return DataOutcome::Invalid,
            Some(p) => p,
            None => {
                if self.partial_bytes + total > cfg.max_reassembly_bytes {
                    return DataOutcome::Refused;
                }
                self.partial_bytes += total;
                let p = Partial {
                    count: f.count,
                    total: f.total_len,
                    data: vec![0; total],
                    have: vec![false; f.count as usize],
                    have_count: 0,
                    sent_at,
                };
                self.partials.entry(id).or_insert(p)
            }
        };
        if p.have[f.index as usize] {
            return DataOutcome::Duplicate;
        }
        p.have[f.index as usize] = true;
        p.have_count += 1;
        p.data[start..end].copy_from_slice(f.payload);
        if p.have_count == p.count {
            let p = self.partials.remove(&id).expect("present");
            self.partial_bytes -= p.total as usize;
            self.complete(
                Whole {
                    id,
                    bytes: p.data,
                    sent_at: p.sent_at,
                },
                cfg,
                out,
            );
        }
        DataOutcome::Accepted
    }

    fn complete(&mut self, whole: Whole, cfg: &Config, out: &mut Vec<Whole>) {
        self.above.insert(whole.id);
        while self.above.remove(&self.floor) {
            self.floor += 1;
        }
        if !cfg.ordered {
            out.push(whole);
            return;
        }
        self.reorder.insert(whole.id, whole);
        while let Some(w) = self.reorder.remove(&self.next_deliver) {
            self.next_deliver += 1;
            out.push(w);
        }
    }
}

/// Byte span of fragment `index` of a `total`-byte message in `count` balanced fragments
/// of `ceil(total / count)` bytes, or `None` if no sender would split it that way.
pub(crate) fn fragment_span(total: usize, count: u32, index: u32) -> Option<(usize, usize)> {
    let count = count as usize;
    let index = index as usize;
    if count == 0 || index >= count {
        return None;
    }
    let chunk = total.div_ceil(count);
    // Every fragment is non-empty, except the single fragment of an empty message.
    if (total == 0 && count != 1) || (total > 0 && (count - 1) * chunk >= total) {
        return None;
    }
    let start = index * chunk;
    Some((start, (start + chunk).min(total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_message() {
        assert_eq!(fragment_span(0, 1, 0), Some((0, 0)));
        assert_eq!(fragment_span(0, 2, 0), None);
        assert_eq!(fragment_span(10, 3, 2), Some((8, 10)));
        assert_eq!(
            fragment_span(10, 6, 0),
            None,
            "ceil(10/6)=2 makes only 5 fragments"
        );
        assert_eq!(fragment_span(10, 10, 9), Some((9, 10)));
    }
}
