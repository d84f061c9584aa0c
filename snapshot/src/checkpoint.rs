//! A node's checkpoint store: its own part of every snapshot known complete, on disk.
//!
//! When a snapshot commits ([`crate::SnapshotEvent::Committed`]: the initiator's `Done`
//! arrived, or this node initiated and completed it), the node writes its part: the
//! snapshot id, its application state, its cut clock and the messages recorded on its
//! incoming channels, with the membership it belongs to. One file per checkpoint,
//! written atomically (temp file, fsync, rename, directory fsync) and framed like a
//! snapshot file (magic `SHUTCKPT`, format version, body length, CRC32C). The newest
//! `keep` are kept; older ones are deleted after each write.
//!
//! The initiator of a snapshot also keeps every other member's part of it, as
//! *replicas* in its own checkpoint of that snapshot (one file, one fsync): when a
//! member is removed for good, the replica lets another member inherit its part
//! ([`crate::recovery`], "Removing a member"). After a removal the store moves to the
//! new membership ([`CheckpointStore::change_members`]); the heir's checkpoint of the
//! snapshot the cluster went back to then lists the part it inherited, so rolling back
//! to it again inherits it again.
//!
//! [`CheckpointStore::open`] reads what is there: a corrupt, truncated or foreign file
//! (another node's, another membership's) is reported with its path and skipped, never
//! loaded and never fatal for the others. A directory that cannot be created or written
//! is an error naming it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shutter_vclock::NodeId;
use thiserror::Error;

use crate::persist::{self, PersistError};
use crate::recovery::Removal;
use crate::wire::{LocalReport, SnapshotId};

/// First bytes of every checkpoint file.
pub const MAGIC: [u8; 8] = *b"SHUTCKPT";
/// The checkpoint format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 3;
/// File name extension of checkpoints.
pub const EXTENSION: &str = "ckpt";

/// One node's part of one committed snapshot, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The node that wrote it.
    pub node: NodeId,
    /// The membership of the snapshot, sorted.
    pub members: Vec<NodeId>,
    /// Write order within the store (the newest has the largest).
    pub seq: u64,
    /// The node's part: id, state, cut clock, recorded incoming channels.
    pub part: LocalReport,
    /// Parts of removed members this node took over at this snapshot (see
    /// [`crate::process::Process::on_inherit`]), by removed member.
    pub inherited: Vec<(NodeId, LocalReport)>,
    /// Other members' parts of this snapshot, kept by its initiator (as it assembled
    /// them), by member.
    pub replicas: Vec<(NodeId, LocalReport)>,
}

impl Checkpoint {
    /// The snapshot this checkpoint belongs to.
    pub fn id(&self) -> SnapshotId {
        self.part.id
    }

    /// What a restore of this checkpoint inherits: the parts it inherited before, plus
    /// the removed member's replica if `removal` names `me` the heir.
    pub fn inherited_for(
        &self,
        me: NodeId,
        removal: Option<Removal>,
    ) -> Vec<(NodeId, LocalReport)> {
        let mut inherited = self.inherited.clone();
        // An heir that inherited the part already (an overtaken round it completed) keeps
        // the one copy it has.
        if let Some(r) = removal.filter(|r| r.heir == me)
            && !inherited.iter().any(|(n, _)| *n == r.node)
            && let Some((_, p)) = self.replicas.iter().find(|(n, _)| *n == r.node)
        {
            inherited.push((r.node, p.clone()));
        }
        inherited
    }
}

/// Per member, the snapshot ids of which `checkpoints` hold that member's part, as a
/// replica or inherited, in the checkpoints' order (what `Stack::set_replicas` takes).
///
/// An inherited part counts: a removal round can be overtaken after most members applied
/// it, and the round that takes the removal up again must find the part where the heir
/// of the overtaken round keeps it (its re-based checkpoint lists it as inherited, the
/// replica is gone). Without it the membership swarm (seed 15) found no snapshot to go
/// back to, and the late member kept the removed node.
pub fn replica_index<'a>(
    checkpoints: impl IntoIterator<Item = &'a Checkpoint>,
) -> BTreeMap<NodeId, Vec<SnapshotId>> {
    let mut index = BTreeMap::<NodeId, Vec<SnapshotId>>::new();
    for c in checkpoints {
        for (n, _) in c.replicas.iter().chain(&c.inherited) {
            let ids = index.entry(*n).or_default();
            if ids.last() != Some(&c.id()) {
                ids.push(c.id());
            }
        }
    }
    index
}

/// Which of `ids` (regular checkpoints, oldest first) pruning deletes, by index: all but
/// the newest `keep`, and never the newest of each initiator. The newest of each
/// initiator is what a removal needs: its initiator keeps the replicas, and every
/// member that committed it keeps it too however many other initiators' snapshots
/// commit meanwhile (at most one file per member more).
pub fn prunable(ids: &[SnapshotId], keep: usize) -> Vec<usize> {
    let old = ids.len().saturating_sub(keep);
    (0..old)
        .filter(|&i| ids[i + 1..].iter().any(|l| l.initiator == ids[i].initiator))
        .collect()
}

/// What went wrong with the store or one of its files; always names the path.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The directory cannot be created, listed or written.
    #[error("checkpoint directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A file is damaged or not a checkpoint.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: PersistError,
    },
    /// A valid checkpoint of another node or another membership.
    #[error("{path}: {reason}")]
    Foreign {
        /// The file.
        path: PathBuf,
        /// Whose it is.
        reason: String,
    },
}

/// The checkpoints of one node in one directory.
#[derive(Debug)]
pub struct CheckpointStore {
    dir: PathBuf,
    node: NodeId,
    members: Vec<NodeId>,
    keep: usize,
    next_seq: u64,
}

/// What [`CheckpointStore::open`] found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Valid checkpoints of this node and membership, oldest first, with their paths.
    pub checkpoints: Vec<(PathBuf, Checkpoint)>,
    /// Files that were skipped, and why.
    pub skipped: Vec<StoreError>,
}

impl CheckpointStore {
    /// Opens (creating it if needed) the store of `node` in `dir` for the membership
    /// `members`, keeping the newest `keep` checkpoints (at least 1), and reads what is
    /// there. Fails only if the directory cannot be created or written.
    pub fn open(
        dir: &Path,
        node: NodeId,
        members: &[NodeId],
        keep: usize,
    ) -> Result<(CheckpointStore, Scan), StoreError> {
        let dir_err = |source| StoreError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(dir_err)?;
        // Fail now, not at the first commit, if nothing can be written here.
        let probe = dir.join(format!(".probe.{}", std::process::id()));
        fs::write(&probe, b"").map_err(dir_err)?;
        let _ = fs::remove_file(&probe);
        let mut members = members.to_vec();
        members.sort_unstable();
        members.dedup();
        let mut store = CheckpointStore {
            dir: dir.to_path_buf(),
            node,
            members,
            keep: keep.max(1),
            next_seq: 1,
        };
        let scan = store.scan()?;
        store.next_seq = scan
            .checkpoints
            .last()
            .map_or(1, |(_, c)| c.seq.saturating_add(1));
        Ok((store, scan))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The ids of the valid checkpoints, oldest first.
    pub fn ids(&self) -> Result<Vec<SnapshotId>, StoreError> {
        Ok(self
            .scan()?
            .checkpoints
            .into_iter()
            .map(|(_, c)| c.id())
            .collect())
    }

    /// Per other member, the snapshot ids of which this store holds a replica of its
    /// part, oldest first.
    pub fn replica_ids(&self) -> Result<BTreeMap<NodeId, Vec<SnapshotId>>, StoreError> {
        Ok(replica_index(
            self.scan()?.checkpoints.iter().map(|(_, c)| c),
        ))
    }

    /// This node's part of snapshot `id`, if a valid checkpoint holds it.
    pub fn find(&self, id: SnapshotId) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self
            .scan()?
            .checkpoints
            .into_iter()
            .map(|(_, c)| c)
            .rfind(|c| c.id() == id))
    }

    /// Reads every checkpoint file of the directory; see [`Scan`].
    pub fn scan(&self) -> Result<Scan, StoreError> {
        let entries = fs::read_dir(&self.dir).map_err(|source| StoreError::Dir {
            path: self.dir.clone(),
            source,
        })?;
        let mut scan = Scan::default();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some(EXTENSION) {
                continue;
            }
            match self.read(&path) {
                Ok(c) => scan.checkpoints.push((path, c)),
                Err(e) => scan.skipped.push(e),
            }
        }
        scan.checkpoints.sort_by_key(|(_, c)| c.seq);
        Ok(scan)
    }

    fn read(&self, path: &Path) -> Result<Checkpoint, StoreError> {
        let file = |source| StoreError::File {
            path: path.to_path_buf(),
            source,
        };
        let bytes = fs::read(path).map_err(|e| {
            file(PersistError::Io {
                path: path.to_path_buf(),
                source: e,
            })
        })?;
        let foreign = |reason: String| StoreError::Foreign {
            path: path.to_path_buf(),
            reason,
        };
        let c = match decode(&bytes) {
            Ok(c) => c,
            Err(PersistError::NotShutterFile) => {
                return Err(foreign("not a checkpoint file (bad magic)".into()));
            }
            Err(e) => return Err(file(e)),
        };
        if c.node != self.node {
            return Err(foreign(format!(
                "a checkpoint of {}, not of {}",
                c.node, self.node
            )));
        }
        if c.members != self.members {
            return Err(foreign(format!(
                "a checkpoint of the membership {}, not {}",
                list(&c.members),
                list(&self.members)
            )));
        }
        Ok(c)
    }

    /// The membership this store's checkpoints belong to.
    pub fn members(&self) -> &[NodeId] {
        &self.members
    }

    /// Writes `part` as the newest checkpoint and deletes the oldest beyond `keep`.
    /// Returns the new file's path.
    pub fn write(&mut self, part: &LocalReport) -> Result<PathBuf, StoreError> {
        self.write_with(part, &[], &[])
    }

    /// [`CheckpointStore::write`] with the parts of removed members this node
    /// inherited at this snapshot, and the other members' parts it keeps as replicas.
    pub fn write_with(
        &mut self,
        part: &LocalReport,
        inherited: &[(NodeId, LocalReport)],
        replicas: &[(NodeId, LocalReport)],
    ) -> Result<PathBuf, StoreError> {
        let c = Checkpoint {
            node: self.node,
            members: self.members.clone(),
            seq: self.next_seq,
            part: part.clone(),
            inherited: inherited.to_vec(),
            replicas: replicas.to_vec(),
        };
        let path = self.dir.join(format!(
            "ckpt-{:020}-{}-{}.{EXTENSION}",
            c.seq, part.id.initiator, part.id.s
        ));
        persist::write_atomic(&path, &encode(&c)).map_err(|source| StoreError::File {
            path: path.clone(),
            source,
        })?;
        self.next_seq += 1;
        self.prune()?;
        Ok(path)
    }

    /// Moves the store to a new membership (a member was removed): checkpoints written
    /// from now on carry `members`. Call [`CheckpointStore::drop_other_memberships`]
    /// once the first one is written.
    pub fn change_members(&mut self, members: &[NodeId]) {
        let mut members = members.to_vec();
        members.sort_unstable();
        members.dedup();
        self.members = members;
    }

    /// Deletes this node's checkpoints of other memberships: after a membership change
    /// nothing can roll back to them (it would bring back a removed member's part).
    /// Damaged and other nodes' files are left alone.
    pub fn drop_other_memberships(&self) -> Result<usize, StoreError> {
        let entries = fs::read_dir(&self.dir).map_err(|source| StoreError::Dir {
            path: self.dir.clone(),
            source,
        })?;
        let mut dropped = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some(EXTENSION) {
                continue;
            }
            let Ok(bytes) = fs::read(&path) else { continue };
            let Ok(c) = decode(&bytes) else { continue };
            if c.node == self.node && c.members != self.members {
                fs::remove_file(&path).map_err(|source| StoreError::Dir {
                    path: path.clone(),
                    source,
                })?;
                dropped += 1;
            }
        }
        Ok(dropped)
    }

    /// Deletes what [`prunable`] names among the valid checkpoints, never the genesis
    /// one (damaged files are left for the operator to look at).
    fn prune(&self) -> Result<(), StoreError> {
        let scan = self.scan()?;
        let regular: Vec<_> = scan
            .checkpoints
            .iter()
            .filter(|(_, c)| c.id() != crate::recovery::GENESIS)
            .collect();
        let ids: Vec<SnapshotId> = regular.iter().map(|(_, c)| c.id()).collect();
        for (path, _) in prunable(&ids, self.keep).into_iter().map(|i| regular[i]) {
            fs::remove_file(path).map_err(|source| StoreError::Dir {
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

fn list(nodes: &[NodeId]) -> String {
    let names: Vec<String> = nodes.iter().map(ToString::to_string).collect();
    format!("[{}]", names.join(", "))
}

/// Encodes a checkpoint into file bytes.
pub fn encode(c: &Checkpoint) -> Vec<u8> {
    let body = postcard::to_allocvec(c).expect("postcard encoding into a Vec cannot fail");
    persist::frame(&MAGIC, FORMAT_VERSION, &body)
}

/// Decodes checkpoint file bytes; never panics.
pub fn decode(bytes: &[u8]) -> Result<Checkpoint, PersistError> {
    let body = persist::unframe(bytes, &MAGIC, FORMAT_VERSION)?;
    let (c, rest) = postcard::take_from_bytes::<Checkpoint>(body)?;
    if !rest.is_empty() {
        return Err(PersistError::TrailingBytes {
            extra: rest.len() as u64,
        });
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use shutter_transport::Time;
    use shutter_vclock::{NodeId, VClock};

    use super::{Checkpoint, replica_index};
    use crate::recovery::Removal;
    use crate::wire::{LocalReport, SnapshotId};

    fn part(node: u32) -> LocalReport {
        LocalReport {
            id: SnapshotId {
                initiator: NodeId(5),
                s: 20,
            },
            state: vec![node as u8],
            cut: VClock::new(),
            cut_at: Time(0),
            channels: Vec::new(),
            life: 1,
            seen: Vec::new(),
            counts: None,
        }
    }

    /// The heir of a removal that a later round overtook: its re-based checkpoint lists
    /// the removed part as inherited and no longer as a replica. It still holds that
    /// part (the round taking the removal up again must find it), and naming it the heir
    /// again inherits the part once.
    #[test]
    fn an_inherited_part_is_held_and_inherited_once() {
        let rebased = Checkpoint {
            node: NodeId(5),
            members: vec![NodeId(2), NodeId(5)],
            seq: 3,
            part: part(5),
            inherited: vec![(NodeId(16), part(16))],
            replicas: vec![(NodeId(2), part(2))],
        };
        let index = replica_index([&rebased]);
        assert_eq!(index.get(&NodeId(16)), Some(&vec![rebased.id()]));
        assert_eq!(index.get(&NodeId(2)), Some(&vec![rebased.id()]));
        let again = Removal {
            node: NodeId(16),
            heir: NodeId(5),
        };
        assert_eq!(rebased.inherited_for(NodeId(5), Some(again)).len(), 1);
        // The first time, from the replica.
        let original = Checkpoint {
            inherited: Vec::new(),
            replicas: vec![(NodeId(16), part(16))],
            ..rebased.clone()
        };
        let first = original.inherited_for(NodeId(5), Some(again));
        assert_eq!(first, vec![(NodeId(16), part(16))]);
    }
}
