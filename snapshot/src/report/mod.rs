//! Latency reports: HdrHistogram percentile text (`.hgrm`), interval logs (`.hlog`), JSON
//! summaries with buckets, and (feature `cli`) SVG percentile plots.
//!
//! Histograms record microseconds. Per-node histograms are merged with
//! [`hdrhistogram::Histogram::add`] (see [`merge`]); percentiles are never averaged.
//! Delivery latency is measured from the sender's stamp of the first transmission to the
//! moment the whole message is handed to the receiver, so retransmission delay is included
//! and coordinated omission does not hide it.

mod hgrm;
mod hlog;
#[cfg(feature = "cli")]
mod svg;

pub use hgrm::{HgrmRow, parse_hgrm, write_hgrm};
pub use hlog::{IntervalLog, read_hlog};
#[cfg(feature = "cli")]
pub use svg::write_percentile_svg;

use hdrhistogram::Histogram;
use serde::Serialize;

/// A new latency histogram in microseconds: 1 µs to 1 hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds are valid")
}

/// Merges histograms (e.g. one per node) into one with `add`.
pub fn merge<'a>(parts: impl IntoIterator<Item = &'a Histogram<u64>>) -> Histogram<u64> {
    let mut total = new_histogram();
    // Auto-resizing, `add` cannot fail for lack of range, whatever the parts' bounds.
    total.auto(true);
    for h in parts {
        let _ = total.add(h);
    }
    total
}

/// Percentile summary of a histogram, as it appears in JSON reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Percentiles {
    /// Number of recorded values.
    pub count: u64,
    /// Smallest value (µs).
    pub min: u64,
    /// Median (µs).
    pub p50: u64,
    /// 90th percentile (µs).
    pub p90: u64,
    /// 99th percentile (µs).
    pub p99: u64,
    /// 99.9th percentile (µs).
    pub p999: u64,
    /// Largest value (µs).
    pub max: u64,
    /// Mean (µs).
    pub mean: f64,
}

impl Percentiles {
    /// Summarises `h` (all zero when empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            min: h.min(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// One histogram bucket in the JSON report: `count` values at most `le` µs (and above the
/// previous bucket's `le`).
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Bucket {
    /// Upper bound of the bucket (µs, inclusive).
    pub le: u64,
    /// Values in the bucket.
    pub count: u64,
}

/// JSON form of one latency histogram: percentiles plus log-spaced buckets.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct HistogramJson {
    /// What was measured, e.g. `delivery_latency_us`.
    pub name: String,
    /// Percentiles.
    pub percentiles: Percentiles,
    /// Buckets with power-of-two upper bounds (empty ones omitted).
    pub buckets: Vec<Bucket>,
}

impl HistogramJson {
    /// Builds the JSON form of `h`.
    pub fn of(name: &str, h: &Histogram<u64>) -> Self {
        let buckets = if h.is_empty() {
            Vec::new()
        } else {
            h.iter_log(1, 2.0)
                .filter(|v| v.count_since_last_iteration() > 0)
                .map(|v| Bucket {
                    le: v.value_iterated_to(),
                    count: v.count_since_last_iteration(),
                })
                .collect()
        };
        Self {
            name: name.to_string(),
            percentiles: Percentiles::of(h),
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counts_instead_of_averaging() {
        let mut a = new_histogram();
        let mut b = new_histogram();
        for v in 1..=100 {
            a.record(v).unwrap();
        }
        for _ in 0..100 {
            b.record(10_000).unwrap();
        }
        let m = merge([&a, &b]);
        assert_eq!(m.len(), 200);
        let p = Percentiles::of(&m);
        assert!(
            p.p50 <= 100,
            "median of the merged data, not of medians: {p:?}"
        );
        assert!(p.p90 >= 9_990);
    }

    #[test]
    fn json_buckets_cover_every_value() {
        let mut h = new_histogram();
        for v in [1u64, 2, 3, 900, 70_000] {
            h.record(v).unwrap();
        }
        let j = HistogramJson::of("x", &h);
        assert_eq!(j.buckets.iter().map(|b| b.count).sum::<u64>(), 5);
        assert!(j.buckets.windows(2).all(|w| w[0].le < w[1].le));
        assert_eq!(j.percentiles.max, h.max());
    }
}
