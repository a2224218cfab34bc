//! Any text given to the scenario parser yields a scenario or a located error, never a panic.
//! Run: `cargo +nightly fuzz run scenario -- -max_total_time=300` (from the repository root).
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use fleetsim::scenario::{self, ModelSet};
use libfuzzer_sys::fuzz_target;

/// The shipped device models, parsed once from text compiled into the target.
fn models() -> &'static ModelSet {
    static MODELS: OnceLock<ModelSet> = OnceLock::new();
    MODELS.get_or_init(|| {
        let files = [
            ("temp-sensor", include_str!("../../device-models/temp-sensor.toml")),
            ("smart-meter", include_str!("../../device-models/smart-meter.toml")),
            ("gateway", include_str!("../../device-models/gateway.toml")),
            ("asset-tracker", include_str!("../../device-models/asset-tracker.toml")),
            ("camera", include_str!("../../device-models/camera.toml")),
            ("soil-sensor", include_str!("../../device-models/soil-sensor.toml")),
        ];
        files
            .iter()
            .filter_map(|(name, text)| {
                let file = PathBuf::from(format!("device-models/{name}.toml"));
                scenario::parse_model(&file, text).ok().map(|m| (m.name.clone(), m))
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let result = scenario::parse_scenario(Path::new("fuzz.toml"), text, PathBuf::from("device-models"), models(), &fleetsim::dialect::Registry);
        if let Err(error) = result {
            // Formatting the error walks the same span arithmetic users see.
            let _ = error.to_string();
        }
    }
});
