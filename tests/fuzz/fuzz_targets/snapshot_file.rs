//! Snapshot files from disk (or from a node's admin reply): `persist::decode` on
//! arbitrary bytes, as is and with the header's length and CRC32C fields repaired (so the
//! postcard body behind the checksum gets fuzzed too).
//!
//! Whatever decodes must survive `persist::encode` -> `persist::decode` unchanged, and
//! the encoding must be canonical.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shutter_fuzz::repair_snapshot_header;
use shutter_snapshot::persist;

fn check(data: &[u8]) {
    let Ok(snap) = persist::decode(data) else {
        return;
    };
    let bytes = persist::encode(&snap);
    let back = persist::decode(&bytes).expect("re-encoded snapshot does not decode");
    assert_eq!(back, snap, "snapshot changed in the round trip");
    assert_eq!(persist::encode(&back), bytes, "encoding is not canonical");
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some(repaired) = repair_snapshot_header(data) {
        check(&repaired);
    }
});
