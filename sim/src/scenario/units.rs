//! The one place where unit strings become numbers: durations (`"90s"`, `"1h30m"`), sizes
//! (`"512KiB"`, `"2MB"`), rates (`"500/s"`) and percentages (`"2%"`).
//!
//! Every parser returns a [`UnitError`] whose message says what was expected and what was
//! found, so a file error can name the culprit without knowing which unit was involved.
//! Past this module durations are `Duration`, sizes are bytes, rates are per second and
//! percentages are fractions in `[0, 1]` (or more, for ratios such as `"150%"`).

use std::fmt;
use std::time::Duration;

/// A unit string that did not parse: what kind of value was expected, and the text found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, found \"{found}\"")]
pub struct UnitError {
    /// What the value should look like, e.g. `a duration like "30s"`.
    pub expected: &'static str,
    /// The text that was found instead.
    pub found: String,
}

/// What a duration looks like, for error messages and the JSON schema.
pub const DURATION_EXPECTED: &str = "a duration like \"30s\", \"250ms\", \"5m\", \"6h\" or \"3d\"";
/// What a size looks like.
pub const SIZE_EXPECTED: &str = "a size like \"512KiB\", \"2MB\" or \"64B\"";
/// What a rate looks like.
pub const RATE_EXPECTED: &str = "a rate like \"500/s\", \"30/m\" or \"100/h\"";
/// What a percentage looks like.
pub const PERCENT_EXPECTED: &str = "a percentage like \"2%\" or \"0.01%\"";

/// The longest duration we accept: 100 years, far past any run or model time, and small
/// enough that arithmetic on it can never overflow `Duration`.
const MAX_DURATION_SECS: f64 = 100.0 * 365.0 * 86_400.0;

/// Parses a duration: one or more `<number><unit>` groups with units `us`, `ms`, `s`, `m`,
/// `h`, `d` (`"90s"`, `"1.5s"`, `"1h30m"`), or a bare `"0"`.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let fail = || UnitError {
        expected: DURATION_EXPECTED,
        found: text.to_owned(),
    };
    let trimmed = text.trim();
    if trimmed == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = trimmed;
    let mut total_secs = 0.0;
    if rest.is_empty() {
        return Err(fail());
    }
    while !rest.is_empty() {
        let (number, after_number) = split_number(rest).ok_or_else(fail)?;
        let unit_len = after_number
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after_number.len());
        let (unit, after_unit) = after_number.split_at(unit_len);
        let secs_per_unit = match unit {
            "us" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3_600.0,
            "d" => 86_400.0,
            _ => return Err(fail()),
        };
        total_secs += number * secs_per_unit;
        rest = after_unit;
    }
    if !(0.0..=MAX_DURATION_SECS).contains(&total_secs) {
        return Err(fail());
    }
    Ok(Duration::from_secs_f64(total_secs))
}

/// Parses a size in bytes: a number and a unit, `B`, decimal `kB`/`KB`/`MB`/`GB` or binary
/// `KiB`/`MiB`/`GiB`. Fractions round to the nearest byte (`"1.5KiB"` is 1536).
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let fail = || UnitError {
        expected: SIZE_EXPECTED,
        found: text.to_owned(),
    };
    let (number, unit) = split_number(text.trim()).ok_or_else(fail)?;
    let multiplier: f64 = match unit.trim_start() {
        "B" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(fail()),
    };
    let bytes = (number * multiplier).round();
    // 2^53 keeps the float exact and is far beyond any firmware image or payload.
    if !(0.0..=9_007_199_254_740_992.0).contains(&bytes) {
        return Err(fail());
    }
    Ok(bytes as u64)
}

/// Parses a rate into events per second: `"500/s"`, `"30/m"`, `"100/h"`, `"2.5/s"`.
pub fn parse_rate(text: &str) -> Result<f64, UnitError> {
    let fail = || UnitError {
        expected: RATE_EXPECTED,
        found: text.to_owned(),
    };
    let (number, unit) = split_number(text.trim()).ok_or_else(fail)?;
    let per_secs = match unit.trim_start() {
        "/s" => 1.0,
        "/m" => 60.0,
        "/h" => 3_600.0,
        _ => return Err(fail()),
    };
    Ok(number / per_secs)
}

/// Parses a percentage into a fraction: `"2%"` is 0.02. Values above 100% parse (a ratio
/// may exceed one); callers that need a probability check the range themselves.
pub fn parse_percent(text: &str) -> Result<f64, UnitError> {
    let fail = || UnitError {
        expected: PERCENT_EXPECTED,
        found: text.to_owned(),
    };
    let (number, unit) = split_number(text.trim()).ok_or_else(fail)?;
    if unit.trim_start() != "%" {
        return Err(fail());
    }
    Ok(number / 100.0)
}

/// Splits a leading non-negative decimal number (`12`, `0.5`, `.5` is refused) off `text`.
fn split_number(text: &str) -> Option<(f64, &str)> {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (digits, rest) = text.split_at(end);
    if !digits.starts_with(|c: char| c.is_ascii_digit()) || digits.ends_with('.') {
        return None;
    }
    let number: f64 = digits.parse().ok()?;
    number.is_finite().then_some((number, rest))
}

/// Formats a duration the way files write it, shortest exact form first (`"1h30m"`,
/// `"250ms"`, `"1.5s"`), for tables and messages.
pub fn format_duration(duration: Duration) -> String {
    DisplayDuration(duration).to_string()
}

/// A `Duration` that displays in file notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisplayDuration(pub Duration);

impl fmt::Display for DisplayDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return f.write_str("0s");
        }
        if d.subsec_nanos() == 0 {
            let mut secs = d.as_secs();
            for (unit, unit_secs) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
                if secs >= unit_secs {
                    write!(f, "{}{unit}", secs / unit_secs)?;
                    secs %= unit_secs;
                }
            }
            if secs > 0 {
                write!(f, "{secs}s")?;
            }
            return Ok(());
        }
        if d < Duration::from_millis(1) {
            return write!(f, "{}us", trim_float(d.as_secs_f64() * 1e6));
        }
        if d < Duration::from_secs(1) {
            return write!(f, "{}ms", trim_float(d.as_secs_f64() * 1e3));
        }
        write!(f, "{}s", trim_float(d.as_secs_f64()))
    }
}

/// Formats a float with at most three decimals and no trailing zeros.
fn trim_float(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Formats a fraction as a percentage with no trailing zeros (`0.0001` is `"0.01%"`).
pub fn format_percent(fraction: f64) -> String {
    let text = format!("{:.4}", fraction * 100.0);
    format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
}

/// Formats a byte count in the largest binary unit that keeps it readable.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size {
            return format!("{}{unit}", trim_float(bytes as f64 / size as f64));
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit() {
        let cases = [
            ("90s", Duration::from_secs(90)),
            ("5m", Duration::from_secs(300)),
            ("6h", Duration::from_secs(6 * 3600)),
            ("3d", Duration::from_secs(3 * 86_400)),
            ("250ms", Duration::from_millis(250)),
            ("1.5s", Duration::from_millis(1500)),
            ("1h30m", Duration::from_secs(5400)),
            ("500us", Duration::from_micros(500)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_durations_say_what_was_expected() {
        for text in ["thirty", "", "30", "30 s", "-5s", "5x", "s", "1.s", ".5s", "1e3s"] {
            let err = parse_duration(text).expect_err(text);
            assert_eq!(err.found, text);
            assert_eq!(err.expected, DURATION_EXPECTED);
        }
        assert!(parse_duration("99999999999d").is_err(), "absurd durations are refused");
    }

    #[test]
    fn sizes_parse_decimal_and_binary_units() {
        assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert_eq!(parse_size("64B"), Ok(64));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("3kB"), Ok(3000));
        assert!(parse_size("12").is_err());
        assert!(parse_size("12 parsecs").is_err());
    }

    #[test]
    fn rates_are_per_second() {
        assert_eq!(parse_rate("500/s"), Ok(500.0));
        assert_eq!(parse_rate("30/m"), Ok(0.5));
        assert_eq!(parse_rate("7200/h"), Ok(2.0));
        assert!(parse_rate("500").is_err());
        assert!(parse_rate("500/week").is_err());
    }

    #[test]
    fn percentages_are_fractions() {
        assert_eq!(parse_percent("2%"), Ok(0.02));
        assert_eq!(parse_percent("0.01%"), Ok(0.0001));
        assert_eq!(parse_percent("150%"), Ok(1.5));
        assert!(parse_percent("0.5").is_err());
        assert!(parse_percent("%").is_err());
    }

    #[test]
    fn durations_format_back_to_file_notation() {
        for text in ["90s", "5m", "1h30m", "3d", "250ms", "1.5s", "500us", "0s"] {
            let parsed = parse_duration(text).expect("valid");
            let formatted = format_duration(parsed);
            let canonical = match text {
                "90s" => "1m30s",
                other => other,
            };
            assert_eq!(formatted, canonical);
            assert_eq!(parse_duration(&formatted), Ok(parsed), "round trip of {text}");
        }
    }

    #[test]
    fn percent_and_size_format() {
        assert_eq!(format_percent(0.0001), "0.01%");
        assert_eq!(format_percent(0.2), "20%");
        assert_eq!(format_size(512 * 1024), "512KiB");
        assert_eq!(format_size(64), "64B");
        assert_eq!(format_size(1536), "1.5KiB");
    }
}
