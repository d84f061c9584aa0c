//! The dense vector clock and node identifiers.

use std::cmp::Ordering;
use std::fmt;

use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Largest cluster a clock may describe. Decoding rejects longer clocks so that a hostile
/// datagram cannot make a receiver allocate without bound.
pub const MAX_NODES: usize = 1 << 16;

/// Identifier of a node: its index in every vector clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u32);

impl NodeId {
    /// The index of this node's entry in a clock.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// A dense vector clock.
///
/// Invariant: the entry vector never ends in a zero, so two clocks that read the same at
/// every index are equal (and hash equal) whatever their history.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct VClock {
    entries: Vec<u64>,
}

impl VClock {
    /// The zero clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a clock from its entries (trailing zeros are dropped).
    pub fn from_entries(entries: Vec<u64>) -> Self {
        let mut c = Self { entries };
        c.trim();
        c
    }

    /// The entries up to the last non-zero one.
    pub fn entries(&self) -> &[u64] {
        &self.entries
    }

    /// The clock as its wire form has it (see the `Serialize` impl): a base, the smallest
    /// non-zero entry minus one, and every entry as its offset over the base, 0 for a
    /// zero entry. `None` for the zero clock. Encoders that size or pack this form start
    /// from here, so the base is defined once.
    pub fn base_offsets(&self) -> Option<(u64, impl Iterator<Item = u64> + '_)> {
        let base = self.entries.iter().copied().filter(|&v| v > 0).min()? - 1;
        let offsets = self
            .entries
            .iter()
            .map(move |&v| if v == 0 { 0 } else { v - base });
        Some((base, offsets))
    }

    /// Number of entries stored (index of the last non-zero entry plus one).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True for the zero clock.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry of `id` (0 if never set).
    pub fn get(&self, id: NodeId) -> u64 {
        self.get_index(id.index())
    }

    /// The entry at index `i` (0 if never set).
    pub(crate) fn get_index(&self, i: usize) -> u64 {
        self.entries.get(i).copied().unwrap_or(0)
    }

    /// Sets the entry of `id`.
    ///
    /// # Panics
    /// If `id` is not below [`MAX_NODES`]; membership is validated before clocks are used.
    pub fn set(&mut self, id: NodeId, value: u64) {
        let i = id.index();
        assert!(i < MAX_NODES, "node id {i} exceeds MAX_NODES");
        if i >= self.entries.len() {
            if value == 0 {
                return;
            }
            self.entries.resize(i + 1, 0);
        }
        self.entries[i] = value;
        self.trim();
    }

    /// Increments the entry of `id` and returns its new value.
    ///
    /// # Panics
    /// If `id` is not below [`MAX_NODES`], or on counter overflow (2^64 events).
    pub fn tick(&mut self, id: NodeId) -> u64 {
        let v = self.get(id).checked_add(1).expect("vector clock overflow");
        self.set(id, v);
        v
    }

    /// Component-wise maximum (the join): afterwards `self` dominates both inputs.
    pub fn merge(&mut self, other: &VClock) {
        if other.entries.len() > self.entries.len() {
            self.entries.resize(other.entries.len(), 0);
        }
        for (mine, theirs) in self.entries.iter_mut().zip(&other.entries) {
            *mine = (*mine).max(*theirs);
        }
        // No trim needed: the longer input ends in a non-zero entry and so does the max.
    }

    /// The join of two clocks as a new value.
    pub fn joined(&self, other: &VClock) -> VClock {
        let mut c = self.clone();
        c.merge(other);
        c
    }

    /// `self <= other` component-wise.
    pub fn le(&self, other: &VClock) -> bool {
        self.entries.len() <= other.entries.len()
            && self.entries.iter().zip(&other.entries).all(|(a, b)| a <= b)
    }

    /// `self < other`: every entry `<=` and the clocks differ (happened-before).
    pub fn happened_before(&self, other: &VClock) -> bool {
        self != other && self.le(other)
    }

    /// Neither clock happened before the other and they differ.
    pub fn concurrent(&self, other: &VClock) -> bool {
        !self.le(other) && !other.le(self)
    }

    /// `self >= other` component-wise.
    pub fn dominates(&self, other: &VClock) -> bool {
        other.le(self)
    }

    /// Iterates `(node, value)` over the non-zero entries.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, v)| **v != 0)
            .map(|(i, v)| (NodeId(i as u32), *v))
    }

    fn trim(&mut self) {
        while self.entries.last() == Some(&0) {
            self.entries.pop();
        }
    }
}

impl PartialOrd for VClock {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match (self.le(other), other.le(self)) {
            (true, true) => Some(Ordering::Equal),
            (true, false) => Some(Ordering::Less),
            (false, true) => Some(Ordering::Greater),
            (false, false) => None,
        }
    }
}

impl fmt::Display for VClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, v) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{v}")?;
        }
        f.write_str("]")
    }
}

impl fmt::Debug for VClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromIterator<u64> for VClock {
    fn from_iter<T: IntoIterator<Item = u64>>(iter: T) -> Self {
        Self::from_entries(iter.into_iter().collect())
    }
}

impl FromIterator<(NodeId, u64)> for VClock {
    fn from_iter<T: IntoIterator<Item = (NodeId, u64)>>(iter: T) -> Self {
        let mut c = VClock::new();
        for (id, v) in iter {
            c.set(id, c.get(id).max(v));
        }
        c
    }
}

/// Wire form: an empty sequence for the zero clock; otherwise a sequence of `1 + len`
/// varints, a *base* (the smallest non-zero entry minus one) followed by every entry as
/// `entry - base`, or 0 for a zero entry.
///
/// Why the base: a node's own entry starts each life at a floor derived from the wall
/// clock (see `shutter_snapshot::life`), so live entries sit near `2^55` and take 8
/// bytes each as plain varints. Nodes started around the same time have floors close to
/// each other, so the offsets above the smallest take 1-4 bytes; the base costs one
/// varint per clock. A clock of small counters pays one byte for its base of 0.
impl Serialize for VClock {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        // Trimmed, so only the zero clock has no non-zero entry.
        let Some((base, offsets)) = self.base_offsets() else {
            return s.serialize_seq(Some(0))?.end();
        };
        let mut seq = s.serialize_seq(Some(self.entries.len() + 1))?;
        seq.serialize_element(&base)?;
        for off in offsets {
            seq.serialize_element(&off)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for VClock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = VClock;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a base and at most {MAX_NODES} counter offsets")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<VClock, A::Error> {
                let hint = seq.size_hint().unwrap_or(0);
                if hint > MAX_NODES + 1 {
                    return Err(serde::de::Error::invalid_length(hint, &self));
                }
                let Some(base) = seq.next_element::<u64>()? else {
                    return Ok(VClock::new());
                };
                let mut entries = Vec::with_capacity(hint.saturating_sub(1));
                while let Some(off) = seq.next_element::<u64>()? {
                    if entries.len() == MAX_NODES {
                        return Err(serde::de::Error::invalid_length(MAX_NODES + 2, &self));
                    }
                    let v = match off {
                        0 => 0,
                        off => base
                            .checked_add(off)
                            .ok_or_else(|| serde::de::Error::custom("clock entry overflows u64"))?,
                    };
                    entries.push(v);
                }
                Ok(VClock::from_entries(entries))
            }
        }
        d.deserialize_seq(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_entries_read_zero_and_trailing_zeros_do_not_matter() {
        let a = VClock::from_entries(vec![1, 0, 0]);
        let b = VClock::from_entries(vec![1]);
        assert_eq!(a, b);
        assert_eq!(a.get(NodeId(7)), 0);
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn display_is_bracketed_list() {
        let c: VClock = [3u64, 0, 7].into_iter().collect();
        assert_eq!(c.to_string(), "[3,0,7]");
        assert_eq!(VClock::new().to_string(), "[]");
    }

    #[test]
    fn tick_grows_on_demand() {
        let mut c = VClock::new();
        assert_eq!(c.tick(NodeId(4)), 1);
        assert_eq!(c.entries(), &[0, 0, 0, 0, 1]);
    }

    #[test]
    fn concurrent_clocks_are_unordered() {
        let a: VClock = [1u64, 0].into_iter().collect();
        let b: VClock = [0u64, 1].into_iter().collect();
        assert_eq!(a.partial_cmp(&b), None);
        assert!(a.concurrent(&b));
        assert!(!a.happened_before(&b));
    }
}
