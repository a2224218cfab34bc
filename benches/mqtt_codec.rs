//! The MQTT encode/decode path every virtual device and the gateway run per message:
//! encoding a telemetry PUBLISH, and decoding a stream of them from a read buffer.
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

criterion_group!(benches, encode, decode);
criterion_main!(benches);
