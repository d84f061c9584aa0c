//! The bank (`shutter_snapshot::bank`) is one user of the simulator like any other:
//! random transfers over a bidirectional ring and over the complete graph, under loss,
//! bursts, duplication, reordering, corruption and real crashes with recovery, and
//! every completed snapshot holds exactly the opening money (balances plus transfers
//! in flight), as do the nodes at the end.
//!
//! Seeds: `SHUTTER_SIM_SEEDS=N` runs more, `SHUTTER_SIM_SEED=S` replays one.

use std::time::Duration;

use shutter_sim::{Cut, LinkFaults, LossModel, NodeId, Sim, Topology};
use shutter_snapshot::bank::{Bank, BankConfig, BankState, decode_transfer};

const OPENING: u64 = 1_000;

fn money(nodes: usize) -> impl Fn(&Cut<'_, BankState>) -> Result<(), String> {
    move |cut| {
        let held: u64 = cut.states().map(|(_, s)| s.balance).sum();
        let mut moving = 0;
        for (from, to, payload) in cut.in_flight() {
            moving += decode_transfer(payload).ok_or(format!("{from} -> {to}: not a transfer"))?;
        }
        let expected = OPENING * nodes as u64;
        if held + moving == expected {
            Ok(())
        } else {
            Err(format!("{held} held + {moving} in flight, not {expected}"))
        }
    }
}

#[test]
fn the_money_stays_exact_on_any_topology_across_crashes() {
    for seed in shutter_sim::seeds(6) {
        for topology in [Topology::bidirectional_ring(6), Topology::complete(&ids(5))] {
            let n = topology.nodes().len();
            let cfg = BankConfig {
                seed,
                initial: OPENING,
                ..BankConfig::default()
            };
            let report = Sim::new(topology, move |me| Bank::new(me, cfg))
                .seed(seed)
                .faults(LinkFaults {
                    loss: LossModel::GilbertElliott {
                        p_good_to_bad: 0.05,
                        p_bad_to_good: 0.4,
                        loss_in_good: 0.02,
                        loss_in_bad: 0.8,
                    },
                    duplicate: 0.05,
                    reorder: 0.2,
                    reorder_delay: Duration::from_millis(2),
                    corrupt: 0.01,
                    ..LinkFaults::default()
                })
                .random_crashes(2)
                .snapshot_every(Duration::from_millis(40))
                .invariant("money", money(n))
                .at_end("money", move |end| {
                    let total: u64 = end.processes().map(|(_, b)| b.balance()).sum();
                    match total == OPENING * n as u64 {
                        true => Ok(()),
                        false => Err(format!("{total}")),
                    }
                })
                .log(false)
                .run_for(Duration::from_secs(1));
            report.assert_ok();
            assert!(report.completed.len() >= 10, "{report}");
            assert!(
                report.completed.iter().any(|s| s.recorded_messages() > 0),
                "{report}"
            );
        }
    }
}

fn ids(n: u32) -> Vec<NodeId> {
    (0..n).map(NodeId).collect()
}
