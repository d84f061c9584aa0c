//! What the CLI does with a snapshot it did not make itself, after `persist::decode`:
//!
//! * `shutter snapshot` (bytes from a node's admin reply, over TCP) and `shutter inspect`
//!   verify it: `shutter_cli::inspect::verify` (every `verify` check and the bank invariant);
//! * `shutter inspect FILE` prints it: `shutter_cli::inspect::print`;
//! * `shutter node --restore FILE` takes each node's part: `persist::restore_for`.
//!
//! The input is a snapshot file whose header length and CRC are repaired, so every input
//! that postcard accepts reaches this code. Checks: no panic. (Kept apart from
//! `snapshot_file` so that a bug here does not stop the fuzzing of the decoder itself.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use shutter_cli::inspect;
use shutter_fuzz::repair_snapshot_header;
use shutter_snapshot::persist;

fuzz_target!(|data: &[u8]| {
    let Some(repaired) = repair_snapshot_header(data) else {
        return;
    };
    let Ok(snap) = persist::decode(&repaired) else {
        return;
    };
    let total = inspect::default_total(&snap);
    let _ = inspect::verify(&snap, total);
    let _ = inspect::print(&snap, None, 3, &mut std::io::sink());
    for node in snap.nodes().collect::<Vec<_>>() {
        let _ = persist::restore_for(&snap, node);
    }
});
