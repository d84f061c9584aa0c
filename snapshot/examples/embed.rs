//! Embedding shutter in your own tokio program with your own application: a token ring.
//!
//! Each node holds tokens and, every tick, passes one to its right-hand neighbour. The
//! number of tokens in the system never changes, so every consistent snapshot must count
//! them all: in the nodes' states plus the tokens recorded in flight on the channels.
//! That invariant is checked with [`shutter_snapshot::verify`], next to the built-in cut
//! and channel checks. Datagrams are sealed with a cluster key made for the run.
//!
//! ```text
//! cargo run --release -p shutter-snapshot --example embed
//! ```
//!
//! A library user depends on `shutter-snapshot = "0.1"` (the CLI is the separate
//! `shutter-cli` package; this example uses the default `runtime` feature).

use serde::{Deserialize, Serialize};
use shutter_snapshot::process::{Context, Process};
use shutter_snapshot::runtime::{LocalCluster, NodeConfig, NodeEvent};
use shutter_snapshot::verify::{self, Invariant};
use shutter_snapshot::{GlobalSnapshot, process};
use shutter_transport::{Auth, KeyRing};
use shutter_vclock::NodeId;

const NODES: u32 = 4;
const TOKENS_EACH: u64 = 10;

/// The application: tokens held here; sends one to the next node per tick.
struct Ring {
    me: NodeId,
    tokens: u64,
}

#[derive(Serialize, Deserialize)]
struct RingState {
    tokens: u64,
}

impl Process for Ring {
    type State = RingState;

    fn on_message(&mut self, _ctx: &mut Context, _from: NodeId, payload: &[u8]) {
        // One message carries one token; anything else would be a bug.
        assert_eq!(payload, b"token");
        self.tokens += 1;
    }

    fn on_tick(&mut self, ctx: &mut Context) {
        if self.tokens > 0 {
            self.tokens -= 1;
            let next = NodeId((self.me.0 + 1) % NODES);
            ctx.send(next, b"token".to_vec());
        }
    }

    fn snapshot(&self) -> RingState {
        RingState {
            tokens: self.tokens,
        }
    }

    fn restore(&mut self, state: RingState) {
        self.tokens = state.tokens;
    }
}

/// Tokens are conserved: held plus in flight is always the opening total.
struct TokensConserved;

impl Invariant for TokensConserved {
    fn name(&self) -> &str {
        "tokens conserved"
    }

    fn check(&self, snap: &GlobalSnapshot) -> Result<(), String> {
        let mut held = 0;
        for bytes in snap.states.values() {
            let state: RingState =
                process::decode_state::<Ring>(bytes).map_err(|e| e.to_string())?;
            held += state.tokens;
        }
        let in_flight = snap.recorded_messages() as u64;
        let want = u64::from(NODES) * TOKENS_EACH;
        if held + in_flight == want {
            Ok(())
        } else {
            Err(format!("{held} held + {in_flight} in flight != {want}"))
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut cfg = NodeConfig::default();
    cfg.transport.auth = Auth::Keys(KeyRing::random()?);
    let mut cluster = LocalCluster::start(NODES as usize, cfg, |me| Ring {
        me,
        tokens: TOKENS_EACH,
    })
    .await?;
    let mut verified = 0;
    for round in 0..5u32 {
        let on = NodeId(round % NODES);
        let id = cluster.initiate(on).await?;
        // Wait for this snapshot's outcome (other events are local cuts).
        while let Some((_, event)) = cluster.next_event().await {
            match event {
                NodeEvent::Completed(snap) if snap.id == id => {
                    verify::check_all(&snap, &[&TokensConserved])?;
                    println!(
                        "snapshot {id}: consistent, {} tokens in flight, {:.1} ms",
                        snap.recorded_messages(),
                        snap.timings.latency_micros() as f64 / 1000.0
                    );
                    verified += 1;
                    break;
                }
                NodeEvent::Aborted { id: a, reason } if a == id => {
                    println!("snapshot {id} aborted: {reason}");
                    break;
                }
                _ => {}
            }
        }
    }
    cluster.shutdown().await?;
    if verified == 0 {
        return Err("no snapshot completed".into());
    }
    println!("{verified} snapshots verified: tokens conserved");
    Ok(())
}
