//! The checks every run must pass, against the [`Oracle`]:
//!
//! * per completed snapshot ([`check_snapshot`], run once the run is over so the oracle
//!   knows which messages were lost for good): `verify::check_all` (cut consistency over
//!   the cut clocks, channel sanity, bank invariant with the money of pre-cut messages
//!   lost to transport restarts deducted); every node's recorded state and cut clock are
//!   the ones it really had; no message delivered before a receiver's cut was sent after
//!   its sender's cut (ground-truth consistency); and every channel state equals, message
//!   for message, the set sent before the sender's cut, not delivered before the
//!   receiver's cut, and delivered at all;
//! * at the end of a run ([`check_end`]): every initiated snapshot has exactly one outcome
//!   at its initiator, none is both completed and aborted anywhere, abort reasons name
//!   missing members; every message was delivered exactly once unless a transport
//!   restart of its sender or receiver excuses its loss; money is conserved (up to what
//!   real crashes destroyed and their next lives opened with); engines and
//!   transports hold no leftover state (memory bound).

use std::collections::BTreeMap;

use shutter_snapshot::bank::{BankInvariant, decode_transfer};
use shutter_snapshot::verify;
use shutter_snapshot::{AbortWhy, GlobalSnapshot, LocalReport};
use shutter_transport::Time;
use shutter_vclock::NodeId;

use super::oracle::{MsgKey, Oracle};

/// Every entry of `left` with `right`'s entry under the same key, in one ordered pass
/// over both maps: [`check_snapshot`] pairs every message's send with its deliveries
/// once per snapshot, and a search per message was most of its time at 256 nodes.
fn join<'a, K: Ord, A, B>(
    left: &'a BTreeMap<K, A>,
    right: &'a BTreeMap<K, B>,
) -> impl Iterator<Item = (&'a K, &'a A, Option<&'a B>)> {
    let mut r = right.iter().peekable();
    left.iter().map(move |(k, a)| {
        while r.next_if(|&(rk, _)| rk < k).is_some() {}
        let b = r.peek().and_then(|&(rk, b)| (rk == k).then_some(b));
        (k, a, b)
    })
}

/// Violations of one completed snapshot (empty if it is exact).
pub fn check_snapshot(oracle: &Oracle, snap: &GlobalSnapshot, nodes: &[NodeId]) -> Vec<String> {
    let id = snap.id;
    let mut v = Vec::new();
    let snap_nodes: Vec<NodeId> = snap.nodes().collect();
    if snap_nodes != nodes {
        v.push(format!(
            "snapshot {id}: covers {snap_nodes:?}, not every node"
        ));
        return v;
    }
    let mut marks = BTreeMap::new();
    // The bank's total at this cut: the opening money, changed by every real crash a
    // node went through before its cut (its money died, its next life opened afresh).
    let mut total = nodes.len() as i128 * i128::from(super::node::INITIAL_BALANCE);
    for &n in nodes {
        if !oracle.cuts.contains_key(&(id, n)) {
            v.push(format!("snapshot {id}: {n} never took a local cut"));
            return v;
        }
        // The cut of the life whose report the snapshot holds.
        let Some(cut) = snap
            .cuts
            .get(&n)
            .and_then(|clock| oracle.cut_with_clock(id, n, clock))
        else {
            v.push(format!(
                "snapshot {id}: cut clock of {n} is none of its LocalCuts"
            ));
            return v;
        };
        if snap.states.get(&n) != Some(&cut.mark.state) {
            v.push(format!(
                "snapshot {id}: state of {n} is not what it had at its cut"
            ));
        }
        marks.insert(n, &cut.mark);
        total += oracle.crash_money(n, cut.life);
    }
    // Ground-truth consistency: nothing received before a cut was sent after one.
    for (key, recs, sent) in join(&oracle.deliveries, &oracle.sends) {
        let Some(sent) = sent else {
            continue;
        };
        for r in recs {
            let (Some(mj), Some(mi)) = (marks.get(&r.at_node), marks.get(&key.from)) else {
                continue;
            };
            if r.ord <= mj.delivered && sent.ord > mi.sent {
                v.push(format!(
                    "snapshot {id}: inconsistent cut: {} received {key:?} before its cut, \
                     but {} sent it after its cut",
                    r.at_node, key.from
                ));
            }
        }
    }
    // Channel exactness, and the money that left the system before the cut: pre-cut
    // transfers that were never delivered (lost to a restart, excused in `check_end`).
    // A transfer refunded before its sender's cut is back in the sender's state: not
    // lost if it never arrived, and money made twice if it did (at a life that died).
    let mut lost_before_cut = 0;
    let mut refunded_twice = 0;
    let mut expected: BTreeMap<(NodeId, NodeId), Vec<MsgKey>> = BTreeMap::new();
    for (key, sent, recs) in join(&oracle.sends, &oracle.deliveries) {
        let (Some(mi), Some(mj)) = (marks.get(&key.from), marks.get(&sent.to)) else {
            continue;
        };
        if sent.ord > mi.sent {
            continue;
        }
        let amount = decode_transfer(&sent.payload).unwrap_or(0);
        let refunded = oracle.returned_by(key, mi.returned);
        let Some(recs) = recs else {
            if !refunded {
                lost_before_cut += amount;
            }
            continue;
        };
        if refunded {
            refunded_twice += amount;
        }
        let before_cut = recs
            .iter()
            .any(|r| r.at_node == sent.to && r.ord <= mj.delivered);
        if !before_cut {
            expected.entry((key.from, sent.to)).or_default().push(*key);
        }
    }
    let total = u64::try_from(total - i128::from(lost_before_cut) + i128::from(refunded_twice))
        .unwrap_or(0);
    if let Err(e) = verify::check_all(snap, &[&BankInvariant { total }]) {
        v.push(format!("snapshot {id}: verify: {e}"));
    }
    for &i in nodes {
        for &j in nodes {
            if i == j {
                continue;
            }
            let mut want = expected.remove(&(i, j)).unwrap_or_default();
            want.sort_unstable();
            let recorded = snap.channels.get(&(i, j)).map(Vec::as_slice).unwrap_or(&[]);
            let mut got = Vec::new();
            for m in recorded {
                let key = MsgKey {
                    from: i,
                    seq: m.ts.get(i),
                };
                if oracle
                    .sends
                    .get(&key)
                    .is_none_or(|s| s.payload != m.payload)
                {
                    v.push(format!(
                        "snapshot {id}: channel {i}->{j} holds {key:?}, which {i} never sent \
                         with these bytes"
                    ));
                }
                got.push(key);
            }
            got.sort_unstable();
            if got != want {
                let missing: Vec<_> = want.iter().filter(|k| !got.contains(k)).collect();
                let extra: Vec<_> = got.iter().filter(|k| !want.contains(k)).collect();
                v.push(format!(
                    "snapshot {id}: channel {i}->{j} recorded {} messages, oracle says {} in \
                     flight; missing {missing:?}, extra {extra:?}",
                    got.len(),
                    want.len()
                ));
            }
        }
    }
    v
}

/// What the end-of-run check needs to know about each node.
#[derive(Clone, Debug)]
pub struct NodeEnd {
    /// The node.
    pub id: NodeId,
    /// Sends counted by the process itself.
    pub app_sent: u64,
    /// Deliveries counted by the process itself.
    pub app_delivered: u64,
    /// Final balance.
    pub balance: u64,
    /// Engine holds no snapshot state.
    pub engine_idle: bool,
    /// Transport has nothing unacknowledged and no backlog.
    pub transport_quiet: bool,
}

/// Violations visible only once the run has quiesced.
pub fn check_end(oracle: &Oracle, nodes: &[NodeEnd]) -> Vec<String> {
    let mut v = Vec::new();
    let members: Vec<NodeId> = nodes.iter().map(|n| n.id).collect();
    for (&id, &at) in &oracle.initiated {
        let done = oracle.completed.contains_key(&id);
        let aborted_by_initiator = oracle
            .aborted
            .get(&id)
            .is_some_and(|a| a.iter().any(|(n, _)| *n == id.initiator));
        // An initiator that really crashed takes the snapshots it was collecting with it:
        // no verdict at all is then the right outcome (the participants time out).
        let died_collecting =
            !done && !aborted_by_initiator && oracle.really_crashed_since(id.initiator, at);
        if done == aborted_by_initiator && !died_collecting {
            v.push(format!(
                "snapshot {id}: completed={done}, aborted at initiator={aborted_by_initiator}: \
                 must be exactly one"
            ));
        }
        // A node that aborted in another life than the one whose cut the snapshot holds
        // spoke for a part that is not in it (a new process that joined again).
        let aborted_here = oracle.aborted.get(&id).is_some_and(|a| {
            a.iter()
                .any(|(n, _)| oracle.abort_lives.get(&(id, *n)) == oracle.used_lives.get(&(id, *n)))
        });
        if done && aborted_here {
            v.push(format!("snapshot {id}: completed but aborted elsewhere"));
        }
    }
    for (id, aborts) in &oracle.aborted {
        for (n, reason) in aborts {
            let names = matches!(reason.why, AbortWhy::Timeout | AbortWhy::Unreachable(_));
            if names && reason.missing.is_empty() {
                v.push(format!(
                    "snapshot {id}: {n} aborted ({reason}) naming nobody"
                ));
            }
            if let Some(m) = reason.missing.iter().find(|m| !members.contains(m)) {
                v.push(format!("snapshot {id}: abort reason names non-member {m}"));
            }
        }
    }
    let mut lost_money = 0;
    let mut refunded_twice: i128 = 0;
    for (key, sent) in &oracle.sends {
        let n = oracle.deliveries.get(key).map_or(0, Vec::len);
        let refunded = oracle.returned.contains_key(key);
        let amount = decode_transfer(&sent.payload).unwrap_or(0);
        if n == 1 {
            if refunded {
                // Delivered to a life that then died, and refunded: that life's money
                // is already counted as destroyed by its crash.
                refunded_twice += i128::from(amount);
            }
            continue;
        }
        let excused = n == 0 && oracle.loss_excused(key);
        if excused {
            if !refunded {
                lost_money += amount;
            }
        } else {
            v.push(format!(
                "{key:?} ({} -> {}, sent at {}) delivered {n} times",
                key.from, sent.to, sent.at
            ));
        }
    }
    // Whatever the stack gave up on went back to its sender's process (the sender did
    // not crash meanwhile: then its stack went with it).
    for key in &oracle.abandoned {
        let sent_at = oracle.sends.get(key).map_or(Time::ZERO, |s| s.at);
        if !oracle.returned.contains_key(key) && !oracle.really_crashed_since(key.from, sent_at) {
            v.push(format!(
                "{key:?} was given up on but never handed back to its sender"
            ));
        }
    }
    let balances: u64 = nodes.iter().map(|n| n.balance).sum();
    let opening = nodes.len() as i128 * i128::from(super::node::INITIAL_BALANCE);
    let crashes: i128 = members
        .iter()
        .map(|&n| oracle.crash_money(n, u32::MAX))
        .sum();
    if i128::from(balances) + i128::from(lost_money) != opening + crashes + refunded_twice {
        v.push(format!(
            "money not conserved: balances {balances} + lost to restarts {lost_money} != \
             opening {opening} + created/destroyed by crashes {crashes} + refunds of \
             delivered transfers {refunded_twice}"
        ));
    }
    for n in nodes {
        if n.app_sent != oracle.sends_of(n.id) || n.app_delivered != oracle.deliveries_of(n.id) {
            v.push(format!(
                "{}: process counted {}/{} sends/deliveries, simulator {}/{}",
                n.id,
                n.app_sent,
                n.app_delivered,
                oracle.sends_of(n.id),
                oracle.deliveries_of(n.id)
            ));
        }
        if !n.engine_idle {
            v.push(format!(
                "{}: engine still holds snapshot state at the end",
                n.id
            ));
        }
        if !n.transport_quiet {
            v.push(format!(
                "{}: transport still holds unacknowledged messages",
                n.id
            ));
        }
    }
    v.extend(oracle.violations.iter().cloned());
    v
}

/// Every committed part (what a node's checkpoint store keeps) belongs to a completed
/// snapshot and is exactly that node's part of it: state, cut clock and the recorded
/// messages of every incoming channel.
pub fn check_committed(
    completed: &[GlobalSnapshot],
    committed: &[(NodeId, LocalReport)],
) -> Vec<String> {
    let mut v = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    // Per completed snapshot, its channels grouped by receiver, built once: comparing
    // each committed part against every channel was cubic in the cluster size.
    let mut by_receiver: std::collections::HashMap<_, BTreeMap<NodeId, Vec<(NodeId, &[_])>>> =
        std::collections::HashMap::new();
    for (node, part) in committed {
        let id = part.id;
        if !seen.insert((id, *node, part.life)) {
            v.push(format!("snapshot {id}: {node} committed twice in one life"));
        }
        let Some(snap) = completed.iter().find(|s| s.id == id) else {
            v.push(format!(
                "snapshot {id}: {node} committed a snapshot that never completed"
            ));
            continue;
        };
        if snap.states.get(node) != Some(&part.state) || snap.cuts.get(node) != Some(&part.cut) {
            v.push(format!(
                "snapshot {id}: {node} committed a state or cut that is not its part"
            ));
        }
        let incoming = by_receiver.entry(id).or_insert_with(|| {
            let mut m: BTreeMap<NodeId, Vec<(NodeId, &[_])>> = BTreeMap::new();
            for (&(from, to), msgs) in &snap.channels {
                m.entry(to).or_default().push((from, msgs.as_slice()));
            }
            m
        });
        for &(from, msgs) in incoming.get(node).map_or(&[][..], Vec::as_slice) {
            let to = *node;
            let mine = part
                .channels
                .iter()
                .find(|(f, _)| *f == from)
                .map_or(&[][..], |(_, m)| m.as_slice());
            if mine != msgs {
                v.push(format!(
                    "snapshot {id}: {node} committed channel {from}->{to} with {} messages, the snapshot holds {}",
                    mine.len(),
                    msgs.len()
                ));
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_pairs_each_left_entry_with_the_right_one_of_its_key() {
        let left: BTreeMap<u32, char> = [(1, 'a'), (3, 'c'), (4, 'd'), (9, 'i')].into();
        let right: BTreeMap<u32, u8> = [(0, 0), (3, 3), (5, 5), (9, 9), (10, 10)].into();
        let got: Vec<_> = join(&left, &right)
            .map(|(k, a, b)| (*k, *a, b.copied()))
            .collect();
        let want: Vec<_> = left
            .iter()
            .map(|(k, a)| (*k, *a, right.get(k).copied()))
            .collect();
        assert_eq!(got, want);
    }
}
