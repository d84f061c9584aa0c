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
    let (year, month, day) = super::date::civil_from_days(days);
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
                check_v2_header(&raw)?;
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

/// Largest histogram payload accepted from a file.
const MAX_PAYLOAD: u32 = 16 << 20;
/// Most counts a histogram read from a file may need (64 MiB of `u64`).
const MAX_COUNTS: usize = 8 << 20;
const V2_COOKIE: u32 = 0x1c84_9313;
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9314;

/// Refuses a V2 histogram whose header declares more than it is allowed to make the
/// reader allocate: `hdrhistogram`'s deserializer allocates the declared payload length
/// and the counts array of the declared bounds before reading any of it (found by the
/// `hlog` fuzz target: a 109-byte line made `shutter report` allocate 2.9 GB).
fn check_v2_header(raw: &[u8]) -> Result<(), String> {
    use std::io::Read as _;
    let bad = |what: &str| Err(format!("interval log histogram: {what}"));
    if raw.len() < 8 {
        return bad("too short");
    }
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let header: Vec<u8> = match be32(raw) {
        V2_COOKIE => raw.to_vec(),
        V2_COMPRESSED_COOKIE => {
            let mut inner = Vec::new();
            // The header and the payload it declares, at most (checked below). What
            // decompresses before a damaged part is kept (std's `read_to_end` keeps it):
            // the deserializer reports the damage itself.
            let read = flate2::read::ZlibDecoder::new(&raw[8..])
                .take(40 + u64::from(MAX_PAYLOAD))
                .read_to_end(&mut inner);
            if let Err(e) = read
                && inner.len() < 40
            {
                return Err(format!("interval log histogram: {e}"));
            }
            inner
        }
        _ => return bad("not a V2 histogram"),
    };
    if header.len() < 40 || be32(&header) != V2_COOKIE {
        return bad("truncated V2 header");
    }
    if be32(&header[4..]) > MAX_PAYLOAD {
        return bad("declared payload larger than 16 MiB");
    }
    let digits = u8::try_from(be32(&header[12..])).map_err(|_| "bad precision".to_string())?;
    let low = u64::from_be_bytes(header[16..24].try_into().expect("8 bytes"));
    let high = u64::from_be_bytes(header[24..32].try_into().expect("8 bytes"));
    if digits > 5 || low == 0 || low.checked_mul(2).is_none_or(|l2| high < l2) {
        return bad("bounds or precision out of range");
    }
    // Counts needed: one bucket of 2^(bits for 2 x 10^digits) sub-buckets (half used
    // after the first) per doubling from `low` to `high`.
    let sub_buckets = (2 * 10u64.pow(u32::from(digits))).next_power_of_two() as usize;
    let doublings = (64 - (high / low).leading_zeros()) as usize + 1;
    if doublings * sub_buckets > 2 * MAX_COUNTS {
        return bad("declared range and precision need too much memory");
    }
    let declared = be32(&header[4..]) as usize;
    let payload = &header[40..header.len().min(40 + declared)];
    if !counts_negatable(payload) {
        return bad("a count out of range");
    }
    Ok(())
}

/// True unless a count of the V2 payload (zig-zag LEB128, at most 9 bytes, the 9th
/// contributing 8 bits) decodes to `i64::MIN`: `hdrhistogram` negates negative counts
/// (runs of zeros) and overflows on that one (found by the `hlog` fuzz target,
/// tests/fuzz/regressions/hlog/count-negate-overflow-fuzzed: a panic wherever overflow
/// checks are on). A truncated last count is left to the deserializer's own error.
fn counts_negatable(mut payload: &[u8]) -> bool {
    while !payload.is_empty() {
        let mut v = 0u64;
        let mut used = 0;
        for (i, &byte) in payload.iter().enumerate().take(9) {
            used = i + 1;
            if i == 8 {
                v |= u64::from(byte) << 56;
                break;
            }
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                break;
            }
        }
        if v == u64::MAX {
            // Zig-zag of i64::MIN.
            return false;
        }
        payload = &payload[used..];
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `hlog` fuzz target (tests/fuzz/regressions/hlog/payload-len-oom): this
    /// 109-byte log made the reader allocate 2.9 GB. Now a clear error, before any
    /// allocation.
    /// Found by the `hlog` fuzz target (tests/fuzz/regressions/hlog/low-times-two-overflow):
    /// a lowest value of 2^63 overflowed the bounds check itself.
    #[test]
    fn a_lowest_value_at_the_top_is_refused_without_overflow() {
        let log =
            "Tag=x,0.000,1.000,1.000,HISTEwAAAAAAAAAAAAAAA4AAAAAAAAAA//////////8/8AAAAAAAAA==\n";
        let e = read_hlog(log.as_bytes()).unwrap_err();
        assert!(e.contains("out of range"), "{e}");
    }

    /// Found by the `hlog` fuzz target
    /// (tests/fuzz/regressions/hlog/count-negate-overflow-fuzzed): a count whose zig-zag
    /// varint is `u64::MAX` (`i64::MIN`) overflowed `hdrhistogram`'s negation.
    #[test]
    fn a_count_of_i64_min_is_refused_without_overflow() {
        let mut h = crate::report::new_histogram();
        h.record(100).unwrap();
        let mut raw = Vec::new();
        hdrhistogram::serialization::Serializer::serialize(
            &mut hdrhistogram::serialization::V2Serializer::new(),
            &h,
            &mut raw,
        )
        .unwrap();
        // Replace the payload with one count of nine 0xff bytes.
        raw.truncate(40);
        raw.extend_from_slice(&[0xff; 9]);
        raw[4..8].copy_from_slice(&9u32.to_be_bytes());
        let line = format!(
            "Tag=x,0.000,1.000,1.000,{}\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &raw)
        );
        let e = read_hlog(line.as_bytes()).unwrap_err();
        assert!(e.contains("count out of range"), "{e}");
    }

    #[test]
    fn a_histogram_declaring_a_huge_payload_is_refused() {
        let log = "#\nTag=snt,1.000,1.00,00,HISTFAAAAEV4nAE6AMX/HISTE7AAABIAAAAAAAAAAwAAAAAAAAABEAAAANaTpAA/8AAAAAAAAN8DAtaTCXM=\n";
        let e = read_hlog(log.as_bytes()).unwrap_err();
        assert!(e.contains("declared"), "{e}");
    }
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
