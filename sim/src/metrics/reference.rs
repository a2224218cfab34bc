//! The metrics reference, `docs/metrics.md`, rendered from the tables the code uses: the gate
//! names, kinds and meanings of [`names`], and the latencies and counters of [`recorder`] with
//! the meanings their doc comments give. `sim/tests/metrics_reference.rs` compares the file with
//! [`markdown`] byte for byte, so the page cannot drift from the code.
//!
//! Which backends refuse a gate on a figure comes from the dialects' own lists
//! ([`crate::dialect::ungiven`]), the ones `fleetsim validate` checks gates against.

use std::fmt::Write as _;

use super::names::{self, METRICS, MetricKind};
use super::recorder::{Counter, HIGHEST_US, Latency, SIGNIFICANT_DIGITS};
use crate::dialect::{
    self,
    ungiven::{self, Ungiven},
};
use crate::scenario::file::{BackendKind, BackendSection};

/// The backends as scenarios configure them, for the page: a short label, and a `[backend]`
/// section the dialects judge (an LwM2M server by url is not the reference backend's front; a
/// hawkBit server without `api` gets no rollouts of fleetsim's).
fn variants() -> Vec<(&'static str, BackendSection)> {
    let with = |kind, url: Option<&str>, api: Option<&str>| {
        let mut section = BackendSection::of(kind);
        section.url = url.map(str::to_owned);
        section.api = api.map(str::to_owned);
        section
    };
    vec![
        ("embedded", with(BackendKind::Embedded, None, None)),
        ("lwm2m front", with(BackendKind::Lwm2m, None, None)),
        (
            "lwm2m server",
            with(BackendKind::Lwm2m, Some("coap://127.0.0.1:5683"), None),
        ),
        ("mqtt", with(BackendKind::Mqtt, Some("mqtt://127.0.0.1:1883"), None)),
        (
            "hawkbit with api",
            with(
                BackendKind::Hawkbit,
                Some("http://127.0.0.1:8080"),
                Some("http://127.0.0.1:8080"),
            ),
        ),
        (
            "hawkbit",
            with(BackendKind::Hawkbit, Some("http://127.0.0.1:8080"), None),
        ),
    ]
}

/// The backends a gate on `metric` is refused against, by their labels: blank for none.
fn refused_against(metric: &str, variants: &[(&'static str, Vec<Ungiven>)]) -> String {
    variants
        .iter()
        .filter(|(_, ungiven)| ungiven::why(ungiven, metric).is_some())
        .map(|(label, _)| *label)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One metric's line in the reference.
#[derive(Debug)]
struct Row {
    /// The name reports and the Prometheus endpoint use.
    metric: String,
    kind: MetricKind,
    unit: &'static str,
    /// What a gate names for it (with a statistic for a histogram); `None`: no gate takes it.
    gate: Option<String>,
    /// The series `--metrics-addr` serves it as; `None`: not served.
    prometheus: Option<String>,
    meaning: &'static str,
}

/// A section of the reference: a heading, a paragraph, a table.
struct Section {
    title: &'static str,
    lead: String,
    rows: Vec<Row>,
}

/// The metrics reference as `docs/metrics.md` holds it.
pub fn markdown() -> String {
    let mut out = String::with_capacity(32 * 1024);
    out.push_str(HEAD);
    out.push_str("\n## Kinds and units\n\n");
    out.push_str(KINDS_LEAD);
    out.push_str("\n| kind | unit | a gate's value |\n|---|---|---|\n");
    for kind in MetricKind::ALL {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            kind.name(),
            kind.unit(),
            kind.threshold_example()
        );
    }
    let variants: Vec<(&'static str, Vec<Ungiven>)> = variants()
        .into_iter()
        .map(|(label, section)| (label, dialect::registry::ungiven(&section)))
        .collect();
    for section in sections() {
        let _ = write!(out, "\n## {}\n\n{}\n", section.title, section.lead);
        out.push_str("\n| metric | kind | unit | gate key | Prometheus | meaning | gate refused against |\n");
        out.push_str("|---|---|---|---|---|---|---|\n");
        for row in &section.rows {
            let refused = match &row.gate {
                Some(_) => refused_against(&row.metric, &variants),
                None => String::new(),
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {} | {} |",
                row.metric,
                row.kind.name(),
                row.unit,
                code_or_dash(row.gate.as_deref()),
                code_or_dash(row.prometheus.as_deref()),
                cell(row.meaning),
                refused,
            );
        }
    }
    out.push_str(REFUSALS_LEAD);
    out.push_str("\n| backend | figures | why |\n|---|---|---|\n");
    for (label, ungiven) in &variants {
        for u in ungiven {
            let metrics: Vec<String> = u.metrics.iter().map(|m| format!("`{m}`")).collect();
            let _ = writeln!(out, "| {label} | {} | {} |", metrics.join(", "), cell(u.why));
        }
    }
    out
}

const REFUSALS_LEAD: &str = "\n## Gates a backend cannot judge\n\n\
A gate on a figure the scenario's backend cannot give would fail at the end of every run as \
\"not measured\" (or pass on a count of nothing), so `fleetsim validate` and `fleetsim run` refuse \
it before the run, naming the gate, the backend's kind and why (exit 2; with the file, line and \
column, or after `--backend` pointed the scenario elsewhere). Each dialect says what it cannot \
give, and this table is rendered from the same lists. *lwm2m front* is `kind = \"lwm2m\"` with \
no url (or with `api`): the reference backend's LwM2M front; *lwm2m server* one by url. Figures \
devices measure whatever the backend (connects, publishes, outages, faults, errors, device \
states) are judged against every backend.\n";

const HEAD: &str = "\
# Metrics reference

<!-- Generated by fleetsim::metrics::reference::markdown() from the tables in sim/src/metrics/.
Do not edit it here: change those tables and write it again with the command below. -->

Every figure a run measures, under the name that gates, `summary.json`, `histograms.hlog`,
`timeseries.csv`, the live dashboard and the Prometheus endpoint (`fleetsim run
--metrics-addr`) use. How a gate is written is in
[scenarios.md](scenarios.md#scenario-scenariostoml); what the report folder holds is in
[reports.md](reports.md).

This page is generated from the tables in `sim/src/metrics/`: `names.rs` (the names gates take,
their kinds and meanings, the device states and error kinds) and `recorder.rs` (the latencies
and counters devices record, each meaning its doc comment). `sim/tests/metrics_reference.rs`
fails when the page differs from them; `FLEETSIM_BLESS=1 cargo test -p fleetsim --test
metrics_reference` writes it again.

In the tables, *gate key* is what a scenario's `[gates]` names, *Prometheus* the series
`--metrics-addr` serves, and *gate refused against* the backends that cannot give the figure,
so a gate on it is refused before the run ([below](#gates-a-backend-cannot-judge), with why;
blank: every backend gives it). A dash: no gate takes it, or it is not served.
";

const KINDS_LEAD: &str = "\
A gate compares a figure in its kind's unit. In `summary.json` latencies are in milliseconds
(`count`, `p50_ms`, `p90_ms`, `p99_ms`, `p99_9_ms`, `max_ms` under `metrics.histograms`),
counters are under `metrics.counters`, devices per state under `metrics.gauges`, ratios are
fractions from 0 to 1, and the durations computed at the end carry `_ms`
(`reconnect.recovery_ms`). The Prometheus endpoint gives latencies in seconds.
";

fn sections() -> Vec<Section> {
    let latencies = METRICS
        .iter()
        .filter(|m| m.kind == MetricKind::Histogram)
        .map(|m| Row {
            metric: m.name.to_owned(),
            kind: m.kind,
            unit: m.kind.unit(),
            gate: Some(format!("{}.<stat>", m.name)),
            prometheus: prometheus(m.name),
            meaning: m.meaning,
        })
        .collect();
    let whole_run = METRICS
        .iter()
        .filter(|m| m.kind != MetricKind::Histogram && counter(m.name).is_none())
        .map(|m| Row {
            metric: m.name.to_owned(),
            kind: m.kind,
            unit: m.kind.unit(),
            gate: Some(m.name.to_owned()),
            prometheus: prometheus(m.name),
            meaning: m.meaning,
        })
        .collect();
    let counters = Counter::ALL
        .iter()
        .filter(|c| !c.name().starts_with("errors."))
        .map(|c| counter_row(*c))
        .collect();
    let states = names::DEVICE_STATES
        .iter()
        .map(|state| Row {
            metric: format!("devices.{state}"),
            kind: MetricKind::Gauge,
            unit: MetricKind::Gauge.unit(),
            gate: Some(format!("devices.{state}")),
            prometheus: Some(format!("fleetsim_devices{{state=\"{state}\"}}")),
            meaning: names::state_meaning(state).unwrap_or_default(),
        })
        .collect();
    let errors = names::ERROR_KINDS
        .iter()
        .map(|kind| {
            let name = format!("errors.{kind}");
            match counter(&name) {
                Some(c) => counter_row(c),
                None => Row {
                    prometheus: None,
                    gate: Some(name.clone()),
                    metric: name,
                    kind: MetricKind::Count,
                    unit: MetricKind::Count.unit(),
                    meaning: names::error_sum_meaning(kind).unwrap_or_default(),
                },
            }
        })
        .collect();
    let stats = names::STAT_NAMES
        .iter()
        .map(|s| format!("`.{s}`"))
        .collect::<Vec<_>>()
        .join(", ");
    vec![
        Section {
            title: "Latencies",
            lead: format!(
                "HDR histograms, one a metric, recorded in microseconds ({SIGNIFICANT_DIGITS} significant digits; a value \
                 past {} s is recorded as {} s). A gate names a statistic in place of `<stat>`: {stats}; `.count` \
                 compares a count. Prometheus serves each as a summary.\n\n\
                 Each runs from the operation's intended start (the wake-up it was scheduled for, the \
                 planned arrival, the operator's action), not from when the harness got to it, so a \
                 harness or backend that falls behind shows in the figures. A report a device sends as \
                 soon as it connects was meant for the moment its connection was up: the wait for the \
                 connection is `connect.latency`'s, not the report's.\n\n\
                 So the harness's own lateness counts, and it is kept small: a shard's thread sleeps \
                 until a device's wake-up or arrival on a Linux timerfd armed for that instant, which \
                 wakes it within the kernel's timer slack (tens of microseconds), where tokio's \
                 millisecond timer wheel woke it about 1.1 ms late on average and put that in every \
                 figure ([docs/scale.md](scale.md#waking-on-time)). The operator's actions and the \
                 backend's health checks still run on tokio's timers, to the millisecond.",
                HIGHEST_US / 1_000_000,
                HIGHEST_US / 1_000_000,
            ),
            rows: latencies,
        },
        Section {
            title: "Figures of the whole run",
            lead: "Worked out at the end of the run from the counts, the backend's answers or the one-second \
                   series; the live dashboard judges gates on them at the end only."
                .to_owned(),
            rows: whole_run,
        },
        Section {
            title: "Counters",
            lead: "Events devices and the operator count, added up over shards, workers and merged report \
                   folders. Prometheus serves each as a counter."
                .to_owned(),
            rows: counters,
        },
        Section {
            title: "Devices per state",
            lead: "How many devices are in each lifecycle state: at the end of the run in `summary.json` and \
                   gates, second by second in `timeseries.csv` and on the Prometheus endpoint."
                .to_owned(),
            rows: states,
        },
        Section {
            title: "Errors",
            lead: "Failures counted by kind; `errors.tls` and `errors.total` add others up.".to_owned(),
            rows: errors,
        },
    ]
}

/// A counter's row; a counter the gate table names takes its kind and meaning from there.
fn counter_row(c: Counter) -> Row {
    let gated = METRICS.iter().find(|m| m.name == c.name());
    Row {
        metric: c.name().to_owned(),
        kind: gated.map_or(MetricKind::Count, |m| m.kind),
        unit: c.unit(),
        gate: names::resolve(c.name()).ok().map(|r| r.name),
        prometheus: prometheus(c.name()),
        meaning: gated.map_or(c.meaning(), |m| m.meaning),
    }
}

fn counter(name: &str) -> Option<Counter> {
    Counter::ALL.iter().copied().find(|c| c.name() == name)
}

/// The series `--metrics-addr` serves a recorded figure as (`report::prometheus` names them
/// so: each `.` made `_`).
fn prometheus(name: &str) -> Option<String> {
    let series: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if Latency::ALL.iter().any(|l| l.name() == name) {
        Some(format!("fleetsim_{series}_seconds"))
    } else if counter(name).is_some() {
        Some(format!("fleetsim_{series}_total"))
    } else {
        None
    }
}

fn code_or_dash(text: Option<&str>) -> String {
    text.map_or_else(|| "—".to_owned(), |t| format!("`{t}`"))
}

/// Text in a table cell: a `|` would end the cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row> {
        sections().into_iter().flat_map(|s| s.rows).collect()
    }

    #[test]
    fn every_recorded_figure_is_listed_once_with_a_meaning() {
        let rows = rows();
        let listed: Vec<&str> = rows.iter().map(|r| r.metric.as_str()).collect();
        let recorded = Latency::ALL
            .iter()
            .map(|l| l.name())
            .chain(Counter::ALL.iter().map(|c| c.name()))
            .chain(METRICS.iter().map(|m| m.name));
        for name in recorded {
            assert_eq!(listed.iter().filter(|l| **l == name).count(), 1, "{name}");
        }
        for row in &rows {
            assert!(!row.meaning.is_empty() && !row.unit.is_empty(), "{row:?}");
        }
    }

    #[test]
    fn every_gate_key_resolves() {
        for row in rows() {
            if let Some(gate) = row.gate {
                let gate = gate.replace("<stat>", "p99");
                assert!(names::resolve(&gate).is_ok(), "{gate}");
            }
        }
    }

    #[test]
    fn every_figure_a_backend_refuses_is_listed_as_a_gate() {
        let gates: Vec<String> = rows()
            .into_iter()
            .filter(|r| r.gate.is_some())
            .map(|r| r.metric)
            .collect();
        for (label, section) in variants() {
            for u in dialect::registry::ungiven(&section) {
                for name in u.metrics {
                    assert!(gates.iter().any(|g| g == name), "{label}: {name}");
                }
            }
        }
    }

    #[test]
    fn a_broker_refuses_what_only_an_operator_gives() {
        let variants: Vec<_> = variants()
            .into_iter()
            .map(|(label, section)| (label, dialect::registry::ungiven(&section)))
            .collect();
        assert_eq!(
            refused_against("devices.lost", &variants),
            "lwm2m server, mqtt, hawkbit"
        );
        assert_eq!(refused_against("connect.latency", &variants), "");
        assert!(refused_against("poll.latency", &variants).contains("embedded"));
    }
}
