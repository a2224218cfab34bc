//! The run's live figures in the Prometheus text exposition format (version 0.0.4), for
//! `fleetsim run --metrics-addr`: what a Prometheus server scrapes to lay the load over a
//! backend's own dashboards.
//!
//! | fleetsim | Prometheus |
//! |---|---|
//! | counter `published` | counter `fleetsim_published_total` |
//! | latency `connect.latency` | summary `fleetsim_connect_latency_seconds`: quantiles 0.5, 0.9, 0.99 and 0.999 over the run so far, `_sum`, `_count` |
//! | devices per state | gauge `fleetsim_devices{state="online"}`, one series per state |
//! | the fleet's size | gauge `fleetsim_devices_planned` |
//! | the harness's cost | gauge `fleetsim_harness_resident_bytes`, counter `fleetsim_harness_cpu_seconds_total` |
//! | the run's clock | gauge `fleetsim_elapsed_seconds` |
//!
//! Names are fleetsim's with each `.` made `_`; every series is there from the first scrape,
//! at zero until something happens, so a rate over it is defined from the start.

use std::fmt::Write as _;

use crate::device::State;
use crate::metrics::names::METRICS;
use crate::metrics::recorder::{Counter, Latency, Snapshot};
use crate::report::figures::Second;

/// The quantiles each latency's summary gives.
const QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];

/// The run so far as a scrape's body: counters and latencies from `total`, devices per state
/// and the harness's cost from `row` (the last second), `planned` devices, `elapsed_s`
/// seconds in.
pub fn exposition(total: &Snapshot, row: &Second, planned: u64, elapsed_s: u64) -> String {
    let mut out = String::with_capacity(16 * 1024);
    gauge(
        &mut out,
        "fleetsim_elapsed_seconds",
        "seconds since the run started",
        elapsed_s as f64,
    );
    gauge(
        &mut out,
        "fleetsim_devices_planned",
        "devices the run's fleet holds",
        planned as f64,
    );
    head(&mut out, "fleetsim_devices", "gauge", "devices in each lifecycle state");
    for state in State::ALL {
        let _ = writeln!(
            out,
            "fleetsim_devices{{state=\"{}\"}} {}",
            state.name(),
            row.states.get(state)
        );
    }
    gauge(
        &mut out,
        "fleetsim_harness_resident_bytes",
        "the harness's resident memory (its workers' too)",
        row.rss_bytes as f64,
    );
    head(
        &mut out,
        "fleetsim_harness_cpu_seconds_total",
        "counter",
        "CPU time the harness has used (its workers' too)",
    );
    let _ = writeln!(out, "fleetsim_harness_cpu_seconds_total {}", row.cpu.as_secs_f64());
    for counter in Counter::ALL {
        let name = format!("fleetsim_{}_total", series(counter.name()));
        head(&mut out, &name, "counter", meaning(counter.name()));
        let _ = writeln!(out, "{name} {}", total.count(*counter));
    }
    for latency in Latency::ALL {
        let name = format!("fleetsim_{}_seconds", series(latency.name()));
        head(&mut out, &name, "summary", meaning(latency.name()));
        let count = total.samples(*latency);
        for q in QUANTILES {
            let value = total.quantile(*latency, q).map_or(f64::NAN, |d| d.as_secs_f64());
            let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {}", number(value));
        }
        let sum = total
            .mean(*latency)
            .map_or(0.0, |mean| mean.as_secs_f64() * count as f64);
        let _ = writeln!(out, "{name}_sum {}", number(sum));
        let _ = writeln!(out, "{name}_count {count}");
    }
    out
}

/// A metric's `# HELP` and `# TYPE` lines.
fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", help.replace('\\', "\\\\").replace('\n', " "));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    head(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {}", number(value));
}

/// A fleetsim name as a Prometheus one: `connect.latency` -> `connect_latency`.
fn series(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// What the metric table says `name` measures, or its name where the table has no line.
fn meaning(name: &str) -> &str {
    METRICS.iter().find(|m| m.name == name).map_or(name, |m| m.meaning)
}

/// A sample value as the format writes it: `NaN` for none yet.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::device::StateCounts;
    use crate::metrics::recorder::Recorder;

    #[test]
    fn every_series_is_written_once_with_its_type_and_the_run_so_far() {
        let mut recorder = Recorder::default();
        recorder.count(Counter::Published, 41);
        for ms in [10, 20, 30, 40] {
            recorder.record(Latency::Connect, Duration::from_millis(ms));
        }
        let total = recorder.take();
        let mut states = StateCounts::default();
        states.add(State::Online, 7);
        let row = Second {
            states,
            rss_bytes: 1 << 20,
            cpu: Duration::from_millis(1500),
            ..Second::default()
        };
        let text = exposition(&total, &row, 10, 12);
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("{prefix} in\n{text}"))
                .to_owned()
        };
        assert_eq!(line("fleetsim_published_total "), "fleetsim_published_total 41");
        assert_eq!(
            line("fleetsim_devices{state=\"online\"}"),
            "fleetsim_devices{state=\"online\"} 7"
        );
        assert_eq!(line("fleetsim_devices_planned "), "fleetsim_devices_planned 10");
        assert_eq!(
            line("fleetsim_harness_cpu_seconds_total "),
            "fleetsim_harness_cpu_seconds_total 1.5"
        );
        assert_eq!(
            line("fleetsim_connect_latency_seconds_count"),
            "fleetsim_connect_latency_seconds_count 4"
        );
        let median: f64 = line("fleetsim_connect_latency_seconds{quantile=\"0.5\"}")
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("a number");
        assert!((0.019..=0.021).contains(&median), "{median}");
        assert_eq!(
            line("fleetsim_publish_latency_seconds{quantile=\"0.99\"}"),
            "fleetsim_publish_latency_seconds{quantile=\"0.99\"} NaN",
            "nothing recorded yet"
        );
        // One TYPE line per metric, and no sample without one.
        let typed: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap_or_default())
            .collect();
        let mut unique = typed.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), typed.len(), "a metric typed twice");
        for sample in text.lines().filter(|l| !l.starts_with('#')) {
            let name = sample.split(['{', ' ']).next().unwrap_or_default();
            let family = ["_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(f)))
                .unwrap_or(name);
            assert!(typed.contains(&family), "{sample}: no TYPE for {family}");
        }
    }
}
