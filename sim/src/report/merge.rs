//! Merging report folders into one: the shards of one run (`--shard K/N` on several machines)
//! or several runs of one scenario. Histograms merge exactly, from each folder's interval log;
//! counts, devices per state and rates add up; time series line up by second; the gates are
//! checked again against the merged figures.
//!
//! Figures that belong to the backend rather than to the devices (a campaign's population,
//! the backend's view) come from each folder as it is: a campaign's targeted devices add up
//! across the summaries that list it, which is right for shards that each ran their own
//! backend and too many for shards sharing one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

use super::figures::{error_sum_family, time_to_recover};
use super::gates::{Measured, Verdict, evaluate};
use super::hlog::{self, HistogramLog};
use crate::metrics::names::{MetricKind, Stat};
use crate::scenario::gate::parse_gate;

/// One folder to merge.
struct Part {
    dir: PathBuf,
    summary: Value,
    intervals: Vec<hlog::Interval>,
    timeseries: Option<String>,
}

/// What a merge produced.
#[derive(Debug)]
pub struct Merged {
    /// The merged `summary.json`.
    pub summary: Value,
    /// The gates, checked again.
    pub verdicts: Vec<Verdict>,
}

/// Merges the report folders `dirs` into `out` (created if needed): `summary.json`,
/// `histograms.hlog`, `timeseries.csv`, `junit.xml` and `report.html`. `amend` changes the
/// merged summary before the gates are checked and the files written, given the parts'
/// summaries: the backend's own section merges there (its dialect knows how), and a
/// `--workers` run adds its workers and their lost devices.
pub fn merge(dirs: &[PathBuf], out: &Path, amend: &dyn Fn(&mut Value, &[&Value])) -> Result<Merged, String> {
    let parts = dirs.iter().map(|dir| read_part(dir)).collect::<Result<Vec<_>, _>>()?;
    let first = parts
        .first()
        .ok_or("nothing to merge: name at least one report folder")?;
    let scenario = first.summary["scenario"].clone();
    if let Some(other) = parts.iter().find(|p| p.summary["scenario"] != scenario) {
        return Err(format!(
            "{}: scenario {} is not {} (the first folder's): only reports of one scenario merge",
            other.dir.display(),
            other.summary["scenario"],
            scenario
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;

    // Histograms: the whole run's per metric, and each second's (for the log and the series).
    let mut totals: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let mut by_second: BTreeMap<(String, u64), Histogram<u64>> = BTreeMap::new();
    for interval in parts.iter().flat_map(|p| &p.intervals) {
        hlog::add(&mut totals, interval.tag.clone(), &interval.histogram)?;
        let key = (interval.tag.clone(), interval.start.as_secs());
        hlog::add(&mut by_second, key, &interval.histogram)?;
    }
    let mut log = HistogramLog::create(&out.join("histograms.hlog"), std::time::SystemTime::now())
        .map_err(|e| format!("{}: {e}", out.display()))?;
    for ((tag, second), histogram) in &by_second {
        log.tagged(tag, Duration::from_secs(*second), Duration::from_secs(1), histogram)
            .map_err(|e| format!("histograms.hlog: {e}"))?;
    }
    log.finish().map_err(|e| format!("histograms.hlog: {e}"))?;

    let mut summary = merged_summary(&parts, &totals);
    let summaries: Vec<&Value> = parts.iter().map(|p| &p.summary).collect();
    amend(&mut summary, &summaries);
    let figures = MergedFigures {
        summary: &summary,
        totals: &totals,
    };
    let gates: Vec<_> = first.summary["gates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g["gate"].as_str())
        .filter_map(|text| {
            let (metric, expression) = text.split_once(' ')?;
            parse_gate(metric, expression).ok()
        })
        .collect();
    let completed = summary["completed"] == true;
    let mut verdicts = evaluate(&gates, &figures);
    if !completed {
        verdicts.iter_mut().for_each(|v| v.passed = false);
    }
    summary["gates"] = verdicts
        .iter()
        .map(|v| json!({ "gate": v.gate.to_string(), "measured": v.measured, "passed": v.passed, "verdict": v.to_string() }))
        .collect();
    let write = |name: &str, text: String| {
        std::fs::write(out.join(name), text).map_err(|e| format!("{}: {e}", out.join(name).display()))
    };
    write(
        "summary.json",
        serde_json::to_string_pretty(&summary).unwrap_or_default(),
    )?;
    let series = merged_timeseries(&parts, &by_second);
    write("timeseries.csv", series.clone())?;
    write("report.html", super::html::render(&summary, &series, &totals))?;
    let name = scenario.as_str().unwrap_or("merged");
    let elapsed = summary["elapsed_s"].as_f64().unwrap_or(0.0);
    write("junit.xml", super::junit::render(name, &verdicts, completed, elapsed))?;
    Ok(Merged { summary, verdicts })
}

fn read_part(dir: &Path) -> Result<Part, String> {
    let path = dir.join("summary.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let summary: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: not a fleetsim summary ({e})", path.display()))?;
    if !summary["metrics"].is_object() {
        return Err(format!("{}: not a fleetsim summary (no \"metrics\")", path.display()));
    }
    let intervals = hlog::read_intervals(&dir.join("histograms.hlog"))?;
    Ok(Part {
        dir: dir.to_owned(),
        summary,
        intervals,
        timeseries: std::fs::read_to_string(dir.join("timeseries.csv")).ok(),
    })
}

/// A histogram's figures as `summary.json` writes them (milliseconds).
fn histogram_figures(h: &Histogram<u64>) -> Value {
    let ms = |us: u64| us as f64 / 1e3;
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.5)),
        "p90_ms": ms(h.value_at_quantile(0.9)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p99_9_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
    })
}

/// Sums the numbers under `key` of every part's `metrics` object.
fn summed(parts: &[Part], key: &str) -> Map<String, Value> {
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for part in parts {
        for (name, value) in part.summary["metrics"][key].as_object().into_iter().flatten() {
            *out.entry(name.clone()).or_default() += value.as_f64().unwrap_or(0.0);
        }
    }
    out.into_iter().map(|(k, v)| (k, json!(v as u64))).collect()
}

fn merged_summary(parts: &[Part], totals: &BTreeMap<String, Histogram<u64>>) -> Value {
    let mut summary = parts[0].summary.clone();
    let sum = |pick: &dyn Fn(&Value) -> Option<f64>| -> Option<f64> {
        parts.iter().map(|p| pick(&p.summary)).sum::<Option<f64>>()
    };
    let counters = summed(parts, "counters");
    let count = |name: &str| counters.get(name).and_then(Value::as_f64).unwrap_or(0.0);
    let mut histograms: Map<String, Value> = summary["metrics"]["histograms"]
        .as_object()
        .map(|m| m.keys().map(|k| (k.clone(), json!({ "count": 0 }))).collect())
        .unwrap_or_default();
    for (name, histogram) in totals {
        histograms.insert(name.clone(), histogram_figures(histogram));
    }
    let targeted: f64 = parts
        .iter()
        .flat_map(|p| p.summary["campaigns"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["targeted"].as_f64())
        .sum();
    let rolled = count("ota.rolled_back");
    let failed_boots = rolled + count("ota.bricked");
    let affected = (count("outage.affected") - count("outage.excused")).max(0.0) as u64;
    let recovery = time_to_recover(totals.get("reconnect.recovery"), affected).map(|d| d.as_micros() as f64 / 1e3);
    let halt = parts
        .iter()
        .filter_map(|p| p.summary["metrics"]["ota.halt.latency_ms"].as_f64())
        .reduce(f64::min);
    let metrics = json!({
        "histograms": histograms,
        "counters": counters,
        "gauges": summed(parts, "gauges"),
        "provision.rate": sum(&|s| s["metrics"]["provision.rate"].as_f64()),
        "devices.lost": sum(&|s| s["metrics"]["devices.lost"].as_f64()).map(|n| n as u64),
        "ota.exposed": (targeted > 0.0).then(|| count("ota.installed") / targeted),
        "ota.rollback.success": (failed_boots > 0.0).then(|| rolled / failed_boots),
        "revoked.refused_share": (count("revoked.tried") > 0.0).then(|| count("revoked.refused") / count("revoked.tried")),
        "ota.halt.latency_ms": halt,
        "reconnect.recovery_ms": recovery,
    });
    summary["metrics"] = metrics;
    summary["devices"] = json!(sum(&|s| s["devices"].as_f64()).map(|n| n as u64));
    summary["elapsed_s"] = json!(
        parts
            .iter()
            .filter_map(|p| p.summary["elapsed_s"].as_f64())
            .fold(0.0, f64::max)
    );
    summary["completed"] = json!(parts.iter().all(|p| p.summary["completed"] == true));
    summary["merged_from"] = json!(parts.iter().map(|p| p.dir.display().to_string()).collect::<Vec<_>>());
    summary["campaigns"] = json!(
        parts
            .iter()
            .flat_map(|p| p.summary["campaigns"].as_array().cloned().unwrap_or_default())
            .collect::<Vec<_>>()
    );
    summary["backend_outages"] = json!(
        parts
            .iter()
            .flat_map(|p| p.summary["backend_outages"].as_array().cloned().unwrap_or_default())
            .collect::<Vec<_>>()
    );
    // One harness's memory is not another's: the merged report does not add them up.
    summary["harness"] = Value::Null;
    summary
}

/// The parts' time series added up row by row (second by second); each latency's p50 and p99
/// computed again from the merged intervals of that second.
fn merged_timeseries(parts: &[Part], by_second: &BTreeMap<(String, u64), Histogram<u64>>) -> String {
    let tables: Vec<Vec<Vec<&str>>> = parts
        .iter()
        .filter_map(|p| p.timeseries.as_deref())
        .map(|t| t.lines().map(|l| l.split(',').collect()).collect())
        .collect();
    let Some(header) = tables.first().and_then(|t| t.first()).cloned() else {
        return String::new();
    };
    let rows = tables.iter().map(|t| t.len().saturating_sub(1)).max().unwrap_or(0);
    let mut out = header.join(",");
    out.push('\n');
    for row in 1..=rows {
        let cells: Vec<String> = header
            .iter()
            .enumerate()
            .map(|(column, name)| {
                if *name == "elapsed_s" {
                    return row.to_string();
                }
                if let Some(metric) = name.strip_suffix(".p50_ms").or_else(|| name.strip_suffix(".p99_ms")) {
                    let q = if name.ends_with(".p50_ms") { 0.5 } else { 0.99 };
                    return by_second
                        .get(&(metric.to_owned(), row as u64 - 1))
                        .map_or(String::new(), |h| format!("{:.3}", h.value_at_quantile(q) as f64 / 1e3));
                }
                let total: f64 = tables
                    .iter()
                    .filter_map(|t| t.get(row)?.get(column)?.parse::<f64>().ok())
                    .sum();
                format!("{total}")
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// The merged figures, as gates read them.
struct MergedFigures<'a> {
    summary: &'a Value,
    totals: &'a BTreeMap<String, Histogram<u64>>,
}

impl Measured for MergedFigures<'_> {
    fn value(&self, name: &str, _kind: MetricKind, stat: Option<Stat>) -> Option<f64> {
        let metrics = &self.summary["metrics"];
        let ms_to_s = |v: Option<f64>| v.map(|ms| ms / 1e3);
        match name {
            "ota.halt.latency" => return ms_to_s(metrics["ota.halt.latency_ms"].as_f64()),
            "reconnect.recovery" => return ms_to_s(metrics["reconnect.recovery_ms"].as_f64()),
            _ => {}
        }
        if let Some(family) = error_sum_family(name) {
            let counters = metrics["counters"].as_object()?;
            let errors = counters.iter().filter(|(k, _)| k.starts_with(family));
            return Some(errors.filter_map(|(_, v)| v.as_f64()).sum());
        }
        if let Some(value) = metrics[name].as_f64() {
            return Some(value);
        }
        if let Some((_, h)) = self.totals.iter().find(|(n, _)| name.starts_with(n.as_str())) {
            let s = |us: u64| us as f64 / 1e6;
            return match stat? {
                Stat::Percentile(p) => Some(s(h.value_at_quantile(p / 100.0))),
                Stat::Min => Some(s(h.min())),
                Stat::Max => Some(s(h.max())),
                Stat::Mean => Some(h.mean() / 1e6),
                Stat::Count => Some(h.len() as f64),
            };
        }
        metrics["gauges"][name]
            .as_f64()
            .or_else(|| metrics["counters"][name].as_f64())
    }
}
