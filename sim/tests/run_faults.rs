//! Injected faults against a standalone reference backend: an error burst over the whole
//! fleet, then a watchdog reset of half of it. The backend's device views hold the error codes
//! the reports carried, and the devices' own health snapshots tell the reset ones from the
//! others: one reset counted, and an uptime that started over.

use serde_json::Value;

#[path = "support/binary.rs"]
mod binary;
#[path = "support/standalone.rs"]
mod standalone;
use binary::{assert_exit, counter, run_against, scratch, summary};
use standalone::get;

const MODEL: &str = r#"name = "fault-sensor"
protocol = "mqtt"
firmware = "2.4.0"
[telemetry]
interval = "1m"
payload_bytes = 96
[link]
mean_online = "10000d"
mean_offline = "1s"
reconnect = { initial = "1s", max = "20s", multiplier = 2.0 }
[faults]
error_codes = [17, 42]
"#;

const SCENARIO: &str = r#"[scenario]
name = "faults"
seed = 21
duration = "11s"
time_scale = 60
models = "models"

[fleet]
devices = 20
arrival = { ramp = "1s" }
mix = [ { model = "fault-sensor", share = 1.0, group = "sensors" } ]

[[phase]]
at = "2s"
action = "fault"
fault = "error_burst"
share = "100%"
duration = "3s"

[[phase]]
at = "6s"
action = "fault"
fault = "watchdog_reset"
group = "sensors"
share = "50%"

[[phase]]
at = "9s"
action = "command"
command = "diagnose"

[[phase]]
at = "10s"
action = "command"
command = "logs"

[gates]
"devices.lost" = "== 0"
"#;

#[test]
fn an_error_burst_reaches_the_device_views_and_reset_devices_start_over() {
    let dir = scratch("run-faults");
    std::fs::create_dir_all(dir.join("models")).expect("dir");
    std::fs::write(dir.join("models/fault-sensor.toml"), MODEL).expect("model");
    std::fs::write(dir.join("faults.toml"), SCENARIO).expect("scenario");
    let backend = standalone::process(&dir.join("data"), &[], 1);
    let out = dir.join("report");
    let output = run_against(&backend.http, &dir.join("faults.toml"), &out);
    assert_exit(&output, 0);
    let summary = summary(&out);
    // Three simulated minutes of burst: two reports or more a device.
    let faulty = counter(&summary, "faults.reports");
    assert!((40..=80).contains(&faulty), "{faulty} reports in the burst");
    let resets = counter(&summary, "faults.resets");
    assert!((3..=17).contains(&resets), "{resets} of 20 reset at 50%");
    assert!(
        counter(&summary, "connected") >= 20 + resets,
        "every reset device connected again: {summary}"
    );

    let devices = get(&backend.http, "/api/v1/devices?limit=100");
    let devices = devices["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 20);
    for device in devices {
        let id = device["id"].as_str().expect("id");
        let view = get(&backend.http, &format!("/api/v1/devices/{id}"));
        let status = &view["status"];
        assert!(status["error_reports"].as_u64() >= Some(2), "{view}");
        assert_eq!(status["last_errors"], serde_json::json!([17, 42]), "{view}");
    }

    // Each device's health at 9 s (540 simulated s): a reset one (at 360 s, booted 20 s later)
    // counts it and has been up under 200 s; the others since they arrived, over 470 s.
    let audit = get(&backend.http, "/api/v1/audit?limit=1000&action=command.sent");
    let mut reset_seen = 0;
    let mut answered = 0;
    let mut logs = Vec::new();
    for entry in audit["entries"].as_array().expect("entries") {
        let id = entry["detail"]["command"].as_str().expect("command id");
        let record = get(&backend.http, &format!("/api/v1/commands/{id}"))["command"].clone();
        assert_eq!(record["state"], "succeeded", "{record}");
        let output: &Value = &record["result"]["output"];
        if record["name"] == "logs" {
            logs.push(output.clone());
            continue;
        }
        let uptime = output["uptime_s"].as_f64().expect("uptime");
        let errors = &output["errors"];
        assert!(errors["error_reports"].as_u64() >= Some(2), "{output}");
        match errors["resets"].as_u64() {
            Some(1) => {
                reset_seen += 1;
                assert!((100.0..200.0).contains(&uptime), "started over: {output}");
                assert_eq!(errors["connection_lost"], 0, "a reset is not a lost link: {output}");
            }
            Some(0) => assert!(uptime > 470.0, "{output}"),
            _ => panic!("one reset at most: {output}"),
        }
        answered += 1;
    }
    assert_eq!(answered, 20);
    assert_eq!(
        reset_seen, resets,
        "the devices that said they reset are the ones counted"
    );
    // Each device's own log has the burst where it started (the first report after 120
    // simulated seconds) and ended (the first after 300), and a reset where it happened.
    assert_eq!(logs.len(), 20);
    let mut reset_logged = 0;
    for log in &logs {
        let events = log["events"].as_array().expect("events");
        let at = |event: &str| -> Option<f64> {
            events
                .iter()
                .find(|e| e["event"] == event && (e["fault"] == "error_burst" || e["fault"].is_null()))
                .and_then(|e| e["at_s"].as_f64())
        };
        let started = at("fault_started").expect("the burst started");
        assert!((120.0..=185.0).contains(&started), "{log}");
        let ended = at("fault_ended").expect("the burst ended");
        assert!((300.0..=365.0).contains(&ended), "{log}");
        if let Some(reset) = at("watchdog_reset") {
            assert!((355.0..=365.0).contains(&reset), "{log}");
            reset_logged += 1;
        }
    }
    assert_eq!(reset_logged, resets, "every reset in its device's log");
    drop(backend);
}

const WATCHED: &str = r#"[scenario]
name = "fault-alerts"
seed = 22
duration = "12s"
time_scale = 60
models = "models"

[fleet]
devices = 40
arrival = { ramp = "1s" }
mix = [ { model = "fault-sensor", share = 1.0, group = "sensors" } ]

[[phase]]
at = "1500ms"
action = "alert"
rule = "sensor_stuck"
reports = 3

[[phase]]
at = "1500ms"
action = "alert"
rule = "error_codes"
group = "sensors"
at_least = 2
within = "3s"

[[phase]]
at = "3s"
action = "fault"
fault = "stuck_sensor"
share = "50%"
duration = "4s"

[[phase]]
at = "3s"
action = "fault"
fault = "error_burst"
share = "50%"
duration = "4s"

[gates]
"alerts.missed" = "== 0"
"alerts.unexpected" = "== 0"
"alert.latency.p99" = "<= 1s"
"#;

#[test]
fn the_alerts_faults_call_for_are_measured_from_the_report_that_crossed_the_rule() {
    let dir = scratch("run-fault-alerts");
    std::fs::create_dir_all(dir.join("models")).expect("dir");
    std::fs::write(dir.join("models/fault-sensor.toml"), MODEL).expect("model");
    std::fs::write(dir.join("watched.toml"), WATCHED).expect("scenario");
    let backend = standalone::process(&dir.join("data"), &[], 1);
    let out = dir.join("report");
    let output = run_against(&backend.http, &dir.join("watched.toml"), &out);
    let summary = summary(&out);
    assert_exit(&output, 0);
    // About half the fleet stuck and half erring, each alerted once.
    let expected = counter(&summary, "alerts.expected");
    assert!((20..=60).contains(&expected), "{expected} alerts called for: {summary}");
    assert_eq!(counter(&summary, "alerts.raised"), expected, "{summary}");
    assert_eq!(
        summary["metrics"]["histograms"]["alert.latency"]["count"].as_u64(),
        Some(expected)
    );
    // Both kinds were raised, and audited with their causes.
    let audit = get(&backend.http, "/api/v1/audit?limit=1000&action=alert.raised");
    let causes: Vec<&Value> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| &e["detail"])
        .collect();
    assert!(
        causes.iter().any(|c| c["reports"] == 3 && c["value"].is_number()),
        "{audit}"
    );
    assert!(causes.iter().any(|c| c["within_s"] == 3.0), "{audit}");
    drop(backend);
}
