//! Duty-cycled devices in a real run: they sleep between reports holding no socket and no
//! task, and at each report wake, connect with a clean session, publish and leave.
//!
//! Against Mosquitto, the broker's own peak of clients connected at once (`$SYS`) shows that
//! only the few devices awake at a time hold a connection, and an independent
//! subscriber receives every report the run counted. Against the reference backend, every
//! device provisions at its first wake and the backend holds them all at the end.

use std::ffi::OsStr;
use std::time::Duration;

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::Packet;

#[path = "support/binary.rs"]
mod binary;
#[path = "support/mosquitto.rs"]
mod mosquitto;
use binary::{assert_exit, repo, scratch, summary};
use mosquitto::Mosquitto;

const DEVICES: u64 = 300;

/// 300 sleepy sensors reporting every 15 simulated minutes, 3 real seconds at this time scale.
fn scenario(backend: &str) -> String {
    format!(
        r#"
[scenario]
name = "sleepy"
seed = 11
duration = "9s"
time_scale = 300
models = "{models}"

{backend}

[fleet]
devices = {DEVICES}
arrival = {{ ramp = "1s" }}
mix = [ {{ model = "sleepy-sensor", share = 1.0, group = "sensors" }} ]

[gates]
"errors.total" = "== 0"
"#,
        models = repo().join("device-models").display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_devices_hold_no_connection_at_the_broker() {
    let broker = Mosquitto::start_with("sys_interval 1\n");
    let mut watcher = broker.watcher("sleepy/#").await;
    watcher
        .subscribe(&[("$SYS/broker/clients/maximum", QoS::AtMostOnce)])
        .await
        .expect("subscribe to $SYS");
    let dir = scratch("run-sleepy-broker");
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("sleepy.toml");
    let backend = format!(
        "[backend]\nkind = \"mqtt\"\nurl = \"mqtt://{}\"\ntelemetry_topic = \"sleepy/{{serial}}\"",
        broker.addr
    );
    std::fs::write(&file, scenario(&backend)).expect("scenario file");
    let out = dir.join("report");
    let (file_arg, out_arg) = (file.clone(), out.clone());
    let run = tokio::task::spawn_blocking(move || {
        binary::fleetsim(&[
            OsStr::new("run"),
            file_arg.as_os_str(),
            OsStr::new("--out"),
            out_arg.as_os_str(),
        ])
    });

    let (mut received, mut most_clients) = (0u64, None);
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
                Some(Packet::Publish(message)) if message.topic.starts_with("$SYS") => {
                    let text = String::from_utf8_lossy(&message.payload).trim().to_owned();
                    most_clients = Some(text.parse::<u64>().expect("a client count"));
                }
                Some(Packet::Publish(message)) => {
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
    let output = run.await.expect("run task");
    assert_exit(&output, 0);
    let summary = summary(&out);
    let counters = &summary["metrics"]["counters"];
    let published = counters["published"].as_u64().expect("published");
    // Each device's first report falls in its first 3 s, then one every 3 s: two or three each.
    assert!(published >= 2 * DEVICES, "{summary}");
    assert_eq!(received, published, "the broker delivered every report the run counted");
    assert_eq!(
        counters["connected"].as_u64(),
        Some(published),
        "one connect per report"
    );
    // The broker's own peak of clients connected at once (the watcher is one of them); a
    // device is awake for a few milliseconds of every 3 s.
    let most = most_clients.expect("the broker reported its peak of clients");
    assert!(
        most < DEVICES / 5,
        "{most} clients connected at once: sleeping devices hold no connection"
    );
    let harness = &summary["harness"];
    assert_eq!(harness["peak_sleeping"].as_u64(), Some(DEVICES), "{harness}");
    let tasks = harness["peak_device_tasks"].as_u64().expect("peak_device_tasks");
    assert!(
        tasks < DEVICES / 5,
        "{tasks} device tasks at once: sleeping devices hold no task"
    );
}

#[test]
fn sleepy_devices_provision_at_their_first_wake_against_the_reference_backend() {
    let dir = scratch("run-sleepy-embedded");
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("sleepy.toml");
    std::fs::write(&file, scenario("[backend]\nkind = \"embedded\"")).expect("scenario file");
    let out = dir.join("report");
    let output = binary::fleetsim(&[
        OsStr::new("run"),
        file.as_os_str(),
        OsStr::new("--out"),
        out.as_os_str(),
    ]);
    assert_exit(&output, 0);
    let summary = summary(&out);
    let counters = &summary["metrics"]["counters"];
    assert_eq!(counters["provisioned"].as_u64(), Some(DEVICES), "{summary}");
    assert_eq!(summary["backend"]["devices_active"].as_u64(), Some(DEVICES));
    assert_eq!(summary["metrics"]["devices.lost"].as_u64(), Some(0));
    let published = counters["published"].as_u64().expect("published");
    assert!(published >= 2 * DEVICES, "{summary}");
    assert_eq!(
        counters["connected"].as_u64(),
        Some(published),
        "one connect per report"
    );
    // A device leaves only after its report's PUBACK, which times it; only devices caught
    // awake when the run ends (a handful) may go untimed.
    let timed = summary["metrics"]["histograms"]["publish.latency"]["count"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        timed <= published && timed + 20 >= published,
        "{timed} of {published} reports timed by their PUBACK"
    );
}
