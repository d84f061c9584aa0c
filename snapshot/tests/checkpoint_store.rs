//! The checkpoint store on disk: atomic files, the newest K kept, and every kind of bad
//! file reported with its path and skipped without losing the good ones.

use std::path::{Path, PathBuf};

use shutter_snapshot::checkpoint::{self, CheckpointStore, StoreError};
use shutter_snapshot::{LocalReport, RecordedMessage, SnapshotId};
use shutter_transport::Time;
use shutter_vclock::{NodeId, VClock};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shutter-ckpt-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn members() -> Vec<NodeId> {
    vec![NodeId(0), NodeId(1), NodeId(2)]
}

fn part(s: u64) -> LocalReport {
    LocalReport {
        id: SnapshotId {
            initiator: NodeId(0),
            s,
        },
        state: vec![1, 2, 3, s as u8],
        cut: VClock::from_entries(vec![s, 2, 3]),
        cut_at: Time(s),
        channels: vec![(
            NodeId(2),
            vec![RecordedMessage {
                ts: VClock::from_entries(vec![0, 0, 1]),
                payload: b"transfer".to_vec(),
            }],
        )],
        life: 7,
        seen: Vec::new(),
        counts: None,
    }
}

fn ckpt_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ckpt"))
        .collect();
    v.sort();
    v
}

#[test]
fn keeps_the_newest_k_and_reopens_where_it_left_off() {
    let dir = tmpdir("keep");
    let (mut store, scan) = CheckpointStore::open(&dir, NodeId(1), &members(), 3).unwrap();
    assert!(scan.checkpoints.is_empty() && scan.skipped.is_empty());
    for s in 1..=5 {
        store.write(&part(s)).unwrap();
    }
    assert_eq!(ckpt_files(&dir).len(), 3);
    let (mut store, scan) = CheckpointStore::open(&dir, NodeId(1), &members(), 3).unwrap();
    assert!(scan.skipped.is_empty());
    let ids: Vec<u64> = scan.checkpoints.iter().map(|(_, c)| c.part.id.s).collect();
    assert_eq!(ids, vec![3, 4, 5], "oldest first");
    assert_eq!(scan.checkpoints[2].1.part, part(5), "stored exactly");
    store.write(&part(6)).unwrap();
    let scan = store.scan().unwrap();
    let ids: Vec<u64> = scan.checkpoints.iter().map(|(_, c)| c.part.id.s).collect();
    assert_eq!(
        ids,
        vec![4, 5, 6],
        "sequence numbers continue after a reopen"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn corrupt_truncated_and_foreign_files_are_named_and_skipped() {
    let dir = tmpdir("bad");
    let (mut store, _) = CheckpointStore::open(&dir, NodeId(1), &members(), 10).unwrap();
    let good = store.write(&part(1)).unwrap();
    let flipped = store.write(&part(2)).unwrap();
    let truncated = store.write(&part(3)).unwrap();
    let mut bytes = std::fs::read(&flipped).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&flipped, bytes).unwrap();
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let junk = dir.join("junk.ckpt");
    std::fs::write(&junk, b"hello, not a checkpoint").unwrap();
    // Another node's checkpoint, and one of another membership.
    let (mut other, _) = CheckpointStore::open(&dir.join("n2"), NodeId(2), &members(), 10).unwrap();
    let theirs = other.write(&part(4)).unwrap();
    let foreign = dir.join("foreign-node.ckpt");
    std::fs::copy(&theirs, &foreign).unwrap();
    let (mut wider, _) = CheckpointStore::open(
        &dir.join("wide"),
        NodeId(1),
        &[NodeId(0), NodeId(1), NodeId(2), NodeId(3)],
        10,
    )
    .unwrap();
    let wide = wider.write(&part(5)).unwrap();
    let other_members = dir.join("other-members.ckpt");
    std::fs::copy(&wide, &other_members).unwrap();

    let (_, scan) = CheckpointStore::open(&dir, NodeId(1), &members(), 10).unwrap();
    assert_eq!(scan.checkpoints.len(), 1);
    assert_eq!(scan.checkpoints[0].0, good);
    let messages: Vec<String> = scan.skipped.iter().map(ToString::to_string).collect();
    let find = |path: &Path, what: &str| {
        let p = path.display().to_string();
        assert!(
            messages.iter().any(|m| m.contains(&p) && m.contains(what)),
            "expected {what:?} for {p} in {messages:#?}"
        );
    };
    find(&flipped, "checksum mismatch");
    find(&truncated, "truncated");
    find(&junk, "not a checkpoint file");
    find(&foreign, "a checkpoint of n2, not of n1");
    find(&other_members, "membership [n0, n1, n2, n3]");
    assert_eq!(scan.skipped.len(), 5);
    // Damaged files are left for the operator; a new write still works.
    let (mut store, _) = CheckpointStore::open(&dir, NodeId(1), &members(), 10).unwrap();
    store.write(&part(9)).unwrap();
    assert!(flipped.exists() && junk.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_directory_that_cannot_be_created_is_an_error_naming_it() {
    let dir = tmpdir("file");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let below = file.join("data");
    let e = CheckpointStore::open(&below, NodeId(0), &members(), 3).unwrap_err();
    assert!(matches!(e, StoreError::Dir { .. }), "{e:?}");
    assert!(e.to_string().contains(&below.display().to_string()), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn decoding_rejects_every_kind_of_damage_without_panicking() {
    let c = checkpoint::Checkpoint {
        node: NodeId(1),
        members: members(),
        seq: 1,
        part: part(1),
        inherited: vec![(NodeId(3), part(3))],
        replicas: vec![(NodeId(2), part(2))],
    };
    let bytes = checkpoint::encode(&c);
    assert_eq!(checkpoint::decode(&bytes).unwrap(), c);
    for cut in 0..bytes.len() {
        assert!(checkpoint::decode(&bytes[..cut]).is_err(), "prefix {cut}");
    }
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        assert!(checkpoint::decode(&b).is_err(), "flip at {i}");
    }
}

#[test]
fn pruning_keeps_the_newest_k_and_the_newest_of_each_initiator() {
    let id = |k: u32, s: u64| SnapshotId {
        initiator: NodeId(k),
        s,
    };
    // Oldest first: n1's only snapshot is old, n0's and n2's have newer ones.
    let ids = [id(1, 1), id(0, 2), id(2, 3), id(0, 4), id(2, 5), id(0, 6)];
    // Keep 2: candidates are the first four; n1@1 is the newest of n1, n2@3 is not
    // (n2@5 is newer).
    assert_eq!(checkpoint::prunable(&ids, 2), vec![1, 2, 3]);
    assert_eq!(checkpoint::prunable(&ids, 6), Vec::<usize>::new());
    assert_eq!(checkpoint::prunable(&ids, 0), vec![1, 2, 3]);
}
