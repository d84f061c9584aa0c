//! The receiving side of lean application headers (`shutter_snapshot::lean`): a stream
//! of operations on one `lean::Decoder`, as a stack would drive it with whatever a peer
//! sends (in any order, duplicated, forged).
//!
//! Input: postcard `(op, u64, LeanApp)` triples until one fails to decode. `op % 4`:
//! 0 and 1 decode the `LeanApp` as message id `u64` from node 1 (0) or node 2 (1); 2
//! prunes node 1's baselines below `u64`; 3 resets node 2. At most 256 operations.
//!
//! Checks: no panic; a `Whole` head decodes to exactly its fields; a `Diff` head that
//! decodes gives exactly the named baseline (as first decoded) plus the increments,
//! computed independently here, and its life; node 2 (never pruned) refuses only what
//! cannot decode; never more baselines held than kept messages decoded.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use libfuzzer_sys::fuzz_target;
use shutter_snapshot::lean::Decoder;
use shutter_snapshot::wire::{AppHeader, ClockDiff, LeanApp, LeanHead};
use shutter_vclock::{MAX_NODES, NodeId, VClock};

/// Applies `(gap, increment)` pairs: the first index is its gap, each later one the
/// previous plus a gap above 0.
fn sparse(pairs: &[(u64, u64)], add: &mut impl FnMut(u64, u64) -> Option<()>) -> Option<()> {
    let mut prev: Option<u64> = None;
    for &(gap, inc) in pairs {
        let i = match prev {
            None => gap,
            Some(_) if gap == 0 => return None,
            Some(p) => p.checked_add(gap)?,
        };
        add(i, inc)?;
        prev = Some(i);
    }
    Some(())
}

/// `base + d`, computed without the module's code; `None` where it must refuse.
fn expected(base: &AppHeader, seq: u64, d: &ClockDiff) -> Option<AppHeader> {
    let mut entries = base.ts.entries().to_vec();
    let mut add = |i: u64, inc: u64| -> Option<()> {
        let i = usize::try_from(i).ok().filter(|&i| i < MAX_NODES)?;
        if inc == 0 {
            return Some(());
        }
        if entries.len() <= i {
            entries.resize(i + 1, 0);
        }
        entries[i] = entries[i].checked_add(inc)?;
        Some(())
    };
    match d {
        ClockDiff::Runs(runs) => {
            let mut at = 0u64;
            for &(count, inc) in runs {
                let end = at.checked_add(count)?;
                if end > MAX_NODES as u64 {
                    return None;
                }
                for i in at..end {
                    add(i, inc)?;
                }
                at = end;
            }
        }
        ClockDiff::Each(incs) => {
            for (i, &inc) in incs.iter().enumerate() {
                add(i as u64, inc)?;
            }
        }
        ClockDiff::Sparse(pairs) => sparse(pairs, &mut add)?,
        ClockDiff::Packed {
            count,
            min,
            bits,
            packed,
            extra,
        } => {
            if *bits > 64 || *count > MAX_NODES as u64 {
                return None;
            }
            let width = u64::from(*bits);
            if packed.len() as u64 != (count * width).div_ceil(8) {
                return None;
            }
            for i in 0..*count {
                // Entry i's bits, one at a time from the low end of the stream.
                let mut v: u64 = 0;
                for b in 0..width {
                    let at = i * width + b;
                    if packed[(at / 8) as usize] & (1 << (at % 8)) != 0 {
                        v += 1 << b;
                    }
                }
                add(i, min.checked_add(v)?)?;
            }
            sparse(extra, &mut add)?;
        }
    }
    Some(AppHeader {
        ts: VClock::from_entries(entries),
        joined: Vec::new(),
        life: base.life,
        seq: base.seq.checked_add(seq)?,
    })
}

fuzz_target!(|data: &[u8]| {
    let mut dec = Decoder::default();
    // Every kept message as first decoded, per sender: what a diff may name.
    let mut kept: BTreeMap<(u32, u64), AppHeader> = BTreeMap::new();
    // Node 1's ids kept again after a prune may have dropped the first: either
    // decoding may be the baseline now, so diffs against them are not compared.
    let mut ambiguous: BTreeSet<u64> = BTreeSet::new();
    let mut pruned = false;
    let mut rest = data;
    let mut steps = 0;
    while let Ok(((op, id, app), tail)) = postcard::take_from_bytes::<(u8, u64, LeanApp)>(rest) {
        rest = tail;
        steps += 1;
        if steps > 256 {
            break;
        }
        match op % 4 {
            2 => {
                dec.prune(NodeId(1), id);
                pruned = true;
                continue;
            }
            3 => {
                dec.reset_peer(NodeId(2));
                kept.retain(|(n, _), _| *n != 2);
                continue;
            }
            _ => {}
        }
        let from = 1 + u32::from(op % 4);
        let must = match &app.head {
            LeanHead::Whole { life, seq, ts } => Some(AppHeader {
                ts: ts.clone(),
                joined: Vec::new(),
                life: *life,
                seq: *seq,
            }),
            LeanHead::Diff { back, seq, ts } => id
                .checked_sub(*back)
                .filter(|_| *back > 0)
                .and_then(|b| kept.get(&(from, b)))
                .and_then(|base| expected(base, *seq, ts)),
        };
        let keep = app.keep;
        let joined = app.joined.clone();
        let named_ambiguous = match &app.head {
            LeanHead::Diff { back, .. } => {
                from == 1 && id.checked_sub(*back).is_some_and(|b| ambiguous.contains(&b))
            }
            LeanHead::Whole { .. } => false,
        };
        match dec.decode(NodeId(from), id, app) {
            Ok((header, _)) if named_ambiguous => {
                if keep && kept.insert((from, id), header).is_some() {
                    ambiguous.insert(id);
                }
            }
            Ok((header, _)) => {
                let mut must = must.expect("decoded a header that must not decode");
                must.joined = joined;
                assert_eq!(header, must, "lean header decoded wrong");
                if keep {
                    must.joined = Vec::new();
                    if from == 1 && pruned && kept.contains_key(&(from, id)) {
                        ambiguous.insert(id);
                    }
                    kept.entry((from, id)).or_insert(must);
                }
            }
            // Node 1's baselines may be pruned; node 2's are never: nothing decodable
            // from it may be refused.
            Err(_) => assert!(from == 1 || must.is_none(), "a decodable header was refused"),
        }
        assert!(dec.held() <= kept.len());
    }
});
