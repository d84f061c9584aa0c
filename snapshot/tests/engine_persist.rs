//! Snapshot files: round trip, atomic save, every kind of damage reported as its own
//! error, no panic on any bytes (proptest), and restore material per node.

mod engine_support;

use std::path::PathBuf;

use engine_support::{Net, n};
use proptest::prelude::*;
use shutter_snapshot::GlobalSnapshot;
use shutter_snapshot::mattern::{Engine, EngineConfig};
use shutter_snapshot::persist::{
    self, FORMAT_VERSION, HEADER_LEN, MAGIC, PersistError, restore_for,
};

/// A real snapshot with a non-empty channel state.
fn sample() -> GlobalSnapshot {
    let mut net = Net::new(3, |me, nodes| Engine::new(EngineConfig::new(me, nodes)));
    let a = net.send(n(1), n(2));
    net.send(n(2), n(0));
    net.initiate(n(0));
    net.deliver_controls();
    net.deliver(a);
    net.deliver_all();
    let snap = net.completed().pop().unwrap();
    assert_eq!(snap.recorded_messages(), 2);
    snap
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shutter-persist-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn save_then_load_round_trips_and_leaves_no_temp_files() {
    let dir = temp_dir("roundtrip");
    let path = dir.join("snap.shutter");
    let snap = sample();
    persist::save(&path, &snap).unwrap();
    assert_eq!(persist::load(&path).unwrap(), snap);
    // Overwrite atomically.
    let mut other = snap.clone();
    other.control_messages += 1;
    persist::save(&path, &other).unwrap();
    assert_eq!(persist::load(&path).unwrap(), other);
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("snap.shutter")]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn damaged_files_give_specific_errors() {
    let good = persist::encode(&sample());
    // Truncated anywhere after the magic.
    for cut in [8, HEADER_LEN - 1, HEADER_LEN, good.len() - 1] {
        let e = persist::decode(&good[..cut]).unwrap_err();
        assert!(
            matches!(e, PersistError::Truncated { .. }),
            "cut {cut}: {e}"
        );
    }
    // A flipped body byte.
    let mut flipped = good.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 0x40;
    assert!(matches!(
        persist::decode(&flipped),
        Err(PersistError::ChecksumMismatch { .. })
    ));
    // Wrong magic.
    let mut wrong = good.clone();
    wrong[0] = b'X';
    let e = persist::decode(&wrong).unwrap_err();
    assert!(matches!(e, PersistError::NotShutterFile));
    assert_eq!(e.to_string(), "not a shutter snapshot file (bad magic)");
    assert!(matches!(
        persist::decode(b"{\"json\": true}"),
        Err(PersistError::NotShutterFile)
    ));
    // A future version.
    let mut future = good.clone();
    future[8..10].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let e = persist::decode(&future).unwrap_err();
    assert!(matches!(
        e,
        PersistError::UnsupportedVersion {
            found: 4,
            supported: 3
        }
    ));
    // Trailing garbage.
    let mut longer = good.clone();
    longer.push(0);
    assert!(matches!(
        persist::decode(&longer),
        Err(PersistError::TrailingBytes { extra: 1 })
    ));
    // Valid checksum over a body that is not a snapshot.
    let body = [0xffu8; 5];
    let mut bogus = MAGIC.to_vec();
    bogus.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bogus.extend_from_slice(&(body.len() as u64).to_le_bytes());
    bogus.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    bogus.extend_from_slice(&body);
    assert!(matches!(
        persist::decode(&bogus),
        Err(PersistError::Decode(_))
    ));
    // Missing file.
    assert!(matches!(
        persist::load(std::path::Path::new("/nonexistent/shutter/snap")),
        Err(PersistError::Io { .. })
    ));
}

#[test]
fn every_single_byte_flip_is_detected() {
    let good = persist::encode(&sample());
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        assert!(
            persist::decode(&bad).is_err(),
            "flip at byte {i} went unnoticed"
        );
    }
}

#[test]
fn restore_material_per_node() {
    let snap = sample();
    let r2 = restore_for(&snap, n(2)).unwrap();
    assert_eq!(r2.clock, snap.cuts[&n(2)]);
    assert_eq!(r2.state, snap.states[&n(2)]);
    assert_eq!(r2.incoming.len(), 1);
    assert_eq!(r2.incoming[0].0, n(1));
    let r0 = restore_for(&snap, n(0)).unwrap();
    assert_eq!(r0.incoming.len(), 1);
    assert_eq!(r0.incoming[0].0, n(2));
    assert!(restore_for(&snap, n(7)).is_none());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = persist::decode(&bytes);
    }

    #[test]
    fn arbitrary_body_with_valid_header_never_panics(
        body in proptest::collection::vec(any::<u8>(), 0..512)
    ) {
        let mut f = MAGIC.to_vec();
        f.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        f.extend_from_slice(&(body.len() as u64).to_le_bytes());
        f.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        f.extend_from_slice(&body);
        let _ = persist::decode(&f);
    }

    #[test]
    fn mutated_valid_file_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut f = persist::encode(&sample());
        for (i, b) in edits {
            let k = i.index(f.len());
            f[k] = b;
        }
        let keep = cut.index(f.len() + 1);
        f.truncate(keep);
        let _ = persist::decode(&f);
    }
}

/// Found by the `snapshot_file` fuzz target (tests/fuzz/regressions/snapshot_file): a
/// header claiming a body of `u64::MAX` bytes overflowed while reporting the truncation.
#[test]
fn a_huge_claimed_length_is_a_truncation_not_a_panic() {
    let mut f = MAGIC.to_vec();
    f.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    f.extend_from_slice(&u64::MAX.to_le_bytes());
    f.extend_from_slice(&[0; 4]);
    assert_eq!(f.len(), HEADER_LEN);
    let e = persist::decode(&f).unwrap_err();
    assert!(
        matches!(e, PersistError::Truncated { expected: u64::MAX, found } if found == HEADER_LEN as u64),
        "{e}"
    );
}
