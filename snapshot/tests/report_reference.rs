//! Our `.hgrm` percentile distributions against HdrHistogram's reference implementation.
//!
//! `tests/fixtures/report/` holds interval logs written by shutter (`demo.hlog` from a
//! `shutter demo` run, `synthetic.hlog` from [`synthetic_log`]) and, for each tag, what
//! HdrHistogram's Java `HistogramLogProcessor` prints for it
//! (`<log stem>.<tag>.hgrm`). The test renders our `.hgrm` for the same log and tag and
//! compares the text line by line; Java is only needed to regenerate the fixtures (see
//! `tests/fixtures/report/README.md`).

mod report_support;

use std::time::{Duration, SystemTime};

use report_support::{fixtures, merged, reference};
use shutter_snapshot::report::{
    IntervalLog, Percentiles, new_histogram, parse_hgrm, read_hlog, write_hgrm,
};

/// `(log, tag)` pairs with a reference output each.
const CASES: &[(&str, &str)] = &[
    ("demo.hlog", "delivery"),
    ("demo.hlog", "snapshot"),
    ("synthetic.hlog", "uniform"),
    ("synthetic.hlog", "tail"),
    ("synthetic.hlog", "ties"),
    ("synthetic.hlog", "seven"),
    ("synthetic.hlog", "single"),
    ("synthetic.hlog", "empty"),
];

fn ours(log: &str, tag: &str) -> String {
    let mut out = Vec::new();
    write_hgrm(&merged(log, tag), 1000.0, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn is_row(line: &str) -> bool {
    !line.trim().is_empty() && !line.starts_with('#') && !line.trim_start().starts_with("Value")
}

#[test]
fn hgrm_matches_hdrhistogram_reference_line_by_line() {
    let (mut rows, mut rows_matched, mut other, mut other_matched) = (0, 0, 0, 0);
    let mut diffs = Vec::new();
    for &(log, tag) in CASES {
        let ours = ours(log, tag);
        let reference = reference(log, tag);
        let (a, b): (Vec<&str>, Vec<&str>) = (ours.lines().collect(), reference.lines().collect());
        for i in 0..a.len().max(b.len()) {
            let (x, y) = (a.get(i).copied(), b.get(i).copied());
            let row = y.or(x).is_some_and(is_row);
            let same = x == y;
            if row {
                rows += 1;
                rows_matched += usize::from(same);
            } else {
                other += 1;
                other_matched += usize::from(same);
            }
            if !same {
                diffs.push(format!(
                    "{log} {tag} line {}:\n  ours      {}\n  reference {}",
                    i + 1,
                    x.unwrap_or("<none>"),
                    y.unwrap_or("<none>")
                ));
            }
        }
    }
    eprintln!(
        "{rows_matched} of {rows} rows and {other_matched} of {other} header/footer lines \
         match the reference"
    );
    assert!(
        diffs.is_empty(),
        "{} lines differ from HdrHistogram's HistogramLogProcessor:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

#[test]
fn summary_percentiles_agree_with_the_hgrm_rows() {
    for &(log, tag) in CASES {
        let h = merged(log, tag);
        let p = Percentiles::of(&h);
        let text = ours(log, tag);
        let rows = parse_hgrm(&text).unwrap();
        for (pct, value) in [(0.5, p.p50), (0.75, p.p75), (0.9, p.p90)] {
            // The 50/75/90% levels are rows of the distribution (5 ticks per half distance)
            // unless the last bucket came first: then the next row is the 100% one.
            if let Some(row) = rows.iter().find(|r| r.percentile >= pct) {
                assert_eq!(
                    row.value,
                    value as f64 / 1000.0,
                    "{log} {tag}: summary p{} vs .hgrm row {pct}",
                    pct * 100.0
                );
            } else {
                assert!(h.is_empty(), "{log} {tag}: no row at {pct}");
            }
        }
        if let Some(last) = rows.last() {
            assert_eq!(last.value, p.max as f64 / 1000.0, "{log} {tag}: max");
        }
    }
}

#[test]
fn interval_logs_start_with_the_standard_header() {
    for log in ["demo.hlog", "synthetic.hlog"] {
        let text = std::fs::read_to_string(fixtures().join(log)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "#[Histogram log format version 1.3]", "{log}");
        assert!(
            lines[2].starts_with("#[StartTime: ")
                && lines[2].contains(" (seconds since epoch), ")
                && lines[2].ends_with("]"),
            "{log}: {}",
            lines[2]
        );
        assert!(lines[3].starts_with("#[BaseTime: "), "{log}: {}", lines[3]);
        assert_eq!(
            lines[4],
            r#""StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram""#
        );
        assert!(lines[5..].iter().all(|l| l.starts_with("Tag=")), "{log}");
    }
}

/// The intervals of `synthetic.hlog`: fixed values (µs) chosen to exercise the percentile
/// iteration: exact percent boundaries (`uniform`), deep percentiles (`tail`), many levels
/// in one bucket (`ties`), a count that divides nothing (`seven`), one value, none.
fn synthetic_log() -> IntervalLog {
    let mut log = IntervalLog {
        start: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        intervals: Vec::new(),
    };
    let second = Duration::from_secs(1);
    let mut push = |i: u64, tag: &str, values: &mut dyn Iterator<Item = u64>| {
        let mut h = new_histogram();
        for v in values {
            h.record(v).unwrap();
        }
        log.push(Duration::from_secs(i), second, tag, h);
    };
    push(0, "uniform", &mut (1..=10_000));
    // Heavy tail without floating point: 100 µs << k with k geometric (p = 1/2), spread
    // uniformly inside [100 << k, 200 << k), from a fixed xorshift sequence.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..3 {
        let mut values = (0..100_000).map(|_| {
            let k = next().trailing_zeros().min(24);
            let base = 100u64 << k;
            base + next() % base
        });
        push(i, "tail", &mut values);
    }
    let ties = std::iter::repeat_n(5_000, 1_000)
        .chain(std::iter::repeat_n(100, 10))
        .chain([1_000_000]);
    push(0, "ties", &mut ties.into_iter());
    push(
        0,
        "seven",
        &mut [3_000, 5_000, 5_000, 8_000, 13_000, 21_000, 34_000].into_iter(),
    );
    push(0, "single", &mut [1_234].into_iter());
    push(0, "empty", &mut std::iter::empty());
    log
}

#[test]
fn synthetic_fixture_is_what_the_generator_writes() {
    let bytes = std::fs::read(fixtures().join("synthetic.hlog")).unwrap();
    let stored = read_hlog(&bytes).unwrap();
    let log = synthetic_log();
    assert_eq!(stored.len(), log.intervals.len());
    for ((tag, h), (_, _, want_tag, want)) in stored.iter().zip(&log.intervals) {
        assert_eq!(tag, want_tag);
        assert_eq!(h.len(), want.len(), "{tag}");
        let a: Vec<_> = h
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        let b: Vec<_> = want
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        assert_eq!(a, b, "{tag}");
    }
}

/// Rewrites `tests/fixtures/report/synthetic.hlog`; then regenerate the Java references
/// as `tests/fixtures/report/README.md` says.
#[test]
#[ignore = "regenerates a fixture"]
fn regenerate_synthetic_hlog() {
    let mut out = Vec::new();
    synthetic_log().write(&mut out).unwrap();
    std::fs::write(fixtures().join("synthetic.hlog"), out).unwrap();
}
