//! `fleetsim plan FILE`: prints the planned devices (index, serial, model, group, first
//! wake-up), optionally one range or one shard of them, as a table or JSON lines.

use std::io::Write;
use std::ops::Range;

use crate::plan::{Plan, Shard};
use crate::scenario::Loaded;

use super::{CliError, Exit};

/// One device as a JSON line, fields in table order.
#[derive(serde::Serialize)]
struct JsonRow<'a> {
    index: u64,
    serial: &'a str,
    model: &'a str,
    group: &'a str,
    first_wakeup_us: u64,
}

/// How `plan` prints devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanFormat {
    /// Aligned columns with a `#` header line.
    Table,
    /// One JSON object per device.
    Jsonl,
}

/// Prints the devices of `range` owned by `shard`.
pub fn plan(
    loaded: &Loaded,
    range: Range<u64>,
    shard: Shard,
    format: PlanFormat,
    out: &mut dyn Write,
) -> Result<Exit, CliError> {
    let plan = Plan::new(loaded);
    let s = plan.scenario();
    let end = range.end.min(plan.devices());
    match format {
        PlanFormat::Jsonl => {
            for device in plan.iter(range, shard) {
                let row = JsonRow {
                    index: device.index,
                    serial: &device.serial,
                    model: &plan.model(&device).name,
                    group: plan.group(&device),
                    first_wakeup_us: device.first_wakeup.as_micros() as u64,
                };
                // Serializing a struct of strings and integers cannot fail.
                writeln!(out, "{}", serde_json::to_string(&row).unwrap_or_default())?;
            }
        }
        PlanFormat::Table => {
            writeln!(
                out,
                "# scenario {} (seed {}): {} devices; devices {}..{end}, shard {shard}",
                s.name, s.seed, s.fleet.devices, range.start
            )?;
            let index_width = plan.devices().saturating_sub(1).to_string().len().max("index".len());
            let mix_models = || s.fleet.mix.iter().filter_map(|m| loaded.models.get(&m.model));
            let model_width = mix_models().map(|m| m.name.len()).max().unwrap_or(0).max("model".len());
            let group_width = s
                .fleet
                .mix
                .iter()
                .map(|m| m.group.len())
                .max()
                .unwrap_or(0)
                .max("group".len());
            // A serial is the prefix, a dash and 16 hex digits.
            let serial_width = mix_models().map(|m| m.serial_prefix.len() + 17).max().unwrap_or(0);
            writeln!(
                out,
                "{:<index_width$}  {:<serial_width$}  {:<model_width$}  {:<group_width$}  first_wakeup",
                "index", "serial", "model", "group"
            )?;
            for device in plan.iter(range, shard) {
                let wakeup = device.first_wakeup;
                writeln!(
                    out,
                    "{:<index_width$}  {:<serial_width$}  {:<model_width$}  {:<group_width$}  {}.{:03}s",
                    device.index,
                    device.serial,
                    plan.model(&device).name,
                    plan.group(&device),
                    wakeup.as_secs(),
                    wakeup.subsec_millis(),
                )?;
            }
        }
    }
    Ok(Exit::Ok)
}
