//! The content formats an LwM2M device writes and reads: plain text (a single resource), TLV
//! (the binary format every LwM2M 1.0 device must speak), LwM2M JSON (1.0's own) and SenML
//! JSON (1.1's). Each is known by its registered number and by the number LwM2M 1.0's drafts
//! used, which servers of that time (lwm2m-node-lib) still send (1541 to 1543). Opaque, CBOR
//! and SenML CBOR are not spoken: a request for them is refused with 4.06.
//!
//! Decoding is for what a server writes: one resource's value. Input that does not parse
//! gives `None`, never a panic.

use std::fmt::Write as _;

use fleetsim_backend::lwm2m::tlv::{self, Kind};

use super::objects::{Path, Value};

/// A content format a device speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// text/plain: one resource's value.
    Text,
    /// application/vnd.oma.lwm2m+tlv.
    Tlv,
    /// application/vnd.oma.lwm2m+json (LwM2M 1.0).
    Json,
    /// application/senml+json.
    SenmlJson,
    /// application/link-format (a Discover's answer).
    LinkFormat,
}

impl Format {
    /// The format of content-format number `number`, as either registration wrote it.
    pub fn of(number: u16) -> Option<Self> {
        Some(match number {
            0 | 1541 => Self::Text,
            11542 | 1542 => Self::Tlv,
            11543 | 1543 => Self::Json,
            110 => Self::SenmlJson,
            40 => Self::LinkFormat,
            _ => return None,
        })
    }

    /// The number to answer with: the one the server asked by, so an old server reads it.
    pub fn number(self, asked: Option<u16>) -> u16 {
        match (self, asked) {
            (_, Some(asked)) if Self::of(asked) == Some(self) => asked,
            (Self::Text, _) => 0,
            (Self::Tlv, _) => 11542,
            (Self::Json, _) => 11543,
            (Self::SenmlJson, _) => 110,
            (Self::LinkFormat, _) => 40,
        }
    }
}

/// Writes the resources `values` (instance, resource, value) read at `path` in `format`;
/// `None` when the format cannot carry them (text holds one single-instance resource).
pub fn encode(format: Format, path: Path, values: &[(u16, u16, Value)]) -> Option<Vec<u8>> {
    match format {
        Format::Text => match values {
            [(_, _, value)] => value.text().map(String::into_bytes),
            _ => None,
        },
        Format::Tlv => Some(write_tlv(path, values)),
        Format::Json => Some(json(path, values, false)),
        Format::SenmlJson => Some(json(path, values, true)),
        Format::LinkFormat => None,
    }
}

/// TLV: resources at the top level when the path names an instance or a resource; inside an
/// object instance entry when it names the object.
fn write_tlv(path: Path, values: &[(u16, u16, Value)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut instance_bytes = Vec::new();
    let mut current = None;
    for (instance, resource, value) in values {
        if path.instance.is_none() && current != Some(*instance) {
            if let Some(done) = current {
                tlv::write(
                    &mut out,
                    Kind::ObjectInstance,
                    done,
                    &std::mem::take(&mut instance_bytes),
                );
            }
            current = Some(*instance);
        }
        let target = if path.instance.is_none() {
            &mut instance_bytes
        } else {
            &mut out
        };
        match value {
            Value::Integers(instances) => {
                let mut inner = Vec::new();
                for (id, v) in instances {
                    tlv::write(&mut inner, Kind::ResourceInstance, *id, &tlv::int_bytes(*v));
                }
                tlv::write(target, Kind::MultipleResource, *resource, &inner);
            }
            value => tlv::write(target, Kind::Resource, *resource, &tlv_value(value)),
        }
    }
    if let Some(done) = current {
        tlv::write(&mut out, Kind::ObjectInstance, done, &instance_bytes);
    }
    out
}

fn tlv_value(value: &Value) -> Vec<u8> {
    match value {
        Value::Integer(v) => tlv::int_bytes(*v),
        Value::Float(v) => v.to_be_bytes().to_vec(),
        Value::String(v) => v.as_bytes().to_vec(),
        Value::Boolean(v) => vec![u8::from(*v)],
        Value::Integers(_) => Vec::new(),
    }
}

/// LwM2M JSON (`{"bn":..,"e":[..]}`) or SenML JSON (`[{"bn":..},..]`): one record a resource
/// (a resource instance for a multiple resource), named relative to the path.
fn json(path: Path, values: &[(u16, u16, Value)], senml: bool) -> Vec<u8> {
    let base = match path.resource {
        Some(_) => format!("/{}/{}/", path.object, path.instance.unwrap_or(0)),
        None => format!("{path}/"),
    };
    let mut records = Vec::new();
    for (instance, resource, value) in values {
        let name = if path.instance.is_none() {
            format!("{instance}/{resource}")
        } else {
            resource.to_string()
        };
        match value {
            Value::Integers(instances) => {
                for (id, v) in instances {
                    records.push((format!("{name}/{id}"), Value::Integer(*v)));
                }
            }
            value => records.push((name, value.clone())),
        }
    }
    let mut out = String::new();
    let record = |out: &mut String, name: &str, value: &Value| {
        let _ = write!(out, "\"n\":{}", json_string(name));
        let _ = match value {
            Value::Integer(v) => write!(out, ",\"v\":{v}"),
            Value::Float(v) => write!(out, ",\"v\":{v}"),
            Value::String(v) => write!(out, ",\"sv\":{}", json_string(v)),
            Value::Boolean(v) => write!(out, ",\"bv\":{v}"),
            Value::Integers(_) => Ok(()),
        };
    };
    if senml {
        out.push('[');
        for (k, (name, value)) in records.iter().enumerate() {
            out.push_str(if k == 0 { "{" } else { ",{" });
            if k == 0 {
                let _ = write!(out, "\"bn\":{},", json_string(&base));
            }
            // SenML names string values "vs" and booleans "vb".
            let mut one = String::new();
            record(&mut one, name, value);
            out.push_str(&one.replace("\"sv\":", "\"vs\":").replace("\"bv\":", "\"vb\":"));
            out.push('}');
        }
        out.push(']');
    } else {
        let _ = write!(out, "{{\"bn\":{},\"e\":[", json_string(&base));
        for (k, (name, value)) in records.iter().enumerate() {
            out.push_str(if k == 0 { "{" } else { ",{" });
            record(&mut out, name, value);
            out.push('}');
        }
        out.push_str("]}");
    }
    out.into_bytes()
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// The integer a server wrote to one resource in `format`; `None` when it does not parse.
pub fn decode_integer(format: Format, payload: &[u8]) -> Option<i64> {
    match format {
        Format::Text => std::str::from_utf8(payload).ok()?.trim().parse().ok(),
        Format::Tlv => {
            // One resource, or one resource instance: not an object instance or a multiple
            // resource.
            let (entry, rest) = tlv::next(payload)?;
            if !rest.is_empty() || !matches!(entry.kind, Kind::Resource | Kind::ResourceInstance) {
                return None;
            }
            tlv::integer(entry.value)
        }
        Format::Json | Format::SenmlJson => {
            let json: serde_json::Value = serde_json::from_slice(payload).ok()?;
            let records = match &json {
                serde_json::Value::Array(records) => records,
                object => object.get("e")?.as_array()?,
            };
            match records.as_slice() {
                [record] => record.get("v")?.as_i64(),
                _ => None,
            }
        }
        Format::LinkFormat => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(object: u16, instance: Option<u16>, resource: Option<u16>) -> Path {
        Path {
            object,
            instance,
            resource,
        }
    }

    #[test]
    fn formats_are_known_by_both_numbers_and_answered_by_the_one_asked() {
        assert_eq!(Format::of(1542), Some(Format::Tlv));
        assert_eq!(Format::of(11542), Some(Format::Tlv));
        assert_eq!(Format::of(60), None, "CBOR is not spoken");
        assert_eq!(Format::Tlv.number(Some(1542)), 1542);
        assert_eq!(Format::Tlv.number(None), 11542);
        assert_eq!(Format::Text.number(Some(11542)), 0);
    }

    /// The bytes worked out by hand from OMA-TS-LightweightM2M-V1_0, section 6.4.3.
    #[test]
    fn tlv_writes_resources_multiple_resources_and_instances() {
        let values = vec![
            (0, 0, Value::String("Open Mobile Alliance".into())),
            (0, 9, Value::Integer(100)),
            (0, 11, Value::Integers(vec![(0, 0)])),
        ];
        let bytes = write_tlv(path(3, Some(0), None), &values);
        let mut expected = vec![0xC8, 0x00, 0x14];
        expected.extend_from_slice(b"Open Mobile Alliance");
        expected.extend_from_slice(&[0xC1, 0x09, 0x64]);
        expected.extend_from_slice(&[0x83, 0x0B, 0x41, 0x00, 0x00]);
        assert_eq!(bytes, expected);
        let object = write_tlv(path(3, None, None), &values);
        assert_eq!(object[..2], [0x08, 0x00], "an instance entry");
        assert_eq!(usize::from(object[2]), expected.len(), "holding the resources");
        assert_eq!(object[3..], expected[..]);
        let long = write_tlv(path(3303, Some(0), Some(5700)), &[(0, 5700, Value::Float(21.5))]);
        assert_eq!(long[..3], [0xE8, 0x16, 0x44], "a 16-bit id, an 8-bit length");
        assert_eq!(f64::from_be_bytes(long[4..].try_into().expect("8 bytes")), 21.5);
    }

    #[test]
    fn json_and_senml_name_each_resource_under_the_path() {
        let values = vec![(0, 5700, Value::Float(21.5)), (0, 5701, Value::String("Cel".into()))];
        let at = path(3303, Some(0), None);
        assert_eq!(
            String::from_utf8(json(at, &values, true)).expect("utf-8"),
            r#"[{"bn":"/3303/0/","n":"5700","v":21.5},{"n":"5701","vs":"Cel"}]"#
        );
        assert_eq!(
            String::from_utf8(json(at, &values, false)).expect("utf-8"),
            r#"{"bn":"/3303/0/","e":[{"n":"5700","v":21.5},{"n":"5701","sv":"Cel"}]}"#
        );
        let object = json(path(3, None, None), &[(0, 11, Value::Integers(vec![(0, 0)]))], true);
        assert_eq!(
            String::from_utf8(object).expect("utf-8"),
            r#"[{"bn":"/3/","n":"0/11/0","v":0}]"#
        );
    }

    #[test]
    fn a_written_integer_decodes_from_each_format_and_garbage_does_not() {
        assert_eq!(decode_integer(Format::Text, b"120"), Some(120));
        assert_eq!(decode_integer(Format::Tlv, &[0xC2, 0x01, 0x01, 0x2C]), Some(300));
        assert_eq!(decode_integer(Format::SenmlJson, br#"[{"n":"1","v":60}]"#), Some(60));
        assert_eq!(decode_integer(Format::Json, br#"{"e":[{"n":"1","v":60}]}"#), Some(60));
        for garbage in [
            &[][..],
            &[0xC2],
            &[0xC2, 0x01, 0x01],
            &[0xD8, 0x01, 0xFF, 0x00],
            &[0x08, 0x00, 0x00],
        ] {
            assert_eq!(decode_integer(Format::Tlv, garbage), None, "{garbage:?}");
        }
        assert_eq!(decode_integer(Format::Text, b"\xFF"), None);
        assert_eq!(decode_integer(Format::SenmlJson, b"[{"), None);
    }
}
