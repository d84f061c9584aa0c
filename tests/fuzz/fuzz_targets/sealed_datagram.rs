//! Sealed (AEAD) datagrams: what a secured node parses before and after authentication.
//!
//! * `wire::decode_sealed_header` (the clear header, parsed before authentication) and
//!   `wire::decode_frames` (the decrypted body) on the raw input; frames that decode
//!   must round-trip through the wire `Writer`.
//! * The same input as a `core_datagram` operation script (`shutter_fuzz::core_ops`) into
//!   a core with `Auth::Keys` (fixed test key, id 1): datagrams are handed over as they
//!   are (no CRC repair). Random bytes never authenticate, so this fuzzes everything a
//!   secured core does with forged input; the seeds are a genuine sealed conversation
//!   (which authenticates when replayed, so mutations of its timing and sends reach the
//!   protocol behind authentication).
//!
//! Checks: no panic; everything the core sends has a sealed header with our id and
//! incarnation and fits `max_datagram`.
//!
//! Tracks the AEAD layer that was being written when this target was added
//! (`transport/src/auth.rs`, the sealed half of `transport/src/wire.rs`); adjust it if
//! that API moves.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shutter_fuzz::core_ops::{Harness, new_core};

#[path = "../src/sealed.rs"]
mod sealed;
use sealed::{check_sealed, sealed_config};
use shutter_transport::wire::{self, Frame, Header, Writer};
use shutter_vclock::NodeId;

fn frames_round_trip(frames: &[Frame<'_>]) {
    let header = Header {
        sender: NodeId(0),
        sender_incarnation: 1,
        dest_incarnation: 0,
        packet_number: 0,
    };
    let mut w = Writer::new(&header, 1 << 20);
    for f in frames {
        match f {
            Frame::Data(d) => assert!(w.push_data(d)),
            Frame::Ack(a) => assert_eq!(
                w.push_ack(a.ack_delay_micros, &a.ranges, usize::MAX),
                a.largest()
            ),
            Frame::Ping => assert!(w.push_ping()),
        }
    }
    let bytes = w.finish();
    let (_, back) = wire::decode(&bytes).expect("re-encoded frames do not decode");
    assert_eq!(back, frames, "frames changed in the round trip");
}

fuzz_target!(|data: &[u8]| {
    let _ = wire::decode_sealed_header(data);
    if let Ok(frames) = wire::decode_frames(data) {
        frames_round_trip(&frames);
    }
    let mut h = Harness::new(new_core(sealed_config()), check_sealed);
    h.repair_crc = false;
    h.run(data);
});
