//! HdrHistogram interval logs read from disk by `shutter report FILE.hlog`:
//! `report::read_hlog` (text lines, base64, DEFLATE-compressed V2 histograms) on
//! arbitrary bytes.
//!
//! Checks: no panic, no out-of-memory (libFuzzer's `-rss_limit_mb`, 2 GiB by default,
//! and `-malloc_limit_mb`); every histogram that decodes survives V2 serialize ->
//! deserialize with the same count and max.
#![no_main]

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use libfuzzer_sys::fuzz_target;
use shutter_snapshot::report::read_hlog;

fuzz_target!(|data: &[u8]| {
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
