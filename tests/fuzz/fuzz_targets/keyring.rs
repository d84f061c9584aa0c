//! The cluster key file (read from disk by `shutter node` / `snapshot` / `status`):
//! `shutter_transport::auth::KeyRing::parse` on arbitrary UTF-8.
//!
//! Whatever parses must survive `to_text` -> `parse` unchanged, with the same send id.
//!
//! Tracks the AEAD layer that was being written when this target was added
//! (`transport/src/auth.rs`); adjust it if that API moves.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shutter_transport::auth::KeyRing;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(ring) = KeyRing::parse(text) else {
        return;
    };
    assert!(
        ring.ids().any(|id| id == ring.send_id()),
        "send id not in the ring"
    );
    let again = ring.to_text();
    let back = KeyRing::parse(&again).expect("to_text output does not parse");
    assert_eq!(back, ring, "key ring changed in the round trip");
    assert_eq!(back.send_id(), ring.send_id());
});
