//! Checkpoint files from a node's data directory (what `shutter node` reads at start and
//! during a rollback): `checkpoint::decode` on arbitrary bytes, as is and with the
//! header's length and CRC32C fields repaired (checkpoints share the snapshot files'
//! framing, so the postcard body behind the checksum gets fuzzed too).
//!
//! Whatever decodes must survive `checkpoint::encode` -> `checkpoint::decode` unchanged,
//! and the encoding must be canonical.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shutter_fuzz::repair_snapshot_header;
use shutter_snapshot::checkpoint;

fn check(data: &[u8]) {
    let Ok(c) = checkpoint::decode(data) else {
        return;
    };
    let bytes = checkpoint::encode(&c);
    let back = checkpoint::decode(&bytes).expect("re-encoded checkpoint does not decode");
    assert_eq!(back, c, "checkpoint changed in the round trip");
    assert_eq!(
        checkpoint::encode(&back),
        bytes,
        "encoding is not canonical"
    );
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some(repaired) = repair_snapshot_header(data) {
        check(&repaired);
    }
});
