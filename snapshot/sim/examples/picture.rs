//! Pictures of the cut: the token ring (`examples/token_ring`) on a one-way ring of 4
//! and of 16 nodes, one token per node, over links with delay, jitter and some loss; one
//! snapshot taken while tokens are on the wire, drawn as a space-time diagram
//! (`shutter_sim::picture`).
//!
//! `cargo run -p shutter-sim --example picture [DIR]` writes `cut-4.svg` and
//! `cut-16.svg` to `DIR` (default `target/pictures`).

#[path = "token_ring/app.rs"]
mod app;

use std::path::PathBuf;
use std::time::Duration;

use shutter_sim::{LinkFaults, NodeId, Report, Sim, Topology};

/// Runs the ring with `nodes` nodes and one snapshot from `n0` a little after a tick,
/// while every node's token is in flight.
fn run(nodes: u32) -> Report {
    Sim::new(Topology::ring(nodes), move |me| {
        app::TokenRing::new(me, nodes, nodes)
    })
    .seed(3)
    .faults(LinkFaults {
        delay: Duration::from_micros(250),
        jitter: Duration::from_micros(500),
        reorder: 0.1,
        reorder_delay: Duration::from_micros(600),
        ..LinkFaults::lossy(0.05)
    })
    .tick(Some(Duration::from_millis(1)))
    .snapshot_at(Duration::from_micros(6_300), NodeId(0))
    .invariant("every token once", app::every_token_once(nodes))
    .at_end("every token held", app::all_tokens_held(nodes))
    .run_for(Duration::from_millis(12))
}

fn main() {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/pictures".to_string()),
    );
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        std::process::exit(1);
    }
    for nodes in [4, 16] {
        let report = run(nodes);
        report.assert_ok();
        let Some(snap) = report.completed.first() else {
            eprintln!("{nodes} nodes: the snapshot did not complete\n{report}");
            std::process::exit(1);
        };
        let svg = match report.svg(snap.id) {
            Ok(svg) => svg,
            Err(e) => {
                eprintln!("{nodes} nodes: {e}");
                std::process::exit(1);
            }
        };
        let path = dir.join(format!("cut-{nodes}.svg"));
        if let Err(e) = std::fs::write(&path, svg) {
            eprintln!("cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
        println!(
            "{}: snapshot {} of {nodes} nodes, {} messages in its channel states",
            path.display(),
            snap.id,
            snap.recorded_messages()
        );
    }
}
