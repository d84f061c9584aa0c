//! Writes the hand-made, minimal reproducers under `tests/fuzz/regressions/` (one per
//! bug site; the fuzzer-found originals, minimized with `cargo fuzz tmin`, sit next to
//! them as `*-fuzzed`). The hlog reproducer is only the fuzzer's. See the README's table.
//!
//! ```sh
//! cargo +nightly run --manifest-path tests/fuzz/Cargo.toml --example gen_regressions -- tests/fuzz/regressions
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use shutter_snapshot::bank::{BankState, encode_transfer};
use shutter_snapshot::wire::{RecordedMessage, SnapshotId};
use shutter_snapshot::{GlobalSnapshot, Timings, persist};
use shutter_vclock::compact::{CompactClock, Entries};
use shutter_vclock::{NodeId, VClock};

fn write(root: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = root.join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
    println!("{target}/{name}: {} bytes", bytes.len());
}

/// A bank snapshot of nodes with these balances and one channel n0 -> n1 holding
/// transfers of these amounts.
fn bank(balances: &[u64], transfers: &[u64]) -> Vec<u8> {
    let nodes: Vec<NodeId> = (0..balances.len().max(2) as u32).map(NodeId).collect();
    let mut channels = BTreeMap::new();
    channels.insert(
        (nodes[0], nodes[1]),
        transfers
            .iter()
            .map(|&a| RecordedMessage {
                ts: VClock::new(),
                payload: encode_transfer(a),
            })
            .collect(),
    );
    let snap = GlobalSnapshot {
        id: SnapshotId {
            initiator: NodeId(0),
            s: 1,
        },
        states: nodes
            .iter()
            .zip(balances.iter().copied().chain(std::iter::repeat(0)))
            .map(|(&n, b)| (n, postcard::to_allocvec(&BankState { balance: b }).unwrap()))
            .collect(),
        cuts: BTreeMap::new(),
        channels,
        timings: Timings::default(),
        control_messages: 0,
        counts: Default::default(),
    };
    persist::encode(&snap)
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("tests/fuzz/regressions"));

    // persist::decode: body length u64::MAX in the header (fixed in e6c86d7).
    let mut header = Vec::new();
    header.extend_from_slice(&persist::MAGIC);
    header.extend_from_slice(&persist::FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&u64::MAX.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    write(&root, "snapshot_file", "header-len-overflow", &header);

    // compact::Decoder::decode: seq u64::MAX (default config byte 0x80) (fixed in e6c86d7).
    let mut c = vec![0x80];
    c.extend_from_slice(
        &postcard::to_allocvec(&(
            u64::MAX,
            CompactClock {
                base_back: 0,
                entries: Entries::Dense(vec![]),
            },
        ))
        .unwrap(),
    );
    write(&root, "compact_decoder", "seq-plus-window-overflow", &c);

    // compact::Decoder::mark_received: with max_retained 1 (config byte 0x00), seqs
    // u64::MAX - 1 then u64::MAX: the eviction sets lowest_missing to u64::MAX, which is
    // then found received and incremented (fixed in 0a33c84).
    let mut c = vec![0x00];
    for seq in [u64::MAX - 1, u64::MAX] {
        c.extend_from_slice(
            &postcard::to_allocvec(&(
                seq,
                CompactClock {
                    base_back: 0,
                    entries: Entries::Dense(vec![]),
                },
            ))
            .unwrap(),
        );
    }
    write(&root, "compact_decoder", "lowest-missing-overflow", &c);

    // report::read_hlog's header check (added in 0a33c84): `2 * low` with a declared
    // lowest value of 2^63.
    let mut v2 = Vec::new();
    v2.extend_from_slice(&0x1c84_9313u32.to_be_bytes()); // V2 cookie
    v2.extend_from_slice(&0u32.to_be_bytes()); // payload length
    v2.extend_from_slice(&0u32.to_be_bytes()); // normalizing offset
    v2.extend_from_slice(&3u32.to_be_bytes()); // significant digits
    v2.extend_from_slice(&(1u64 << 63).to_be_bytes()); // lowest
    v2.extend_from_slice(&u64::MAX.to_be_bytes()); // highest
    v2.extend_from_slice(&1.0f64.to_be_bytes()); // integer to double ratio
    let line = format!(
        "Tag=x,0.000,1.000,1.000,{}\n",
        base64::engine::general_purpose::STANDARD.encode(&v2)
    );
    write(&root, "hlog", "low-times-two-overflow", line.as_bytes());

    // Bank sums over a snapshot's untrusted numbers (fixed in 0a33c84).
    write(
        &root,
        "snapshot_inspect",
        "balances-overflow",
        &bank(&[u64::MAX, 1], &[]),
    );
    write(
        &root,
        "snapshot_inspect",
        "transfers-overflow",
        &bank(&[0, 0], &[u64::MAX, 1]),
    );
    write(
        &root,
        "snapshot_inspect",
        "balances-plus-transfers-overflow",
        &bank(&[u64::MAX, 0], &[1]),
    );
}
