//! One node's part in one snapshot: its local cut and the channel states it records
//! until every pre-cut sequence number of every incoming channel is resolved.

use std::collections::BTreeMap;

use shutter_transport::Time;
use shutter_vclock::{NodeId, VClock};

use super::inbound::Inbound;
use crate::wire::{CutCounts, LocalReport, RecordedMessage, SnapshotId};

/// Local state of a joined snapshot.
#[derive(Debug)]
pub(crate) struct Participant {
    pub(crate) id: SnapshotId,
    /// Clock at the cut (before the message or control that forced the join).
    pub(crate) cut: VClock,
    pub(crate) cut_at: Time,
    /// After this the snapshot is abandoned here.
    pub(crate) deadline: Time,
    /// Application state; taken out when the report is sent.
    pub(crate) state: Vec<u8>,
    /// Per sender `(its life, pre-cut messages it sent here)`, once the initiator says:
    /// the channel is closed when sequence numbers `1..=count` are all resolved.
    pub(crate) expected: Option<BTreeMap<NodeId, (u64, u64)>>,
    /// Pre-cut messages received after the cut, per sender.
    pub(crate) channels: BTreeMap<NodeId, Vec<RecordedMessage>>,
    pub(crate) channel_bytes: usize,
    /// The report went out; we only keep announcing until Done.
    pub(crate) reported: bool,
    /// Sent and delivered counts at the cut (the lost ones are added at the report).
    pub(crate) counts: CutCounts,
}

impl Participant {
    /// True while the initiator holds a report of ours it may complete the snapshot
    /// from (the final one, or the one at the cut until our column comes): the outcome
    /// is then the initiator's call, not ours.
    pub(crate) fn awaits_verdict(&self) -> bool {
        self.reported || self.expected.is_none()
    }

    /// True once every incoming channel is closed.
    pub(crate) fn channels_closed(&self, inbound: &BTreeMap<NodeId, Inbound>) -> bool {
        self.expected.is_some() && self.open_channels(inbound).is_empty()
    }

    /// Senders whose pre-cut messages are not all resolved (empty while counts unknown).
    pub(crate) fn open_channels(&self, inbound: &BTreeMap<NodeId, Inbound>) -> Vec<NodeId> {
        let Some(e) = &self.expected else {
            return Vec::new();
        };
        e.iter()
            .filter(|(from, (life, n))| {
                !inbound
                    .get(from)
                    .map_or(*n == 0, |ib| ib.resolved_through(*life, *n))
            })
            .map(|(from, _)| *from)
            .collect()
    }

    /// A pre-cut message from `from` arrived after the cut.
    pub(crate) fn record(&mut self, from: NodeId, ts: &VClock, payload: &[u8]) {
        self.channel_bytes += payload.len();
        self.channels
            .entry(from)
            .or_default()
            .push(RecordedMessage {
                ts: ts.clone(),
                payload: payload.to_vec(),
            });
    }

    /// The report as it stands at the cut, with the state copied (it stays here for
    /// the final report, should the initiator ask for one).
    pub(crate) fn early_report(
        &self,
        life: u64,
        inbound: &BTreeMap<NodeId, Inbound>,
    ) -> LocalReport {
        debug_assert!(self.channels.is_empty(), "taken at the cut");
        self.report(
            self.state.clone(),
            Vec::new(),
            self.counts.clone(),
            life,
            inbound,
        )
    }

    /// Moves state and channels out into a report of engine life `life`, with the
    /// sender lives `inbound` has seen; only the id and flags stay behind.
    pub(crate) fn take_report(
        &mut self,
        life: u64,
        inbound: &BTreeMap<NodeId, Inbound>,
    ) -> LocalReport {
        self.reported = true;
        self.channel_bytes = 0;
        let state = std::mem::take(&mut self.state);
        let channels = std::mem::take(&mut self.channels).into_iter().collect();
        let counts = std::mem::take(&mut self.counts);
        self.report(state, channels, counts, life, inbound)
    }

    fn report(
        &self,
        state: Vec<u8>,
        channels: Vec<(NodeId, Vec<RecordedMessage>)>,
        mut counts: CutCounts,
        life: u64,
        inbound: &BTreeMap<NodeId, Inbound>,
    ) -> LocalReport {
        counts.lost = inbound
            .iter()
            .filter(|(_, ib)| ib.lost_upto() > 0)
            .map(|(n, ib)| (*n, ib.life(), ib.lost_upto()))
            .collect();
        LocalReport {
            id: self.id,
            state,
            cut: self.cut.clone(),
            cut_at: self.cut_at,
            channels,
            life,
            seen: inbound.iter().map(|(n, ib)| (*n, ib.life())).collect(),
            counts: Some(counts),
        }
    }
}
