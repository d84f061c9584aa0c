//! HdrHistogram interval logs read from disk by `shutter report FILE.hlog`:
//! `report::read_hlog` (text lines, base64, DEFLATE-compressed V2 histograms) on
//! arbitrary bytes.
//!
//! Checks: no panic, no out-of-memory (libFuzzer's `-rss_limit_mb`, 2 GiB by default,
//! and `-malloc_limit_mb`); every histogram that decodes survives V2 serialize ->
//! deserialize with the same count and max.
#![no_main]

use std::io::Read as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use libfuzzer_sys::fuzz_target;
use shutter_snapshot::report::read_hlog;

/// KNOWN BUG #7 (tests/fuzz/README.md, reproducer
/// `regressions/hlog/count-negate-overflow-fuzzed`): a V2 count encoded as the varint of
/// `u64::MAX` zig-zag decodes to `i64::MIN`, and `hdrhistogram` 7.6
/// (`deserializer.rs:347`, `on_decoded_num`) negates it: `attempt to negate with
/// overflow` where overflow checks are on (debug builds, `cargo test`, this fuzzer);
/// without them it wraps and the deserializer returns an error. The varint of
/// `u64::MAX` is nine `0xff` bytes and nothing else, so an input is skipped if any V2
/// histogram in it (inflated if compressed) has nine `0xff` bytes in a row anywhere:
/// a little more than needed, never less.
fn hits_count_negate_overflow(data: &[u8]) -> bool {
    IntervalLogIterator::new(data).any(|entry| {
        let Ok(LogEntry::Interval(i)) = entry else {
            return false;
        };
        let Ok(raw) = BASE64.decode(i.encoded_histogram()) else {
            return false;
        };
        let bytes = match raw.get(..4) {
            Some([0x1c, 0x84, 0x93, 0x14]) => {
                let mut inner = Vec::new();
                // read_hlog refuses a declared payload over 16 MiB.
                let _ = flate2::read::ZlibDecoder::new(&raw[raw.len().min(8)..])
                    .take((16 << 20) + 64)
                    .read_to_end(&mut inner);
                inner
            }
            _ => raw,
        };
        bytes.windows(9).any(|w| w == [0xff; 9])
    })
}

fuzz_target!(|data: &[u8]| {
    if shutter_fuzz::filter_known_bugs() && hits_count_negate_overflow(data) {
        return;
    }
    let Ok(intervals) = read_hlog(data) else {
        return;
    };
    for (_, h) in intervals {
        let mut buf = Vec::new();
        if V2Serializer::new().serialize(&h, &mut buf).is_err() {
            continue;
        }
        let back: Histogram<u64> = Deserializer::new()
            .deserialize(&mut &buf[..])
            .expect("re-serialized histogram does not deserialize");
        assert_eq!(back.len(), h.len());
        assert_eq!(back.max(), h.max());
    }
});
