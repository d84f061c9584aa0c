//! (e) Header bytes per application message, by cluster size and traffic pattern.
//!
//! Real Mattern engines (no transport, no loss: the header does not depend on either)
//! exchange messages in one of three patterns; every message is stamped with
//! `SnapshotEngine::on_app_send` and encoded as the stack encodes it
//! (`Envelope::App { header, payload }.to_bytes()`, see `Stack::enqueue`), then handed
//! to the receiver's `handle_app_receive` so clocks merge as in a run. Header bytes =
//! envelope bytes minus payload bytes. Engines get lives and clock floors the way the
//! runtime gives them (`life` = wall-clock µs at start, floor from
//! `shutter_snapshot::life`), started `START_SPREAD_US` apart, because floors are what
//! makes entries large.
//!
//! Two projections sit beside the measured figure, labelled as such: the same header
//! with the clock in `vclock::compact` form (per-channel baseline acknowledged at once:
//! the best case), and that without the per-message `life` (item 4's "per-peer constants
//! not repeated"). The targets are judged on the measured (shipped) encoding.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use shutter_snapshot::engine::{EngineConfig, SnapshotEngine};
use shutter_snapshot::mattern::Engine;
use shutter_snapshot::wire::{Control, Envelope};
use shutter_transport::Time;
use shutter_vclock::NodeId;
use shutter_vclock::compact::{CompactConfig, Encoder};

use crate::report::{Goal, Section, Target, num, text};

/// Microseconds between the starts of consecutive nodes (a local cluster starts its
/// nodes one after the other; the spread sets how far apart their clock floors are).
pub const START_SPREAD_US: u64 = 200;
/// Application payload of every message.
pub const PAYLOAD: usize = 64;
/// Share of few-busy traffic that goes over the busy channels.
const BUSY_SHARE: f64 = 0.9;
/// Busy directed channels in the few-busy pattern: 0<->1 and 2<->3.
const BUSY: [(usize, usize); 4] = [(0, 1), (1, 0), (2, 3), (3, 2)];

/// Who talks to whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Pattern {
    /// Uniformly random sender and receiver.
    AllToAll,
    /// Node i sends to i+1 (mod N), senders in turn.
    Ring,
    /// 90% of messages on 4 busy channels (0<->1, 2<->3), 10% uniform.
    FewBusy,
}

impl Pattern {
    /// All three, in table order.
    pub const ALL: [Pattern; 3] = [Pattern::AllToAll, Pattern::Ring, Pattern::FewBusy];

    fn name(self) -> &'static str {
        match self {
            Pattern::AllToAll => "all-to-all",
            Pattern::Ring => "ring",
            Pattern::FewBusy => "few-busy",
        }
    }

    fn pick(self, k: usize, n: usize, rng: &mut ChaCha8Rng) -> (usize, usize) {
        let uniform = |rng: &mut ChaCha8Rng| {
            let s = rng.random_range(0..n);
            let r = (s + rng.random_range(1..n)) % n;
            (s, r)
        };
        match self {
            Pattern::AllToAll => uniform(rng),
            Pattern::Ring => (k % n, (k + 1) % n),
            Pattern::FewBusy if n >= 4 && rng.random_bool(BUSY_SHARE) => {
                BUSY[rng.random_range(0..BUSY.len())]
            }
            Pattern::FewBusy => uniform(rng),
        }
    }
}

/// Sizes of one run.
#[derive(Clone, Debug)]
pub struct Opts {
    /// Cluster sizes.
    pub sizes: Vec<usize>,
    /// Messages per node sent before measuring (clocks fill up).
    pub warmup_per_node: usize,
    /// Messages per node measured.
    pub measured_per_node: usize,
}

impl Opts {
    /// The sizes.
    pub fn full() -> Opts {
        Opts {
            sizes: vec![8, 32, 64],
            warmup_per_node: 20,
            measured_per_node: 50,
        }
    }

    /// Seconds-long size for tests.
    pub fn tiny() -> Opts {
        Opts {
            sizes: vec![4],
            warmup_per_node: 2,
            measured_per_node: 5,
        }
    }
}

/// Mean header bytes of one (size, pattern).
#[derive(Clone, Copy, Debug, Default)]
struct Bytes {
    measured: f64,
    clock: f64,
    compact: f64,
    compact_no_life: f64,
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn measure(n: usize, pattern: Pattern, opts: &Opts) -> Bytes {
    let ids: Vec<NodeId> = (0..n as u32).map(NodeId).collect();
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let mut engines: Vec<Engine> = ids
        .iter()
        .map(|&me| {
            let mut cfg = EngineConfig::new(me, ids.clone());
            cfg.life = start + u64::from(me.0) * START_SPREAD_US;
            cfg.clock_floor = shutter_snapshot::life::clock_floor(Time(cfg.life));
            Engine::new(cfg)
        })
        .collect();
    let mut encoders: BTreeMap<(usize, usize), (u64, Encoder)> = BTreeMap::new();
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let payload = vec![0x5a; PAYLOAD];
    let mut sum = Bytes::default();
    let mut counted = 0usize;
    let total = n * (opts.warmup_per_node + opts.measured_per_node);
    for k in 0..total {
        let (s, r) = pattern.pick(k, n, &mut rng);
        let now = Time(start + k as u64);
        let header = engines[s].on_app_send(now, ids[r]);
        let envelope: Envelope<Control> = Envelope::App {
            header,
            payload: payload.clone(),
        };
        let bytes = envelope.to_bytes();
        let Envelope::App { header, payload } = envelope else {
            continue;
        };
        let clock_len = postcard::to_allocvec(&header.ts).map_or(0, |v| v.len());
        let (seq, enc) = encoders
            .entry((s, r))
            .or_insert_with(|| (0, Encoder::new(CompactConfig::default())));
        let compact = enc.encode(*seq, ids[s], &header.ts);
        // The receiver gets everything at once here: acknowledge so the next message of
        // this channel diffs against this one (the compact encoding's best case).
        enc.on_ack(*seq);
        *seq += 1;
        let compact_len = postcard::to_allocvec(&compact).map_or(0, |v| v.len());
        if k >= n * opts.warmup_per_node {
            let measured = (bytes.len() - payload.len()) as f64;
            let compact = measured - clock_len as f64 + compact_len as f64;
            sum.measured += measured;
            sum.clock += clock_len as f64;
            sum.compact += compact;
            sum.compact_no_life += compact - varint_len(header.life) as f64;
            counted += 1;
        }
        let _delivery =
            engines[r].handle_app_receive(now, ids[s], &header, &payload, &mut Vec::new);
    }
    let c = counted.max(1) as f64;
    Bytes {
        measured: sum.measured / c,
        clock: sum.clock / c,
        compact: sum.compact / c,
        compact_no_life: sum.compact_no_life / c,
    }
}

/// Runs every (size, pattern) and judges the header targets at the largest size.
pub fn run(opts: &Opts) -> Section {
    let mut s = Section::new(
        "headers",
        format!(
            "header bytes per {PAYLOAD} B application message (mean over {} msgs/node after {} warm-up; Mattern, lives as the runtime sets them)",
            opts.measured_per_node, opts.warmup_per_node
        ),
        &[
            "N",
            "pattern",
            "header B (shipped)",
            "of which clock B",
            "compact clock B (projection)",
            "compact, no life B (projection)",
        ],
    );
    let mut at64 = BTreeMap::new();
    for &n in &opts.sizes {
        for p in Pattern::ALL {
            let b = measure(n.max(2), p, opts);
            if n == 64 {
                at64.insert(p.name(), b.measured);
            }
            s.row(vec![
                num(n as f64),
                text(p.name()),
                num(b.measured),
                num(b.clock),
                num(b.compact),
                num(b.compact_no_life),
            ]);
        }
    }
    for (p, bound) in [("ring", 16.0), ("few-busy", 16.0), ("all-to-all", 64.0)] {
        s.targets.push(Target::new(
            format!("header bytes at N=64, {p} <= {bound} B"),
            at64.get(p).copied(),
            Goal::AtMost,
            bound,
            "B",
        ));
    }
    s.notes.push(format!(
        "nodes start {START_SPREAD_US} us apart; projections are the same messages re-encoded, not a shipped wire format"
    ));
    s
}
