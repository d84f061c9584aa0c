//! The admin channel's other lines, from either side of the TCP connection:
//! `shutter_cli::admin::parse_greeting` (what a client reads first from whatever answers
//! at the admin address), `parse_auth_line` and `authentic` (the `AUTH <id> <mac>` line a
//! node reads before the request, under a fixed test key), and `ReplyHeader::parse` (the
//! first line of a node's reply, which is not authenticated).
//!
//! Input: the first byte picks the parser, the rest is the line (bounded and cut at the
//! first newline the way each reader does). Beyond "no panic": a parsed AUTH line's MAC is
//! at most 64 bytes; a forged line never authenticates a request; a snapshot header never
//! announces more than `MAX_SNAPSHOT` bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shutter_cli::admin::{
    MAX_REQUEST, MAX_SNAPSHOT, ReplyHeader, authentic, parse_auth_line, parse_greeting,
};
use shutter_transport::auth::KeyRing;

/// The first line of `data`, at most `limit` bytes, as the readers take it.
fn first_line(data: &[u8], limit: usize) -> Option<&str> {
    let data = &data[..data.len().min(limit)];
    let line = match data.iter().position(|&b| b == b'\n') {
        Some(i) => &data[..=i],
        None => data,
    };
    std::str::from_utf8(line).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            if let Some(line) = first_line(rest, MAX_REQUEST as usize) {
                let _ = parse_greeting(line);
            }
        }
        1 => {
            let Some(line) = first_line(rest, MAX_REQUEST as usize) else {
                return;
            };
            let auth = line.trim_end();
            if let Some((_, mac)) = parse_auth_line(auth) {
                assert!(mac.len() <= 64, "MAC of {} bytes accepted", mac.len());
            }
            // Nothing the fuzzer writes is a valid MAC under this key (2^-256 per try).
            let ring = KeyRing::single(1, [0x42; 32]);
            assert!(
                !authentic(&ring, "00112233445566778899aabbccddeeff", auth, "STATUS"),
                "a forged AUTH line authenticated"
            );
        }
        _ => {
            // The client reads at most 1 MiB of header; inputs are far shorter.
            let Some(line) = first_line(rest, 1 << 20) else {
                return;
            };
            if let Ok(ReplyHeader::Snapshot(len)) = ReplyHeader::parse(line) {
                assert!(len <= MAX_SNAPSHOT, "announced {len} bytes accepted");
            }
        }
    }
});
