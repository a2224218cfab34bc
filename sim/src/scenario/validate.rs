//! Scenario files: checks ranges, cross-field rules (shares that sum to one, arrivals that end
//! before the run does) and cross-file rules (the mix names models that exist and speak the
//! backend's protocol), and builds the typed [`Scenario`]. Phases are checked in
//! [`super::check_phase`]; the `[backend]` keys by the dialect of its kind, through
//! [`BackendKeys`], which also refuses a kind no dialect runs yet.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::check_phase::check_phase;
use super::decode::Source;
use super::device_model::is_name;
use super::error::{FileError, KeyPath};
use super::file::{BackendKind, BackendSection, CredentialKind, FleetSection, ScenarioFile, TlsSection};
use super::gate::{Gate, GateError, parse_gate};
use super::typed::{AddrBlock, Arrival, Backend, Fleet, MixEntry, ModelSet, Scenario};
use super::units::DisplayDuration;

/// The most devices one scenario may plan: far past what one machine runs, and small enough
/// that every per-device figure fits comfortably in memory-free arithmetic.
const MAX_DEVICES: u64 = 100_000_000;
/// The longest run a scenario may ask for.
const MAX_RUN: Duration = Duration::from_secs(30 * 86_400);
/// The wake-up grid when a scenario names none ([`Scenario::wake_grid`]): on the 2-core
/// machine it took the CPU per message of 19,000 busy meters from 25.4 to 18.0 µs
/// (docs/scale.md).
const DEFAULT_WAKE_GRID: Duration = Duration::from_millis(4);
/// The coarsest wake-up grid a scenario may ask for.
const MAX_WAKE_GRID: Duration = Duration::from_millis(100);
/// Shares must sum to one within this (files write decimals).
const SHARE_TOLERANCE: f64 = 1e-6;

/// Checks the keys of a `[backend]` section beyond their syntax: whether its kind runs, and
/// the keys each kind takes. The dialects know (`crate::dialect::Registry`); this module
/// does not, so whoever loads a scenario says who checks.
pub trait BackendKeys {
    /// Checks `section`; an error names the key and what is expected.
    fn check(&self, section: &BackendSection) -> Result<(), KeyError>;

    /// Why the backend `section` configures cannot give `metric` (a gate's metric without its
    /// statistic), if it cannot: a gate on it is refused.
    fn ungiven(&self, section: &BackendSection, metric: &str) -> Option<&'static str> {
        let _ = (section, metric);
        None
    }
}

/// A key of `[backend]` and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// The key.
    pub key: &'static str,
    /// Which item of the key's list, for a list.
    pub index: Option<usize>,
    /// What is wrong and what is expected.
    pub message: String,
}

impl KeyError {
    /// An error in `key`.
    pub fn new(key: &'static str, message: impl Into<String>) -> Self {
        Self {
            key,
            index: None,
            message: message.into(),
        }
    }

    /// An error in item `index` of list `key`.
    pub fn at(key: &'static str, index: usize, message: impl Into<String>) -> Self {
        Self {
            index: Some(index),
            ..Self::new(key, message)
        }
    }
}

/// Checks a decoded scenario against itself, its models, and the dialect of its backend
/// (through `keys`).
pub fn check_scenario(
    source: &Source<'_>,
    raw: ScenarioFile,
    models_dir: PathBuf,
    models: &ModelSet,
    keys: &dyn BackendKeys,
) -> Result<Scenario, FileError> {
    let err = |keys: &[&str], message: String| source.error(KeyPath::of(keys), message);

    let s = raw.scenario;
    let name_ok = !s.name.is_empty()
        && s.name.len() <= 64
        && s.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !name_ok {
        return Err(err(
            &["scenario", "name"],
            format!(
                "expected letters, digits, '-', '_' or '.' (it names the report folder), found \"{}\"",
                s.name
            ),
        ));
    }
    if s.duration.0.is_zero() || s.duration.0 > MAX_RUN {
        return Err(err(
            &["scenario", "duration"],
            format!(
                "expected a duration from 1s to 30d, found \"{}\"",
                DisplayDuration(s.duration.0)
            ),
        ));
    }
    let duration = s.duration.0;
    let time_scale = s.time_scale.unwrap_or(1.0);
    if !(time_scale.is_finite() && (1e-3..=1e6).contains(&time_scale)) {
        return Err(err(
            &["scenario", "time_scale"],
            format!("expected a number from 0.001 to 1000000, found {time_scale}"),
        ));
    }

    let wake_grid = s.wake_grid.map_or(DEFAULT_WAKE_GRID, |d| d.0);
    if wake_grid > MAX_WAKE_GRID {
        return Err(err(
            &["scenario", "wake_grid"],
            format!(
                "expected a duration from 0s to {}, found \"{}\"",
                DisplayDuration(MAX_WAKE_GRID),
                DisplayDuration(wake_grid)
            ),
        ));
    }

    let backend = check_backend(source, raw.backend, keys)?;
    let fleet = check_fleet(source, raw.fleet, duration, &backend, models)?;
    let groups: BTreeSet<&str> = fleet.mix.iter().map(|m| m.group.as_str()).collect();

    let mut phases = Vec::with_capacity(raw.phase.len());
    for (index, phase) in raw.phase.into_iter().enumerate() {
        phases.push(check_phase(source, index, phase, duration, &fleet, &groups, models)?);
    }
    // A stable sort keeps file order for phases at the same time.
    phases.sort_by_key(|p| p.at);

    let mut gates = Vec::with_capacity(raw.gates.len());
    for (metric, expression) in &raw.gates {
        let gate = parse_gate(metric, expression).map_err(|e| {
            let message = match e {
                GateError::Metric(m) | GateError::Value(m) => m,
            };
            source.error(KeyPath::of(&["gates", metric]), message)
        })?;
        if let Some(why) = keys.ungiven(&backend, gate.metric.metric()) {
            return Err(source.error(KeyPath::of(&["gates", metric]), ungiven_gate(&gate, backend.kind, why)));
        }
        gates.push(gate);
    }

    Ok(Scenario {
        file: source.file().to_owned(),
        name: s.name,
        description: s.description,
        seed: s.seed,
        duration,
        time_scale,
        wake_grid,
        models_dir,
        backend,
        fleet,
        phases,
        gates,
    })
}

/// The refusal of `gate`, on a figure a backend of `kind` cannot give: `why`.
pub fn ungiven_gate(gate: &Gate, kind: BackendKind, why: &str) -> String {
    format!(
        "gate \"{}\" cannot be judged against a backend of kind \"{}\": {why}; remove the gate, or gate on a figure this backend gives (docs/metrics.md)",
        gate.metric.name,
        kind.name()
    )
}

fn check_backend(
    source: &Source<'_>,
    raw: Option<BackendSection>,
    keys: &dyn BackendKeys,
) -> Result<Backend, FileError> {
    let Some(mut raw) = raw else {
        return Ok(BackendSection::of(BackendKind::Embedded));
    };
    if let Some(tls) = raw.tls.take() {
        raw.tls = Some(check_tls(source, tls)?);
    }
    let err = |key: &str, message: String| source.error(KeyPath::of(&["backend", key]), message);
    keys.check(&raw).map_err(|e| {
        let path = KeyPath::of(&["backend", e.key]);
        let path = match e.index {
            Some(index) => path.index(index),
            None => path,
        };
        source.error(path, e.message)
    })?;
    for (key, var) in [
        ("token_env", &raw.token_env),
        ("user_env", &raw.user_env),
        ("password_env", &raw.password_env),
    ] {
        let Some(var) = var else { continue };
        let ok = !var.is_empty()
            && !var.starts_with(|c: char| c.is_ascii_digit())
            && var
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(err(
                key,
                format!("expected an environment variable name like \"FLEETSIM_TOKEN\", found \"{var}\""),
            ));
        }
    }
    Ok(raw)
}

/// Checks `[backend.tls]`: its files are there (their paths made relative to the scenario
/// file's folder, as written), its versions and date are well formed.
fn check_tls(source: &Source<'_>, mut tls: TlsSection) -> Result<TlsSection, FileError> {
    let err = |key: &str, message: String| source.error(KeyPath::of(&["backend", "tls", key]), message);
    if tls.versions.as_ref().is_some_and(Vec::is_empty) {
        return Err(err("versions", "expected at least one of \"1.2\", \"1.3\"".to_owned()));
    }
    if let Some(date) = &tls.device_cert_not_after
        && parse_day(date).is_none()
    {
        return Err(err(
            "device_cert_not_after",
            format!("expected a day as YYYY-MM-DD, found \"{date}\""),
        ));
    }
    let base = source.file().parent().unwrap_or(Path::new("."));
    if let Some(ca) = &tls.ca {
        let ca = base.join(ca);
        if !ca.is_file() {
            return Err(err(
                "ca",
                format!(
                    "expected a PEM file of the server's CA certificates, found no file at {}",
                    ca.display()
                ),
            ));
        }
        tls.ca = Some(ca.display().to_string());
    }
    if let Some(folder) = &tls.fleet_ca {
        let folder = base.join(folder);
        if !(folder.join("ca.pem").is_file() && folder.join("ca.key").is_file()) {
            return Err(err(
                "fleet_ca",
                format!(
                    "expected a folder holding ca.pem and ca.key (`fleetsim ca {}` writes one), found {}",
                    folder.display(),
                    if folder.is_dir() {
                        "a folder without them"
                    } else {
                        "no folder"
                    }
                ),
            ));
        }
        tls.fleet_ca = Some(folder.display().to_string());
    }
    Ok(tls)
}

/// A `YYYY-MM-DD` day (a real one: no 31 February).
pub fn parse_day(text: &str) -> Option<time::Date> {
    let mut parts = text.splitn(3, '-');
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    if year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return None;
    }
    let month = time::Month::try_from(month.parse::<u8>().ok()?).ok()?;
    time::Date::from_calendar_date(year.parse().ok()?, month, day.parse().ok()?).ok()
}

fn check_fleet(
    source: &Source<'_>,
    raw: FleetSection,
    duration: Duration,
    section: &Backend,
    models: &ModelSet,
) -> Result<Fleet, FileError> {
    let backend = section.kind;
    let certified = section
        .tls
        .as_ref()
        .is_some_and(|tls| tls.credentials == Some(CredentialKind::Certificate));
    let err = |keys: &[&str], message: String| source.error(KeyPath::of(keys), message);
    if !(1..=MAX_DEVICES).contains(&raw.devices) {
        return Err(err(
            &["fleet", "devices"],
            format!("expected 1 to {MAX_DEVICES}, found {}", raw.devices),
        ));
    }
    let a = raw.arrival;
    let arrival = match (a.ramp, a.rate) {
        (Some(ramp), None) => Arrival::Ramp {
            over: ramp.0,
            poisson: a.poisson,
        },
        (None, Some(rate)) => {
            if !(rate.0.is_finite() && rate.0 > 0.0 && rate.0 <= 1e6) {
                return Err(err(
                    &["fleet", "arrival", "rate"],
                    format!("expected a rate above 0/s and at most 1000000/s, found {}/s", rate.0),
                ));
            }
            Arrival::Rate {
                per_sec: rate.0,
                poisson: a.poisson,
            }
        }
        _ => {
            return Err(err(
                &["fleet", "arrival"],
                "expected exactly one of ramp or rate, like { ramp = \"30s\" } or { rate = \"500/s\" }".to_owned(),
            ));
        }
    };
    let window = arrival.window(raw.devices);
    if window >= duration {
        let key = if matches!(arrival, Arrival::Ramp { .. }) {
            "ramp"
        } else {
            "rate"
        };
        return Err(err(
            &["fleet", "arrival", key],
            format!(
                "devices would still be arriving at the end of the run: arrivals take {}, the run lasts {}",
                DisplayDuration(window),
                DisplayDuration(duration)
            ),
        ));
    }
    let source_addrs = match raw.source_addrs {
        None => None,
        Some(text) => Some(AddrBlock::parse(&text).ok_or_else(|| {
            err(
                &["fleet", "source_addrs"],
                format!("expected an address block like \"127.0.0.0/24\", found \"{text}\""),
            )
        })?),
    };

    if raw.mix.is_empty() {
        return Err(err(
            &["fleet", "mix"],
            "expected at least one entry like { model = \"temp-sensor\", share = 1.0 }".to_owned(),
        ));
    }
    let mut mix = Vec::with_capacity(raw.mix.len());
    let mut total = 0.0;
    let base = KeyPath::of(&["fleet", "mix"]);
    for (index, entry) in raw.mix.into_iter().enumerate() {
        let path = base.index(index);
        if !models.contains_key(&entry.model) {
            let known: Vec<&str> = models.keys().map(String::as_str).collect();
            return Err(source.error(
                path.key("model"),
                format!(
                    "no device model \"{}\"; known models: {}",
                    entry.model,
                    known.join(", ")
                ),
            ));
        }
        let speaks = backend.device_protocol();
        if let Some(model) = models.get(&entry.model)
            && model.protocol != speaks
        {
            return Err(source.error(
                path.key("model"),
                format!(
                    "model \"{}\" speaks {}, but backend kind \"{}\" takes {} devices",
                    entry.model,
                    model.protocol.name(),
                    backend.name(),
                    speaks.name()
                ),
            ));
        }
        if let Some(model) = models.get(&entry.model)
            && model.certificate.is_some()
            && !certified
        {
            return Err(source.error(
                path.key("model"),
                format!(
                    "model \"{}\" renews its certificates (its [certificate]), and these devices are issued none; \
                     its devices need the reference backend with credentials = \"certificate\" in [backend.tls]",
                    entry.model
                ),
            ));
        }
        let share = entry.share.0;
        if !(share.is_finite() && share > 0.0 && share <= 1.0) {
            return Err(source.error(
                path.key("share"),
                format!("expected a share above 0 and at most 1, found {share}"),
            ));
        }
        total += share;
        let group = entry.group.unwrap_or_else(|| entry.model.clone());
        if !is_name(&group) {
            return Err(source.error(
                path.key("group"),
                format!("expected lowercase letters, digits and '-', found \"{group}\""),
            ));
        }
        mix.push(MixEntry {
            model: entry.model,
            share,
            group,
        });
    }
    if (total - 1.0).abs() > SHARE_TOLERANCE {
        return Err(source.error(base, format!("shares sum to {total}; they must sum to 1")));
    }
    Ok(Fleet {
        devices: raw.devices,
        arrival,
        source_addrs,
        mix,
        on_worker_loss: raw.on_worker_loss.unwrap_or_default(),
    })
}
