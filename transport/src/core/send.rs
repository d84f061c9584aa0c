//! Send-side state for one peer: outgoing messages, their fragments, the packets in
//! flight and loss detection (RFC 9002: packet threshold 3, time threshold 9/8 RTT, and
//! a probe timeout that sends probes and declares nothing lost).
//!
//! Bounds: at most `max_in_flight` unacknowledged messages (each at most `max_message`
//! bytes, so `max_in_flight * max_message` bytes of payload), ids spread over at most
//! `dedup_window`, at most `max_packets_in_flight` tracked packets plus [`PROBE_PACKETS`]
//! probes (see [`SendState::on_pto`]), and a retransmit queue
//! holding at most one entry per fragment of an unacknowledged message (the echo queues of
//! urgent messages likewise).

use std::collections::{BTreeMap, VecDeque};

use crate::time::Time;
use crate::wire::{AckFrame, DataFrame};

use super::config::Config;

/// Packets this much below the largest acknowledged one are lost (RFC 9002); raised
/// adaptively when reordering makes losses spurious.
pub(crate) const PACKET_THRESHOLD: u64 = 3;
/// Packets declared lost that are remembered, to recognise spurious losses.
pub(crate) const MAX_LOST_RECORDS: usize = 1024;
/// Probe packets one probe timeout sends (RFC 9002 6.2.4 allows two), and how many of the
/// oldest packets in flight they copy.
pub(crate) const PROBE_PACKETS: u8 = 2;

#[derive(Debug)]
struct OutMessage {
    bytes: Vec<u8>,
    count: u32,
    chunk: usize,
    acked: Vec<bool>,
    /// Fragments waiting in the retransmit queue: at most one entry per fragment, or a
    /// timeout with several copies in flight (urgent echoes, `expedite`) would queue a
    /// lost fragment once per copy.
    queued: Vec<bool>,
    acked_count: u32,
    /// Next fragment never transmitted.
    next_new: u32,
    /// Stamp of the first transmission, carried by every fragment.
    first_sent: Option<Time>,
    /// Urgent: every fragment is sent a second time, in a later packet, without waiting
    /// for a loss to be detected.
    urgent: bool,
}

#[derive(Debug)]
struct SentPacket {
    time_sent: Time,
    fragments: Vec<(u64, u32)>,
}

/// Why a fragment goes out: each kind comes from its own queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FragmentKind {
    /// Never sent before.
    First,
    /// Sent again after its packet was declared lost.
    Retransmit,
    /// A copy sent by a probe timeout (see [`SendState::on_pto`]).
    Probe,
    /// The proactive second copy of an urgent fragment.
    Echo,
}

/// A fragment chosen for the next packet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NextFragment {
    pub(crate) id: u64,
    pub(crate) index: u32,
    pub(crate) kind: FragmentKind,
}

/// What an ACK frame changed.
#[derive(Debug, Default)]
pub(crate) struct AckOutcome {
    /// Messages now wholly acknowledged, ascending.
    pub(crate) completed: Vec<u64>,
    /// Send time of the largest acknowledged packet, if newly acknowledged (RTT sample).
    pub(crate) rtt_sent_at: Option<Time>,
    /// Whether any packet was newly acknowledged.
    pub(crate) any_new: bool,
}

/// Packets a link must have had judged before its own loss record is trusted alone
/// (the span of its loss average).
const YOUNG: u64 = 32;

/// Loss on this node's other links, for a young link that has too few packets of its own
/// to say whether it loses. Warm 8-node snapshots at 10% loss ran their control messages
/// over links that had not lost anything *yet* (a few packets each after a 300 ms
/// warm-up), so they went without copies and a lost one waited for the retransmission
/// timeout, although every other link of the node was losing.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LossPrior {
    /// When a packet to any peer was last declared lost.
    pub(crate) last_loss: Option<Time>,
    /// That link's loss average at the time.
    pub(crate) rate: f64,
}

impl LossPrior {
    /// A link with loss average `rate` just declared a packet lost.
    pub(crate) fn note(&mut self, now: Time, rate: f64) {
        self.last_loss = Some(now);
        self.rate = rate;
    }
}

/// Outgoing state towards one peer.
#[derive(Debug, Default)]
pub(crate) struct SendState {
    /// Id of the next message `send` accepts.
    pub(crate) next_id: u64,
    /// Next packet number; never reused, not even across peer restarts.
    pub(crate) next_pn: u64,
    messages: BTreeMap<u64, OutMessage>,
    new_queue: VecDeque<u64>,
    retx: VecDeque<(u64, u32)>,
    /// Copies of urgent fragments waiting for later packets: stage `i` becomes ready
    /// when the `i + 1`-th packet after the original is started.
    echo_stages: VecDeque<Vec<(u64, u32)>>,
    /// Urgent fragments whose second copy may go in the packet being built.
    echo_ready: VecDeque<(u64, u32)>,
    /// Copies a probe timeout queued (see [`Self::on_pto`]).
    probe_ready: VecDeque<(u64, u32)>,
    /// Probe packets still to send; they may exceed `max_packets_in_flight` and each
    /// carries a PING, so the peer acknowledges it at once.
    pub(crate) probes_due: u8,
    /// When a packet to this peer was last declared lost, of those not proven spurious
    /// since (urgent messages are copied only on links that lose packets, see
    /// `Config::urgent_echo_window`).
    last_loss: Option<Time>,
    /// Moving average of the share of packets declared lost (1/32 per packet); a loss
    /// later proven spurious is taken out again (see `unobserve_loss`).
    loss_rate: f64,
    /// Packets observed by `loss_rate` so far (the age of an observation is the count
    /// since).
    observations: u64,
    sent: BTreeMap<u64, SentPacket>,
    /// Recently declared lost, with when and which observation of `loss_rate` counted
    /// it; an ACK for one of them reveals reordering (or a late ACK: a host that stalled
    /// past the retransmission timeout).
    lost: BTreeMap<u64, (Time, u64, SentPacket)>,
    largest_acked: Option<u64>,
    /// Reordering seen so far, in packets (raises the packet threshold) and as the
    /// longest RTT of a spuriously lost packet (raises the time threshold).
    pub(crate) reorder_packets: u64,
    pub(crate) reorder_time: std::time::Duration,
    /// Losses later proven spurious by a late ACK.
    pub(crate) spurious: u64,
    /// Consecutive probe timeouts (exponential backoff), reset by any new ACK.
    pub(crate) pto_count: u32,
    /// When the last ack-eliciting packet left.
    pub(crate) last_eliciting_sent: Option<Time>,
    /// Whether that packet carried a PING, which the peer acknowledges at once (see
    /// `Peer::rto`).
    pub(crate) last_eliciting_pinged: bool,
    /// Whether that packet was a PING alone (first contact, a keepalive): its
    /// acknowledgement says nothing about data on its way, so the data packet after it
    /// is timed as on a quiet link (see `Core::poll_transmit`).
    pub(crate) last_eliciting_bare: bool,
    /// Earliest time-threshold loss deadline.
    pub(crate) loss_time: Option<Time>,
    /// `send` refused with `WindowFull`; report `Writable` when space frees.
    pub(crate) blocked: bool,
}

impl SendState {
    /// Whether `send` must refuse: too many unacknowledged messages, or the id spread
    /// would exceed what the receiver's dedup window accepts.
    pub(crate) fn window_full(&self, cfg: &Config) -> bool {
        self.messages.len() >= cfg.max_in_flight
            || self
                .messages
                .first_key_value()
                .is_some_and(|(&lo, _)| self.next_id - lo >= cfg.dedup_window)
    }

    /// Unacknowledged messages.
    pub(crate) fn unacked(&self) -> usize {
        self.messages.len()
    }

    /// Ack-eliciting packets in flight.
    pub(crate) fn packets_in_flight(&self) -> usize {
        self.sent.len()
    }

    /// Queues a message, splitting it into balanced fragments of at most `max_fragment`.
    pub(crate) fn push(&mut self, bytes: Vec<u8>, max_fragment: usize, urgent: bool) -> u64 {
        let total = bytes.len();
        let count = total.div_ceil(max_fragment).max(1);
        let chunk = total.div_ceil(count);
        let id = self.next_id;
        self.next_id += 1;
        self.messages.insert(
            id,
            OutMessage {
                bytes,
                count: count as u32,
                chunk,
                acked: vec![false; count],
                queued: vec![false; count],
                acked_count: 0,
                next_new: 0,
                first_sent: None,
                urgent,
            },
        );
        self.new_queue.push_back(id);
        id
    }

    /// The next fragment to transmit: lost ones first, then probe copies, then second
    /// copies of urgent ones, then never-sent ones in id order.
    pub(crate) fn next_fragment(&mut self) -> Option<NextFragment> {
        let queues = [
            (&mut self.retx, FragmentKind::Retransmit),
            (&mut self.probe_ready, FragmentKind::Probe),
            (&mut self.echo_ready, FragmentKind::Echo),
        ];
        for (queue, kind) in queues {
            if let Some((id, index)) = first_unacked(queue, &self.messages) {
                return Some(NextFragment { id, index, kind });
            }
        }
        while let Some(&id) = self.new_queue.front() {
            if let Some(m) = self.messages.get(&id)
                && m.next_new < m.count
            {
                return Some(NextFragment {
                    id,
                    index: m.next_new,
                    kind: FragmentKind::First,
                });
            }
            self.new_queue.pop_front();
        }
        None
    }

    /// Whether anything waits for transmission (an echo waiting for the next packet
    /// counts: it is what makes the next packet happen).
    pub(crate) fn has_pending(&mut self) -> bool {
        self.next_fragment().is_some() || self.echo_stages.iter().any(|s| !s.is_empty())
    }

    /// A new packet is being started: echoes of fragments sent in earlier packets may go
    /// into it (never into the packet that carries the first copy, or one lost datagram
    /// would lose both).
    pub(crate) fn begin_packet(&mut self) {
        if let Some(stage) = self.echo_stages.pop_front() {
            self.echo_ready.extend(stage);
        }
    }

    /// The DATA frame for a fragment returned by [`Self::next_fragment`].
    pub(crate) fn frame(&self, f: NextFragment, now: Time) -> DataFrame<'_> {
        let m = &self.messages[&f.id];
        let start = (f.index as usize * m.chunk).min(m.bytes.len());
        let end = (start + m.chunk).min(m.bytes.len());
        DataFrame {
            message_id: f.id,
            index: f.index,
            count: m.count,
            total_len: m.bytes.len() as u32,
            sent_at: m.first_sent.unwrap_or(now).as_micros(),
            payload: &m.bytes[start..end],
        }
    }

    /// Marks a fragment from [`Self::next_fragment`] as put into a packet. An urgent
    /// first transmission gets a second copy if `echo_window` says the link is lossy
    /// (`None`: always; a young link goes by `prior`).
    pub(crate) fn commit(
        &mut self,
        f: NextFragment,
        now: Time,
        echo_window: Option<std::time::Duration>,
        prior: &LossPrior,
    ) {
        match f.kind {
            FragmentKind::Retransmit => {
                self.retx.pop_front();
                if let Some(m) = self.messages.get_mut(&f.id) {
                    m.queued[f.index as usize] = false;
                }
            }
            FragmentKind::Probe => {
                self.probe_ready.pop_front();
            }
            FragmentKind::Echo => {
                self.echo_ready.pop_front();
            }
            FragmentKind::First => {
                if let Some(m) = self.messages.get_mut(&f.id) {
                    m.next_new += 1;
                    if m.urgent && self.lossy(now, echo_window, prior) {
                        for stage in 0..copies_for(self.copy_rate(prior)) {
                            self.stage_copy(stage, (f.id, f.index));
                        }
                    }
                }
            }
        }
        if let Some(m) = self.messages.get_mut(&f.id) {
            m.first_sent.get_or_insert(now);
        }
    }

    /// Records an ack-eliciting packet (`ping`: it carried a PING).
    pub(crate) fn on_packet_sent(
        &mut self,
        pn: u64,
        now: Time,
        fragments: Vec<(u64, u32)>,
        ping: bool,
    ) {
        self.last_eliciting_bare = fragments.is_empty();
        self.sent.insert(
            pn,
            SentPacket {
                time_sent: now,
                fragments,
            },
        );
        self.last_eliciting_sent = Some(now);
        self.last_eliciting_pinged = ping;
    }

    /// Applies an ACK frame. Ranges above any packet number we sent are ignored.
    pub(crate) fn on_ack(&mut self, ack: &AckFrame, now: Time) -> AckOutcome {
        let mut out = AckOutcome::default();
        // Numbers we never sent (only a forged or miscomputed ACK has them) are clipped
        // off rather than poisoning the whole frame.
        let Some(max_pn) = self.next_pn.checked_sub(1) else {
            return out;
        };
        let ranges: Vec<(u64, u64)> = ack
            .ranges
            .iter()
            .filter(|r| r.0 <= max_pn)
            .map(|&(lo, hi)| (lo, hi.min(max_pn)))
            .collect();
        let Some(largest) = ranges.first().map(|r| r.1) else {
            return out;
        };
        if ack.largest() == Some(largest) {
            out.rtt_sent_at = self.sent.get(&largest).map(|p| p.time_sent);
        }
        // Newest declaration among the losses this ACK proves spurious.
        let mut withdrawn: Option<Time> = None;
        for &(lo, hi) in &ranges {
            let late: Vec<u64> = self.lost.range(lo..=hi).map(|(&pn, _)| pn).collect();
            let pns: Vec<u64> = self.sent.range(lo..=hi).map(|(&pn, _)| pn).collect();
            let mut packets = Vec::new();
            for pn in late {
                let (declared, observation, p) = self.lost.remove(&pn).expect("present");
                withdrawn = withdrawn.max(Some(declared));
                self.unobserve_loss(observation);
                self.spurious += 1;
                self.reorder_packets = self.reorder_packets.max(largest.saturating_sub(pn) + 1);
                self.reorder_time = self.reorder_time.max(now.saturating_since(p.time_sent));
                packets.push(p);
            }
            for pn in pns {
                packets.push(self.sent.remove(&pn).expect("present"));
                out.any_new = true;
                self.observe(false);
            }
            for p in packets {
                for (id, index) in p.fragments {
                    let Some(m) = self.messages.get_mut(&id) else {
                        continue;
                    };
                    if !std::mem::replace(&mut m.acked[index as usize], true) {
                        m.acked_count += 1;
                        if m.acked_count == m.count {
                            self.messages.remove(&id);
                            out.completed.push(id);
                        }
                    }
                }
            }
        }
        if withdrawn.is_some() && withdrawn >= self.last_loss {
            // Those losses were not, and one of them was the newest: the link is as
            // lossy as the losses still standing say (a stalled host's late ACKs do not
            // switch urgent copies on). Older withdrawals change nothing: no scan.
            self.last_loss = self.lost.values().map(|(at, _, _)| *at).max();
        }
        out.completed.sort_unstable();
        self.largest_acked = Some(self.largest_acked.map_or(largest, |l| l.max(largest)));
        if out.any_new {
            self.pto_count = 0;
        }
        out
    }

    /// Declares lost the packets below the largest acknowledged one that are
    /// [`PACKET_THRESHOLD`] packets or `loss_delay` behind, requeues their fragments and
    /// re-arms the time-threshold timer. Returns how many packets were lost.
    pub(crate) fn detect_lost(&mut self, now: Time, loss_delay: std::time::Duration) -> usize {
        self.loss_time = None;
        let Some(largest) = self.largest_acked else {
            return 0;
        };
        let mut lost = Vec::new();
        for (&pn, p) in self.sent.range(..largest) {
            let deadline = p.time_sent + loss_delay;
            if largest - pn >= self.packet_threshold() || deadline <= now {
                lost.push(pn);
            } else {
                self.loss_time = Some(self.loss_time.map_or(deadline, |t| t.min(deadline)));
            }
        }
        for pn in &lost {
            self.requeue(now, *pn);
        }
        if !lost.is_empty() {
            self.last_loss = Some(now);
        }
        lost.len()
    }

    /// Whether the link counts as lossy: a packet was declared lost within `window`
    /// (`None`: always), on this link or, while it is young, on another link (`prior`).
    pub(crate) fn lossy(
        &self,
        now: Time,
        window: Option<std::time::Duration>,
        prior: &LossPrior,
    ) -> bool {
        let recent = |t: Option<Time>, w| t.is_some_and(|t| now.saturating_since(t) <= w);
        window.is_none_or(|w| {
            recent(self.last_loss, w) || (self.is_young() && recent(prior.last_loss, w))
        })
    }

    /// Too few packets of its own to judge the link by (the loss average's span).
    fn is_young(&self) -> bool {
        self.observations < YOUNG
    }

    /// The loss rate urgent copies are scaled by: the link's own, or on a young link the
    /// higher of its own and the node's other links'.
    fn copy_rate(&self, prior: &LossPrior) -> f64 {
        if self.is_young() {
            self.loss_rate.max(prior.rate)
        } else {
            self.loss_rate
        }
    }

    /// The moving average of the share of packets declared lost.
    pub(crate) fn loss_rate(&self) -> f64 {
        self.loss_rate
    }

    /// When a packet was last declared lost, of the losses still standing.
    pub(crate) fn last_loss(&self) -> Option<Time> {
        self.last_loss
    }

    /// On a lossy link (see [`Self::lossy`]), queues one more copy of every
    /// unacknowledged fragment in flight, for the next packet (see `Core::expedite`).
    /// Returns how many.
    pub(crate) fn expedite(
        &mut self,
        now: Time,
        window: Option<std::time::Duration>,
        prior: &LossPrior,
    ) -> usize {
        if !self.lossy(now, window, prior) {
            return 0;
        }
        let frags = self.unacked_in(self.sent.len());
        let n = frags.len();
        for frag in frags {
            self.stage_copy(0, frag);
        }
        n
    }

    /// Whether fragment `index` of message `id` still waits for its acknowledgement.
    fn is_unacked(&self, id: u64, index: u32) -> bool {
        self.messages
            .get(&id)
            .is_some_and(|m| !m.acked[index as usize])
    }

    /// The unacknowledged fragments of the `packets` oldest packets in flight, sorted,
    /// each once.
    fn unacked_in(&self, packets: usize) -> Vec<(u64, u32)> {
        let mut frags: Vec<(u64, u32)> = self
            .sent
            .values()
            .take(packets)
            .flat_map(|p| p.fragments.iter().copied())
            .filter(|&(id, index)| self.is_unacked(id, index))
            .collect();
        frags.sort_unstable();
        frags.dedup();
        frags
    }

    /// Queues a copy of `frag` for the `stage + 1`-th packet from now.
    fn stage_copy(&mut self, stage: usize, frag: (u64, u32)) {
        while self.echo_stages.len() <= stage {
            self.echo_stages.push_back(Vec::new());
        }
        self.echo_stages[stage].push(frag);
    }

    /// One packet's fate for the loss-rate average.
    fn observe(&mut self, lost: bool) {
        let x = if lost { 1.0 } else { 0.0 };
        self.loss_rate += (x - self.loss_rate) / 32.0;
        self.observations += 1;
    }

    /// A loss counted as observation `observation` proved spurious: the average is linear
    /// in its inputs, so turning that 1 into a 0 subtracts exactly its weight now,
    /// 1/32 decayed by 31/32 per later observation. Without this a host that stalls past
    /// the retransmission timeout made the link look lossy, and urgent messages got
    /// more copies on a link that had lost nothing.
    fn unobserve_loss(&mut self, observation: u64) {
        let age = self.observations.saturating_sub(observation + 1);
        let weight = (31.0f64 / 32.0).powi(age.min(4096) as i32) / 32.0;
        self.loss_rate = (self.loss_rate - weight).max(0.0);
    }

    /// Current packet threshold: 3, or more after spurious losses.
    pub(crate) fn packet_threshold(&self) -> u64 {
        PACKET_THRESHOLD.max(self.reorder_packets)
    }

    /// Time threshold: `base`, or the longest RTT of a spuriously lost packet plus 1/8.
    pub(crate) fn loss_delay(&self, base: std::time::Duration) -> std::time::Duration {
        base.max(self.reorder_time * 9 / 8)
    }

    /// Probe timeout (RFC 9002 6.2): nothing heard for a whole RTO while packets are in
    /// flight. Nothing is declared lost here: the next [`PROBE_PACKETS`] packets carry a
    /// PING and copies of the unacknowledged fragments of the oldest packets in flight,
    /// and may exceed the packet window. If the tail was lost, the copies deliver it;
    /// the ACK the PING draws then lets the thresholds of [`Self::detect_lost`] judge
    /// the rest. A host that stalled past the timeout (late timers, a busy core) costs
    /// two small packets instead of resending everything in flight and marking a clean
    /// link lossy. Backs off.
    ///
    /// Packets in flight whose data all arrived by other copies (or that carried none: a
    /// keepalive or first-contact PING) need no probe: they are forgotten, as the
    /// retransmission timeout used to, and the keepalive or handshake sends the next PING.
    ///
    /// Probes may exceed the window, but only by [`PROBE_PACKETS`]: a timeout that finds
    /// earlier probes still beyond it (no ACK at all since) declares the oldest packets
    /// lost until the window holds, so a long partition cannot grow the packets tracked.
    /// Returns (copies queued, packets declared lost).
    pub(crate) fn on_pto(&mut self, now: Time, max_packets: usize) -> (usize, usize) {
        self.pto_count = (self.pto_count + 1).min(16);
        let mut lost = 0;
        while self.sent.len() > max_packets {
            let pn = *self.sent.keys().next().expect("non-empty");
            self.requeue(now, pn);
            self.last_loss = Some(now);
            lost += 1;
        }
        if !self.sent.values().any(|p| {
            p.fragments
                .iter()
                .any(|&(id, index)| self.is_unacked(id, index))
        }) {
            self.sent.clear();
            self.loss_time = None;
            return (0, lost);
        }
        let copies = self.unacked_in(usize::from(PROBE_PACKETS));
        let n = copies.len();
        self.probe_ready.extend(copies);
        self.probes_due = PROBE_PACKETS;
        (n, lost)
    }

    /// A probe packet was sent.
    pub(crate) fn on_probe_sent(&mut self) {
        self.probes_due = self.probes_due.saturating_sub(1);
        if self.probes_due == 0 {
            // Copies that did not fit stay unsent: the probes' ACK judges the rest.
            self.probe_ready.clear();
        }
    }

    fn requeue(&mut self, now: Time, pn: u64) {
        if let Some(p) = self.sent.remove(&pn) {
            for &(id, index) in &p.fragments {
                if let Some(m) = self.messages.get_mut(&id)
                    && !m.acked[index as usize]
                    && !m.queued[index as usize]
                {
                    m.queued[index as usize] = true;
                    self.retx.push_back((id, index));
                }
            }
            let observation = self.observations;
            self.observe(true);
            self.lost.insert(pn, (now, observation, p));
            while self.lost.len() > MAX_LOST_RECORDS {
                self.lost.pop_first();
            }
        }
    }

    /// Forgets every message and packet (the peer restarted); message ids restart at 0,
    /// packet numbers continue. Returns the ids of the unacknowledged messages.
    pub(crate) fn reset(&mut self) -> Vec<(u64, Vec<u8>)> {
        let abandoned = std::mem::take(&mut self.messages)
            .into_iter()
            .map(|(id, m)| (id, m.bytes))
            .collect();
        *self = SendState {
            next_pn: self.next_pn,
            blocked: self.blocked,
            reorder_packets: self.reorder_packets,
            reorder_time: self.reorder_time,
            spurious: self.spurious,
            last_loss: self.last_loss,
            loss_rate: self.loss_rate,
            observations: self.observations,
            ..SendState::default()
        };
        abandoned
    }
}

/// The front of a fragment queue, after dropping entries already acknowledged.
fn first_unacked(
    queue: &mut VecDeque<(u64, u32)>,
    messages: &BTreeMap<u64, OutMessage>,
) -> Option<(u64, u32)> {
    while let Some(&(id, index)) = queue.front() {
        if messages.get(&id).is_some_and(|m| !m.acked[index as usize]) {
            return Some((id, index));
        }
        queue.pop_front();
    }
    None
}

/// Extra copies of an urgent fragment on a link losing `loss_rate` of its packets: the
/// fewest (1 to 4) that make losing every copy a 0.1% event (a snapshot sends ~4 (N - 1)
/// urgent messages and waits for the slowest: at 1% one in four 8-node snapshots waited
/// for a retransmission timeout somewhere).
fn copies_for(loss_rate: f64) -> usize {
    let mut all_lost = loss_rate * loss_rate;
    let mut extra = 1;
    // (The epsilon keeps 10% loss, whose cube is 0.1% up to rounding, at two copies.)
    while all_lost > 0.001 + 1e-9 && extra < 4 {
        all_lost *= loss_rate;
        extra += 1;
    }
    extra
}

#[cfg(test)]
mod tests {
    use super::{FragmentKind, PROBE_PACKETS, SendState, copies_for};
    use crate::time::Time;

    /// Sends `n` one-fragment messages, one packet each; returns their ids.
    fn send_packets(s: &mut SendState, n: u64) -> Vec<u64> {
        (0..n)
            .map(|_| {
                let id = s.push(vec![7; 10], 100, false);
                let f = s.next_fragment().expect("a fragment");
                s.commit(f, Time(0), None, &Default::default());
                let pn = s.next_pn;
                s.next_pn += 1;
                s.on_packet_sent(pn, Time(0), vec![(f.id, f.index)], false);
                id
            })
            .collect()
    }

    /// A probe timeout copies the oldest packets' data and declares nothing lost; only
    /// one that finds earlier probes beyond the window declares the oldest lost.
    #[test]
    fn a_probe_timeout_copies_the_oldest_and_keeps_the_window() {
        let mut s = SendState::default();
        let ids = send_packets(&mut s, 4);
        assert_eq!(s.on_pto(Time(10), 4), (usize::from(PROBE_PACKETS), 0));
        assert_eq!(s.packets_in_flight(), 4, "nothing declared lost");
        assert_eq!(s.last_loss(), None, "the link is not lossy for it");
        let copies: Vec<_> = std::iter::from_fn(|| {
            let f = s.next_fragment()?;
            s.commit(f, Time(10), None, &Default::default());
            Some((f.kind, f.id))
        })
        .collect();
        assert_eq!(
            copies,
            vec![(FragmentKind::Probe, ids[0]), (FragmentKind::Probe, ids[1])],
            "the two oldest"
        );
        // Two probe packets go beyond the window (a PING each, copies in the first).
        for _ in 0..PROBE_PACKETS {
            let pn = s.next_pn;
            s.next_pn += 1;
            s.on_packet_sent(pn, Time(10), Vec::new(), true);
            s.on_probe_sent();
        }
        assert_eq!(s.probes_due, 0);
        assert_eq!(s.packets_in_flight(), 6);
        // Still no ACK: the next timeout brings the window back first.
        assert_eq!(s.on_pto(Time(30), 4), (2, 2));
        assert_eq!(s.packets_in_flight(), 4);
        assert_eq!(s.last_loss(), Some(Time(30)));
    }

    #[test]
    fn copies_grow_with_the_loss_rate() {
        assert_eq!(copies_for(0.0), 1);
        assert_eq!(copies_for(0.03), 1);
        assert_eq!(copies_for(0.05), 2);
        assert_eq!(copies_for(0.1), 2);
        assert_eq!(copies_for(0.15), 3);
        assert_eq!(copies_for(0.2), 4);
        assert_eq!(copies_for(0.5), 4);
        assert_eq!(copies_for(1.0), 4);
    }

    /// A loss withdrawn later leaves the average exactly where a delivery would have.
    #[test]
    fn a_withdrawn_loss_leaves_the_average_as_a_delivery_would() {
        let fates = [false, true, false, false, true, false, false];
        let (mut with, mut without) = (SendState::default(), SendState::default());
        let mut spurious_at = None;
        for (i, &lost) in fates.iter().enumerate() {
            // The second loss (index 4) will prove spurious.
            if i == 4 {
                spurious_at = Some(with.observations);
                with.observe(true);
                without.observe(false);
            } else {
                with.observe(lost);
                without.observe(lost);
            }
        }
        assert!(with.loss_rate > without.loss_rate);
        with.unobserve_loss(spurious_at.expect("set"));
        assert!((with.loss_rate - without.loss_rate).abs() < 1e-12);
    }
}
