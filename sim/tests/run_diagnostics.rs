//! Diagnostics on demand against a standalone reference backend: a fleet takes a config push,
//! a `set`, a mass outage, then `diagnose` and `logs`. The backend's records of those commands
//! hold what each device lived through and how it stood: its settings reported back as
//! reported config, its health (battery, signal, firmware, config version, error counts) and
//! its own log, in time order, with the outage in it.

use serde_json::{Value, json};

#[path = "support/binary.rs"]
mod binary;
#[path = "support/standalone.rs"]
mod standalone;
use binary::{assert_exit, counter, run_against, scratch, summary};
use standalone::get;

const MODEL: &str = r#"name = "diag-sensor"
protocol = "mqtt"
firmware = "3.1.0"
[telemetry]
interval = "1m"
payload_bytes = 96
[battery]
capacity_mah = 2400
sleep_ua = 8
tx_mas = 30
low_at = "15%"
low_interval_factor = 2.0
[link]
mean_online = "10000d"
mean_offline = "1s"
reconnect = { initial = "1s", max = "20s", multiplier = 2.0 }
signal = { mean = -90, spread = 6 }
"#;

const SCENARIO: &str = r#"[scenario]
name = "diagnostics"
seed = 18
duration = "10s"
time_scale = 60
models = "models"

[fleet]
devices = 6
arrival = { ramp = "1s" }
mix = [ { model = "diag-sensor", share = 1.0, group = "meters" } ]

[[phase]]
at = "2s"
action = "config"
group = "meters"
set = { mode = "eco" }

[[phase]]
at = "3s"
action = "command"
group = "meters"
command = "set"
args = { led = "on", sample_s = 30 }

[[phase]]
at = "4s"
action = "outage"
share = "100%"
duration = "1s"

[[phase]]
at = "7s"
action = "command"
group = "meters"
command = "diagnose"

[[phase]]
at = "8s"
action = "command"
group = "meters"
command = "logs"

[gates]
"devices.lost" = "== 0"
"command.latency.p99" = "<= 2s"
"#;

#[test]
fn devices_answer_set_diagnose_and_logs_from_what_they_hold() {
    let dir = scratch("run-diagnostics");
    std::fs::create_dir_all(dir.join("models")).expect("dir");
    std::fs::write(dir.join("models/diag-sensor.toml"), MODEL).expect("model");
    std::fs::write(dir.join("diagnostics.toml"), SCENARIO).expect("scenario");
    let backend = standalone::process(&dir.join("data"), &[], 1);
    let out = dir.join("report");
    let output = run_against(&backend.http, &dir.join("diagnostics.toml"), &out);
    assert_exit(&output, 0);
    let summary = summary(&out);
    assert_eq!(
        counter(&summary, "commands.answered"),
        18,
        "three commands to six devices"
    );

    // Every command the operator sent, by name, with what the device answered.
    let audit = get(&backend.http, "/api/v1/audit?limit=1000");
    let mut answers: Vec<(String, String, Value)> = Vec::new();
    for entry in audit["entries"].as_array().expect("entries") {
        if entry["action"] != "command.sent" {
            continue;
        }
        let id = entry["detail"]["command"].as_str().expect("command id");
        let record = get(&backend.http, &format!("/api/v1/commands/{id}"))["command"].clone();
        assert_eq!(record["state"], "succeeded", "{record}");
        let name = record["name"].as_str().expect("name").to_owned();
        let device = record["device_id"].as_str().expect("device").to_owned();
        answers.push((name, device, record["result"]["output"].clone()));
    }
    assert_eq!(answers.len(), 18, "{answers:?}");

    for (name, device, output) in &answers {
        let view = get(&backend.http, &format!("/api/v1/devices/{device}"));
        let config_version = view["config"]["version"].as_u64().expect("desired version");
        match name.as_str() {
            "set" => assert_eq!(output, &json!({"applied": {"led": "on", "sample_s": 30}}), "{device}"),
            "diagnose" => {
                assert_eq!(output["firmware"], "3.1.0", "{output}");
                assert_eq!(output["config_version"], config_version, "{output}");
                let battery = output["battery"].as_f64().expect("battery");
                assert!(
                    (0.95..=1.0).contains(&battery),
                    "ten simulated minutes drain little: {output}"
                );
                assert_eq!(output["low_battery"], false, "{output}");
                let rssi = output["rssi"].as_i64().expect("rssi");
                assert!(
                    (-98..=-82).contains(&rssi),
                    "placed within 6 dB of -90, then 2: {output}"
                );
                let uptime = output["uptime_s"].as_f64().expect("uptime");
                assert!(
                    (300.0..=480.0).contains(&uptime),
                    "asked 7 real s in, arrived within 1: {output}"
                );
                assert!(
                    output["errors"]["connection_lost"].as_u64() >= Some(1),
                    "the outage: {output}"
                );
                assert_eq!(output["errors"]["provision"], 0, "{output}");
            }
            "logs" => {
                let events = output["events"].as_array().expect("events");
                let times: Vec<f64> = events.iter().map(|e| e["at_s"].as_f64().expect("at_s")).collect();
                assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order: {output}");
                let said = |event: &str| events.iter().filter(|e| e["event"] == event).count();
                for event in ["provisioned", "connected", "connection_lost"] {
                    assert!(said(event) >= 1, "{event} in {output}");
                }
                assert!(said("connected") >= 2, "connected again after the outage: {output}");
                let applied = events.iter().find(|e| e["event"] == "config_applied").expect("config");
                assert_eq!(applied["version"], config_version, "{output}");
                let commands: Vec<&Value> = events
                    .iter()
                    .filter(|e| e["event"] == "command")
                    .map(|e| &e["command"])
                    .collect();
                assert_eq!(commands, ["set", "diagnose", "logs"], "{output}");
                let outage = events.iter().find(|e| e["event"] == "connection_lost").expect("lost");
                let at = outage["at_s"].as_f64().expect("at_s");
                assert!(
                    (235.0..=245.0).contains(&at),
                    "cut off 4 real s in, simulated 240 s: {output}"
                );
            }
            other => panic!("unexpected command {other}"),
        }
        // The settings `set` applied, reported back with the config version.
        assert_eq!(
            view["reported"]["settings"],
            json!({"led": "on", "sample_s": 30}),
            "{view}"
        );
        assert_eq!(view["reported"]["version"], config_version, "{view}");
    }
    drop(backend);
}
