//! The HdrHistogram percentile-distribution text (`.hgrm`), as `wrk2 --latency` and
//! HdrHistogram's `outputPercentileDistribution` print it, and a parser for it.

use std::io::{self, Write};

use hdrhistogram::Histogram;

/// Writes `h` (values in µs) as a percentile distribution with values in milliseconds
/// (`value_scale` = 1000.0, as wrk2 prints) or any other unit ratio.
pub fn write_hgrm(h: &Histogram<u64>, value_scale: f64, out: &mut impl Write) -> io::Result<()> {
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let value = h.highest_equivalent(v.value_iterated_to()) as f64 / value_scale;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                writeln!(
                    out,
                    "{:12.3} {:2.12} {:10} {:14.2}",
                    value,
                    q,
                    total,
                    1.0 / (1.0 - q)
                )?;
            } else {
                writeln!(out, "{value:12.3} {q:2.12} {total:10}")?;
            }
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            h.mean() / value_scale,
            h.stdev() / value_scale,
            h.highest_equivalent(h.max()) as f64 / value_scale,
        )
    };
    // HdrHistogram sizes sub-buckets as the power of two covering 2 * 10^sigfig.
    let sub_buckets = (2.0 * 10f64.powi(h.sigfig() as i32)).log2().ceil().exp2() as u64;
    writeln!(
        out,
        "#[Mean    = {mean:12.3}, StdDeviation   = {stdev:12.3}]"
    )?;
    writeln!(
        out,
        "#[Max     = {max:12.3}, Total count    = {:12}]",
        h.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {sub_buckets:12}]",
        h.buckets()
    )
}

/// One data row of a `.hgrm` file.
#[derive(Clone, Debug, PartialEq)]
pub struct HgrmRow {
    /// Value at this percentile (in the file's unit).
    pub value: f64,
    /// Percentile as a fraction in `[0, 1]`.
    pub percentile: f64,
    /// Values at or below `value`.
    pub total_count: u64,
}

/// Parses the data rows of a `.hgrm` text; errors name the offending line (1-based).
pub fn parse_hgrm(text: &str) -> Result<Vec<HgrmRow>, String> {
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with("Value") {
            continue;
        }
        let cols: Vec<&str> = t.split_whitespace().collect();
        if cols.len() < 3 {
            return Err(format!(
                "line {}: expected at least 3 columns: {t:?}",
                n + 1
            ));
        }
        let bad = |what: &str| format!("line {}: bad {what}: {t:?}", n + 1);
        let row = HgrmRow {
            value: cols[0].parse().map_err(|_| bad("value"))?,
            percentile: cols[1].parse().map_err(|_| bad("percentile"))?,
            total_count: cols[2].parse().map_err(|_| bad("total count"))?,
        };
        if !(0.0..=1.0).contains(&row.percentile) {
            return Err(bad("percentile (not in 0..=1)"));
        }
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::new_histogram;

    #[test]
    fn round_trips_and_is_monotone() {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            h.record(v * 10).unwrap();
        }
        let mut out = Vec::new();
        write_hgrm(&h, 1000.0, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
        assert!(text.contains("#[Max     =      100.031, Total count    =        10000]"));
        assert!(text.contains("SubBuckets     =         2048]"));
        let rows = parse_hgrm(&text).unwrap();
        assert!(rows.len() > 20);
        assert!(rows.windows(2).all(|w| w[0].value <= w[1].value
            && w[0].percentile <= w[1].percentile
            && w[0].total_count <= w[1].total_count));
        let last = rows.last().unwrap();
        assert_eq!(last.total_count, 10_000);
        assert_eq!(last.percentile, 1.0);
        // The median row is near 50 ms.
        let median = rows.iter().find(|r| r.percentile >= 0.5).unwrap();
        assert!((median.value - 50.0).abs() < 0.1, "{median:?}");
    }

    #[test]
    fn empty_histogram_still_has_header_and_footer() {
        let mut out = Vec::new();
        write_hgrm(&new_histogram(), 1000.0, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(parse_hgrm(&text).unwrap(), vec![]);
        assert!(text.contains("Total count    =            0"));
    }

    #[test]
    fn parse_errors_name_the_line() {
        let err = parse_hgrm("Value Percentile\n\n 1.0 x 3\n").unwrap_err();
        assert!(err.starts_with("line 3: bad percentile"), "{err}");
    }
}
