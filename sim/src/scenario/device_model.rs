//! Device model files: checks every value's range and builds the pure models of
//! [`crate::model`] that devices consult.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::faults::DEFAULT_OUT_OF_RANGE;
use crate::model::link::DEFAULT_CONNECT_TIMEOUT;
use crate::model::telemetry::{VALUE_MAX, VALUE_MIN};
use crate::model::{Backoff, Battery, Faults, Link, Ota, Renewal, Signal, Spell, Telemetry};

use super::decode::Source;
use super::error::{FileError, KeyPath};
use super::file::{
    BatterySection, CertificateSection, DeviceModelFile, FaultsSection, LinkSection, Lwm2mSection, MqttSection,
    OtaSection, ProtocolKind, SignalSection, SpellSection, TelemetrySection,
};
use super::units::DisplayDuration;

/// Reconnect backoff of a model that does not set one: 1 s doubling up to a minute.
const DEFAULT_BACKOFF: Backoff = Backoff {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(60),
    multiplier: 2.0,
};

/// The link of a model without `[link]`: it never drops (a year-long mean is forever for a
/// run), and reconnects after outages with the default backoff.
const ALWAYS_ONLINE: Link = Link {
    mean_online: Duration::from_secs(365 * 86_400),
    mean_offline: Duration::ZERO,
    reconnect: DEFAULT_BACKOFF,
    connect_timeout: DEFAULT_CONNECT_TIMEOUT,
    signal: None,
};

/// The longest connect timeout a model may set.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(600);

/// The largest telemetry payload a model may declare (an MQTT packet far below the limit of
/// any broker we drive).
const MAX_PAYLOAD_BYTES: u32 = 256 * 1024;

/// A validated device model.
#[derive(Debug, Clone)]
pub struct DeviceModel {
    /// The file it came from.
    pub file: PathBuf,
    /// Model name (the file name without `.toml`).
    pub name: String,
    /// What kind of device it is.
    pub description: Option<String>,
    /// Protocol the device speaks.
    pub protocol: ProtocolKind,
    /// Firmware it ships with.
    pub firmware: String,
    /// Prefix of its serials.
    pub serial_prefix: String,
    /// Reporting behaviour.
    pub telemetry: Telemetry,
    /// Battery, for battery-powered devices.
    pub battery: Option<Battery>,
    /// Connectivity and reconnect backoff.
    pub link: Link,
    /// OTA behaviour; `None` for devices that take no updates.
    pub ota: Option<Ota>,
    /// When its certificates expire and it renews them; `None` for certificates that last
    /// the CA's longest validity.
    pub certificate: Option<Renewal>,
    /// The registration lifetime an LwM2M device asks for, in simulated time.
    pub lifetime: Duration,
    /// The MQTT an MQTT device speaks.
    pub mqtt: MqttSpeech,
    /// What goes wrong inside it on its own (nothing, by default).
    pub faults: Faults,
}

/// The MQTT a device speaks (`[mqtt]`): 3.1.1 unless the model asks for 5, with its
/// keep-alive and MQTT 5's session expiry, topic alias and properties.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttSpeech {
    /// MQTT 5 (else 3.1.1).
    pub v5: bool,
    /// The keep-alive asked for in the CONNECT, seconds (0: none); the device pings when it
    /// has sent nothing for that long, as MQTT clients do.
    pub keep_alive_s: u16,
    /// MQTT 5: how long the broker keeps the session after the connection ends, real seconds.
    pub session_expiry_s: u32,
    /// MQTT 5: telemetry goes under a topic alias after its first message.
    pub topic_alias: bool,
    /// MQTT 5: the device connects with an empty client id, and the broker assigns one.
    pub assigned_client_id: bool,
    /// MQTT 5: user properties of the CONNECT and of every telemetry message.
    pub user_properties: Vec<(String, String)>,
    /// MQTT 5: the properties every telemetry message carries (message expiry, user
    /// properties), encoded once.
    pub telemetry_properties: Vec<u8>,
}

impl Default for MqttSpeech {
    fn default() -> Self {
        Self {
            v5: false,
            keep_alive_s: DEFAULT_KEEP_ALIVE_S,
            session_expiry_s: 0,
            topic_alias: false,
            assigned_client_id: false,
            user_properties: Vec::new(),
            telemetry_properties: Vec::new(),
        }
    }
}

/// The keep-alive an MQTT device asks for when its model names none, seconds.
pub const DEFAULT_KEEP_ALIVE_S: u16 = 60;

/// The most user properties a model may give, and the longest name or value.
const MAX_USER_PROPERTIES: usize = 16;
const MAX_USER_PROPERTY_BYTES: usize = 256;

/// The registration lifetime an LwM2M device asks for when its model names none: the
/// specification's default (OMA LwM2M 1.0, the registration interface's `lt`).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(86_400);

/// Parses and checks a device model file.
pub fn parse_model(file: &Path, text: &str) -> Result<DeviceModel, FileError> {
    let source = Source::parse(file, text)?;
    let raw: DeviceModelFile = source.decode()?;
    check_model(file, &source, raw)
}

fn check_model(file: &Path, source: &Source<'_>, raw: DeviceModelFile) -> Result<DeviceModel, FileError> {
    let err = |keys: &[&str], message: String| source.error(KeyPath::of(keys), message);

    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    if !is_name(&raw.name) {
        return Err(err(
            &["name"],
            format!("expected lowercase letters, digits and '-', found \"{}\"", raw.name),
        ));
    }
    if raw.name != stem {
        return Err(err(
            &["name"],
            format!(
                "\"{}\" must match the file name \"{stem}.toml\": scenarios find models by file name",
                raw.name
            ),
        ));
    }
    if raw.firmware.trim().is_empty() {
        return Err(err(
            &["firmware"],
            "expected a version like \"1.4.2\", found \"\"".to_owned(),
        ));
    }
    let serial_prefix = match raw.serial_prefix {
        Some(prefix) => prefix,
        None => default_prefix(&raw.name),
    };
    let prefix_ok = (1..=12).contains(&serial_prefix.len())
        && serial_prefix
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-');
    if !prefix_ok {
        return Err(err(
            &["serial_prefix"],
            format!("expected 1 to 12 of A-Z, 0-9 and '-', found \"{serial_prefix}\""),
        ));
    }

    let telemetry = check_telemetry(&err, raw.telemetry)?;
    let battery = raw.battery.map(|b| check_battery(&err, b)).transpose()?;
    let link = raw.link.map_or(Ok(ALWAYS_ONLINE), |l| check_link(&err, l))?;
    let ota = raw.ota.map(|o| check_ota(&err, o)).transpose()?;
    let certificate = raw.certificate.map(|c| check_certificate(&err, c)).transpose()?;
    if certificate.is_some() && telemetry.duty_cycle {
        return Err(err(
            &["certificate"],
            "a duty-cycled device holds no session to be sent its renewed certificate on; remove [certificate] or set duty_cycle = false".to_owned(),
        ));
    }

    let low = battery.as_ref().map_or(1.0, |b| b.low_interval_factor).clamp(1.0, 1e6);
    let longest_gap = telemetry.interval.mul_f64((1.0 + telemetry.jitter) * low);
    // A duty-cycled device updates its registration when it wakes to report.
    let asleep_up_to = telemetry.duty_cycle.then_some(longest_gap);
    let lifetime = check_lwm2m(&err, raw.protocol, asleep_up_to, raw.lwm2m)?;
    let mqtt = check_mqtt(&err, raw.protocol, raw.mqtt)?;
    let faults = match raw.faults {
        Some(f) => check_faults(&err, f, &telemetry)?,
        None => Faults::default(),
    };

    Ok(DeviceModel {
        file: file.to_owned(),
        name: raw.name,
        description: raw.description,
        protocol: raw.protocol,
        firmware: raw.firmware,
        serial_prefix,
        telemetry,
        battery,
        link,
        ota,
        certificate,
        lifetime,
        mqtt,
        faults,
    })
}

fn check_mqtt(
    err: &ErrorAt<'_>,
    protocol: ProtocolKind,
    section: Option<MqttSection>,
) -> Result<MqttSpeech, FileError> {
    let Some(section) = section else {
        return Ok(MqttSpeech::default());
    };
    if protocol != ProtocolKind::Mqtt {
        return Err(err(
            &["mqtt"],
            format!(
                "[mqtt] is for devices that speak mqtt; this model speaks {}",
                protocol.name()
            ),
        ));
    }
    let v5 = match section.version {
        None | Some(3) => false,
        Some(5) => true,
        Some(other) => {
            return Err(err(
                &["mqtt", "version"],
                format!("expected 3 (MQTT 3.1.1) or 5, found {other}"),
            ));
        }
    };
    let v5_only = [
        ("session_expiry", section.session_expiry.is_some()),
        ("topic_alias", section.topic_alias.is_some()),
        ("message_expiry", section.message_expiry.is_some()),
        ("user_properties", section.user_properties.is_some()),
        ("assigned_client_id", section.assigned_client_id.is_some()),
    ];
    if let Some((key, _)) = v5_only.iter().find(|(_, given)| *given && !v5) {
        return Err(err(
            &["mqtt", key],
            "an MQTT 5 property: set version = 5, or remove it".to_owned(),
        ));
    }
    let seconds = |key: &str, value: Option<super::values::DurationValue>| -> Result<Option<u32>, FileError> {
        value
            .map(|d| {
                u32::try_from(d.0.as_secs()).map_err(|_| {
                    err(
                        &["mqtt", key],
                        format!(
                            "expected at most {} (MQTT's largest interval), found \"{}\"",
                            DisplayDuration(Duration::from_secs(u64::from(u32::MAX))),
                            DisplayDuration(d.0)
                        ),
                    )
                })
            })
            .transpose()
    };
    let keep_alive_s = match section.keep_alive.map(|d| d.0) {
        None => DEFAULT_KEEP_ALIVE_S,
        Some(d) => match u16::try_from(d.as_secs()) {
            Ok(seconds) if d.subsec_nanos() == 0 => seconds,
            _ => {
                return Err(err(
                    &["mqtt", "keep_alive"],
                    format!(
                        "expected whole seconds from \"0s\" (none) to \"{}\" (MQTT's largest keep-alive), found \"{}\"",
                        DisplayDuration(Duration::from_secs(u64::from(u16::MAX))),
                        DisplayDuration(d)
                    ),
                ));
            }
        },
    };
    let session_expiry_s = seconds("session_expiry", section.session_expiry)?.unwrap_or(0);
    let message_expiry_s = seconds("message_expiry", section.message_expiry)?;
    if message_expiry_s == Some(0) {
        return Err(err(
            &["mqtt", "message_expiry"],
            "expected at least \"1s\" (omit it for messages that do not expire), found \"0s\"".to_owned(),
        ));
    }
    let user_properties: Vec<(String, String)> = section.user_properties.unwrap_or_default().into_iter().collect();
    let too_long = user_properties.iter().find(|(name, value)| {
        name.is_empty() || name.len() > MAX_USER_PROPERTY_BYTES || value.len() > MAX_USER_PROPERTY_BYTES
    });
    if user_properties.len() > MAX_USER_PROPERTIES || too_long.is_some() {
        return Err(err(
            &["mqtt", "user_properties"],
            format!(
                "expected at most {MAX_USER_PROPERTIES} properties, each a name of 1 to {MAX_USER_PROPERTY_BYTES} bytes and a value of at most {MAX_USER_PROPERTY_BYTES}"
            ),
        ));
    }
    let assigned_client_id = section.assigned_client_id.unwrap_or(false);
    if assigned_client_id && session_expiry_s > 0 {
        return Err(err(
            &["mqtt", "assigned_client_id"],
            "a device whose broker assigns its client id cannot resume a session under it: remove session_expiry, or assigned_client_id".to_owned(),
        ));
    }
    Ok(MqttSpeech {
        v5,
        keep_alive_s,
        session_expiry_s,
        topic_alias: section.topic_alias.unwrap_or(false),
        assigned_client_id,
        telemetry_properties: crate::transport::mqtt::telemetry_properties(message_expiry_s, &user_properties),
        user_properties,
    })
}

fn check_lwm2m(
    err: &ErrorAt<'_>,
    protocol: ProtocolKind,
    asleep_up_to: Option<Duration>,
    section: Option<Lwm2mSection>,
) -> Result<Duration, FileError> {
    let Some(section) = section else {
        return Ok(DEFAULT_LIFETIME);
    };
    if protocol != ProtocolKind::Coap {
        return Err(err(
            &["lwm2m"],
            format!(
                "[lwm2m] is for devices that speak coap; this model speaks {}",
                protocol.name()
            ),
        ));
    }
    let Some(lifetime) = section.lifetime else {
        return Ok(DEFAULT_LIFETIME);
    };
    // A duty-cycled device updates its registration when it wakes to report: the registration
    // must outlive the longest sleep (the interval, its jitter and a low battery's stretch),
    // with room to spare. An always-connected one updates on its own timer.
    if let Some(gap) = asleep_up_to
        && lifetime.0 < gap * 2
    {
        return Err(err(
            &["lwm2m", "lifetime"],
            format!(
                "expected at least twice the longest gap between two reports ({}), found \"{}\": a duty-cycled device updates its registration when it wakes to report",
                DisplayDuration(gap * 2),
                DisplayDuration(lifetime.0)
            ),
        ));
    }
    Ok(lifetime.0)
}

/// Builds a [`FileError`] about a key of the model file.
type ErrorAt<'a> = dyn Fn(&[&str], String) -> FileError + 'a;

fn check_telemetry(err: &ErrorAt<'_>, t: TelemetrySection) -> Result<Telemetry, FileError> {
    if t.interval.0.is_zero() {
        return Err(err(
            &["telemetry", "interval"],
            "expected a duration above zero, found \"0\"".to_owned(),
        ));
    }
    let jitter = t.jitter.map_or(0.0, |j| j.0);
    probability(jitter).map_err(|m| err(&["telemetry", "jitter"], m))?;
    if !(1..=MAX_PAYLOAD_BYTES).contains(&t.payload_bytes) {
        return Err(err(
            &["telemetry", "payload_bytes"],
            format!("expected 1 to {MAX_PAYLOAD_BYTES} bytes, found {}", t.payload_bytes),
        ));
    }
    let qos = t.qos.unwrap_or(1);
    if qos > 1 {
        return Err(err(&["telemetry", "qos"], format!("expected 0 or 1, found {qos}")));
    }
    let awake = t.awake.map_or(Duration::ZERO, |a| a.0);
    if !awake.is_zero() && !t.duty_cycle {
        return Err(err(
            &["telemetry", "awake"],
            "awake is how long a duty-cycled device stays connected after it reports; set duty_cycle = true or remove awake".to_owned(),
        ));
    }
    if awake >= t.interval.0 {
        return Err(err(
            &["telemetry", "awake"],
            format!(
                "expected less than the interval ({}), found {}",
                DisplayDuration(t.interval.0),
                DisplayDuration(awake)
            ),
        ));
    }
    Ok(Telemetry {
        interval: t.interval.0,
        jitter,
        payload_bytes: t.payload_bytes,
        qos,
        duty_cycle: t.duty_cycle,
        awake,
        format: t.format.unwrap_or_default(),
    })
}

/// The most error codes a burst reports.
const MAX_ERROR_CODES: usize = 8;

/// The largest clock drift a model may set: a crystal a thousand times worse than a
/// watch's, and ten times worse than the cheapest RC oscillator a device boots on.
const MAX_CLOCK_DRIFT_PPM: f64 = 10_000.0;

fn check_faults(err: &ErrorAt<'_>, f: FaultsSection, telemetry: &Telemetry) -> Result<Faults, FileError> {
    let spell = |key: &str, s: Option<SpellSection>| -> Result<Option<Spell>, FileError> {
        let Some(s) = s else { return Ok(None) };
        if s.lasts.0.is_zero() {
            return Err(err(
                &["faults", key, "lasts"],
                "expected a duration above zero, found \"0\"".to_owned(),
            ));
        }
        if s.every.0 <= s.lasts.0 {
            return Err(err(
                &["faults", key, "every"],
                format!(
                    "expected longer than lasts ({}), found \"{}\": it is the mean time between the fault's starts",
                    DisplayDuration(s.lasts.0),
                    DisplayDuration(s.every.0)
                ),
            ));
        }
        Ok(Some(Spell {
            every: s.every.0,
            lasts: s.lasts.0,
        }))
    };
    let out_of_range_value = f.out_of_range_value.unwrap_or(DEFAULT_OUT_OF_RANGE);
    if !out_of_range_value.is_finite() || (VALUE_MIN..=VALUE_MAX).contains(&out_of_range_value) {
        return Err(err(
            &["faults", "out_of_range_value"],
            format!(
                "expected a number outside the sensor's range {VALUE_MIN} to {VALUE_MAX}, found {out_of_range_value}"
            ),
        ));
    }
    let codes = f.error_codes.unwrap_or_default();
    if codes.len() > MAX_ERROR_CODES {
        return Err(err(
            &["faults", "error_codes"],
            format!("expected at most {MAX_ERROR_CODES} codes, found {}", codes.len()),
        ));
    }
    let error_codes = codes
        .iter()
        .map(|&code| {
            u16::try_from(code).ok().filter(|&c| c > 0).ok_or_else(|| {
                err(
                    &["faults", "error_codes"],
                    format!("expected codes from 1 to 65535, found {code}"),
                )
            })
        })
        .collect::<Result<Vec<u16>, FileError>>()?;
    let watchdog_every = match f.watchdog_reset {
        Some(w) if w.every.0.is_zero() => {
            return Err(err(
                &["faults", "watchdog_reset", "every"],
                "expected a duration above zero, found \"0\"".to_owned(),
            ));
        }
        Some(_) if telemetry.duty_cycle => {
            return Err(err(
                &["faults", "watchdog_reset"],
                "a duty-cycled device holds no connection for a reset to drop; remove watchdog_reset or set duty_cycle = false".to_owned(),
            ));
        }
        Some(w) => Some(w.every.0),
        None => None,
    };
    let clock_drift_ppm = f.clock_drift_ppm.unwrap_or(0.0);
    if !(0.0..=MAX_CLOCK_DRIFT_PPM).contains(&clock_drift_ppm) {
        return Err(err(
            &["faults", "clock_drift_ppm"],
            format!("expected 0 to {MAX_CLOCK_DRIFT_PPM} parts per million, found {clock_drift_ppm}"),
        ));
    }
    Ok(Faults {
        stuck_sensor: spell("stuck_sensor", f.stuck_sensor)?,
        out_of_range: spell("out_of_range", f.out_of_range)?,
        out_of_range_value,
        error_burst: spell("error_burst", f.error_burst)?,
        error_codes,
        watchdog_every,
        clock_drift_ppm,
    })
}

fn check_battery(err: &ErrorAt<'_>, b: BatterySection) -> Result<Battery, FileError> {
    positive(b.capacity_mah).map_err(|m| err(&["battery", "capacity_mah"], m))?;
    non_negative(b.sleep_ua).map_err(|m| err(&["battery", "sleep_ua"], m))?;
    non_negative(b.tx_mas).map_err(|m| err(&["battery", "tx_mas"], m))?;
    let low_at = b.low_at.map_or(0.1, |l| l.0);
    if !(0.0..1.0).contains(&low_at) {
        return Err(err(
            &["battery", "low_at"],
            format!("expected 0% to 99%, found {}", pct(low_at)),
        ));
    }
    let factor = b.low_interval_factor.unwrap_or(1.0);
    if !(1.0..=100.0).contains(&factor) {
        return Err(err(
            &["battery", "low_interval_factor"],
            format!("expected 1 to 100, found {factor}"),
        ));
    }
    let volts = match b.volts {
        Some(v) => {
            if !(v.empty > 0.0 && v.empty < v.full && v.full <= 60.0) {
                return Err(err(
                    &["battery", "volts"],
                    format!(
                        "expected 0 < empty < full <= 60 volts, found full = {}, empty = {}",
                        v.full, v.empty
                    ),
                ));
            }
            (v.full, v.empty)
        }
        None => (4.2, 3.3),
    };
    Ok(Battery {
        capacity_mah: b.capacity_mah,
        sleep_ua: b.sleep_ua,
        tx_mas: b.tx_mas,
        low_at,
        low_interval_factor: factor,
        volts,
    })
}

fn check_link(err: &ErrorAt<'_>, l: LinkSection) -> Result<Link, FileError> {
    if l.mean_online.0.is_zero() {
        return Err(err(
            &["link", "mean_online"],
            "expected a duration above zero, found \"0\"".to_owned(),
        ));
    }
    let reconnect = match l.reconnect {
        None => DEFAULT_BACKOFF,
        Some(r) => {
            if r.initial.0.is_zero() {
                return Err(err(
                    &["link", "reconnect", "initial"],
                    "expected a duration above zero, found \"0\"".to_owned(),
                ));
            }
            if r.max.0 < r.initial.0 {
                return Err(err(
                    &["link", "reconnect", "max"],
                    format!(
                        "expected a duration at least as long as initial ({}), found \"{}\"",
                        DisplayDuration(r.initial.0),
                        DisplayDuration(r.max.0)
                    ),
                ));
            }
            if !(1.0..=10.0).contains(&r.multiplier) {
                return Err(err(
                    &["link", "reconnect", "multiplier"],
                    format!("expected 1.0 to 10.0, found {}", r.multiplier),
                ));
            }
            Backoff {
                initial: r.initial.0,
                max: r.max.0,
                multiplier: r.multiplier,
            }
        }
    };
    let connect_timeout = l.connect_timeout.map_or(DEFAULT_CONNECT_TIMEOUT, |t| t.0);
    if connect_timeout.is_zero() || connect_timeout > MAX_CONNECT_TIMEOUT {
        return Err(err(
            &["link", "connect_timeout"],
            format!(
                "expected a duration from 1ms to 10m, found \"{}\"",
                DisplayDuration(connect_timeout)
            ),
        ));
    }
    Ok(Link {
        mean_online: l.mean_online.0,
        mean_offline: l.mean_offline.0,
        reconnect,
        connect_timeout,
        signal: l.signal.map(|signal| check_signal(err, signal)).transpose()?,
    })
}

fn check_signal(err: &ErrorAt<'_>, signal: SignalSection) -> Result<Signal, FileError> {
    if !(-140.0..=-20.0).contains(&signal.mean) {
        return Err(err(
            &["link", "signal", "mean"],
            format!(
                "expected a signal strength from -140 to -20 (dBm), found {}",
                signal.mean
            ),
        ));
    }
    if !(0.0..=60.0).contains(&signal.spread) {
        return Err(err(
            &["link", "signal", "spread"],
            format!("expected 0 to 60 (dB), found {}", signal.spread),
        ));
    }
    Ok(Signal {
        mean_dbm: signal.mean,
        spread_db: signal.spread,
    })
}

fn check_ota(err: &ErrorAt<'_>, o: OtaSection) -> Result<Ota, FileError> {
    positive(o.download_kbps).map_err(|m| err(&["ota", "download_kbps"], m))?;
    for (key, value) in [
        ("interrupt", o.interrupt.0),
        ("corrupt", o.corrupt.0),
        ("boot_fail", o.boot_fail.0),
        ("brick", o.brick.0),
    ] {
        probability(value).map_err(|m| err(&["ota", key], m))?;
    }
    if o.interrupt.0 >= 1.0 {
        return Err(err(
            &["ota", "interrupt"],
            "expected below 100%: every download would fail".to_owned(),
        ));
    }
    Ok(Ota {
        download_kbps: o.download_kbps,
        interrupt: o.interrupt.0,
        corrupt: o.corrupt.0,
        boot_fail: o.boot_fail.0,
        brick: o.brick.0,
        delivery: o.delivery,
    })
}

/// The longest certificate validity a model may ask for: what the CA/Browser Forum allows a
/// TLS certificate, and the reference backend's ceiling.
const MAX_VALIDITY: Duration = Duration::from_secs(397 * 86_400);

fn check_certificate(err: &ErrorAt<'_>, c: CertificateSection) -> Result<Renewal, FileError> {
    if c.validity.0 < Duration::from_secs(1) || c.validity.0 > MAX_VALIDITY {
        return Err(err(
            &["certificate", "validity"],
            format!(
                "expected a duration from 1s to 397d, found \"{}\"",
                DisplayDuration(c.validity.0)
            ),
        ));
    }
    let renew_at = c.renew_at.map_or(Renewal::DEFAULT_RENEW_AT, |r| r.0);
    if !(0.01..=0.95).contains(&renew_at) {
        return Err(err(
            &["certificate", "renew_at"],
            format!(
                "expected 1% to 95% of the validity (time left to ask again before expiry), found {}",
                pct(renew_at)
            ),
        ));
    }
    Ok(Renewal {
        validity: c.validity.0,
        renew_at,
    })
}

/// Model and group names: what can safely appear in topics, paths and serials.
pub(super) fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
}

/// Initials of the dash-separated words, or the first two letters of a one-word name.
fn default_prefix(name: &str) -> String {
    let words: Vec<&str> = name.split('-').filter(|w| !w.is_empty()).collect();
    let prefix: String = if words.len() > 1 {
        words.iter().filter_map(|w| w.chars().next()).collect()
    } else {
        name.chars().take(2).collect()
    };
    prefix.to_ascii_uppercase()
}

/// A percentage as written in messages.
pub(super) fn pct(fraction: f64) -> String {
    super::units::format_percent(fraction)
}

/// Checks a probability lies in [0%, 100%].
pub(super) fn probability(value: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(format!("expected 0% to 100%, found {}", pct(value)))
    }
}

fn positive(value: f64) -> Result<(), String> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(format!("expected a number above zero, found {value}"))
    }
}

fn non_negative(value: f64) -> Result<(), String> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(format!("expected zero or a positive number, found {value}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_come_from_the_name() {
        assert_eq!(default_prefix("temp-sensor"), "TS");
        assert_eq!(default_prefix("camera"), "CA");
        assert_eq!(default_prefix("ev-charger-dc"), "ECD");
    }

    /// `[mqtt] keep_alive`: 60 s unless a model says otherwise, 0 for none, whole seconds
    /// (the bad values are in tests/bad_files.rs).
    #[test]
    fn an_mqtt_keep_alive_is_the_models_or_a_minute() {
        let model = |mqtt: &str| {
            let text = format!(
                "name = \"m\"\nprotocol = \"mqtt\"\nfirmware = \"1\"\n[telemetry]\ninterval = \"1m\"\npayload_bytes = 8\n{mqtt}"
            );
            parse_model(Path::new("m.toml"), &text).map(|m| m.mqtt.keep_alive_s)
        };
        assert_eq!(model("").ok(), Some(60));
        assert_eq!(model("[mqtt]\nversion = 5\n").ok(), Some(60));
        assert_eq!(model("[mqtt]\nkeep_alive = \"20m\"\n").ok(), Some(1200));
        assert_eq!(model("[mqtt]\nkeep_alive = \"0s\"\n").ok(), Some(0));
        assert!(model("[mqtt]\nkeep_alive = \"1500ms\"\n").is_err());
    }

    #[test]
    fn names_are_topic_safe() {
        assert!(is_name("smart-meter"));
        assert!(!is_name("Smart Meter"));
        assert!(!is_name("a/b"));
        assert!(!is_name(""));
    }
}
