//! `histograms.hlog`: every latency histogram of a run in HdrHistogram's interval-log format,
//! one interval a second per metric (tagged with the metric's name, values in microseconds),
//! so any tool that reads the format (HdrHistogram's `HistogramLogAnalyzer`, `hdr-plot`) can
//! open it, and runs and shards can be merged exactly ([`read_totals`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};

use crate::metrics::recorder::{Latency, Snapshot};

/// An interval log being written.
pub struct HistogramLog {
    file: BufWriter<File>,
    serializer: V2DeflateSerializer,
}

impl std::fmt::Debug for HistogramLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HistogramLog")
    }
}

impl HistogramLog {
    /// Creates the log at `path` for a run that started at `start`.
    pub fn create(path: &Path, start: SystemTime) -> io::Result<Self> {
        let mut file = BufWriter::new(File::create(path)?);
        let mut serializer = V2DeflateSerializer::new();
        IntervalLogWriterBuilder::new()
            .add_comment("fleetsim latency histograms: one interval a second per metric, tagged with its name; values in microseconds")
            .with_start_time(start)
            .with_base_time(start)
            .begin_log_with(&mut file, &mut serializer)?;
        Ok(Self { file, serializer })
    }

    /// Writes the histograms of `snapshot` that hold values, as the interval from `from` (since
    /// the start) lasting `length`.
    pub fn interval(&mut self, from: Duration, length: Duration, snapshot: &Snapshot) -> io::Result<()> {
        let mut writer = IntervalLogWriterBuilder::new().begin_log_with(&mut self.file, &mut self.serializer)?;
        for latency in Latency::ALL {
            let Some(histogram) = snapshot.histogram(*latency).filter(|h| !h.is_empty()) else {
                continue;
            };
            writer
                .write_histogram(histogram, from, length, Tag::new(latency.name()))
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(())
    }

    /// Writes one histogram as the interval of `tag` from `from` lasting `length`.
    pub fn tagged(
        &mut self,
        tag: &str,
        from: Duration,
        length: Duration,
        histogram: &Histogram<u64>,
    ) -> io::Result<()> {
        let mut writer = IntervalLogWriterBuilder::new().begin_log_with(&mut self.file, &mut self.serializer)?;
        writer
            .write_histogram(histogram, from, length, Tag::new(tag))
            .map_err(|e| io::Error::other(e.to_string()))
    }

    /// Flushes the log to disk.
    pub fn finish(mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// One interval of a log: a metric's histogram over a stretch of the run.
#[derive(Debug, Clone)]
pub struct Interval {
    /// The metric's name (the interval's tag).
    pub tag: String,
    /// Where the interval starts, from the start of the run.
    pub start: Duration,
    /// How long it lasts.
    pub length: Duration,
    /// The latencies, in microseconds.
    pub histogram: Histogram<u64>,
}

/// Reads every interval of a log.
pub fn read_intervals(path: &Path) -> Result<Vec<Interval>, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut deserializer = Deserializer::new();
    let mut intervals = Vec::new();
    for (index, entry) in IntervalLogIterator::new(&text).enumerate() {
        let bad = |why: String| format!("{}: entry {}: {why}", path.display(), index + 1);
        let LogEntry::Interval(interval) = entry.map_err(|e| bad(format!("{e:?}")))? else {
            continue;
        };
        let bytes = STANDARD
            .decode(interval.encoded_histogram().trim())
            .map_err(|e| bad(format!("not base64: {e}")))?;
        let histogram: Histogram<u64> = deserializer
            .deserialize(&mut &bytes[..])
            .map_err(|e| bad(format!("{e:?}")))?;
        intervals.push(Interval {
            tag: interval.tag().map_or("untagged", |t| t.as_str()).to_owned(),
            start: interval.start_timestamp(),
            length: interval.duration(),
            histogram,
        });
    }
    Ok(intervals)
}

/// Reads an interval log and adds up each tag's intervals: the whole run's histogram per
/// metric, exact (HDR histograms with equal bounds add without loss).
pub fn read_totals(path: &Path) -> Result<BTreeMap<String, Histogram<u64>>, String> {
    let mut totals: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    for interval in read_intervals(path)? {
        add(&mut totals, interval.tag, &interval.histogram)?;
    }
    Ok(totals)
}

/// Adds `histogram` to `tag`'s entry of `into`.
pub fn add<K: Ord>(into: &mut BTreeMap<K, Histogram<u64>>, key: K, histogram: &Histogram<u64>) -> Result<(), String> {
    match into.get_mut(&key) {
        Some(total) => total
            .add(histogram)
            .map_err(|e| format!("histograms do not add: {e:?}")),
        None => {
            into.insert(key, histogram.clone());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::recorder::Recorder;

    #[test]
    fn a_log_written_second_by_second_reads_back_as_the_whole() {
        let dir = std::env::temp_dir().join(format!("fleetsim-hlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("histograms.hlog");
        let mut log = HistogramLog::create(&path, SystemTime::now()).expect("create");
        let (mut whole, mut recorder) = (Recorder::default(), Recorder::default());
        for second in 0..5u64 {
            for i in 0..1000u64 {
                let value = Duration::from_micros(50 + (i * i + second) % 80_000);
                recorder.record(Latency::Publish, value);
                whole.record(Latency::Publish, value);
                if i % 10 == 0 {
                    recorder.record(Latency::Connect, value / 3);
                    whole.record(Latency::Connect, value / 3);
                }
            }
            let interval = recorder.take();
            log.interval(Duration::from_secs(second), Duration::from_secs(1), &interval)
                .expect("write");
        }
        log.finish().expect("flush");
        let totals = read_totals(&path).expect("read");
        let whole = whole.take();
        assert_eq!(
            totals.keys().collect::<Vec<_>>(),
            ["connect.latency", "publish.latency"]
        );
        for latency in [Latency::Publish, Latency::Connect] {
            let read = &totals[latency.name()];
            let kept = whole.histogram(latency).expect("recorded");
            assert_eq!(read.len(), kept.len());
            for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
                assert_eq!(read.value_at_quantile(q), kept.value_at_quantile(q), "{q}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
