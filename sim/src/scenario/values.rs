//! Serde types for unit strings in files. Each wraps the parsed value, deserializes from a
//! string through [`super::units`], and describes itself in the JSON schema with the same
//! wording the error messages use.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserialize, Deserializer, Visitor};

use super::units::{self, UnitError};

/// How a unit string turns into its value; one implementation per unit.
trait UnitKind {
    type Value;
    const EXPECTED: &'static str;
    const SCHEMA_NAME: &'static str;
    const PATTERN: &'static str;
    fn parse(text: &str) -> Result<Self::Value, UnitError>;
}

/// Deserializes a string through `K::parse`, reporting bad text and wrong types alike as
/// "expected <what K looks like>".
struct UnitVisitor<K>(PhantomData<K>);

impl<K: UnitKind> Visitor<'_> for UnitVisitor<K> {
    type Value = K::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(K::EXPECTED)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        K::parse(text).map_err(E::custom)
    }
}

fn unit_schema<K: UnitKind>() -> Schema {
    json_schema!({
        "type": "string",
        "pattern": K::PATTERN,
        "description": K::EXPECTED,
    })
}

macro_rules! unit_value {
    ($(#[$doc:meta])* $name:ident, $kind:ident, $value:ty, $parse:path, $expected:path, $pattern:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub struct $name(pub $value);

        struct $kind;

        impl UnitKind for $kind {
            type Value = $value;
            const EXPECTED: &'static str = $expected;
            const SCHEMA_NAME: &'static str = stringify!($name);
            const PATTERN: &'static str = $pattern;
            fn parse(text: &str) -> Result<$value, UnitError> {
                $parse(text)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer
                    .deserialize_str(UnitVisitor::<$kind>(PhantomData))
                    .map($name)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed(<$kind as UnitKind>::SCHEMA_NAME)
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                unit_schema::<$kind>()
            }
        }
    };
}

unit_value!(
    /// A duration written as `"90s"`, `"250ms"`, `"1h30m"`.
    DurationValue,
    DurationKind,
    Duration,
    units::parse_duration,
    units::DURATION_EXPECTED,
    r"^(0|([0-9]+(\.[0-9]+)?(us|ms|s|m|h|d))+)$"
);

unit_value!(
    /// A size in bytes written as `"512KiB"`, `"2MB"`, `"64B"`.
    SizeValue,
    SizeKind,
    u64,
    units::parse_size,
    units::SIZE_EXPECTED,
    r"^[0-9]+(\.[0-9]+)?\s*(B|kB|KB|MB|GB|KiB|MiB|GiB)$"
);

unit_value!(
    /// A rate in events per second written as `"500/s"`, `"30/m"`, `"100/h"`.
    RateValue,
    RateKind,
    f64,
    units::parse_rate,
    units::RATE_EXPECTED,
    r"^[0-9]+(\.[0-9]+)?\s*/(s|m|h)$"
);

unit_value!(
    /// A fraction written as a percentage, `"2%"` or `"0.01%"`.
    PercentValue,
    PercentKind,
    f64,
    units::parse_percent,
    units::PERCENT_EXPECTED,
    r"^[0-9]+(\.[0-9]+)?\s*%$"
);

/// A share of the fleet: a fraction (`0.8`) or a percentage (`"80%"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShareValue(pub f64);

/// What a share looks like.
const SHARE_EXPECTED: &str = "a share like 0.8 or \"80%\"";

struct ShareVisitor;

impl Visitor<'_> for ShareVisitor {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SHARE_EXPECTED)
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<f64, E> {
        Ok(value)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<f64, E> {
        Ok(value as f64)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<f64, E> {
        Ok(value as f64)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<f64, E> {
        units::parse_percent(text).map_err(|_| {
            E::custom(UnitError {
                expected: SHARE_EXPECTED,
                found: text.to_owned(),
            })
        })
    }
}

impl<'de> Deserialize<'de> for ShareValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ShareVisitor).map(ShareValue)
    }
}

impl JsonSchema for ShareValue {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Share")
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": SHARE_EXPECTED,
            "oneOf": [
                { "type": "number", "minimum": 0, "maximum": 1 },
                { "type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?\s*%$" },
            ],
        })
    }
}
