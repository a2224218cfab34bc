//! No bytes from a device make the gateway's parsers panic: seeded mutations of real packets
//! (CONNECT, SUBSCRIBE, and a PUBLISH of every device message kind), in MQTT 3.1.1's layout and
//! in MQTT 5's (with properties), go through the codec, the topic rules and the payload checks,
//! as in a connection. The deterministic, every-build cousin of
//! `fuzz/fuzz_targets/device_packet.rs`.

use bytes::BytesMut;
use fleetsim_backend::gateway::packet_io::read_v5;
use fleetsim_backend::gateway::{payloads, topics};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Connect, Packet, Publish, Subscribe};

#[path = "common/bytes64.rs"]
mod bytes64;
use bytes64::Bytes64;

fn encoded(packets: &[Packet]) -> Vec<Vec<u8>> {
    packets
        .iter()
        .map(|p| {
            let mut buf = BytesMut::new();
            p.write(&mut buf, usize::MAX).expect("encode");
            buf.to_vec()
        })
        .collect()
}

fn seeds() -> Vec<Vec<u8>> {
    let id = "d-0123456789abcdef0123";
    let mut connect = Connect::new(id);
    connect.set_login(id, "token");
    let publish = |topic: String, body: &str| {
        let mut publish = Publish::new(topic, QoS::AtLeastOnce, body.as_bytes().to_vec());
        publish.pkid = 1;
        Packet::Publish(publish)
    };
    encoded(&[
        Packet::Connect(connect),
        Packet::Subscribe(Subscribe {
            pkid: 1,
            ..Subscribe::new(format!("fleet/v1/d/{id}/#"), QoS::AtLeastOnce)
        }),
        publish(format!("fleet/v1/d/{id}/telemetry"), r#"{"t": 21.5}"#),
        publish(
            format!("fleet/v1/d/{id}/status"),
            r#"{"battery": 0.9, "firmware": "1.4.2", "uptime_s": 99, "rssi_dbm": -70}"#,
        ),
        publish(format!("fleet/v1/d/{id}/config/reported"), r#"{"version": 3}"#),
        publish(
            format!("fleet/v1/d/{id}/cmd/c-1/result"),
            r#"{"status": "ok", "output": ["a", "b"]}"#,
        ),
        publish(
            "fleet/v1/provision/SN-1".to_owned(),
            r#"{"model": "m", "firmware": "1.0"}"#,
        ),
        Packet::PingReq,
    ])
}

/// Feeds bytes through everything a connection does with them.
fn parse_all(bytes: &[u8]) -> usize {
    let principals = [
        topics::Principal::Device("d-0123456789abcdef0123".to_owned()),
        topics::Principal::Claim("factory".to_owned()),
    ];
    let mut buf = BytesMut::from(bytes);
    let mut decoded = 0;
    let mut v5 = BytesMut::from(bytes);
    let read = std::iter::from_fn(|| Packet::read(&mut buf, 256 * 1024).ok()).chain(std::iter::from_fn(|| {
        read_v5(&mut v5, 256 * 1024).ok().map(|read| read.packet)
    }));
    for packet in read {
        if let Packet::Publish(publish) = packet {
            for principal in &principals {
                if let Ok(inbound) = topics::inbound(principal, &publish.topic)
                    && payloads::decode(&inbound, &publish.payload).is_ok()
                {
                    decoded += 1;
                }
            }
        }
    }
    decoded
}

#[test]
fn unmutated_seeds_parse() {
    let all: Vec<u8> = seeds().concat();
    // telemetry, status, config, command result (as the device) and the provisioning request
    // (as the claim) each decode once.
    assert_eq!(parse_all(&all), 5);
}

/// The same packets in MQTT 5's layout, with properties: a CONNECT with a session expiry, a
/// Receive Maximum and a user property, a SUBSCRIBE, a PUBLISH with a message expiry and a user
/// property.
fn seeds_v5() -> Vec<Vec<u8>> {
    use rumqttc::v5::mqttbytes::QoS as QoS5;
    use rumqttc::v5::mqttbytes::v5::{
        Connect, ConnectProperties, Filter, Login, Packet as Packet5, Publish, PublishProperties, Subscribe,
    };
    let id = "d-0123456789abcdef0123";
    let mut properties = ConnectProperties::new();
    properties.session_expiry_interval = Some(3600);
    properties.receive_maximum = Some(8);
    properties.user_properties = vec![("site".to_owned(), "lab".to_owned())];
    let connect = Connect {
        keep_alive: 30,
        client_id: id.to_owned(),
        clean_start: false,
        properties: Some(properties),
    };
    let mut publish = Publish::new(
        format!("fleet/v1/d/{id}/telemetry"),
        QoS5::AtLeastOnce,
        r#"{"t": 21.5}"#,
        None,
    );
    publish.pkid = 1;
    publish.properties = Some(PublishProperties {
        message_expiry_interval: Some(600),
        user_properties: vec![("site".to_owned(), "lab".to_owned())],
        ..PublishProperties::default()
    });
    [
        Packet5::Connect(connect, None, Some(Login::new(id, "token"))),
        Packet5::Subscribe(Subscribe::new(
            Filter::new(format!("fleet/v1/d/{id}/#"), QoS5::AtLeastOnce),
            None,
        )),
        Packet5::Publish(publish),
    ]
    .iter()
    .map(|p| {
        let mut buf = BytesMut::new();
        p.write(&mut buf, None).expect("encode");
        buf.to_vec()
    })
    .collect()
}

#[test]
fn unmutated_mqtt5_seeds_parse() {
    let all: Vec<u8> = seeds_v5().concat();
    let mut buf = BytesMut::from(&all[..]);
    let connect = read_v5(&mut buf, 256 * 1024).expect("CONNECT");
    assert_eq!(connect.receive_max, Some(8));
    let Packet::Connect(connect) = connect.packet else {
        panic!("a CONNECT")
    };
    assert!(!connect.clean_session, "a session that outlives the connection");
    // The telemetry decodes, as the device.
    assert_eq!(parse_all(&all), 1);
}

#[test]
fn mutated_packets_never_panic() {
    let mut rng = Bytes64(0x5EED_F1EE_75B1_u64);
    let seeds = seeds();
    for _ in 0..20_000 {
        let mut bytes = seeds[rng.below(seeds.len())].clone();
        rng.mutate(&mut bytes);
        let _ = parse_all(&bytes);
    }
}

#[test]
fn mutated_mqtt5_packets_never_panic() {
    let mut rng = Bytes64(0x5EED_0005_u64);
    let seeds = seeds_v5();
    for _ in 0..20_000 {
        let mut bytes = seeds[rng.below(seeds.len())].clone();
        rng.mutate(&mut bytes);
        let _ = parse_all(&bytes);
    }
}
