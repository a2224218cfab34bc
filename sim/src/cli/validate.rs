//! `fleetsim validate FILE...`: checks scenario and device-model files (folders expand to
//! their `*.toml`), reporting every bad file, one line each, and exits 2 if any is bad.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::scenario::{self, FileKind, LoadError, ModelSet};

use super::{CliError, Exit};

/// Checks `paths`; `ok` lines go to `out`, errors to `err`.
pub fn validate(
    paths: &[PathBuf],
    models_override: Option<&Path>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Exit, CliError> {
    let mut files = Vec::new();
    for path in paths {
        match expand(path) {
            Ok(found) => files.extend(found),
            Err(e) => {
                writeln!(err, "error: {}: cannot read: {e}", path.display())?;
                return Ok(Exit::BadInput);
            }
        }
    }
    // Model folders are loaded once however many scenarios share them.
    let mut model_sets: BTreeMap<PathBuf, ModelSet> = BTreeMap::new();
    let mut bad = 0usize;
    for file in &files {
        match check_file(file, models_override, &mut model_sets) {
            Ok(summary) => writeln!(out, "ok  {}: {summary}", file.display())?,
            Err(e) => {
                bad += 1;
                writeln!(err, "error: {e}")?;
            }
        }
    }
    if bad > 0 {
        writeln!(err, "{bad} of {} files invalid", files.len())?;
        return Ok(Exit::BadInput);
    }
    Ok(Exit::Ok)
}

/// A file as itself; a folder as its `*.toml` files in name order.
fn expand(path: &Path) -> io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let file = entry?.path();
        if file.extension().is_some_and(|e| e == "toml") {
            files.push(file);
        }
    }
    files.sort();
    Ok(files)
}

fn check_file(
    file: &Path,
    models_override: Option<&Path>,
    model_sets: &mut BTreeMap<PathBuf, ModelSet>,
) -> Result<String, LoadError> {
    let text = scenario::read(file)?;
    match scenario::detect_kind(file, &text)? {
        FileKind::DeviceModel => {
            let model = scenario::parse_model(file, &text)?;
            let power = if model.battery.is_some() { "battery" } else { "mains" };
            let ota = if model.ota.is_some() { ", takes OTA" } else { "" };
            Ok(format!(
                "device model \"{}\" ({}, {power}{ota})",
                model.name,
                model.protocol.name()
            ))
        }
        FileKind::Scenario => {
            let dir = scenario::models_dir_for(file, &text, models_override)?;
            if !model_sets.contains_key(&dir) {
                let models = scenario::load_models(&dir)?;
                model_sets.insert(dir.clone(), models);
            }
            let models = model_sets.get(&dir).map_or_else(ModelSet::new, Clone::clone);
            let s = scenario::parse_scenario(file, &text, dir, &models, &crate::dialect::Registry)?;
            Ok(format!(
                "scenario \"{}\", {} devices of {}, {}, {}",
                s.name,
                s.fleet.devices,
                count(s.fleet.mix.len(), "model"),
                count(s.phases.len(), "phase"),
                count(s.gates.len(), "gate")
            ))
        }
    }
}

/// "1 phase", "3 phases".
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
