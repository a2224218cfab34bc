//! Durability of the standalone backend: SIGKILL in the middle of a provisioning burst,
//! restart on the same data, and every device that was told `accepted` is still in the
//! registry and can connect with the credentials it received. None lost.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleetsim::cli::backend::Standalone;
use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS};

/// Devices provisioning at once.
const BURST: usize = 400;
/// The backend is killed once this many devices hold an accepted reply.
const KILL_AFTER: usize = 60;
/// A wait that should end at once; running out fails the test.
const PATIENCE: Duration = Duration::from_secs(20);

fn start(data: &Path) -> Standalone {
    Standalone::spawn(
        Path::new(env!("CARGO_BIN_EXE_fleetsim")),
        data,
        &["factory:s3cret:sensors"],
    )
    .expect("fleetsim backend starts")
}

fn options(server: &Standalone, client_id: &str, user: &str, password: &str) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, server.ready.mqtt.ip().to_string(), server.ready.mqtt.port());
    options.set_credentials(user, password);
    options.set_keep_alive(Duration::from_secs(30));
    options
}

/// Provisions one serial; returns (device id, token) once `accepted` arrives, or `None` if
/// the connection dies first (the backend was killed).
async fn provision(opts: MqttOptions, serial: String) -> Option<(String, String)> {
    let (client, mut eventloop) = AsyncClient::new(opts, 8);
    client
        .subscribe(format!("fleet/v1/provision/{serial}/+"), QoS::AtLeastOnce)
        .await
        .ok()?;
    client
        .publish(
            format!("fleet/v1/provision/{serial}"),
            QoS::AtLeastOnce,
            false,
            b"{}".to_vec(),
        )
        .await
        .ok()?;
    loop {
        match tokio::time::timeout(PATIENCE, eventloop.poll()).await.ok()?.ok()? {
            Event::Incoming(Packet::Publish(reply)) if reply.topic.ends_with("/accepted") => {
                let body: serde_json::Value = serde_json::from_slice(&reply.payload).ok()?;
                return Some((
                    body["device_id"].as_str()?.to_owned(),
                    body["token"].as_str()?.to_owned(),
                ));
            }
            Event::Incoming(Packet::Publish(reply)) => panic!("provisioning rejected: {reply:?}"),
            _ => {}
        }
    }
}

/// Connects as a device and returns the CONNACK code.
async fn connect_code(opts: MqttOptions) -> ConnectReturnCode {
    let (_client, mut eventloop) = AsyncClient::new(opts, 8);
    loop {
        match tokio::time::timeout(PATIENCE, eventloop.poll())
            .await
            .expect("CONNACK in time")
        {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => return ack.code,
            Ok(_) => {}
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return code,
            Err(other) => panic!("connect failed: {other}"),
        }
    }
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fleetsim-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_burst_loses_no_accepted_device() {
    let data = scratch();
    let mut server = start(&data);
    let accepted: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let enough = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for i in 0..BURST {
        let opts = options(&server, &format!("prov-{i}"), "claim:factory", "s3cret");
        let (accepted, enough) = (Arc::clone(&accepted), Arc::clone(&enough));
        tasks.push(tokio::spawn(async move {
            if let Some(identity) = provision(opts, format!("SN-CRASH-{i:05}")).await {
                let mut list = accepted.lock().expect("no panics while held");
                list.push(identity);
                if list.len() == KILL_AFTER {
                    enough.notify_one();
                }
            }
        }));
    }
    tokio::time::timeout(PATIENCE, enough.notified())
        .await
        .expect("provisioning under way");
    // Child::kill sends SIGKILL: no shutdown path runs.
    server.kill().expect("SIGKILL");
    for task in tasks {
        let _ = task.await;
    }
    let accepted = accepted.lock().expect("no panics while held").clone();
    assert!(
        accepted.len() >= KILL_AFTER && accepted.len() < BURST,
        "the kill landed mid-burst: {}",
        accepted.len()
    );

    let mut server = start(&data);
    for (id, token) in &accepted {
        let code = connect_code(options(&server, id, id, token)).await;
        assert_eq!(
            code,
            ConnectReturnCode::Success,
            "device {id} was acknowledged before the kill"
        );
    }
    server.kill().expect("stop");
    let _ = std::fs::remove_dir_all(&data);
}
