//! `fleetsim run` against a real MQTT broker, Mosquitto: devices connect without provisioning,
//! subscribe to their command topic, publish telemetry to the scenario's topic template at
//! their model's rate (QoS 1 meters, QoS 0 cameras), and an independent client on the broker
//! receives every report the run counted and sends devices messages they count.

use std::time::Duration;

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::Packet;

#[path = "support/mosquitto.rs"]
mod mosquitto;
use mosquitto::Mosquitto;

#[path = "support/binary.rs"]
mod binary;
use binary::{repo, scratch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_publishes_to_mosquitto_through_a_topic_template() {
    let broker = Mosquitto::start();
    let mut watcher = broker.watcher("plant/#").await;

    let dir = scratch("run-mqtt");
    std::fs::create_dir_all(&dir).expect("dir");
    let scenario = dir.join("broker.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"
[scenario]
name = "broker"
seed = 3
duration = "3s"
time_scale = 600
models = "{models}"

[backend]
kind = "mqtt"
url = "mqtt://{addr}"
telemetry_topic = "plant/{{group}}/{{serial}}/t"
command_topic = "plant/{{group}}/{{serial}}/cmd"

[fleet]
devices = 20
arrival = {{ ramp = "1s" }}
mix = [ {{ model = "smart-meter", share = 0.5, group = "meters" }},
        {{ model = "camera", share = 0.5, group = "cameras" }} ]

[gates]
"publish.latency.p99" = "<= 1s"
"errors.total" = "== 0"
"#,
            models = repo().join("device-models").display(),
            addr = broker.addr
        ),
    )
    .expect("scenario file");
    let out = dir.join("report");
    let (scenario_arg, out_arg) = (scenario.clone(), out.clone());
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_fleetsim"))
            .arg("run")
            .arg(&scenario_arg)
            .arg("--out")
            .arg(&out_arg)
            .output()
            .expect("fleetsim runs")
    });

    let mut received = 0u64;
    let mut acknowledged = 0u64;
    let mut topics_ok = true;
    let mut commanded: Vec<String> = Vec::new();
    // Read until the run has ended and the broker has had a moment to deliver the last reports.
    let mut quiet_until: Option<tokio::time::Instant> = None;
    loop {
        let now = tokio::time::Instant::now();
        if quiet_until.is_some_and(|until| now >= until) {
            break;
        }
        if quiet_until.is_none() && run.is_finished() {
            quiet_until = Some(now + Duration::from_millis(500));
        }
        tokio::select! {
            packet = watcher.read() => match packet.expect("watcher reads") {
                Some(Packet::Publish(message)) if message.topic.ends_with("/cmd") => {
                    // Its own messages to the devices, heard through its subscription.
                    if message.qos == QoS::AtLeastOnce {
                        watcher.ack(message.pkid).await.expect("ack");
                    }
                }
                Some(Packet::Publish(message)) => {
                    let topic = message.topic.as_str();
                    topics_ok &= (topic.starts_with("plant/meters/SM-") || topic.starts_with("plant/cameras/CAM-"))
                        && topic.ends_with("/t");
                    received += 1;
                    if message.qos == QoS::AtLeastOnce {
                        acknowledged += 1;
                        watcher.ack(message.pkid).await.expect("ack");
                    }
                    // Send the first few devices heard from a message on their command topic.
                    let device = topic.trim_end_matches("/t").to_owned();
                    if commanded.len() < 5 && !commanded.contains(&device) && !run.is_finished() {
                        watcher
                            .publish(&format!("{device}/cmd"), b"hello", QoS::AtLeastOnce)
                            .await
                            .expect("command");
                        commanded.push(device);
                    }
                }
                Some(_) => {}
                None => panic!("the broker closed the watcher"),
            },
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    let finished = run.await.expect("run task");
    let stdout = String::from_utf8_lossy(&finished.stdout);
    assert_eq!(
        finished.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&finished.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary.json")).expect("JSON");
    let published = summary["metrics"]["counters"]["published"].as_u64().expect("published");
    // 20 meters reporting every 15 simulated minutes for about 30 simulated minutes each.
    assert!(published >= 40, "{summary}");
    assert_eq!(received, published, "the broker delivered every report the run counted");
    assert!(topics_ok, "every topic follows the template");
    assert!(
        acknowledged > 0 && acknowledged < received,
        "QoS 1 and QoS 0 reports both arrived"
    );
    assert_eq!(
        summary["metrics"]["histograms"]["publish.latency"]["count"].as_u64(),
        Some(acknowledged),
        "a PUBACK times each QoS 1 report"
    );
    let heard = summary["metrics"]["counters"]["received"].as_u64().expect("received");
    assert_eq!(commanded.len(), 5);
    assert!(
        (1..=5).contains(&heard),
        "devices received messages on their subscribed command topics: {heard}"
    );
}

/// A `decommission` phase against a broker (which has no operator API): the devices it picks
/// leave of their own accord, with a DISCONNECT the broker logs as a clean goodbye, and stop;
/// the others stay until the run ends (their sockets just close).
#[test]
fn a_decommission_phase_against_a_broker_disconnects_the_devices_it_picks() {
    let broker = Mosquitto::start_with(
        "user root\nlog_dest file {log}\nlog_type notice\nlog_type information\nconnection_messages true\n",
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(broker.addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "the broker listens");
        std::thread::sleep(Duration::from_millis(50));
    }
    let dir = scratch("run-mqtt-retire");
    std::fs::create_dir_all(&dir).expect("dir");
    let scenario = dir.join("retire.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"
[scenario]
name = "retire"
seed = 5
duration = "4s"
time_scale = 600
models = "{models}"

[backend]
kind = "mqtt"
url = "mqtt://{addr}"
telemetry_topic = "plant/{{group}}/{{serial}}/t"

[fleet]
devices = 16
arrival = {{ ramp = "1s" }}
mix = [ {{ model = "smart-meter", share = 1.0, group = "meters" }} ]

[[phase]]
at = "2s"
action = "decommission"
group = "meters"
share = "50%"

[gates]
"errors.total" = "== 0"
"#,
            models = repo().join("device-models").display(),
            addr = broker.addr
        ),
    )
    .expect("scenario file");
    let out = dir.join("report");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fleetsim"))
        .args(["run", "--headless"])
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("fleetsim runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).expect("summary")).expect("json");
    let retired = summary["metrics"]["gauges"]["devices.decommissioned"]
        .as_u64()
        .expect("gauge");
    assert!((2..=14).contains(&retired), "about half of 16: {retired}");
    assert_eq!(summary["metrics"]["gauges"]["devices.online"], 16 - retired);
    std::thread::sleep(Duration::from_millis(300));
    let log = broker.log();
    let goodbyes = log.lines().filter(|l| l.contains(" disconnected.")).count() as u64;
    assert_eq!(goodbyes, retired, "one DISCONNECT for each device retired:\n{log}");
}
