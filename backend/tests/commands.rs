//! Remote commands end to end: the operator sends through the HTTP API, the device (a real
//! rumqttc client) receives on its command topic and answers, and the result, a timeout, or
//! delivery to a persistent session that was offline shows in the command's record.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{PATIENCE, TestBackend, next_publish, wait_for};
use rumqttc::{Packet, QoS};
use serde_json::Value;

async fn command_state(t: &TestBackend, id: &str) -> Value {
    let (status, body) = t.http("GET", &format!("/api/v1/commands/{id}"), None).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).expect("JSON")["command"].clone()
}

#[tokio::test]
async fn a_device_receives_a_command_and_its_answer_is_recorded() {
    let t = TestBackend::start().await;
    let (client, mut eventloop, id) = t.device("SN-CMD").await;
    client
        .subscribe(format!("fleet/v1/d/{id}/cmd/+"), QoS::AtLeastOnce)
        .await
        .expect("queue");
    wait_for(&mut eventloop, |p| matches!(p, Packet::SubAck(_))).await;

    let (status, body) = t
        .http(
            "POST",
            &format!("/api/v1/devices/{id}/commands"),
            Some(r#"{"command": "logs"}"#),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let sent: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(sent["delivery"], "sent");
    let cmd_id = sent["command"]["id"].as_str().expect("id").to_owned();

    let publish = next_publish(&mut eventloop).await;
    assert_eq!(publish.topic, format!("fleet/v1/d/{id}/cmd/{cmd_id}"));
    let message: Value = serde_json::from_slice(&publish.payload).expect("JSON");
    assert_eq!(message["command"], "logs");
    let answer = r#"{"status": "ok", "output": ["boot 1.4.2", "joined sensors"]}"#;
    client
        .publish(
            format!("fleet/v1/d/{id}/cmd/{cmd_id}/result"),
            QoS::AtLeastOnce,
            false,
            answer,
        )
        .await
        .expect("queue");
    wait_for(&mut eventloop, |p| matches!(p, Packet::PubAck(_))).await;

    let record = command_state(&t, &cmd_id).await;
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(record["result"]["output"][1], "joined sensors");
    assert_eq!(t.backend.gateway.stats().command_results.load(Ordering::Relaxed), 1);
    t.stop().await;
}

#[tokio::test]
async fn an_unanswered_command_times_out_and_a_late_answer_is_ignored() {
    let t = TestBackend::start().await;
    let (client, mut eventloop, id) = t.device("SN-SLOW").await;
    client
        .subscribe(format!("fleet/v1/d/{id}/cmd/+"), QoS::AtLeastOnce)
        .await
        .expect("queue");
    wait_for(&mut eventloop, |p| matches!(p, Packet::SubAck(_))).await;
    let body = r#"{"command": "reboot", "timeout_s": 1}"#;
    let (status, reply) = t
        .http("POST", &format!("/api/v1/devices/{id}/commands"), Some(body))
        .await;
    assert_eq!(status, 202, "{reply}");
    let cmd_id = serde_json::from_str::<Value>(&reply).expect("JSON")["command"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let _ = next_publish(&mut eventloop).await;

    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if command_state(&t, &cmd_id).await["state"] == "timed_out" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the command never timed out");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client
        .publish(
            format!("fleet/v1/d/{id}/cmd/{cmd_id}/result"),
            QoS::AtLeastOnce,
            false,
            r#"{"status":"ok"}"#,
        )
        .await
        .expect("queue");
    wait_for(&mut eventloop, |p| matches!(p, Packet::PubAck(_))).await;
    assert_eq!(command_state(&t, &cmd_id).await["state"], "timed_out");
    assert_eq!(
        t.backend
            .gateway
            .stats()
            .command_results_ignored
            .load(Ordering::Relaxed),
        1
    );
    t.stop().await;
}

#[tokio::test]
async fn a_command_for_an_offline_persistent_session_arrives_on_return() {
    let t = TestBackend::start().await;
    let (options, id) = t.persistent_device("SN-AWAY").await;
    let (client, mut eventloop, _) = t.connect(options.clone()).await.expect("connects");
    client
        .subscribe(format!("fleet/v1/d/{id}/cmd/+"), QoS::AtLeastOnce)
        .await
        .expect("queue");
    wait_for(&mut eventloop, |p| matches!(p, Packet::SubAck(_))).await;
    client.disconnect().await.expect("queue");
    common::wait_closed(&mut eventloop).await;
    t.wait_offline(&id).await;

    let (status, reply) = t
        .http(
            "POST",
            &format!("/api/v1/devices/{id}/commands"),
            Some(r#"{"command": "set", "args": {"led": "on"}}"#),
        )
        .await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(
        serde_json::from_str::<Value>(&reply).expect("JSON")["delivery"],
        "queued"
    );

    let (_client, mut eventloop, present) = t.connect(options).await.expect("reconnects");
    assert!(present);
    let publish = next_publish(&mut eventloop).await;
    let message: Value = serde_json::from_slice(&publish.payload).expect("JSON");
    assert_eq!(message["args"]["led"], "on");
    t.stop().await;
}

#[tokio::test]
async fn bad_command_requests_get_json_errors() {
    let t = TestBackend::start().await;
    let (_client, _eventloop, id) = t.device("SN-BADCMD").await;
    let path = format!("/api/v1/devices/{id}/commands");
    let (status, body) = t.http("POST", &path, Some(r#"{"command": "self-destruct"}"#)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("command must be one of reboot, set, logs"), "{body}");
    let (status, body) = t
        .http("POST", &path, Some(r#"{"command": "reboot", "timeout_s": 0}"#))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = t
        .http(
            "POST",
            "/api/v1/devices/d-00000000000000000000/commands",
            Some(r#"{"command":"reboot"}"#),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = t.http("GET", "/api/v1/commands/c-424242", None).await;
    assert_eq!(status, 404);
    t.stop().await;
}
