//! Planning: devices planned per second (serial, model pick, first wake-up, each from the
//! device's own ChaCha8 streams). Run: `cargo bench -p fleetsim --bench plan`.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fleetsim::model::{StreamId, device_rng, draw};
use fleetsim::plan::{Plan, Shard};
use fleetsim::scenario;

const DEVICES: u64 = 10_000;

fn plan_devices(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut group = c.benchmark_group("plan");
    for name in ["quickstart", "provisioning-storm"] {
        let loaded = scenario::load_scenario(
            &root.join(format!("scenarios/{name}.toml")),
            None,
            &fleetsim::dialect::Registry,
        )
        .expect("bench input: a scenario of scenarios/");
        let plan = Plan::new(&loaded);
        // A fleet smaller than DEVICES plans only its own devices.
        let devices = DEVICES.min(plan.devices());
        group.throughput(Throughput::Elements(devices));
        group.bench_function(name, |b| {
            // black_box every device, or the optimizer drops work whose result is unused.
            b.iter(|| plan.iter(0..black_box(devices), Shard::WHOLE).map(black_box).count())
        });
    }
    group.finish();
}

/// The cost under every per-device draw: keying a ChaCha8 stream and taking one word.
fn device_stream(c: &mut Criterion) {
    let mut group = c.benchmark_group("device_rng");
    group.throughput(Throughput::Elements(1));
    let mut index = 0u64;
    group.bench_function("key_and_first_draw", |b| {
        b.iter(|| {
            index += 1;
            draw::unit(&mut device_rng(42, black_box(index), StreamId::ARRIVAL))
        })
    });
    group.finish();
}

criterion_group!(benches, plan_devices, device_stream);
criterion_main!(benches);
