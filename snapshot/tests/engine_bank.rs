//! The bank application over Mattern on a randomized (seeded) unordered schedule with many
//! concurrent snapshots: every completed snapshot conserves money and has a consistent
//! cut. Replay a failure with
//! `SHUTTER_SEED=<seed> cargo test -p shutter-snapshot --test engine_bank`.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shutter_snapshot::bank::{Bank, BankConfig, BankInvariant};
use shutter_snapshot::mattern::{Engine, EngineConfig};
use shutter_snapshot::process::Node;
use shutter_snapshot::verify;
use shutter_snapshot::{Envelope, GlobalSnapshot, SnapshotEvent};
use shutter_transport::Time;
use shutter_vclock::NodeId;

const INITIAL: u64 = 1_000;

struct Sim {
    nodes: Vec<Node<Bank>>,
    flight: Vec<(NodeId, NodeId, Envelope)>,
    completed: Vec<GlobalSnapshot>,
    aborted: usize,
    now: Time,
}

impl Sim {
    fn new(size: u32, seed: u64) -> Self {
        let ids: Vec<NodeId> = (0..size).map(NodeId).collect();
        let nodes = ids
            .iter()
            .map(|&me| {
                let bank = Bank::new(
                    me,
                    BankConfig {
                        seed,
                        initial: INITIAL,
                        ..BankConfig::default()
                    },
                );
                Node::new(bank, Engine::new(EngineConfig::new(me, ids.clone())), &ids)
            })
            .collect();
        let mut sim = Self {
            nodes,
            flight: Vec::new(),
            completed: Vec::new(),
            aborted: 0,
            now: Time(0),
        };
        for i in 0..size as usize {
            sim.nodes[i].start(sim.now);
            sim.drain(i);
        }
        sim
    }

    fn drain(&mut self, i: usize) {
        let from = NodeId(i as u32);
        while let Some((to, env)) = self.nodes[i].poll_transmit() {
            self.flight.push((from, to, env));
        }
        while let Some(e) = self.nodes[i].poll_event() {
            match e {
                SnapshotEvent::Completed(s) => self.completed.push(*s),
                SnapshotEvent::Aborted { .. } => self.aborted += 1,
                SnapshotEvent::LocalCut { .. } | SnapshotEvent::Committed(_) => {}
            }
        }
    }

    fn deliver(&mut self, k: usize) {
        let (from, to, env) = self.flight.swap_remove(k);
        self.nodes[to.index()].handle_envelope(self.now, from, env);
        self.drain(to.index());
    }
}

fn run(seed: u64) -> (usize, usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let size = rng.random_range(2..=6u32);
    let mut sim = Sim::new(size, seed);
    let total = INITIAL * u64::from(size);
    let mut initiated = 0;
    for _ in 0..3_000 {
        sim.now += std::time::Duration::from_micros(100);
        match rng.random_range(0..20) {
            0..=5 => {
                let i = rng.random_range(0..size as usize);
                sim.nodes[i].handle_tick(sim.now);
                sim.drain(i);
            }
            6 => {
                let i = rng.random_range(0..size as usize);
                if sim.nodes[i].initiate(sim.now).is_ok() {
                    initiated += 1;
                }
                sim.drain(i);
            }
            _ if !sim.flight.is_empty() => {
                // Uniformly random pick: arbitrary reordering across and within channels.
                let k = rng.random_range(0..sim.flight.len());
                sim.deliver(k);
            }
            _ => {}
        }
    }
    while !sim.flight.is_empty() {
        let k = rng.random_range(0..sim.flight.len());
        sim.deliver(k);
    }
    assert_eq!(sim.aborted, 0);
    assert_eq!(sim.completed.len(), initiated, "every snapshot completes");
    let inv = BankInvariant { total };
    for s in &sim.completed {
        verify::check_all(s, &[&inv]).unwrap_or_else(|e| panic!("snapshot {}: {e}", s.id));
    }
    let live: u64 = sim.nodes.iter().map(|n| n.process().balance()).sum();
    assert_eq!(live, total, "the run itself conserves money");
    let recorded = sim.completed.iter().map(|s| s.recorded_messages()).sum();
    (sim.completed.len(), recorded)
}

#[test]
fn bank_invariant_holds_on_every_completed_snapshot() {
    let base: u64 = std::env::var("SHUTTER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xba7c);
    let mut per_seed = BTreeMap::new();
    for round in 0..12u64 {
        let seed = base.wrapping_add(round);
        eprintln!(
            "bank seed {seed} (replay: SHUTTER_SEED={seed} cargo test -p shutter-snapshot --test engine_bank)"
        );
        per_seed.insert(seed, run(seed));
    }
    let snaps: usize = per_seed.values().map(|v| v.0).sum();
    let recorded: usize = per_seed.values().map(|v| v.1).sum();
    assert!(snaps > 100, "many snapshots ({snaps})");
    assert!(recorded > 0, "some money was caught in flight ({recorded})");
}

/// A completed snapshot, saved and loaded, restores every node: balances plus the
/// re-delivered in-flight transfers add up to the total before any new traffic.
#[test]
fn restore_from_a_saved_snapshot_conserves_money() {
    use shutter_snapshot::SnapshotEngine;
    use shutter_snapshot::persist;
    use shutter_snapshot::process::decode_state;

    let seed = 0xfeed;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let size = 4u32;
    let mut sim = Sim::new(size, seed);
    for step in 0..400 {
        let i = rng.random_range(0..size as usize);
        sim.nodes[i].handle_tick(sim.now);
        sim.drain(i);
        if step == 200 {
            sim.nodes[0].initiate(sim.now).unwrap();
            sim.drain(0);
        }
        if rng.random_bool(0.5) && !sim.flight.is_empty() {
            let k = rng.random_range(0..sim.flight.len());
            sim.deliver(k);
        }
    }
    while !sim.flight.is_empty() {
        let k = rng.random_range(0..sim.flight.len());
        sim.deliver(k);
    }
    let snap = sim.completed.pop().expect("snapshot completed");
    let dir = std::env::temp_dir().join(format!("shutter-restore-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bank.shutter");
    persist::save(&path, &snap).unwrap();
    let loaded = persist::load(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(loaded, snap);

    let ids: Vec<NodeId> = (0..size).map(NodeId).collect();
    let mut total = 0;
    for &me in &ids {
        let r = persist::restore_for(&loaded, me).unwrap();
        let state = decode_state::<Bank>(&r.state).unwrap();
        let node = Node::restored(
            Bank::new(me, BankConfig::default()),
            EngineConfig::new(me, ids.clone()),
            state,
            r.clock.clone(),
            r.incoming,
            Time(0),
        );
        assert!(node.engine().clock().dominates(&r.clock));
        total += node.process().balance();
    }
    assert_eq!(total, INITIAL * u64::from(size));
}
