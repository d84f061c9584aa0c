//! Report directories: what `shutter demo --out DIR` writes and `shutter report` reads.
//!
//! | file | content |
//! |---|---|
//! | `delivery.hgrm` | transport delivery latency merged over all nodes (HdrHistogram percentile text, ms) |
//! | `snapshot.hgrm` | snapshot completion latency over all completed snapshots (ms) |
//! | `latency.hlog` | compressed V2 interval log, tags `delivery` and `snapshot`, one histogram per sampling interval (µs) |
//! | `report.json` | the demo [`Summary`] plus `histograms`: percentiles and log2 buckets of both |
//! | `latency.svg` | both percentile curves |
//!
//! `shutter report DIR` re-prints the summary table from `DIR/report.json`;
//! `shutter report FILE.hlog` merges each tag's intervals (with `add`) and prints their
//! percentiles.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::args::ReportArgs;
use crate::summary::{Summary, ms};
use shutter_snapshot::report::{
    HistogramJson, IntervalLog, Percentiles, merge, read_hlog, write_hgrm,
};

/// `report.json`: the summary (flattened, so the same keys as `--json`) plus histograms.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReportJson {
    /// The demo summary.
    #[serde(flatten)]
    pub summary: Summary,
    /// Delivery and snapshot latency with buckets.
    pub histograms: Vec<HistogramJson>,
}

/// Writes every report file into `dir` (created if needed).
pub fn write_dir(
    dir: &Path,
    summary: &Summary,
    delivery: &Histogram<u64>,
    snapshot: &Histogram<u64>,
    log: &IntervalLog,
) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        let p = dir.join(name);
        fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))
    };
    for (name, h) in [("delivery.hgrm", delivery), ("snapshot.hgrm", snapshot)] {
        let mut text = Vec::new();
        write_hgrm(h, 1000.0, &mut text)?;
        write(name, &text)?;
    }
    let mut hlog = Vec::new();
    log.write(&mut hlog)?;
    write("latency.hlog", &hlog)?;
    let json = ReportJson {
        summary: summary.clone(),
        histograms: vec![
            HistogramJson::of("delivery_latency_us", delivery),
            HistogramJson::of("snapshot_latency_us", snapshot),
        ],
    };
    write(
        "report.json",
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    let svg = dir.join("latency.svg");
    crate::svg::write_percentile_svg(
        &svg,
        "shutter latency by percentile",
        &[("delivery", delivery), ("snapshot", snapshot)],
    )
    .map_err(anyhow::Error::msg)?;
    Ok(())
}

/// `shutter report PATH`.
pub fn run(args: &ReportArgs) -> Result<ExitCode> {
    let path = &args.path;
    let is_hlog = path.extension().is_some_and(|e| e == "hlog");
    let mut out = std::io::stdout().lock();
    if is_hlog {
        let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let intervals =
            read_hlog(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut by_tag: BTreeMap<String, Vec<Histogram<u64>>> = BTreeMap::new();
        for (tag, h) in intervals {
            by_tag.entry(tag).or_default().push(h);
        }
        // The percentile list of the demo's table (wrk2's), in milliseconds.
        writeln!(
            out,
            "{:<12} {:>9} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "tag",
            "intervals",
            "count",
            "50% ms",
            "75% ms",
            "90% ms",
            "99% ms",
            "99.9% ms",
            "99.99% ms",
            "max ms"
        )?;
        for (tag, hs) in &by_tag {
            let p = Percentiles::of(&merge(hs));
            writeln!(
                out,
                "{:<12} {:>9} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
                if tag.is_empty() { "-" } else { tag },
                hs.len(),
                p.count,
                ms(p.p50),
                ms(p.p75),
                ms(p.p90),
                ms(p.p99),
                ms(p.p999),
                ms(p.p9999),
                ms(p.max)
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let file = if path.is_dir() {
        path.join("report.json")
    } else {
        path.to_path_buf()
    };
    let text = fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let report: ReportJson = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a shutter report.json", file.display()))?;
    let hist = report
        .histograms
        .iter()
        .find(|h| h.name == "snapshot_latency_us");
    report.summary.print_table_with(&mut out, hist)?;
    Ok(if report.summary.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
