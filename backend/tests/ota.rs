//! OTA end to end: firmware upload and download with Range resume over real HTTP, and
//! campaigns rolled out in waves to real MQTT devices: a good image completes, a bad image
//! halts in its first wave (recording why), an operator halt stops the next wave.

mod common;

use std::time::Duration;

use common::{PATIENCE, TestBackend, wait_for};
use rumqttc::{Event, Packet, QoS};
use serde_json::Value;

/// A firmware image with a recognisable pattern, so a wrongly stitched resume shows.
fn image(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn ranged_get(url: &str, range: Option<&str>) -> (u16, Option<String>, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut request = agent.get(url);
    if let Some(range) = range {
        request = request.header("Range", range);
    }
    let mut response = request.call().expect("HTTP");
    let status = response.status().as_u16();
    let content_range = response
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response
        .body_mut()
        .with_config()
        .limit(128 * 1024 * 1024)
        .read_to_vec()
        .expect("body");
    (status, content_range, body)
}

fn upload(t: &TestBackend, version: &str, bytes: Vec<u8>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = format!("http://{}/api/v1/firmware/{version}", t.http);
    let mut response = agent
        .put(&url)
        .content_type("application/octet-stream")
        .send(&bytes[..])
        .expect("HTTP");
    (
        response.status().as_u16(),
        response.body_mut().read_to_string().expect("body"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_downloads_resume_with_range_requests() {
    let t = TestBackend::start().await;
    let bytes = image(300_000);
    let (status, body) = tokio::task::block_in_place(|| upload(&t, "2.0.0", bytes.clone()));
    assert_eq!(status, 201, "{body}");
    let sha = serde_json::from_str::<Value>(&body).expect("JSON")["firmware"]["sha256"]
        .as_str()
        .expect("sha")
        .to_owned();
    assert_eq!(sha.len(), 64);
    let (status, _) = tokio::task::block_in_place(|| upload(&t, "2.0.0", bytes.clone()));
    assert_eq!(status, 200, "the same image again is accepted as a no-op");
    let (status, body) = tokio::task::block_in_place(|| upload(&t, "2.0.0", image(10)));
    assert_eq!(status, 409, "{body}");

    let url = format!("http://{}/firmware/2.0.0", t.http);
    tokio::task::block_in_place(|| {
        let (status, _, whole) = ranged_get(&url, None);
        assert_eq!((status, whole.len()), (200, bytes.len()));
        // An interrupted download resumes from the byte it stopped at.
        let (status, range, first) = ranged_get(&url, Some("bytes=0-99999"));
        assert_eq!((status, range.as_deref()), (206, Some("bytes 0-99999/300000")));
        let (status, range, rest) = ranged_get(&url, Some(&format!("bytes={}-", first.len())));
        assert_eq!((status, range.as_deref()), (206, Some("bytes 100000-299999/300000")));
        assert_eq!([first, rest].concat(), bytes, "resumed download equals the image");
        let (status, range, _) = ranged_get(&url, Some("bytes=300000-"));
        assert_eq!((status, range.as_deref()), (416, Some("bytes */300000")));
        let (status, _, _) = ranged_get(&format!("http://{}/firmware/9.9.9", t.http), None);
        assert_eq!(status, 404);
    });
    t.stop().await;
}

/// How a simulated device answers an OTA job.
#[derive(Clone, Copy)]
enum Behaviour {
    Installs,
    RollsBack,
}

/// Connects `count` devices that subscribe to their OTA jobs and answer each one as
/// `behaviour(index)` says; returns the device ids in provisioning order.
async fn fleet(t: &TestBackend, count: usize, behaviour: fn(usize) -> Behaviour) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..count {
        let (client, mut eventloop, id) = t.device(&format!("SN-OTA-{i:03}")).await;
        client
            .subscribe(format!("fleet/v1/d/{id}/ota/job"), QoS::AtLeastOnce)
            .await
            .expect("queue");
        wait_for(&mut eventloop, |p| matches!(p, Packet::SubAck(_))).await;
        let status_topic = format!("fleet/v1/d/{id}/ota/status");
        let how = behaviour(i);
        tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                let Event::Incoming(Packet::Publish(job)) = event else {
                    continue;
                };
                let job: Value = serde_json::from_slice(&job.payload).expect("job JSON");
                let campaign = job["campaign"].as_u64().expect("campaign id");
                let end = match how {
                    Behaviour::Installs => "succeeded",
                    Behaviour::RollsBack => "rolled_back",
                };
                for state in ["downloading", "verifying", "installing", "rebooting", end] {
                    let report = serde_json::json!({ "campaign": campaign, "state": state }).to_string();
                    let _ = client
                        .publish(status_topic.clone(), QoS::AtLeastOnce, false, report)
                        .await;
                }
            }
        });
        ids.push(id);
    }
    ids
}

async fn campaign_view(t: &TestBackend, id: u64) -> Value {
    let (status, body) = t.http("GET", &format!("/api/v1/campaigns/{id}"), None).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

async fn wait_until_ended(t: &TestBackend, id: u64) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let view = campaign_view(t, id).await;
        if view["campaign"]["state"] != "running" {
            return view;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "campaign {id} still running: {view}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn start_campaign(t: &TestBackend, version: &str, waves: &str) -> u64 {
    let body =
        format!(r#"{{"group": "sensors", "version": "{version}", "waves": {waves}, "soak_s": 1, "halt_above": 0.05}}"#);
    let (status, reply) = t.http("POST", "/api/v1/campaigns", Some(&body)).await;
    assert_eq!(status, 201, "{reply}");
    serde_json::from_str::<Value>(&reply).expect("JSON")["campaign"]["id"]
        .as_u64()
        .expect("id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_image_rolls_out_wave_by_wave_to_everyone() {
    let t = TestBackend::start().await;
    let (status, body) = tokio::task::block_in_place(|| upload(&t, "2.1.0", image(4096)));
    assert_eq!(status, 201, "{body}");
    fleet(&t, 10, |_| Behaviour::Installs).await;
    let id = start_campaign(&t, "2.1.0", "[0.2, 0.5, 1.0]").await;
    let view = wait_until_ended(&t, id).await;
    assert_eq!(view["campaign"]["state"], "completed", "{view}");
    let waves = view["waves"].as_array().expect("waves");
    let targeted: Vec<u64> = waves.iter().map(|w| w["targeted"].as_u64().unwrap_or(0)).collect();
    assert_eq!(targeted, vec![2, 3, 5], "waves of 20%, 50%, 100% of ten devices");
    let succeeded: u64 = waves.iter().map(|w| w["succeeded"].as_u64().unwrap_or(0)).sum();
    assert_eq!(succeeded, 10, "{view}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_image_halts_in_its_first_wave() {
    let t = TestBackend::start().await;
    let (status, body) = tokio::task::block_in_place(|| upload(&t, "6.6.6", image(1024)));
    assert_eq!(status, 201, "{body}");
    // Every device rolls back: the first wave's failure rate is 100%.
    fleet(&t, 20, |_| Behaviour::RollsBack).await;
    let id = start_campaign(&t, "6.6.6", "[0.1, 0.5, 1.0]").await;
    let view = wait_until_ended(&t, id).await;
    assert_eq!(view["campaign"]["state"], "halted", "{view}");
    let reason = view["campaign"]["end_reason"].as_str().expect("reason");
    assert!(reason.starts_with("wave 1 of 3:"), "{reason}");
    let waves = view["waves"].as_array().expect("waves");
    assert_eq!(waves.len(), 1, "no later wave started: {view}");
    assert_eq!(waves[0]["targeted"], 2);
    let (_, audit) = t.http("GET", "/api/v1/audit?limit=1000", None).await;
    assert!(audit.contains("campaign.halted"), "{audit}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_campaign_requests_are_refused_and_an_operator_can_halt() {
    let t = TestBackend::start().await;
    let (status, _) = t
        .http(
            "POST",
            "/api/v1/campaigns",
            Some(r#"{"group": "sensors", "version": "0.0.1", "waves": [1.0], "halt_above": 0.1}"#),
        )
        .await;
    assert_eq!(status, 404, "unknown firmware");
    let (status, body) = tokio::task::block_in_place(|| upload(&t, "3.0.0", image(100)));
    assert_eq!(status, 201, "{body}");
    let (status, body) = t
        .http(
            "POST",
            "/api/v1/campaigns",
            Some(r#"{"group": "sensors", "version": "3.0.0", "waves": [0.5, 0.2], "halt_above": 0.1}"#),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("waves must grow"), "{body}");
    fleet(&t, 4, |_| Behaviour::Installs).await;
    let body = r#"{"group": "sensors", "version": "3.0.0", "waves": [0.25, 1.0], "soak_s": 30, "halt_above": 0.5}"#;
    let (status, reply) = t.http("POST", "/api/v1/campaigns", Some(body)).await;
    assert_eq!(status, 201, "{reply}");
    let id = serde_json::from_str::<Value>(&reply).expect("JSON")["campaign"]["id"]
        .as_u64()
        .expect("id");
    let (status, _) = t.http("POST", &format!("/api/v1/campaigns/{id}/halt"), None).await;
    assert_eq!(status, 204);
    let view = wait_until_ended(&t, id).await;
    assert_eq!(view["campaign"]["end_reason"], "halted by an operator");
    let (status, _) = t.http("POST", &format!("/api/v1/campaigns/{id}/halt"), None).await;
    assert_eq!(status, 409, "halting twice");
    t.stop().await;
}
