//! `shutter_transport::wire::decode` on arbitrary bytes, as received from the network.
//!
//! Every input is decoded as is and with its trailing CRC32C repaired (so the frame
//! parser behind the checksum gets fuzzed too). Whatever decodes is written again with
//! the wire `Writer`, which must reproduce the same header and frames (byte equality is
//! not required: varints may arrive non-minimal) and never be longer than the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shutter_fuzz::repair_datagram_crc;
use shutter_transport::wire::{self, Frame, Header, Writer};

fn round_trip(input: &[u8], header: &Header, frames: &[Frame<'_>]) {
    // Plenty of room: the re-encoding is never longer than the input.
    let max_len = input.len() + 64;
    let mut w = Writer::new(header, max_len);
    for f in frames {
        let before = w.remaining();
        match f {
            Frame::Data(d) => {
                assert!(w.push_data(d), "a decoded DATA frame does not fit again");
                assert_eq!(
                    before - w.remaining(),
                    d.encoded_len(),
                    "DataFrame::encoded_len disagrees with what push_data wrote"
                );
            }
            Frame::Ack(a) => {
                let largest = w.push_ack(a.ack_delay_micros, &a.ranges, usize::MAX);
                assert_eq!(largest, a.largest(), "push_ack dropped a decoded ACK");
            }
            Frame::Ping => assert!(w.push_ping()),
        }
    }
    assert_eq!(w.frames(), frames.len());
    let bytes = w.finish();
    assert!(
        bytes.len() <= input.len(),
        "re-encoding grew from {} to {} bytes",
        input.len(),
        bytes.len()
    );
    let (h2, f2) = wire::decode(&bytes).expect("re-encoded datagram does not decode");
    assert_eq!(&h2, header, "header changed in the round trip");
    assert_eq!(f2, frames, "frames changed in the round trip");
}

fn check(input: &[u8]) {
    if let Ok((header, frames)) = wire::decode(input) {
        round_trip(input, &header, &frames);
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some(repaired) = repair_datagram_crc(data) {
        check(&repaired);
    }
});
