//! Scenario and device-model files: their formats ([`file`]), units ([`units`]), and the
//! checks that turn them into a typed [`Scenario`] and [`DeviceModel`]s, with errors that
//! name file, line, column, key and what was expected ([`error`]).
//!
//! Loading is two-phase: text -> raw structs that mirror the file ([`decode`]) -> checked,
//! typed values ([`validate`], [`device_model`]). Nothing past this module sees a string
//! where a duration, size, rate or fraction belongs.

mod check_phase;
pub mod decode;
pub mod device_model;
pub mod error;
pub mod file;
pub mod gate;
pub mod schema;
pub mod typed;
pub mod units;
pub mod validate;
pub mod values;

use std::fs;
use std::path::{Path, PathBuf};

pub use device_model::{DeviceModel, parse_model};
pub use error::{FileError, KeyPath, LoadError};
pub use gate::{Comparison, Gate, Threshold};
pub use typed::{Action, AddrBlock, Arrival, Backend, Campaign, Fleet, MixEntry, ModelSet, Phase, Scenario};
pub use validate::{BackendKeys, KeyError};

use decode::Source;

/// The models folder of a scenario that does not name one, relative to the scenario file.
pub const DEFAULT_MODELS_DIR: &str = "../device-models";

/// A scenario with the models it uses.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The scenario.
    pub scenario: Scenario,
    /// Every model of its models folder, by name.
    pub models: ModelSet,
}

/// What a file holds, told by its top-level keys: a scenario has a `[scenario]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A scenario file.
    Scenario,
    /// A device model file.
    DeviceModel,
}

/// Reads a file, naming it in the error.
pub fn read(file: &Path) -> Result<String, LoadError> {
    fs::read_to_string(file).map_err(|source| LoadError::Read {
        file: file.to_owned(),
        source,
    })
}

/// Tells whether `text` is a scenario or a device model (syntax errors are reported here).
pub fn detect_kind(file: &Path, text: &str) -> Result<FileKind, FileError> {
    let source = Source::parse(file, text)?;
    Ok(if source.root().get("scenario").is_some() {
        FileKind::Scenario
    } else {
        FileKind::DeviceModel
    })
}

/// Parses and checks scenario text against a set of models, its `[backend]` keys by `keys`
/// (the dialects: `crate::dialect::Registry`). Pure: no file system, so the fuzzer and tests
/// call it directly.
pub fn parse_scenario(
    file: &Path,
    text: &str,
    models_dir: PathBuf,
    models: &ModelSet,
    keys: &dyn BackendKeys,
) -> Result<Scenario, FileError> {
    let source = Source::parse(file, text)?;
    let raw = source.decode_scenario()?;
    validate::check_scenario(&source, raw, models_dir, models, keys)
}

/// Where a scenario's models live: `override_dir`, else `scenario.models` relative to the
/// file, else [`DEFAULT_MODELS_DIR`] relative to the file.
pub fn models_dir_for(file: &Path, text: &str, override_dir: Option<&Path>) -> Result<PathBuf, FileError> {
    if let Some(dir) = override_dir {
        return Ok(dir.to_owned());
    }
    let source = Source::parse(file, text)?;
    let named = source
        .root()
        .get("scenario")
        .and_then(|s| s.get_ref().as_table())
        .and_then(|t| t.get("models"))
        .and_then(|m| m.get_ref().as_str())
        .unwrap_or(DEFAULT_MODELS_DIR);
    let base = file.parent().unwrap_or(Path::new("."));
    Ok(base.join(named))
}

/// Loads a scenario file and its models folder, checking both, the `[backend]` keys by `keys`.
pub fn load_scenario(file: &Path, models_override: Option<&Path>, keys: &dyn BackendKeys) -> Result<Loaded, LoadError> {
    let text = read(file)?;
    let models_dir = models_dir_for(file, &text, models_override)?;
    let models = load_models(&models_dir)?;
    let scenario = parse_scenario(file, &text, models_dir, &models, keys)?;
    Ok(Loaded { scenario, models })
}

/// Loads one device model file.
pub fn load_model(file: &Path) -> Result<DeviceModel, LoadError> {
    let text = read(file)?;
    Ok(parse_model(file, &text)?)
}

/// Loads every `*.toml` in `dir` as a device model, in name order.
pub fn load_models(dir: &Path) -> Result<ModelSet, LoadError> {
    let entries = fs::read_dir(dir).map_err(|source| LoadError::ModelsDir {
        dir: dir.to_owned(),
        source,
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| LoadError::ModelsDir {
                dir: dir.to_owned(),
                source,
            })?
            .path();
        if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    files.sort();
    let mut models = ModelSet::new();
    for file in files {
        let model = load_model(&file)?;
        models.insert(model.name.clone(), model);
    }
    Ok(models)
}
