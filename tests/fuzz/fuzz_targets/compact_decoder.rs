//! The receiving side of `shutter_vclock::compact`: a stream of `(seq, CompactClock)`
//! postcard pairs (what a peer would send, in any order, duplicated, forged) into one
//! `compact::Decoder`.
//!
//! Input: one config byte (bit 7 set: the default `CompactConfig`; else
//! `window = 1 + (b & 15)`, `max_retained = 1 + ((b >> 4) & 7)`, small so that pruning
//! and eviction run), then postcard `(u64, CompactClock)` pairs until one fails to decode.
//!
//! Checks: no panic; `retained() <= max_retained`; a clock that decodes is exactly the
//! named baseline (as first decoded) plus the increments, computed independently here
//! (the module's promise: never a wrong clock, `UnknownBase` instead of a guess); a seq
//! that decodes twice decodes to the same clock.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use shutter_vclock::compact::{CompactClock, CompactConfig, Decoder, Entries};
use shutter_vclock::{MAX_NODES, VClock};

/// What the clock must be if `c` decodes for `seq`, given every clock decoded so far.
fn expected(seq: u64, c: &CompactClock, decoded: &BTreeMap<u64, VClock>) -> Option<VClock> {
    let mut entries = if c.base_back == 0 {
        Vec::new()
    } else {
        decoded
            .get(&seq.checked_sub(c.base_back)?)?
            .entries()
            .to_vec()
    };
    let mut add = |i: u64, inc: u64| -> Option<()> {
        let i = usize::try_from(i).ok().filter(|&i| i < MAX_NODES)?;
        if entries.len() <= i {
            entries.resize(i + 1, 0);
        }
        entries[i] = entries[i].checked_add(inc)?;
        Some(())
    };
    match &c.entries {
        Entries::Sparse(pairs) => {
            let mut next = 0u64;
            for &(gap, inc) in pairs {
                let i = next + u64::from(gap);
                add(i, inc)?;
                next = i + 1;
            }
        }
        Entries::Dense(incs) => {
            for (i, &inc) in incs.iter().enumerate() {
                add(i as u64, inc)?;
            }
        }
    }
    Some(VClock::from_entries(entries))
}

fuzz_target!(|data: &[u8]| {
    let Some((&b, mut rest)) = data.split_first() else {
        return;
    };
    let cfg = if b & 0x80 != 0 {
        CompactConfig::default()
    } else {
        CompactConfig {
            window: 1 + u64::from(b & 15),
            max_retained: 1 + usize::from((b >> 4) & 7),
        }
    };
    let mut dec = Decoder::new(cfg);
    let mut decoded: BTreeMap<u64, VClock> = BTreeMap::new();
    while let Ok(((seq, c), tail)) = postcard::take_from_bytes::<(u64, CompactClock)>(rest) {
        rest = tail;
        let want = expected(seq, &c, &decoded);
        let got = dec.decode(seq, &c);
        assert!(
            dec.retained() <= cfg.max_retained,
            "decoder retains {} clocks, cap {}",
            dec.retained(),
            cfg.max_retained
        );
        let Ok(clock) = got else { continue };
        match decoded.get(&seq) {
            Some(first) => assert_eq!(&clock, first, "seq {seq} decoded to two different clocks"),
            None => {
                assert_eq!(
                    Some(&clock),
                    want.as_ref(),
                    "seq {seq} decoded to a clock that is not its baseline plus increments"
                );
                decoded.insert(seq, clock);
            }
        }
    }
});
