//! What a picture shows, worked out from an event log and a snapshot before anything is
//! drawn: the nodes, the time window, each message in it (matched send to delivery),
//! the cut, crashes and the snapshot's start and end.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use shutter_snapshot::GlobalSnapshot;
use shutter_transport::Time;
use shutter_vclock::{NodeId, VClock};

use super::{PictureError, PictureOptions};
use crate::report::{LogEntry, LogKind};

/// One application message, as the log tells it.
#[derive(Clone, Debug)]
pub(super) struct Message {
    pub(super) from: NodeId,
    pub(super) to: NodeId,
    pub(super) ts: VClock,
    /// `None`: the log has its delivery but not its send (it began before the log).
    pub(super) sent: Option<Time>,
    /// `None`: never delivered (lost for good, or still on its way when the log ends).
    pub(super) delivered: Option<Time>,
    /// In one of the snapshot's channel states.
    pub(super) recorded: bool,
}

/// A node's time down: from its crash to its restart (`None`: not back in the log).
#[derive(Clone, Copy, Debug)]
pub(super) struct Down {
    pub(super) node: NodeId,
    pub(super) crashed: Time,
    pub(super) restarted: Option<Time>,
}

/// Everything a picture shows, in plain data.
#[derive(Debug)]
pub(super) struct Scene {
    /// Ordered by id.
    pub(super) nodes: Vec<NodeId>,
    /// Shown time, `start < end`.
    pub(super) start: Time,
    pub(super) end: Time,
    /// Every member's local cut, by node.
    pub(super) cuts: BTreeMap<NodeId, Time>,
    /// The initiator's start and its completion, where known.
    pub(super) started: Option<Time>,
    pub(super) completed: Option<Time>,
    /// The messages drawn: every channel-state one, then those nearest the cut, up to
    /// the cap; in send order.
    pub(super) messages: Vec<Message>,
    /// Messages in the window, drawn or not.
    pub(super) in_window: usize,
    /// Channel-state messages in the snapshot, and how many of them the log has.
    pub(super) recorded: usize,
    pub(super) recorded_found: usize,
    /// Down times that overlap the window.
    pub(super) downs: Vec<Down>,
}

impl Scene {
    pub(super) fn new(
        log: &[LogEntry],
        snap: &GlobalSnapshot,
        options: &PictureOptions,
    ) -> Result<Scene, PictureError> {
        if log.is_empty() {
            return Err(PictureError::NoLog);
        }
        let id = snap.id;
        // The snapshot's own stamps first (complete for any completed snapshot); the
        // log's `Cut` entries fill in a node the timings lack (a snapshot assembled
        // elsewhere).
        let mut cuts = snap.timings.local_cuts.clone();
        for e in log {
            if e.kind == LogKind::Cut(id) {
                cuts.entry(e.node).or_insert(e.at);
            }
        }
        if cuts.is_empty() {
            return Err(PictureError::NoCuts(id));
        }
        // Zero stamps are unset ones (a snapshot put together by hand).
        let known = |t: Time| Some(t).filter(|t| *t != Time::ZERO);
        let completed = log
            .iter()
            .find(|e| e.kind == LogKind::Completed(id))
            .map(|e| e.at)
            .or(known(snap.timings.completed));
        let started = known(snap.timings.started);
        let (start, end) = window(&cuts, started, completed, options)?;

        let recorded_ts = recorded_keys(snap);
        let mut all = messages(log, &recorded_ts, &cuts);
        let recorded_found = all.iter().filter(|m| m.recorded).count();
        all.retain(|m| overlaps(m, start, end));
        let in_window = all.len();
        let messages = cap(all, &cuts, options.max_arrows);

        let mut nodes: BTreeSet<NodeId> = cuts.keys().copied().collect();
        nodes.extend(snap.cuts.keys().copied());
        nodes.extend(messages.iter().flat_map(|m| [m.from, m.to]));
        let downs = downs(log)
            .into_iter()
            .filter(|d| d.crashed <= end && d.restarted.is_none_or(|r| r >= start))
            .collect::<Vec<_>>();
        nodes.extend(downs.iter().map(|d| d.node));

        Ok(Scene {
            nodes: nodes.into_iter().collect(),
            start,
            end,
            cuts,
            started,
            completed,
            messages,
            in_window,
            recorded: recorded_ts.len(),
            recorded_found,
            downs,
        })
    }
}

/// The shown time: the options' window, or from the start (or the earliest cut) to the
/// completion (or the latest cut), widened on both sides by the margin.
fn window(
    cuts: &BTreeMap<NodeId, Time>,
    started: Option<Time>,
    completed: Option<Time>,
    options: &PictureOptions,
) -> Result<(Time, Time), PictureError> {
    if let Some((start, end)) = options.window {
        if start >= end {
            return Err(PictureError::EmptyWindow { start, end });
        }
        return Ok((start, end));
    }
    let first = cuts.values().copied().chain(started).min().expect("cuts");
    let last = cuts.values().copied().chain(completed).max().expect("cuts");
    let span = last.as_micros() - first.as_micros();
    // A snapshot that took no time at all still gets a readable stretch either side.
    let pad = ((span as f64 * options.margin.max(0.0)).round() as u64).max(50);
    Ok((
        Time(first.as_micros().saturating_sub(pad)),
        Time(last.as_micros() + pad),
    ))
}

/// The recorded messages of the snapshot, keyed as the log keys a message: sender,
/// receiver, timestamp.
fn recorded_keys(snap: &GlobalSnapshot) -> BTreeSet<(NodeId, NodeId, Vec<u64>)> {
    snap.channels
        .iter()
        .flat_map(|(&(from, to), msgs)| {
            msgs.iter()
                .map(move |m| (from, to, m.ts.entries().to_vec()))
        })
        .collect()
}

/// Every message in the log, each send matched with its delivery. Timestamps are unique
/// per message, but a node that came back from a crash as a fresh process may stamp a
/// message as its earlier life stamped one that was lost with it: a delivery is of the
/// newest undelivered send with its stamp.
fn messages(
    log: &[LogEntry],
    recorded: &BTreeSet<(NodeId, NodeId, Vec<u64>)>,
    cuts: &BTreeMap<NodeId, Time>,
) -> Vec<Message> {
    let mut all: Vec<Message> = Vec::new();
    let mut waiting: BTreeMap<(NodeId, NodeId, Vec<u64>), VecDeque<usize>> = BTreeMap::new();
    for e in log {
        match &e.kind {
            LogKind::Sent { to, ts, .. } => {
                let key = (e.node, *to, ts.entries().to_vec());
                waiting.entry(key).or_default().push_back(all.len());
                all.push(Message {
                    from: e.node,
                    to: *to,
                    ts: ts.clone(),
                    sent: Some(e.at),
                    delivered: None,
                    recorded: false,
                });
            }
            LogKind::Delivered { from, ts } => {
                let key = (*from, e.node, ts.entries().to_vec());
                match waiting.get_mut(&key).and_then(VecDeque::pop_back) {
                    Some(i) => all[i].delivered = Some(e.at),
                    None => all.push(Message {
                        from: *from,
                        to: e.node,
                        ts: ts.clone(),
                        sent: None,
                        delivered: Some(e.at),
                        recorded: false,
                    }),
                }
            }
            _ => {}
        }
    }
    // A channel state holds the message that crossed the cut: sent before its
    // sender's cut, delivered after its receiver's. Only a reused stamp makes that
    // choice matter; then a delivered candidate is the better guess.
    let crossed = |m: &Message| {
        m.sent
            .is_none_or(|t| cuts.get(&m.from).is_none_or(|c| t <= *c))
            && m.delivered
                .is_none_or(|t| cuts.get(&m.to).is_none_or(|c| t >= *c))
    };
    let mut chosen: BTreeMap<&(NodeId, NodeId, Vec<u64>), usize> = BTreeMap::new();
    for (i, m) in all.iter().enumerate() {
        let key = (m.from, m.to, m.ts.entries().to_vec());
        let Some(key) = recorded.get(&key) else {
            continue;
        };
        if !crossed(m) {
            continue;
        }
        match chosen.get(key) {
            Some(&j) if all[j].delivered.is_some() || m.delivered.is_none() => {}
            _ => {
                chosen.insert(key, i);
            }
        }
    }
    for i in chosen.into_values() {
        all[i].recorded = true;
    }
    all.sort_by_key(|m| (m.sent.or(m.delivered), m.from, m.to));
    all
}

/// True if any of `m`'s life (send to delivery; a lost one: its send) is in the window.
fn overlaps(m: &Message, start: Time, end: Time) -> bool {
    let from = m.sent.unwrap_or(Time::ZERO);
    let to = m.delivered.or(m.sent).unwrap_or(Time::MAX);
    from <= end && to >= start
}

/// At most `max` messages: every channel-state one (they are the point of the
/// picture), then the others nearest the cut (by how far the nearer end of each is from
/// its node's cut), back in send order. Deterministic: ties go by send order.
fn cap(all: Vec<Message>, cuts: &BTreeMap<NodeId, Time>, max: usize) -> Vec<Message> {
    if all.len() <= max {
        return all;
    }
    let distance = |m: &Message| {
        let end = |node: NodeId, at: Option<Time>| match (cuts.get(&node), at) {
            (Some(c), Some(t)) => c.as_micros().abs_diff(t.as_micros()),
            _ => u64::MAX,
        };
        end(m.from, m.sent).min(end(m.to, m.delivered))
    };
    let mut order: Vec<(bool, u64, usize)> = all
        .iter()
        .enumerate()
        .map(|(i, m)| (!m.recorded, distance(m), i))
        .collect();
    order.sort_unstable();
    let recorded = all.iter().filter(|m| m.recorded).count();
    let mut keep: Vec<usize> = order
        .into_iter()
        .take(max.max(recorded))
        .map(|(_, _, i)| i)
        .collect();
    keep.sort_unstable();
    let mut all: Vec<Option<Message>> = all.into_iter().map(Some).collect();
    keep.into_iter().filter_map(|i| all[i].take()).collect()
}

/// Every node's down times in the log: each crash until the node's next restart.
fn downs(log: &[LogEntry]) -> Vec<Down> {
    let mut out: Vec<Down> = Vec::new();
    let mut open: BTreeMap<NodeId, usize> = BTreeMap::new();
    for e in log {
        match e.kind {
            LogKind::Crashed => {
                open.insert(e.node, out.len());
                out.push(Down {
                    node: e.node,
                    crashed: e.at,
                    restarted: None,
                });
            }
            LogKind::Restarted => {
                if let Some(i) = open.remove(&e.node) {
                    out[i].restarted = Some(e.at);
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use shutter_snapshot::global::Timings;
    use shutter_snapshot::{GlobalSnapshot, RecordedMessage, SnapshotId};

    use super::*;

    fn entry(at: u64, node: u32, kind: LogKind) -> LogEntry {
        LogEntry {
            at: Time(at),
            node: NodeId(node),
            kind,
        }
    }

    /// n0 sends two messages to n1 with the same stamp (its first life's was lost in a
    /// crash); the second crosses the cut and is recorded: the picture pairs the
    /// delivery with it and highlights it, not the lost one.
    #[test]
    fn a_reused_stamp_pairs_and_highlights_the_message_that_crossed() {
        let id = SnapshotId {
            initiator: NodeId(0),
            s: 2,
        };
        let ts = VClock::from_entries(vec![1]);
        let sent = |at| {
            entry(
                at,
                0,
                LogKind::Sent {
                    to: NodeId(1),
                    ts: ts.clone(),
                    bytes: 1,
                },
            )
        };
        let log = vec![
            sent(10),
            entry(20, 0, LogKind::Crashed),
            entry(30, 0, LogKind::Restarted),
            sent(40),
            entry(42, 0, LogKind::Cut(id)),
            entry(45, 1, LogKind::Cut(id)),
            entry(
                50,
                1,
                LogKind::Delivered {
                    from: NodeId(0),
                    ts: ts.clone(),
                },
            ),
            entry(60, 0, LogKind::Completed(id)),
        ];
        let nodes = [NodeId(0), NodeId(1)];
        let snap = GlobalSnapshot {
            id,
            states: nodes.iter().map(|n| (*n, Vec::new())).collect(),
            cuts: nodes.iter().map(|n| (*n, VClock::new())).collect(),
            channels: BTreeMap::from([
                (
                    (NodeId(0), NodeId(1)),
                    vec![RecordedMessage {
                        ts: ts.clone(),
                        payload: vec![7],
                    }],
                ),
                ((NodeId(1), NodeId(0)), Vec::new()),
            ]),
            timings: Timings {
                started: Time(42),
                local_cuts: BTreeMap::new(),
                completed: Time(60),
            },
            control_messages: 0,
            counts: BTreeMap::new(),
        };
        let options = PictureOptions {
            window: Some((Time(0), Time(100))),
            ..PictureOptions::default()
        };
        let scene = Scene::new(&log, &snap, &options).unwrap();
        // The timings have no cuts: the log's are used.
        assert_eq!(scene.cuts[&NodeId(0)], Time(42));
        assert_eq!(scene.cuts[&NodeId(1)], Time(45));
        assert_eq!(scene.messages.len(), 2);
        let (lost, crossed) = (&scene.messages[0], &scene.messages[1]);
        assert_eq!((lost.sent, lost.delivered), (Some(Time(10)), None));
        assert!(!lost.recorded);
        assert_eq!(
            (crossed.sent, crossed.delivered),
            (Some(Time(40)), Some(Time(50)))
        );
        assert!(crossed.recorded);
        assert_eq!((scene.recorded, scene.recorded_found), (1, 1));
        assert_eq!(scene.downs.len(), 1);
    }
}
