//! One directed link's fault state and the per-datagram decision procedure.
//!
//! Every datagram consumes the same fixed number of random draws from the link's own
//! ChaCha8 stream whatever happens to it, so the k-th datagram on a link meets the same
//! fate in every run with the same seed, however links interleave over real sockets.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shutter_vclock::NodeId;

use super::config::LinkFaults;
use super::loss::LossState;
use super::{DatagramCopy, FaultStats};
use crate::time::Time;

/// At most this many copies of one datagram leave a link (original + one duplicate).
const MAX_COPIES: usize = 2;

/// Random draws for one copy of a datagram.
struct CopyDraws {
    jitter: f64,
    reorder: f64,
    corrupt: f64,
    bits: u64,
}

/// Mutable state of one directed link.
pub(crate) struct LinkState {
    rng: ChaCha8Rng,
    loss: LossState,
    /// When the bandwidth-capped link finishes serialising what is already queued.
    next_free: Time,
}

impl LinkState {
    /// A fresh link whose random stream is derived from the plan seed and its endpoints.
    pub(crate) fn new(seed: u64, from: NodeId, to: NodeId) -> LinkState {
        let mixed = splitmix64(splitmix64(seed) ^ ((u64::from(from.0) << 32) | u64::from(to.0)));
        LinkState {
            rng: ChaCha8Rng::seed_from_u64(mixed),
            loss: LossState::default(),
            next_free: Time::ZERO,
        }
    }

    /// Applies `faults` to one datagram sent at `now`, appending surviving copies to `out`.
    /// `cut` says a partition drops it (the draws are still consumed, see module docs).
    pub(crate) fn apply(
        &mut self,
        faults: &LinkFaults,
        cut: bool,
        now: Time,
        datagram: &[u8],
        out: &mut Vec<DatagramCopy>,
        stats: &mut FaultStats,
    ) {
        let u_loss: f64 = self.rng.random();
        let u_step: f64 = self.rng.random();
        let u_dup: f64 = self.rng.random();
        let copies: [CopyDraws; MAX_COPIES] = std::array::from_fn(|_| CopyDraws {
            jitter: self.rng.random(),
            reorder: self.rng.random(),
            corrupt: self.rng.random(),
            bits: self.rng.random(),
        });

        // The loss chain advances even across a partition so that its state depends on
        // the datagram count only.
        let lost = self.loss.lose(&faults.loss, u_loss, u_step);
        if cut {
            stats.dropped_partition += 1;
            return;
        }

        // A lost datagram was still serialised onto the link before vanishing.
        let mut sent = now;
        if let Some(rate) = faults.bandwidth_bytes_per_sec {
            let start = sent.max(self.next_free);
            let tx_us = (datagram.len() as u64 * 1_000_000).div_ceil(rate);
            self.next_free = start + Duration::from_micros(tx_us);
            sent = self.next_free;
        }
        if lost {
            stats.dropped_loss += 1;
            return;
        }

        let n = if u_dup < faults.duplicate { 2 } else { 1 };
        stats.duplicated += (n - 1) as u64;
        for draws in &copies[..n] {
            let mut at = sent + faults.delay;
            at += Duration::from_micros((draws.jitter * faults.jitter.as_micros() as f64) as u64);
            if draws.reorder < faults.reorder {
                at += faults.reorder_delay;
                stats.reordered += 1;
            }
            if at > now {
                stats.delayed += 1;
            }
            let mut bytes = datagram.to_vec();
            if draws.corrupt < faults.corrupt && flip_bits(&mut bytes, draws.bits) {
                stats.corrupted += 1;
            }
            stats.delivered += 1;
            out.push(DatagramCopy { at, bytes });
        }
    }
}

/// Flips 1 to 3 distinct bits chosen by `seed`; false if there is nothing to flip.
pub(crate) fn flip_bits(bytes: &mut [u8], seed: u64) -> bool {
    let nbits = bytes.len() as u64 * 8;
    if nbits == 0 {
        return false;
    }
    let want = (1 + seed % 3).min(nbits) as usize;
    let mut state = seed;
    let mut chosen = [u64::MAX; 3];
    for i in 0..want {
        state = splitmix64(state);
        let mut bit = state % nbits;
        // Distinct positions, or two flips of one bit would cancel out.
        while chosen[..i].contains(&bit) {
            bit = (bit + 1) % nbits;
        }
        chosen[i] = bit;
        bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
    }
    true
}

/// SplitMix64 finaliser: a cheap, well-mixed bijection on `u64` (Steele et al. 2014).
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flip_bits_changes_one_to_three_bits() {
        let mut counts = [0usize; 4];
        for seed in 0..300u64 {
            let mut b = vec![0u8; 16];
            assert!(flip_bits(&mut b, splitmix64(seed)));
            let flipped: u32 = b.iter().map(|x| x.count_ones()).sum();
            counts[flipped as usize] += 1;
        }
        assert_eq!(counts[0], 0);
        assert!(
            counts[1] > 50 && counts[2] > 50 && counts[3] > 50,
            "{counts:?}"
        );
        let mut one = [0u8; 1];
        assert!(flip_bits(&mut one, 5));
        assert!(one[0] != 0);
        assert!(!flip_bits(&mut [], 5));
    }
}
