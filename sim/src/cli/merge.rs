//! `fleetsim merge DIR... --out DIR`: one report from several (the shards of one run, or runs
//! of one scenario): histograms merged exactly, counts added, time series lined up by second,
//! gates checked again. Exits 1 when a merged gate fails.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{CliError, Exit};
use crate::report::merge::merge as merge_reports;

/// Merges `dirs` into `out` and prints the verdicts.
pub fn merge(dirs: &[PathBuf], out_dir: &Path, out: &mut dyn Write) -> Result<Exit, CliError> {
    let merged = merge_reports(dirs, out_dir).map_err(CliError::Usage)?;
    writeln!(
        out,
        "merged {} report folders into {}: {} devices",
        dirs.len(),
        out_dir.display(),
        merged.summary["devices"]
    )?;
    for verdict in &merged.verdicts {
        writeln!(out, "{verdict}")?;
    }
    let failed = merged.verdicts.iter().filter(|v| !v.passed).count();
    if failed > 0 {
        writeln!(out, "{failed} of {} gates failed", merged.verdicts.len())?;
        return Ok(Exit::Failed);
    }
    Ok(Exit::Ok)
}
