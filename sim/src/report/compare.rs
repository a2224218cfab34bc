//! Comparing two runs' summaries metric by metric, as the nightly performance gate does:
//! each figure is better, unchanged or worse than the baseline's, by its ratio, and "worse"
//! past the allowed regression fails the comparison.
//!
//! Which direction is better depends on the metric: latencies, errors, exposure, recovery and
//! memory go down when things improve; rates and the rollback success ratio go up. Counts that
//! only reflect the workload (messages published) are not compared. Latencies are compared at
//! p50, p90, p99 and p99.9; the maximum is a single sample, too noisy to gate a nightly on.

use serde_json::Value;

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Lower is better (latencies, errors).
    Lower,
    /// Higher is better (rates, success ratios).
    Higher,
}

/// How a metric moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Improved past the limit.
    Better,
    /// Within the limit either way.
    Unchanged,
    /// Worsened past the limit: a regression.
    Worse,
    /// Measured in the baseline but not in the current run.
    Missing,
}

impl Change {
    /// The word the table prints.
    pub fn word(self) -> &'static str {
        match self {
            Self::Better => "better",
            Self::Unchanged => "unchanged",
            Self::Worse => "WORSE",
            Self::Missing => "MISSING",
        }
    }

    /// Whether this fails the comparison.
    pub fn regressed(self) -> bool {
        matches!(self, Self::Worse | Self::Missing)
    }
}

/// One compared figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The figure's name, e.g. `publish.latency.p99_ms`.
    pub metric: String,
    /// The baseline's value.
    pub baseline: f64,
    /// The current value, if measured.
    pub current: Option<f64>,
    /// current / baseline (infinite when the baseline is 0 and the current is not).
    pub ratio: Option<f64>,
    /// The verdict.
    pub change: Change,
}

/// The figures of a summary that a comparison reads, with their direction.
fn figures(summary: &Value) -> Vec<(String, Option<f64>, Better)> {
    let metrics = &summary["metrics"];
    let mut out = Vec::new();
    if let Some(histograms) = metrics["histograms"].as_object() {
        for (name, h) in histograms {
            for stat in ["p50_ms", "p90_ms", "p99_ms", "p99_9_ms"] {
                out.push((format!("{name}.{stat}"), h[stat].as_f64(), Better::Lower));
            }
        }
    }
    if let Some(counters) = metrics["counters"].as_object() {
        for (name, value) in counters.iter().filter(|(n, _)| n.starts_with("errors.")) {
            out.push((name.clone(), value.as_f64(), Better::Lower));
        }
    }
    for (name, better) in [
        ("provision.rate", Better::Higher),
        ("devices.lost", Better::Lower),
        ("ota.exposed", Better::Lower),
        ("ota.rollback.success", Better::Higher),
        ("ota.halt.latency_ms", Better::Lower),
        ("reconnect.recovery_ms", Better::Lower),
    ] {
        out.push((name.to_owned(), metrics[name].as_f64(), better));
    }
    out.push((
        "harness.bytes_per_connected_device".to_owned(),
        summary["harness"]["bytes_per_connected_device"].as_f64(),
        Better::Lower,
    ));
    out
}

/// Compares `current` with `baseline`, allowing `max_regression` (0.1 for 10%) either way
/// before a change counts. Figures the baseline did not measure are skipped.
pub fn compare(baseline: &Value, current: &Value, max_regression: f64) -> Vec<Row> {
    let now: Vec<_> = figures(current);
    figures(baseline)
        .into_iter()
        .filter_map(|(metric, base, better)| {
            let base = base?;
            let current = now.iter().find(|(m, _, _)| *m == metric).and_then(|(_, v, _)| *v);
            let (ratio, change) = match current {
                None => (None, Change::Missing),
                Some(value) => judge(base, value, better, max_regression),
            };
            Some(Row {
                metric,
                baseline: base,
                current,
                ratio,
                change,
            })
        })
        .collect()
}

fn judge(base: f64, value: f64, better: Better, limit: f64) -> (Option<f64>, Change) {
    if base == 0.0 {
        let change = match (value == 0.0, better) {
            (true, _) => Change::Unchanged,
            (false, Better::Lower) => Change::Worse,
            (false, Better::Higher) => Change::Better,
        };
        let ratio = if value == 0.0 { 1.0 } else { f64::INFINITY };
        return (Some(ratio), change);
    }
    let ratio = value / base;
    let (improved, worsened) = match better {
        Better::Lower => (ratio < 1.0 - limit, ratio > 1.0 + limit),
        Better::Higher => (ratio > 1.0 + limit, ratio < 1.0 - limit),
    };
    let change = if worsened {
        Change::Worse
    } else if improved {
        Change::Better
    } else {
        Change::Unchanged
    };
    (Some(ratio), change)
}

/// The table `fleetsim compare` prints, and its closing line.
pub fn render(rows: &[Row], max_regression: f64) -> String {
    let width = rows.iter().map(|r| r.metric.len()).max().unwrap_or(6).max(6);
    let mut out = format!(
        "{:<width$}  {:>12}  {:>12}  {:>7}  verdict\n",
        "metric", "baseline", "current", "ratio"
    );
    for row in rows {
        let current = row.current.map_or("-".to_owned(), number);
        let ratio = row.ratio.map_or("-".to_owned(), |r| {
            if r.is_finite() {
                format!("{r:.2}")
            } else {
                "inf".to_owned()
            }
        });
        out.push_str(&format!(
            "{:<width$}  {:>12}  {:>12}  {:>7}  {}\n",
            row.metric,
            number(row.baseline),
            current,
            ratio,
            row.change.word()
        ));
    }
    let count = |c: Change| rows.iter().filter(|r| r.change == c).count();
    out.push_str(&format!(
        "{} figures: {} better, {} unchanged, {} worse, {} missing (allowed regression {}%)\n",
        rows.len(),
        count(Change::Better),
        count(Change::Unchanged),
        count(Change::Worse),
        count(Change::Missing),
        max_regression * 100.0
    ));
    out
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn summary(p99: f64, rate: f64, errors: u64) -> Value {
        json!({
            "metrics": {
                "histograms": { "publish.latency": { "p50_ms": 1.0, "p90_ms": 2.0, "p99_ms": p99, "p99_9_ms": null, "max_ms": 90.0 } },
                "counters": { "errors.timeout": errors, "published": 5000 },
                "provision.rate": rate,
                "devices.lost": 0,
                "ota.exposed": null,
            },
            "harness": { "bytes_per_connected_device": 1900.0 },
        })
    }

    fn row<'a>(rows: &'a [Row], metric: &str) -> &'a Row {
        rows.iter().find(|r| r.metric == metric).expect(metric)
    }

    #[test]
    fn each_figure_moves_in_its_own_direction() {
        let rows = compare(&summary(10.0, 1000.0, 0), &summary(12.0, 1200.0, 3), 0.1);
        assert_eq!(row(&rows, "publish.latency.p99_ms").change, Change::Worse, "20% slower");
        assert_eq!(row(&rows, "publish.latency.p99_ms").ratio, Some(1.2));
        assert_eq!(row(&rows, "provision.rate").change, Change::Better, "20% faster");
        assert_eq!(row(&rows, "errors.timeout").change, Change::Worse, "errors from none");
        assert_eq!(row(&rows, "publish.latency.p50_ms").change, Change::Unchanged);
        assert_eq!(row(&rows, "devices.lost").change, Change::Unchanged);
        assert!(
            rows.iter().all(|r| r.metric != "published"),
            "workload counts are not compared"
        );
        assert!(
            rows.iter().all(|r| !r.metric.ends_with("max_ms")),
            "maxima are too noisy"
        );
        assert!(
            rows.iter()
                .all(|r| r.metric != "publish.latency.p99_9_ms" && r.metric != "ota.exposed"),
            "what the baseline did not measure is skipped"
        );
    }

    #[test]
    fn within_the_limit_is_unchanged_and_a_lost_figure_is_a_regression() {
        let rows = compare(&summary(10.0, 1000.0, 0), &summary(10.9, 910.0, 0), 0.1);
        assert!(rows.iter().all(|r| r.change == Change::Unchanged), "{rows:?}");
        let mut gone = summary(10.0, 1000.0, 0);
        gone["metrics"]["provision.rate"] = Value::Null;
        let rows = compare(&summary(10.0, 1000.0, 0), &gone, 0.1);
        assert_eq!(row(&rows, "provision.rate").change, Change::Missing);
        assert!(row(&rows, "provision.rate").change.regressed());
        let table = render(&rows, 0.1);
        assert!(table.contains("provision.rate"), "{table}");
        assert!(table.ends_with("(allowed regression 10%)\n"), "{table}");
    }
}
