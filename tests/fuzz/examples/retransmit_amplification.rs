//! Bug #8 of tests/fuzz/README.md, fixed in f721d9b (found while profiling the slow
//! `core_datagram` target; not a panic, so the target itself does not flag it). Before
//! the fix, every `expedite` put one more copy of each unacknowledged fragment in flight,
//! and a retransmission timeout then re-queued every fragment of every packet in flight
//! (`SendState::on_rto` -> `requeue`, `transport/src/core/send.rs`), one
//! retransmit-queue entry per copy. So the copies were retransmitted as separate packets,
//! again at every following timeout, until the message was acknowledged: many queue
//! entries per fragment, against the bound in the module's docs ("at most one entry per
//! fragment of an unacknowledged message").
//!
//! This replays the script `regressions/core_datagram/rto-retransmit-amplification`
//! (a 40-byte message, a PING from the peer, the message lost to a timeout so the link
//! counts as lossy, a 7,228-byte message, 20 `expedite`s, 3 timeouts) without the target's per-input budget, and counts the DATA
//! frames each timeout sends against the distinct fragments among them. It exits 1 if
//! the bug is there (before the fix: 147 datagrams, 168 frames for 8 fragments; after:
//! 7 datagrams, 8 frames). It writes the script with `--write DIR`
//! (`TRACE=1`: datagrams sent per operation).
//!
//! ```sh
//! cargo +nightly run --release --manifest-path tests/fuzz/Cargo.toml \
//!     --example retransmit_amplification
//! ```

use std::collections::BTreeSet;

use shutter_fuzz::core_ops::{self, Harness, Op};
use shutter_transport::wire::{self, Frame, Header, Writer};
use shutter_vclock::NodeId;

fn script(ping: &[u8]) -> Vec<Op<'_>> {
    let mut ops = vec![
        Op::Send {
            to_second: false,
            urgent: false,
            len: 40,
        },
        // A PING from node 1: the peer is heard from, so more than one packet may be in
        // flight to it.
        Op::Datagram {
            from: 0,
            repair: true,
            bytes: ping,
        },
        // Past the RTO: the first packet is declared lost, the link counts as lossy.
        Op::Advance(1_000_000),
        Op::Send {
            to_second: false,
            urgent: false,
            len: 7228,
        },
    ];
    ops.extend(std::iter::repeat_n(Op::Expedite, 20));
    ops.extend(std::iter::repeat_n(Op::ToTimeout, 3));
    ops
}

fn main() {
    let mut w = Writer::new(
        &Header {
            sender: NodeId(1),
            sender_incarnation: 7,
            dest_incarnation: core_ops::INCARNATION,
            packet_number: 0,
        },
        1200,
    );
    assert!(w.push_ping());
    let ping = w.finish();
    let ops = script(&ping);
    let bytes = core_ops::encode(&ops);
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--write") {
        let dir = std::path::PathBuf::from(args.next().expect("--write DIR"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("rto-retransmit-amplification"), &bytes).unwrap();
    }
    assert_eq!(core_ops::parse(&bytes), ops);

    let mut h = Harness::default();
    h.sent = Some(Vec::new());
    let mut worst = 1.0f64;
    for op in &ops {
        h.apply(op);
        let sent = h.sent.as_mut().unwrap().drain(..).collect::<Vec<_>>();
        if std::env::var_os("TRACE").is_some() {
            println!("{op:?}: {} datagrams", sent.len());
        }
        if *op != Op::ToTimeout {
            continue;
        }
        let mut frames = 0usize;
        let mut distinct = BTreeSet::new();
        for (_, d) in &sent {
            let (_, fs) = wire::decode(d).expect("the core's own datagram");
            for f in fs {
                if let Frame::Data(d) = f {
                    frames += 1;
                    distinct.insert((d.message_id, d.index));
                }
            }
        }
        println!(
            "timeout at {:?}: {} datagrams, {frames} DATA frames, {} distinct fragments",
            h.now,
            sent.len(),
            distinct.len()
        );
        if !distinct.is_empty() {
            worst = worst.max(frames as f64 / distinct.len() as f64);
        }
    }
    if worst > 1.0 {
        println!("FAIL: a timeout sent each lost fragment up to {worst:.0} times");
        std::process::exit(1);
    }
    println!("ok: each timeout sent each lost fragment once");
}
