//! Unit parsing and whole-scenario loading: how fast files become typed values.
//! Run: `cargo bench -p fleetsim --bench units`.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fleetsim::scenario::{self, units};

fn units_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("units");
    group.throughput(Throughput::Elements(1));
    group.bench_function("duration", |b| b.iter(|| units::parse_duration(black_box("1h30m"))));
    group.bench_function("size", |b| b.iter(|| units::parse_size(black_box("512KiB"))));
    group.bench_function("rate", |b| b.iter(|| units::parse_rate(black_box("2000/s"))));
    group.bench_function("percent", |b| b.iter(|| units::parse_percent(black_box("0.01%"))));
    group.finish();
}

fn scenario_parse(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let file = root.join("scenarios/ota-rollback.toml");
    let models_dir: PathBuf = root.join("device-models");
    let text = std::fs::read_to_string(&file).expect("bench input: scenarios/ota-rollback.toml");
    let models = scenario::load_models(&models_dir).expect("bench input: device-models/");
    let mut group = c.benchmark_group("scenario");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("parse_ota_rollback", |b| {
        b.iter(|| {
            scenario::parse_scenario(
                &file,
                black_box(&text),
                models_dir.clone(),
                &models,
                &fleetsim::dialect::Registry,
            )
        })
    });
    group.finish();
}

criterion_group!(benches, units_parse, scenario_parse);
criterion_main!(benches);
