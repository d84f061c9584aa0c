//! Lives of a node: what makes everything a restarted node sends new.
//!
//! A crash loses the vector clock with the rest of memory. If a restarted node counted
//! its own clock entry from 0 again, its new events would look like old ones to every
//! node that saw the old life: cuts taken afterwards compare incomparable events
//! (`cut_j[k] > cut_k[k]` although nothing is wrong), and snapshot ids `(k, s)` repeat
//! (peers ignore them as finished). So every life starts its own entry at a *floor*
//! above anything an earlier life can have reached, derived from the wall clock at the
//! start of the life: `floor = start_µs x` [`EVENTS_PER_MICROSECOND`]. An earlier life
//! that started at `t0` and ran until `t1 <= start` used at most `floor(t0) + events`
//! values, which stays below `floor(start)` as long as it averaged fewer than
//! [`EVENTS_PER_MICROSECOND`] clock events per microsecond of its life (16 million per
//! second; a node ticks once per application send or receive). Nothing needs to be on
//! disk, so the argument holds with or without a data directory, and when the disk is
//! lost with the memory. It rests on the wall clock not stepping back by more than the
//! previous life lasted between two lives of a node, the same assumption the
//! transport's incarnations make; if it fails, the initiator's check
//! ([`crate::verify::check_structure`]) turns the affected snapshots into aborts.
//!
//! The cost is on the wire: a clock entry near `2^55` takes 8 bytes as a varint where a
//! small counter took 1-3; `ARCHITECTURE.md` records the measured size.

use shutter_transport::Time;

/// How many clock events per microsecond of wall time a life may average before its own
/// entry could reach the floor of a later life (see the module docs).
pub const EVENTS_PER_MICROSECOND: u64 = 16;

/// The first own clock entry of a life that starts at wall-clock time `start`.
pub fn clock_floor(start: Time) -> u64 {
    start.as_micros().saturating_mul(EVENTS_PER_MICROSECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_lives_start_above_busy_earlier_ones() {
        let t0 = Time(1_800_000_000_000_000);
        // A life of one second that averaged 15 events per microsecond...
        let reached = clock_floor(t0) + 15 * 1_000_000;
        // ...stays below the floor of a life started when it ended.
        assert!(reached < clock_floor(Time(t0.0 + 1_000_000)));
        // Fits a u64 for centuries of wall clock.
        assert!(clock_floor(Time(u64::MAX / 32)) < u64::MAX);
    }
}
