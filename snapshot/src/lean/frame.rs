//! The bytes of a lean application message ([`LeanApp`]) on the wire.
//!
//! Postcard's derived form of the same fields spent a byte on each of: the `keep` flag,
//! the head's variant, the clock diff's variant, an empty `joined` list, and the
//! sequence increment even where it equals `back` (a channel that carries only
//! application messages numbers both alike). That was 5 of the 9 bytes of framing a
//! diffed header paid. Here one flags byte carries all of them:
//!
//! | bits | meaning |
//! |------|---------|
//! | 0 | `keep` |
//! | 1 | a `joined` list follows (else it is empty) |
//! | 2 | diff only: the sequence increment equals `back` and is not sent |
//! | 3-6 | form: 0 whole, clock in [`VClock`]'s own base + offsets form; 1-4 diff as [`ClockDiff::Runs`], `Each`, `Sparse`, `Packed`; 5-8 whole, clock as a base and its offsets as a `Runs`, `Each`, `Sparse`, `Packed` diff over zero |
//! | 7 | reserved (an error if set) |
//!
//! then, as postcard varints and byte strings: whole: `life`, `seq`, the clock (form
//! 0) or its base and the diff's fields (5-8); diff: `back`, `seq` unless bit 2, the
//! diff's fields; then `joined` if bit 1; then the payload (length and bytes).
//!
//! Forms 5-8 exist because a whole clock's offsets over its smallest entry are spread
//! over the distance between the members' clock floors (16 per microsecond between
//! their starts), so they need about the same number of bits each: packed, they take
//! that many bits instead of whole varint bytes. Each whole header takes whichever of
//! form 0 and forms 5-8 is shorter, so it never grew.
//!
//! [`head_len`] is the exact size of a head in this form, which
//! [`super::Encoder::encode`] uses to choose between a diff and a whole header.

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shutter_vclock::VClock;

use super::{apply, clock_len, diff_len, shortest, varint_len};
use crate::wire::{ClockDiff, LeanApp, LeanHead, SnapshotId};

const KEEP: u8 = 1;
const JOINED: u8 = 1 << 1;
const SEQ_IS_BACK: u8 = 1 << 2;
const FORM_SHIFT: u8 = 3;
const FORM_MASK: u8 = 0b1111;
const RESERVED: u8 = 1 << 7;
/// First form of a diffed head, and of a whole head with a diffed clock.
const DIFF: u8 = 1;
const WHOLE_OFFSETS: u8 = 5;
/// Most elements a frame has: flags, life, seq, base, five packed fields, joined,
/// payload.
const MOST_ELEMENTS: usize = 11;

/// The index of a diff's form among the four.
fn kind(d: &ClockDiff) -> u8 {
    match d {
        ClockDiff::Runs(_) => 0,
        ClockDiff::Each(_) => 1,
        ClockDiff::Sparse(_) => 2,
        ClockDiff::Packed { .. } => 3,
    }
}

/// A whole clock as its base (smallest non-zero entry minus one, as in [`VClock`]'s own
/// form) and its offsets over it (0 for a zero entry) as a diff over zero, if that is
/// shorter than [`VClock`]'s form.
fn offsets(ts: &VClock) -> Option<(u64, ClockDiff)> {
    let (base, offsets) = ts.base_offsets()?;
    let d = shortest(offsets.collect());
    (offsets_len(base, &d) < clock_len(ts)).then_some((base, d))
}

/// Encoded bytes of a whole clock in forms 5-8: the base, then the diff's fields.
fn offsets_len(base: u64, d: &ClockDiff) -> usize {
    varint_len(base) + diff_len(d) - 1
}

/// The clock that [`offsets`] describes; `None` if the diff is out of range.
fn from_offsets(base: u64, d: &ClockDiff) -> Option<VClock> {
    let offsets = apply(&VClock::new(), d)?;
    let entries = offsets
        .entries()
        .iter()
        .map(|&o| if o == 0 { Some(0) } else { base.checked_add(o) })
        .collect::<Option<Vec<u64>>>()?;
    Some(VClock::from_entries(entries))
}

/// Encoded bytes of `head` in a frame, not counting the flags byte.
pub(super) fn head_len(head: &LeanHead) -> usize {
    match head {
        LeanHead::Whole { life, seq, ts } => whole_len(*life, *seq, ts),
        LeanHead::Diff { back, seq, ts } => {
            varint_len(*back) + if seq == back { 0 } else { varint_len(*seq) } + diff_len(ts) - 1
        }
    }
}

/// [`head_len`] of a whole head with these fields.
pub(super) fn whole_len(life: u64, seq: u64, ts: &VClock) -> usize {
    let clock = offsets(ts).map_or(clock_len(ts), |(base, d)| offsets_len(base, &d));
    varint_len(life) + varint_len(seq) + clock
}

/// A lower bound of [`whole_len`] in O(N) without allocating: either clock form spends
/// a varint on the base and at least one byte on the offsets.
pub(super) fn whole_len_at_least(life: u64, seq: u64, ts: &VClock) -> usize {
    let clock = ts
        .base_offsets()
        .map_or(1, |(base, _)| varint_len(base) + 1);
    varint_len(life) + varint_len(seq) + clock
}

/// A byte string (postcard: length, then the bytes), without a byte-by-byte visit.
struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

struct ByteBuf(Vec<u8>);

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ByteBuf;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ByteBuf, A::Error> {
                let mut v = Vec::new();
                while let Some(b) = seq.next_element()? {
                    v.push(b);
                }
                Ok(ByteBuf(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// Writes a diff's fields, without its variant (the flags carry it).
fn diff_fields<T: SerializeTuple>(t: &mut T, d: &ClockDiff) -> Result<(), T::Error> {
    match d {
        ClockDiff::Runs(pairs) | ClockDiff::Sparse(pairs) => t.serialize_element(pairs),
        ClockDiff::Each(each) => t.serialize_element(each),
        ClockDiff::Packed {
            count,
            min,
            bits,
            packed,
            extra,
        } => {
            t.serialize_element(count)?;
            t.serialize_element(min)?;
            t.serialize_element(bits)?;
            t.serialize_element(&Bytes(packed))?;
            t.serialize_element(extra)
        }
    }
}

impl Serialize for LeanApp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(MOST_ELEMENTS)?;
        let mut flags = (u8::from(self.keep) * KEEP) | (u8::from(!self.joined.is_empty()) * JOINED);
        match &self.head {
            LeanHead::Whole { life, seq, ts } => {
                let packed = offsets(ts);
                let form = packed.as_ref().map_or(0, |(_, d)| WHOLE_OFFSETS + kind(d));
                t.serialize_element(&(flags | (form << FORM_SHIFT)))?;
                t.serialize_element(life)?;
                t.serialize_element(seq)?;
                match &packed {
                    None => t.serialize_element(ts)?,
                    Some((base, d)) => {
                        t.serialize_element(base)?;
                        diff_fields(&mut t, d)?;
                    }
                }
            }
            LeanHead::Diff { back, seq, ts } => {
                flags |= (u8::from(seq == back) * SEQ_IS_BACK) | ((DIFF + kind(ts)) << FORM_SHIFT);
                t.serialize_element(&flags)?;
                t.serialize_element(back)?;
                if seq != back {
                    t.serialize_element(seq)?;
                }
                diff_fields(&mut t, ts)?;
            }
        }
        if !self.joined.is_empty() {
            t.serialize_element(&self.joined)?;
        }
        t.serialize_element(&Bytes(&self.payload))?;
        t.end()
    }
}

/// Reads the next element of a frame; its absence is an error.
fn next<'de, T: Deserialize<'de>, A: SeqAccess<'de>>(seq: &mut A) -> Result<T, A::Error> {
    seq.next_element()?
        .ok_or_else(|| de::Error::custom("lean frame ends early"))
}

/// Reads the fields of a diff of form `kind` (see [`kind`]).
fn read_diff<'de, A: SeqAccess<'de>>(seq: &mut A, kind: u8) -> Result<ClockDiff, A::Error> {
    Ok(match kind {
        0 => ClockDiff::Runs(next(seq)?),
        1 => ClockDiff::Each(next(seq)?),
        2 => ClockDiff::Sparse(next(seq)?),
        _ => ClockDiff::Packed {
            count: next(seq)?,
            min: next(seq)?,
            bits: next(seq)?,
            packed: next::<ByteBuf, _>(seq)?.0,
            extra: next(seq)?,
        },
    })
}

impl<'de> Deserialize<'de> for LeanApp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LeanApp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a lean application frame")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LeanApp, A::Error> {
                let flags: u8 = next(&mut seq)?;
                let form = flags >> FORM_SHIFT & FORM_MASK;
                let seq_is_back = flags & SEQ_IS_BACK != 0;
                if flags & RESERVED != 0 || (seq_is_back && !(DIFF..WHOLE_OFFSETS).contains(&form))
                {
                    return Err(de::Error::custom(format!("bad lean flags {flags:#04x}")));
                }
                let head = match form {
                    0 => LeanHead::Whole {
                        life: next(&mut seq)?,
                        seq: next(&mut seq)?,
                        ts: next(&mut seq)?,
                    },
                    DIFF..WHOLE_OFFSETS => {
                        let back = next(&mut seq)?;
                        let s = if seq_is_back { back } else { next(&mut seq)? };
                        LeanHead::Diff {
                            back,
                            seq: s,
                            ts: read_diff(&mut seq, form - DIFF)?,
                        }
                    }
                    WHOLE_OFFSETS..=8 => {
                        let life = next(&mut seq)?;
                        let s = next(&mut seq)?;
                        let base = next(&mut seq)?;
                        let d = read_diff(&mut seq, form - WHOLE_OFFSETS)?;
                        LeanHead::Whole {
                            life,
                            seq: s,
                            ts: from_offsets(base, &d)
                                .ok_or_else(|| de::Error::custom("clock offsets out of range"))?,
                        }
                    }
                    _ => return Err(de::Error::custom(format!("unknown lean form {form}"))),
                };
                let joined: Vec<SnapshotId> = if flags & JOINED != 0 {
                    next(&mut seq)?
                } else {
                    Vec::new()
                };
                let payload = next::<ByteBuf, _>(&mut seq)?.0;
                Ok(LeanApp {
                    keep: flags & KEEP != 0,
                    head,
                    joined,
                    payload,
                })
            }
        }
        d.deserialize_tuple(MOST_ELEMENTS, V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Envelope;
    use proptest::prelude::*;
    use shutter_vclock::NodeId;

    fn round_trip(app: &LeanApp) -> usize {
        let bytes = postcard::to_allocvec(app).unwrap();
        let back: LeanApp = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(&back, app);
        // The frame is exactly as long as `head_len` says, plus flags, joined, payload.
        let joined = if app.joined.is_empty() {
            0
        } else {
            postcard::to_allocvec(&app.joined).unwrap().len()
        };
        let payload = varint_len(app.payload.len() as u64) + app.payload.len();
        assert_eq!(
            bytes.len(),
            1 + head_len(&app.head) + joined + payload,
            "{app:?}"
        );
        bytes.len()
    }

    fn app(head: LeanHead) -> LeanApp {
        LeanApp {
            keep: true,
            head,
            joined: vec![],
            payload: b"pay".to_vec(),
        }
    }

    #[test]
    fn a_diff_on_an_application_only_channel_pays_three_bytes_of_framing() {
        // flags, back, the step list's length; the seq increment equals back.
        let d = app(LeanHead::Diff {
            back: 1,
            seq: 1,
            ts: ClockDiff::Runs(vec![(8, 2)]),
        });
        assert_eq!(round_trip(&d), 3 + 2 + 4);
        let other_seq = app(LeanHead::Diff {
            back: 2,
            seq: 1,
            ts: ClockDiff::Runs(vec![(8, 2)]),
        });
        assert_eq!(round_trip(&other_seq), 3 + 1 + 2 + 4);
        let mut joined = d.clone();
        joined.joined = vec![SnapshotId {
            initiator: NodeId(3),
            s: 9,
        }];
        assert_eq!(round_trip(&joined), 3 + 2 + 4 + 3);
    }

    #[test]
    fn a_whole_clock_with_floors_apart_goes_packed() {
        // 64 floors 3200 apart (nodes started 200 us apart), plus small counts.
        let floor = 1u64 << 55;
        let ts = VClock::from_entries((0..64).map(|j| floor + 3200 * j + j % 7).collect());
        let whole = app(LeanHead::Whole {
            life: floor / 16,
            seq: 5,
            ts: ts.clone(),
        });
        let n = round_trip(&whole);
        let plain = postcard::to_allocvec(&ts).unwrap().len();
        assert!(offsets(&ts).is_some());
        // 18 bits an entry instead of 3-byte varints: base, count, min, width, the
        // packed bytes with their length, no exceptions.
        let clock = n - (1 + varint_len(floor / 16) + 1 + 4);
        assert_eq!(clock, 8 + 1 + 1 + 1 + 2 + 64 * 18 / 8 + 1);
        assert_eq!(plain, 194);
        // Unknown members (zero entries) and small counters still round-trip.
        for entries in [
            vec![],
            vec![0, 0, 5],
            vec![floor, 0, floor + 9],
            vec![1, 2, 3],
        ] {
            round_trip(&app(LeanHead::Whole {
                life: 7,
                seq: 0,
                ts: VClock::from_entries(entries),
            }));
        }
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        let good = postcard::to_allocvec(&app(LeanHead::Diff {
            back: 1,
            seq: 1,
            ts: ClockDiff::Each(vec![1, 2]),
        }))
        .unwrap();
        for cut in 0..good.len() {
            assert!(
                postcard::from_bytes::<LeanApp>(&good[..cut]).is_err(),
                "{cut}"
            );
        }
        for flags in [RESERVED, 9 << FORM_SHIFT, 15 << FORM_SHIFT, SEQ_IS_BACK] {
            let mut bad = good.clone();
            bad[0] = flags;
            assert!(postcard::from_bytes::<LeanApp>(&bad).is_err(), "{flags:#x}");
        }
        // Offsets that overflow the base.
        let mut bad = vec![WHOLE_OFFSETS << FORM_SHIFT, 1, 1];
        bad.extend(postcard::to_allocvec(&u64::MAX).unwrap());
        bad.extend([1, 1, 5, 0]);
        assert!(postcard::from_bytes::<LeanApp>(&bad).is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_fail_without_panicking(
            flags: u8,
            rest in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            let mut bytes = vec![flags];
            bytes.extend(rest);
            if let Ok(app) = postcard::from_bytes::<LeanApp>(&bytes) {
                // What decodes encodes again and decodes to the same message.
                let again = postcard::to_allocvec(&app).unwrap();
                prop_assert_eq!(postcard::from_bytes::<LeanApp>(&again).unwrap(), app);
            }
        }

        #[test]
        fn any_frame_round_trips_at_its_computed_size(
            keep: bool,
            whole: bool,
            life: u64,
            seq in 0u64..1000,
            back in 1u64..1000,
            entries in proptest::collection::vec(
                prop_oneof![Just(0u64), 0u64..300, (1u64 << 55)..(1u64 << 55) + 300_000],
                0..70,
            ),
            joined in proptest::collection::vec((0u32..64, 0u64..9), 0..3),
            payload in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let ts = VClock::from_entries(entries);
            let head = if whole {
                LeanHead::Whole { life, seq, ts }
            } else {
                let d = super::super::diff(&VClock::new(), &ts).expect("over zero");
                LeanHead::Diff { back, seq, ts: d }
            };
            let app = LeanApp {
                keep,
                head,
                joined: joined
                    .into_iter()
                    .map(|(i, s)| SnapshotId { initiator: NodeId(i), s })
                    .collect(),
                payload,
            };
            round_trip(&app);
            if let LeanHead::Whole { life, seq, ts } = &app.head {
                prop_assert!(whole_len_at_least(*life, *seq, ts) <= whole_len(*life, *seq, ts));
            }
            // Inside an envelope too.
            let e = Envelope::<crate::wire::Control>::Lean(app.clone());
            prop_assert_eq!(Envelope::from_bytes(&e.to_bytes()).unwrap(), e);
        }
    }
}
