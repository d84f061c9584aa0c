//! The CLI's output code on fixed inputs: the money sums of `shutter inspect` on a
//! hostile file, and the terminal latency table against the HdrHistogram reference.

#[path = "../../tests/report_support/mod.rs"]
mod report_support;

use report_support::{merged, reference};
use shutter_snapshot::report::{Percentiles, parse_hgrm};

/// Found by the `snapshot_inspect` fuzz target (tests/fuzz/regressions/snapshot_inspect):
/// balances and transfers near `u64::MAX` in a loaded file overflowed the money sums of
/// `shutter inspect` and of the bank invariant.
#[test]
fn money_sums_of_a_hostile_file_do_not_overflow() {
    use shutter_snapshot::bank::{BankInvariant, BankState, encode_transfer};
    use shutter_snapshot::verify::check_invariant;
    use shutter_snapshot::{GlobalSnapshot, RecordedMessage, SnapshotId, Timings};
    use shutter_vclock::{NodeId, VClock};
    let state = |balance| postcard::to_allocvec(&BankState { balance }).unwrap();
    let mut snap = GlobalSnapshot {
        id: SnapshotId {
            initiator: NodeId(0),
            s: 1,
        },
        states: [(NodeId(0), state(u64::MAX)), (NodeId(1), state(u64::MAX))]
            .into_iter()
            .collect(),
        cuts: [
            (NodeId(0), VClock::from_entries(vec![1])),
            (NodeId(1), VClock::new()),
        ]
        .into_iter()
        .collect(),
        channels: Default::default(),
        timings: Timings::default(),
        control_messages: 0,
        counts: Default::default(),
    };
    let huge = RecordedMessage {
        ts: VClock::new(),
        payload: encode_transfer(u64::MAX),
    };
    snap.channels
        .insert((NodeId(1), NodeId(0)), vec![huge.clone(), huge]);
    let e = check_invariant(&snap, &BankInvariant { total: 2_000 }).unwrap_err();
    assert!(e.to_string().contains("!= total 2000"), "{e}");
    let mut out = Vec::new();
    let ok = shutter_cli::inspect::print(&snap, None, 8, &mut out).unwrap();
    assert!(!ok, "the money check fails");
}

/// The terminal table lists wrk2's percentiles, and its 50/75/90% values are the reference
/// tool's rows for the same histogram.
#[test]
fn terminal_table_lists_the_wrk2_percentiles_as_the_reference_does() {
    use shutter_cli::summary::Summary;

    let summary = Summary {
        snapshot_latency_us: Percentiles::of(&merged("demo.hlog", "snapshot")),
        delivery_latency_us: Percentiles::of(&merged("demo.hlog", "delivery")),
        ..Summary::default()
    };
    let mut out = Vec::new();
    summary.print_table(&mut out).unwrap();
    let table = String::from_utf8(out).unwrap();
    let cells = |label: &str| -> Vec<String> {
        let line = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(label))
            .unwrap_or_else(|| panic!("no {label} row in\n{table}"));
        line.split_whitespace()
            .skip(1)
            .map(str::to_string)
            .collect()
    };
    for label in ["50%", "75%", "90%", "99%", "99.9%", "99.99%", "max"] {
        assert_eq!(cells(label).len(), 2, "{label}: {table}");
    }
    for (i, tag) in ["snapshot", "delivery"].into_iter().enumerate() {
        let reference = parse_hgrm(&reference("demo.hlog", tag)).unwrap();
        for (label, pct) in [("50%", 0.5), ("75%", 0.75), ("90%", 0.9), ("max", 1.0)] {
            let row = reference.iter().find(|r| r.percentile >= pct).unwrap();
            assert_eq!(
                cells(label)[i],
                format!("{:.3}", row.value),
                "{tag} {label}:\n{table}"
            );
        }
    }
}
