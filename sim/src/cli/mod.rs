//! The commands of the `fleetsim` binary, as library functions that write to any output, so
//! tests call them in-process and `main.rs` stays a thin argument parser.
//!
//! Exit codes are shared by every command: 0 success, 1 a failed gate or check, 2 bad input
//! or usage.

pub mod backend;
pub mod ca;
pub mod compare;
pub mod merge;
pub mod models;
pub mod plan;
pub mod run;
pub mod validate;

use std::io::{self, Write};

use crate::scenario::LoadError;
use crate::scenario::schema::{SchemaKind, schema_json};

/// Why a command could not finish.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A file was missing or bad: exit 2.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Io(#[from] io::Error),
    /// The backend could not start or serve: the message says why.
    #[error("{0}")]
    Backend(String),
    /// A run could not start or finish.
    #[error(transparent)]
    Run(#[from] crate::engine::run::RunError),
    /// Arguments that do not fit together.
    #[error("{0}")]
    Usage(String),
    /// A report folder could not be copied to or from an object store.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl CliError {
    /// The exit code this error ends the process with.
    pub fn exit(&self) -> Exit {
        match self {
            // A store that cannot be reached is a setting to fix, like a backend that cannot.
            Self::Load(_) | Self::Backend(_) | Self::Usage(_) | Self::Store(_) => Exit::BadInput,
            Self::Run(crate::engine::run::RunError::Unsupported(_) | crate::engine::run::RunError::BadFile(_)) => {
                Exit::BadInput
            }
            Self::Io(_) | Self::Run(_) => Exit::Failed,
        }
    }

    /// True when the reader of our output went away (`fleetsim plan x | head`), which is
    /// not an error worth reporting.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(
            self,
            Self::Io(e) | Self::Run(crate::engine::run::RunError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe
        )
    }
}

/// How a command ended, as the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything held.
    Ok = 0,
    /// A gate or check failed.
    Failed = 1,
    /// A file or argument was bad.
    BadInput = 2,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// `fleetsim schema`: prints the JSON Schema of a file format.
pub fn schema(kind: SchemaKind, out: &mut dyn Write) -> Result<Exit, CliError> {
    writeln!(out, "{}", schema_json(kind))?;
    Ok(Exit::Ok)
}

/// Pads `text` to `width` characters (tables of names are short ASCII, but be exact anyway).
fn pad(text: &str, width: usize) -> String {
    let len = text.chars().count();
    format!("{text}{}", " ".repeat(width.saturating_sub(len)))
}

/// Writes rows as a left-aligned table, two spaces between columns, no trailing blanks.
fn write_table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut line = |cells: &mut dyn Iterator<Item = &str>| -> io::Result<()> {
        let text: Vec<String> = cells.zip(&widths).map(|(cell, width)| pad(cell, *width)).collect();
        writeln!(out, "{}", text.join("  ").trim_end())
    };
    line(&mut header.iter().copied())?;
    for row in rows {
        line(&mut row.iter().map(String::as_str))?;
    }
    Ok(())
}
