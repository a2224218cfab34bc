//! No bytes from a device make the gateway's parsers panic: seeded mutations of real packets
//! (CONNECT, SUBSCRIBE, and a PUBLISH of every device message kind) go through the codec, the
//! topic rules and the payload checks, as in a connection. The deterministic, every-build
//! cousin of `fuzz/fuzz_targets/device_packet.rs`.

use bytes::BytesMut;
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
    while let Ok(packet) = Packet::read(&mut buf, 256 * 1024) {
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
