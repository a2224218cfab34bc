//! `fleetsim compare BASELINE CURRENT`: compares two runs' summaries figure by figure, prints
//! the table, and exits 1 when a figure regressed past `--max-regression`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{CliError, Exit};
use crate::report::compare::{compare as compare_summaries, render};

/// Compares the summary at `current` with the one at `baseline` (each a `summary.json` or a
/// report folder holding one).
pub fn compare(baseline: &Path, current: &Path, max_regression: f64, out: &mut dyn Write) -> Result<Exit, CliError> {
    let (base, now) = (load(baseline)?, load(current)?);
    let rows = compare_summaries(&base, &now, max_regression);
    write!(out, "{}", render(&rows, max_regression))?;
    Ok(if rows.iter().any(|r| r.change.regressed()) {
        Exit::Failed
    } else {
        Exit::Ok
    })
}

fn load(path: &Path) -> Result<Value, CliError> {
    let file: PathBuf = if path.is_dir() {
        path.join("summary.json")
    } else {
        path.to_owned()
    };
    let text = std::fs::read_to_string(&file).map_err(|e| {
        CliError::Usage(format!(
            "{}: {e}; give a summary.json or a report folder",
            file.display()
        ))
    })?;
    let summary: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::Usage(format!("{}: not a fleetsim summary ({e})", file.display())))?;
    if !summary["metrics"].is_object() {
        return Err(CliError::Usage(format!(
            "{}: not a fleetsim summary (no \"metrics\")",
            file.display()
        )));
    }
    Ok(summary)
}
