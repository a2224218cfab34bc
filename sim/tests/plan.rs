//! The plan against its scenario: model shares, arrival windows, serial uniqueness, and
//! independence from the order and company in which devices are computed.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use fleetsim::dialect::Registry;
use fleetsim::plan::{Plan, Shard};
use fleetsim::scenario::{self, Loaded};

fn load(name: &str) -> Loaded {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../scenarios/{name}.toml"));
    scenario::load_scenario(&file, None, &Registry).expect("shipped scenario loads")
}

#[test]
fn model_shares_match_the_mix() {
    let loaded = load("provisioning-storm");
    let plan = Plan::new(&loaded);
    let n = plan.devices();
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for device in plan.iter(0..n, Shard::WHOLE) {
        *counts.entry(plan.group(&device)).or_default() += 1;
    }
    for entry in &loaded.scenario.fleet.mix {
        let seen = counts.get(entry.group.as_str()).copied().unwrap_or(0) as f64;
        let expected = entry.share * n as f64;
        // Binomial standard error; five of them is a one-in-a-million miss for a fixed seed
        // that passes once, so a failure means the draw changed, not bad luck.
        let sigma = (n as f64 * entry.share * (1.0 - entry.share)).sqrt();
        assert!(
            (seen - expected).abs() < 5.0 * sigma,
            "{}: {seen} vs {expected}",
            entry.group
        );
    }
}

#[test]
fn arrivals_fall_inside_the_window() {
    for name in ["quickstart", "provisioning-storm", "ci-gate"] {
        let loaded = load(name);
        let plan = Plan::new(&loaded);
        let fleet = &loaded.scenario.fleet;
        let window = fleet.arrival.window(fleet.devices);
        let wakeups: Vec<Duration> = plan
            .iter(0..fleet.devices, Shard::WHOLE)
            .map(|d| d.first_wakeup)
            .collect();
        assert!(wakeups.iter().all(|w| *w < window), "{name}");
        let mean = wakeups.iter().map(Duration::as_secs_f64).sum::<f64>() / wakeups.len() as f64;
        // Even spacing and uniform (Poisson) arrivals both average half the window.
        let tolerance = 5.0 * window.as_secs_f64() / (12.0 * wakeups.len() as f64).sqrt();
        assert!(
            (mean - window.as_secs_f64() / 2.0).abs() < tolerance,
            "{name}: mean {mean}"
        );
    }
}

#[test]
fn serials_are_unique_and_depend_on_the_seed() {
    let loaded = load("ota-rollback");
    let plan = Plan::new(&loaded);
    let serials: HashSet<String> = plan.iter(0..plan.devices(), Shard::WHOLE).map(|d| d.serial).collect();
    assert_eq!(serials.len() as u64, plan.devices());

    let mut reseeded = loaded.clone();
    reseeded.scenario.seed += 1;
    let other = Plan::new(&reseeded);
    let same = (0..1000)
        .filter(|i| plan.device(*i).serial == other.device(*i).serial)
        .count();
    assert_eq!(same, 0, "a new seed gives new serials");
}

#[test]
fn a_device_is_the_same_whichever_way_it_is_computed() {
    let loaded = load("quickstart");
    let plan = Plan::new(&loaded);
    let forward: Vec<_> = plan.iter(0..500, Shard::WHOLE).collect();
    let backward: Vec<_> = (0..500).rev().map(|i| plan.device(i)).collect();
    assert!(forward.iter().eq(backward.iter().rev()));
    let sharded: Vec<_> = plan.iter(0..500, Shard { index: 2, count: 5 }).collect();
    assert!(sharded.iter().all(|d| forward[d.index as usize] == *d));
}
