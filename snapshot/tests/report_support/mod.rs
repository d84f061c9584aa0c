//! The report fixtures (`tests/fixtures/report/`): interval logs written by shutter and
//! what HdrHistogram's reference tool prints for them. Shared with the CLI's tests.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use hdrhistogram::Histogram;
use shutter_snapshot::report::{merge, read_hlog};

/// The fixture directory.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/report")
        .canonicalize()
        .unwrap_or_else(|_| {
            // From the CLI package (`snapshot/cli`), the fixtures are one level up.
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/report")
        })
}

/// The histograms of `tag` in `log`, merged as `shutter report` and the Java processor do.
pub fn merged(log: &str, tag: &str) -> Histogram<u64> {
    let bytes = std::fs::read(fixtures().join(log)).unwrap();
    let intervals = read_hlog(&bytes).unwrap();
    let parts: Vec<_> = intervals
        .iter()
        .filter(|(t, _)| t == tag)
        .map(|(_, h)| h)
        .collect();
    assert!(!parts.is_empty(), "{log} has no interval tagged {tag}");
    merge(parts)
}

/// The reference output without the processor's own `#[StartTime: ...]` line (it echoes
/// the log's start; `outputPercentileDistribution` itself does not print it).
pub fn reference(log: &str, tag: &str) -> String {
    let stem = log.trim_end_matches(".hlog");
    let path = fixtures().join(format!("{stem}.{tag}.hgrm"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.starts_with("#[StartTime:"))
        .map(|l| format!("{l}\n"))
        .collect()
}
