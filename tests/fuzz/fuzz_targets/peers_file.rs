//! The peers file (TOML, read from disk by `shutter node` / `shutter snapshot` /
//! `shutter status`): `shutter_cli::peers::PeersFile::parse(text, path)`, the public text entry
//! point behind `PeersFile::load`, on arbitrary UTF-8.
//!
//! Whatever parses (and validates) must survive `to_toml` -> `parse` unchanged; the
//! accessors must not panic on it.
//!
//! `parse` resolves `HOST:PORT` addresses with the system resolver (`to_socket_addrs`),
//! which would send fuzz-made host names to DNS: slow, non-deterministic, and network
//! traffic nobody asked for. So inputs are first read as plain TOML, and any input with
//! an `addr`/`admin` string of a node that is not an `IP:PORT` literal (but would be
//! resolved) is skipped. A `parse` that takes a resolver (or resolves in a separate step)
//! would let the fuzzer cover that path without the network.
#![no_main]

use std::net::SocketAddr;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use shutter_cli::peers::PeersFile;

/// True if `parse` could call the resolver for this text.
fn would_resolve(text: &str) -> bool {
    let Ok(value) = text.parse::<toml::Table>() else {
        return false; // parse fails before any address is looked at
    };
    let Some(nodes) = value.get("nodes").and_then(|n| n.as_array()) else {
        return false;
    };
    nodes.iter().filter_map(|n| n.as_table()).any(|n| {
        ["addr", "admin"].iter().any(|k| {
            n.get(*k)
                .and_then(|v| v.as_str())
                .is_some_and(|s| s.parse::<SocketAddr>().is_err() && s.contains(':'))
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if would_resolve(text) {
        return;
    }
    let path = Path::new("peers.toml");
    let Ok(file) = PeersFile::parse(text, path) else {
        return;
    };
    for (id, addr) in file.members() {
        assert_eq!(file.addr_of(id), Some(addr));
        assert!(file.admin_of(id).is_some());
    }
    let toml = file.to_toml();
    let back = PeersFile::parse(&toml, path).unwrap_or_else(|e| {
        panic!(
            "a valid peers file does not parse again after to_toml: {e}\n--- to_toml ---\n{toml}"
        )
    });
    assert_eq!(
        back, file,
        "peers file changed in the round trip\n--- to_toml ---\n{toml}"
    );
});
