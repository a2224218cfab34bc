//! Planning: devices planned per second (serial, model pick, first wake-up, each from the
//! device's own ChaCha8 streams). Run: `cargo bench -p fleetsim --bench plan`.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fleetsim::plan::{Plan, Shard};
use fleetsim::scenario;

const DEVICES: u64 = 10_000;

fn plan_devices(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut group = c.benchmark_group("plan");
    group.throughput(Throughput::Elements(DEVICES));
    for name in ["quickstart", "provisioning-storm"] {
        let loaded = scenario::load_scenario(&root.join(format!("scenarios/{name}.toml")), None)
            .expect("bench input: a scenario of scenarios/");
        let plan = Plan::new(&loaded);
        group.bench_function(name, |b| {
            b.iter(|| {
                plan.iter(0..black_box(DEVICES), Shard::WHOLE)
                    .map(|d| d.first_wakeup)
                    .max()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, plan_devices);
criterion_main!(benches);
