//! Sealed-mode helpers for the `sealed_datagram` target and the corpus generator.
//!
//! Not a module of the library on purpose: it uses the AEAD API that was still being
//! written when it was added (`shutter_transport::auth`, `wire::decode_sealed_header`),
//! and only the files that include it (`#[path] mod sealed;`) break if that API moves.

#![allow(dead_code)]

use shutter_transport::auth::{Auth, KeyRing};
use shutter_transport::{Config, wire};
use shutter_vclock::NodeId;

/// The fuzzing cluster's secret (a fixed test key; nothing secret about it).
pub const TEST_KEY: [u8; 32] = [0x5a; 32];

/// A ring holding [`TEST_KEY`] as key 1.
pub fn ring() -> KeyRing {
    KeyRing::single(1, TEST_KEY)
}

/// The default config with datagrams sealed under [`ring`].
pub fn sealed_config() -> Config {
    Config {
        auth: Auth::Keys(ring()),
        ..Config::default()
    }
}

/// Checks a datagram a sealed core sent; returns its `(sender, sender incarnation)`.
pub fn check_sealed(bytes: &[u8]) -> (NodeId, u64) {
    let (h, key_id, header_len) =
        wire::decode_sealed_header(bytes).expect("the core sent an unparsable sealed datagram");
    assert_eq!(key_id, 1, "sealed with a key id we do not send with");
    assert!(header_len + shutter_transport::auth::TAG_LEN <= bytes.len());
    (h.sender, h.sender_incarnation)
}
