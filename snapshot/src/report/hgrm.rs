//! The HdrHistogram percentile-distribution text (`.hgrm`), as `wrk2 --latency` and
//! HdrHistogram's `outputPercentileDistribution` print it, and a parser for it.

use std::io::{self, Write};

use hdrhistogram::Histogram;

/// One step of HdrHistogram's percentile iteration (`PercentileIterator`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PercentileStep {
    /// The highest value equivalent to the bucket where the cumulative count first reaches
    /// `level` % of the total (histogram units).
    pub value: u64,
    /// The percentile level iterated to, in percent (0..=100).
    pub level: f64,
    /// Values in that bucket and below.
    pub total_count: u64,
}

/// The rows of HdrHistogram's `outputPercentileDistribution`, computed as Java's
/// `PercentileIterator` does.
///
/// The levels start at 0% and advance by `100 / (ticks x 2^(halvings + 1))` percent, where
/// `halvings` counts how often the distance to 100% has been halved, so there are `ticks`
/// steps per half distance (0, 10, ..., 50, 55, ..., 75, 77.5, ...). The arithmetic is done
/// in percent like Java's, where these levels are exact binary fractions; summing the same
/// steps as fractions (0.1 + 0.1 + ...) drifts (`0.9000000000000001`) and then a level that
/// is exactly reached (e.g. 90% of 20 values) skips to the next bucket. A level is reached
/// at the first non-empty bucket whose cumulative count makes `100 x count / total >= level`;
/// several levels can be reached in one bucket. Once the last bucket is reached, one more
/// step at 100% ends the iteration. Empty for an empty histogram.
pub fn percentile_steps(h: &Histogram<u64>, ticks_per_half_distance: u32) -> Vec<PercentileStep> {
    let total = h.len();
    let mut steps = Vec::new();
    if total == 0 {
        return steps;
    }
    let mut level = 0.0f64;
    let mut cumulative = 0u64;
    for v in h.iter_recorded() {
        cumulative = cumulative.saturating_add(v.count_at_value());
        let value = v.value_iterated_to();
        while 100.0 * cumulative as f64 / total as f64 >= level {
            steps.push(PercentileStep {
                value,
                level,
                total_count: cumulative,
            });
            if cumulative >= total {
                // Java's iterator has no more counts to visit: one last step to 100%.
                steps.push(PercentileStep {
                    value,
                    level: 100.0,
                    total_count: cumulative,
                });
                return steps;
            }
            level = next_level(level, ticks_per_half_distance);
        }
    }
    steps
}

/// `PercentileIterator.incrementIterationLevel`, operation for operation (natural logs,
/// truncating casts, wrapping integer arithmetic), so the levels are bit-identical.
fn next_level(level: f64, ticks_per_half_distance: u32) -> f64 {
    let halvings = ((100.0 / (100.0 - level)).ln() / 2f64.ln()) as i64;
    let slices = 2f64.powf(halvings.wrapping_add(1) as f64) as i64;
    let ticks = i64::from(ticks_per_half_distance).wrapping_mul(slices);
    level + 100.0 / ticks as f64
}

/// Writes `h` as HdrHistogram's `outputPercentileDistribution(out, 5, value_scale)` does,
/// byte for byte: the header, one row per [`percentile_steps`] level
/// (`%12.<sigfig>f %2.12f %10d %14.2f`, the last row without `1/(1-Percentile)`) and the
/// `Mean`/`StdDeviation`, `Max`/`Total count` and `Buckets`/`SubBuckets` footer. Values are
/// divided by `value_scale`: 1000.0 prints µs as milliseconds, as wrk2 does.
pub fn write_hgrm(h: &Histogram<u64>, value_scale: f64, out: &mut impl Write) -> io::Result<()> {
    let digits = usize::from(h.sigfig());
    let fixed =
        |x: f64, decimals: usize, width: usize| format!("{:>width$}", java_fixed(x, decimals));
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    for step in percentile_steps(h, 5) {
        let value = fixed(step.value as f64 / value_scale, digits, 12);
        let percentile = fixed(step.level / 100.0, 12, 2);
        if step.level != 100.0 {
            let inverse = fixed(1.0 / (1.0 - step.level / 100.0), 2, 14);
            writeln!(
                out,
                "{value} {percentile} {:>10} {inverse}",
                step.total_count
            )?;
        } else {
            writeln!(out, "{value} {percentile} {:>10}", step.total_count)?;
        }
    }
    let max = if h.is_empty() { 0 } else { h.max() };
    writeln!(
        out,
        "#[Mean    = {}, StdDeviation   = {}]",
        fixed(super::mean(h) / value_scale, digits, 12),
        fixed(super::std_deviation(h) / value_scale, digits, 12)
    )?;
    writeln!(
        out,
        "#[Max     = {}, Total count    = {:>12}]",
        fixed(max as f64 / value_scale, digits, 12),
        h.len()
    )?;
    // HdrHistogram sizes sub-buckets as the power of two covering 2 * 10^sigfig.
    let sub_buckets = (2.0 * 10f64.powi(i32::from(h.sigfig())))
        .log2()
        .ceil()
        .exp2() as u64;
    writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {sub_buckets:>12}]",
        h.buckets()
    )
}

/// `x` with `decimals` digits after the point, as Java's `String.format("%.Nf", x)` prints
/// it: Java rounds the shortest decimal representation of `x` half up, Rust's `{:.N}`
/// rounds the exact binary value half to even. They differ when the shortest digits end in
/// a 5 just past the last printed place, e.g. the level 99.99267578125% prints as
/// `0.999926757813` in Java but `0.999926757812` with `{:.12}`.
fn java_fixed(x: f64, decimals: usize) -> String {
    if x.is_nan() {
        return "NaN".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    // Shortest round-trip digits d1.d2d3...e<exp>.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').expect("LowerExp has an exponent");
    let exp: i64 = exp.parse().expect("LowerExp exponent is an integer");
    let mut digits: Vec<u8> = mantissa
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    // Digits before the point: exp + 1 (none or "negative" for values below 1).
    let mut int_len = exp + 1;
    let keep = int_len + decimals as i64;
    if keep < 0 {
        digits.clear();
    } else {
        let keep = keep as usize;
        if keep < digits.len() {
            let round_up = digits[keep] >= 5;
            digits.truncate(keep);
            if round_up {
                let mut i = keep;
                loop {
                    if i == 0 {
                        digits.insert(0, 1);
                        int_len += 1;
                        break;
                    }
                    i -= 1;
                    if digits[i] == 9 {
                        digits[i] = 0;
                    } else {
                        digits[i] += 1;
                        break;
                    }
                }
            }
        }
    }
    // Place the digits: value = 0.d1d2... x 10^int_len.
    let digit = |i: i64| -> char {
        if i >= 0 && (i as usize) < digits.len() {
            char::from(b'0' + digits[i as usize])
        } else {
            '0'
        }
    };
    let mut out = String::new();
    if x.is_sign_negative() {
        out.push('-');
    }
    if int_len <= 0 {
        out.push('0');
    } else {
        out.extend((0..int_len).map(digit));
    }
    if decimals > 0 {
        out.push('.');
        out.extend((int_len..int_len + decimals as i64).map(digit));
    }
    out
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
    fn java_fixed_rounds_the_shortest_digits_half_up() {
        for (x, d, want) in [
            (0.0, 3, "0.000"),
            (1.234, 3, "1.234"),
            (189_267.967, 3, "189267.967"),
            (0.0625, 3, "0.063"),
            (0.9999267578125, 12, "0.999926757813"),
            (0.999999, 3, "1.000"),
            (9.9996, 3, "10.000"),
            (0.0004, 3, "0.000"),
            (0.0005, 3, "0.001"),
            (0.00001, 2, "0.00"),
            (123.0, 0, "123"),
            (1.0 / (1.0 - 0.55), 2, "2.22"),
            (1e21, 1, "1000000000000000000000.0"),
            (-0.5, 0, "-1"),
            (f64::INFINITY, 2, "Infinity"),
        ] {
            assert_eq!(java_fixed(x, d), want, "{x} to {d} places");
        }
    }

    #[test]
    fn levels_are_exact_in_percent() {
        let mut h = new_histogram();
        for v in 1..=20u64 {
            h.record(v * 1000).unwrap();
        }
        let steps = percentile_steps(&h, 5);
        let levels: Vec<f64> = steps.iter().map(|s| s.level).collect();
        assert_eq!(
            levels[..13],
            [
                0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 55.0, 60.0, 65.0, 70.0, 75.0, 77.5, 80.0
            ]
        );
        // 90% of 20 values is the 18th value, not the 19th.
        let p90 = steps.iter().find(|s| s.level == 90.0).unwrap();
        assert_eq!(
            (p90.value, p90.total_count),
            (h.highest_equivalent(18_000), 18)
        );
        let last = steps.last().unwrap();
        assert_eq!((last.level, last.total_count), (100.0, 20));
    }

    #[test]
    fn half_distance_boundaries_count_their_halvings() {
        // At 50%, 75%, 87.5%, ... `ln(2^k) / ln(2)` must truncate to k, as in Java; a libm
        // whose `ln` broke this would double the tick size from there on.
        let mut level = 0.0;
        for k in 1..=40 {
            level += (100.0 - level) / 2.0;
            assert_eq!(100.0 / (100.0 - level), 2f64.powi(k));
            let halvings = ((100.0 / (100.0 - level)).ln() / 2f64.ln()) as i64;
            assert_eq!(halvings, i64::from(k), "at {level}%");
        }
        assert_eq!(next_level(50.0, 5), 55.0);
        assert_eq!(next_level(87.5, 5), 88.75);
    }

    #[test]
    fn parse_errors_name_the_line() {
        let err = parse_hgrm("Value Percentile\n\n 1.0 x 3\n").unwrap_err();
        assert!(err.starts_with("line 3: bad percentile"), "{err}");
    }
}
