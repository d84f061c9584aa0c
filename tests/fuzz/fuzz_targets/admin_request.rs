//! The admin channel's request line (TCP, from any client that can connect):
//! `shutter_cli::admin::Request::parse`, fed the way `admin::handle` feeds it: at most 1024
//! bytes, up to and including the first newline, UTF-8 (otherwise the server answers
//! with an error before parsing), trailing whitespace trimmed.
//!
//! Whatever parses must survive `to_line` -> `parse` unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shutter_cli::admin::{MAX_REQUEST, Request};

fuzz_target!(|data: &[u8]| {
    let data = &data[..data.len().min(MAX_REQUEST as usize)];
    let line = match data.iter().position(|&b| b == b'\n') {
        Some(i) => &data[..=i],
        None => data,
    };
    let Ok(line) = std::str::from_utf8(line) else {
        return;
    };
    let Ok(req) = Request::parse(line.trim_end()) else {
        return;
    };
    let again = req.to_line();
    assert!(again.ends_with('\n') && again.len() as u64 <= MAX_REQUEST);
    let back = Request::parse(again.trim_end()).expect("to_line output does not parse");
    assert_eq!(back, req, "request changed in the round trip");
});
