//! The lean MQTT transport against real servers: the reference backend (in process, on port
//! 0) and Mosquitto (Debian's broker, started on a free loopback port): connect with and
//! without credentials, source-address binding, QoS 0 and 1 both ways, refusals.

use std::net::IpAddr;
use std::time::Duration;

use fleetsim::transport::mqtt::{ConnectParams, MqttConn, Reason, TransportError};
use fleetsim::transport::source::{LOOPBACK_BLOCK, SourceAddrs};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::Packet;

const PATIENCE: Duration = Duration::from_secs(10);

#[path = "support/backend.rs"]
mod backend;
use backend::InProcess;

#[path = "support/mosquitto.rs"]
mod mosquitto;
use mosquitto::Mosquitto;

async fn next(conn: &mut MqttConn) -> Packet {
    tokio::time::timeout(PATIENCE, conn.read())
        .await
        .expect("packet in time")
        .expect("read")
        .expect("open")
}

/// Reads until a packet matches.
async fn until(conn: &mut MqttConn, wanted: impl Fn(&Packet) -> bool) -> Packet {
    loop {
        let packet = next(conn).await;
        if wanted(&packet) {
            return packet;
        }
    }
}

fn params<'a>(client_id: &'a str, login: Option<(&'a str, &'a str)>) -> ConnectParams<'a> {
    ConnectParams {
        client_id,
        login,
        keep_alive_s: 30,
        clean_session: true,
        v5: None,
        subscribe: None,
    }
}

#[tokio::test]
async fn a_device_provisions_connects_and_publishes_through_the_lean_transport() {
    let server = InProcess::start("transport").await;
    let target = server.mqtt;

    // Provision by claim, from a spread source address.
    let sources = SourceAddrs::new(LOOPBACK_BLOCK);
    let source = sources.for_device(8);
    assert_eq!(source, "127.0.0.9".parse::<IpAddr>().expect("ip"));
    let (mut claim, _) = MqttConn::connect(
        target,
        Some(source),
        params("prov-1", Some(("claim:factory", "s3cret"))),
    )
    .await
    .expect("claim connects");
    assert_eq!(
        claim.local_addr().expect("addr").ip(),
        source,
        "bound to the chosen source"
    );
    claim
        .subscribe(&[("fleet/v1/provision/SN-T1/+", QoS::AtLeastOnce)])
        .await
        .expect("subscribe");
    until(&mut claim, |p| matches!(p, Packet::SubAck(_))).await;
    claim
        .publish("fleet/v1/provision/SN-T1", b"{}", QoS::AtLeastOnce)
        .await
        .expect("publish");
    let Packet::Publish(reply) = until(&mut claim, |p| matches!(p, Packet::Publish(_))).await else {
        unreachable!()
    };
    claim.ack(reply.pkid).await.expect("ack");
    assert!(reply.topic.ends_with("/accepted"), "{}", reply.topic);
    let body: serde_json::Value = serde_json::from_slice(&reply.payload).expect("JSON");
    let id = body["device_id"].as_str().expect("id").to_owned();
    let token = body["token"].as_str().expect("token").to_owned();
    claim.disconnect().await.expect("disconnect");

    // Connect as the device; publish at QoS 1 and see the PUBACK for that packet id.
    let (mut device, greeting) =
        MqttConn::connect(target, Some(sources.for_device(9)), params(&id, Some((&id, &token))))
            .await
            .expect("device");
    assert!(!greeting.session_present);
    let pkid = device
        .publish(&format!("fleet/v1/d/{id}/telemetry"), b"{\"t\":1}", QoS::AtLeastOnce)
        .await
        .expect("pub");
    let Packet::PubAck(ack) = until(&mut device, |p| matches!(p, Packet::PubAck(_))).await else {
        unreachable!()
    };
    assert_eq!(ack.pkid, pkid);
    device.ping().await.expect("ping");
    until(&mut device, |p| matches!(p, Packet::PingResp)).await;

    // Wrong credentials are a typed refusal.
    let refused = MqttConn::connect(target, None, params(&id, Some((&id, "wrong"))))
        .await
        .err();
    assert_eq!(refused, Some(TransportError::Refused(Reason::NotAuthorized)));

    server.stop().await;
}

#[tokio::test]
async fn the_lean_transport_speaks_to_mosquitto() {
    let broker = Mosquitto::start();
    // The broker needs a moment to listen; retry the connect until it answers. The subscriber
    // subscribes in its CONNECT's write, before the CONNACK, and the connect takes the SUBACK
    // for packet id 1.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let subscribing = ConnectParams {
        subscribe: Some(("fleet/#", QoS::AtLeastOnce)),
        ..params("sub", None)
    };
    let (mut sub, _) = loop {
        match MqttConn::connect(broker.addr, Some("127.0.0.3".parse().expect("ip")), subscribing).await {
            Ok(conn) => break conn,
            Err(TransportError::Io(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("mosquitto refused: {other}"),
        }
    };
    assert_eq!(sub.next_pkid(), 2, "the next packet id follows the subscription's");
    let (mut publisher, _) =
        MqttConn::connect(broker.addr, Some("127.0.0.4".parse().expect("ip")), params("pub", None))
            .await
            .expect("pub");
    publisher
        .publish("fleet/a/telemetry", b"qos0", QoS::AtMostOnce)
        .await
        .expect("publish");
    let pkid = publisher
        .publish("fleet/a/telemetry", b"qos1", QoS::AtLeastOnce)
        .await
        .expect("publish");
    let Packet::PubAck(ack) = until(&mut publisher, |p| matches!(p, Packet::PubAck(_))).await else {
        unreachable!()
    };
    assert_eq!(ack.pkid, pkid);
    let mut payloads = Vec::new();
    while payloads.len() < 2 {
        if let Packet::Publish(message) = next(&mut sub).await {
            if message.qos == QoS::AtLeastOnce {
                sub.ack(message.pkid).await.expect("ack");
            }
            payloads.push(message.payload.to_vec());
        }
    }
    assert_eq!(payloads, vec![b"qos0".to_vec(), b"qos1".to_vec()]);
    publisher.disconnect().await.expect("disconnect");
}
