//! HdrHistogram interval logs (`.hlog`): one compressed V2 histogram per interval, the
//! format HdrHistogram's Java tools (HistogramLogAnalyzer, LogProcessor) read.

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

    /// Writes the log.
    pub fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let mut ser = V2DeflateSerializer::new();
        let mut b = IntervalLogWriterBuilder::new();
        b.add_comment("shutter latency log; values in microseconds");
        if let Some(s) = self.start {
            b.with_start_time(s);
        }
        let mut w = b.begin_log_with(out, &mut ser)?;
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
        assert!(text.contains("#[StartTime: 1700000000.000"));
        // Compressed V2 payloads start with the deflate cookie 0x1c849304 -> base64 "HISTF".
        assert!(text.contains(",HISTF"), "{text}");
        let back = read_hlog(&out).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[2].0, "delivery");
        assert_eq!(back[2].1.max(), log.intervals[2].3.max());
        assert_eq!(back[1].1.len(), 100);
    }
}
