//! Property test: the compact encoding reconstructs every message's exact clock when
//! deliveries and acknowledgements are reordered, duplicated and lost.
//!
//! A model network: the sender emits message `i` at time `10 * i` (encoding it with the
//! acknowledgements that have arrived by then); each copy of a message arrives after a
//! random delay or is lost, and may be duplicated; each delivery sends an ack back which is
//! itself delayed or lost. The first delivered copy must decode to the clock that was sent; a later copy decodes to
//! it too or, once its clock is no longer retained, is reported as a duplicate.

use proptest::prelude::*;
use shutter_vclock::compact::{CompactClock, CompactConfig, CompactError, Decoder, Encoder};
use shutter_vclock::{NodeId, VClock};

#[derive(Clone, Debug)]
struct Msg {
    /// Entries bumped before this send (besides the sender's own tick).
    bumps: Vec<(u32, u64)>,
    /// Delivery delays of each copy (empty = lost; two or more = duplicated).
    copies: Vec<u64>,
    /// Delay of the ack of each copy (`None` = the ack is lost).
    ack_delay: Option<u64>,
}

fn msg(n: u32) -> impl Strategy<Value = Msg> {
    (
        proptest::collection::vec((0..n, 1u64..5), 0..4),
        prop_oneof![
            1 => Just(vec![]),
            6 => proptest::collection::vec(0u64..200, 1..2),
            2 => proptest::collection::vec(0u64..200, 2..4),
        ],
        proptest::option::weighted(0.7, 0u64..200),
    )
        .prop_map(|(bumps, copies, ack_delay)| Msg {
            bumps,
            copies,
            ack_delay,
        })
}

#[derive(Debug)]
enum Ev {
    Deliver(u64),
    Ack(u64),
}

fn run(n: u32, msgs: &[Msg], cfg: CompactConfig) -> Result<(), TestCaseError> {
    let me = NodeId(0);
    let (mut enc, mut dec) = (Encoder::new(cfg), Decoder::new(cfg));
    let mut clock = VClock::new();
    let mut sent: Vec<(VClock, CompactClock)> = Vec::new();
    // (time, tie-break, event) kept sorted; sends happen at 10 * i.
    let mut pending: Vec<(u64, u64, Ev)> = Vec::new();
    let mut tie = 0u64;
    let mut seen = std::collections::HashSet::new();
    let step = |t: u64,
                tie: &mut u64,
                seen: &mut std::collections::HashSet<u64>,
                pending: &mut Vec<(u64, u64, Ev)>,
                enc: &mut Encoder,
                dec: &mut Decoder,
                sent: &Vec<(VClock, CompactClock)>|
     -> Result<(), TestCaseError> {
        pending.sort_by_key(|(time, k, _)| (*time, *k));
        while pending.first().is_some_and(|(time, _, _)| *time <= t) {
            let (time, _, ev) = pending.remove(0);
            match ev {
                Ev::Deliver(seq) => {
                    let (want, wire) = &sent[seq as usize];
                    let got = dec.decode(seq, wire);
                    let first = !seen.contains(&seq);
                    seen.insert(seq);
                    if first || got != Err(CompactError::Duplicate { seq }) {
                        prop_assert_eq!(got.as_ref(), Ok(want), "seq {} at t={}", seq, time);
                    }
                    if let Some(d) = msgs[seq as usize].ack_delay {
                        *tie += 1;
                        pending.push((time + d, *tie, Ev::Ack(seq)));
                        pending.sort_by_key(|(time, k, _)| (*time, *k));
                    }
                }
                Ev::Ack(seq) => enc.on_ack(seq),
            }
        }
        Ok(())
    };
    for (i, m) in msgs.iter().enumerate() {
        let now = 10 * i as u64;
        step(
            now,
            &mut tie,
            &mut seen,
            &mut pending,
            &mut enc,
            &mut dec,
            &sent,
        )?;
        for &(id, by) in &m.bumps {
            let id = NodeId(id % n);
            clock.set(id, clock.get(id) + by);
        }
        clock.tick(me);
        let wire = enc.encode(i as u64, me, &clock);
        // What travels is bytes: check the postcard form round-trips too.
        let bytes = postcard::to_allocvec(&wire).unwrap();
        let wire: CompactClock = postcard::from_bytes(&bytes).unwrap();
        sent.push((clock.clone(), wire));
        for &d in &m.copies {
            tie += 1;
            pending.push((now + d, tie, Ev::Deliver(i as u64)));
        }
    }
    step(
        u64::MAX,
        &mut tie,
        &mut seen,
        &mut pending,
        &mut enc,
        &mut dec,
        &sent,
    )?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn exact_under_reorder_dup_loss(n in 1u32..40, msgs in proptest::collection::vec(msg(40), 1..120)) {
        run(n, &msgs, CompactConfig::default())?;
    }

    /// A small window forces frequent full encodings and baseline pruning.
    #[test]
    fn exact_with_small_window(n in 1u32..40, msgs in proptest::collection::vec(msg(40), 1..120)) {
        run(n, &msgs, CompactConfig { window: 3, max_retained: 4096 })?;
    }
}

#[test]
fn steady_state_is_much_smaller_than_dense() {
    let cfg = CompactConfig::default();
    let (mut enc, mut dec) = (Encoder::new(cfg), Decoder::new(cfg));
    let me = NodeId(5);
    let mut c: VClock = (0..256u64).map(|i| 1000 + i).collect();
    let first = enc.encode(0, me, &c);
    dec.decode(0, &first).unwrap();
    enc.on_ack(0);
    c.tick(me);
    let m = enc.encode(1, me, &c);
    let compact = postcard::to_allocvec(&m).unwrap().len();
    let dense = postcard::to_allocvec(&c).unwrap().len();
    assert!(compact * 50 < dense, "compact {compact} dense {dense}");
    assert_eq!(dec.decode(1, &m).unwrap(), c);
}

/// Found by the `compact_decoder` fuzz target (tests/fuzz/regressions/compact_decoder):
/// `seq + window` overflowed for a sequence number near `u64::MAX` (a panic in debug
/// builds, a wrong retention decision in release).
#[test]
fn a_sequence_number_near_the_top_does_not_overflow() {
    use shutter_vclock::compact::{CompactClock, CompactConfig, Decoder, Entries};
    let mut d = Decoder::new(CompactConfig::default());
    let c = CompactClock {
        base_back: 0,
        entries: Entries::Dense(vec![]),
    };
    assert_eq!(d.decode(u64::MAX, &c), Ok(shutter_vclock::VClock::new()));
    assert!(
        d.decode(u64::MAX, &c).is_ok(),
        "a duplicate decodes the same"
    );
    let c = CompactClock {
        base_back: 3,
        entries: Entries::Dense(vec![1]),
    };
    assert!(
        d.decode(u64::MAX - 1, &c).is_err(),
        "unknown baseline, no guess"
    );
}

/// Found by the `compact_decoder` fuzz target: once every number up to `u64::MAX - 1`
/// counted as received (a hole given up under the memory cap), receiving `u64::MAX`
/// overflowed the lowest-missing counter.
#[test]
fn the_lowest_missing_counter_saturates() {
    use shutter_vclock::compact::{CompactClock, CompactConfig, Decoder, Entries};
    let mut d = Decoder::new(CompactConfig {
        max_retained: 1,
        ..CompactConfig::default()
    });
    let c = CompactClock {
        base_back: 0,
        entries: Entries::Dense(vec![]),
    };
    // Two numbers above a hole: the cap gives the hole up, and the counter jumps to the top.
    assert!(d.decode(u64::MAX - 1, &c).is_ok());
    assert!(d.decode(u64::MAX, &c).is_ok());
    // A duplicate decodes to the same clock.
    assert_eq!(d.decode(u64::MAX, &c), Ok(shutter_vclock::VClock::new()));
    assert!(d.retained() <= 1);
}
