//! A broker cluster: three Mosquitto processes on their own loopback ports stand for a
//! cluster's nodes. `fleetsim run` spreads the devices over them by a stable hash of the
//! serial: every node gets devices, each device talks to one node only, and every report the
//! run counted arrives at some node.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::Packet;

#[path = "support/mosquitto.rs"]
mod mosquitto;
use mosquitto::Mosquitto;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_spread_over_the_nodes_of_a_cluster() {
    let nodes = [Mosquitto::start(), Mosquitto::start(), Mosquitto::start()];
    let mut watchers = Vec::new();
    for node in &nodes {
        watchers.push(node.watcher("cluster/#").await);
    }
    let dir = std::env::temp_dir().join(format!("fleetsim-cluster-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let scenario = dir.join("cluster.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"
[scenario]
name = "cluster"
seed = 8
duration = "3s"
time_scale = 600
models = "{models}"

[backend]
kind = "mqtt"
url = "mqtt://{a}"
cluster = ["mqtt://{b}", "mqtt://{c}"]
telemetry_topic = "cluster/{{serial}}/t"

[fleet]
devices = 30
arrival = {{ ramp = "1s" }}
mix = [ {{ model = "smart-meter", share = 1.0, group = "meters" }} ]
"#,
            models = repo().join("device-models").display(),
            a = nodes[0].addr,
            b = nodes[1].addr,
            c = nodes[2].addr,
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

    // Which node heard each device, and how many reports each node delivered.
    let mut heard: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    let mut per_node = [0u64; 3];
    let mut quiet_until: Option<tokio::time::Instant> = None;
    loop {
        let now = tokio::time::Instant::now();
        if quiet_until.is_some_and(|until| now >= until) {
            break;
        }
        if quiet_until.is_none() && run.is_finished() {
            quiet_until = Some(now + Duration::from_millis(500));
        }
        for (k, watcher) in watchers.iter_mut().enumerate() {
            let Ok(packet) = tokio::time::timeout(Duration::from_millis(10), watcher.read()).await else {
                continue;
            };
            if let Some(Packet::Publish(message)) = packet.expect("watcher reads") {
                if message.qos == QoS::AtLeastOnce {
                    watcher.ack(message.pkid).await.expect("ack");
                }
                let device = message.topic.split('/').nth(1).unwrap_or_default().to_owned();
                heard.entry(device).or_default().insert(k);
                per_node[k] += 1;
            }
        }
    }
    let finished = run.await.expect("run task");
    assert_eq!(
        finished.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&finished.stdout)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary.json")).expect("JSON");
    let published = summary["metrics"]["counters"]["published"].as_u64().expect("published");
    assert_eq!(
        per_node.iter().sum::<u64>(),
        published,
        "every report arrived at some node"
    );
    assert_eq!(heard.len(), 30, "every device was heard");
    assert!(
        heard.values().all(|nodes| nodes.len() == 1),
        "each device talks to one node: {heard:?}"
    );
    assert!(per_node.iter().all(|n| *n > 0), "every node got devices: {per_node:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
