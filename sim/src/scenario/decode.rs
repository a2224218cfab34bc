//! Turns file text into the raw structs of [`super::file`], with every error placed at a
//! file, line, column and key.
//!
//! Design: the text is parsed once into toml's spanned tree ([`DeTable`]). Deserialization
//! runs over that tree through `serde_path_to_error`, which gives the key path of a failure,
//! while toml gives its byte span. Checks that run after deserialization (cross-field,
//! cross-file) name a key path and [`Source::error`] finds its span in the same tree.
//!
//! `[[phase]]` tables are decoded by hand rather than through serde's internally tagged enum:
//! serde buffers such an enum's content before choosing the variant, which throws away the
//! source positions, so an error inside a phase could only point at the phase's header.

use std::ops::Range;
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::{FileError, KeyPath, KeySeg};
use super::file::{PhaseSection, ScenarioFile};

/// The actions a `[[phase]]` may take, in the order error messages list them.
pub const PHASE_ACTIONS: [&str; 8] = [
    "config",
    "command",
    "ota",
    "outage",
    "decommission",
    "rotate",
    "alert",
    "fault",
];

/// A parsed file: its name, its text, and the spanned tree errors are located in.
pub struct Source<'t> {
    file: &'t Path,
    text: &'t str,
    root: Spanned<DeTable<'t>>,
}

impl<'t> Source<'t> {
    /// Parses `text` as TOML; a syntax error is placed where the parser stopped.
    pub fn parse(file: &'t Path, text: &'t str) -> Result<Self, FileError> {
        let root = DeTable::parse(text).map_err(|e| {
            let message = e.message().trim().to_owned();
            FileError::at(
                file,
                text,
                e.span(),
                KeyPath::root(),
                format!("invalid TOML: {message}"),
            )
        })?;
        Ok(Self { file, text, root })
    }

    /// The file this text came from.
    pub fn file(&self) -> &'t Path {
        self.file
    }

    /// The root table, for callers that look at keys before decoding (file kind detection).
    pub fn root(&self) -> &DeTable<'t> {
        self.root.get_ref()
    }

    /// An error about `key`, placed at its value, or at the nearest enclosing key that exists.
    pub fn error(&self, key: KeyPath, message: impl Into<String>) -> FileError {
        let span = locate(&self.root, &key);
        FileError::at(self.file, self.text, Some(span), key, message.into())
    }

    /// Decodes the whole file into `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, FileError> {
        self.decode_table(self.root.clone(), &KeyPath::root())
    }

    /// Decodes a scenario file, phases included (see the module note).
    pub fn decode_scenario(&self) -> Result<ScenarioFile, FileError> {
        let mut root = self.root.clone();
        let phases = root.get_mut().remove("phase");
        let mut scenario: ScenarioFile = self.decode_table(root, &KeyPath::root())?;
        if let Some(phases) = phases {
            scenario.phase = self.decode_phases(phases)?;
        }
        Ok(scenario)
    }

    fn decode_phases(&self, phases: Spanned<DeValue<'t>>) -> Result<Vec<PhaseSection>, FileError> {
        let base = KeyPath::of(&["phase"]);
        let span = phases.span();
        let DeValue::Array(items) = phases.into_inner() else {
            return Err(self.error_at(span, base, "expected [[phase]] tables"));
        };
        let mut decoded = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            let path = base.index(index);
            let span = item.span();
            let DeValue::Table(mut table) = item.into_inner() else {
                return Err(self.error_at(span, path, "expected a [[phase]] table"));
            };
            let expected = PHASE_ACTIONS.map(|a| format!("\"{a}\"")).join(", ");
            let Some(action) = table.remove("action") else {
                let message = format!("missing key \"action\"; expected one of {expected}");
                return Err(self.error_at(span, path, &message));
            };
            let action_span = action.span();
            let action_path = path.key("action");
            let Some(name) = action.get_ref().as_str() else {
                let message = format!("expected one of {expected}");
                return Err(self.error_at(action_span, action_path, &message));
            };
            let table = Spanned::new(span, table);
            decoded.push(match name {
                "config" => PhaseSection::Config(self.decode_table(table, &path)?),
                "command" => PhaseSection::Command(self.decode_table(table, &path)?),
                "ota" => PhaseSection::Ota(self.decode_table(table, &path)?),
                "outage" => PhaseSection::Outage(self.decode_table(table, &path)?),
                "decommission" => PhaseSection::Decommission(self.decode_table(table, &path)?),
                "rotate" => PhaseSection::Rotate(self.decode_table(table, &path)?),
                "alert" => PhaseSection::Alert(self.decode_table(table, &path)?),
                "fault" => PhaseSection::Fault(self.decode_table(table, &path)?),
                other => {
                    let message = format!("expected one of {expected}, found \"{other}\"");
                    return Err(self.error_at(action_span, action_path, &message));
                }
            });
        }
        Ok(decoded)
    }

    /// Deserializes one table, tracking the key path of any failure below `prefix`.
    fn decode_table<T: DeserializeOwned>(&self, table: Spanned<DeTable<'t>>, prefix: &KeyPath) -> Result<T, FileError> {
        let deserializer = toml::de::Deserializer::from(table);
        serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let mut key = prefix.clone();
            key.0.extend(err.path().iter().filter_map(|seg| match seg {
                serde_path_to_error::Segment::Seq { index } => Some(KeySeg::Index(*index)),
                serde_path_to_error::Segment::Map { key } => Some(KeySeg::Key(key.clone())),
                serde_path_to_error::Segment::Enum { variant } => Some(KeySeg::Key(variant.clone())),
                serde_path_to_error::Segment::Unknown => None,
            }));
            let inner = err.into_inner();
            let (key, message) = plain_message(key, inner.message());
            let span = inner.span().unwrap_or_else(|| locate(&self.root, &key));
            FileError::at(self.file, self.text, Some(span), key, message)
        })
    }

    fn error_at(&self, span: Range<usize>, key: KeyPath, message: &str) -> FileError {
        FileError::at(self.file, self.text, Some(span), key, message.to_owned())
    }
}

/// The span of the value at `key`, or of the deepest enclosing value that exists.
fn locate(root: &Spanned<DeTable<'_>>, key: &KeyPath) -> Range<usize> {
    let mut span = root.span();
    let mut table = Some(root.get_ref());
    let mut array: Option<&toml::de::DeArray<'_>> = None;
    for seg in &key.0 {
        let next = match (seg, table, array) {
            (KeySeg::Key(k), Some(t), _) => t.get(k.as_str()),
            (KeySeg::Index(i), _, Some(a)) => a.get(*i),
            _ => None,
        };
        let Some(value) = next else { break };
        span = value.span();
        table = value.get_ref().as_table();
        array = match value.get_ref() {
            DeValue::Array(items) => Some(items),
            _ => None,
        };
    }
    span
}

/// Rewrites serde's messages into this tool's voice: "expected X, found Y", with the name of
/// an unknown key moved into the key path.
fn plain_message(mut key: KeyPath, message: &str) -> (KeyPath, String) {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
        // The path usually ends at the unknown key already; add it where it does not.
        if key.0.last() != Some(&KeySeg::Key(name.to_owned())) {
            key.0.push(KeySeg::Key(name.to_owned()));
        }
        let expected = expected.trim_start_matches(", ");
        let accepted = if let Some(list) = expected.strip_prefix("expected one of ") {
            format!("expected one of {}", list.replace('`', ""))
        } else if let Some(one) = expected.strip_prefix("expected ") {
            format!("expected {}", one.replace('`', ""))
        } else {
            "this table takes no keys".to_owned()
        };
        return (key, format!("unknown key; {accepted}"));
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.trim_end_matches('`');
        return (key, format!("missing key \"{name}\""));
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let (found, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let expected = expected.trim_start_matches(", ");
        // serde lists three or more variants as "one of `a`, `b`, `c`", two as "`a` or `b`".
        let list = match expected.strip_prefix("expected one of ") {
            Some(list) => format!("one of {list}"),
            None => expected.trim_start_matches("expected ").to_owned(),
        };
        return (key, format!("expected {}, found \"{found}\"", list.replace('`', "\"")));
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((found, expected)) = rest.split_once(", expected ")
        {
            return (
                key,
                format!("expected {}, found {}", plain_expected(expected), plain_found(found)),
            );
        }
    }
    (key, message.to_owned())
}

/// Shows what serde found the way the file wrote it: `"one"`, `0.3`, `true`, a table.
fn plain_found(found: &str) -> String {
    for kind in ["integer ", "floating point ", "boolean ", "string ", "character "] {
        if let Some(value) = found.strip_prefix(kind) {
            return value.replace('`', "");
        }
    }
    match found {
        "map" => "a table".to_owned(),
        "sequence" => "an array".to_owned(),
        other => other.replace('`', ""),
    }
}

/// Names serde's expectations the way a user writes files.
fn plain_expected(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" => "a whole number".to_owned(),
        "i8" | "i16" | "i32" | "i64" => "an integer".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a boolean" => "true or false".to_owned(),
        "a sequence" => "an array".to_owned(),
        "a map" => "a table".to_owned(),
        other if other.starts_with("struct ") => "a table".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_are_rewritten() {
        let root = KeyPath::of(&["fleet"]);
        let (key, msg) = plain_message(
            root.clone(),
            "unknown field `devcies`, expected one of `devices`, `mix`",
        );
        assert_eq!(key.to_string(), "fleet.devcies");
        assert_eq!(msg, "unknown key; expected one of devices, mix");
        let (_, msg) = plain_message(root.clone(), "missing field `mix`");
        assert_eq!(msg, "missing key \"mix\"");
        let (_, msg) = plain_message(root.clone(), "invalid type: string \"x\", expected u64");
        assert_eq!(msg, "expected a whole number, found \"x\"");
        let (_, msg) = plain_message(
            KeyPath::root(),
            "invalid type: floating point `0.3`, expected a percentage",
        );
        assert_eq!(msg, "expected a percentage, found 0.3");
        let (_, msg) = plain_message(root, "unknown variant `zigbee`, expected one of `mqtt`, `coap`");
        assert_eq!(msg, "expected one of \"mqtt\", \"coap\", found \"zigbee\"");
        let (_, msg) = plain_message(KeyPath::root(), "unknown variant `halt`, expected `continue` or `stop`");
        assert_eq!(msg, "expected \"continue\" or \"stop\", found \"halt\"");
    }
}
