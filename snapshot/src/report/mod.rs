//! Latency reports: HdrHistogram percentile text (`.hgrm`), interval logs (`.hlog`), JSON
//! summaries with buckets (the `shutter` binary draws the SVG plots).
//!
//! Histograms record microseconds. Per-node histograms are merged with
//! [`hdrhistogram::Histogram::add`] (see [`merge`]); percentiles are never averaged.
//! Delivery latency is measured from the sender's stamp of the first transmission to the
//! moment the whole message is handed to the receiver, so retransmission delay is included
//! and coordinated omission does not hide it.

mod date;
mod hgrm;
mod hlog;

pub use date::rfc3339;
pub use hgrm::{HgrmRow, PercentileStep, parse_hgrm, percentile_steps, write_hgrm};
pub use hlog::{IntervalLog, read_hlog};

use hdrhistogram::Histogram;
use serde::Serialize;

/// A new latency histogram in microseconds: 1 µs to 1 hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, shutter_transport::core::LATENCY_MAX_US, 3)
        .expect("static bounds are valid")
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

/// Percentile summary of a histogram, as it appears in JSON reports and the terminal table
/// (the levels `wrk2 --latency` prints: 50, 75, 90, 99, 99.9, 99.99 and 100%).
///
/// Each percentile is HdrHistogram's `getValueAtPercentile`: the highest value equivalent
/// to the bucket where the cumulative count first reaches `p` x total, so p50, p75 and p90
/// equal the `.hgrm` rows at 0.5, 0.75 and 0.9.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Percentiles {
    /// Number of recorded values.
    pub count: u64,
    /// Smallest value (µs).
    pub min: u64,
    /// Median (µs).
    pub p50: u64,
    /// 75th percentile (µs).
    #[serde(default)]
    pub p75: u64,
    /// 90th percentile (µs).
    pub p90: u64,
    /// 99th percentile (µs).
    pub p99: u64,
    /// 99.9th percentile (µs).
    pub p999: u64,
    /// 99.99th percentile (µs).
    #[serde(default)]
    pub p9999: u64,
    /// Largest value (µs; the highest value equivalent to the largest recorded one, like
    /// the `.hgrm`'s last row and `Max`, as [`Histogram::max`] returns it).
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
            p50: value_at_percentile(h, 50.0),
            p75: value_at_percentile(h, 75.0),
            p90: value_at_percentile(h, 90.0),
            p99: value_at_percentile(h, 99.0),
            p999: value_at_percentile(h, 99.9),
            p9999: value_at_percentile(h, 99.99),
            max: h.max(),
            mean: mean(h),
        }
    }
}

/// HdrHistogram's `getValueAtPercentile(percentile)` (0..=100), computed the way the Java
/// reference does: the count to reach is `ceil(nextDown(percentile) x total / 100)` (at
/// least 1); the result is the highest value equivalent to the bucket reaching it (the
/// lowest, for percentile 0). 0 for an empty histogram.
///
/// For the levels in [`Percentiles`] this agrees with the hdrhistogram crate's
/// `value_at_quantile` (checked up to a million values), but not for every level: of the
/// values 1..=100, `value_at_quantile(0.07)` is 8 (`0.07 x 100` is `7.000000000000001` in
/// floating point), Java's `getValueAtPercentile(7)` and this function return 7.
pub fn value_at_percentile(h: &Histogram<u64>, percentile: f64) -> u64 {
    let next_down = if percentile > 0.0 {
        f64::from_bits(percentile.to_bits() - 1)
    } else {
        percentile
    };
    let requested = next_down.clamp(0.0, 100.0);
    let count_at = ((requested * h.len() as f64 / 100.0).ceil() as u64).max(1);
    let mut total = 0u64;
    for v in h.iter_recorded() {
        total += v.count_at_value();
        if total >= count_at {
            let value = v.value_iterated_to();
            return if percentile == 0.0 {
                h.lowest_equivalent(value)
            } else {
                value
            };
        }
    }
    0
}

/// The mean as HdrHistogram's `getMean` computes it: the sum of each bucket's median
/// equivalent value times its count, divided once by the total. The hdrhistogram crate's
/// `mean` divides every term instead, which differs in the last bits (never in the printed
/// three decimals of the reference fixtures, but it could at a rounding boundary).
pub fn mean(h: &Histogram<u64>) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    let total: f64 = h
        .iter_recorded()
        .map(|v| h.median_equivalent(v.value_iterated_to()) as f64 * v.count_at_value() as f64)
        .sum();
    total / h.len() as f64
}

/// The standard deviation as HdrHistogram's `getStdDeviation` computes it (around
/// [`mean`]).
pub fn std_deviation(h: &Histogram<u64>) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    let mean = mean(h);
    let total: f64 = h
        .iter_recorded()
        .map(|v| {
            let d = h.median_equivalent(v.value_iterated_to()) as f64 - mean;
            d * d * v.count_at_value() as f64
        })
        .sum();
    (total / h.len() as f64).sqrt()
}

/// One histogram bucket in the JSON report: `count` values above the previous bucket's
/// `upper_us` and at most this one's. Counts are per bucket, not cumulative (so the bound
/// is not called `le`, which in Prometheus means a cumulative count).
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Bucket {
    /// Upper bound of the bucket (µs, inclusive).
    pub upper_us: u64,
    /// Values in the bucket (not cumulative).
    pub count: u64,
}

/// JSON form of one latency histogram: percentiles plus log-spaced buckets.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct HistogramJson {
    /// What was measured, e.g. `delivery_latency_us`.
    pub name: String,
    /// Percentiles.
    pub percentiles: Percentiles,
    /// Buckets with power-of-two upper bounds (empty ones omitted), counts per bucket.
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
                    upper_us: v.value_iterated_to(),
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
    fn percentiles_are_javas_get_value_at_percentile() {
        let mut h = new_histogram();
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        let p = Percentiles::of(&h);
        assert_eq!(
            (p.p50, p.p75, p.p90, p.p99, p.p999, p.p9999, p.max),
            (500, 750, 900, 990, 999, 1000, 1000)
        );
        assert_eq!(value_at_percentile(&h, 0.0), 1);
        let mut hundred = new_histogram();
        for v in 1..=100 {
            hundred.record(v).unwrap();
        }
        assert_eq!(hundred.value_at_quantile(0.07), 8, "the crate's rounding");
        assert_eq!(value_at_percentile(&hundred, 7.0), 7);
        assert_eq!(value_at_percentile(&new_histogram(), 50.0), 0);
        assert_eq!(mean(&h), 500.5);
        assert!((std_deviation(&h) - 288.6749).abs() < 1e-3);
    }

    #[test]
    fn json_buckets_cover_every_value() {
        let mut h = new_histogram();
        for v in [1u64, 2, 3, 900, 70_000] {
            h.record(v).unwrap();
        }
        let j = HistogramJson::of("x", &h);
        assert_eq!(j.buckets.iter().map(|b| b.count).sum::<u64>(), 5);
        assert!(j.buckets.windows(2).all(|w| w[0].upper_us < w[1].upper_us));
        assert_eq!(j.percentiles.max, h.max());
    }
}
