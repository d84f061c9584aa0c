//! Vector clocks from bytes: `VClock` (postcard, base + offsets form, as carried by every
//! application header) and `compact::CompactClock` (postcard), the two clock forms that
//! come off the wire.
//!
//! Whatever decodes must round-trip (`postcard` encode, decode, equal), the re-encoding
//! must be canonical (stable), and a decoded `VClock` must keep its invariant (no
//! trailing zero, at most `MAX_NODES` entries).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shutter_vclock::compact::CompactClock;
use shutter_vclock::{MAX_NODES, VClock};

fn vclock(data: &[u8]) {
    let Ok(c) = postcard::from_bytes::<VClock>(data) else {
        return;
    };
    assert!(c.len() <= MAX_NODES, "decoded clock of {} entries", c.len());
    assert_ne!(c.entries().last(), Some(&0), "decoded clock ends in a zero");
    let bytes = postcard::to_allocvec(&c).expect("encoding into a Vec cannot fail");
    let back: VClock = postcard::from_bytes(&bytes).expect("re-encoded clock does not decode");
    assert_eq!(back, c, "clock changed in the round trip");
    assert_eq!(
        postcard::to_allocvec(&back).unwrap(),
        bytes,
        "encoding is not canonical"
    );
    // `to_string` walks every entry; cheap check that nothing in it panics.
    let _ = c.to_string();
}

fn compact(data: &[u8]) {
    let Ok(c) = postcard::from_bytes::<CompactClock>(data) else {
        return;
    };
    let bytes = postcard::to_allocvec(&c).expect("encoding into a Vec cannot fail");
    let back: CompactClock =
        postcard::from_bytes(&bytes).expect("re-encoded compact clock does not decode");
    assert_eq!(back, c, "compact clock changed in the round trip");
}

fuzz_target!(|data: &[u8]| {
    vclock(data);
    compact(data);
});
