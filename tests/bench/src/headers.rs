//! (e) Header bytes per application message, by cluster size and traffic pattern.
//!
//! Real Mattern engines exchange messages in one of three patterns; every message is
//! stamped with `SnapshotEngine::on_app_send` and encoded as `Stack` ships it (the
//! sender's `lean::Encoder`, `Envelope::Lean`), decoded by the receiver's
//! `lean::Decoder` (and compared with the engine's header), then handed to the
//! receiver's `handle_app_receive` so clocks merge as in a run. Header bytes = envelope
//! bytes minus payload bytes. Beside it, the same message with a whole header (the
//! format before lean headers). No transport runs: transport ids are numbered per
//! channel as the core numbers them, and each acknowledgement reaches the sender a fixed
//! number of messages later (`ack_lag`). Engines get lives and clock floors the way the
//! runtime gives them (`life` = wall-clock µs at start, floor from
//! `shutter_snapshot::life`), started `START_SPREAD_US` apart, because floors are what
//! makes entries large.

use std::collections::{BTreeMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use shutter_snapshot::engine::{EngineConfig, SnapshotEngine};
use shutter_snapshot::lean;
use shutter_snapshot::mattern::Engine;
use shutter_snapshot::wire::{Control, Envelope, LeanHead};
use shutter_transport::Time;
use shutter_vclock::NodeId;

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
            warmup_per_node: 200,
            measured_per_node: 100,
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
    /// Shipped: the lean envelope minus the payload.
    shipped: f64,
    /// The same message with a whole header (`Envelope::App`, the format before).
    whole: f64,
    /// Of that, the whole clock.
    clock: f64,
    /// Share of measured messages whose header was diffed against a baseline.
    diffed: f64,
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
    // One encoder and one decoder per node, as in `Stack`; transport ids per channel.
    let mut encoders: Vec<lean::Encoder> = (0..n).map(|_| lean::Encoder::default()).collect();
    let mut decoders: Vec<lean::Decoder> = (0..n).map(|_| lean::Decoder::default()).collect();
    let mut next_id: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    // Acknowledgements on their way: (global index when it arrives, sender, receiver, id).
    let mut acks: VecDeque<(usize, usize, usize, u64)> = VecDeque::new();
    let lag = ack_lag(n);
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let payload = vec![0x5a; PAYLOAD];
    let mut sum = Bytes::default();
    let mut counted = 0usize;
    let total = n * (opts.warmup_per_node + opts.measured_per_node);
    for k in 0..total {
        while acks.front().is_some_and(|a| a.0 <= k) {
            let (_, s, r, id) = acks.pop_front().expect("front");
            encoders[s].acked(ids[r], id);
        }
        let (s, r) = pattern.pick(k, n, &mut rng);
        let now = Time(start + k as u64);
        let header = engines[s].on_app_send(now, ids[r]);
        let id = next_id.entry((s, r)).or_default();
        let app = encoders[s].encode(ids[r], *id, &header, payload.clone());
        encoders[s].sent(ids[r], *id, &header, app.keep, header.ts.get(ids[s]));
        let diffed = matches!(app.head, LeanHead::Diff { .. });
        let shipped = Envelope::<Control>::Lean(app).to_bytes();
        let whole = Envelope::<Control>::App {
            header: header.clone(),
            payload: payload.clone(),
        }
        .to_bytes();
        if k >= n * opts.warmup_per_node {
            sum.shipped += (shipped.len() - PAYLOAD) as f64;
            sum.whole += (whole.len() - PAYLOAD) as f64;
            sum.clock += postcard::to_allocvec(&header.ts).map_or(0, |v| v.len()) as f64;
            sum.diffed += f64::from(u8::from(diffed));
            counted += 1;
        }
        // The receiver decodes what was shipped, exactly as its stack would.
        let Ok(Envelope::Lean(app)) = Envelope::<Control>::from_bytes(&shipped) else {
            panic!("a lean envelope does not decode");
        };
        let (decoded, body) = decoders[r]
            .decode(ids[s], *id, app)
            .expect("a baseline the sender named is kept");
        assert_eq!(decoded, header, "lean header decoded differently");
        decoders[r].prune(ids[s], *id + 1);
        acks.push_back((k + lag, s, r, *id));
        *id += 1;
        let _delivery = engines[r].handle_app_receive(now, ids[s], &decoded, &body, &mut Vec::new);
    }
    let c = counted.max(1) as f64;
    Bytes {
        shipped: sum.shipped / c,
        whole: sum.whole / c,
        clock: sum.clock / c,
        diffed: 100.0 * sum.diffed / c,
    }
}

/// Messages sent cluster-wide between a message and its acknowledgement reaching the
/// sender: one more message from every node (at the 2000 msg/s per node of `netlat`,
/// 0.5 ms, longer than a loopback or LAN round trip with the ack delay).
fn ack_lag(n: usize) -> usize {
    n
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
            "header B (shipped, lean)",
            "whole header B (before)",
            "of which clock B",
            "diffed %",
        ],
    );
    let mut at64 = BTreeMap::new();
    for &n in &opts.sizes {
        for p in Pattern::ALL {
            let b = measure(n.max(2), p, opts);
            if n == 64 {
                at64.insert(p.name(), b.shipped);
            }
            s.row(vec![
                num(n as f64),
                text(p.name()),
                num(b.shipped),
                num(b.whole),
                num(b.clock),
                num(b.diffed),
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
        "nodes start {START_SPREAD_US} us apart; an acknowledgement reaches the sender N messages (one per node) after its message; every lean header was decoded by the receiver's `lean::Decoder` and compared with the engine's"
    ));
    s
}
