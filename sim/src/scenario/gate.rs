//! Gates: `"<metric>" = "<op> <threshold>"`, checked when a run ends. The threshold's unit
//! follows the metric's kind (a latency takes a duration, a ratio a percentage), so a gate
//! that compares the wrong kind of value is refused when the scenario loads.

use std::fmt;
use std::time::Duration;

use crate::metrics::names::{self, MetricKind, MetricRef};

use super::units;

/// How a gate compares the measured value with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `<=`
    AtMost,
    /// `<`
    Below,
    /// `>=`
    AtLeast,
    /// `>`
    Above,
    /// `==`
    Equal,
}

impl Comparison {
    const ALL: [(&'static str, Comparison); 5] = [
        ("<=", Comparison::AtMost),
        (">=", Comparison::AtLeast),
        ("==", Comparison::Equal),
        ("<", Comparison::Below),
        (">", Comparison::Above),
    ];

    /// Whether `measured` passes against `threshold`.
    pub fn holds(self, measured: f64, threshold: f64) -> bool {
        match self {
            Self::AtMost => measured <= threshold,
            Self::Below => measured < threshold,
            Self::AtLeast => measured >= threshold,
            Self::Above => measured > threshold,
            Self::Equal => measured == threshold,
        }
    }

    fn symbol(self) -> &'static str {
        Self::ALL.iter().find(|(_, c)| *c == self).map_or("?", |(s, _)| s)
    }
}

/// A gate's threshold, in the unit of its metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// For latencies and durations.
    Duration(Duration),
    /// Events per second.
    Rate(f64),
    /// A fraction (written as a percentage).
    Ratio(f64),
    /// A count.
    Count(u64),
}

impl Threshold {
    /// The threshold as a plain number in the metric's base unit (seconds, per second,
    /// fraction, count), for comparison with a measured value in the same unit.
    pub fn value(self) -> f64 {
        match self {
            Self::Duration(d) => d.as_secs_f64(),
            Self::Rate(r) | Self::Ratio(r) => r,
            Self::Count(c) => c as f64,
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Duration(d) => write!(f, "{}", units::DisplayDuration(*d)),
            Self::Rate(r) => write!(f, "{r}/s"),
            Self::Ratio(r) => f.write_str(&units::format_percent(*r)),
            Self::Count(c) => write!(f, "{c}"),
        }
    }
}

/// A pass/fail gate of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// The metric the gate reads.
    pub metric: MetricRef,
    /// How it compares.
    pub comparison: Comparison,
    /// What it compares with.
    pub threshold: Threshold,
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.metric.name,
            self.comparison.symbol(),
            self.threshold
        )
    }
}

/// Why a gate did not parse: the message names what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateError {
    /// The key is not a known metric.
    Metric(String),
    /// The value is not `<op> <threshold>` in the metric's unit.
    Value(String),
}

/// Parses one `[gates]` entry.
pub fn parse_gate(metric: &str, expression: &str) -> Result<Gate, GateError> {
    let metric = names::resolve(metric).map_err(|e| GateError::Metric(e.to_string()))?;
    let example = metric.kind.threshold_example();
    let bad = |why: &str| {
        GateError::Value(format!(
            "expected a comparison like \"<= {}\" ({why}), found \"{expression}\"",
            example_value(metric.kind)
        ))
    };
    let text = expression.trim();
    let Some((comparison, rest)) = Comparison::ALL
        .iter()
        .find_map(|(symbol, comparison)| Some((*comparison, text.strip_prefix(symbol)?)))
    else {
        return Err(bad("an operator <=, <, >=, > or == then a value"));
    };
    let rest = rest.trim();
    let threshold = match metric.kind {
        MetricKind::Histogram | MetricKind::Duration => units::parse_duration(rest).map(Threshold::Duration).ok(),
        MetricKind::Rate => units::parse_rate(rest).map(Threshold::Rate).ok(),
        MetricKind::Ratio => units::parse_percent(rest).map(Threshold::Ratio).ok(),
        MetricKind::Count | MetricKind::Gauge => rest.parse().map(Threshold::Count).ok(),
    };
    let threshold = threshold.ok_or_else(|| bad(&format!("{} takes {example}", metric.name)))?;
    Ok(Gate {
        metric,
        comparison,
        threshold,
    })
}

fn example_value(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Histogram | MetricKind::Duration => "250ms",
        MetricKind::Rate => "1000/s",
        MetricKind::Ratio => "3%",
        MetricKind::Count | MetricKind::Gauge => "0",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_parse_in_the_unit_of_their_metric() {
        let gate = parse_gate("provision.latency.p99", "<= 250ms").expect("valid");
        assert_eq!(gate.threshold, Threshold::Duration(Duration::from_millis(250)));
        assert_eq!(gate.to_string(), "provision.latency.p99 <= 250ms");
        let rate = parse_gate("provision.rate", ">= 1000/s").expect("valid");
        assert!(rate.comparison.holds(1200.0, rate.threshold.value()));
        assert!(!rate.comparison.holds(999.0, rate.threshold.value()));
        let lost = parse_gate("devices.lost", "== 0").expect("valid");
        assert_eq!(lost.threshold, Threshold::Count(0));
        let exposed = parse_gate("ota.exposed", "<=3%").expect("valid");
        assert_eq!(exposed.threshold, Threshold::Ratio(0.03));
    }

    #[test]
    fn wrong_units_and_operators_are_refused() {
        let err = parse_gate("provision.latency.p99", "<= 5%").expect_err("a ratio for a latency");
        assert_eq!(
            err,
            GateError::Value(
                "expected a comparison like \"<= 250ms\" (provision.latency.p99 takes a duration like \"250ms\"), found \"<= 5%\""
                    .to_owned()
            )
        );
        assert!(matches!(parse_gate("ota.exposed", "3%"), Err(GateError::Value(_))));
        assert!(matches!(parse_gate("ota.exposure", "<= 3%"), Err(GateError::Metric(_))));
    }
}
