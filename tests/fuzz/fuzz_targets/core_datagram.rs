//! Arbitrary datagrams (and a few sends and timer events around them) into a
//! `shutter_transport::Core`: node 0 with peers 1 and 2, default config. The input is a
//! byte-coded operation list (`shutter_fuzz::core_ops`); datagram bytes are arbitrary and
//! by default get their CRC repaired so they reach the protocol logic. At most
//! `core_ops::MAX_OPS` (64) operations, and none after the one whose outputs bring what
//! the core sent to `core_ops::MAX_TRANSMITS_PER_INPUT` (128) datagrams: one input costs
//! about its datagrams, and unbounded ones cost up to 150 ms (tests/fuzz/README.md).
//!
//! Checks: no panic; `poll_transmit` terminates; every datagram the core sends decodes,
//! carries our id and incarnation, fits `max_datagram` and goes to a peer; deliveries come
//! from peers and fit `max_message`. Memory is bounded by libFuzzer's `-rss_limit_mb`
//! (2 GiB by default) and `-malloc_limit_mb`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shutter_fuzz::core_ops::Harness;

fuzz_target!(|data: &[u8]| {
    let mut h = Harness::default();
    h.run(data);
});
