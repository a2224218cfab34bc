//! `fleetsim models [DIR]`: a table of the device models in a folder and the figures that
//! follow from their parameters (battery life, time online), so a user can sanity-check a
//! model before running it.

use std::io::Write;
use std::path::Path;

use crate::scenario::units::{DisplayDuration, format_percent, format_size};
use crate::scenario::{self, DeviceModel};

use super::{CliError, Exit, write_table};

/// Prints the models of `dir`.
pub fn models(dir: &Path, out: &mut dyn Write) -> Result<Exit, CliError> {
    let models = scenario::load_models(dir)?;
    let header = [
        "model",
        "protocol",
        "firmware",
        "report every",
        "payload",
        "power",
        "battery life",
        "online",
        "ota risk",
    ];
    let rows: Vec<Vec<String>> = models.values().map(row).collect();
    write_table(out, &header, &rows)?;
    writeln!(out, "{} models in {}", rows.len(), dir.display())?;
    Ok(Exit::Ok)
}

fn row(model: &DeviceModel) -> Vec<String> {
    let interval = model.telemetry.interval;
    let (power, life) = match &model.battery {
        Some(b) => (
            format!("battery {}mAh", b.capacity_mah),
            days(b.expected_lifetime(interval)),
        ),
        None => ("mains".to_owned(), "-".to_owned()),
    };
    let ota = match &model.ota {
        Some(o) => format!(
            "boot_fail {}, brick {}",
            format_percent(o.boot_fail),
            format_percent(o.brick)
        ),
        None => "no ota".to_owned(),
    };
    vec![
        model.name.clone(),
        model.protocol.name().to_owned(),
        model.firmware.clone(),
        DisplayDuration(interval).to_string(),
        format_size(u64::from(model.telemetry.payload_bytes)),
        power,
        life,
        format_percent(round_to(model.link.online_fraction(), 5)),
        ota,
    ]
}

/// A lifetime in days (or years, past two of them), as people plan batteries.
fn days(lifetime: std::time::Duration) -> String {
    let days = lifetime.as_secs_f64() / 86_400.0;
    if days >= 730.0 {
        format!("{:.1} years", days / 365.0)
    } else {
        format!("{days:.1} days")
    }
}

fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}
