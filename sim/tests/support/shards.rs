//! One small fleet run whole and as shard processes: the scenario both use, and the check that
//! the shards' merged report counts what the whole run counts, device for device.

#![allow(dead_code)] // Each test file uses a different part.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::binary::repo;

/// The fleet size of [`scenario`].
pub const DEVICES: u64 = 25;

/// Writes `root/shards.toml`: 25 gateways against the MQTT broker at `broker`, for 3 s.
pub fn scenario(root: &Path, broker: SocketAddr) -> PathBuf {
    std::fs::create_dir_all(root).expect("dir");
    let file = root.join("shards.toml");
    std::fs::write(
        &file,
        format!(
            "[scenario]\nname = \"shards\"\nseed = 4\nduration = \"3s\"\ntime_scale = 600\nmodels = \"{}\"\n\
             [backend]\nkind = \"mqtt\"\nurl = \"mqtt://{broker}\"\n\
             [fleet]\ndevices = {DEVICES}\narrival = {{ ramp = \"1s\" }}\n\
             mix = [ {{ model = \"gateway\", share = 1.0, group = \"gateways\" }} ]\n",
            repo().join("device-models").display(),
        ),
    )
    .expect("scenario");
    file
}

/// Asserts that `merged` (the shards' summaries merged) counts what `whole` (one process)
/// counted.
pub fn assert_counts_match(merged: &Value, whole: &Value) {
    assert_eq!(merged["devices"], whole["devices"]);
    for counter in ["provisioned", "connected"] {
        assert_eq!(
            merged["metrics"]["counters"][counter], whole["metrics"]["counters"][counter],
            "{counter}"
        );
    }
    assert_eq!(
        merged["metrics"]["gauges"], whole["metrics"]["gauges"],
        "devices per state at the end"
    );
    let published = |s: &Value| s["metrics"]["counters"]["published"].as_u64().unwrap_or(0);
    // Reports follow each device's simulated schedule; only the last one before the end can
    // fall either side of it.
    assert!(
        published(merged).abs_diff(published(whole)) <= DEVICES,
        "{} vs {}",
        published(merged),
        published(whole)
    );
}
