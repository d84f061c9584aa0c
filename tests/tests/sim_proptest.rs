//! The fault schedule as a generated value: proptest draws a whole [`Scenario`] (faults,
//! partitions, crashes, initiations), runs Mattern on it, and on failure shrinks the
//! scenario itself (fewer partitions, crashes, initiations, smaller probabilities) to a
//! minimal failing schedule, which it prints and persists in
//! `sim_proptest.proptest-regressions`.

use std::time::Duration;

use proptest::prelude::*;
use shutter_tests::sim::{Algorithm, Crash, CrashKind, Scenario, run};
use shutter_transport::faults::{LinkFaults, LossModel, Partition};
use shutter_vclock::NodeId;

const TRAFFIC_MS: u64 = 1000;

fn partition(nodes: usize) -> impl Strategy<Value = Partition> {
    (50..600u64, 20..400u64, 0..nodes as u32, any::<bool>()).prop_map(
        move |(start, len, isolated, one_way)| Partition {
            start: Duration::from_millis(start),
            end: Duration::from_millis(start + len),
            side_a: vec![NodeId(isolated)],
            side_b: (0..nodes as u32)
                .filter(|&n| n != isolated)
                .map(NodeId)
                .collect(),
            one_way,
        },
    )
}

fn crash(nodes: usize) -> impl Strategy<Value = Crash> {
    (0..nodes as u32, 100..500u64, 20..400u64, 0..3u8).prop_map(|(node, at_ms, down_ms, kind)| {
        Crash {
            node,
            at_ms,
            down_ms,
            kind: match kind {
                0 => CrashKind::Pause,
                1 => CrashKind::Restart,
                _ => CrashKind::Crash,
            },
        }
    })
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (2..=6usize).prop_flat_map(|nodes| {
        let faults = (
            0.0..0.5f64,
            0.0..0.5f64,
            0..8_000u64,
            0.0..0.3f64,
            0.0..0.05f64,
        )
            .prop_map(|(loss, dup, jitter_us, reorder, corrupt)| LinkFaults {
                loss: LossModel::Bernoulli { p: loss },
                duplicate: dup,
                delay: Duration::from_micros(300),
                jitter: Duration::from_micros(jitter_us),
                reorder,
                reorder_delay: Duration::from_millis(5),
                corrupt,
                ..LinkFaults::default()
            });
        (
            any::<u64>(),
            faults,
            proptest::collection::vec(partition(nodes), 0..3),
            proptest::collection::vec(crash(nodes), 0..2),
            proptest::collection::vec((0..nodes as u32, 0..TRAFFIC_MS - 100), 1..12),
        )
            .prop_map(
                move |(seed, faults, partitions, crashes, mut initiations)| {
                    initiations.sort_by_key(|&(k, t)| (t, k));
                    Scenario {
                        seed,
                        nodes,
                        faults,
                        partitions,
                        crashes,
                        initiations,
                        changes: Vec::new(),
                        traffic_ms: TRAFFIC_MS,
                        tick_ms: 10,
                    }
                },
            )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn mattern_survives_any_generated_schedule(sc in scenario()) {
        let out = run(&sc, Algorithm::Mattern);
        prop_assert!(
            out.passed(),
            "schedule: {sc}\nviolations: {:#?}",
            out.violations
        );
    }
}
