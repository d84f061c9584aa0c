//! The demo's result: a flat JSON summary (what `--json` writes and `report.json`
//! embeds) and its human table.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use shutter_snapshot::report::Percentiles;

/// The faults a demo ran under.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultSummary {
    /// Loss probability.
    pub loss: f64,
    /// Duplication probability.
    pub dup: f64,
    /// Reordering probability.
    pub reorder: f64,
    /// Corruption probability.
    pub corrupt: f64,
    /// Jitter in milliseconds.
    pub jitter_ms: f64,
    /// Fixed delay in milliseconds.
    pub delay_ms: f64,
    /// Partition flags as given.
    pub partitions: Vec<String>,
}

/// The version of the JSON layout (`--json`, `report.json`); raised when a key changes
/// meaning or goes. 2: `schema_version`, `tool`, `started_at`, `command_line` added;
/// histogram buckets keyed `upper_us` (per bucket) instead of `le`.
pub const SCHEMA_VERSION: u32 = 2;

/// Everything a demo run measured. Latencies are in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// [`SCHEMA_VERSION`] of the writer (absent, so 0, in files of older versions).
    #[serde(default)]
    pub schema_version: u32,
    /// The program and version that wrote it, e.g. `shutter 0.1.0`.
    #[serde(default)]
    pub tool: String,
    /// When the run started, RFC 3339 in UTC (`2026-12-01T20:50:00Z`).
    #[serde(default)]
    pub started_at: String,
    /// The command line that ran it, one argument per element.
    #[serde(default)]
    pub command_line: Vec<String>,
    /// Snapshot algorithm.
    pub algorithm: String,
    /// Seed.
    pub seed: u64,
    /// Nodes in the cluster.
    pub nodes: u32,
    /// Wall-clock length of the run in seconds.
    pub duration_s: f64,
    /// Injected faults.
    pub faults: FaultSummary,
    /// Snapshots initiated.
    pub snapshots_started: u64,
    /// Snapshots that completed (at their initiator).
    pub snapshots_completed: u64,
    /// Snapshots aborted (timeout, unreachable peer, ...).
    pub snapshots_aborted: u64,
    /// Aborted snapshots that failed the initiator's check before completion (a bug if
    /// ever non-zero: the run fails).
    #[serde(default)]
    pub snapshots_failed_check: u64,
    /// Snapshots that neither completed nor aborted before the demo gave up waiting.
    pub snapshots_unfinished: u64,
    /// Initiations the runtime refused.
    pub initiate_failures: u64,
    /// Completed snapshots whose cut and channel states are consistent.
    pub snapshots_consistent: u64,
    /// Completed snapshots violating the bank invariant (money conserved).
    pub invariant_violations: u64,
    /// Abort reasons and how often.
    pub abort_reasons: BTreeMap<String, u64>,
    /// First few verification failures, verbatim.
    pub failures: Vec<String>,
    /// Application messages (transfers) sent.
    pub messages_sent: u64,
    /// Application messages delivered.
    pub messages_delivered: u64,
    /// Application messages delivered more than once (must be 0).
    pub duplicates_delivered: u64,
    /// Transport retransmissions.
    pub retransmits: u64,
    /// Datagrams sent by the transports.
    pub datagrams_sent: u64,
    /// Bytes of those datagrams (headers, clocks, acks and payloads).
    #[serde(default)]
    pub bytes_sent: u64,
    /// PING frames sent (handshakes that learn a peer's life, keepalives): with every
    /// datagram lost they are all that is sent, since data waits for the handshake.
    #[serde(default)]
    pub pings_sent: u64,
    /// Datagrams dropped by the injected loss model or a partition.
    pub datagrams_dropped_by_faults: u64,
    /// Duplicate datagrams or fragments the transports discarded.
    pub transport_duplicates_dropped: u64,
    /// Corrupted datagrams the transports caught (by the AEAD tag, or the CRC32C when plain).
    pub corrupt_dropped: u64,
    /// Envelopes the runtimes could not decode (lean headers naming an unknown baseline
    /// included).
    pub malformed_envelopes: u64,
    /// Money in the system at the start.
    pub expected_total: u64,
    /// Sum of balances after transfers stopped and the network went quiet.
    pub final_total: u64,
    /// Whether the network went quiet (all sent transfers delivered) before the check.
    pub quiesced: bool,
    /// Initiation to completion, at the initiator.
    pub snapshot_latency_us: Percentiles,
    /// Transport delivery latency of every message (first transmission to delivery):
    /// transfers and the snapshots' control messages, so its count exceeds
    /// `messages_delivered`, which counts transfers only.
    pub delivery_latency_us: Percentiles,
    /// How latencies were measured.
    pub latency_note: String,
    /// Whether every check passed (the exit code is 0 exactly then).
    pub passed: bool,
}

impl Summary {
    /// Sets `passed` from the counters and returns it.
    pub fn judge(&mut self) -> bool {
        // A run that completed no snapshot proved nothing.
        self.passed = self.snapshots_completed > 0
            && self.snapshots_consistent == self.snapshots_completed
            && self.invariant_violations == 0
            && self.snapshots_failed_check == 0
            && self.duplicates_delivered == 0
            && self.snapshots_unfinished == 0
            && self.final_total == self.expected_total
            && self.snapshots_completed + self.snapshots_aborted == self.snapshots_started;
        self.passed
    }

    /// Prints the human summary table.
    pub fn print_table(&self, out: &mut impl Write) -> io::Result<()> {
        self.print_table_with(out, None)
    }

    /// Prints the human summary table with an ASCII histogram of the snapshot latency
    /// (when given) above the result.
    pub fn print_table_with(
        &self,
        out: &mut impl Write,
        snapshot_latency: Option<&shutter_snapshot::report::HistogramJson>,
    ) -> io::Result<()> {
        let f = &self.faults;
        writeln!(
            out,
            "shutter demo: {} nodes, {}, seed {}, {:.1} s",
            self.nodes, self.algorithm, self.seed, self.duration_s
        )?;
        write!(
            out,
            "faults: loss {}, dup {}, reorder {}, corrupt {}, jitter {} ms, delay {} ms",
            f.loss, f.dup, f.reorder, f.corrupt, f.jitter_ms, f.delay_ms
        )?;
        for p in &f.partitions {
            write!(out, ", partition {p}")?;
        }
        writeln!(out)?;
        writeln!(out)?;
        let row = |out: &mut dyn Write, k: &str, v: String| writeln!(out, "  {k:<28} {v}");
        row(out, "snapshots started", self.snapshots_started.to_string())?;
        row(out, "  completed", self.snapshots_completed.to_string())?;
        row(
            out,
            "  consistent",
            format!(
                "{} / {}",
                self.snapshots_consistent, self.snapshots_completed
            ),
        )?;
        row(
            out,
            "  invariant violations",
            self.invariant_violations.to_string(),
        )?;
        row(out, "  aborted", self.snapshots_aborted.to_string())?;
        for (why, n) in &self.abort_reasons {
            row(out, "", format!("{n} x {why}"))?;
        }
        if self.snapshots_unfinished > 0 {
            row(out, "  unfinished", self.snapshots_unfinished.to_string())?;
        }
        if self.initiate_failures > 0 {
            row(
                out,
                "  refused initiations",
                self.initiate_failures.to_string(),
            )?;
        }
        row(out, "transfers sent", self.messages_sent.to_string())?;
        row(out, "  delivered", self.messages_delivered.to_string())?;
        row(
            out,
            "  delivered twice",
            self.duplicates_delivered.to_string(),
        )?;
        row(
            out,
            "money (final / expected)",
            format!(
                "{} / {}{}",
                self.final_total,
                self.expected_total,
                if self.quiesced {
                    ""
                } else {
                    " (network not quiet)"
                }
            ),
        )?;
        row(out, "datagrams sent", self.datagrams_sent.to_string())?;
        row(
            out,
            "  bytes",
            match self.bytes_sent.checked_div(self.messages_delivered) {
                Some(per) => format!("{} ({per} per delivered transfer)", self.bytes_sent),
                None => format!("{} (no transfer delivered)", self.bytes_sent),
            },
        )?;
        row(
            out,
            "  dropped by faults",
            self.datagrams_dropped_by_faults.to_string(),
        )?;
        row(
            out,
            "  retransmits",
            if self.retransmits == 0 && self.messages_delivered == 0 && self.messages_sent > 0 {
                // `--loss 1` showed "retransmits 0" after 15 s, which read as a bug.
                "0 (no data sent: no peer answered the handshake)".to_string()
            } else {
                self.retransmits.to_string()
            },
        )?;
        row(out, "  pings", self.pings_sent.to_string())?;
        row(
            out,
            "  duplicates discarded",
            self.transport_duplicates_dropped.to_string(),
        )?;
        row(out, "  corrupt discarded", self.corrupt_dropped.to_string())?;
        writeln!(out)?;
        // The percentile list `wrk2 --latency` prints, one column per histogram.
        let (s, d) = (&self.snapshot_latency_us, &self.delivery_latency_us);
        writeln!(
            out,
            "  {:<20} {:>12} {:>12}",
            "latency (ms)", "snapshot", "delivery"
        )?;
        writeln!(out, "    {:<18} {:>12} {:>12}", "count", s.count, d.count)?;
        for (label, f) in [
            ("50%", (|p| p.p50) as fn(&Percentiles) -> u64),
            ("75%", |p| p.p75),
            ("90%", |p| p.p90),
            ("99%", |p| p.p99),
            ("99.9%", |p| p.p999),
            ("99.99%", |p| p.p9999),
            ("max", |p| p.max),
        ] {
            writeln!(out, "    {label:<18} {:>12} {:>12}", ms(f(s)), ms(f(d)))?;
        }
        writeln!(
            out,
            "  (delivery counts every transport message: transfers and snapshot control)"
        )?;
        writeln!(out)?;
        if let Some(h) = snapshot_latency {
            print_histogram(out, "snapshot latency", h)?;
            writeln!(out)?;
        }
        for failure in &self.failures {
            writeln!(out, "  FAILURE: {failure}")?;
        }
        writeln!(
            out,
            "result: {}",
            if self.passed {
                "PASS (every completed snapshot consistent, money conserved, no duplicate deliveries)"
            } else {
                "FAIL"
            }
        )
    }
}

/// A latency in µs as milliseconds with three decimals, as the summary tables print it.
pub(crate) fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

/// Prints `h`'s buckets as an ASCII bar chart (one row per non-empty power-of-two bucket,
/// bars scaled to the fullest one), under `title`.
pub fn print_histogram(
    out: &mut impl Write,
    title: &str,
    h: &shutter_snapshot::report::HistogramJson,
) -> io::Result<()> {
    const WIDTH: u64 = 40;
    writeln!(out, "  {title} (ms, values in (previous, upper])")?;
    if h.buckets.is_empty() {
        return writeln!(out, "    (no values)");
    }
    let most = h.buckets.iter().map(|b| b.count).max().unwrap_or(1).max(1);
    for b in &h.buckets {
        // At least one mark for a non-empty bucket, so rare tail values stay visible.
        let len = (b.count * WIDTH).div_ceil(most) as usize;
        writeln!(
            out,
            "    <= {:>10} {:>9} {}",
            ms(b.upper_us),
            b.count,
            "#".repeat(len)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_delivery_means_no_per_transfer_figure() {
        // `--loss 1` printed "17920 per delivered transfer" with nothing delivered.
        let s = Summary {
            bytes_sent: 17_920,
            messages_sent: 300,
            pings_sent: 240,
            ..Summary::default()
        };
        let mut out = Vec::new();
        s.print_table(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("17920 (no transfer delivered)"), "{text}");
        assert!(!text.contains("per delivered transfer"), "{text}");
        // Why the delivery histogram counts more than "delivered".
        assert!(
            text.contains("delivery counts every transport message"),
            "{text}"
        );
        assert!(
            text.contains("0 (no data sent: no peer answered the handshake)"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with("pings") && l.ends_with(" 240")),
            "{text}"
        );
    }

    #[test]
    fn ascii_histogram_scales_bars_and_keeps_rare_buckets() {
        let mut h = shutter_snapshot::report::new_histogram();
        for _ in 0..100 {
            h.record(1_000).unwrap();
        }
        h.record(400_000).unwrap();
        let j = shutter_snapshot::report::HistogramJson::of("x", &h);
        let mut out = Vec::new();
        print_histogram(&mut out, "snapshot latency", &j).unwrap();
        let text = String::from_utf8(out).unwrap();
        let rows: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(rows.len(), 2, "{text}");
        assert!(
            rows[0].ends_with(&"#".repeat(40)) && rows[0].contains(" 100 "),
            "{text}"
        );
        assert!(rows[1].ends_with(" #"), "{text}");
    }
}
