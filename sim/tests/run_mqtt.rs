//! `fleetsim run` against a real MQTT broker, Mosquitto: devices connect without provisioning,
//! publish telemetry to the scenario's topic template at their model's rate, and an
//! independent subscriber on the broker receives every report the run counted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fleetsim::transport::mqtt::{ConnectParams, MqttConn, TransportError};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::Packet;

#[path = "support/mosquitto.rs"]
mod mosquitto;
use mosquitto::Mosquitto;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_publishes_to_mosquitto_through_a_topic_template() {
    let broker = Mosquitto::start();
    let params = ConnectParams {
        client_id: "watcher",
        login: None,
        keep_alive_s: 30,
        clean_session: true,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut watcher = loop {
        match MqttConn::connect(broker.addr, None, params).await {
            Ok((conn, _)) => break conn,
            Err(TransportError::Io(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("mosquitto refused the watcher: {other}"),
        }
    };
    watcher
        .subscribe(&[("plant/#", QoS::AtLeastOnce)])
        .await
        .expect("subscribe");

    let dir = std::env::temp_dir().join(format!("fleetsim-run-mqtt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
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

[fleet]
devices = 20
arrival = {{ ramp = "1s" }}
mix = [ {{ model = "smart-meter", share = 1.0, group = "meters" }} ]

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
    let mut topics_ok = true;
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
                Some(Packet::Publish(message)) => {
                    topics_ok &= message.topic.starts_with("plant/meters/SM-") && message.topic.ends_with("/t");
                    received += 1;
                    if message.qos == QoS::AtLeastOnce {
                        watcher.ack(message.pkid).await.expect("ack");
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
    assert_eq!(
        summary["metrics"]["histograms"]["publish.latency"]["count"].as_u64(),
        Some(published)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
