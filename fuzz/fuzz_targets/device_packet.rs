//! Any bytes a device sends the gateway are framed by the MQTT codec (3.1.1's, and MQTT 5's as
//! an MQTT 5 connection reads them), and every PUBLISH is classified by topic and its payload
//! checked, exactly as a connection does; none of it may panic. Run: `cargo +nightly fuzz run device_packet -- -max_total_time=300`.
#![no_main]

use bytes::BytesMut;
use fleetsim_backend::gateway::packet_io::read_v5;
use fleetsim_backend::gateway::{payloads, topics};
use libfuzzer_sys::fuzz_target;
use rumqttc::mqttbytes::v4::Packet;

/// The largest packet the gateway accepts by default.
const MAX_PACKET: usize = 256 * 1024;

fuzz_target!(|data: &[u8]| {
    let principals = [
        topics::Principal::Device("d-0123456789abcdef0123".to_owned()),
        topics::Principal::Claim("factory".to_owned()),
    ];
    let mut buf = BytesMut::from(data);
    let mut v5 = BytesMut::from(data);
    let packets = std::iter::from_fn(|| Packet::read(&mut buf, MAX_PACKET).ok())
        .chain(std::iter::from_fn(|| read_v5(&mut v5, MAX_PACKET).ok().map(|read| read.packet)));
    for packet in packets {
        if let Packet::Publish(publish) = packet {
            for principal in &principals {
                if let Ok(inbound) = topics::inbound(principal, &publish.topic) {
                    let _ = payloads::decode(&inbound, &publish.payload);
                }
            }
        } else if let Packet::Subscribe(subscribe) = packet {
            for principal in &principals {
                for filter in &subscribe.filters {
                    let _ = topics::may_subscribe(principal, &filter.path);
                }
            }
        }
    }
});
