//! Errors a user can act on: every problem in a file names the file, line, column, the key
//! and what was expected, in one line:
//!
//! ```text
//! scenarios/x.toml:14:20: fleet.arrival.ramp: expected a duration like "30s", ..., found "thirty"
//! ```

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySeg {
    /// A key in a table.
    Key(String),
    /// An index in an array (shown zero-based, as `phase[0]`).
    Index(usize),
}

/// Where in a file a value lives, as the user would write it: `fleet.mix[1].share`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<KeySeg>);

impl KeyPath {
    /// The empty path (the whole file).
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// This path extended by a table key.
    pub fn key(&self, key: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(KeySeg::Key(key.to_owned()));
        Self(segs)
    }

    /// This path extended by an array index.
    pub fn index(&self, index: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(KeySeg::Index(index));
        Self(segs)
    }

    /// Builds a path from dotted keys, for call sites that know the path statically.
    pub fn of(keys: &[&str]) -> Self {
        Self(keys.iter().map(|k| KeySeg::Key((*k).to_owned())).collect())
    }

    /// True for the path of the whole file.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                KeySeg::Index(index) => write!(f, "[{index}]")?,
                KeySeg::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare =
                        !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(key)?;
                    } else {
                        write!(f, "{key:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A problem at a place in a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FileError {
    /// The file, as the user named it.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The key the problem is about; empty for a syntax error.
    pub key: KeyPath,
    /// What is wrong and what would be accepted.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.key.is_root() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl FileError {
    /// Places `message` about `key` at byte `span` of `text` (the start of the span).
    pub fn at(file: &Path, text: &str, span: Option<Range<usize>>, key: KeyPath, message: String) -> Self {
        let offset = span.map_or(0, |s| s.start.min(text.len()));
        let (line, column) = line_column(text, offset);
        Self {
            file: file.to_owned(),
            line,
            column,
            key,
            message,
        }
    }
}

/// 1-based line and character column of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    // A span from the parser always falls on a character boundary; clamp to one anyway so a
    // bad offset can never panic on slicing.
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Everything that can go wrong loading scenarios and device models.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The models folder could not be listed.
    #[error("{}: cannot list device models: {source}; pass --models DIR or set scenario.models", dir.display())]
    ModelsDir {
        /// The folder.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A problem at a place in a file.
    #[error(transparent)]
    File(#[from] Box<FileError>),
}

impl From<FileError> for LoadError {
    fn from(error: FileError) -> Self {
        Self::File(Box::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_like_the_file() {
        let path = KeyPath::of(&["fleet", "mix"]).index(1).key("share");
        assert_eq!(path.to_string(), "fleet.mix[1].share");
        let gate = KeyPath::of(&["gates", "provision.latency.p99"]);
        assert_eq!(gate.to_string(), "gates.\"provision.latency.p99\"");
    }

    #[test]
    fn line_and_column_count_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        // 'é' is two bytes but one column.
        let quote = text.find('"').expect("quote in text");
        assert_eq!(line_column(text, quote), (2, 6));
        assert_eq!(line_column(text, 999), (3, 1));
    }
}
