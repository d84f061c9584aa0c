//! Initiator-side bookkeeping for one snapshot: the count matrix rows, the reports, and
//! the assembly and check of the [`GlobalSnapshot`].

use std::collections::BTreeMap;

use shutter_transport::Time;
use shutter_vclock::NodeId;

use crate::global::{AbortReason, AbortWhy, ChannelCount, GlobalSnapshot, Timings};
use crate::verify;
use crate::wire::{ExpectedCount, LocalReport, SnapshotId};

/// What the initiator gathers.
#[derive(Debug)]
pub(crate) struct Collector {
    pub(crate) started: Time,
    pub(crate) deadline: Time,
    /// Send-count row of every node that has joined, with that node's engine life.
    pub(crate) rows: BTreeMap<NodeId, (u64, Vec<(NodeId, u64)>)>,
    /// True once the columns went out (all rows were in).
    pub(crate) expected_sent: bool,
    /// Each node's report as it stood at its cut, sent with its row.
    pub(crate) early: BTreeMap<NodeId, LocalReport>,
    pub(crate) reports: BTreeMap<NodeId, LocalReport>,
    pub(crate) control_messages: u64,
    /// Whether rows are collected before reports (Mattern) or not (Chandy-Lamport).
    uses_rows: bool,
}

impl Collector {
    pub(crate) fn new(started: Time, deadline: Time, uses_rows: bool) -> Self {
        Self {
            started,
            deadline,
            rows: BTreeMap::new(),
            expected_sent: false,
            early: BTreeMap::new(),
            reports: BTreeMap::new(),
            control_messages: 0,
            uses_rows,
        }
    }

    /// Column `to` of the count matrix: `(sender, its life, pre-cut messages it sent to
    /// `to`)` for every other node.
    pub(crate) fn column(&self, nodes: &[NodeId], to: NodeId) -> Vec<ExpectedCount> {
        nodes
            .iter()
            .filter(|&&from| from != to)
            .map(|&from| {
                let (life, row) = self
                    .rows
                    .get(&from)
                    .map_or((0, &[][..]), |(life, row)| (*life, row.as_slice()));
                let n = row.iter().find(|(d, _)| *d == to).map_or(0, |(_, n)| *n);
                (from, life, n)
            })
            .collect()
    }

    /// True if `to`'s early report is in and each of its incoming channels was closed
    /// at its cut: for every sender `i`, the pre-cut messages in `i`'s row (of `i`'s
    /// life at its cut) were all delivered at `to` before `to`'s cut. No pre-cut message
    /// can then arrive after the cut, the channel states are empty, and the report at
    /// the cut is the final one. (Before its cut a node delivers only pre-cut messages,
    /// since a post-cut one makes it join first; so `delivered == sent` means numbers
    /// `1..=sent` all arrived.) A message a restarted sender's next life sends later is
    /// post-cut in truth (its cut was taken by the previous life) and rightly not
    /// recorded.
    fn closed_at_cut(&self, to: NodeId) -> bool {
        let Some(counts) = self.early.get(&to).and_then(|r| r.counts.as_ref()) else {
            return false;
        };
        self.rows
            .iter()
            .filter(|(from, _)| **from != to)
            .all(|(&from, (life, row))| {
                row.iter().filter(|(d, _)| *d == to).all(|&(_, sent)| {
                    sent == 0
                        || counts
                            .delivered
                            .iter()
                            .any(|&(f, l, d)| f == from && l == *life && d == sent)
                })
            })
    }

    /// Files the early report of every node closed at its cut as its final report and
    /// returns the nodes that are not (they need their column).
    pub(crate) fn settle_closed(&mut self, nodes: &[NodeId]) -> Vec<NodeId> {
        let (closed, open): (Vec<NodeId>, Vec<NodeId>) =
            nodes.iter().partition(|&&n| self.closed_at_cut(n));
        for n in closed {
            if let Some(r) = self.early.remove(&n) {
                self.reports.entry(n).or_insert(r);
            }
        }
        self.early.clear();
        open
    }

    /// Nodes whose part is missing: those that never joined, or, if all joined, those
    /// that never reported.
    pub(crate) fn missing(&self, nodes: &[NodeId]) -> Vec<NodeId> {
        if !self.uses_rows {
            return nodes
                .iter()
                .copied()
                .filter(|n| !self.reports.contains_key(n))
                .collect();
        }
        let not_joined: Vec<NodeId> = nodes
            .iter()
            .copied()
            .filter(|n| !self.rows.contains_key(n))
            .collect();
        if !not_joined.is_empty() {
            return not_joined;
        }
        nodes
            .iter()
            .copied()
            .filter(|n| !self.reports.contains_key(n))
            .collect()
    }

    /// Builds the global snapshot and checks it; call only when every node reported.
    /// An error is the reason to abort instead of reporting it complete:
    ///
    /// * [`AbortWhy::Restarted`]: a node's part comes from a life that started after the
    ///   snapshot did (its dead predecessor may have joined and received post-cut
    ///   messages: a second cut of the same node), its report comes from another life
    ///   than its row of counts, or some node had received from a life of a sender newer
    ///   than the one that took the sender's cut (a process that crashed during the
    ///   snapshot and came back knowing nothing of it: its messages look pre-cut).
    ///   Expected around crashes.
    /// * [`AbortWhy::FailedCheck`]: [`verify::check_structure`] failed. Never expected.
    ///
    /// Channel sizes are not checked against the rows: a channel may rightly hold a
    /// pre-cut message of a sender's *previous* life (in flight when it crashed,
    /// delivered after the receiver's cut), which its current life's row does not count.
    pub(crate) fn finish(
        self,
        id: SnapshotId,
        nodes: &[NodeId],
        now: Time,
    ) -> Result<GlobalSnapshot, AbortReason> {
        // Chandy-Lamport collects no rows and has no lives.
        if self.uses_rows {
            self.check_lives()?;
        }
        let snap = self.assemble(id, nodes, now);
        verify::check_structure(&snap).map_err(|e| {
            tracing::error!(%id, error = %e, "assembled snapshot failed its check; aborting");
            AbortReason {
                missing: e.nodes(),
                why: AbortWhy::FailedCheck,
            }
        })?;
        Ok(snap)
    }

    /// Every part of the snapshot belongs to the life that took the node's cut.
    fn check_lives(&self) -> Result<(), AbortReason> {
        let restarted = |n: NodeId| AbortReason {
            missing: vec![n],
            why: AbortWhy::Restarted(n),
        };
        // Lives are numbered by the wall-clock microsecond they started at.
        if let Some((&node, _)) = self
            .rows
            .iter()
            .find(|(_, (life, _))| *life > self.started.as_micros())
        {
            return Err(restarted(node));
        }
        for (&node, report) in &self.reports {
            let Some(&(life, _)) = self.rows.get(&node) else {
                continue;
            };
            if report.life != life {
                return Err(restarted(node));
            }
            for &(sender, seen) in &report.seen {
                if self.rows.get(&sender).is_some_and(|(l, _)| seen > *l) {
                    return Err(restarted(sender));
                }
            }
        }
        Ok(())
    }

    /// Every channel's counts from both ends' reports (empty unless every report
    /// carries counts). The receiver's delivered count belongs to the sender life that
    /// took the sender's cut: an older life's deliveries are not on this channel, a newer
    /// one's make the count unknown.
    fn channel_counts(&self) -> BTreeMap<(NodeId, NodeId), ChannelCount> {
        let mut counts = BTreeMap::<(NodeId, NodeId), ChannelCount>::new();
        if self.reports.values().any(|r| r.counts.is_none()) {
            return counts;
        }
        let life = |n: NodeId| self.reports.get(&n).map(|r| r.life);
        for (&node, report) in &self.reports {
            let Some(c) = &report.counts else { continue };
            for &(to, sent) in &c.sent {
                if sent > 0 && self.reports.contains_key(&to) {
                    let e = counts.entry((node, to)).or_default();
                    e.sent = sent;
                    e.delivered.get_or_insert(0);
                }
            }
            for &(from, from_life, delivered) in &c.delivered {
                let Some(cut_life) = life(from) else { continue };
                let e = counts.entry((from, node)).or_default();
                e.delivered = match from_life.cmp(&cut_life) {
                    std::cmp::Ordering::Less => Some(e.delivered.unwrap_or(0)),
                    std::cmp::Ordering::Equal => Some(delivered),
                    std::cmp::Ordering::Greater => None,
                };
            }
            for &(from, from_life, upto) in &c.lost {
                if life(from) == Some(from_life) && upto > 0 {
                    let e = counts.entry((from, node)).or_default();
                    e.lossy = true;
                    // A receiver lists no delivered count for a sender it had delivered
                    // nothing from at its cut: that is 0, not unknown (messages sent
                    // after the cut and declared lost made such a channel known only
                    // here, and a consistent snapshot was refused: swarm seed 421).
                    if !c.delivered.iter().any(|(f, _, _)| *f == from) {
                        e.delivered.get_or_insert(0);
                    }
                }
            }
        }
        counts
    }

    fn assemble(self, id: SnapshotId, nodes: &[NodeId], now: Time) -> GlobalSnapshot {
        let mut snap = GlobalSnapshot {
            id,
            states: BTreeMap::new(),
            cuts: BTreeMap::new(),
            channels: BTreeMap::new(),
            timings: Timings {
                started: self.started,
                local_cuts: BTreeMap::new(),
                completed: now,
            },
            control_messages: self.control_messages,
            counts: self.channel_counts(),
        };
        for &from in nodes {
            for &to in nodes {
                if from != to {
                    snap.channels.insert((from, to), Vec::new());
                }
            }
        }
        for (node, report) in self.reports {
            snap.states.insert(node, report.state);
            snap.cuts.insert(node, report.cut);
            snap.timings.local_cuts.insert(node, report.cut_at);
            for (from, msgs) in report.channels {
                snap.channels.entry((from, node)).or_default().extend(msgs);
            }
        }
        snap
    }
}

#[cfg(test)]
mod tests {
    use shutter_transport::Time;
    use shutter_vclock::{NodeId, VClock};

    use super::Collector;
    use crate::global::ChannelCount;
    use crate::wire::{CutCounts, LocalReport, SnapshotId};

    fn report(node: u32, counts: CutCounts) -> (NodeId, LocalReport) {
        let id = SnapshotId {
            initiator: NodeId(0),
            s: 1,
        };
        let report = LocalReport {
            id,
            state: Vec::new(),
            cut: VClock::new(),
            cut_at: Time(0),
            channels: Vec::new(),
            life: 7,
            seen: Vec::new(),
            counts: Some(counts),
        };
        (NodeId(node), report)
    }

    /// A receiver is closed at its cut only by deliveries of the life that took the
    /// sender's row, all of them; then its early report is filed as final.
    #[test]
    fn closed_at_the_cut_means_every_pre_cut_number_of_the_rows_life_delivered() {
        let early = |delivered: Vec<(NodeId, u64, u64)>| {
            report(
                0,
                CutCounts {
                    sent: vec![],
                    delivered,
                    lost: vec![],
                },
            )
            .1
        };
        for (delivered, closed) in [
            (vec![(NodeId(1), 7, 2)], true),
            (vec![(NodeId(1), 7, 1)], false),
            (vec![(NodeId(1), 6, 2)], false),
            (vec![], false),
        ] {
            let mut col = Collector::new(Time(0), Time(1_000_000), true);
            col.rows.insert(NodeId(0), (7, vec![]));
            col.rows.insert(NodeId(1), (7, vec![(NodeId(0), 2)]));
            col.early.insert(NodeId(0), early(delivered.clone()));
            assert_eq!(col.closed_at_cut(NodeId(0)), closed, "{delivered:?}");
            // n1 received nothing pre-cut, but its early report is missing: open.
            assert!(!col.closed_at_cut(NodeId(1)));
            let open = col.settle_closed(&[NodeId(0), NodeId(1)]);
            assert_eq!(open.contains(&NodeId(0)), !closed);
            assert_eq!(col.reports.contains_key(&NodeId(0)), closed);
            assert!(col.early.is_empty());
        }
    }

    /// n1 sent n0 nothing before its cut, then sent after it and declared those lost; n0
    /// had delivered nothing from n1 at its cut. The channel is known only from n0's
    /// lost list, and its delivered count is 0, not unknown.
    #[test]
    fn a_channel_known_only_from_declared_losses_delivered_nothing() {
        let mut col = Collector::new(Time(0), Time(1_000_000), true);
        let (n0, r0) = report(
            0,
            CutCounts {
                sent: vec![],
                delivered: vec![],
                lost: vec![(NodeId(1), 7, 3)],
            },
        );
        let (n1, r1) = report(
            1,
            CutCounts {
                sent: vec![(NodeId(0), 0)],
                delivered: vec![],
                lost: vec![],
            },
        );
        col.reports.insert(n0, r0);
        col.reports.insert(n1, r1);
        let counts = col.channel_counts();
        assert_eq!(
            counts.get(&(NodeId(1), NodeId(0))),
            Some(&ChannelCount {
                sent: 0,
                delivered: Some(0),
                lossy: true,
            })
        );
    }
}
