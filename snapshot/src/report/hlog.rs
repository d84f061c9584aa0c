//! HdrHistogram interval logs (`.hlog`): one compressed V2 histogram per interval, the
//! format HdrHistogram's Java tools (HistogramLogAnalyzer, HistogramLogProcessor) read.
//!
//! A log starts like the ones Java's `HistogramLogWriter` writes (comment, format version,
//! start time, base time, legend):
//!
//! ```text
//! #shutter latency log; values in microseconds
//! #[Histogram log format version 1.3]
//! #[StartTime: 1700000000.000 (seconds since epoch), Tue Nov 14 22:13:20 UTC 2023]
//! #[BaseTime: 1700000000.000 (seconds since epoch)]
//! "StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"
//! Tag=delivery,0.000,1.003,54527.000,HISTFAAAAOp4nC2O...
//! ```
//!
//! Interval start timestamps are seconds since the BaseTime (the run's start), as the
//! BaseTime line says; `Interval_Max` is in microseconds like the histograms.

use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};

/// An interval log under construction: histograms per time interval, tagged by metric.
#[derive(Debug, Default)]
pub struct IntervalLog {
    /// Wall-clock start of the run (the log's StartTime).
    pub start: Option<SystemTime>,
    /// `(offset from start, interval length, tag, histogram)` in recording order.
    pub intervals: Vec<(Duration, Duration, String, Histogram<u64>)>,
}

impl IntervalLog {
    /// Adds one interval's histogram under `tag` (letters, digits, `_`; no spaces/commas).
    pub fn push(&mut self, offset: Duration, length: Duration, tag: &str, h: Histogram<u64>) {
        self.intervals.push((offset, length, tag.to_string(), h));
    }

    /// Writes the log: the standard header lines (see the module documentation), then one
    /// line per interval. Without a [`start`](Self::start) the StartTime and BaseTime lines
    /// are left out (interval timestamps then count from the epoch, as the format says).
    pub fn write(&self, out: &mut impl Write) -> io::Result<()> {
        // The hdrhistogram crate's builder writes comments and a StartTime line without the
        // date, but neither the format version nor the legend; write the header ourselves
        // the way Java's HistogramLogWriter does, then let the crate write the intervals.
        writeln!(out, "#shutter latency log; values in microseconds")?;
        writeln!(out, "#[Histogram log format version {LOG_FORMAT_VERSION}]")?;
        if let Some(start) = self.start {
            let since_epoch = start
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            // Milliseconds, as Java logs them.
            let millis = since_epoch.as_millis() as u64;
            let secs = format!("{}.{:03}", millis / 1000, millis % 1000);
            writeln!(
                out,
                "#[StartTime: {secs} (seconds since epoch), {}]",
                java_date_utc(millis / 1000)
            )?;
            writeln!(out, "#[BaseTime: {secs} (seconds since epoch)]")?;
        }
        writeln!(out, "{LEGEND}")?;
        let mut ser = V2DeflateSerializer::new();
        let mut w = IntervalLogWriterBuilder::new().begin_log_with(out, &mut ser)?;
        for (offset, length, tag, h) in &self.intervals {
            let tag = Tag::new(tag).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("bad tag {tag:?}"))
            })?;
            w.write_histogram(h, *offset, *length, Some(tag))
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(())
    }
}

/// The log format version the header names (that of HdrHistogram 2.1.x's writer).
pub(crate) const LOG_FORMAT_VERSION: &str = "1.3";

/// The CSV legend line Java's `HistogramLogWriter::outputLegend` writes before the intervals.
pub(crate) const LEGEND: &str =
    "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"";

/// `secs` since the epoch as Java's `Date::toString` prints it in UTC, e.g.
/// `Tue Nov 14 22:13:20 UTC 2023`.
fn java_date_utc(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm), for days >= 0.
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{} {} {day:02} {:02}:{:02}:{:02} UTC {year}",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3_600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Reads the histograms of an interval log back: `(tag, histogram)` per interval.
pub fn read_hlog(bytes: &[u8]) -> Result<Vec<(String, Histogram<u64>)>, String> {
    let mut de = Deserializer::new();
    let mut out = Vec::new();
    for entry in IntervalLogIterator::new(bytes) {
        match entry.map_err(|e| format!("interval log: {e:?}"))? {
            LogEntry::Interval(i) => {
                let raw = BASE64
                    .decode(i.encoded_histogram())
                    .map_err(|e| format!("interval log base64: {e}"))?;
                let h: Histogram<u64> = de
                    .deserialize(&mut &raw[..])
                    .map_err(|e| format!("interval log histogram: {e:?}"))?;
                out.push((
                    i.tag().map(|t| t.as_str().to_string()).unwrap_or_default(),
                    h,
                ));
            }
            LogEntry::StartTime(_) | LogEntry::BaseTime(_) => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::new_histogram;

    #[test]
    fn writes_compressed_v2_and_reads_back() {
        let mut log = IntervalLog {
            start: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            ..Default::default()
        };
        for i in 0..3u64 {
            let mut h = new_histogram();
            for v in 1..=100 {
                h.record(v * (i + 1)).unwrap();
            }
            log.push(
                Duration::from_secs(i),
                Duration::from_secs(1),
                "delivery",
                h,
            );
        }
        let mut out = Vec::new();
        log.write(&mut out).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..5],
            [
                "#shutter latency log; values in microseconds",
                "#[Histogram log format version 1.3]",
                "#[StartTime: 1700000000.000 (seconds since epoch), Tue Nov 14 22:13:20 UTC 2023]",
                "#[BaseTime: 1700000000.000 (seconds since epoch)]",
                "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"",
            ]
        );
        assert!(
            lines[5].starts_with("Tag=delivery,0.000,1.000,100.000,"),
            "{text}"
        );
        // Compressed V2 payloads start with the deflate cookie 0x1c849304 -> base64 "HISTF".
        assert!(text.contains(",HISTF"), "{text}");
        let back = read_hlog(&out).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[2].0, "delivery");
        assert_eq!(back[2].1.max(), log.intervals[2].3.max());
        assert_eq!(back[1].1.len(), 100);
    }

    #[test]
    fn dates_print_like_java() {
        assert_eq!(java_date_utc(0), "Thu Jan 01 00:00:00 UTC 1970");
        assert_eq!(java_date_utc(951_825_599), "Tue Feb 29 11:59:59 UTC 2000");
        assert_eq!(java_date_utc(1_796_141_327), "Tue Dec 01 16:08:47 UTC 2026");
        assert_eq!(java_date_utc(4_102_444_800), "Fri Jan 01 00:00:00 UTC 2100");
    }

    #[test]
    fn log_without_start_time_still_has_version_and_legend() {
        let mut log = IntervalLog::default();
        log.push(Duration::ZERO, Duration::from_secs(1), "x", new_histogram());
        let mut out = Vec::new();
        log.write(&mut out).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(!text.contains("#[StartTime"), "{text}");
        assert_eq!(text.lines().nth(2), Some(LEGEND));
        assert_eq!(read_hlog(&out).unwrap().len(), 1);
    }
}
