//! Monitoring end to end: alert rules set through the operator API, devices (real rumqttc
//! clients) reporting a low battery in their telemetry or going away, and the alerts the
//! backend raises and clears for them, listed at `/api/v1/alerts`, audited and counted in
//! `/metrics`.

mod common;

use std::time::Duration;

use common::{PATIENCE, TestBackend, sample, wait_for};
use rumqttc::{AsyncClient, EventLoop, Packet, QoS};
use serde_json::{Value, json};

async fn get(t: &TestBackend, path: &str) -> Value {
    let (status, body) = t.http("GET", path, None).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

/// Polls `/api/v1/alerts` until `wanted` holds of the alerts listed; panics after PATIENCE.
async fn alerts_until(t: &TestBackend, what: &str, wanted: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let listed = get(t, "/api/v1/alerts").await;
        let alerts = listed["alerts"].as_array().expect("alerts").clone();
        if wanted(&alerts) {
            return alerts;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {alerts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the audit log at `path` until `wanted` holds of its entries: raises and clears are
/// audited off the device's path, so the group commit takes a moment. Panics after PATIENCE.
async fn audit_until(t: &TestBackend, path: &str, wanted: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let audit = get(t, path).await;
        let entries = audit["entries"].as_array().expect("entries").clone();
        if wanted(&entries) {
            return entries;
        }
        assert!(tokio::time::Instant::now() < deadline, "{path}: {entries:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Device `id` reports each battery level in turn (with a signal), each acknowledged.
async fn report(client: &AsyncClient, eventloop: &mut EventLoop, id: &str, levels: &[f64]) {
    for battery in levels {
        let body = json!({ "seq": 1, "battery": battery, "rssi": -97, "value": 21.5 }).to_string();
        client
            .publish(format!("fleet/v1/d/{id}/telemetry"), QoS::AtLeastOnce, false, body)
            .await
            .expect("queue");
        wait_for(eventloop, |p| matches!(p, Packet::PubAck(_))).await;
    }
}

async fn rule(t: &TestBackend, body: &str) -> (u16, Value) {
    let (status, text) = t.http("POST", "/api/v1/alert-rules", Some(body)).await;
    (status, serde_json::from_str(&text).expect("JSON"))
}

async fn metric(t: &TestBackend, name: &str) -> f64 {
    let (_, text) = t.http("GET", "/metrics", None).await;
    sample(&text, name).unwrap_or_else(|| panic!("{name} in {text}"))
}

#[tokio::test]
async fn a_low_battery_in_telemetry_raises_an_alert_until_it_is_back_above_the_level() {
    let t = TestBackend::start().await;
    let (status, fleet_wide) = rule(&t, r#"{"kind": "battery_below", "below": 0.2}"#).await;
    assert_eq!(status, 201, "{fleet_wide}");
    assert_eq!(fleet_wide["rule"]["kind"], "battery_below");
    assert_eq!(fleet_wide["rule"]["below"], 0.2);
    let (status, other_group) = rule(&t, r#"{"kind": "battery_below", "below": 0.9, "group": "lab"}"#).await;
    assert_eq!(status, 201, "{other_group}");
    for (bad, code) in [
        (r#"{"kind": "battery_below", "below": 1.5}"#, "out_of_range"),
        (r#"{"kind": "battery_below", "after_s": 3}"#, "bad_request"),
        (r#"{"kind": "loud"}"#, "bad_request"),
        (
            r#"{"kind": "offline_for", "after_s": 60, "group": "Not A Name"}"#,
            "invalid_name",
        ),
    ] {
        let (status, body) = rule(&t, bad).await;
        assert_eq!((status, body["error"].as_str()), (400, Some(code)), "{bad}: {body}");
    }
    let listed = get(&t, "/api/v1/alert-rules").await;
    assert_eq!(listed["rules"].as_array().map(Vec::len), Some(2), "{listed}");

    let (client, mut eventloop, id) = t.device("SN-LOW").await;
    report(&client, &mut eventloop, &id, &[0.5, 0.15]).await;
    let alerts = alerts_until(&t, "a low battery alert", |a| !a.is_empty()).await;
    assert_eq!(
        alerts.len(),
        1,
        "the other group's rule does not watch this device: {alerts:?}"
    );
    assert_eq!(alerts[0]["rule"], fleet_wide["rule"]["id"]);
    assert_eq!(alerts[0]["device_id"], id.as_str());
    assert_eq!(alerts[0]["cause"], json!({"battery": 0.15, "below": 0.2}));
    // The telemetry's battery and signal are the device's last status.
    let view = get(&t, &format!("/api/v1/devices/{id}")).await;
    assert_eq!(view["status"]["battery"], 0.15, "{view}");
    assert_eq!(view["status"]["rssi_dbm"], -97, "{view}");

    // Still low: no second alert. Back above the level: cleared.
    report(&client, &mut eventloop, &id, &[0.1, 0.25]).await;
    alerts_until(&t, "the alert cleared", <[Value]>::is_empty).await;
    assert_eq!(metric(&t, "fleetsim_gateway_alerts_raised_total").await, 1.0);
    assert_eq!(metric(&t, "fleetsim_gateway_alerts_cleared_total").await, 1.0);
    assert_eq!(metric(&t, "fleetsim_gateway_alerts_active").await, 0.0);
    // Audited, raise and clear.
    audit_until(&t, "/api/v1/audit?limit=1000", |entries| {
        let actions: Vec<&str> = entries
            .iter()
            .filter(|e| e["subject"] == id.as_str())
            .filter_map(|e| e["action"].as_str())
            .filter(|a| a.starts_with("alert."))
            .collect();
        actions == ["alert.raised", "alert.cleared"]
    })
    .await;
    t.stop().await;
}

#[tokio::test]
async fn a_device_away_longer_than_the_rule_allows_is_alerted_until_it_connects_again() {
    let t = TestBackend::start().await;
    let (status, offline) = rule(&t, r#"{"kind": "offline_for", "after_s": 0.5, "group": "sensors"}"#).await;
    assert_eq!(status, 201, "{offline}");
    let (options, id) = t.persistent_device("SN-AWAY").await;
    let (client, mut eventloop, _) = t.connect(options.clone()).await.expect("connects");
    client.disconnect().await.expect("queue");
    let _ = tokio::time::timeout(PATIENCE, async { while eventloop.poll().await.is_ok() {} }).await;
    t.wait_offline(&id).await;
    let alerts = alerts_until(&t, "an offline alert", |a| !a.is_empty()).await;
    let since = alerts[0]["cause"]["offline_since_ms"].as_u64().expect("since");
    let raised = alerts[0]["raised_at_ms"].as_u64().expect("raised");
    assert!(
        (500..=500 + 1_000).contains(&(raised - since)),
        "raised half a second after it left, within a sweep or so: {alerts:?}"
    );
    assert_eq!(alerts[0]["kind"], "offline_for");

    // Back: cleared. Away again, then retired: cleared for good.
    let (client, mut eventloop, _) = t.connect(options).await.expect("connects again");
    alerts_until(&t, "the alert cleared on connect", <[Value]>::is_empty).await;
    client.disconnect().await.expect("queue");
    let _ = tokio::time::timeout(PATIENCE, async { while eventloop.poll().await.is_ok() {} }).await;
    alerts_until(&t, "offline again", |a| a.len() == 1).await;
    let (status, _) = t
        .http("POST", &format!("/api/v1/devices/{id}/decommission"), None)
        .await;
    assert_eq!(status, 204);
    alerts_until(&t, "cleared by decommissioning", <[Value]>::is_empty).await;
    assert_eq!(metric(&t, "fleetsim_gateway_alerts_raised_total").await, 2.0);

    // A deleted rule watches no more.
    let rule_id = offline["rule"]["id"].as_str().expect("id");
    let (status, _) = t.http("DELETE", &format!("/api/v1/alert-rules/{rule_id}"), None).await;
    assert_eq!(status, 204);
    let (status, _) = t.http("DELETE", &format!("/api/v1/alert-rules/{rule_id}"), None).await;
    assert_eq!(status, 404);
    assert_eq!(get(&t, "/api/v1/alert-rules").await, json!({"rules": []}));
    t.stop().await;
}

/// Device `id` sends each telemetry body in turn, each acknowledged.
async fn send(client: &AsyncClient, eventloop: &mut EventLoop, id: &str, bodies: &[Value]) {
    for body in bodies {
        client
            .publish(
                format!("fleet/v1/d/{id}/telemetry"),
                QoS::AtLeastOnce,
                false,
                body.to_string(),
            )
            .await
            .expect("queue");
        wait_for(eventloop, |p| matches!(p, Packet::PubAck(_))).await;
    }
}

#[tokio::test]
async fn error_codes_past_a_rate_and_a_stuck_sensor_raise_alerts_that_clear_when_they_stop() {
    let t = TestBackend::start().await;
    for (bad, code) in [
        (r#"{"kind": "error_codes", "at_least": 2}"#, "bad_request"),
        (
            r#"{"kind": "error_codes", "at_least": 2, "within_s": 1, "below": 0.2}"#,
            "bad_request",
        ),
        (r#"{"kind": "sensor_stuck", "reports": 1}"#, "out_of_range"),
        (
            r#"{"kind": "error_codes", "at_least": 0, "within_s": 1}"#,
            "out_of_range",
        ),
        (r#"{"kind": "sensor_frozen", "reports": 3}"#, "bad_request"),
    ] {
        let (status, body) = rule(&t, bad).await;
        assert_eq!((status, body["error"].as_str()), (400, Some(code)), "{bad}: {body}");
    }
    let (status, errors) = rule(&t, r#"{"kind": "error_codes", "at_least": 2, "within_s": 1}"#).await;
    assert_eq!(status, 201, "{errors}");
    assert_eq!(errors["rule"]["at_least"], 2, "{errors}");
    let (status, stuck) = rule(&t, r#"{"kind": "sensor_stuck", "reports": 3}"#).await;
    assert_eq!(status, 201, "{stuck}");

    let (client, mut eventloop, id) = t.device("SN-FAULTY").await;
    // One report with codes: under the rate. A second within the second: over it.
    send(&client, &mut eventloop, &id, &[json!({"value": 1.0, "errors": [5]})]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        get(&t, "/api/v1/alerts").await["alerts"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
    send(&client, &mut eventloop, &id, &[json!({"value": 1.0, "errors": [5, 9]})]).await;
    let alerts = alerts_until(&t, "an error-codes alert", |a| a.len() == 1).await;
    assert_eq!(alerts[0]["kind"], "error_codes");
    assert_eq!(alerts[0]["cause"], json!({"reports": 2, "within_s": 1.0}));
    let view = get(&t, &format!("/api/v1/devices/{id}")).await;
    assert_eq!(view["status"]["error_reports"], 2, "{view}");
    assert_eq!(view["status"]["last_errors"], json!([5, 9]), "{view}");

    // The third reading of 1.0 in a row: stuck. Quiet for the window: the error alert clears.
    send(&client, &mut eventloop, &id, &[json!({"value": 1.0})]).await;
    let alerts = alerts_until(&t, "stuck, and the errors quiet", |a| {
        a.len() == 1 && a[0]["kind"] == "sensor_stuck"
    })
    .await;
    assert_eq!(alerts[0]["cause"], json!({"value": 1.0, "reports": 3}));
    // A new reading: the stuck alert clears.
    send(&client, &mut eventloop, &id, &[json!({"value": 1.5})]).await;
    alerts_until(&t, "all cleared", <[Value]>::is_empty).await;
    assert_eq!(metric(&t, "fleetsim_gateway_alerts_raised_total").await, 2.0);
    assert_eq!(metric(&t, "fleetsim_gateway_alerts_cleared_total").await, 2.0);
    // Both clears audited, each with its reason.
    audit_until(&t, "/api/v1/audit?action=alert.cleared", |entries| {
        let whys: Vec<&str> = entries.iter().filter_map(|e| e["detail"]["why"].as_str()).collect();
        whys.contains(&"no error codes within the window") && whys.contains(&"the reading changed")
    })
    .await;
    t.stop().await;
}
