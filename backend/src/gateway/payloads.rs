//! What devices put in their messages, parsed and checked: the one place device-supplied
//! bytes become values. Pure (no I/O), so the fuzzer drives it directly
//! (`fuzz/fuzz_targets/device_packet.rs`).

use serde::Deserialize;
use serde_json::{Map, Value};

use super::sessions::DeviceStatus;
use super::topics::Inbound;
use crate::registry::OTA_STATES;

/// A device message, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// Telemetry: any bytes (the backend counts it; the content is the device's business),
    /// and what the backend reads of it when it is a JSON object or a CBOR map that carries a
    /// plausible `battery` (0 to 1) or `rssi` (dBm, -150 to 0), or `errors` (error codes), as
    /// fleetsim's devices send.
    Telemetry(Option<TelemetryReading>),
    /// A status report.
    Status(DeviceStatus),
    /// The config version the device applied, and the settings it holds, if it says.
    ConfigReported {
        /// The version.
        version: u64,
        /// Its settings (what `set` commands applied): names to strings, numbers, booleans.
        settings: Option<Map<String, Value>>,
    },
    /// An answer to a command.
    CommandResult {
        /// Whether the device carried the command out.
        succeeded: bool,
        /// `{"status": ..., "output": ...}` as stored with the command.
        result: Value,
    },
    /// Progress of an OTA job.
    OtaStatus {
        /// The campaign.
        campaign: u64,
        /// `downloading`, `verifying`, `installing`, `rebooting`, `succeeded`, `failed` or
        /// `rolled_back`.
        state: String,
    },
    /// A provisioning request.
    Provision {
        /// Model the device says it is.
        model: Option<String>,
        /// Firmware it says it runs.
        firmware: Option<String>,
        /// A certificate signing request, to be issued a certificate with the identity.
        csr: Option<CsrAsk>,
    },
    /// A certificate signing request on the device's own connection (a rotation or renewal).
    CertRequest(CsrAsk),
}

/// A certificate signing request as a device sends it: the CSR in PEM (checked later, by
/// `certs::check_csr`) and the validity it asks for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsrAsk {
    /// The CSR, PEM.
    pub csr: String,
    /// Seconds the certificate should last; the CA's default when absent.
    #[serde(default)]
    pub validity_s: Option<u64>,
}

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad payload: {0}")]
pub struct BadPayload(pub &'static str);

/// Parses the payload of a message whose topic classified as `inbound`.
pub fn decode(inbound: &Inbound<'_>, payload: &[u8]) -> Result<Payload, BadPayload> {
    match inbound {
        Inbound::Telemetry => Ok(Payload::Telemetry(TelemetryReading::of(payload))),
        Inbound::Status => {
            let status: StatusPayload = serde_json::from_slice(payload)
                .map_err(|_| BadPayload("status is not JSON of the documented shape"))?;
            if !status.is_plausible() {
                return Err(BadPayload("status values out of range"));
            }
            Ok(Payload::Status(status.into()))
        }
        Inbound::ConfigReported => {
            let report: ConfigReport = serde_json::from_slice(payload)
                .map_err(|_| BadPayload("expected {\"version\": N, \"settings\": {...}}"))?;
            if let Some(settings) = &report.settings {
                let scalar = |v: &Value| !matches!(v, Value::Array(_) | Value::Object(_) | Value::Null);
                if settings.len() > MAX_SETTINGS || !settings.values().all(scalar) {
                    return Err(BadPayload("settings: at most 32 names to strings, numbers or booleans"));
                }
            }
            Ok(Payload::ConfigReported {
                version: report.version,
                settings: report.settings,
            })
        }
        Inbound::CommandResult { .. } => {
            let answer: CommandAnswer = serde_json::from_slice(payload)
                .map_err(|_| BadPayload("expected {\"status\": \"ok\"|\"error\", \"output\": ...}"))?;
            let succeeded = match answer.status.as_str() {
                "ok" => true,
                "error" => false,
                _ => return Err(BadPayload("status must be \"ok\" or \"error\"")),
            };
            let result = serde_json::json!({ "status": answer.status, "output": answer.output });
            Ok(Payload::CommandResult { succeeded, result })
        }
        Inbound::OtaStatus => {
            let report: OtaStatus = serde_json::from_slice(payload)
                .map_err(|_| BadPayload("expected {\"campaign\": N, \"state\": \"downloading\"|...}"))?;
            if !OTA_STATES.contains(&report.state.as_str()) {
                return Err(BadPayload("unknown OTA state"));
            }
            Ok(Payload::OtaStatus {
                campaign: report.campaign,
                state: report.state,
            })
        }
        Inbound::Provision { .. } => {
            if payload.is_empty() {
                return Ok(Payload::Provision {
                    model: None,
                    firmware: None,
                    csr: None,
                });
            }
            let request: ProvisionRequest = serde_json::from_slice(payload).map_err(|_| {
                BadPayload("expected {\"model\": \"m\", \"firmware\": \"1.0\", \"csr\": \"PEM\", \"validity_s\": N} (each optional) or nothing")
            })?;
            let csr = match (request.csr, request.validity_s) {
                (Some(csr), validity_s) => Some(CsrAsk { csr, validity_s }),
                (None, Some(_)) => return Err(BadPayload("validity_s is for a certificate: send a csr with it")),
                (None, None) => None,
            };
            Ok(Payload::Provision {
                model: request.model,
                firmware: request.firmware,
                csr,
            })
        }
        Inbound::CertRequest => {
            let ask: CsrAsk = serde_json::from_slice(payload)
                .map_err(|_| BadPayload("expected {\"csr\": \"PEM\", \"validity_s\": N (optional)}"))?;
            Ok(Payload::CertRequest(ask))
        }
    }
}

/// `fleet/v1/provision/{serial}` payload: what the device says it is (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvisionRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    firmware: Option<String>,
    #[serde(default)]
    csr: Option<String>,
    #[serde(default)]
    validity_s: Option<u64>,
}

/// `.../cmd/{id}/result` payload: `status` is `ok` or `error`; `output` is anything the
/// command produced (for `logs`, the device's event log).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandAnswer {
    status: String,
    #[serde(default)]
    output: Value,
}

/// `.../ota/status` payload.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtaStatus {
    campaign: u64,
    state: String,
}

/// The most settings a device may report.
pub const MAX_SETTINGS: usize = 32;

/// `.../config/reported` payload; unknown keys are allowed, as in a status.
#[derive(Debug, Deserialize)]
struct ConfigReport {
    version: u64,
    #[serde(default)]
    settings: Option<Map<String, Value>>,
}

/// What the backend reads of a telemetry message: its battery, signal and error codes, when
/// it says.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TelemetryReading {
    /// Battery level, a fraction.
    #[serde(default)]
    pub battery: Option<f64>,
    /// Radio signal strength, dBm.
    #[serde(default)]
    pub rssi: Option<i32>,
    /// Error codes the device reports (an error burst), at most [`MAX_ERROR_CODES`] kept.
    #[serde(default)]
    pub errors: Option<Vec<u16>>,
    /// The sensor's reading.
    #[serde(default)]
    pub value: Option<f64>,
}

/// The most error codes kept of one report.
pub const MAX_ERROR_CODES: usize = 16;

impl TelemetryReading {
    /// The reading of `payload`, when it is a JSON object or a CBOR map that carries a
    /// plausible battery or signal (an implausible value is left out; anything else is the
    /// device's business).
    fn of(payload: &[u8]) -> Option<Self> {
        let mut reading = match payload.first()? {
            b'{' => serde_json::from_slice(payload).ok()?,
            // A CBOR map of definite length (major type 5).
            0xa0..=0xbb => Self::of_cbor(payload)?,
            _ => return None,
        };
        reading.battery = reading.battery.filter(|b| (0.0..=1.0).contains(b));
        reading.rssi = reading.rssi.filter(|r| (-150..=0).contains(r));
        reading.errors = reading.errors.filter(|codes| !codes.is_empty());
        if let Some(codes) = &mut reading.errors {
            codes.truncate(MAX_ERROR_CODES);
        }
        reading.value = reading.value.filter(|v| v.is_finite());
        (reading.says_status() || reading.value.is_some()).then_some(reading)
    }

    /// Whether it carries what a device's status keeps: a battery, a signal, error codes.
    pub fn says_status(&self) -> bool {
        self.battery.is_some() || self.rssi.is_some() || self.errors.is_some()
    }
}

impl TelemetryReading {
    /// `battery`, `rssi` and `errors` of a CBOR map with text keys; its other entries are
    /// skipped. `None` when it is not a well-formed map of that kind.
    fn of_cbor(payload: &[u8]) -> Option<Self> {
        use minicbor::data::Type;
        let mut d = minicbor::Decoder::new(payload);
        let pairs = d.map().ok()??;
        let mut reading = Self {
            battery: None,
            rssi: None,
            errors: None,
            value: None,
        };
        // Each pair takes two bytes at least: a longer count than the payload can hold is a
        // lie, and the loop ends at the first item that is not there.
        for _ in 0..pairs.min(payload.len() as u64 / 2) {
            let key = d.str().ok()?;
            match (key, d.datatype().ok()?) {
                ("battery", Type::F16 | Type::F32 | Type::F64) => reading.battery = Some(float(&mut d, payload)?),
                (
                    "rssi",
                    Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::U8 | Type::U16 | Type::U32 | Type::U64,
                ) => {
                    reading.rssi = i32::try_from(d.i64().ok()?).ok();
                }
                ("value", Type::F16 | Type::F32 | Type::F64) => reading.value = Some(float(&mut d, payload)?),
                ("errors", Type::Array) => {
                    let len = d.array().ok()??;
                    let mut codes = Vec::new();
                    // As for the map: an item takes a byte at least.
                    for _ in 0..len.min(payload.len() as u64) {
                        let code = u16::try_from(d.u64().ok()?).ok()?;
                        if codes.len() < MAX_ERROR_CODES {
                            codes.push(code);
                        }
                    }
                    reading.errors = Some(codes);
                }
                _ => d.skip().ok()?,
            }
        }
        Some(reading)
    }
}

/// The float at `d`'s position in `payload`, half, single or double precision (RFC 8949
/// allows a writer the shortest that holds the value).
fn float(d: &mut minicbor::Decoder<'_>, payload: &[u8]) -> Option<f64> {
    use minicbor::data::Type;
    match d.datatype().ok()? {
        Type::F16 => {
            let at = d.position();
            d.skip().ok()?;
            let bits = u16::from_be_bytes([*payload.get(at + 1)?, *payload.get(at + 2)?]);
            Some(half(bits))
        }
        Type::F32 => d.f32().ok().map(f64::from),
        Type::F64 => d.f64().ok(),
        _ => None,
    }
}

/// An IEEE 754 half-precision float's value.
fn half(bits: u16) -> f64 {
    let sign = if bits & 0x8000 == 0 { 1.0 } else { -1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let fraction = f64::from(bits & 0x3ff);
    sign * match exponent {
        0 => fraction * 2f64.powi(-24),
        31 if fraction == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1.0 + fraction / 1024.0) * 2f64.powi(exponent - 15),
    }
}

/// `.../status` payload; unknown keys are allowed so devices can add their own.
#[derive(Debug, Deserialize)]
struct StatusPayload {
    #[serde(default)]
    battery: Option<f64>,
    #[serde(default)]
    firmware: Option<String>,
    #[serde(default)]
    uptime_s: Option<u64>,
    #[serde(default)]
    rssi_dbm: Option<i32>,
}

impl StatusPayload {
    /// Values a real device could report: a battery level as a fraction, a short firmware
    /// version, an uptime under a century, a radio signal in dBm.
    fn is_plausible(&self) -> bool {
        const CENTURY_S: u64 = 100 * 365 * 86_400;
        self.uptime_s.is_none_or(|u| u < CENTURY_S)
            && self.battery.is_none_or(|b| (0.0..=1.0).contains(&b))
            && self.firmware.as_ref().is_none_or(|f| !f.is_empty() && f.len() <= 64)
            && self.rssi_dbm.is_none_or(|r| (-150..=0).contains(&r))
    }
}

impl From<StatusPayload> for DeviceStatus {
    fn from(status: StatusPayload) -> Self {
        Self {
            battery: status.battery,
            firmware: status.firmware,
            uptime_s: status.uptime_s,
            rssi_dbm: status.rssi_dbm,
            error_reports: 0,
            last_errors: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_payload_parses_or_is_refused() {
        let status = decode(&Inbound::Status, br#"{"battery": 0.5, "rssi_dbm": -80, "extra": 1}"#);
        assert!(matches!(
            status,
            Ok(Payload::Status(DeviceStatus { battery: Some(0.5), .. }))
        ));
        assert!(decode(&Inbound::Status, br#"{"battery": 1.5}"#).is_err());
        assert!(decode(&Inbound::Status, b"nope").is_err());
        assert_eq!(
            decode(&Inbound::ConfigReported, br#"{"version": 7}"#),
            Ok(Payload::ConfigReported {
                version: 7,
                settings: None
            })
        );
        assert!(decode(&Inbound::ConfigReported, br#"{"version": -7}"#).is_err());
        let with_settings = decode(
            &Inbound::ConfigReported,
            br#"{"version": 2, "settings": {"led": "on", "rate": 5, "eco": true}}"#,
        );
        assert!(
            matches!(&with_settings, Ok(Payload::ConfigReported { version: 2, settings: Some(s) }) if s.len() == 3),
            "{with_settings:?}"
        );
        for bad in [
            &br#"{"version": 2, "settings": {"led": {"on": 1}}}"#[..],
            br#"{"version": 2, "settings": {"led": null}}"#,
            br#"{"version": 2, "settings": ["led"]}"#,
        ] {
            assert!(
                decode(&Inbound::ConfigReported, bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let answer = decode(
            &Inbound::CommandResult { cmd_id: "c-1" },
            br#"{"status": "error", "output": "disk full"}"#,
        );
        assert!(matches!(answer, Ok(Payload::CommandResult { succeeded: false, .. })));
        assert!(decode(&Inbound::CommandResult { cmd_id: "c-1" }, br#"{"status": "maybe"}"#).is_err());
        let provision = decode(&Inbound::Provision { serial: "S" }, b"");
        assert_eq!(
            provision,
            Ok(Payload::Provision {
                model: None,
                firmware: None,
                csr: None,
            })
        );
        let with_csr = decode(
            &Inbound::Provision { serial: "S" },
            br#"{"model": "m", "csr": "PEM", "validity_s": 600}"#,
        );
        assert!(matches!(
            with_csr,
            Ok(Payload::Provision {
                csr: Some(CsrAsk {
                    validity_s: Some(600),
                    ..
                }),
                ..
            })
        ));
        assert!(decode(&Inbound::Provision { serial: "S" }, br#"{"validity_s": 600}"#).is_err());
        assert!(matches!(
            decode(&Inbound::CertRequest, br#"{"csr": "PEM"}"#),
            Ok(Payload::CertRequest(CsrAsk { validity_s: None, .. }))
        ));
        assert!(decode(&Inbound::CertRequest, br#"{"pem": "x"}"#).is_err());
        assert!(decode(&Inbound::Provision { serial: "S" }, br#"{"modle": "x"}"#).is_err());
        assert_eq!(
            decode(&Inbound::Telemetry, b"\xff\x00 anything"),
            Ok(Payload::Telemetry(None))
        );
        assert_eq!(
            decode(
                &Inbound::Telemetry,
                br#"{"seq":3,"battery":0.140,"rssi":-97,"value":21.5}"#
            ),
            Ok(Payload::Telemetry(Some(TelemetryReading {
                battery: Some(0.14),
                rssi: Some(-97),
                errors: None,
                value: Some(21.5),
            })))
        );
        assert_eq!(
            decode(&Inbound::Telemetry, br#"{"battery":7,"rssi":-97}"#),
            Ok(Payload::Telemetry(Some(TelemetryReading {
                battery: None,
                rssi: Some(-97),
                errors: None,
                value: None,
            }))),
            "an implausible battery is left out"
        );
        assert_eq!(
            decode(&Inbound::Telemetry, br#"{"battery":"low"}"#),
            Ok(Payload::Telemetry(None))
        );
        // CBOR: {"seq": 3, "battery": 0.25 (f32), "rssi": -97, "pad": h'0000'}.
        let cbor = [
            0xa4, 0x63, b's', b'e', b'q', 0x03, 0x67, b'b', b'a', b't', b't', b'e', b'r', b'y', 0xfa, 0x3e, 0x80, 0x00,
            0x00, 0x64, b'r', b's', b's', b'i', 0x38, 0x60, 0x63, b'p', b'a', b'd', 0x42, 0x00, 0x00,
        ];
        assert_eq!(
            decode(&Inbound::Telemetry, &cbor),
            Ok(Payload::Telemetry(Some(TelemetryReading {
                battery: Some(0.25),
                rssi: Some(-97),
                errors: None,
                value: None,
            })))
        );
        // Error codes, JSON and CBOR ({"errors": [17, 4242], "value": 21.5}), read alone.
        let codes = Some(TelemetryReading {
            battery: None,
            rssi: None,
            errors: Some(vec![17, 4242]),
            value: Some(21.5),
        });
        assert_eq!(
            decode(&Inbound::Telemetry, br#"{"seq":4,"errors":[17,4242],"value":21.5}"#),
            Ok(Payload::Telemetry(codes.clone()))
        );
        let cbor_codes = [
            0xa2, 0x66, b'e', b'r', b'r', b'o', b'r', b's', 0x82, 0x11, 0x19, 0x10, 0x92, 0x65, b'v', b'a', b'l', b'u',
            b'e', 0xf9, 0x4d, 0x60,
        ];
        assert_eq!(decode(&Inbound::Telemetry, &cbor_codes), Ok(Payload::Telemetry(codes)));
        assert_eq!(
            decode(&Inbound::Telemetry, br#"{"errors":[]}"#),
            Ok(Payload::Telemetry(None)),
            "no codes: nothing to read"
        );
        assert_eq!(
            decode(&Inbound::Telemetry, br#"{"errors":[70000]}"#),
            Ok(Payload::Telemetry(None)),
            "a code past 16 bits is not a reading"
        );
        assert_eq!((half(0x3c00), half(0xc000), half(0x0001)), (1.0, -2.0, 2f64.powi(-24)));
        assert!(half(0x7c00).is_infinite() && half(0x7e00).is_nan());
        for cut in 1..cbor_codes.len() {
            let _ = decode(&Inbound::Telemetry, &cbor_codes[..cut]);
        }
        for cut in 1..cbor.len() {
            // Truncated: read as far as it goes or not at all, never a panic.
            let _ = decode(&Inbound::Telemetry, &cbor[..cut]);
        }
        assert_eq!(
            decode(
                &Inbound::Telemetry,
                &[0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
            ),
            Ok(Payload::Telemetry(None)),
            "a map that claims more pairs than there are bytes"
        );
    }
}
