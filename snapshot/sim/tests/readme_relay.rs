//! One baton goes round a lossy one-way ring with crashes: my own process, my own
//! invariant, under shutter-sim.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shutter_sim::{Context, LinkFaults, NodeId, Process, Sim, Topology};

/// One baton goes round a one-way ring; each node counts the passes it made.
struct Relay {
    baton: bool,
    passes: u64,
}

#[derive(Serialize, Deserialize)]
struct RelayState {
    baton: bool,
    passes: u64,
}

impl Process for Relay {
    type State = RelayState;

    fn on_tick(&mut self, ctx: &mut Context) {
        if self.baton {
            self.baton = false;
            self.passes += 1;
            let next = ctx.peers()[0]; // a ring node has one outgoing channel
            ctx.send(next, b"baton".to_vec());
        }
    }

    fn on_message(&mut self, _ctx: &mut Context, _from: NodeId, _payload: &[u8]) {
        self.baton = true;
    }

    fn snapshot(&self) -> RelayState {
        RelayState {
            baton: self.baton,
            passes: self.passes,
        }
    }

    fn restore(&mut self, state: RelayState) {
        (self.baton, self.passes) = (state.baton, state.passes);
    }
}

#[test]
fn one_baton_on_a_lossy_ring_with_crashes() {
    for seed in shutter_sim::seeds(10) {
        Sim::new(Topology::ring(5), |me| Relay {
            baton: me == NodeId(0),
            passes: 0,
        })
        .seed(seed)
        .faults(LinkFaults {
            duplicate: 0.05,
            reorder: 0.2,
            reorder_delay: Duration::from_millis(2),
            ..LinkFaults::lossy(0.1)
        })
        .random_crashes(2)
        .snapshot_every(Duration::from_millis(25))
        .invariant("exactly one baton", |cut| {
            let held = cut.states().filter(|(_, s)| s.baton).count();
            match held + cut.in_flight().count() {
                1 => Ok(()),
                n => Err(format!("{n} batons")),
            }
        })
        .run_for(Duration::from_secs(1))
        .assert_ok();
    }
}
