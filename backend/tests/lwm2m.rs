//! The LwM2M front end to end, over real UDP sockets: a device written here from CoAP
//! messages (coap-lite's codec, none of the front's code) provisions by claim, registers,
//! answers the front's Observes, Writes and Executes; the operator drives it through the
//! HTTP API exactly as it drives an MQTT device; and what a device must not do is refused
//! with a reason, counted, and never a panic.

mod common;

use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use common::coap_device::{Device, code, location, path};
use common::{PATIENCE, TestBackend, sample};
use serde_json::Value;
use tokio::net::UdpSocket;
use tokio::time::timeout;

async fn json(t: &TestBackend, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let (status, text) = t.http(method, path, body).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Polls `GET path` until `done` holds of its JSON.
async fn until(t: &TestBackend, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (_, value) = json(t, "GET", path, None).await;
        if done(&value) {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never became as expected: {value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Answers the front's three Observes (battery, signal, sensor) with readings; returns their
/// tokens in that order.
async fn answer_observes(device: &mut Device) -> Vec<Vec<u8>> {
    let mut tokens = Vec::new();
    for (want, reading) in [("/3/0/9", "87"), ("/4/0/2", "-71"), ("/3303/0/5700", "21.5")] {
        let observe = device.asked().await;
        assert_eq!(path(&observe), want);
        assert_eq!(observe.get_observe_value(), Some(Ok(0)), "an Observe");
        device.answer(&observe, ResponseType::Content, reading, Some(1)).await;
        tokens.push(observe.get_token().to_vec());
    }
    tokens
}

#[tokio::test]
async fn an_lwm2m_device_is_provisioned_registered_operated_and_decommissioned() {
    let t = TestBackend::start().await;
    let mut device = Device::new(t.lwm2m).await;

    // Provisioning by claim gives the device its identity and group.
    let (code_, body) = device.provision("SN-LW-1").await;
    assert_eq!(code_, ResponseType::Created, "{body}");
    let id = body["device_id"].as_str().expect("an id").to_owned();
    assert_eq!(body["group"], "sensors");

    let registered = device.register("SN-LW-1", 300).await;
    assert_eq!(code(&registered), ResponseType::Created);
    let at = location(&registered);
    assert_eq!(at[0], "rd");
    let tokens = answer_observes(&mut device).await;

    // The device view: online, with the battery and signal it was observed at.
    let view = until(&t, &format!("/api/v1/devices/{id}"), |v| v["status"]["rssi_dbm"] == -71).await;
    assert_eq!(view["online"], true, "{view}");
    assert_eq!(view["status"]["battery"], 0.87, "{view}");
    // A later notification moves it.
    device.notify(&tokens[0], 2, "55").await;
    until(&t, &format!("/api/v1/devices/{id}"), |v| v["status"]["battery"] == 0.55).await;

    // A config push is a Write of the document to /32769/0/0; the 2.04 records it reported.
    let (status, pushed) = json(
        &t,
        "PUT",
        &format!("/api/v1/devices/{id}/config"),
        Some(r#"{"desired": {"report_every_s": 30}}"#),
    )
    .await;
    assert_eq!(status, 200, "{pushed}");
    assert_eq!(pushed["pushed"], true);
    let write = device.asked().await;
    assert_eq!(write.header.code, MessageClass::Request(RequestType::Put));
    assert_eq!(path(&write), "/32769/0/0");
    let document: Value = serde_json::from_slice(&write.payload).expect("the document, as JSON text");
    assert_eq!(document["desired"]["report_every_s"], 30);
    device.answer(&write, ResponseType::Changed, "", None).await;
    until(&t, "/api/v1/config/drift", |v| {
        v["drift"].as_array().is_some_and(Vec::is_empty)
    })
    .await;

    // A reboot is an Execute of /3/0/4; the 2.04 is the command's success.
    let (status, sent) = json(
        &t,
        "POST",
        &format!("/api/v1/devices/{id}/commands"),
        Some(r#"{"command": "reboot"}"#),
    )
    .await;
    assert_eq!(status, 202, "{sent}");
    assert_eq!(sent["delivery"], "sent");
    let cmd = sent["command"]["id"].as_str().expect("id").to_owned();
    let execute = device.asked().await;
    assert_eq!(execute.header.code, MessageClass::Request(RequestType::Post));
    assert_eq!(path(&execute), "/3/0/4");
    device.answer(&execute, ResponseType::Changed, "", None).await;
    let done = until(&t, &format!("/api/v1/commands/{cmd}"), |v| {
        v["command"]["state"] != "pending"
    })
    .await;
    assert_eq!(done["command"]["state"], "succeeded", "{done}");

    // `logs` is an Execute of fleetsim's command resource, the command as JSON; the device
    // acknowledges at once and answers later, in a separate confirmable response whose
    // payload is the result, which the backend acknowledges and records.
    let (_, sent) = json(
        &t,
        "POST",
        &format!("/api/v1/devices/{id}/commands"),
        Some(r#"{"command": "logs"}"#),
    )
    .await;
    let cmd = sent["command"]["id"].as_str().expect("id").to_owned();
    let execute = device.asked().await;
    assert_eq!(path(&execute), "/32769/0/1");
    let asked: Value = serde_json::from_slice(&execute.payload).expect("the command as JSON");
    assert_eq!(
        (asked["id"].as_str(), asked["command"].as_str()),
        (Some(cmd.as_str()), Some("logs"))
    );
    let mut empty = Packet::new();
    empty.header.set_type(MessageType::Acknowledgement);
    empty.header.message_id = execute.header.message_id;
    device.send(&empty).await;
    device.message_id += 1;
    let mut separate = Packet::new();
    separate.header.set_type(MessageType::Confirmable);
    separate.header.message_id = device.message_id;
    separate.header.code = MessageClass::Response(ResponseType::Changed);
    separate.set_token(execute.get_token().to_vec());
    separate.payload = br#"{"status":"ok","output":{"events":[],"written":0}}"#.to_vec();
    device.send(&separate).await;
    let acknowledged = device.receive().await;
    assert_eq!(
        (acknowledged.header.get_type(), acknowledged.header.message_id),
        (MessageType::Acknowledgement, device.message_id),
        "the separate response is acknowledged"
    );
    let done = until(&t, &format!("/api/v1/commands/{cmd}"), |v| {
        v["command"]["state"] != "pending"
    })
    .await;
    assert_eq!(done["command"]["state"], "succeeded", "{done}");
    assert_eq!(done["command"]["result"]["output"]["written"], 0, "{done}");

    // A device that refuses the Execute fails the command, saying with what and why.
    let (_, sent) = json(
        &t,
        "POST",
        &format!("/api/v1/devices/{id}/commands"),
        Some(r#"{"command": "diagnose"}"#),
    )
    .await;
    let cmd = sent["command"]["id"].as_str().expect("id").to_owned();
    let execute = device.asked().await;
    device
        .answer(
            &execute,
            ResponseType::MethodNotAllowed,
            "this device takes no commands",
            None,
        )
        .await;
    let failed = until(&t, &format!("/api/v1/commands/{cmd}"), |v| {
        v["command"]["state"] != "pending"
    })
    .await;
    assert_eq!(failed["command"]["state"], "failed", "{failed}");
    let output = failed["command"]["result"]["output"].as_str().unwrap_or_default();
    assert!(
        output.contains("4.05") && output.contains("takes no commands"),
        "{output}"
    );

    // `read` is a Read of the path the operator names, SenML JSON asked for; the command's
    // output is the value the device answered with. A read without a path is refused.
    let (status, refused) = json(
        &t,
        "POST",
        &format!("/api/v1/devices/{id}/commands"),
        Some(r#"{"command": "read", "args": {"path": "3/0/x"}}"#),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused.to_string().contains("args.path"), "{refused}");
    let (status, sent) = json(
        &t,
        "POST",
        &format!("/api/v1/devices/{id}/commands"),
        Some(r#"{"command": "read", "args": {"path": "/3/0/9"}}"#),
    )
    .await;
    assert_eq!(status, 202, "{sent}");
    let cmd = sent["command"]["id"].as_str().expect("id").to_owned();
    let read = device.asked().await;
    assert_eq!(read.header.code, MessageClass::Request(RequestType::Get));
    assert_eq!(path(&read), "/3/0/9");
    assert_eq!(
        read.get_first_option(CoapOption::Accept).map(Vec::as_slice),
        Some(&[110u8][..]),
        "SenML JSON asked for"
    );
    let mut content = Packet::new();
    content.header.set_type(MessageType::Acknowledgement);
    content.header.message_id = read.header.message_id;
    content.header.code = MessageClass::Response(ResponseType::Content);
    content.set_token(read.get_token().to_vec());
    content.add_option(CoapOption::ContentFormat, vec![110]);
    content.payload = br#"[{"bn":"/3/0/9","v":87}]"#.to_vec();
    device.send(&content).await;
    let done = until(&t, &format!("/api/v1/commands/{cmd}"), |v| {
        v["command"]["state"] != "pending"
    })
    .await;
    assert_eq!(done["command"]["state"], "succeeded", "{done}");
    let output = &done["command"]["result"]["output"];
    assert_eq!(output["path"], "/3/0/9", "{done}");
    assert_eq!(output["format"], 110, "{done}");
    assert_eq!(output["value"][0]["v"], 87, "{done}");
    // A path the device does not hold fails the read, with the device's code.
    let (_, sent) = json(
        &t,
        "POST",
        &format!("/api/v1/devices/{id}/commands"),
        Some(r#"{"command": "read", "args": {"path": "/3303/7"}}"#),
    )
    .await;
    let cmd = sent["command"]["id"].as_str().expect("id").to_owned();
    let read = device.asked().await;
    assert_eq!(path(&read), "/3303/7");
    device.answer(&read, ResponseType::NotFound, "", None).await;
    let failed = until(&t, &format!("/api/v1/commands/{cmd}"), |v| {
        v["command"]["state"] != "pending"
    })
    .await;
    assert_eq!(failed["command"]["state"], "failed", "{failed}");
    let output = failed["command"]["result"]["output"].as_str().unwrap_or_default();
    assert!(output.contains("4.04") && output.contains("/3303/7"), "{output}");

    // An update from a new port moves the registration; the front's next request goes there.
    let mut moved = Device::new(t.lwm2m).await;
    moved.message_id = 500;
    let rd: Vec<&str> = at.iter().map(String::as_str).collect();
    let updated = moved.request(RequestType::Post, &rd, &[], b"").await;
    assert_eq!(code(&updated), ResponseType::Changed);
    json(
        &t,
        "POST",
        &format!("/api/v1/devices/{id}/commands"),
        Some(r#"{"command": "reboot"}"#),
    )
    .await;
    let execute = moved.asked().await;
    assert_eq!(path(&execute), "/3/0/4", "asked at the device's new address");
    moved.answer(&execute, ResponseType::Changed, "", None).await;

    // Decommissioning ends the registration: an update is not found, a new Register refused.
    let (status, _) = t
        .http("POST", &format!("/api/v1/devices/{id}/decommission"), None)
        .await;
    assert_eq!(status, 204);
    until(&t, &format!("/api/v1/devices/{id}"), |v| v["online"] == false).await;
    let lost = moved.request(RequestType::Post, &rd, &[], b"").await;
    assert_eq!(code(&lost), ResponseType::NotFound);
    // The registration update trigger told the device to find that out at once.
    let trigger = moved.asked().await;
    assert_eq!(
        (trigger.header.get_type(), path(&trigger).as_str()),
        (MessageType::NonConfirmable, "/1/0/8")
    );
    let refused = moved.register("SN-LW-1", 300).await;
    assert_eq!(code(&refused), ResponseType::Forbidden);
    assert!(String::from_utf8_lossy(&refused.payload).contains("no active device"));

    let (_, metrics) = t.http("GET", "/metrics", None).await;
    for line in [
        "fleetsim_gateway_lwm2m_registrations_total 1",
        "fleetsim_gateway_lwm2m_updates_total 1",
        "fleetsim_gateway_lwm2m_refused_total 2",
        "fleetsim_gateway_lwm2m_notifications_total 4",
        "fleetsim_gateway_lwm2m_unmapped_total 0",
        "fleetsim_gateway_lwm2m_registered 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    t.stop().await;
}

#[tokio::test]
async fn a_deregistered_or_lapsed_registration_is_gone() {
    let t = TestBackend::start().await;
    let mut device = Device::new(t.lwm2m).await;
    let (_, body) = device.provision("SN-LW-2").await;
    let id = body["device_id"].as_str().expect("an id").to_owned();

    // De-register: 2.02, offline, and the location is gone.
    let registered = device.register("SN-LW-2", 300).await;
    let at = location(&registered);
    let rd: Vec<&str> = at.iter().map(String::as_str).collect();
    answer_observes(&mut device).await;
    let deleted = device.request(RequestType::Delete, &rd, &[], b"").await;
    assert_eq!(code(&deleted), ResponseType::Deleted);
    until(&t, &format!("/api/v1/devices/{id}"), |v| v["online"] == false).await;
    let again = device.request(RequestType::Delete, &rd, &[], b"").await;
    assert_eq!(code(&again), ResponseType::NotFound);

    // A one-second lifetime without an update lapses.
    let registered = device.register("SN-LW-2", 1).await;
    assert_eq!(code(&registered), ResponseType::Created);
    answer_observes(&mut device).await;
    until(&t, &format!("/api/v1/devices/{id}"), |v| v["online"] == false).await;
    let rd = location(&registered);
    let rd: Vec<&str> = rd.iter().map(String::as_str).collect();
    let lapsed = device.request(RequestType::Post, &rd, &[], b"").await;
    assert_eq!(code(&lapsed), ResponseType::NotFound);
    let (_, metrics) = t.http("GET", "/metrics", None).await;
    assert!(
        metrics.lines().any(|l| l == "fleetsim_gateway_lwm2m_expired_total 1"),
        "{metrics}"
    );
    t.stop().await;
}

/// The resources of a TLV payload that holds resources only (LwM2M 1.0, section 6.4.3), read
/// here by hand: (id, value).
fn tlv_resources(mut bytes: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    while let [kind, rest @ ..] = bytes {
        assert_eq!(kind >> 6, 0b11, "a resource with its value");
        let (id, rest) = if kind & 0b10_0000 != 0 {
            (u16::from_be_bytes([rest[0], rest[1]]), &rest[2..])
        } else {
            (u16::from(rest[0]), &rest[1..])
        };
        let (len, rest) = match (kind >> 3) & 0b11 {
            0 => (usize::from(kind & 0b111), rest),
            n => {
                let n = usize::from(n);
                (
                    rest[..n].iter().fold(0usize, |a, b| a << 8 | usize::from(*b)),
                    &rest[n..],
                )
            }
        };
        out.push((id, rest[..len].to_vec()));
        bytes = &rest[len..];
    }
    out
}

/// Bootstrap (LwM2M 1.0, section 5.2.7): a provisioned device's Bootstrap-Request is answered
/// 2.04, then the front deletes what the device knew, writes its Security object (its DTLS
/// listener's `coaps://` address, PSK mode, the serial and the key provisioning gave, short
/// server id 1) and its Server object, and finishes; the device then registers. An unprovisioned endpoint is refused, and a device that refuses a
/// Write is a failed bootstrap.
#[tokio::test]
async fn a_provisioned_device_bootstraps_onto_the_front() {
    let t = TestBackend::start().await;
    let mut stranger = Device::new(t.lwm2m).await;
    let refused = stranger
        .request(RequestType::Post, &["bs"], &["ep=SN-LW-NOBODY"], b"")
        .await;
    assert_eq!(code(&refused), ResponseType::Forbidden);

    let mut device = Device::new(t.lwm2m).await;
    let (provisioned, granted) = device.provision("SN-LW-BS").await;
    assert_eq!(provisioned, ResponseType::Created);
    let key = granted["psk"].as_str().expect("a key").as_bytes().to_vec();
    let asked = device.request(RequestType::Post, &["bs"], &["ep=SN-LW-BS"], b"").await;
    assert_eq!(code(&asked), ResponseType::Changed);
    let delete = device.asked().await;
    assert_eq!(
        (delete.header.code, path(&delete)),
        (MessageClass::Request(RequestType::Delete), "/".to_owned())
    );
    device.answer(&delete, ResponseType::Deleted, "", None).await;
    let security = device.asked().await;
    assert_eq!(path(&security), "/0/1");
    let format = security
        .get_option(CoapOption::ContentFormat)
        .and_then(|v| v.front().cloned());
    assert_eq!(format, Some(11542u16.to_be_bytes().to_vec()), "TLV");
    let resources = tlv_resources(&security.payload);
    let value = |id: u16| resources.iter().find(|(r, _)| *r == id).map(|(_, v)| v.clone());
    assert_eq!(
        value(0),
        Some(format!("coaps://{}", t.lwm2m_dtls).into_bytes()),
        "the front's DTLS listener"
    );
    assert_eq!(value(1), Some(vec![0]), "not a bootstrap server");
    assert_eq!(value(2), Some(vec![0]), "a pre-shared key");
    assert_eq!(value(3), Some(b"SN-LW-BS".to_vec()), "its identity, the serial");
    assert_eq!(value(5), Some(key), "the key its provisioning answer gave");
    assert_eq!(value(10), Some(vec![1]), "short server id");
    device.answer(&security, ResponseType::Changed, "", None).await;
    let server = device.asked().await;
    assert_eq!(path(&server), "/1/0");
    let resources = tlv_resources(&server.payload);
    assert!(resources.contains(&(0, vec![1])), "{resources:?}");
    device.answer(&server, ResponseType::Changed, "", None).await;
    let finish = device.asked().await;
    assert_eq!(
        (finish.header.code, path(&finish)),
        (MessageClass::Request(RequestType::Post), "/bs".to_owned())
    );
    device.answer(&finish, ResponseType::Changed, "", None).await;
    let registered = device.register("SN-LW-BS", 300).await;
    assert_eq!(code(&registered), ResponseType::Created);

    // A device that refuses its Security object stops the bootstrap.
    let mut refusing = Device::new(t.lwm2m).await;
    refusing.provision("SN-LW-BS2").await;
    let asked = refusing
        .request(RequestType::Post, &["bs"], &["ep=SN-LW-BS2"], b"")
        .await;
    assert_eq!(code(&asked), ResponseType::Changed);
    let delete = refusing.asked().await;
    refusing.answer(&delete, ResponseType::Deleted, "", None).await;
    let security = refusing.asked().await;
    refusing.answer(&security, ResponseType::BadRequest, "", None).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (_, metrics) = t.http("GET", "/metrics", None).await;
        if metrics
            .lines()
            .any(|l| l == "fleetsim_gateway_lwm2m_bootstraps_failed_total 1")
        {
            assert!(
                metrics
                    .lines()
                    .any(|l| l == "fleetsim_gateway_lwm2m_bootstraps_total 1"),
                "{metrics}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t.stop().await;
}

/// Queue mode (binding `UQ`): a config push to a sleeping device is held, nothing is sent
/// to it, and its next registration Update brings the Write; what is held when it registers
/// afresh instead (it restarted) goes to the new registration once it is observed.
#[tokio::test]
async fn a_queue_mode_device_gets_what_was_held_at_its_next_update_or_registration() {
    let t = TestBackend::start().await;
    let mut device = Device::new(t.lwm2m).await;
    let (_, body) = device.provision("SN-LW-Q").await;
    let id = body["device_id"].as_str().expect("an id").to_owned();
    let query = ["ep=SN-LW-Q", "lt=300", "lwm2m=1.1", "b=UQ"];
    let links = b"</1/0>,</3/0>,</4/0>,</3303/0>";
    let registered = device.request(RequestType::Post, &["rd"], &query, links).await;
    assert_eq!(code(&registered), ResponseType::Created);
    answer_observes(&mut device).await;
    let push = |version: u32| format!(r#"{{"desired": {{"report_every_s": {version}}}}}"#);
    let (status, _) = json(&t, "PUT", &format!("/api/v1/devices/{id}/config"), Some(&push(30))).await;
    assert_eq!(status, 200);
    let mut buf = [0u8; 2048];
    let quiet = timeout(Duration::from_millis(300), device.socket.recv_from(&mut buf)).await;
    assert!(quiet.is_err(), "nothing is sent to a sleeping device");
    // Its update: answered, then the Write.
    let rd = location(&registered);
    let rd: Vec<&str> = rd.iter().map(String::as_str).collect();
    let updated = device.request(RequestType::Post, &rd, &[], b"").await;
    assert_eq!(code(&updated), ResponseType::Changed);
    let write = device.asked().await;
    assert_eq!(path(&write), "/32769/0/0");
    assert!(String::from_utf8_lossy(&write.payload).contains("30"), "{write:?}");
    device.answer(&write, ResponseType::Changed, "", None).await;
    // Another push, held; the device restarts and registers afresh: the new registration
    // is observed, then sent what was held.
    let (status, _) = json(&t, "PUT", &format!("/api/v1/devices/{id}/config"), Some(&push(60))).await;
    assert_eq!(status, 200);
    let again = device.request(RequestType::Post, &["rd"], &query, links).await;
    assert_eq!(code(&again), ResponseType::Created);
    answer_observes(&mut device).await;
    let write = device.asked().await;
    assert_eq!(path(&write), "/32769/0/0");
    assert!(String::from_utf8_lossy(&write.payload).contains("60"), "{write:?}");
    device.answer(&write, ResponseType::Changed, "", None).await;
    let (_, metrics) = t.http("GET", "/metrics", None).await;
    assert_eq!(
        sample(&metrics, "fleetsim_gateway_lwm2m_held_total"),
        Some(2.0),
        "{metrics}"
    );
    t.stop().await;
}

/// Campaign images are served block-wise over CoAP (RFC 7959's Block2): `GET /fw/VERSION`
/// answers the first 1,024 bytes with the image's size (Size2) when no block is named; any
/// block, of any size up to 1,024, can be asked for (a cut download resumes); the last says
/// no more follow; a block past the end is 4.02 and an image the store lacks 4.04. The
/// blocks put together are the image.
#[tokio::test]
async fn campaign_images_are_served_block_wise() {
    let t = TestBackend::start().await;
    let image: Vec<u8> = (0..2_500u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    t.backend
        .firmware
        .store("2.0.0", bytes::Bytes::from(image.clone()))
        .expect("stored");
    let mut device = Device::new(t.lwm2m).await;
    let block2 = |packet: &Packet| packet.get_first_option(CoapOption::Block2).cloned().unwrap_or_default();
    let first = device.request(RequestType::Get, &["fw", "2.0.0"], &[], b"").await;
    assert_eq!(code(&first), ResponseType::Content);
    assert_eq!(block2(&first), vec![0x0E], "block 0, more, 1,024 bytes");
    assert_eq!(
        first.get_first_option(CoapOption::Size2).cloned(),
        Some(vec![0x09, 0xC4]),
        "2,500"
    );
    let mut got = first.payload.clone();
    for (num, more) in [(1u8, true), (2, false)] {
        let answer = block_request(&mut device, &["fw", "2.0.0"], vec![num << 4 | 6]).await;
        assert_eq!(code(&answer), ResponseType::Content);
        assert_eq!(block2(&answer), vec![num << 4 | u8::from(more) << 3 | 6]);
        got.extend_from_slice(&answer.payload);
    }
    assert_eq!(got, image, "the blocks make the image");
    // 256-byte blocks from byte 2,304 on: block 9 holds the last 196 bytes.
    let small = block_request(&mut device, &["fw", "2.0.0"], vec![0x94]).await;
    assert_eq!(
        (code(&small), small.payload.as_slice()),
        (ResponseType::Content, &image[2_304..])
    );
    let past = block_request(&mut device, &["fw", "2.0.0"], vec![0x36]).await;
    assert_eq!(
        code(&past),
        ResponseType::BadOption,
        "block 3 of 1,024 is past 2,500 bytes"
    );
    let missing = device.request(RequestType::Get, &["fw", "9.9.9"], &[], b"").await;
    assert_eq!(code(&missing), ResponseType::NotFound);
    let (_, metrics) = t.http("GET", "/metrics", None).await;
    assert_eq!(
        sample(&metrics, "fleetsim_gateway_lwm2m_package_blocks_total"),
        Some(4.0),
        "{metrics}"
    );
    t.stop().await;
}

/// A GET of `path` with a Block2 option of `value`; the answer.
async fn block_request(device: &mut Device, path: &[&str], value: Vec<u8>) -> Packet {
    let block2 = [(CoapOption::Block2, value)];
    device.request_with(RequestType::Get, (path, &[]), b"", &block2).await
}

#[tokio::test]
async fn what_a_device_must_not_do_is_refused_with_a_reason() {
    let t = TestBackend::start().await;
    let mut device = Device::new(t.lwm2m).await;

    // Not provisioned: no registration.
    let refused = device.register("SN-NOBODY", 60).await;
    assert_eq!(code(&refused), ResponseType::Forbidden);
    assert!(String::from_utf8_lossy(&refused.payload).contains("provision it first"));

    // A wrong claim secret.
    let answer = device
        .request(
            RequestType::Post,
            &["provision"],
            &["ep=SN-X", "claim=factory"],
            br#"{"secret": "nope"}"#,
        )
        .await;
    assert_eq!(code(&answer), ResponseType::Unauthorized);

    // Malformed requests: 4.00 with why, 4.04 elsewhere, 4.05 for the wrong method.
    let cases: [(RequestType, &[&str], &[&str], ResponseType); 5] = [
        (RequestType::Post, &["rd"], &["lt=60"], ResponseType::BadRequest),
        (
            RequestType::Post,
            &["rd"],
            &["ep=SN-1", "lt=-1"],
            ResponseType::BadRequest,
        ),
        (RequestType::Get, &["rd"], &[], ResponseType::MethodNotAllowed),
        (RequestType::Post, &["dp"], &["ep=SN-1"], ResponseType::NotFound),
        (RequestType::Get, &["bs"], &["ep=SN-1"], ResponseType::MethodNotAllowed),
    ];
    for (method, path, query, want) in cases {
        let answer = device.request(method, path, query, b"").await;
        assert_eq!(code(&answer), want, "{path:?} {query:?}");
        assert!(!answer.payload.is_empty(), "a diagnostic says why");
    }

    // Garbage, a CoAP version 2 header, a truncated header and an oversized request: dropped
    // or refused, and the front still serves.
    let raw = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    // A confirmable POST whose payload runs past the largest datagram read.
    let mut oversized = vec![0x40, 0x02, 0x00, 0x09, 0xFF];
    oversized.resize(3000, b'a');
    for junk in [
        &b"\xff\xff\xff\xff\xff"[..],
        &b"\x80\x01\x00\x01"[..],
        &b"\x40"[..],
        &oversized[..],
    ] {
        raw.send_to(junk, t.lwm2m).await.expect("send");
    }
    let (code_, _) = device.provision("SN-AFTER").await;
    assert_eq!(code_, ResponseType::Created, "still serving");
    let (_, metrics) = t.http("GET", "/metrics", None).await;
    let count = |name| sample(&metrics, name);
    assert_eq!(
        count("fleetsim_gateway_lwm2m_bad_requests_total"),
        Some(5.0),
        "{metrics}"
    );
    assert_eq!(
        count("fleetsim_gateway_lwm2m_bad_datagrams_total"),
        Some(4.0),
        "{metrics}"
    );
    assert_eq!(count("fleetsim_gateway_lwm2m_refused_total"), Some(1.0), "{metrics}");
    t.stop().await;
}

#[tokio::test]
async fn a_front_without_room_answers_service_unavailable_and_when_to_retry() {
    let limits = fleetsim_backend::gateway::Limits {
        lwm2m_in_flight: 0,
        ..fleetsim_backend::gateway::Limits::default()
    };
    let t = TestBackend::start_with(limits).await;
    let mut device = Device::new(t.lwm2m).await;
    let answer = device.register("SN-BUSY", 60).await;
    assert_eq!(code(&answer), ResponseType::ServiceUnavailable);
    assert_eq!(
        answer.get_first_option(CoapOption::MaxAge).map(Vec::as_slice),
        Some(&[1u8][..]),
        "retry in a second"
    );
    let (_, metrics) = t.http("GET", "/metrics", None).await;
    assert!(
        metrics.lines().any(|l| l == "fleetsim_gateway_lwm2m_busy_total 1"),
        "{metrics}"
    );
    t.stop().await;
}
