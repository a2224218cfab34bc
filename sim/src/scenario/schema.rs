//! JSON Schemas of the two file formats, so editors (taplo, Even Better TOML) can check files
//! as they are written. Derived from the same structs the loader uses, so they cannot drift.

use schemars::schema_for;

use super::file::{DeviceModelFile, ScenarioFile};

/// Which file format to describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaKind {
    /// `scenarios/*.toml`.
    Scenario,
    /// `device-models/*.toml`.
    DeviceModel,
}

/// The JSON Schema (draft 2020-12) of a file format, pretty-printed.
pub fn schema_json(kind: SchemaKind) -> String {
    let mut schema = match kind {
        SchemaKind::Scenario => schema_for!(ScenarioFile),
        SchemaKind::DeviceModel => schema_for!(DeviceModelFile),
    };
    let title = match kind {
        SchemaKind::Scenario => "fleetsim scenario",
        SchemaKind::DeviceModel => "fleetsim device model",
    };
    schema.insert("title".to_owned(), title.into());
    // Serializing a tree of JSON values cannot fail: every key is a string.
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_describe_every_section() {
        let scenario: serde_json::Value = serde_json::from_str(&schema_json(SchemaKind::Scenario)).expect("valid JSON");
        let props = &scenario["properties"];
        for key in ["scenario", "backend", "fleet", "phase", "gates"] {
            assert!(props.get(key).is_some(), "scenario schema lacks {key}");
        }
        assert_eq!(scenario["additionalProperties"], false);
        let text = schema_json(SchemaKind::Scenario);
        for action in ["config", "command", "ota", "outage", "decommission"] {
            assert!(text.contains(&format!("\"{action}\"")), "phase action {action} missing");
        }
        let model: serde_json::Value = serde_json::from_str(&schema_json(SchemaKind::DeviceModel)).expect("valid JSON");
        for key in ["name", "protocol", "telemetry", "battery", "link", "ota"] {
            assert!(model["properties"].get(key).is_some(), "model schema lacks {key}");
        }
    }
}
