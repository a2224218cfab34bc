//! A desired config set with `expiry_s` on the paths `interop.rs` does not reach: the
//! provisioning answer, the Write a queue-mode LwM2M device is held for until it wakes, and
//! the expiry a config carries when its group's and its device's documents both expire. A
//! real backend on loopback, real MQTT clients (rumqttc's 3.1.1 and 5 event loops) and an
//! LwM2M device written here from CoAP messages, over real UDP.
//!
//! Time passes for real: the registry stores an expiry as unix ms by the system clock, so
//! the tests set short expiries and wait until the system clock is past them.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use coap_lite::{RequestType, ResponseType};
use common::coap_device::{Device, code, location, path};
use common::{PATIENCE, TestBackend};
use fleetsim_backend::registry::system_clock_ms;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, Publish as Publish5};
use rumqttc::v5::{AsyncClient as Client5, Event as Event5, EventLoop as EventLoop5, MqttOptions as Options5};
use serde_json::{Value, json};
use tokio::time::Instant;

/// How far past a config's expiry (registry ms) the tests wait: the gateway turns the
/// registry's unix ms into a tokio instant when it routes the config, to the millisecond.
const PAST_EXPIRY_MS: u64 = 20;

/// The provisioning answer carries the device's effective desired config until it expires:
/// a device provisioning while its group's config has time left gets it; once it has
/// expired, a new device and one provisioning again both get none (version 0). The device's
/// own config expires on its own: once it has, the device is given its group's again.
#[tokio::test]
async fn a_provisioning_answer_carries_the_desired_config_only_until_it_expires() {
    let t = TestBackend::start().await;
    let eco = set_config(&t, "/api/v1/groups/sensors/config", r#"{"mode": "eco"}"#, Some(60)).await;
    let (a, answer) = provision(&t, "SN-X1").await;
    assert_eq!(
        answer["config"],
        json!({ "version": eco, "desired": { "mode": "eco" } }),
        "before its expiry, the group's config is in the answer: {answer}"
    );

    set_config(&t, "/api/v1/groups/sensors/config", r#"{"mode": "boost"}"#, Some(1)).await;
    until_expired(&t, &a).await;
    let none = json!({ "version": 0, "desired": {} });
    let (b, answer) = provision(&t, "SN-X2").await;
    assert_eq!(
        answer["config"], none,
        "a new device is not given the group's expired config: {answer}"
    );
    let (_, answer) = provision(&t, "SN-X1").await;
    assert_eq!(
        answer["config"], none,
        "a device provisioning again is not given it either: {answer}"
    );

    let plain = set_config(&t, "/api/v1/groups/sensors/config", r#"{"mode": "eco"}"#, None).await;
    set_config(&t, &format!("/api/v1/devices/{a}/config"), r#"{"led": "off"}"#, Some(1)).await;
    until_expired(&t, &a).await;
    let (_, answer) = provision(&t, "SN-X1").await;
    assert_eq!(
        answer["config"],
        json!({ "version": plain, "desired": { "mode": "eco" } }),
        "its own config expired, its group's did not: {answer}"
    );
    let (_, answer) = provision(&t, "SN-X2").await;
    assert_eq!(
        answer["config"],
        json!({ "version": plain, "desired": { "mode": "eco" } }),
        "{b} has no config of its own: its group's never expires: {answer}"
    );
    t.stop().await;
}

/// A queue-mode (binding `UQ`) LwM2M device sleeps between updates: a config set meanwhile
/// is held and written to it at its next registration Update, unless its expiry passed while
/// it slept. Then nothing is written, and the config is counted among the messages not
/// delivered for their expiry (`messages_expired_total`; `lwm2m_expired_total` counts
/// registrations that lapsed, and this one did not).
#[tokio::test]
async fn a_queue_mode_lwm2m_device_is_written_a_held_config_at_its_wake_only_until_it_expires() {
    let t = TestBackend::start().await;
    let stats = t.backend.gateway.stats();
    let mut device = Device::new(t.lwm2m).await;
    let (created, answer) = device.provision("SN-LW-E").await;
    assert_eq!(created, ResponseType::Created, "{answer}");
    let id = answer["device_id"].as_str().expect("an id").to_owned();
    // The server object and fleetsim's config object: nothing the front observes.
    let query = ["ep=SN-LW-E", "lt=300", "lwm2m=1.1", "b=UQ"];
    let registered = device
        .request(RequestType::Post, &["rd"], &query, b"</1/0>,</32769/0>")
        .await;
    assert_eq!(code(&registered), ResponseType::Created);
    let rd = location(&registered);
    let rd: Vec<&str> = rd.iter().map(String::as_str).collect();
    let config = format!("/api/v1/devices/{id}/config");

    // Set while it sleeps, woken before the expiry: written.
    set_config(&t, &config, r#"{"report_every_s": 30}"#, Some(60)).await;
    until_counted(&stats.lwm2m_held, 1, "the first config held for the sleeping device").await;
    let updated = device.request(RequestType::Post, &rd, &[], b"").await;
    assert_eq!(code(&updated), ResponseType::Changed);
    let write = device.asked().await;
    assert_eq!(path(&write), "/32769/0/0", "{write:?}");
    let document: Value = serde_json::from_slice(&write.payload).expect("the document, as JSON text");
    assert_eq!(document["desired"], json!({ "report_every_s": 30 }), "{document}");
    device.answer(&write, ResponseType::Changed, "", None).await;

    // Set while it sleeps, woken after the expiry: not written, counted.
    set_config(&t, &config, r#"{"report_every_s": 60}"#, Some(1)).await;
    until_counted(&stats.lwm2m_held, 2, "the second config held for the sleeping device").await;
    until_expired(&t, &id).await;
    let updated = device.request(RequestType::Post, &rd, &[], b"").await;
    assert_eq!(code(&updated), ResponseType::Changed);
    let deadline = Instant::now() + PATIENCE;
    while stats.expired.load(Ordering::Relaxed) == 0 {
        if let Some(asked) = device.try_asked(Duration::from_millis(20)).await {
            panic!(
                "a config that expired while the device slept was sent at its wake: {} {}",
                path(&asked),
                String::from_utf8_lossy(&asked.payload)
            );
        }
        assert!(
            Instant::now() < deadline,
            "the expired config was neither written nor counted as expired"
        );
    }
    let late = device.try_asked(Duration::from_millis(300)).await;
    assert!(late.is_none(), "nothing is written after it: {late:?}");
    assert_eq!(stats.expired.load(Ordering::Relaxed), 1);
    assert_eq!(
        stats.lwm2m_expired.load(Ordering::Relaxed),
        0,
        "the registration itself did not lapse"
    );
    t.stop().await;
}

/// A device's effective config is its group's document overlaid by its own, and expires at
/// the earlier of the two documents' expiries: an MQTT 5 device is sent what is left of that
/// one (Message Expiry Interval, rounded up). Whichever document expires first sets it, and a
/// document without an expiry does not lift the other's.
#[tokio::test]
async fn a_config_with_a_group_and_a_device_expiry_is_sent_with_the_earlier() {
    let t = TestBackend::start().await;
    let (id, client, mut eventloop) = subscribed5(&t, "SN-X3").await;
    let group = "/api/v1/groups/sensors/config";
    let own = format!("/api/v1/devices/{id}/config");

    set_config(&t, group, r#"{"mode": "eco"}"#, Some(600)).await;
    let (desired, left) = config5(&mut eventloop).await;
    assert_eq!(desired, json!({ "mode": "eco" }));
    assert!((31..=600).contains(&left), "the group's 600 s alone: {left} s left");

    set_config(&t, &own, r#"{"led": "off"}"#, Some(30)).await;
    let (desired, left) = config5(&mut eventloop).await;
    assert_eq!(desired, json!({ "mode": "eco", "led": "off" }));
    assert!(
        (1..=30).contains(&left),
        "the device's 30 s is the earlier of the group's 600 s and its own: {left} s left"
    );

    set_config(&t, group, r#"{"mode": "boost"}"#, Some(20)).await;
    let (desired, left) = config5(&mut eventloop).await;
    assert_eq!(desired, json!({ "mode": "boost", "led": "off" }));
    assert!(
        (1..=20).contains(&left),
        "the group's 20 s is now the earlier of it and the device's 30 s: {left} s left"
    );

    set_config(&t, &own, r#"{"led": "on"}"#, None).await;
    let (desired, left) = config5(&mut eventloop).await;
    assert_eq!(desired, json!({ "mode": "boost", "led": "on" }));
    assert!(
        (1..=20).contains(&left),
        "a device config without an expiry leaves the group's 20 s: {left} s left"
    );
    let _ = client.disconnect().await;
    t.stop().await;
}

/// Each document expires on its own: once the group's config has expired, a device's own
/// config set afterwards is its desired config, handed over at once (`pushed`) with its own
/// keys and no expiry, not held back behind the group's.
#[tokio::test]
async fn a_device_config_set_after_its_groups_expired_is_sent_without_the_groups() {
    let t = TestBackend::start().await;
    let (id, client, mut eventloop) = subscribed5(&t, "SN-X4").await;

    set_config(&t, "/api/v1/groups/sensors/config", r#"{"mode": "boost"}"#, Some(1)).await;
    let (desired, _) = config5(&mut eventloop).await;
    assert_eq!(desired, json!({ "mode": "boost" }));
    until_expired(&t, &id).await;

    let own = format!("/api/v1/devices/{id}/config");
    let (status, reply) = t.http("PUT", &own, Some(r#"{"desired": {"led": "off"}}"#)).await;
    assert_eq!(status, 200, "{reply}");
    let reply: Value = serde_json::from_str(&reply).expect("JSON");
    assert_eq!(reply["pushed"], true, "handed to the connected device: {reply}");
    let Packet5::Publish(Publish5 {
        payload, properties, ..
    }) = next5(&mut eventloop, |p| matches!(p, Packet5::Publish(_))).await
    else {
        unreachable!("next5 returned the packet it matched")
    };
    let body: Value = serde_json::from_slice(&payload).expect("JSON config");
    assert_eq!(
        body,
        json!({ "version": reply["version"], "desired": { "led": "off" } }),
        "its own keys, not the group's expired ones"
    );
    assert_eq!(
        properties.and_then(|p| p.message_expiry_interval),
        None,
        "its own config never expires, and the group's has: {body}"
    );
    let _ = client.disconnect().await;
    t.stop().await;
}

/// `PUT path` of a desired config `desired` (JSON object text), expiring after `expiry_s`;
/// its version.
async fn set_config(t: &TestBackend, path: &str, desired: &str, expiry_s: Option<u64>) -> u64 {
    let body = match expiry_s {
        Some(s) => format!(r#"{{"desired": {desired}, "expiry_s": {s}}}"#),
        None => format!(r#"{{"desired": {desired}}}"#),
    };
    let (status, reply) = t.http("PUT", path, Some(&body)).await;
    assert_eq!(status, 200, "PUT {path} {body}: {reply}");
    let reply: Value = serde_json::from_str(&reply).expect("JSON");
    reply["version"].as_u64().expect("a version")
}

/// Provisions `serial` and connects it over MQTT 5, subscribed to its desired config: its
/// device id, client and event loop.
async fn subscribed5(t: &TestBackend, serial: &str) -> (String, Client5, EventLoop5) {
    let (id, answer) = provision(t, serial).await;
    let token = answer["token"].as_str().expect("token");
    let mut options = Options5::new(id.as_str(), t.mqtt.ip().to_string(), t.mqtt.port());
    options.set_credentials(id.as_str(), token);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = Client5::new(options, 16);
    client
        .subscribe(format!("fleet/v1/d/{id}/config/desired"), QoS5::AtLeastOnce)
        .await
        .expect("queue subscribe");
    next5(&mut eventloop, |p| matches!(p, Packet5::SubAck(_))).await;
    (id, client, eventloop)
}

/// Provisions `serial` with the `factory` claim over MQTT: its device id and the answer.
async fn provision(t: &TestBackend, serial: &str) -> (String, Value) {
    let (outcome, answer) = t.provision(serial, "claim:factory", "s3cret").await;
    assert_eq!(outcome, "accepted", "{answer}");
    let id = answer["device_id"].as_str().expect("device_id").to_owned();
    (id, answer)
}

/// Waits until device `id`'s effective config has expired by the system clock (and
/// [`PAST_EXPIRY_MS`] more).
async fn until_expired(t: &TestBackend, id: &str) {
    let (registry, id) = (t.backend.registry.clone(), id.to_owned());
    let config = tokio::task::spawn_blocking(move || registry.effective_config(&id))
        .await
        .expect("read task")
        .expect("registry reads")
        .expect("the device has a config");
    let at = config.expires_at.expect("the config expires");
    let deadline = Instant::now() + PATIENCE;
    while system_clock_ms() < at + PAST_EXPIRY_MS {
        assert!(Instant::now() < deadline, "the config never expired (at {at} unix ms)");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `counter` reaches `n`.
async fn until_counted(counter: &std::sync::atomic::AtomicU64, n: u64, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    while counter.load(Ordering::Relaxed) < n {
        assert!(Instant::now() < deadline, "never counted: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls an MQTT 5 event loop until a packet matches; fails after [`PATIENCE`].
async fn next5(eventloop: &mut EventLoop5, wanted: impl Fn(&Packet5) -> bool) -> Packet5 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .expect("expected packet in time")
            .expect("the connection stays up");
        if let Event5::Incoming(packet) = event
            && wanted(&packet)
        {
            return packet;
        }
    }
}

/// The next desired config an MQTT 5 device is sent: its document and the seconds left of
/// its message expiry.
async fn config5(eventloop: &mut EventLoop5) -> (Value, u32) {
    let Packet5::Publish(Publish5 {
        payload, properties, ..
    }) = next5(eventloop, |p| matches!(p, Packet5::Publish(_))).await
    else {
        unreachable!("next5 returned the packet it matched")
    };
    let body: Value = serde_json::from_slice(&payload).expect("JSON config");
    let left = properties.and_then(|p| p.message_expiry_interval);
    let left = left.unwrap_or_else(|| panic!("a message expiry interval on {body}"));
    (body["desired"].clone(), left)
}
