//! Property tests: vector clocks form a partial order and merge is their join.

use proptest::prelude::*;
use shutter_vclock::{NodeId, VClock};

/// Small entries and lengths so that equal and ordered pairs occur often.
fn clock() -> impl Strategy<Value = VClock> {
    proptest::collection::vec(0u64..4, 0..6).prop_map(VClock::from_entries)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn reflexive(a in clock()) {
        prop_assert!(a <= a);
        prop_assert_eq!(a.partial_cmp(&a), Some(std::cmp::Ordering::Equal));
        prop_assert!(!a.happened_before(&a));
    }

    #[test]
    fn antisymmetric(a in clock(), b in clock()) {
        if a <= b && b <= a {
            prop_assert_eq!(&a, &b);
        }
    }

    #[test]
    fn transitive(a in clock(), b in clock(), c in clock()) {
        if a <= b && b <= c {
            prop_assert!(a <= c);
        }
        if a.happened_before(&b) && b.happened_before(&c) {
            prop_assert!(a.happened_before(&c));
        }
    }

    #[test]
    fn order_matches_entrywise_definition(a in clock(), b in clock()) {
        let n = a.len().max(b.len()) as u32;
        let le = (0..n).all(|i| a.get(NodeId(i)) <= b.get(NodeId(i)));
        prop_assert_eq!(a <= b, le);
        prop_assert_eq!(a.concurrent(&b), a.partial_cmp(&b).is_none());
        prop_assert_eq!(a.dominates(&b), b <= a);
        prop_assert_eq!(a.happened_before(&b), le && a != b);
    }

    #[test]
    fn merge_commutative(a in clock(), b in clock()) {
        prop_assert_eq!(a.joined(&b), b.joined(&a));
    }

    #[test]
    fn merge_associative(a in clock(), b in clock(), c in clock()) {
        prop_assert_eq!(a.joined(&b).joined(&c), a.joined(&b.joined(&c)));
    }

    #[test]
    fn merge_idempotent(a in clock()) {
        prop_assert_eq!(a.joined(&a), a);
    }

    #[test]
    fn merge_is_upper_bound(a in clock(), b in clock()) {
        let j = a.joined(&b);
        prop_assert!(a <= j && b <= j);
    }

    #[test]
    fn merge_is_least_upper_bound(a in clock(), b in clock(), u in clock()) {
        if a <= u && b <= u {
            prop_assert!(a.joined(&b) <= u);
        }
    }

    #[test]
    fn merge_monotone(a in clock(), b in clock(), c in clock()) {
        if a <= b {
            prop_assert!(a.joined(&c) <= b.joined(&c));
        }
    }

    #[test]
    fn tick_strictly_increases(a in clock(), id in 0u32..8) {
        let mut t = a.clone();
        let v = t.tick(NodeId(id));
        prop_assert!(a.happened_before(&t));
        prop_assert_eq!(v, a.get(NodeId(id)) + 1);
        for i in 0..8u32 {
            if i != id {
                prop_assert_eq!(t.get(NodeId(i)), a.get(NodeId(i)));
            }
        }
    }

    #[test]
    fn postcard_round_trip(a in proptest::collection::vec(any::<u64>(), 0..300)) {
        let c = VClock::from_entries(a);
        let bytes = postcard::to_allocvec(&c).unwrap();
        let back: VClock = postcard::from_bytes(&bytes).unwrap();
        prop_assert_eq!(back, c);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(c) = postcard::from_bytes::<VClock>(&bytes) {
            // Whatever decodes is a well-formed clock.
            prop_assert!(c.entries().last() != Some(&0));
        }
    }
}

#[test]
fn postcard_uses_varints_above_a_base() {
    let c = VClock::from_entries(vec![1, 0, 127, 128]);
    let bytes = postcard::to_allocvec(&c).unwrap();
    // length 5, base 0, then 1, 0, 127 in one byte each and 128 in two.
    assert_eq!(bytes, vec![5, 0, 1, 0, 127, 0x80, 0x01]);
    assert_eq!(postcard::to_allocvec(&VClock::new()).unwrap(), vec![0]);
    // Entries near a life's floor (wall-clock us x 16, ~2^55) of nodes started within a
    // second of each other: one 8-byte base, then small offsets instead of 8 bytes each.
    let floor = 28_800_000_000_000_000u64;
    let c = VClock::from_entries((0..32).map(|i| floor + i * 1_000_003 + 40).collect());
    let bytes = postcard::to_allocvec(&c).unwrap();
    assert!(bytes.len() <= 1 + 8 + 32 * 4, "{} bytes", bytes.len());
    assert_eq!(postcard::from_bytes::<VClock>(&bytes).unwrap(), c);
}

#[test]
fn an_offset_that_overflows_is_an_error() {
    let mut bytes = vec![2];
    bytes.extend([0xff; 9]);
    bytes.push(0x01); // base u64::MAX
    bytes.push(1); // offset 1: overflows
    assert!(postcard::from_bytes::<VClock>(&bytes).is_err());
}

#[test]
fn oversized_clock_is_rejected() {
    let mut bytes = Vec::new();
    // varint length MAX_NODES + 2 (a base and one entry too many), then zeros.
    let mut n = (shutter_vclock::MAX_NODES + 2) as u64;
    while n >= 0x80 {
        bytes.push((n as u8) | 0x80);
        n >>= 7;
    }
    bytes.push(n as u8);
    bytes.resize(bytes.len() + shutter_vclock::MAX_NODES + 2, 0);
    assert!(postcard::from_bytes::<VClock>(&bytes).is_err());
}
