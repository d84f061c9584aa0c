//! `shutter inspect FILE...`: prints saved snapshots (id, timings, per-node bank
//! balances, cut clocks, channel messages) and verifies each (cut consistency, channel
//! states, money conserved). Exit code 1 if a check fails for any of them.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context as _, Result};

use crate::args::InspectArgs;
use shutter_snapshot::GlobalSnapshot;
use shutter_snapshot::bank::{BankConfig, BankInvariant, BankState, decode_transfer};
use shutter_snapshot::persist;
use shutter_snapshot::verify::{
    check_channels, check_classification, check_cut_consistency, check_invariant,
};

/// `shutter inspect`.
pub fn run(args: &InspectArgs) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let mut ok = true;
    for (i, file) in args.files.iter().enumerate() {
        let snap = persist::load(file)
            .with_context(|| format!("cannot load snapshot {}", file.display()))?;
        if args.files.len() > 1 {
            writeln!(
                out,
                "{}== {} ==",
                if i > 0 { "\n" } else { "" },
                file.display()
            )?;
        }
        ok &= print(&snap, args.total, args.messages, &mut out)?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The bank total assumed when none is given: nodes times the default opening balance.
pub fn default_total(snap: &GlobalSnapshot) -> u64 {
    snap.states.len() as u64 * BankConfig::default().initial
}

/// Verifies `snap` as a bank snapshot; each entry is `(check, Err(reason) or Ok)`.
pub fn verify(snap: &GlobalSnapshot, total: u64) -> Vec<(String, Result<(), String>)> {
    let s = |r: Result<(), shutter_snapshot::verify::Inconsistency>| r.map_err(|e| e.to_string());
    vec![
        (
            "cut consistency (cut_j[i] <= cut_i[i])".into(),
            s(check_cut_consistency(snap)),
        ),
        (
            "channel states (pre-cut messages only)".into(),
            s(check_channels(snap)),
        ),
        (
            "classification (cuts and messages pre-cut for the snapshot's id)".into(),
            s(check_classification(snap)),
        ),
        (
            format!("money conserved (total {total})"),
            s(check_invariant(snap, &BankInvariant { total })),
        ),
    ]
}

/// Prints `snap`; returns whether every check passed.
pub fn print(
    snap: &GlobalSnapshot,
    total: Option<u64>,
    per_channel: usize,
    out: &mut impl Write,
) -> Result<bool> {
    let t = &snap.timings;
    writeln!(
        out,
        "snapshot {} (initiator {}, s = {})",
        snap.id, snap.id.initiator, snap.id.s
    )?;
    writeln!(
        out,
        "  latency {:.3} ms, {} control messages, {} nodes, {} recorded channel messages",
        t.latency_micros() as f64 / 1000.0,
        snap.control_messages,
        snap.states.len(),
        snap.recorded_messages()
    )?;
    writeln!(out, "\nnodes:")?;
    writeln!(
        out,
        "  {:<6} {:>10}  {:<14} cut clock",
        "node", "balance", "cut at (+ms)"
    )?;
    // u128: a damaged or hostile file may hold sums beyond u64.
    let mut balances = 0u128;
    for (node, bytes) in &snap.states {
        let balance = match postcard::from_bytes::<BankState>(bytes) {
            Ok(s) => {
                balances += u128::from(s.balance);
                s.balance.to_string()
            }
            Err(_) => format!("<{} bytes, not a bank state>", bytes.len()),
        };
        let at = t
            .local_cuts
            .get(node)
            .map(|c| {
                format!(
                    "{:+.3}",
                    (c.as_micros() as f64 - t.started.as_micros() as f64) / 1000.0
                )
            })
            .unwrap_or_else(|| "-".into());
        let clock = snap
            .cuts
            .get(node)
            .map(|c| c.to_string())
            .unwrap_or_else(|| "<missing>".into());
        writeln!(
            out,
            "  {:<6} {:>10}  {:<14} {}",
            node.to_string(),
            balance,
            at,
            clock
        )?;
    }
    writeln!(out, "\nchannels (non-empty):")?;
    let mut in_flight = 0u128;
    let mut any = false;
    for ((from, to), msgs) in &snap.channels {
        if msgs.is_empty() {
            continue;
        }
        any = true;
        let amounts: Vec<Option<u64>> = msgs.iter().map(|m| decode_transfer(&m.payload)).collect();
        let sum: u128 = amounts.iter().flatten().map(|&a| u128::from(a)).sum();
        in_flight += sum;
        writeln!(
            out,
            "  {from}->{to}: {} message(s), {} in transfers",
            msgs.len(),
            sum
        )?;
        for (m, a) in msgs.iter().zip(&amounts).take(per_channel) {
            let what = a.map_or_else(
                || format!("{} bytes, not a transfer", m.payload.len()),
                |a| format!("transfer {a}"),
            );
            writeln!(out, "    {what:<22} ts {}", m.ts)?;
        }
        if msgs.len() > per_channel {
            writeln!(out, "    ... {} more", msgs.len() - per_channel)?;
        }
    }
    if !any {
        writeln!(out, "  (none)")?;
    }
    let (total, assumed) = match total {
        Some(t) => (t, ""),
        None => (
            default_total(snap),
            " (assumed: nodes x 1000; pass --total)",
        ),
    };
    writeln!(
        out,
        "\nmoney: balances {balances} + in flight {in_flight} = {}, expected {total}{assumed}",
        balances + in_flight
    )?;
    writeln!(out, "\nverification:")?;
    let mut ok = true;
    for (name, r) in verify(snap, total) {
        match r {
            Ok(()) => writeln!(out, "  ok    {name}")?,
            Err(e) => {
                ok = false;
                writeln!(out, "  FAIL  {name}: {e}")?;
            }
        }
    }
    Ok(ok)
}
