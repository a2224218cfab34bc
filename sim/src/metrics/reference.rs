//! The metrics reference, `docs/metrics.md`, rendered from the tables the code uses: the gate
//! names, kinds and meanings of [`names`], and the latencies and counters of [`recorder`] with
//! the meanings their doc comments give. `sim/tests/metrics_reference.rs` compares the file with
//! [`markdown`] byte for byte, so the page cannot drift from the code.
//!
//! Which backends give a figure is written here ([`BACKENDS`]) only where the docs already say
//! so; a figure with no line is not restricted by them.

use std::fmt::Write as _;

use super::names::{self, METRICS, MetricKind};
use super::recorder::{Counter, HIGHEST_US, Latency, SIGNIFICANT_DIGITS};

/// Which backends give a figure, as the docs say (links are relative to `docs/`).
const BACKENDS: &[(&[&str], &str)] = &[
    (
        &["provision.latency", "provision.rate", "provisioned"],
        "the reference backend (claims); a hawkBit server with `api` (registration); not a broker",
    ),
    (
        &[
            "config.latency",
            "config.reported",
            "command.latency",
            "commands.answered",
        ],
        "the reference backend, MQTT and LwM2M devices: config and command phases need its operator API",
    ),
    (
        &[
            "ota.duration",
            "ota.jobs",
            "ota.resumes",
            "ota.installed",
            "ota.failed",
            "ota.unavailable",
            "ota.rolled_back",
            "ota.bricked",
            "ota.downloaded_bytes",
            "ota.download_ms",
            "ota.exposed",
            "ota.rollback.success",
        ],
        "the reference backend's campaigns (MQTT and LwM2M devices); a hawkBit server's rollouts (with `api`)",
    ),
    (
        &["ota.halt.latency"],
        "the reference backend (goosebit's rollouts have no halt)",
    ),
    (
        &["devices.lost"],
        "the reference backend, which says which devices it holds as active at the end",
    ),
    (
        &[
            "poll.latency",
            "feedback.latency",
            "ota.take.latency",
            "polls",
            "retries",
        ],
        "a hawkBit DDI server ([hawkbit.md](hawkbit.md))",
    ),
    (
        &[
            "register.latency",
            "update.latency",
            "deregister.latency",
            "coap.retransmissions",
            "lwm2m.registrations",
            "lwm2m.updates",
            "lwm2m.deregistrations",
            "lwm2m.reads",
            "lwm2m.writes",
            "lwm2m.executes",
            "lwm2m.observes",
            "lwm2m.notifications",
            "lwm2m.refused",
        ],
        "LwM2M devices: any LwM2M server, or the reference backend's front ([lwm2m.md](lwm2m.md))",
    ),
    (
        &["bootstrap.latency", "lwm2m.bootstraps"],
        "LwM2M devices with `bootstrap = true` ([lwm2m.md](lwm2m.md#bootstrap))",
    ),
    (
        &[
            "tls.handshake.latency",
            "tls.handshakes.full",
            "errors.tls_handshake",
            "errors.tls",
        ],
        "devices over TLS (an `mqtts://` broker, the reference backend) or DTLS (LwM2M) ([tls.md](tls.md), [lwm2m.md](lwm2m.md#over-dtls))",
    ),
    (
        &[
            "tls.handshakes.resumed",
            "errors.tls_unknown_ca",
            "errors.tls_expired",
            "errors.tls_revoked",
            "errors.tls_bad_certificate",
            "errors.tls_server_untrusted",
        ],
        "devices over TLS: an `mqtts://` broker, the reference backend ([tls.md](tls.md))",
    ),
    (
        &[
            "rotate.latency",
            "certs.issued",
            "certs.rotated",
            "certs.renewed",
            "certs.revoked",
            "errors.csr",
        ],
        "the reference backend, devices with `credentials = \"certificate\"` ([tls.md](tls.md))",
    ),
    (
        &["revoked.tried", "revoked.refused", "revoked.refused_share"],
        "the reference backend: devices it decommissioned that connect again",
    ),
    (
        &[
            "alert.latency",
            "alerts.expected",
            "alerts.raised",
            "alerts.missed",
            "alerts.unexpected",
        ],
        "the reference backend, in one process; LwM2M devices: battery and stuck-sensor rules only ([running.md](running.md#monitoring))",
    ),
    (
        &[
            "reconnect.recovery",
            "outage.affected",
            "outage.recovered",
            "outage.excused",
            "faults.reports",
            "faults.resets",
        ],
        "every backend: devices play outages and faults themselves",
    ),
];

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
    for section in sections() {
        let _ = write!(out, "\n## {}\n\n{}\n", section.title, section.lead);
        out.push_str("\n| metric | kind | unit | gate key | Prometheus | meaning | backends |\n");
        out.push_str("|---|---|---|---|---|---|---|\n");
        for row in &section.rows {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {} | {} |",
                row.metric,
                row.kind.name(),
                row.unit,
                code_or_dash(row.gate.as_deref()),
                code_or_dash(row.prometheus.as_deref()),
                cell(row.meaning),
                backends(&row.metric),
            );
        }
    }
    out
}

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
`--metrics-addr` serves, and *backends* which backends give the figure where the docs say so
(blank: the docs do not restrict it). A dash: no gate takes it, or it is not served.
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
                 compares a count. Prometheus serves each as a summary.",
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

fn backends(metric: &str) -> &'static str {
    BACKENDS
        .iter()
        .find(|(metrics, _)| metrics.contains(&metric))
        .map_or("", |(_, note)| note)
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
    fn backend_notes_name_listed_metrics() {
        let listed: Vec<String> = rows().into_iter().map(|r| r.metric).collect();
        for (metrics, _) in BACKENDS {
            for name in *metrics {
                assert!(listed.iter().any(|l| l == name), "{name}");
                let notes = BACKENDS.iter().filter(|(n, _)| n.contains(name)).count();
                assert_eq!(notes, 1, "{name} has one note");
            }
        }
    }
}
