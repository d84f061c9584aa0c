//! Transport message payloads: `Envelope<Control>` (Mattern engine) and
//! `Envelope<ClControl>` (Chandy-Lamport baseline) from arbitrary bytes, exactly as the
//! runtime decodes every delivered message (`runtime/task.rs`).
//!
//! Whatever decodes must survive `to_bytes` -> `from_bytes` unchanged, and its encoding
//! must be canonical (encoding the re-decoded value gives the same bytes).
#![no_main]

use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};
use shutter_snapshot::Envelope;
use shutter_snapshot::chandy_lamport::ClControl;
use shutter_snapshot::wire::Control;

fn check<C>(data: &[u8])
where
    C: Serialize + for<'de> Deserialize<'de> + PartialEq + Debug,
{
    let Ok(e) = Envelope::<C>::from_bytes(data) else {
        return;
    };
    let bytes = e.to_bytes();
    let back = Envelope::<C>::from_bytes(&bytes).expect("re-encoded envelope does not decode");
    assert_eq!(back, e, "envelope changed in the round trip");
    assert_eq!(back.to_bytes(), bytes, "encoding is not canonical");
}

fuzz_target!(|data: &[u8]| {
    check::<Control>(data);
    check::<ClControl>(data);
});
