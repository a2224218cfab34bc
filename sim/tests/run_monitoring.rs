//! The monitoring path end to end against the embedded backend: `alert` phases set a battery
//! rule and an offline rule, coin cells drain and die, an outage cuts meters off, and the run
//! matches every alert the backend raised to the device state that called for it.

#[path = "support/binary.rs"]
mod binary;
use binary::{assert_exit, counter, fleetsim, repo, scratch, summary};

const SCENARIO: &str = "sim/tests/fixtures/monitoring/monitoring.toml";

#[test]
fn every_alert_the_rules_call_for_is_raised_and_timed() {
    let out = scratch("run-monitoring");
    let ran = fleetsim(&["run".as_ref(), SCENARIO.as_ref(), "--out".as_ref(), out.as_os_str()]);
    assert_exit(&ran, 0);
    let summary = summary(&out);
    let count = |name: &str| counter(&summary, name);
    let gauge = |name: &str| summary["metrics"]["gauges"][name].as_u64().unwrap_or(0);
    // Every coin cell drains and dies within the run; every meter is online at the end.
    let (cells, meters) = (gauge("devices.dead"), gauge("devices.online"));
    assert!(cells >= 5 && meters >= 5, "{summary}");
    assert_eq!(cells + meters, count("provisioned"), "{summary}");
    assert!(count("outage.affected") >= 3, "{summary}");
    // Each cell crosses its battery rule once, then dies and stays offline; the outage keeps
    // half the meters away for 3 s. All of it must be expected, raised and timed.
    let expected = count("alerts.expected");
    assert_eq!(
        expected,
        2 * cells + count("outage.affected"),
        "a battery and an offline alert per cell, an offline alert per meter cut off: {summary}"
    );
    assert_eq!(count("alerts.raised"), expected, "{summary}");
    assert_eq!(count("alerts.missed"), 0);
    assert_eq!(count("alerts.unexpected"), 0);
    let latency = &summary["metrics"]["histograms"]["alert.latency"];
    assert_eq!(latency["count"].as_u64(), Some(expected), "{latency}");
    assert!(latency["p99_ms"].as_f64().is_some_and(|p99| p99 < 1_000.0), "{latency}");
    // The interval log holds them too (it must add up to the summary), and so the report's
    // distribution chart.
    let hlog = std::fs::read_to_string(out.join("histograms.hlog")).expect("interval log");
    assert!(hlog.contains("alert.latency"), "alert.latency in the interval log");
    let page = std::fs::read_to_string(out.join("report.html")).expect("report");
    assert!(page.contains("alert.latency"), "alert.latency in report.html");
}

#[test]
fn alert_phases_run_in_one_process() {
    let out = scratch("run-monitoring-workers");
    let ran = fleetsim(&[
        "run".as_ref(),
        SCENARIO.as_ref(),
        "--workers".as_ref(),
        "2".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert_exit(&ran, 2);
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(
        stderr.contains("phase \"alert\" at 500ms") && stderr.contains("without --workers"),
        "{stderr}"
    );
    assert!(repo().join(SCENARIO).exists());
}
