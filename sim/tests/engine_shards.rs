//! The same scenario and seed give every device the same life whatever the shard count: one
//! shard, then two shards on two threads, against the same real backend, and each device's
//! sequence of lifecycle states is compared (not its timings). A mass outage in the middle
//! cuts off the same devices either way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fleetsim::device::State;
use fleetsim::dialect::Registry;
use fleetsim::dialect::embedded::Embedded;
use fleetsim::engine::shard::{ShardOptions, run_shard};
use fleetsim::metrics::recorder::Counter;
use fleetsim::plan::{Plan, Shard};
use fleetsim::scenario::{self, Loaded, ModelSet};
use tokio_util::sync::CancellationToken;

#[path = "support/backend.rs"]
mod backend;
use backend::InProcess;

/// A device whose link drops every minute or so (simulated), so lives have several chapters.
const BLINKY: &str = r#"
name = "blinky"
protocol = "mqtt"
firmware = "1.0"
[telemetry]
interval = "20s"
payload_bytes = 32
[link]
mean_online = "60s"
mean_offline = "10s"
reconnect = { initial = "1s", max = "5s", multiplier = 2.0 }
"#;

const SCENARIO: &str = r#"
[scenario]
name = "shards"
seed = 2026
duration = "4s"
time_scale = 60
[fleet]
devices = 30
arrival = { ramp = "1s" }
mix = [ { model = "blinky", share = 1.0, group = "fleet" } ]
[[phase]]
at = "2s"
action = "outage"
share = "50%"
duration = "500ms"
"#;

fn load() -> Loaded {
    let model = scenario::parse_model(Path::new("blinky.toml"), BLINKY).expect("valid model");
    let models: ModelSet = [(model.name.clone(), model)].into_iter().collect();
    let scenario = scenario::parse_scenario(
        Path::new("shards.toml"),
        SCENARIO,
        PathBuf::from("."),
        &models,
        &Registry,
    )
    .expect("valid scenario");
    Loaded { scenario, models }
}

/// Runs the fleet as `count` shards on their own threads; returns each device's states.
fn lives(dialect: &Embedded, count: u32) -> (BTreeMap<u64, Vec<State>>, u64) {
    let loaded = load();
    let plan = Plan::new(&loaded);
    let start = tokio::time::Instant::now();
    // Transitions in the last second may or may not make it before the end: leave them out.
    let cutoff = fleetsim::device::SimTime((3 * 60) * 1_000_000);
    let mut lives: BTreeMap<u64, Vec<State>> = BTreeMap::new();
    let mut cut_off = 0;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .map(|index| {
                let (plan, dialect) = (&plan, dialect.clone());
                scope.spawn(move || {
                    let options = ShardOptions {
                        record_transitions: true,
                        ..ShardOptions::default()
                    };
                    run_shard(
                        plan,
                        Shard { index, count },
                        dialect,
                        start,
                        CancellationToken::new(),
                        options,
                    )
                })
            })
            .collect();
        for handle in handles {
            let result = handle.join().expect("shard thread").expect("shard runs");
            cut_off += result.snapshot.count(Counter::OutageAffected);
            for (device, at, state) in result.transitions {
                if at < cutoff {
                    lives.entry(device).or_default().push(state);
                }
            }
        }
    });
    (lives, cut_off)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shard_or_two_every_device_lives_the_same_life() {
    let server = InProcess::start("shards").await;
    let dialect = server.dialect();

    let whole = {
        let dialect = dialect.clone();
        tokio::task::spawn_blocking(move || lives(&dialect, 1))
            .await
            .expect("run")
    };
    let halves = tokio::task::spawn_blocking(move || lives(&dialect, 2))
        .await
        .expect("run");
    let ((whole, cut_whole), (halves, cut_halves)) = (whole, halves);
    assert!(cut_whole > 5, "the outage cut devices off: {cut_whole}");
    assert_eq!(cut_whole, cut_halves);
    assert_eq!(whole.len(), 30, "every device lived");
    assert!(
        whole.values().all(|life| life.contains(&State::Online)),
        "every device provisioned and connected: {whole:?}"
    );
    let chapters: usize = whole.values().map(Vec::len).sum();
    assert!(
        chapters > 30 * 5,
        "lives have link drops and reconnects: {chapters} transitions"
    );
    assert_eq!(whole, halves);

    server.stop().await;
}
