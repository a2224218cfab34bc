//! Any text given to the device-model parser yields a model or a located error, never a panic.
//! Run: `cargo +nightly fuzz run device_model -- -max_total_time=300`.
#![no_main]

use std::path::Path;

use fleetsim::scenario;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(error) = scenario::parse_model(Path::new("fuzz-model.toml"), text) {
            let _ = error.to_string();
        }
    }
});
