//! The MQTT gateway with real clients (rumqttc's event loop, and raw sockets where a client
//! library would hide what is tested): authentication, provisioning by claim, topic rules,
//! session takeover, keep-alive, retained config, persistent sessions, decommissioning and
//! bad input.

mod common;

use std::time::Duration;

use common::{TestBackend, next_publish, wait_closed, wait_for};
use fleetsim_backend::gateway::Limits;
use fleetsim_backend::gateway::conn::MAX_SUBSCRIPTIONS;
use rumqttc::{ConnectReturnCode, Packet, QoS, SubscribeReasonCode};
use std::sync::atomic::Ordering;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn unknown_wrong_and_missing_credentials_are_not_authorized() {
    let t = TestBackend::start().await;
    let refused = |r: Result<_, ConnectReturnCode>| r.err();
    assert_eq!(
        refused(t.connect(t.options("d-nobody", "d-nobody", "token")).await),
        Some(ConnectReturnCode::NotAuthorized)
    );
    assert_eq!(
        refused(t.connect(t.options("p1", "claim:factory", "wrong")).await),
        Some(ConnectReturnCode::NotAuthorized)
    );
    assert_eq!(
        refused(t.connect(t.options("p2", "claim:nosuch", "s3cret")).await),
        Some(ConnectReturnCode::NotAuthorized)
    );
    let (_, body) = t.provision("SN-AUTH", "claim:factory", "s3cret").await;
    let id = body["device_id"].as_str().expect("id");
    assert_eq!(
        refused(t.connect(t.options(id, id, "not-the-token")).await),
        Some(ConnectReturnCode::NotAuthorized)
    );
    // A device must use its own id as client id.
    let token = body["token"].as_str().expect("token");
    assert_eq!(
        refused(t.connect(t.options("someone-else", id, token)).await),
        Some(ConnectReturnCode::NotAuthorized)
    );
    assert_eq!(t.backend.gateway.stats().connects_refused.load(Ordering::Relaxed), 5);
    t.stop().await;
}

#[tokio::test]
async fn a_claim_provisions_a_device_that_then_connects() {
    let t = TestBackend::start().await;
    let (outcome, body) = t.provision("SN-0001", "claim:factory", "s3cret").await;
    assert_eq!(outcome, "accepted", "{body}");
    assert_eq!(body["group"], "sensors");
    assert_eq!(body["config"]["version"], 0);
    let id = body["device_id"].as_str().expect("id").to_owned();
    let token = body["token"].as_str().expect("token");
    assert!(id.starts_with("d-") && token.len() == 64, "{body}");
    let (client, mut eventloop, present) = t.connect(t.options(&id, &id, token)).await.expect("device connects");
    assert!(!present);
    client
        .publish(
            format!("fleet/v1/d/{id}/telemetry"),
            QoS::AtLeastOnce,
            false,
            b"{\"t\":21.5}".to_vec(),
        )
        .await
        .expect("queue");
    wait_for(&mut eventloop, |p| matches!(p, Packet::PubAck(_))).await;
    client
        .publish(
            format!("fleet/v1/d/{id}/telemetry"),
            QoS::AtMostOnce,
            false,
            b"{\"t\":21.6}".to_vec(),
        )
        .await
        .expect("queue");
    client
        .publish(
            format!("fleet/v1/d/{id}/status"),
            QoS::AtLeastOnce,
            false,
            b"{\"battery\":0.93}".to_vec(),
        )
        .await
        .expect("queue");
    wait_for(&mut eventloop, |p| matches!(p, Packet::PubAck(_))).await;
    let stats = t.backend.gateway.stats();
    assert_eq!(stats.telemetry.load(Ordering::Relaxed), 2);
    assert_eq!(stats.status.load(Ordering::Relaxed), 1);
    let (status, shown) = t.http("GET", &format!("/api/v1/devices/{id}"), None).await;
    assert_eq!(status, 200, "{shown}");
    let shown: serde_json::Value = serde_json::from_str(&shown).expect("JSON");
    assert_eq!(shown["online"], true);
    assert_eq!(
        shown["status"]["battery"], 0.93,
        "the last status report is kept: {shown}"
    );
    assert!(shown["last_seen_ms"].as_u64().is_some_and(|ms| ms > 0), "{shown}");
    let record = t.backend.registry.device(&id).expect("read").expect("row");
    assert_eq!(record.serial, "SN-0001");
    assert_eq!(record.model.as_deref(), Some("temp-sensor"));
    t.stop().await;
}

#[tokio::test]
async fn a_retried_provision_gets_the_same_identity_and_other_claims_are_rejected() {
    let t = TestBackend::start().await;
    t.backend
        .registry
        .create_claim("rival", "r1val", "sensors")
        .await
        .expect("write")
        .expect("new");
    let (_, first) = t.provision("SN-RETRY", "claim:factory", "s3cret").await;
    let (outcome, second) = t.provision("SN-RETRY", "claim:factory", "s3cret").await;
    assert_eq!(outcome, "accepted");
    assert_eq!(first["device_id"], second["device_id"]);
    assert_eq!(first["token"], second["token"]);
    let (outcome, rival) = t.provision("SN-RETRY", "claim:rival", "r1val").await;
    assert_eq!(outcome, "rejected");
    assert_eq!(rival["reason"], "provisioned_by_other_claim");
    let (outcome, bad) = t.provision("bad serial!", "claim:factory", "s3cret").await;
    assert_eq!(
        (outcome.as_str(), bad["reason"].as_str()),
        ("rejected", Some("invalid_serial")),
        "{bad}"
    );
    assert_eq!(t.backend.registry.counts().active, 1, "never a second device row");
    t.stop().await;
}

#[tokio::test]
async fn a_csr_without_a_ca_to_sign_it_is_refused_and_creates_nothing() {
    // This backend serves no TLS listener, so it holds no CA key: it issues no certificates,
    // and says so rather than provisioning a device without the one it asked for.
    let t = TestBackend::start().await;
    let request = serde_json::json!({
        "model": "temp-sensor",
        "csr": "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n",
    });
    let (outcome, body) = t.provision_with("SN-CSR", "claim:factory", "s3cret", &request).await;
    assert_eq!(
        (outcome.as_str(), body["reason"].as_str()),
        ("rejected", Some("no_authority")),
        "{body}"
    );
    assert_eq!(
        t.backend.registry.counts().active,
        0,
        "no device without its certificate"
    );
    assert_eq!(t.backend.gateway.stats().csr_rejected.load(Ordering::Relaxed), 1);
    t.stop().await;
}

#[tokio::test]
async fn devices_touch_only_their_own_topics() {
    let t = TestBackend::start().await;
    let (_other_client, _other_loop, other) = t.device("SN-OTHER").await;
    let (client, mut eventloop, id) = t.device("SN-SELF").await;
    client
        .subscribe(format!("fleet/v1/d/{other}/#"), QoS::AtLeastOnce)
        .await
        .expect("queue");
    let Packet::SubAck(ack) = wait_for(&mut eventloop, |p| matches!(p, Packet::SubAck(_))).await else {
        unreachable!()
    };
    assert_eq!(ack.return_codes, vec![SubscribeReasonCode::Failure]);
    client
        .subscribe(format!("fleet/v1/d/{id}/#"), QoS::AtLeastOnce)
        .await
        .expect("queue");
    let Packet::SubAck(ack) = wait_for(&mut eventloop, |p| matches!(p, Packet::SubAck(_))).await else {
        unreachable!()
    };
    assert_eq!(ack.return_codes, vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]);
    client
        .publish(
            format!("fleet/v1/d/{other}/telemetry"),
            QoS::AtLeastOnce,
            false,
            b"{}".to_vec(),
        )
        .await
        .expect("queue");
    wait_for(&mut eventloop, |p| matches!(p, Packet::PubAck(_))).await;
    client
        .publish(
            "fleet/v1/provision/SN-X".to_owned(),
            QoS::AtLeastOnce,
            false,
            b"{}".to_vec(),
        )
        .await
        .expect("queue");
    wait_for(&mut eventloop, |p| matches!(p, Packet::PubAck(_))).await;
    let stats = t.backend.gateway.stats();
    assert_eq!(stats.publish_refused.load(Ordering::Relaxed), 2);
    assert_eq!(stats.subscribe_refused.load(Ordering::Relaxed), 1);
    assert_eq!(
        stats.telemetry.load(Ordering::Relaxed),
        0,
        "refused publishes are not ingested"
    );
    t.stop().await;
}

#[tokio::test]
async fn a_second_connection_with_the_same_id_takes_over() {
    let t = TestBackend::start().await;
    let (outcome, body) = t.provision("SN-TWICE", "claim:factory", "s3cret").await;
    assert_eq!(outcome, "accepted");
    let id = body["device_id"].as_str().expect("id");
    let token = body["token"].as_str().expect("token");
    let (_first, mut first_loop, _) = t.connect(t.options(id, id, token)).await.expect("first");
    let (_second, _second_loop, _) = t.connect(t.options(id, id, token)).await.expect("second");
    wait_closed(&mut first_loop).await;
    assert_eq!(t.backend.gateway.stats().takeovers.load(Ordering::Relaxed), 1);
    assert!(
        t.backend.gateway.sessions().is_live(id),
        "the newer connection holds the id"
    );
    t.stop().await;
}

/// Encodes a CONNECT with the given keep-alive and credentials (raw bytes, so the test and
/// not a client library decides what is sent and when).
fn raw_connect(client_id: &str, user: &str, password: &str, keep_alive_s: u16) -> Vec<u8> {
    let mut connect = rumqttc::mqttbytes::v4::Connect::new(client_id);
    connect.keep_alive = keep_alive_s;
    connect.set_login(user, password);
    let mut buf = bytes::BytesMut::new();
    connect.write(&mut buf).expect("encode");
    buf.to_vec()
}

#[tokio::test]
async fn silence_past_one_and_a_half_keep_alives_closes_the_connection() {
    let t = TestBackend::start().await;
    let mut socket = tokio::net::TcpStream::connect(t.mqtt).await.expect("tcp");
    socket
        .write_all(&raw_connect("p-silent", "claim:factory", "s3cret", 1))
        .await
        .expect("send");
    let mut connack = [0u8; 4];
    socket.read_exact(&mut connack).await.expect("CONNACK");
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
    // Say nothing: the gateway must close after 1.5 s; allow generous slack.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection was still open after 10 s of silence");
    assert_eq!(t.backend.gateway.stats().keepalive_timeouts.load(Ordering::Relaxed), 1);
    t.stop().await;
}

#[tokio::test]
async fn desired_config_is_retained_and_delivered_on_subscribe() {
    let t = TestBackend::start().await;
    let (client, mut eventloop, id) = t.device("SN-CFG").await;
    let (status, body) = t
        .http(
            "PUT",
            "/api/v1/groups/sensors/config",
            Some(r#"{"desired": {"report_interval": "15m"}}"#),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    client
        .subscribe(format!("fleet/v1/d/{id}/config/desired"), QoS::AtLeastOnce)
        .await
        .expect("queue");
    let publish = next_publish(&mut eventloop).await;
    assert!(publish.retain, "desired config is a retained message");
    let config: serde_json::Value = serde_json::from_slice(&publish.payload).expect("JSON");
    assert_eq!(config["desired"]["report_interval"], "15m");
    let version = config["version"].as_u64().expect("version");
    assert!(version > 0);
    // The device reports it applied the version; drift clears.
    let report = serde_json::json!({ "version": version }).to_string();
    client
        .publish(
            format!("fleet/v1/d/{id}/config/reported"),
            QoS::AtLeastOnce,
            false,
            report,
        )
        .await
        .expect("queue");
    wait_for(&mut eventloop, |p| matches!(p, Packet::PubAck(_))).await;
    let (_, drift) = t.http("GET", "/api/v1/config/drift?group=sensors", None).await;
    let drift: serde_json::Value = serde_json::from_str(&drift).expect("JSON");
    assert_eq!(drift["drift"].as_array().map(Vec::len), Some(0), "{drift}");
    t.stop().await;
}

#[tokio::test]
async fn a_persistent_session_receives_what_was_sent_while_offline() {
    let t = TestBackend::start().await;
    let (options, id) = t.persistent_device("SN-PERSIST").await;
    let (client, mut eventloop, present) = t.connect(options.clone()).await.expect("connects");
    assert!(!present);
    client
        .subscribe(format!("fleet/v1/d/{id}/config/desired"), QoS::AtLeastOnce)
        .await
        .expect("queue");
    wait_for(&mut eventloop, |p| matches!(p, Packet::SubAck(_))).await;
    client.disconnect().await.expect("queue disconnect");
    wait_closed(&mut eventloop).await;
    t.wait_offline(&id).await;
    let path = format!("/api/v1/devices/{id}/config");
    let (status, reply) = t.http("PUT", &path, Some(r#"{"desired": {"mode": "eco"}}"#)).await;
    assert_eq!(status, 200, "{reply}");
    assert!(
        reply.contains("\"pushed\":true"),
        "queued for the offline session: {reply}"
    );
    let (_client, mut eventloop, present) = t.connect(options).await.expect("reconnects");
    assert!(present, "the session was kept");
    let publish = next_publish(&mut eventloop).await;
    let config: serde_json::Value = serde_json::from_slice(&publish.payload).expect("JSON");
    assert_eq!(config["desired"]["mode"], "eco");
    t.stop().await;
}

#[tokio::test]
async fn a_decommissioned_device_is_disconnected_and_can_never_return() {
    let t = TestBackend::start().await;
    let (outcome, body) = t.provision("SN-GONE", "claim:factory", "s3cret").await;
    assert_eq!(outcome, "accepted");
    let id = body["device_id"].as_str().expect("id").to_owned();
    let token = body["token"].as_str().expect("token").to_owned();
    let (_client, mut eventloop, _) = t.connect(t.options(&id, &id, &token)).await.expect("connects");
    let (status, reply) = t
        .http("POST", &format!("/api/v1/devices/{id}/decommission"), None)
        .await;
    assert_eq!(status, 204, "{reply}");
    wait_closed(&mut eventloop).await;
    assert_eq!(
        t.connect(t.options(&id, &id, &token)).await.err(),
        Some(ConnectReturnCode::NotAuthorized)
    );
    let (outcome, body) = t.provision("SN-GONE", "claim:factory", "s3cret").await;
    assert_eq!(
        (outcome.as_str(), body["reason"].as_str()),
        ("rejected", Some("decommissioned"))
    );
    t.stop().await;
}

#[tokio::test]
async fn oversized_and_malformed_packets_close_the_connection_and_are_counted() {
    let limits = Limits {
        max_packet_bytes: 1024,
        ..Limits::default()
    };
    let t = TestBackend::start_with(limits).await;
    let (client, mut eventloop, id) = t.device("SN-BIG").await;
    client
        .publish(
            format!("fleet/v1/d/{id}/telemetry"),
            QoS::AtMostOnce,
            false,
            vec![b'x'; 4096],
        )
        .await
        .expect("queue");
    wait_closed(&mut eventloop).await;
    assert_eq!(t.backend.gateway.stats().oversized_packets.load(Ordering::Relaxed), 1);

    let mut socket = tokio::net::TcpStream::connect(t.mqtt).await.expect("tcp");
    socket.write_all(&[0xF0, 0x00, 0xFF, 0xFF]).await.expect("send garbage");
    let mut rest = Vec::new();
    tokio::time::timeout(common::PATIENCE, socket.read_to_end(&mut rest))
        .await
        .expect("closed")
        .ok();
    assert!(rest.is_empty(), "no reply to garbage");
    let errors = t.backend.gateway.stats().protocol_errors.load(Ordering::Relaxed);
    assert_eq!(errors, 1);

    let (status_client, mut status_loop, id2) = t.device("SN-JUNK").await;
    status_client
        .publish(
            format!("fleet/v1/d/{id2}/status"),
            QoS::AtLeastOnce,
            false,
            b"not json".to_vec(),
        )
        .await
        .expect("queue");
    wait_for(&mut status_loop, |p| matches!(p, Packet::PubAck(_))).await;
    assert_eq!(t.backend.gateway.stats().bad_payloads.load(Ordering::Relaxed), 1);
    // Well-formed JSON with an impossible battery level is refused too.
    status_client
        .publish(
            format!("fleet/v1/d/{id2}/status"),
            QoS::AtLeastOnce,
            false,
            b"{\"battery\": 7.0}".to_vec(),
        )
        .await
        .expect("queue");
    wait_for(&mut status_loop, |p| matches!(p, Packet::PubAck(_))).await;
    assert_eq!(t.backend.gateway.stats().bad_payloads.load(Ordering::Relaxed), 2);
    assert_eq!(t.backend.gateway.stats().status.load(Ordering::Relaxed), 0);
    t.stop().await;
}

/// Writes `packet` in MQTT 5's layout to `socket`.
async fn send5(socket: &mut tokio::net::TcpStream, packet: rumqttc::v5::mqttbytes::v5::Packet) {
    let mut buf = bytes::BytesMut::new();
    packet.write(&mut buf, None).expect("encode an MQTT 5 packet");
    socket.write_all(&buf).await.expect("send");
}

/// An MQTT 5 CONNECT as `id` with `login`, keeping its session if `keep`.
fn connect5(id: &str, login: Option<(&str, &str)>, keep: bool) -> rumqttc::v5::mqttbytes::v5::Packet {
    use rumqttc::v5::mqttbytes::v5::{Connect, ConnectProperties, Login, Packet};
    let mut properties = ConnectProperties::new();
    properties.session_expiry_interval = keep.then_some(3600);
    let connect = Connect {
        keep_alive: 30,
        client_id: id.to_owned(),
        clean_start: !keep,
        properties: Some(properties),
    };
    Packet::Connect(connect, None, login.map(|(user, password)| Login::new(user, password)))
}

/// Reads from `socket` until `bytes` came, or it closed; what came.
async fn read_at_least(socket: &mut tokio::net::TcpStream, bytes: usize) -> Vec<u8> {
    let mut reply = Vec::new();
    let mut buf = [0u8; 256];
    while reply.len() < bytes {
        match tokio::time::timeout(common::PATIENCE, socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => reply.extend_from_slice(&buf[..n]),
        }
    }
    reply
}

/// The next MQTT 5 packet the gateway writes to `socket`; bytes read past it stay in `buf`
/// for the next call.
async fn read5(socket: &mut tokio::net::TcpStream, buf: &mut bytes::BytesMut) -> rumqttc::v5::mqttbytes::v5::Packet {
    loop {
        match rumqttc::v5::mqttbytes::v5::Packet::read(buf, None) {
            Ok(packet) => return packet,
            Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(other) => panic!("the gateway wrote no MQTT 5 packet: {other:?}"),
        }
        let read = tokio::time::timeout(common::PATIENCE, socket.read_buf(buf))
            .await
            .expect("a packet in time")
            .expect("read");
        assert_ne!(read, 0, "the connection closed before a whole packet came");
    }
}

/// Reads `socket` until the gateway closes it: what it wrote first, or `None` if it was still
/// open after [`common::PATIENCE`].
async fn read_to_close(socket: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut rest = Vec::new();
    let read = tokio::time::timeout(common::PATIENCE, socket.read_to_end(&mut rest)).await;
    read.ok().map(|read| {
        read.expect("read");
        rest
    })
}

/// Checks the gateway closed `socket` of device `id` without writing a word after the client's
/// goodbye (`what`), and waits until the device is offline.
async fn closed_quietly(t: &TestBackend, socket: &mut tokio::net::TcpStream, id: &str, what: &str) {
    assert_eq!(
        read_to_close(socket).await,
        Some(Vec::new()),
        "{what}: closed, nothing written"
    );
    t.wait_offline(id).await;
}

/// Provisions `serial` with the `factory` claim: the device's id and token.
async fn credentials(t: &TestBackend, serial: &str) -> (String, String) {
    let (outcome, body) = t.provision(serial, "claim:factory", "s3cret").await;
    assert_eq!(outcome, "accepted", "{body}");
    let id = body["device_id"].as_str().expect("device_id").to_owned();
    let token = body["token"].as_str().expect("token").to_owned();
    (id, token)
}

/// Connects device `id` over MQTT 5 with clean start off and a session expiry interval of
/// `expiry_s`, and checks its CONNACK: accepted, with a stored session resumed if `present`.
async fn connect_kept5(t: &TestBackend, id: &str, token: &str, expiry_s: u32, present: bool) -> tokio::net::TcpStream {
    use rumqttc::v5::mqttbytes::v5::Packet as Packet5;
    let Packet5::Connect(mut connect, will, login) = connect5(id, Some((id, token)), true) else {
        unreachable!("connect5 makes a CONNECT")
    };
    connect.properties = connect.properties.map(|mut properties| {
        properties.session_expiry_interval = Some(expiry_s);
        properties
    });
    let mut socket = tokio::net::TcpStream::connect(t.mqtt).await.expect("tcp");
    send5(&mut socket, Packet5::Connect(connect, will, login)).await;
    // Exactly the CONNACK's bytes: a resumed session's messages follow at once.
    let mut connack = [0u8; 7];
    tokio::time::timeout(common::PATIENCE, socket.read_exact(&mut connack))
        .await
        .expect("CONNACK in time")
        .expect("CONNACK");
    // CONNACK: session present or not, success, properties: Maximum QoS (0x24) 1.
    assert_eq!(
        connack,
        [0x20, 0x05, u8::from(present), 0x00, 0x02, 0x24, 0x01],
        "CONNACK with session present {present}"
    );
    socket
}

/// Subscribes an MQTT 5 connection of device `id` to its commands at QoS 1.
async fn subscribe_commands5(socket: &mut tokio::net::TcpStream, id: &str) {
    use rumqttc::v5::mqttbytes::QoS as QoS5;
    use rumqttc::v5::mqttbytes::v5::{Filter, Packet as Packet5, Subscribe};
    let mut subscribe = Subscribe::new(Filter::new(format!("fleet/v1/d/{id}/cmd/+"), QoS5::AtLeastOnce), None);
    subscribe.pkid = 1;
    send5(socket, Packet5::Subscribe(subscribe)).await;
    // SUBACK of packet 1: no properties, QoS 1 granted.
    assert_eq!(read_at_least(socket, 6).await, [0x90, 0x04, 0x00, 0x01, 0x00, 0x01]);
}

/// Device `serial`, provisioned, connected over MQTT 5 with a session expiry interval of
/// `connect_s` and subscribed to its commands, says goodbye with a DISCONNECT that sets the
/// interval to `disconnect_s`: its id and token, and the socket to see the gateway's answer on.
async fn gone_changing_expiry5(
    t: &TestBackend,
    serial: &str,
    connect_s: u32,
    disconnect_s: u32,
) -> (String, String, tokio::net::TcpStream) {
    let (id, token) = credentials(t, serial).await;
    let mut socket = connect_kept5(t, &id, &token, connect_s, false).await;
    subscribe_commands5(&mut socket, &id).await;
    send5(&mut socket, disconnect_expiring(disconnect_s)).await;
    (id, token, socket)
}

/// An MQTT 5 DISCONNECT, normal disconnection, that sets the session expiry interval to
/// `expiry_s`.
fn disconnect_expiring(expiry_s: u32) -> rumqttc::v5::mqttbytes::v5::Packet {
    use rumqttc::v5::mqttbytes::v5::{Disconnect, DisconnectProperties, DisconnectReasonCode, Packet};
    Packet::Disconnect(Disconnect {
        reason_code: DisconnectReasonCode::NormalDisconnection,
        properties: Some(DisconnectProperties {
            session_expiry_interval: Some(expiry_s),
            reason_string: None,
            user_properties: Vec::new(),
            server_reference: None,
        }),
    })
}

/// Reads the command the gateway sends an MQTT 5 connection, checks it is `cmd_id` and
/// acknowledges it: the command's PUBLISH.
async fn take_command5(
    socket: &mut tokio::net::TcpStream,
    buf: &mut bytes::BytesMut,
    id: &str,
    cmd_id: &str,
) -> rumqttc::v5::mqttbytes::v5::Publish {
    use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, PubAck};
    let request = match read5(socket, buf).await {
        Packet5::Publish(publish) => publish,
        other => panic!("expected command {cmd_id}, got {other:?}"),
    };
    assert_eq!(request.topic, format!("fleet/v1/d/{id}/cmd/{cmd_id}"));
    send5(socket, Packet5::PubAck(PubAck::new(request.pkid, None))).await;
    request
}

/// Sends `command` to device `id` through the operator API: the command's id and how it
/// was delivered (`sent`, `queued` or `undelivered`).
async fn send_command(t: &TestBackend, id: &str, command: &str) -> (String, String) {
    let body = serde_json::json!({ "command": command }).to_string();
    let (status, reply) = t
        .http("POST", &format!("/api/v1/devices/{id}/commands"), Some(&body))
        .await;
    assert_eq!(status, 202, "{reply}");
    let sent: serde_json::Value = serde_json::from_str(&reply).expect("JSON");
    let cmd_id = sent["command"]["id"].as_str().expect("command id").to_owned();
    let delivery = sent["delivery"].as_str().expect("delivery").to_owned();
    (cmd_id, delivery)
}

/// The operator API's record of command `cmd_id`.
async fn command_record(t: &TestBackend, cmd_id: &str) -> serde_json::Value {
    let (status, body) = t.http("GET", &format!("/api/v1/commands/{cmd_id}"), None).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).expect("JSON")["command"].clone()
}

#[tokio::test]
async fn an_mqtt5_client_without_credentials_is_refused_with_reason_0x87() {
    let t = TestBackend::start().await;
    let mut socket = tokio::net::TcpStream::connect(t.mqtt).await.expect("tcp");
    send5(&mut socket, connect5("v5-device", None, false)).await;
    let reply = read_at_least(&mut socket, 5).await;
    // An MQTT 5 CONNACK: no session, reason 0x87 not authorized, no properties.
    assert_eq!(reply, [0x20, 0x03, 0x00, 0x87, 0x00]);
    assert_eq!(t.backend.gateway.stats().connects_refused.load(Ordering::Relaxed), 1);
    t.stop().await;
}

/// The MQTT 5 reason codes the big test above does not reach: a subscription outside the
/// device's subtree refused in its SUBACK with 0x87, one past the session's quota with 0x97; a second CONNECT on an MQTT 5
/// connection, 0x82 protocol error; a message over the gateway's size limit, 0x95; and at
/// shutdown, 0x8B.
#[tokio::test]
async fn mqtt5_refusals_and_goodbyes_carry_their_reasons() {
    use rumqttc::v5::mqttbytes::QoS as QoS5;
    use rumqttc::v5::mqttbytes::v5::{Filter, Packet as Packet5, Publish, Subscribe};
    let t = TestBackend::start_with(Limits {
        max_packet_bytes: 1024,
        ..Limits::default()
    })
    .await;
    let (outcome, body) = t.provision("SN-V6", "claim:factory", "s3cret").await;
    assert_eq!(outcome, "accepted", "{body}");
    let id = body["device_id"].as_str().expect("device_id").to_owned();
    let token = body["token"].as_str().expect("token").to_owned();
    let connect = |socket: tokio::net::TcpStream| {
        let (id, token) = (id.clone(), token.clone());
        async move {
            let mut socket = socket;
            send5(&mut socket, connect5(&id, Some((&id, &token)), false)).await;
            assert_eq!(read_at_least(&mut socket, 7).await.len(), 7, "CONNACK");
            socket
        }
    };
    let mut first = connect(tokio::net::TcpStream::connect(t.mqtt).await.expect("tcp")).await;
    let mut subscribe = Subscribe::new(Filter::new("fleet/v1/d/d-someone-else/cmd/+", QoS5::AtLeastOnce), None);
    subscribe.pkid = 4;
    send5(&mut first, Packet5::Subscribe(subscribe)).await;
    // SUBACK of packet 4: no properties, reason 0x87.
    assert_eq!(read_at_least(&mut first, 6).await, [0x90, 0x04, 0x00, 0x04, 0x00, 0x87]);
    // A session holds at most 32 subscriptions: past them a filter is refused with 0x97,
    // quota exceeded; one already held is renewed, not counted again. (In SUBSCRIBEs of 16,
    // under this gateway's 1 KiB packet limit.)
    for (batch, pkid) in [(0..16, 5u16), (16..32, 6), (32..33, 7)] {
        let filters: Vec<Filter> = batch
            .clone()
            .map(|i| Filter::new(format!("fleet/v1/d/{id}/x/{i}"), QoS5::AtLeastOnce))
            .collect();
        let mut subscribe = Subscribe::new_many(filters, None);
        subscribe.pkid = pkid;
        send5(&mut first, Packet5::Subscribe(subscribe)).await;
        let codes: Vec<u8> = batch.map(|i| if i < MAX_SUBSCRIPTIONS { 0x01 } else { 0x97 }).collect();
        let mut expected = vec![0x90, 3 + codes.len() as u8, 0x00, pkid as u8, 0x00];
        expected.extend(codes);
        assert_eq!(
            read_at_least(&mut first, expected.len()).await,
            expected,
            "SUBACK {pkid}"
        );
    }
    let mut again = Subscribe::new(Filter::new(format!("fleet/v1/d/{id}/x/0"), QoS5::AtMostOnce), None);
    again.pkid = 8;
    send5(&mut first, Packet5::Subscribe(again)).await;
    assert_eq!(read_at_least(&mut first, 6).await, [0x90, 0x04, 0x00, 0x08, 0x00, 0x00]);
    send5(&mut first, connect5(&id, Some((&id, &token)), false)).await;
    assert_eq!(read_at_least(&mut first, 3).await, [0xE0, 0x01, 0x82]);

    let mut second = connect(tokio::net::TcpStream::connect(t.mqtt).await.expect("tcp")).await;
    let large = Publish::new(
        format!("fleet/v1/d/{id}/telemetry"),
        QoS5::AtMostOnce,
        vec![b'x'; 2048],
        None,
    );
    send5(&mut second, Packet5::Publish(large)).await;
    assert_eq!(read_at_least(&mut second, 3).await, [0xE0, 0x01, 0x95]);

    let mut third = connect(tokio::net::TcpStream::connect(t.mqtt).await.expect("tcp")).await;
    t.stop().await;
    assert_eq!(read_at_least(&mut third, 3).await, [0xE0, 0x01, 0x8B]);
}

/// A 3.1.1 connection stays 3.1.1: a second CONNECT, though of level 5, is a protocol error
/// that closes it (with nothing in 5's layout written to a 3.1.1 client).
#[tokio::test]
async fn a_second_connect_does_not_change_a_connections_version() {
    let t = TestBackend::start().await;
    let (outcome, body) = t.provision("SN-V4", "claim:factory", "s3cret").await;
    assert_eq!(outcome, "accepted", "{body}");
    let id = body["device_id"].as_str().expect("device_id").to_owned();
    let token = body["token"].as_str().expect("token").to_owned();
    let mut connect = rumqttc::mqttbytes::v4::Connect::new(id.as_str());
    connect.set_login(id.as_str(), token.as_str());
    let mut buf = bytes::BytesMut::new();
    rumqttc::mqttbytes::v4::Packet::Connect(connect)
        .write(&mut buf, usize::MAX)
        .expect("encode a 3.1.1 CONNECT");
    let mut socket = tokio::net::TcpStream::connect(t.mqtt).await.expect("tcp");
    socket.write_all(&buf).await.expect("send");
    assert_eq!(read_at_least(&mut socket, 4).await, [0x20, 0x02, 0x00, 0x00]);
    send5(&mut socket, connect5(&id, Some((&id, &token)), false)).await;
    assert_eq!(
        read_at_least(&mut socket, 1).await,
        Vec::<u8>::new(),
        "closed, nothing written"
    );
    assert_eq!(t.backend.gateway.stats().protocol_errors.load(Ordering::Relaxed), 1);
    t.stop().await;
}

#[tokio::test]
async fn an_mqtt31_client_is_told_the_protocol_version_is_unacceptable() {
    let t = TestBackend::start().await;
    // MQTT 3.1 (protocol name MQIsdp, level 3): a 3.1.1 CONNACK with return code 1.
    let mut connect = vec![0x10, 0x12, 0x00, 0x06];
    connect.extend_from_slice(b"MQIsdp");
    connect.extend_from_slice(&[0x03, 0x02, 0x00, 0x1E, 0x00, 0x04]);
    connect.extend_from_slice(b"v3-d");
    let mut socket = tokio::net::TcpStream::connect(t.mqtt).await.expect("tcp");
    socket.write_all(&connect).await.expect("send");
    let reply = read_at_least(&mut socket, 4).await;
    assert_eq!(reply, [0x20, 0x02, 0x00, 0x01]);
    assert_eq!(
        t.backend
            .gateway
            .stats()
            .protocol_version_refused
            .load(Ordering::Relaxed),
        1
    );
    t.stop().await;
}

/// MQTT 5 side by side with 3.1.1: a device connects over 5 with its credentials (told the
/// gateway's Maximum QoS, 1), its telemetry is counted and acknowledged, a message to a topic
/// not its own is refused in its PUBACK with 0x87; a second connection of the same device
/// takes the session over and the first is told why (DISCONNECT 0x8E); a message naming a topic
/// alias, which the gateway never offered, ends the connection with 0x81 malformed packet, one
/// at QoS 2 with 0x9B, silence past 1.5 keep-alives with 0x8D, and decommissioning with 0x87.
#[tokio::test]
async fn mqtt5_devices_are_served_with_reason_codes() {
    use rumqttc::v5::mqttbytes::QoS as QoS5;
    use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, Publish, PublishProperties};
    let t = TestBackend::start().await;
    let (outcome, body) = t.provision("SN-V5", "claim:factory", "s3cret").await;
    assert_eq!(outcome, "accepted", "{body}");
    let id = body["device_id"].as_str().expect("device_id").to_owned();
    let token = body["token"].as_str().expect("token").to_owned();
    let mut first = tokio::net::TcpStream::connect(t.mqtt).await.expect("tcp");
    send5(&mut first, connect5(&id, Some((&id, &token)), true)).await;
    // CONNACK: no session present, success, properties: Maximum QoS (0x24) 1.
    assert_eq!(
        read_at_least(&mut first, 7).await,
        [0x20, 0x05, 0x00, 0x00, 0x02, 0x24, 0x01]
    );
    let mut telemetry = Publish::new(
        format!("fleet/v1/d/{id}/telemetry"),
        QoS5::AtLeastOnce,
        r#"{"t": 21.5}"#,
        None,
    );
    telemetry.pkid = 1;
    send5(&mut first, Packet5::Publish(telemetry)).await;
    // A plain PUBACK of packet 1 (a success needs no reason code).
    assert_eq!(read_at_least(&mut first, 4).await, [0x40, 0x02, 0x00, 0x01]);
    assert_eq!(t.backend.gateway.stats().telemetry.load(Ordering::Relaxed), 1);
    let mut foreign = Publish::new("fleet/v1/d/d-someone-else/telemetry", QoS5::AtLeastOnce, "{}", None);
    foreign.pkid = 2;
    send5(&mut first, Packet5::Publish(foreign)).await;
    // PUBACK of packet 2 with reason 0x87 not authorized (and no properties).
    assert_eq!(read_at_least(&mut first, 6).await, [0x40, 0x04, 0x00, 0x02, 0x87, 0x00]);
    assert_eq!(t.backend.gateway.stats().publish_refused.load(Ordering::Relaxed), 1);

    let mut second = tokio::net::TcpStream::connect(t.mqtt).await.expect("tcp");
    send5(&mut second, connect5(&id, Some((&id, &token)), true)).await;
    // Accepted (a live connection's session is handed over only once it closes, as for 3.1.1).
    assert_eq!(
        read_at_least(&mut second, 7).await,
        [0x20, 0x05, 0x00, 0x00, 0x02, 0x24, 0x01]
    );
    // The first is told: DISCONNECT, session taken over.
    assert_eq!(read_at_least(&mut first, 3).await, [0xE0, 0x01, 0x8E]);

    let mut aliased = Publish::new(format!("fleet/v1/d/{id}/telemetry"), QoS5::AtMostOnce, "{}", None);
    aliased.properties = Some(PublishProperties {
        topic_alias: Some(1),
        ..PublishProperties::default()
    });
    send5(&mut second, Packet5::Publish(aliased)).await;
    assert_eq!(read_at_least(&mut second, 3).await, [0xE0, 0x01, 0x81]);
    assert_eq!(t.backend.gateway.stats().protocol_errors.load(Ordering::Relaxed), 1);

    // QoS 2 is not offered (the CONNACK said Maximum QoS 1): 0x9B.
    let mut third = tokio::net::TcpStream::connect(t.mqtt).await.expect("tcp");
    send5(&mut third, connect5(&id, Some((&id, &token)), false)).await;
    assert_eq!(read_at_least(&mut third, 7).await.len(), 7);
    let mut exactly_once = Publish::new(format!("fleet/v1/d/{id}/telemetry"), QoS5::ExactlyOnce, "{}", None);
    exactly_once.pkid = 3;
    send5(&mut third, Packet5::Publish(exactly_once)).await;
    assert_eq!(read_at_least(&mut third, 3).await, [0xE0, 0x01, 0x9B]);

    // Silence past 1.5 keep-alives (1 s): 0x8D.
    let mut quiet = tokio::net::TcpStream::connect(t.mqtt).await.expect("tcp");
    let Packet5::Connect(mut connect, will, login) = connect5(&id, Some((&id, &token)), false) else {
        unreachable!("connect5 makes a CONNECT")
    };
    connect.keep_alive = 1;
    send5(&mut quiet, Packet5::Connect(connect, will, login)).await;
    assert_eq!(read_at_least(&mut quiet, 7).await.len(), 7);
    assert_eq!(read_at_least(&mut quiet, 3).await, [0xE0, 0x01, 0x8D]);

    // Decommissioned while connected: 0x87, not authorized any more.
    let mut last = tokio::net::TcpStream::connect(t.mqtt).await.expect("tcp");
    send5(&mut last, connect5(&id, Some((&id, &token)), false)).await;
    assert_eq!(read_at_least(&mut last, 7).await.len(), 7);
    let (status, body) = t
        .http("POST", &format!("/api/v1/devices/{id}/decommission"), None)
        .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(read_at_least(&mut last, 3).await, [0xE0, 0x01, 0x87]);
    t.stop().await;
}

/// MQTT 5 commands as requests: a command reaches the device with its response topic and its
/// id as correlation data. A result on that topic whose correlation data names another command
/// is not this one's answer: its PUBACK says 0x83 (implementation specific error), it is
/// counted as ignored, and neither command is answered. The result that echoes the id answers
/// the command and is counted as correlated.
#[tokio::test]
async fn an_mqtt5_result_naming_another_command_is_refused_with_0x83() {
    use rumqttc::v5::mqttbytes::QoS as QoS5;
    use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, Publish, PublishProperties};
    let t = TestBackend::start().await;
    let (id, token) = credentials(&t, "SN-V5-CMD").await;
    let mut socket = tokio::net::TcpStream::connect(t.mqtt).await.expect("tcp");
    send5(&mut socket, connect5(&id, Some((&id, &token)), false)).await;
    assert_eq!(read_at_least(&mut socket, 7).await.len(), 7, "CONNACK");
    subscribe_commands5(&mut socket, &id).await;
    let mut buf = bytes::BytesMut::new();
    let mut requests = Vec::new();
    for command in ["reboot", "diagnose"] {
        let (cmd_id, delivery) = send_command(&t, &id, command).await;
        assert_eq!(delivery, "sent");
        let request = take_command5(&mut socket, &mut buf, &id, &cmd_id).await;
        let properties = request.properties.expect("a command carries its request's properties");
        let response_topic = properties.response_topic.expect("response topic");
        assert_eq!(response_topic, format!("fleet/v1/d/{id}/cmd/{cmd_id}/result"));
        let correlation = properties.correlation_data.expect("correlation data");
        assert_eq!(correlation, cmd_id.as_bytes());
        requests.push((cmd_id, response_topic, correlation));
    }
    let [(first, first_topic, first_data), (second, _, second_data)] =
        <[_; 2]>::try_from(requests).expect("two commands");
    // The answer to the first command, packet `pkid`, with correlation data `data`.
    let answer = |pkid: u16, data: bytes::Bytes, payload: &'static str| {
        let properties = PublishProperties {
            correlation_data: Some(data),
            ..PublishProperties::default()
        };
        let mut publish = Publish::new(first_topic.clone(), QoS5::AtLeastOnce, payload, Some(properties));
        publish.pkid = pkid;
        Packet5::Publish(publish)
    };
    let counts = || {
        let stats = t.backend.gateway.stats();
        (
            stats.command_results_ignored.load(Ordering::Relaxed),
            stats.command_results_correlated.load(Ordering::Relaxed),
            stats.command_results.load(Ordering::Relaxed),
        )
    };

    send5(
        &mut socket,
        answer(10, second_data, r#"{"status": "error", "output": "not this one"}"#),
    )
    .await;
    // PUBACK of packet 10 with reason 0x83 (and no properties).
    assert_eq!(
        read_at_least(&mut socket, 6).await,
        [0x40, 0x04, 0x00, 0x0A, 0x83, 0x00],
        "a result for {first} naming {second} is refused with 0x83"
    );
    assert_eq!(
        counts(),
        (1, 0, 0),
        "(ignored, correlated, recorded): ignored, not an answer"
    );
    for cmd_id in [&first, &second] {
        let record = command_record(&t, cmd_id).await;
        assert_eq!(record["state"], "pending", "{cmd_id} is not answered: {record}");
    }

    send5(
        &mut socket,
        answer(11, first_data, r#"{"status": "ok", "output": "rebooting"}"#),
    )
    .await;
    // A plain PUBACK of packet 11.
    assert_eq!(read_at_least(&mut socket, 4).await, [0x40, 0x02, 0x00, 0x0B]);
    assert_eq!(counts(), (1, 1, 1), "(ignored, correlated, recorded)");
    let record = command_record(&t, &first).await;
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(record["result"]["output"], "rebooting", "{record}");
    assert_eq!(command_record(&t, &second).await["state"], "pending");
    t.stop().await;
}

/// A DISCONNECT may change how long the session outlives the connection (MQTT 5, 3.14.2.2.2).
/// One that sets 0 ends it with the connection, though the CONNECT asked for an hour: a
/// command sent then has nowhere to go, and the device's next connection starts afresh
/// (session present 0, nothing delivered ahead of its PINGRESP).
#[tokio::test]
async fn an_mqtt5_disconnect_setting_the_session_expiry_to_0_ends_the_session() {
    use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, PingReq};
    let t = TestBackend::start().await;
    let (id, token, mut socket) = gone_changing_expiry5(&t, "SN-V5-EXP0", 3600, 0).await;
    closed_quietly(&t, &mut socket, &id, "DISCONNECT, expiry 0").await;
    let (_, delivery) = send_command(&t, &id, "reboot").await;
    assert_eq!(
        delivery, "undelivered",
        "the DISCONNECT's expiry of 0 ended the session with the connection"
    );
    let mut socket = connect_kept5(&t, &id, &token, 3600, false).await;
    send5(&mut socket, Packet5::PingReq(PingReq)).await;
    assert_eq!(
        read_at_least(&mut socket, 2).await,
        [0xD0, 0x00],
        "nothing kept to deliver ahead of the PINGRESP"
    );
    assert_eq!(t.backend.gateway.stats().protocol_errors.load(Ordering::Relaxed), 0);
    t.stop().await;
}

/// A DISCONNECT may lengthen the session too: connected with an interval of 5 s and gone with
/// one of an hour, the device still has its session once the 5 s have passed by the gateway's
/// clock (paused and advanced, not waited for): a command is queued in it and delivered when
/// the device returns.
#[tokio::test]
async fn an_mqtt5_disconnect_raising_the_session_expiry_keeps_the_session_longer() {
    let t = TestBackend::start().await;
    let (id, token, mut socket) = gone_changing_expiry5(&t, "SN-V5-EXP1H", 5, 3600).await;
    closed_quietly(&t, &mut socket, &id, "DISCONNECT, expiry 3600").await;
    // Only the clock moves while paused; it resumes 10 s on, past the CONNECT's interval.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(10)).await;
    tokio::time::resume();
    let (cmd_id, delivery) = send_command(&t, &id, "reboot").await;
    assert_eq!(
        delivery, "queued",
        "the DISCONNECT's hour, not the CONNECT's 5 s, keeps the session"
    );
    let mut socket = connect_kept5(&t, &id, &token, 5, true).await;
    take_command5(&mut socket, &mut bytes::BytesMut::new(), &id, &cmd_id).await;
    t.stop().await;
}

/// A DISCONNECT may not give a session a life its CONNECT did not (MQTT 5, 3.14.2.2.2): after
/// a CONNECT whose session expiry interval is 0, a DISCONNECT naming an hour is a protocol
/// error, not a goodbye. The gateway answers DISCONNECT 0x82 (protocol error), closes and
/// counts it, and the session ends with the connection as the CONNECT said: a command sent
/// then has nowhere to go.
#[tokio::test]
async fn an_mqtt5_disconnect_setting_an_expiry_after_a_connects_0_is_a_protocol_error() {
    let t = TestBackend::start().await;
    let (id, _, mut socket) = gone_changing_expiry5(&t, "SN-V5-EXP-FROM0", 0, 3600).await;
    assert_eq!(
        read_to_close(&mut socket).await,
        Some(vec![0xE0, 0x01, 0x82]),
        "DISCONNECT 0x82, then closed"
    );
    t.wait_offline(&id).await;
    assert_eq!(t.backend.gateway.stats().protocol_errors.load(Ordering::Relaxed), 1);
    let (_, delivery) = send_command(&t, &id, "reboot").await;
    assert_eq!(
        delivery, "undelivered",
        "the CONNECT's 0 ended the session with the connection"
    );
    t.stop().await;
}

/// A client may say goodbye in a DISCONNECT's short forms (MQTT 5, 3.14.2.1 and 3.14.2.2.1):
/// `E0 00`, no reason code, and `E0 01 00`, a reason code without properties. Each is a normal
/// disconnection: the gateway closes without a word (no DISCONNECT 0x81, malformed packet),
/// counts no protocol error, and keeps the session for the CONNECT's interval, which neither
/// changes: a command sent meanwhile is queued and delivered when the device returns.
#[tokio::test]
async fn an_mqtt5_disconnects_short_forms_are_normal_goodbyes() {
    let t = TestBackend::start().await;
    let (id, token) = credentials(&t, "SN-V5-SHORT").await;
    let mut socket = connect_kept5(&t, &id, &token, 3600, false).await;
    subscribe_commands5(&mut socket, &id).await;
    for goodbye in [&[0xE0, 0x00][..], &[0xE0, 0x01, 0x00]] {
        socket.write_all(goodbye).await.expect("send");
        closed_quietly(&t, &mut socket, &id, &format!("{goodbye:02X?}")).await;
        assert_eq!(
            t.backend.gateway.stats().protocol_errors.load(Ordering::Relaxed),
            0,
            "{goodbye:02X?}: a goodbye, not a protocol error"
        );
        let (cmd_id, delivery) = send_command(&t, &id, "reboot").await;
        assert_eq!(delivery, "queued", "{goodbye:02X?}: the session is kept");
        socket = connect_kept5(&t, &id, &token, 3600, true).await;
        take_command5(&mut socket, &mut bytes::BytesMut::new(), &id, &cmd_id).await;
    }
    t.stop().await;
}

/// Writes `bytes` to `socket` in two writes split at `at`, with a pause between, so the
/// gateway reads the first part alone and has to wait for the rest.
async fn send_in_two(socket: &mut tokio::net::TcpStream, bytes: &[u8], at: usize) {
    socket.set_nodelay(true).expect("nodelay");
    let (first, rest) = bytes.split_at(at);
    socket.write_all(first).await.expect("send");
    // Time for the first part to be read alone; what is tested is that the gateway waits for
    // the rest, not how long it takes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    socket.write_all(rest).await.expect("send");
}

/// A packet whose declared length is all there but whose contents stop short is malformed,
/// not a packet to wait for: an MQTT 5 QoS 1 PUBLISH whose remaining length (5) covers its
/// topic `t` and packet id 7 but not the property length that must follow, and a SUBSCRIBE
/// whose remaining length (2) covers its packet id but no property length. Each ends its
/// connection with DISCONNECT 0x81 (malformed packet), not silence, and is counted as a
/// protocol error.
#[tokio::test]
async fn an_mqtt5_packet_short_inside_its_declared_length_is_malformed() {
    let t = TestBackend::start().await;
    let (id, token) = credentials(&t, "SN-V5-SHORT-IN").await;
    let shapes: [&[u8]; 2] = [&[0x32, 0x05, 0x00, 0x01, b't', 0x00, 0x07], &[0x82, 0x02, 0x00, 0x01]];
    for (count, packet) in (1..).zip(shapes) {
        let mut socket = tokio::net::TcpStream::connect(t.mqtt).await.expect("tcp");
        send5(&mut socket, connect5(&id, Some((&id, &token)), false)).await;
        assert_eq!(read_at_least(&mut socket, 7).await.len(), 7, "CONNACK");
        socket.write_all(packet).await.expect("send");
        assert_eq!(
            read_to_close(&mut socket).await,
            Some(vec![0xE0, 0x01, 0x81]),
            "{packet:02X?}: DISCONNECT 0x81, then closed"
        );
        assert_eq!(
            t.backend.gateway.stats().protocol_errors.load(Ordering::Relaxed),
            count,
            "{packet:02X?}: counted"
        );
        t.wait_offline(&id).await;
    }
    t.stop().await;
}

/// The same for 3.1.1: a QoS 1 PUBLISH whose remaining length (3) covers its topic `t` but not
/// its packet id closes the connection without a word and is counted as a protocol error.
#[tokio::test]
async fn a_311_packet_short_inside_its_declared_length_is_malformed() {
    let t = TestBackend::start().await;
    let mut socket = tokio::net::TcpStream::connect(t.mqtt).await.expect("tcp");
    socket
        .write_all(&raw_connect("p-short-in", "claim:factory", "s3cret", 30))
        .await
        .expect("send");
    assert_eq!(read_at_least(&mut socket, 4).await, [0x20, 0x02, 0x00, 0x00]);
    socket.write_all(&[0x32, 0x03, 0x00, 0x01, b't']).await.expect("send");
    assert_eq!(
        read_to_close(&mut socket).await,
        Some(Vec::new()),
        "closed, nothing written"
    );
    assert_eq!(t.backend.gateway.stats().protocol_errors.load(Ordering::Relaxed), 1);
    t.stop().await;
}

/// A packet that comes in two parts is waited for wherever it is split: inside its fixed
/// header, right after it, where a short packet would stop (after an MQTT 5 PUBLISH's packet
/// id, before its property length; after a 3.1.1 PUBLISH's topic, before its packet id) and
/// before its last byte. Each message is acknowledged, and none is an error.
#[tokio::test]
async fn a_packet_split_across_two_writes_is_waited_for() {
    use rumqttc::v5::mqttbytes::QoS as QoS5;
    use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, Publish as Publish5};
    let t = TestBackend::start().await;
    let (id, token) = credentials(&t, "SN-SPLIT").await;
    let topic = format!("fleet/v1/d/{id}/telemetry");
    // Fixed header (2 bytes: the remaining length fits in one), then the topic's length and
    // the topic: where the packet id starts.
    let pkid_at = 2 + 2 + topic.len();

    let mut socket = tokio::net::TcpStream::connect(t.mqtt).await.expect("tcp");
    send5(&mut socket, connect5(&id, Some((&id, &token)), false)).await;
    assert_eq!(read_at_least(&mut socket, 7).await.len(), 7, "CONNACK");
    for (pkid, at) in (1u8..).zip([1, 2, pkid_at + 2, usize::MAX]) {
        let mut publish = Publish5::new(topic.as_str(), QoS5::AtLeastOnce, r#"{"t": 21.5}"#, None);
        publish.pkid = u16::from(pkid);
        let mut bytes = bytes::BytesMut::new();
        Packet5::Publish(publish).write(&mut bytes, None).expect("encode");
        assert_eq!(
            bytes[pkid_at..pkid_at + 3],
            [0x00, pkid, 0x00],
            "packet id, property length"
        );
        send_in_two(&mut socket, &bytes, at.min(bytes.len() - 1)).await;
        // A plain PUBACK.
        assert_eq!(
            read_at_least(&mut socket, 4).await,
            [0x40, 0x02, 0x00, pkid],
            "MQTT 5, split at {at}"
        );
    }
    drop(socket);
    t.wait_offline(&id).await;

    let mut socket = tokio::net::TcpStream::connect(t.mqtt).await.expect("tcp");
    socket
        .write_all(&raw_connect(&id, &id, &token, 30))
        .await
        .expect("send");
    assert_eq!(read_at_least(&mut socket, 4).await, [0x20, 0x02, 0x00, 0x00]);
    for (pkid, at) in (1u8..).zip([1, 2, pkid_at, usize::MAX]) {
        let mut publish = rumqttc::mqttbytes::v4::Publish::new(topic.as_str(), QoS::AtLeastOnce, r#"{"t": 21.5}"#);
        publish.pkid = u16::from(pkid);
        let mut bytes = bytes::BytesMut::new();
        publish.write(&mut bytes).expect("encode");
        assert_eq!(bytes[pkid_at..pkid_at + 2], [0x00, pkid], "packet id");
        send_in_two(&mut socket, &bytes, at.min(bytes.len() - 1)).await;
        assert_eq!(
            read_at_least(&mut socket, 4).await,
            [0x40, 0x02, 0x00, pkid],
            "3.1.1, split at {at}"
        );
    }
    let stats = t.backend.gateway.stats();
    assert_eq!(stats.telemetry.load(Ordering::Relaxed), 8);
    assert_eq!(stats.protocol_errors.load(Ordering::Relaxed), 0);
    t.stop().await;
}
