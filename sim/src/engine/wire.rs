//! What a worker process (`fleetsim run --worker`) tells its parent on stdout, a line each:
//! `T {json}` is a second of the worker's shards merged (counters, the second's histograms
//! serialized, devices per state, device tasks, the worker's memory and CPU), `E text` is an
//! event line (the operator's phases, backend outages). Anything else the worker prints (its
//! header, its verdicts) is not for the parent.
//!
//! Histograms travel as HdrHistogram's V2 deflate encoding in base64, the same bytes as the
//! report's interval log, so the parent's live figures merge exactly.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde_json::{Value, json};

use super::process_stats::ProcessStats;
use super::shard::Tick;
use crate::device::{State, StateCounts};
use crate::metrics::recorder::{Latency, Snapshot};

/// A line from a worker.
#[derive(Debug)]
pub enum Line {
    /// A second of the worker's fleet.
    Tick(Box<Tick>),
    /// An event line to show.
    Event(String),
    /// Not for the parent.
    Other,
}

/// The line for a second of this worker's fleet.
pub fn tick_line(tick: &Tick, process: ProcessStats) -> String {
    let mut serializer = V2DeflateSerializer::new();
    let histograms: serde_json::Map<String, Value> = Latency::ALL
        .iter()
        .filter_map(|latency| {
            let histogram = tick.snapshot.histogram(*latency).filter(|h| !h.is_empty())?;
            let mut bytes = Vec::new();
            serializer.serialize(histogram, &mut bytes).ok()?;
            Some((latency.name().to_owned(), json!(STANDARD.encode(bytes))))
        })
        .collect();
    let body = json!({
        "states": tick.states.slots(),
        "tasks": tick.tasks,
        "rss": process.rss_bytes,
        "cpu_s": process.cpu.as_secs_f64(),
        "counters": tick.snapshot.counters(),
        "histograms": histograms,
    });
    format!("T {body}")
}

/// The line for an event.
pub fn event_line(text: &str) -> String {
    format!("E {}", text.replace('\n', " "))
}

/// Reads one line from a worker; a tick that does not parse counts as not for the parent.
pub fn parse(line: &str) -> Line {
    if let Some(text) = line.strip_prefix("E ") {
        return Line::Event(text.to_owned());
    }
    line.strip_prefix("T ")
        .and_then(|body| serde_json::from_str::<Value>(body).ok())
        .and_then(|body| tick(&body))
        .map_or(Line::Other, |tick| Line::Tick(Box::new(tick)))
}

fn tick(body: &Value) -> Option<Tick> {
    let mut slots = [0u64; State::ALL.len()];
    for (slot, value) in slots.iter_mut().zip(body["states"].as_array()?) {
        *slot = value.as_u64()?;
    }
    let counters: Vec<u64> = body["counters"]
        .as_array()?
        .iter()
        .map(|v| v.as_u64().unwrap_or(0))
        .collect();
    let mut deserializer = Deserializer::new();
    let mut histograms = Vec::new();
    for (name, encoded) in body["histograms"].as_object()? {
        let latency = Latency::ALL.iter().find(|l| l.name() == name)?;
        let bytes = STANDARD.decode(encoded.as_str()?).ok()?;
        histograms.push((*latency, deserializer.deserialize(&mut &bytes[..]).ok()?));
    }
    Some(Tick {
        snapshot: Snapshot::from_parts(&counters, histograms),
        states: StateCounts::from_slots(slots),
        tasks: body["tasks"].as_u64()?,
        process: Some(ProcessStats {
            rss_bytes: body["rss"].as_u64()?,
            cpu: Duration::try_from_secs_f64(body["cpu_s"].as_f64()?).ok()?,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::recorder::{Counter, Recorder};

    #[test]
    fn a_tick_crosses_the_wire_exactly() {
        let mut recorder = Recorder::default();
        for ms in [1, 2, 3, 250, 4000] {
            recorder.record(Latency::ALL[0], Duration::from_millis(ms));
        }
        recorder.count(Counter::ALL[1], 17);
        let tick = Tick {
            snapshot: recorder.take(),
            states: StateCounts::from_slots([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
            tasks: 42,
            process: None,
        };
        let process = ProcessStats {
            rss_bytes: 1 << 20,
            cpu: Duration::from_millis(1500),
        };
        let line = tick_line(&tick, process);
        let Line::Tick(back) = parse(&line) else {
            panic!("not a tick: {line}")
        };
        assert_eq!(back.states, tick.states);
        assert_eq!(back.tasks, 42);
        assert_eq!(back.process, Some(process));
        assert_eq!(back.snapshot.counters(), tick.snapshot.counters());
        let (ours, theirs) = (&tick.snapshot, &back.snapshot);
        assert_eq!(theirs.samples(Latency::ALL[0]), 5);
        for q in [0.5, 0.9, 0.99, 1.0] {
            assert_eq!(theirs.quantile(Latency::ALL[0], q), ours.quantile(Latency::ALL[0], q));
        }
    }

    #[test]
    fn events_and_other_lines_are_told_apart() {
        assert!(matches!(parse(&event_line("[3s] phase config")), Line::Event(e) if e == "[3s] phase config"));
        assert!(matches!(parse("fleetsim run: scenario x"), Line::Other));
        assert!(matches!(parse("T {not json"), Line::Other));
        assert!(matches!(parse("T {\"states\": [1]}"), Line::Other));
    }
}
