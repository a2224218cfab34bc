//! Gate verdicts: each `[gates]` entry compared with what the run measured, one line each,
//! saying which failed and by how much. A gate on a figure the run did not measure fails: a
//! gate that cannot be checked must not pass quietly.

use std::fmt;

use crate::metrics::names::{MetricKind, Stat};
use crate::scenario::units::DisplayDuration;
use crate::scenario::{Gate, Threshold};

/// Looks up a measured figure by its metric name and statistic, in base units (seconds,
/// per second, fraction, count); `None` when the run did not measure it.
pub trait Measured {
    /// The figure a gate reads.
    fn value(&self, name: &str, kind: MetricKind, stat: Option<Stat>) -> Option<f64>;
}

/// One gate's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The gate.
    pub gate: Gate,
    /// What was measured, if anything.
    pub measured: Option<f64>,
    /// Whether it held.
    pub passed: bool,
}

/// Checks every gate against the measured figures.
pub fn evaluate(gates: &[Gate], measured: &dyn Measured) -> Vec<Verdict> {
    gates
        .iter()
        .map(|gate| {
            let value = measured.value(&gate.metric.name, gate.metric.kind, gate.metric.stat);
            let passed = value.is_some_and(|v| gate.comparison.holds(v, gate.threshold.value()));
            Verdict {
                gate: gate.clone(),
                measured: value,
                passed,
            }
        })
        .collect()
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.passed { "pass" } else { "FAIL" };
        write!(f, "{mark}  {}: ", self.gate)?;
        let Some(value) = self.measured else {
            return f.write_str("not measured by this run");
        };
        let shown = match self.gate.threshold {
            Threshold::Duration(_) => DisplayDuration(std::time::Duration::from_secs_f64(value.max(0.0))).to_string(),
            Threshold::Rate(_) => format!("{value:.1}/s"),
            Threshold::Ratio(_) => crate::scenario::units::format_percent(value),
            Threshold::Count(_) => format!("{value}"),
        };
        write!(f, "measured {shown}")?;
        let threshold = self.gate.threshold.value();
        if !self.passed && threshold != 0.0 {
            let off = (value - threshold).abs() / threshold.abs() * 100.0;
            write!(f, " ({off:.0}% off the threshold)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::gate::parse_gate;

    struct Fixed;

    impl Measured for Fixed {
        fn value(&self, name: &str, _: MetricKind, stat: Option<Stat>) -> Option<f64> {
            match (name, stat) {
                ("provision.latency.p99", Some(Stat::Percentile(_))) => Some(0.310),
                ("provision.rate", None) => Some(1200.0),
                ("devices.lost", None) => Some(0.0),
                _ => None,
            }
        }
    }

    #[test]
    fn verdicts_say_what_failed_and_by_how_much() {
        let gates = vec![
            parse_gate("provision.latency.p99", "<= 250ms").expect("gate"),
            parse_gate("provision.rate", ">= 1000/s").expect("gate"),
            parse_gate("devices.lost", "== 0").expect("gate"),
            parse_gate("ota.exposed", "<= 3%").expect("gate"),
        ];
        let verdicts = evaluate(&gates, &Fixed);
        let lines: Vec<String> = verdicts.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines[0],
            "FAIL  provision.latency.p99 <= 250ms: measured 310ms (24% off the threshold)"
        );
        assert_eq!(lines[1], "pass  provision.rate >= 1000/s: measured 1200.0/s");
        assert_eq!(lines[2], "pass  devices.lost == 0: measured 0");
        assert_eq!(lines[3], "FAIL  ota.exposed <= 3%: not measured by this run");
        assert_eq!(verdicts.iter().filter(|v| !v.passed).count(), 2);
    }
}
