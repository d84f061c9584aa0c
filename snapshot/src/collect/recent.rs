//! A bounded set of recently finished snapshot ids, so late and duplicate control
//! messages (and announcements from nodes that have not heard the outcome yet) cannot
//! resurrect a snapshot, while memory stays bounded.

use std::collections::{BTreeSet, VecDeque};

use crate::wire::SnapshotId;

/// Remembers the last `cap` finished ids, forgetting the oldest first.
#[derive(Clone, Debug)]
pub(crate) struct Recent {
    cap: usize,
    order: VecDeque<SnapshotId>,
    set: BTreeSet<SnapshotId>,
}

impl Recent {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            order: VecDeque::new(),
            set: BTreeSet::new(),
        }
    }

    pub(crate) fn insert(&mut self, id: SnapshotId) {
        if self.set.insert(id) {
            self.order.push_back(id);
            while self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    pub(crate) fn contains(&self, id: &SnapshotId) -> bool {
        self.set.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shutter_vclock::NodeId;

    #[test]
    fn forgets_oldest_beyond_cap() {
        let id = |s| SnapshotId {
            initiator: NodeId(0),
            s,
        };
        let mut r = Recent::new(2);
        r.insert(id(1));
        r.insert(id(2));
        r.insert(id(2));
        r.insert(id(3));
        assert!(!r.contains(&id(1)));
        assert!(r.contains(&id(2)) && r.contains(&id(3)));
    }
}
