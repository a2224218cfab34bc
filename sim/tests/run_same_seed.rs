//! Same scenario, same seed, same run: a small quickstart-shaped scenario against the
//! reference backend in process (a config push, a command, an OTA campaign with a bad image
//! that halts, an outage, decommissioning) runs twice, and the two summaries agree exactly on
//! every count and on each campaign, wave by wave. The in-process backend takes its key, and
//! so its device ids and campaign waves, from the seed; before it drew a fresh key each run
//! and the same scenario halted its campaign after different waves.

use serde_json::Value;

#[path = "support/binary.rs"]
mod binary;
use binary::{counter, repo, run_passing, scratch};

fn run(dir: &std::path::Path, name: &str) -> Value {
    run_passing(
        dir,
        name,
        &format!(
            r#"[scenario]
name = "{name}"
seed = 42
duration = "40s"
time_scale = 60
models = "{}"

[fleet]
devices = 300
arrival = {{ ramp = "5s" }}
mix = [
  {{ model = "temp-sensor", share = 0.7, group = "sensors" }},
  {{ model = "smart-meter", share = 0.3, group = "meters" }},
]

[[phase]]
at = "8s"
action = "config"
group = "meters"
set = {{ tariff = "night" }}

[[phase]]
at = "10s"
action = "command"
group = "meters"
command = "logs"

[[phase]]
at = "12s"
action = "ota"
group = "sensors"
firmware = {{ version = "2.0.0", size = "64KiB", boot_fail = "30%" }}
rollout = {{ waves = ["10%", "40%", "100%"], halt_above = "5%", soak = "3s" }}

[[phase]]
at = "28s"
action = "outage"
share = "30%"
duration = "3s"

[[phase]]
at = "35s"
action = "decommission"
share = "2%"
"#,
            repo().join("device-models").display()
        ),
    )
}

#[test]
fn the_same_scenario_and_seed_give_the_same_counts_and_campaign_outcomes() {
    let dir = scratch("run-same-seed");
    std::fs::create_dir_all(&dir).expect("dir");
    // Side by side: each run has its own report folder and its own backend.
    let (first, second) = std::thread::scope(|scope| {
        let first = scope.spawn(|| run(&dir, "first"));
        let second = run(&dir, "second");
        (first.join().expect("the first run"), second)
    });
    // Every count but the three that time the harness rather than count what devices did (how
    // often it fell behind its schedule and why, the milliseconds downloads took) and the reports
    // published: the run ends at a wall-clock instant, and a report due within a millisecond
    // of it may go out in one run and not in the other (one in some 59,650 in two quickstarts).
    let counters = |s: &Value| {
        let mut counters = s["metrics"]["counters"].clone();
        if let Some(map) = counters.as_object_mut() {
            for timed in ["late_sends", "late_sends.woken_late", "ota.download_ms", "published"] {
                map.remove(timed);
            }
        }
        counters
    };
    assert_eq!(counters(&first), counters(&second), "every count");
    let published = |s: &Value| counter(s, "published");
    assert!(published(&first) > 1_000, "{first}");
    assert!(
        published(&first).abs_diff(published(&second)) <= 2,
        "reports published: {} and {}",
        published(&first),
        published(&second)
    );
    let campaigns = first["campaigns"].as_array().expect("campaigns");
    assert_eq!(campaigns.len(), 1, "{first}");
    // The halt's reason quotes the wave's failure share at the check that halted it, a
    // wall-clock tick (every 200 ms): which wave halted is the run's, the share at that
    // instant is timing (the waves' final counts are compared whole).
    let outcomes = |s: &Value| {
        let mut campaigns = s["campaigns"].clone();
        for campaign in campaigns.as_array_mut().into_iter().flatten() {
            if let Some(reason) = campaign["end_reason"].as_str() {
                let which_wave = reason.split(':').next().unwrap_or(reason).to_owned();
                campaign["end_reason"] = Value::String(which_wave);
            }
        }
        campaigns
    };
    assert_eq!(outcomes(&first), outcomes(&second), "each campaign, wave by wave");
    for figure in ["ota.exposed", "devices.lost"] {
        assert_eq!(first["metrics"][figure], second["metrics"][figure], "{figure}");
    }
}
