//! Telemetry: when a device reports and what it sends.
//!
//! Reports are spaced by a jittered interval, `T * f * (1 + U(-j, +j))` with
//! `T` the configured interval, `f` a stretch factor (the battery's low-power
//! factor) and `j` the jitter, so the mean spacing is `T * f` and its
//! standard deviation `T * f * j / sqrt(3)`; jitter keeps a fleet that booted
//! together from reporting in lockstep.
//!
//! The sensor value is a reflecting random walk on
//! [`VALUE_MIN`, `VALUE_MAX`]: each step adds `U(-VALUE_STEP, +VALUE_STEP)`
//! and folds back at the bounds. The step kernel is symmetric, so the walk
//! keeps the uniform distribution on the range stationary: a fleet started
//! with `initial_value` stays uniform, while each device's series stays
//! smooth like a real temperature reading.
//!
//! The payload is a compact JSON object padded to `payload_bytes` with a
//! `"pad"` string, so the bytes on the wire match the scenario's size; or, with
//! `format = "cbor"`, a CBOR map (RFC 8949) of the same readings padded with a
//! `"pad"` byte string ([`Telemetry::write_payload`] says what each carries).

use super::draw;
use rand_chacha::rand_core::Rng;
use std::fmt::Write as _;
use std::time::Duration;

/// Lower bound of the simulated sensor value.
pub const VALUE_MIN: f64 = 0.0;
/// Upper bound of the simulated sensor value.
pub const VALUE_MAX: f64 = 100.0;
/// Largest change of the sensor value in one report.
pub const VALUE_STEP: f64 = 1.0;

/// Length of `,"pad":""`: a pad field costs this much even when empty.
const PAD_OVERHEAD: usize = 9;

/// How a report is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// A compact JSON object.
    #[default]
    Json,
    /// A CBOR map with the same keys (RFC 8949).
    Cbor,
}

/// How a device reports telemetry.
#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    /// Base time between reports.
    pub interval: Duration,
    /// Relative jitter on each interval, a fraction in [0, 1].
    pub jitter: f64,
    /// Size each report is padded to, in bytes.
    pub payload_bytes: u32,
    /// MQTT QoS level the reports are published with (0, 1 or 2); carried
    /// for the transport, unused by the model itself.
    pub qos: u8,
    /// Duty-cycled: the device sleeps between reports holding no connection, and at each
    /// report wakes, connects with a clean session, publishes and disconnects. Otherwise it
    /// stays connected (a persistent session that also takes config, commands and updates).
    pub duty_cycle: bool,
    /// How long a duty-cycled device stays connected after it reports, taking what its
    /// server held for it (config, commands, updates: an LwM2M server's queue mode), before
    /// it sleeps; zero leaves at once.
    pub awake: Duration,
    /// How reports are encoded.
    pub format: PayloadFormat,
}

/// One telemetry sample, as rendered into a payload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading<'a> {
    /// Per-device sequence number of the report.
    pub seq: u64,
    /// Simulated time since the device was switched on.
    pub uptime: Duration,
    /// Battery level as a fraction, if the device has a battery.
    pub battery: Option<f64>,
    /// The battery's terminal voltage at that level, in volts.
    pub volts: Option<f64>,
    /// The level is below the battery's `low_at`: the device says so (`"low_battery":true`).
    pub low_battery: bool,
    /// The sensor value.
    pub value: f64,
    /// The radio's signal strength, dBm, if the model gives one (`link.signal`).
    pub rssi: Option<i16>,
    /// The firmware version it runs.
    pub firmware: &'a str,
    /// The error codes it reports (an error burst: `crate::model::faults`); none usually.
    pub errors: &'a [u16],
}

/// Appends UTF-8 text to a byte buffer, so payloads are formatted in place
/// without an intermediate String.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

impl Bytes<'_> {
    /// Appends an integer in decimal: a report's sequence number, signal and readings, written
    /// without core's formatting machinery, which cost a report more than writing all the rest.
    fn int(&mut self, n: impl itoa::Integer) {
        self.0.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }
}

impl Telemetry {
    /// Time until the next report: the interval stretched by `factor`
    /// (1.0 normally; a non-finite or non-positive factor counts as 1.0),
    /// then jittered by `jitter`.
    pub fn next_interval(&self, rng: &mut impl Rng, factor: f64) -> Duration {
        let base = if factor == 1.0 || !factor.is_finite() || factor <= 0.0 {
            self.interval
        } else {
            draw::secs(self.interval.as_secs_f64() * factor)
        };
        draw::jittered(rng, base, self.jitter)
    }

    /// Clears `out` and writes the report for `reading` in the model's format.
    ///
    /// JSON: `{"seq":..,"uptime_s":..,"battery":..,"volts":..,"low_battery":true,"rssi":..,
    /// "fw":"..","errors":[..],"value":..}` (battery, volts and rssi omitted when `None`,
    /// `low_battery` only when true, `fw` when known, `errors` only in an error burst,
    /// non-finite numbers written as `null`), padded to exactly `payload_bytes` when that is
    /// larger than the bare object.
    ///
    /// CBOR: a map of the same keys, `uptime_s` and `value` as 64-bit floats, `battery` and
    /// `volts` as 32-bit ones, `seq` and `rssi` as integers, `low_battery` as `true`, `errors`
    /// as an array of integers; padded to
    /// exactly `payload_bytes` with a `"pad"` byte string when that leaves room for one (five
    /// bytes or more past the bare map).
    pub fn write_payload(&self, out: &mut Vec<u8>, reading: &Reading) {
        match self.format {
            PayloadFormat::Json => self.write_json(out, reading),
            PayloadFormat::Cbor => self.write_cbor(out, reading),
        }
    }

    fn write_cbor(&self, out: &mut Vec<u8>, reading: &Reading) {
        out.clear();
        let pairs = 3
            + u8::from(reading.battery.is_some())
            + u8::from(reading.volts.is_some())
            + u8::from(reading.low_battery)
            + u8::from(reading.rssi.is_some())
            + u8::from(!reading.firmware.is_empty())
            + u8::from(!reading.errors.is_empty());
        // A map of at most 9 pairs: its header is one byte, whether the pad joins or not.
        out.push(0xa0 | pairs);
        cbor::text(out, "seq");
        cbor::int(out, i64::try_from(reading.seq).unwrap_or(i64::MAX));
        cbor::text(out, "uptime_s");
        cbor::f64(out, reading.uptime.as_secs_f64());
        if let Some(level) = reading.battery {
            cbor::text(out, "battery");
            cbor::f32(out, level as f32);
        }
        if let Some(volts) = reading.volts {
            cbor::text(out, "volts");
            cbor::f32(out, volts as f32);
        }
        if reading.low_battery {
            cbor::text(out, "low_battery");
            out.push(0xf5);
        }
        if let Some(rssi) = reading.rssi {
            cbor::text(out, "rssi");
            cbor::int(out, i64::from(rssi));
        }
        if !reading.firmware.is_empty() {
            cbor::text(out, "fw");
            cbor::text(out, reading.firmware);
        }
        if !reading.errors.is_empty() {
            cbor::text(out, "errors");
            cbor::array(out, reading.errors.len());
            for &code in reading.errors {
                cbor::int(out, i64::from(code));
            }
        }
        cbor::text(out, "value");
        cbor::f64(out, reading.value);
        let target = self.payload_bytes as usize;
        // The pad's key, then a byte string's header and its bytes.
        let room = target.saturating_sub(out.len() + 4);
        if room >= 1 {
            out[0] += 1;
            cbor::text(out, "pad");
            cbor::padding(out, room);
        }
    }

    fn write_json(&self, out: &mut Vec<u8>, reading: &Reading) {
        out.clear();
        let mut w = Bytes(out);
        // Writing into a Vec cannot fail, so the fmt::Results carry nothing.
        let _ = w.write_str("{\"seq\":");
        w.int(reading.seq);
        let _ = w.write_str(",\"uptime_s\":");
        number(&mut w, reading.uptime.as_secs_f64());
        if let Some(level) = reading.battery {
            let _ = w.write_str(",\"battery\":");
            number(&mut w, level);
        }
        if let Some(volts) = reading.volts {
            let _ = w.write_str(",\"volts\":");
            number(&mut w, volts);
        }
        if reading.low_battery {
            let _ = w.write_str(",\"low_battery\":true");
        }
        if let Some(rssi) = reading.rssi {
            let _ = w.write_str(",\"rssi\":");
            w.int(rssi);
        }
        if !reading.firmware.is_empty() {
            let _ = w.write_str(",\"fw\":");
            json_string(&mut w, reading.firmware);
        }
        if !reading.errors.is_empty() {
            let _ = w.write_str(",\"errors\":[");
            for (k, &code) in reading.errors.iter().enumerate() {
                if k > 0 {
                    let _ = w.write_char(',');
                }
                w.int(code);
            }
            let _ = w.write_char(']');
        }
        let _ = w.write_str(",\"value\":");
        number(&mut w, reading.value);
        let extra = (self.payload_bytes as usize).saturating_sub(out.len() + 1);
        if extra >= PAD_OVERHEAD {
            out.extend_from_slice(b",\"pad\":\"");
            out.resize(out.len() + extra - PAD_OVERHEAD, b'x');
            out.push(b'"');
        } else {
            // Too little room for a pad field: JSON whitespace fills the gap.
            out.resize(out.len() + extra, b' ');
        }
        out.push(b'}');
    }

    /// A first sensor value: uniform on [`VALUE_MIN`, `VALUE_MAX`), the
    /// walk's stationary distribution.
    pub fn initial_value(&self, rng: &mut impl Rng) -> f64 {
        VALUE_MIN + (VALUE_MAX - VALUE_MIN) * draw::unit(rng)
    }

    /// The next sensor value after `prev`: one step of the reflecting random
    /// walk (see the module notes). A `prev` outside the range is first
    /// clamped into it (NaN reads as the middle).
    pub fn draw_value(&self, rng: &mut impl Rng, prev: f64) -> f64 {
        let step = VALUE_STEP * (2.0 * draw::unit(rng) - 1.0);
        let start = if prev.is_nan() {
            (VALUE_MIN + VALUE_MAX) / 2.0
        } else {
            prev.clamp(VALUE_MIN, VALUE_MAX)
        };
        let v = start + step;
        // One fold suffices because a step is shorter than the range.
        let folded = if v > VALUE_MAX {
            2.0 * VALUE_MAX - v
        } else if v < VALUE_MIN {
            2.0 * VALUE_MIN - v
        } else {
            v
        };
        folded.clamp(VALUE_MIN, VALUE_MAX)
    }
}

/// The few CBOR items a report needs (RFC 8949, preferred serialization but for the pad's
/// length in two cases: see [`padding`]).
mod cbor {
    /// A major type's head with its argument, in the fewest bytes.
    fn head(out: &mut Vec<u8>, major: u8, value: u64) {
        let major = major << 5;
        match value {
            0..=23 => out.push(major | value as u8),
            24..=0xff => out.extend_from_slice(&[major | 24, value as u8]),
            0x100..=0xffff => {
                out.push(major | 25);
                out.extend_from_slice(&(value as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                out.push(major | 26);
                out.extend_from_slice(&(value as u32).to_be_bytes());
            }
            _ => {
                out.push(major | 27);
                out.extend_from_slice(&value.to_be_bytes());
            }
        }
    }

    /// The head of an array of `len` items.
    pub fn array(out: &mut Vec<u8>, len: usize) {
        head(out, 4, len as u64);
    }

    /// A text string.
    pub fn text(out: &mut Vec<u8>, text: &str) {
        head(out, 3, text.len() as u64);
        out.extend_from_slice(text.as_bytes());
    }

    /// An integer.
    pub fn int(out: &mut Vec<u8>, value: i64) {
        if value >= 0 {
            head(out, 0, value.unsigned_abs());
        } else {
            // -1 - n encodes as n.
            head(out, 1, (-1 - value).unsigned_abs());
        }
    }

    /// A 32-bit float.
    pub fn f32(out: &mut Vec<u8>, value: f32) {
        out.push(0xfa);
        out.extend_from_slice(&value.to_be_bytes());
    }

    /// A 64-bit float.
    pub fn f64(out: &mut Vec<u8>, value: f64) {
        out.push(0xfb);
        out.extend_from_slice(&value.to_be_bytes());
    }

    /// A byte string of zeros taking exactly `room` bytes with its head (`room` >= 1). The
    /// head takes 1, 2, 3 or 5 bytes as the length needs; when `room` falls just past what a
    /// shorter head can hold the longer head carries a length a shorter one could (valid
    /// CBOR, not the preferred form).
    pub fn padding(out: &mut Vec<u8>, room: usize) {
        match room {
            0 => {}
            1..=24 => out.push(0x40 | (room - 1) as u8),
            25..=257 => out.extend_from_slice(&[0x58, (room - 2) as u8]),
            258..=65_537 => {
                out.push(0x59);
                out.extend_from_slice(&((room - 3) as u16).to_be_bytes());
            }
            _ => {
                out.push(0x5a);
                out.extend_from_slice(&u32::try_from(room - 5).unwrap_or(u32::MAX).to_be_bytes());
            }
        }
        let len = match room {
            0 => 0,
            1..=24 => room - 1,
            25..=257 => room - 2,
            258..=65_537 => room - 3,
            _ => room - 5,
        };
        out.resize(out.len() + len, 0);
    }
}

/// Writes `text` as a JSON string: an update's version comes from the backend, and may hold
/// anything.
fn json_string(w: &mut Bytes<'_>, text: &str) {
    let _ = w.write_char('"');
    let mut rest = text;
    // What needs no escape is copied a run at a time (a firmware version: every report).
    while let Some(at) = rest.find(|c: char| c == '"' || c == '\\' || c < ' ') {
        let (plain, from) = rest.split_at(at);
        let _ = w.write_str(plain);
        let mut chars = from.chars();
        let _ = match chars.next() {
            Some('"') => w.write_str("\\\""),
            Some('\\') => w.write_str("\\\\"),
            Some(c) => write!(w, "\\u{:04x}", u32::from(c)),
            None => Ok(()),
        };
        rest = chars.as_str();
    }
    let _ = w.write_str(rest);
    let _ = w.write_char('"');
}

/// Writes a JSON number with millisecond-level precision (3 decimals), or
/// `null` for NaN and infinities, which JSON cannot carry.
///
/// In whole thousandths, as integers: core's `{:.3}` works on the float's exact binary value
/// and falls back on big-number arithmetic for many (a whole number among them), which cost a
/// QoS 0 report 4% of its CPU (docs/scale.md). The digits are `{:.3}`'s but where the float
/// lies within a rounding error of a tie (half a thousandth): that goes away from zero here.
/// A value that rounds to zero has no sign.
fn number(w: &mut Bytes<'_>, x: f64) {
    /// Thousandths from here up have no fraction left to round: `{:.3}` writes them.
    const WHOLE: f64 = 4_503_599_627_370_496.0; // 2^52
    let thousandths = (x * 1000.0).round();
    if thousandths.abs() < WHOLE {
        // In range: the cast is exact.
        let n = thousandths as i64;
        if n < 0 {
            w.0.push(b'-');
        }
        let n = n.unsigned_abs();
        w.int(n / 1000);
        // Three digits, each below 10: the casts are exact.
        let fraction = n % 1000;
        let digit = |place: u64| b'0' + (fraction / place % 10) as u8;
        w.0.extend_from_slice(&[b'.', digit(100), digit(10), digit(1)]);
    } else if x.is_finite() {
        let _ = write!(w, "{x:.3}");
    } else {
        let _ = w.write_str("null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{StreamId, device_rng};

    const N: usize = 100_000;

    fn telemetry(payload_bytes: u32) -> Telemetry {
        Telemetry {
            interval: Duration::from_secs(60),
            jitter: 0.2,
            payload_bytes,
            qos: 1,
            duty_cycle: false,
            awake: Duration::ZERO,
            format: PayloadFormat::Json,
        }
    }

    fn cbor(payload_bytes: u32) -> Telemetry {
        Telemetry {
            format: PayloadFormat::Cbor,
            ..telemetry(payload_bytes)
        }
    }

    fn reading(battery: Option<f64>) -> Reading<'static> {
        Reading {
            seq: 17,
            uptime: Duration::from_millis(123_456),
            battery,
            volts: None,
            low_battery: false,
            value: 21.5,
            rssi: None,
            firmware: "",
            errors: &[],
        }
    }

    #[test]
    fn interval_mean_and_bounds() {
        let t = telemetry(64);
        let mut rng = device_rng(3, 0, StreamId::TELEMETRY);
        for factor in [1.0, 1.5] {
            let base = t.interval.mul_f64(factor);
            let (lo, hi) = (base.mul_f64(0.8), base.mul_f64(1.2));
            let mut sum = 0.0;
            for _ in 0..N {
                let d = t.next_interval(&mut rng, factor);
                assert!(d >= lo && d <= hi, "{d:?}");
                sum += d.as_secs_f64();
            }
            // sd = T f j / sqrt(3); tolerance 5 SE around T f.
            let want = base.as_secs_f64();
            let se = want * 0.2 / 3f64.sqrt() / (N as f64).sqrt();
            assert!((sum / N as f64 - want).abs() < 5.0 * se, "factor {factor}");
        }
        let fixed = Telemetry {
            jitter: 0.0,
            ..t.clone()
        };
        assert_eq!(fixed.next_interval(&mut rng, 1.0), t.interval);
        assert_eq!(fixed.next_interval(&mut rng, f64::NAN), t.interval);
        assert_eq!(fixed.next_interval(&mut rng, f64::INFINITY), t.interval);
        assert_eq!(fixed.next_interval(&mut rng, 1e300), Duration::MAX);
    }

    #[test]
    fn payload_exact_sizes() {
        let mut out = Vec::new();
        for size in [64, 256, 1024] {
            for battery in [Some(0.873), None] {
                telemetry(0).write_payload(&mut out, &reading(battery));
                let bare = out.len();
                telemetry(size).write_payload(&mut out, &reading(battery));
                assert_eq!(out.len(), size as usize);
                assert_eq!(out.first(), Some(&b'{'));
                assert_eq!(out.last(), Some(&b'}'));
                let text = std::str::from_utf8(&out).unwrap();
                let padded = size as usize >= bare + PAD_OVERHEAD;
                assert_eq!(text.contains(",\"pad\":\"x"), padded, "{text}");
                assert_eq!(text.contains("\"battery\":0.873"), battery.is_some());
            }
        }
    }

    /// Numbers are written as `{:.3}` writes them, but for a float within a rounding error of
    /// a tie and a zero's sign: over a spread of magnitudes, signs and fractions, and the
    /// edges (zero, the last exact thousandth, what JSON cannot carry).
    #[test]
    fn numbers_have_three_decimals_as_format_writes_them() {
        let written = |x: f64| {
            let mut out = Vec::new();
            number(&mut Bytes(&mut out), x);
            String::from_utf8(out).expect("utf-8")
        };
        let mut rng = device_rng(9, 0, StreamId::TELEMETRY);
        let mut checked = 0;
        for _ in 0..N {
            let magnitude = 10f64.powi((rng.next_u32() % 12) as i32 - 4);
            let x = magnitude * (2.0 * draw::unit(&mut rng) - 1.0);
            let thousandths = x * 1000.0;
            let off_tie = (thousandths.fract().abs() - 0.5).abs();
            if off_tie < 1e-9 * thousandths.abs().max(1.0) || x.abs() < 0.0005 {
                continue; // a tie or a zero: below
            }
            assert_eq!(written(x), format!("{x:.3}"), "{x:e}");
            checked += 1;
        }
        assert!(checked > N / 2, "{checked} checked");
        for (x, text) in [
            (0.0, "0.000"),
            (-0.0, "0.000"),
            (-0.0004, "0.000"),
            (-0.0006, "-0.001"),
            (20.0, "20.000"),
            (21.5, "21.500"),
            (123.456, "123.456"),
            (0.05, "0.050"),
            (-97.25, "-97.250"),
            (1.2345, "1.235"),
            (4_503_599_627.5, "4503599627.500"),
            (1e13, "10000000000000.000"),
            (-1e300, &format!("{:.3}", -1e300)),
            (f64::NAN, "null"),
            (f64::INFINITY, "null"),
            (f64::NEG_INFINITY, "null"),
        ] {
            assert_eq!(written(x), text, "{x:e}");
        }
    }

    #[test]
    fn payload_bare_and_small_gaps() {
        let mut out = Vec::new();
        telemetry(0).write_payload(&mut out, &reading(Some(0.5)));
        let bare = r#"{"seq":17,"uptime_s":123.456,"battery":0.500,"value":21.500}"#;
        assert_eq!(std::str::from_utf8(&out).unwrap(), bare);
        // Sizes just above the bare object, where no pad field fits.
        for size in bare.len()..bare.len() + 12 {
            telemetry(size as u32).write_payload(&mut out, &reading(Some(0.5)));
            assert_eq!(out.len(), size);
            assert_eq!(out.last(), Some(&b'}'));
        }
        let low = Reading {
            low_battery: true,
            ..reading(Some(0.05))
        };
        telemetry(0).write_payload(&mut out, &low);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"seq":17,"uptime_s":123.456,"battery":0.050,"low_battery":true,"value":21.500}"#
        );
        let signal = Reading { rssi: Some(-97), ..low };
        telemetry(0).write_payload(&mut out, &signal);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"seq":17,"uptime_s":123.456,"battery":0.050,"low_battery":true,"rssi":-97,"value":21.500}"#
        );
        let odd = Reading {
            value: f64::NAN,
            battery: Some(f64::INFINITY),
            ..reading(None)
        };
        telemetry(0).write_payload(&mut out, &odd);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.ends_with(r#""battery":null,"value":null}"#), "{text}");
    }

    #[test]
    fn voltage_joins_the_battery_in_json() {
        let mut out = Vec::new();
        let reading = Reading {
            volts: Some(3.712),
            ..reading(Some(0.5))
        };
        telemetry(0).write_payload(&mut out, &reading);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"seq":17,"uptime_s":123.456,"battery":0.500,"volts":3.712,"value":21.500}"#
        );
    }

    #[test]
    fn the_firmware_joins_as_text_whatever_it_holds() {
        let mut out = Vec::new();
        let running = Reading {
            firmware: "1.4.2",
            ..reading(None)
        };
        telemetry(0).write_payload(&mut out, &running);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"seq":17,"uptime_s":123.456,"fw":"1.4.2","value":21.500}"#
        );
        // An error burst's codes, as an array.
        let failing = Reading {
            errors: &[17, 42],
            ..reading(None)
        };
        telemetry(0).write_payload(&mut out, &failing);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"seq":17,"uptime_s":123.456,"errors":[17,42],"value":21.500}"#
        );
        // A version the backend sent, quotes and all, still makes a JSON object.
        for firmware in [
            "2.0 \"beta\"\\\n",
            "\"\\\u{1}",
            "tab\there\u{1f}",
            "v\u{e9}rsion \u{2713}",
        ] {
            let odd = Reading {
                firmware,
                ..reading(None)
            };
            telemetry(96).write_payload(&mut out, &odd);
            let parsed: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
            assert_eq!(parsed["fw"], firmware);
            assert_eq!(out.len(), 96);
        }
    }

    /// Decodes a CBOR report with an independent decoder: its keys and values, in order.
    fn decoded(payload: &[u8]) -> Vec<(String, String)> {
        use minicbor::data::Type;
        let mut d = minicbor::Decoder::new(payload);
        let pairs = d.map().expect("a map").expect("of known length");
        let mut out = Vec::new();
        for _ in 0..pairs {
            let key = d.str().expect("a text key").to_owned();
            let value = match d.datatype().expect("a value") {
                Type::U8 | Type::U16 | Type::U32 | Type::U64 => d.u64().expect("uint").to_string(),
                Type::I8 | Type::I16 | Type::I32 | Type::I64 => d.i64().expect("int").to_string(),
                Type::F32 => format!("{:.3}", d.f32().expect("f32")),
                Type::F64 => format!("{:.3}", d.f64().expect("f64")),
                Type::Bool => d.bool().expect("bool").to_string(),
                Type::Bytes => format!("{} bytes", d.bytes().expect("bytes").len()),
                Type::String => d.str().expect("text").to_owned(),
                Type::Array => {
                    let len = d.array().expect("an array").expect("of known length");
                    let items: Vec<String> = (0..len).map(|_| d.u64().expect("uint").to_string()).collect();
                    items.join(",")
                }
                other => panic!("{key}: unexpected {other:?}"),
            };
            out.push((key, value));
        }
        assert_eq!(d.position(), payload.len(), "nothing after the map");
        out
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn cbor_reports_carry_the_same_readings() {
        let mut out = Vec::new();
        let full = Reading {
            volts: Some(3.35),
            low_battery: true,
            rssi: Some(-97),
            firmware: "0.9.4",
            errors: &[17, 4242],
            ..reading(Some(0.05))
        };
        cbor(0).write_payload(&mut out, &full);
        let want = pairs(&[
            ("seq", "17"),
            ("uptime_s", "123.456"),
            ("battery", "0.050"),
            ("volts", "3.350"),
            ("low_battery", "true"),
            ("rssi", "-97"),
            ("fw", "0.9.4"),
            ("errors", "17,4242"),
            ("value", "21.500"),
        ]);
        assert_eq!(decoded(&out), want);
        // Padded, with the errors in: still the exact size.
        cbor(128).write_payload(&mut out, &full);
        assert_eq!(out.len(), 128);
        let padded = decoded(&out);
        assert_eq!(padded[..9], want[..], "the readings, then the pad");
        assert_eq!(padded[9].0, "pad");
        cbor(0).write_payload(&mut out, &reading(None));
        let mains = pairs(&[("seq", "17"), ("uptime_s", "123.456"), ("value", "21.500")]);
        assert_eq!(decoded(&out), mains, "a mains device says no battery");
        assert!(out.len() < 48, "{} bytes: compact", out.len());
    }

    #[test]
    fn cbor_reports_are_padded_to_the_exact_size_at_every_length_head() {
        let mut out = Vec::new();
        let r = reading(Some(0.5));
        cbor(0).write_payload(&mut out, &r);
        let bare = out.len();
        // Too little room for a pad (key and head need five bytes): the bare map.
        for size in bare..bare + 5 {
            cbor(size as u32).write_payload(&mut out, &r);
            assert_eq!(out.len(), bare, "{size}");
        }
        // Every size where the pad's head changes length, and some between.
        let edges = [
            5, 6, 28, 29, 30, 31, 261, 262, 263, 65_540, 65_541, 65_542, 65_543, 70_000,
        ];
        for extra in edges {
            let size = bare + extra;
            cbor(size as u32).write_payload(&mut out, &r);
            assert_eq!(out.len(), size, "asked {size}");
            let fields = decoded(&out);
            assert_eq!(fields.last().map(|f| f.0.as_str()), Some("pad"), "{size}");
            assert_eq!(fields.len(), 5, "{size}: {fields:?}");
        }
    }

    #[test]
    fn value_walk_bounded_and_stationary() {
        let t = telemetry(64);
        let mut rng = device_rng(3, 1, StreamId::TELEMETRY);
        let mut v = t.draw_value(&mut rng, f64::NAN);
        for _ in 0..N {
            let next = t.draw_value(&mut rng, v);
            assert!((VALUE_MIN..=VALUE_MAX).contains(&next));
            assert!((next - v).abs() <= VALUE_STEP + 1e-12);
            v = next;
        }
        assert!((VALUE_MIN..=VALUE_MAX).contains(&t.draw_value(&mut rng, -1e9)));
        // Walkers started uniform stay uniform: mean of 20k walkers after
        // 50 steps within 5 SE of the midpoint, SE = range / sqrt(12 n).
        let n = 20_000;
        let mut sum = 0.0;
        for _ in 0..n {
            let mut v = t.initial_value(&mut rng);
            for _ in 0..50 {
                v = t.draw_value(&mut rng, v);
            }
            sum += v;
        }
        let se = (VALUE_MAX - VALUE_MIN) / (12.0 * n as f64).sqrt();
        assert!((sum / n as f64 - 50.0).abs() < 5.0 * se);
    }
}
