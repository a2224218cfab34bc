//! One step of the device core: an online device wakes for its report, publishes, drains its
//! battery and draws its next interval (re-keying its ChaCha8 telemetry stream at its saved
//! position). Run: `cargo bench -p fleetsim --bench device_step`.

use std::hint::black_box;
use std::path::Path;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use fleetsim::device::{Action, Ctx, Device, Event, SimTime};
use fleetsim::scenario;

fn step(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let models = scenario::load_models(&root.join("device-models")).expect("bench input: device-models/");
    let model = models.get("temp-sensor").expect("bench input: temp-sensor model");
    let ctx = Ctx::new(42, model);
    let mut device = Device::new(7, ctx, SimTime(0));
    let now = SimTime(0);
    let mut wake = SimTime(0);
    for event in [Event::Arrive, Event::Provisioned, Event::Connected] {
        for action in device.on_event(now, event, ctx).iter() {
            if let Action::WakeAt(at) = action {
                wake = at;
            }
        }
    }
    let mut group = c.benchmark_group("device");
    group.throughput(Throughput::Elements(1));
    // Every iteration steps a fresh copy of the same online device at its report time, so
    // each one does the full report (a device stepped on and on would die of old battery and
    // then measure nothing).
    group.bench_function("report_step", |b| {
        b.iter_batched(
            || device.clone(),
            |mut device| device.on_event(black_box(wake), Event::Wake, ctx),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, step);
criterion_main!(benches);
