//! The metric name table: the stable names gates, reports and dashboards use
//! (ARCHITECTURE section 8). A name not in this table is an error at load time.

use std::fmt;

/// What kind of figure a metric is, which decides how a gate on it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// An HDR histogram of latencies; gates pick a statistic (`.p99`, `.max`, ...).
    Histogram,
    /// Events per second over a window.
    Rate,
    /// A fraction of a population, written as a percentage.
    Ratio,
    /// A single duration.
    Duration,
    /// A count of events or devices.
    Count,
    /// Devices in a state at the end of the run.
    Gauge,
}

impl MetricKind {
    /// Every kind, in the order the metrics reference lists them.
    pub const ALL: [MetricKind; 6] = [
        Self::Histogram,
        Self::Rate,
        Self::Ratio,
        Self::Duration,
        Self::Count,
        Self::Gauge,
    ];

    /// The kind's name in the metrics reference.
    pub fn name(self) -> &'static str {
        match self {
            Self::Histogram => "histogram",
            Self::Rate => "rate",
            Self::Ratio => "ratio",
            Self::Duration => "duration",
            Self::Count => "count",
            Self::Gauge => "gauge",
        }
    }

    /// The unit a figure of this kind is in (a counter may say more: `Counter::unit`).
    pub fn unit(self) -> &'static str {
        match self {
            Self::Histogram => "duration",
            Self::Rate => "per second",
            Self::Ratio => "percent",
            Self::Duration => "duration",
            Self::Count => "count",
            Self::Gauge => "devices",
        }
    }

    /// How a threshold for this kind is written, for error messages.
    pub fn threshold_example(self) -> &'static str {
        match self {
            Self::Histogram | Self::Duration => "a duration like \"250ms\"",
            Self::Rate => "a rate like \"1000/s\"",
            Self::Ratio => "a percentage like \"3%\"",
            Self::Count | Self::Gauge => "a whole number like 0",
        }
    }
}

/// A known metric: its stable name, kind and meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// Stable name, e.g. `provision.latency`.
    pub name: &'static str,
    /// What kind of figure it is.
    pub kind: MetricKind,
    /// What it measures, for `--help`, reports and error messages.
    pub meaning: &'static str,
}

const fn metric(name: &'static str, kind: MetricKind, meaning: &'static str) -> Metric {
    Metric { name, kind, meaning }
}

/// Every fixed metric name.
pub const METRICS: &[Metric] = &[
    metric(
        "provision.latency",
        MetricKind::Histogram,
        "intended start -> credentials received",
    ),
    metric(
        "provision.rate",
        MetricKind::Rate,
        "devices provisioned per second over the provisioning window",
    ),
    metric(
        "connect.latency",
        MetricKind::Histogram,
        "intended connect start (arrival, end of a backoff) -> CONNACK (and the SUBACK of a subscription sent with the CONNECT) or protocol equivalent",
    ),
    metric("publish.latency", MetricKind::Histogram, "QoS 1 publish -> PUBACK"),
    metric(
        "command.latency",
        MetricKind::Histogram,
        "operator sent -> device result received",
    ),
    metric(
        "config.latency",
        MetricKind::Histogram,
        "desired set -> device reported that version",
    ),
    metric(
        "read.latency",
        MetricKind::Histogram,
        "operator sent a read -> the LwM2M device served the server's Read of that path",
    ),
    metric("ota.duration", MetricKind::Histogram, "job received -> final state"),
    metric(
        "ota.exposed",
        MetricKind::Ratio,
        "devices that installed the campaign image / devices targeted",
    ),
    metric(
        "ota.halt.latency",
        MetricKind::Duration,
        "first failure report -> campaign halted",
    ),
    metric(
        "ota.rollback.success",
        MetricKind::Ratio,
        "rolled back / (rolled back + bricked)",
    ),
    metric(
        "reconnect.recovery",
        MetricKind::Duration,
        "outage end -> 99% of affected devices online",
    ),
    metric(
        "devices.lost",
        MetricKind::Count,
        "devices told `accepted`, less those the operator decommissioned, that the backend does not hold as active at the end",
    ),
    metric(
        "poll.latency",
        MetricKind::Histogram,
        "intended poll time -> the server's answer (hawkBit DDI)",
    ),
    metric(
        "feedback.latency",
        MetricKind::Histogram,
        "update feedback sent -> the server's answer (hawkBit DDI)",
    ),
    metric(
        "ota.take.latency",
        MetricKind::Histogram,
        "rollout started -> the device took its deployment action",
    ),
    metric(
        "tls.handshake.latency",
        MetricKind::Histogram,
        "TCP connected -> TLS handshake done, on the device's side",
    ),
    metric(
        "tls.handshakes.full",
        MetricKind::Count,
        "full TLS handshakes devices completed (under TLS 1.3 a server may still refuse the device's certificate after: errors.tls_*)",
    ),
    metric(
        "tls.handshakes.resumed",
        MetricKind::Count,
        "TLS handshakes that resumed an earlier session",
    ),
    metric(
        "rotate.latency",
        MetricKind::Histogram,
        "operator asked a device to rotate -> the device connected on its new certificate",
    ),
    metric(
        "certs.issued",
        MetricKind::Count,
        "certificates devices received from the backend's CA (provisioning, rotation, renewal)",
    ),
    metric(
        "certs.rotated",
        MetricKind::Count,
        "devices connected on the certificate a rotation gave them",
    ),
    metric(
        "certs.renewed",
        MetricKind::Count,
        "devices connected on a certificate they renewed themselves before the old one expired (a model's [certificate])",
    ),
    metric(
        "certs.revoked",
        MetricKind::Count,
        "old certificates the backend said it revokes once a rotation's grace has passed, one a rotated device",
    ),
    metric(
        "revoked.tried",
        MetricKind::Count,
        "connects by devices whose credentials the operator had revoked (decommissioned)",
    ),
    metric(
        "revoked.refused",
        MetricKind::Count,
        "of those, connects the backend refused",
    ),
    metric(
        "revoked.refused_share",
        MetricKind::Ratio,
        "revoked.refused / revoked.tried: 100% when revocation holds",
    ),
    metric(
        "register.latency",
        MetricKind::Histogram,
        "LwM2M Register sent -> the server's 2.01 Created",
    ),
    metric(
        "bootstrap.latency",
        MetricKind::Histogram,
        "LwM2M Bootstrap-Request sent -> the bootstrap server's Bootstrap-Finish (its Deletes and Writes taken between)",
    ),
    metric(
        "update.latency",
        MetricKind::Histogram,
        "LwM2M registration Update's intended time -> the server's 2.04 Changed",
    ),
    metric(
        "deregister.latency",
        MetricKind::Histogram,
        "a decommission phase's time -> the LwM2M server's 2.02 Deleted of the retired device's De-register",
    ),
    metric(
        "coap.retransmissions",
        MetricKind::Count,
        "confirmable CoAP messages devices sent again for want of an acknowledgement",
    ),
    metric(
        "lwm2m.registrations",
        MetricKind::Count,
        "LwM2M registrations the server accepted",
    ),
    metric(
        "lwm2m.bootstraps",
        MetricKind::Count,
        "LwM2M bootstraps that finished naming a server the device could reach",
    ),
    metric(
        "lwm2m.updates",
        MetricKind::Count,
        "LwM2M registration Updates the server accepted",
    ),
    metric(
        "lwm2m.deregistrations",
        MetricKind::Count,
        "LwM2M De-registers the server accepted, of devices a decommission phase retired",
    ),
    metric(
        "lwm2m.reads",
        MetricKind::Count,
        "LwM2M Reads and Discovers devices answered",
    ),
    metric(
        "lwm2m.writes",
        MetricKind::Count,
        "LwM2M Writes and Write-Attributes devices applied",
    ),
    metric(
        "lwm2m.executes",
        MetricKind::Count,
        "LwM2M Executes devices carried out",
    ),
    metric(
        "lwm2m.observes",
        MetricKind::Count,
        "LwM2M observations devices started",
    ),
    metric(
        "lwm2m.notifications",
        MetricKind::Count,
        "Observe notifications devices sent",
    ),
    metric(
        "lwm2m.refused",
        MetricKind::Count,
        "LwM2M requests devices refused (unknown path, method not allowed, unsupported format)",
    ),
    metric(
        "alert.latency",
        MetricKind::Histogram,
        "a device crossed an alert rule (its first report under the battery level; its link down for the rule's time) -> the backend raised the alert",
    ),
    metric(
        "alerts.expected",
        MetricKind::Count,
        "alerts the run's alert rules called for, raised or missed",
    ),
    metric(
        "alerts.raised",
        MetricKind::Count,
        "of those, alerts the backend raised",
    ),
    metric(
        "alerts.missed",
        MetricKind::Count,
        "of those, alerts the backend had not raised 2 s after they were due, by the end",
    ),
    metric(
        "alerts.unexpected",
        MetricKind::Count,
        "alerts the backend raised that no device's state called for",
    ),
];

/// Lifecycle states; `devices.<state>` is a gauge for each.
pub const DEVICE_STATES: &[&str] = &[
    "unprovisioned",
    "provisioning",
    "offline",
    "connecting",
    "online",
    "sleeping",
    "updating",
    "rolled_back",
    "bricked",
    "decommissioned",
    "dead",
];

/// What `devices.<state>` counts, for each of [`DEVICE_STATES`] (the lifecycle states of
/// `device::State`); `None` for a name that is not a state.
pub fn state_meaning(state: &str) -> Option<&'static str> {
    Some(match state {
        "unprovisioned" => "planned, not arrived yet",
        "provisioning" => "asking the backend for credentials",
        "offline" => "has credentials, not connected (link down, or between reconnect attempts)",
        "connecting" => "connecting",
        "online" => "connected and reporting",
        "sleeping" => "duty-cycled and asleep between reports, holding no connection",
        "updating" => "taking a firmware update",
        "rolled_back" => "a failed boot fell back to the previous firmware slot",
        "bricked" => "update and fallback both failed: the device is lost",
        "decommissioned" => "retired by the operator",
        "dead" => "its battery ran out",
        _ => return None,
    })
}

/// What the error kinds that sum others count (`errors.tls`, `errors.total`); the other kinds
/// are counters, whose meaning `Counter::meaning` gives.
pub fn error_sum_meaning(kind: &str) -> Option<&'static str> {
    match kind {
        "tls" => Some("all of the errors.tls_* kinds: TLS failures by their reason"),
        "total" => Some("all error kinds together"),
        _ => None,
    }
}

/// Error kinds; `errors.<kind>` is a count for each, `errors.tls` sums the `tls_` ones (a
/// TLS failure by its reason), and `errors.total` sums them all.
pub const ERROR_KINDS: &[&str] = &[
    "refused",
    "local",
    "timeout",
    "protocol",
    "auth",
    "busy",
    "quota",
    "banned",
    "publish_refused",
    "subscribe_refused",
    "http_401",
    "http_403",
    "http_404",
    "http_409",
    "http_429",
    "http_4xx",
    "http_500",
    "http_502",
    "http_503",
    "http_504",
    "http_5xx",
    "tls_unknown_ca",
    "tls_expired",
    "tls_revoked",
    "tls_bad_certificate",
    "tls_server_untrusted",
    "tls_handshake",
    "csr",
    "tls",
    "total",
];

/// The statistics a histogram gate may use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stat {
    /// A percentile, e.g. 99.9.
    Percentile(f64),
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
    /// The mean.
    Mean,
    /// How many values were recorded.
    Count,
}

/// The statistic suffixes, as written after a histogram's name.
pub const STAT_NAMES: &[&str] = &["p50", "p90", "p99", "p99.9", "p99.99", "min", "max", "mean", "count"];

impl Stat {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "min" => Some(Self::Min),
            "max" => Some(Self::Max),
            "mean" => Some(Self::Mean),
            "count" => Some(Self::Count),
            _ => {
                let value: f64 = text.strip_prefix('p')?.parse().ok()?;
                (value > 0.0 && value < 100.0).then_some(Self::Percentile(value))
            }
        }
    }
}

impl fmt::Display for Stat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Percentile(p) => write!(f, "p{p}"),
            Self::Min => f.write_str("min"),
            Self::Max => f.write_str("max"),
            Self::Mean => f.write_str("mean"),
            Self::Count => f.write_str("count"),
        }
    }
}

/// A metric as a gate names it: the metric, and for histograms the statistic.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRef {
    /// The full name as written, e.g. `provision.latency.p99` or `devices.online`.
    pub name: String,
    /// The kind of the figure the gate compares (a histogram's `.count` is a count).
    pub kind: MetricKind,
    /// The statistic, for histograms.
    pub stat: Option<Stat>,
}

impl MetricRef {
    /// The metric the gate reads, without its statistic: `provision.latency` for
    /// `provision.latency.p99`.
    pub fn metric(&self) -> &str {
        if self.stat.is_some()
            && let Some(histogram) = METRICS.iter().find(|m| {
                m.kind == MetricKind::Histogram
                    && self.name.strip_prefix(m.name).is_some_and(|rest| rest.starts_with('.'))
            })
        {
            return histogram.name;
        }
        &self.name
    }
}

/// Why a metric name was not accepted; the message lists what would be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnknownMetric(String);

/// Resolves a gate's metric name against the table.
pub fn resolve(name: &str) -> Result<MetricRef, UnknownMetric> {
    for (family, members, kind) in [
        ("devices.", DEVICE_STATES, MetricKind::Gauge),
        ("errors.", ERROR_KINDS, MetricKind::Count),
    ] {
        if let Some(member) = name.strip_prefix(family)
            && name != "devices.lost"
        {
            if members.contains(&member) {
                return Ok(MetricRef {
                    name: name.to_owned(),
                    kind,
                    stat: None,
                });
            }
            return Err(UnknownMetric(format!(
                "unknown metric; {family}<x> takes x from {}",
                members.join(", ")
            )));
        }
    }
    if let Some(metric) = METRICS.iter().find(|m| m.name == name) {
        if metric.kind == MetricKind::Histogram {
            return Err(UnknownMetric(format!(
                "{name} is a histogram; name a statistic, e.g. {name}.p99 (one of {})",
                STAT_NAMES.join(", ")
            )));
        }
        return Ok(MetricRef {
            name: name.to_owned(),
            kind: metric.kind,
            stat: None,
        });
    }
    let histogram = METRICS
        .iter()
        .filter(|m| m.kind == MetricKind::Histogram)
        .find_map(|m| Some((m, name.strip_prefix(m.name)?.strip_prefix('.')?)));
    if let Some((metric, suffix)) = histogram {
        let Some(stat) = Stat::parse(suffix) else {
            return Err(UnknownMetric(format!(
                "unknown statistic \"{suffix}\" of {}; expected one of {}",
                metric.name,
                STAT_NAMES.join(", ")
            )));
        };
        let kind = if stat == Stat::Count {
            MetricKind::Count
        } else {
            MetricKind::Histogram
        };
        return Ok(MetricRef {
            name: name.to_owned(),
            kind,
            stat: Some(stat),
        });
    }
    let known: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
    Err(UnknownMetric(format!(
        "unknown metric; expected one of {}, devices.<state>, errors.<kind>",
        known.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_need_a_statistic() {
        let p99 = resolve("publish.latency.p99").expect("known");
        assert_eq!(p99.kind, MetricKind::Histogram);
        assert_eq!(p99.stat, Some(Stat::Percentile(99.0)));
        assert_eq!(
            resolve("publish.latency.p99.9").expect("known").stat,
            Some(Stat::Percentile(99.9))
        );
        assert_eq!(resolve("ota.duration.count").expect("known").kind, MetricKind::Count);
        assert!(resolve("publish.latency").is_err());
        assert!(resolve("publish.latency.p100").is_err());
    }

    #[test]
    fn every_device_state_has_a_meaning() {
        for state in DEVICE_STATES {
            assert!(state_meaning(state).is_some_and(|m| !m.is_empty()), "{state}");
        }
        assert_eq!(state_meaning("happy"), None);
    }

    #[test]
    fn families_and_plain_metrics_resolve() {
        assert_eq!(resolve("devices.lost").expect("known").kind, MetricKind::Count);
        assert_eq!(resolve("devices.online").expect("known").kind, MetricKind::Gauge);
        assert_eq!(resolve("errors.timeout").expect("known").kind, MetricKind::Count);
        assert_eq!(resolve("ota.exposed").expect("known").kind, MetricKind::Ratio);
        let err = resolve("devices.happy").expect_err("unknown state");
        assert!(err.to_string().contains("online"), "{err}");
        assert!(resolve("provision.speed").is_err());
    }
}
