//! Golden-output tests of scripted workloads: a tiny coin-transfer process runs the
//! schedules in `tests/scripts/*.txt`, and a readable rendering of each run (summary,
//! every completed snapshot's balances and in-flight coins, and the event log without
//! the per-message entries) must equal `tests/scripts/*.golden`.
//!
//! After an intended change of behaviour, rewrite the golden files with
//! `SHUTTER_BLESS=1 cargo test -p shutter-sim --test script_golden` and review the diff.
//! Each run also asserts on its own, golden or not: coins are conserved in every
//! snapshot and at the end, and every scripted snapshot completed.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shutter_sim::script::{Script, Step, parse_send};
use shutter_sim::{
    Context, LinkFaults, LogKind, NodeId, Process, Report, Sim, Time, Topology, Undeliverable,
};

/// Coins every node starts with.
const COINS: u64 = 100;

/// Holds coins; the command `send <to> <n>` gives `n` of them to `to` if it has them
/// and `to` is one of its channels (otherwise nothing moves).
struct Coins {
    held: u64,
}

#[derive(Serialize, Deserialize)]
struct Held(u64);

/// A transfer on the wire: the amount, little-endian.
fn amount(payload: &[u8]) -> u64 {
    <[u8; 8]>::try_from(payload).map_or(0, u64::from_le_bytes)
}

impl Process for Coins {
    type State = Held;

    fn on_command(&mut self, ctx: &mut Context, command: &[u8]) {
        if let Some((to, n)) = parse_send(command)
            && n <= self.held
            && ctx.peers().contains(&to)
        {
            self.held -= n;
            ctx.send(to, n.to_le_bytes().to_vec());
        }
    }

    fn on_message(&mut self, _: &mut Context, _: NodeId, payload: &[u8]) {
        self.held += amount(payload);
    }

    /// Coins that will never arrive come back (as the bank's refunds).
    fn on_undeliverable(&mut self, _: &mut Context, _: NodeId, payload: &[u8], _: Undeliverable) {
        self.held += amount(payload);
    }

    /// A removed member's coins, and those on their way to it, are ours now.
    fn on_inherit(
        &mut self,
        _: &mut Context,
        _: NodeId,
        state: Held,
        in_flight: &[(NodeId, Vec<u8>)],
    ) {
        self.held += state.0 + in_flight.iter().map(|(_, m)| amount(m)).sum::<u64>();
    }

    fn snapshot(&self) -> Held {
        Held(self.held)
    }

    fn restore(&mut self, state: Held) {
        self.held = state.0;
    }
}

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts")
}

/// Every script file with its run: the topology, the faults and the seed.
const CASES: &[&str] = &["ring3", "grid2x2", "crash"];

fn setup(name: &str) -> (Topology, LinkFaults, u64) {
    let perfect = LinkFaults {
        delay: Duration::from_micros(200),
        ..LinkFaults::default()
    };
    match name {
        "ring3" => (
            Topology::ring(3),
            LinkFaults {
                delay: Duration::from_micros(200),
                ..LinkFaults::lossy(0.1)
            },
            7,
        ),
        "grid2x2" => (Topology::grid(2, 2), perfect, 0),
        "crash" => (Topology::bidirectional_ring(3), perfect, 0),
        other => panic!("no setup for script {other:?}: add it to CASES and setup()"),
    }
}

/// Runs `tests/scripts/<name>.txt`, checks what must hold in any case, and returns the
/// report with its rendering.
fn run(name: &str) -> (Report, String) {
    let path = scripts_dir().join(format!("{name}.txt"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let script = Script::parse(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let (topology, faults, seed) = setup(name);
    let nodes = topology.nodes();
    let total = COINS * nodes.len() as u64;

    // The invariant and the end check also write what they saw, in run order.
    let seen = Rc::new(RefCell::new(Vec::<String>::new()));
    let (in_snapshots, at_end) = (seen.clone(), seen.clone());
    let report = Sim::new(topology.clone(), |_| Coins { held: COINS })
        .seed(seed)
        .faults(faults)
        .script(&script)
        .invariant("coins are conserved", move |cut| {
            let mut line = format!("snapshot {}:", cut.snapshot().id);
            for (n, held) in cut.states() {
                let _ = write!(line, " {n}={}", held.0);
            }
            let moving: Vec<(NodeId, NodeId, u64)> = cut
                .in_flight()
                .map(|(from, to, m)| (from, to, amount(m)))
                .collect();
            if moving.is_empty() {
                line += ", nothing in flight";
            }
            for (from, to, n) in &moving {
                let _ = write!(line, ", in flight {from}->{to} {n}");
            }
            in_snapshots.borrow_mut().push(line);
            let sum = cut.states().map(|(_, h)| h.0).sum::<u64>()
                + moving.iter().map(|m| m.2).sum::<u64>();
            if sum == total {
                Ok(())
            } else {
                Err(format!("{sum} coins, not {total}"))
            }
        })
        .at_end("coins are conserved", move |end| {
            let mut line = "at the end:".to_string();
            for (n, p) in end.processes() {
                let _ = write!(line, " {n}={}", p.held);
            }
            at_end.borrow_mut().push(line);
            let sum: u64 = end.processes().map(|(_, p)| p.held).sum();
            if sum == total {
                Ok(())
            } else {
                Err(format!("{sum} coins, not {total}"))
            }
        })
        .run_for(script.duration() + Duration::from_millis(200));

    report.assert_ok();
    let mut initiators: Vec<NodeId> = report.completed.iter().map(|s| s.id.initiator).collect();
    let mut expected = script.initiators();
    initiators.sort();
    expected.sort();
    assert_eq!(
        initiators, expected,
        "{name}: the snapshots that completed are not the scripted ones"
    );

    let mut out = format!("# {name}.txt on {topology}, seed {seed}\n");
    let _ = writeln!(
        out,
        "{} snapshots completed, {} aborted; {} transfers sent, {} delivered; {} crashes, {} \
         rollbacks; datagrams lost: {} to the links, {} to partitions; virtual time {}",
        report.completed.len(),
        report.aborted.len(),
        report.sent,
        report.delivered,
        report.crashes,
        report.rollbacks,
        report.faults.dropped_loss,
        report.faults.dropped_partition,
        report.end,
    );
    for line in seen.borrow().iter() {
        out += line;
        out += "\n";
    }
    // The log says only that a command arrived; the script says which one.
    let mut commands: BTreeMap<(u64, NodeId), VecDeque<&Step>> = BTreeMap::new();
    for (at, step) in script.timeline() {
        let node = match step {
            Step::Send { from, .. } => *from,
            Step::Command { node, .. } => *node,
            _ => continue,
        };
        let key = (at.as_micros() as u64, node);
        commands.entry(key).or_default().push_back(step);
    }
    out += "log (without sends and deliveries):\n";
    for e in &report.log {
        let what = match &e.kind {
            LogKind::Sent { .. } | LogKind::Delivered { .. } => continue,
            LogKind::Cut(id) => format!("cut {id}"),
            LogKind::Completed(id) => format!("completed {id}"),
            LogKind::Aborted(id) => format!("aborted {id}"),
            LogKind::Command => match commands
                .get_mut(&(e.at.as_micros(), e.node))
                .and_then(VecDeque::pop_front)
            {
                Some(step) => format!("command: {step}"),
                None => "command (not in the script?)".to_string(),
            },
            LogKind::Crashed => "crashed".to_string(),
            LogKind::Restarted => "restarted".to_string(),
            LogKind::RolledBack(Some(id)) => format!("rolled back to {id}"),
            LogKind::RolledBack(None) => "rolled back to nothing".to_string(),
        };
        let _ = writeln!(out, "  {} {} {what}", e.at, e.node);
    }
    // Commands to a node that was down are dropped.
    for ((at, _), steps) in commands {
        for step in steps {
            let _ = writeln!(out, "  {} dropped (the node was down): {step}", Time(at));
        }
    }
    (report, out)
}

/// Compares `actual` with `tests/scripts/<name>.golden`, or rewrites that file when
/// `SHUTTER_BLESS=1`.
fn golden(name: &str, actual: &str) {
    let path = scripts_dir().join(format!("{name}.golden"));
    if std::env::var("SHUTTER_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected == actual {
        return;
    }
    let (want, got): (Vec<&str>, Vec<&str>) =
        (expected.lines().collect(), actual.lines().collect());
    let line = (0..want.len().max(got.len()))
        .find(|&i| want.get(i) != got.get(i))
        .unwrap_or(0);
    panic!(
        "{name}: the run differs from {path:?} first at line {}:\n  golden: {}\n  actual: \
         {}\nThe whole run:\n{actual}\nIf the change is intended, rewrite the golden files: \
         SHUTTER_BLESS=1 cargo test -p shutter-sim --test script_golden",
        line + 1,
        want.get(line).copied().unwrap_or("(end of file)"),
        got.get(line).copied().unwrap_or("(end of output)"),
    );
}

#[test]
fn ring_of_three_with_two_initiators() {
    let (report, out) = run("ring3");
    assert!(
        report.faults.dropped_loss > 0,
        "the ring's links were to lose datagrams"
    );
    golden("ring3", &out);
}

#[test]
fn grid_partition_and_heal() {
    let (report, out) = run("grid2x2");
    assert!(
        report.faults.dropped_partition > 0,
        "the partition was to cut datagrams"
    );
    golden("grid2x2", &out);
}

#[test]
fn crash_with_recovery() {
    let (report, out) = run("crash");
    assert_eq!(report.crashes, 1);
    assert!(
        report.rollbacks > 0,
        "n1's recovery was to roll the cluster back"
    );
    golden("crash", &out);
}

/// Every script file has a case and a golden file (so a new one is not silently
/// skipped), and every script's canonical text parses back to the same script.
#[test]
fn every_script_is_run_and_round_trips() {
    let mut names: Vec<String> = std::fs::read_dir(scripts_dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".txt").map(str::to_string)
        })
        .collect();
    names.sort();
    let mut cases: Vec<&str> = CASES.to_vec();
    cases.sort();
    assert_eq!(
        names, cases,
        "script files without a case, or cases without a file"
    );
    for name in CASES {
        let text = std::fs::read_to_string(scripts_dir().join(format!("{name}.txt"))).unwrap();
        let script = Script::parse(&text).unwrap();
        assert_eq!(
            Script::parse(&script.to_string()).unwrap(),
            script,
            "{name}"
        );
        assert!(scripts_dir().join(format!("{name}.golden")).exists() || bless());
    }
}

fn bless() -> bool {
    std::env::var("SHUTTER_BLESS").is_ok_and(|v| v == "1")
}
