//! `fleetsim merge DIR|URL... --out DIR|URL`: one report from several (the shards of one run,
//! or runs of one scenario): histograms merged exactly, counts added, time series lined up by
//! second, gates checked again. Exits 1 when a merged gate fails.
//!
//! Folders named by an object store URL are downloaded into a staging folder first, and a URL
//! `--out` gets the merged folder uploaded (see [`crate::store`]).

use std::io::Write;
use std::path::PathBuf;

use super::{CliError, Exit};
use crate::report::merge::merge as merge_reports;
use crate::store::{self, Location, Transfer};

/// Merges `inputs` into `to` and prints the verdicts.
pub fn merge(inputs: &[Location], to: &Location, out: &mut dyn Write) -> Result<Exit, CliError> {
    let urls = inputs.iter().chain([to]).filter_map(|l| match l {
        Location::Url(url) => Some(url),
        Location::Folder(_) => None,
    });
    let mut remote = false;
    for url in urls {
        store::check_built(url)?;
        remote = true;
    }
    let staging = if remote { Some(store::staging("merge")?) } else { None };
    let result = merge_in(inputs, to, staging.as_ref(), out);
    // A failed upload keeps the merged folder (its error names it); anything else leaves
    // nothing worth keeping in the staging folder.
    let keep = matches!(result, Err(CliError::Store(store::StoreError::Upload { .. })));
    if let Some(staging) = staging.filter(|_| !keep) {
        let _ = std::fs::remove_dir_all(staging);
    }
    result
}

fn merge_in(
    inputs: &[Location],
    to: &Location,
    staging: Option<&PathBuf>,
    out: &mut dyn Write,
) -> Result<Exit, CliError> {
    let staged = |name: String| staging.map(|dir| dir.join(name)).ok_or_else(unstaged);
    let mut dirs = Vec::with_capacity(inputs.len());
    for (index, input) in inputs.iter().enumerate() {
        match input {
            Location::Folder(dir) => dirs.push(dir.clone()),
            Location::Url(url) => {
                let dir = staged(format!("in-{index}"))?;
                let got = store::download(url, &dir)?;
                writeln!(out, "downloaded {url}: {}", size(got))?;
                dirs.push(dir);
            }
        }
    }
    let out_dir = match to {
        Location::Folder(dir) => dir.clone(),
        Location::Url(_) => staged("merged".to_owned())?,
    };
    let merged = merge_reports(&dirs, &out_dir, &crate::dialect::merge_sections).map_err(CliError::Usage)?;
    let into = match to {
        Location::Folder(dir) => format!(" into {}", dir.display()),
        Location::Url(_) => String::new(),
    };
    writeln!(
        out,
        "merged {} report folders{into}: {} devices",
        dirs.len(),
        merged.summary["devices"]
    )?;
    for verdict in &merged.verdicts {
        writeln!(out, "{verdict}")?;
    }
    if let Location::Url(url) = to {
        let sent = store::upload(&out_dir, url)?;
        writeln!(out, "merged report: {} uploaded to {url}", size(sent))?;
    }
    let failed = merged.verdicts.iter().filter(|v| !v.passed).count();
    if failed > 0 {
        writeln!(out, "{failed} of {} gates failed", merged.verdicts.len())?;
        return Ok(Exit::Failed);
    }
    Ok(Exit::Ok)
}

/// `5 files, 312.4 KiB`.
pub(super) fn size(transfer: Transfer) -> String {
    format!("{} files, {:.1} KiB", transfer.files, transfer.bytes as f64 / 1024.0)
}

/// A URL was seen without a staging folder made for it, which [`merge`] rules out.
fn unstaged() -> CliError {
    CliError::Usage("internal: an object store URL without a staging folder".to_owned())
}
