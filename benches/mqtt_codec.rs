//! The MQTT encode/decode path every virtual device and the gateway run per message:
//! encoding a telemetry PUBLISH, and decoding a stream of them from a read buffer; and a
//! device's whole publish path short of the socket (payload, serial, topic, packet, each in
//! a scratch buffer), which must allocate nothing; and the reference gateway's reading of a
//! telemetry payload (the battery and signal it looks for, in JSON and in CBOR) against one
//! it does not read.
//! Run: `cargo bench -p fleetsim --bench mqtt_codec`.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Packet, Publish};

const TOPIC: &str = "fleet/v1/d/d-0123456789abcdef0123/telemetry";

fn publish(payload_bytes: usize) -> Packet {
    let mut publish = Publish::new(TOPIC, QoS::AtLeastOnce, vec![b'x'; payload_bytes]);
    publish.pkid = 7;
    Packet::Publish(publish)
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("mqtt_encode");
    group.throughput(Throughput::Elements(1));
    for size in [64, 1024] {
        let packet = publish(size);
        let mut out = BytesMut::with_capacity(2048);
        group.bench_function(format!("publish_{size}B"), |b| {
            b.iter(|| {
                out.clear();
                black_box(&packet).write(&mut out, 1 << 20).map(black_box)
            })
        });
    }
    group.finish();
}

/// What a broker's device does per report before its one write: the payload from its model,
/// its serial and topic from the template, the packet; scratch buffers taken and given back.
fn device_publish(c: &mut Criterion) {
    use fleetsim::dialect::mqtt::Broker;
    use fleetsim::dialect::{DeviceCx, Shared};
    use fleetsim::model::Reading;
    use fleetsim::scratch;
    use fleetsim::transport::mqtt::encode_publish;

    let model = fleetsim::scenario::parse_model(
        std::path::Path::new("m.toml"),
        "name = \"m\"\nprotocol = \"mqtt\"\nfirmware = \"1.0\"\n[telemetry]\ninterval = \"1s\"\npayload_bytes = 64\n",
    )
    .expect("valid model");
    let broker = Broker {
        addr: "127.0.0.1:1883".parse().expect("addr"),
        cluster: Vec::new(),
        telemetry_topic: fleetsim::dialect::mqtt::DEFAULT_TELEMETRY_TOPIC.into(),
        command_topic: fleetsim::dialect::mqtt::DEFAULT_COMMAND_TOPIC.into(),
        tls: None,
    };
    let shared = Shared::default();
    let mut group = c.benchmark_group("device_publish");
    group.throughput(Throughput::Elements(1));
    let mut seq = 0u64;
    group.bench_function("broker_64B_qos1", |b| {
        b.iter(|| {
            seq += 1;
            // Readings as a run makes them: an uptime to the microsecond and a value with all
            // its digits (whole numbers would format faster than any real report).
            let reading = Reading {
                seq,
                uptime: std::time::Duration::from_micros(seq.wrapping_mul(1_234_567)),
                battery: None,
                volts: None,
                low_battery: false,
                value: 18.0 + (seq % 997) as f64 * (7.0 / 997.0),
                rssi: None,
                firmware: "3.2.0",
                errors: &[],
            };
            let mut payload = scratch::bytes();
            model.telemetry.write_payload(&mut payload, &reading);
            let cx = DeviceCx {
                shared: &shared,
                index: seq,
                model: &model,
                group: "meters",
                source: None,
            };
            let mut topic = scratch::string();
            broker.write_device_telemetry_topic(&cx, &mut topic);
            let mut packet = scratch::bytes();
            let encoded = encode_publish(&mut packet, &topic, &payload, QoS::AtLeastOnce, 7);
            black_box((&packet, encoded.is_ok()));
            scratch::give_bytes(packet);
            scratch::give_string(topic);
            scratch::give_bytes(payload);
        })
    });
    group.finish();
}

fn decode(c: &mut Criterion) {
    const BATCH: usize = 1000;
    let mut group = c.benchmark_group("mqtt_decode");
    group.throughput(Throughput::Elements(BATCH as u64));
    for size in [64, 1024] {
        let mut stream = BytesMut::new();
        for _ in 0..BATCH {
            publish(size).write(&mut stream, 1 << 20).expect("encode");
        }
        let stream = stream.freeze();
        group.bench_function(format!("publish_{size}B_x{BATCH}"), |b| {
            b.iter(|| {
                // The copy into a fresh buffer is part of each iteration (about 1 MB for the
                // 1 KiB case), so the figure slightly overstates the decoding cost.
                let mut buf = BytesMut::from(&stream[..]);
                let mut count = 0;
                while let Ok(packet) = Packet::read(&mut buf, 1 << 20) {
                    black_box(packet);
                    count += 1;
                }
                count
            })
        });
    }
    group.finish();
}

fn gateway_telemetry(c: &mut Criterion) {
    use fleetsim_backend::gateway::payloads::{Payload, decode};
    use fleetsim_backend::gateway::topics::Inbound;
    let mut group = c.benchmark_group("gateway_telemetry");
    group.throughput(Throughput::Elements(1));
    // A temp-sensor's report, and the same readings as a CBOR map (as fleetsim's devices
    // write them); then bytes that are neither, which the gateway only counts.
    let json = br#"{"seq":3,"uptime_s":911.380,"battery":0.873,"volts":4.086,"rssi":-97,"value":77.370,"pad":""}"#;
    let cbor: [u8; 71] = [
        0xa6, 0x63, b's', b'e', b'q', 0x03, 0x68, b'u', b'p', b't', b'i', b'm', b'e', b'_', b's', 0xfb, 0x40, 0x8c,
        0x7b, 0x0a, 0x3d, 0x70, 0xa3, 0xd7, 0x67, b'b', b'a', b't', b't', b'e', b'r', b'y', 0xfa, 0x3f, 0x5f, 0x7c,
        0xee, 0x65, b'v', b'o', b'l', b't', b's', 0xfa, 0x40, 0x82, 0xc0, 0x83, 0x64, b'r', b's', b's', b'i', 0x38,
        0x60, 0x65, b'v', b'a', b'l', b'u', b'e', 0xfb, 0x40, 0x53, 0x57, 0xae, 0x14, 0x7a, 0xe1, 0x48, 0x40,
    ];
    let opaque = [b'x'; 64];
    for (name, payload) in [("json", &json[..]), ("cbor", &cbor[..])] {
        let read = decode(&Inbound::Telemetry, payload);
        assert!(
            matches!(&read, Ok(Payload::Telemetry(Some(r))) if r.battery.is_some() && r.rssi == Some(-97)),
            "{name}: {read:?}"
        );
    }
    for (name, payload) in [("json", &json[..]), ("cbor", &cbor[..]), ("opaque", &opaque[..])] {
        group.bench_function(name, |b| b.iter(|| decode(&Inbound::Telemetry, black_box(payload))));
    }
    group.finish();
}

criterion_group!(benches, encode, device_publish, decode, gateway_telemetry);
criterion_main!(benches);
