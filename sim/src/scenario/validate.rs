//! Scenario files: checks ranges, cross-field rules (phase times inside the run, shares that
//! sum to one) and cross-file rules (the mix names models that exist, OTA phases target
//! devices that take updates), and builds the typed [`Scenario`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::decode::Source;
use super::device_model::{DeviceModel, is_name, pct, probability};
use super::error::{FileError, KeyPath};
use super::file::{BackendKind, PhaseSection, ScenarioFile};
use super::gate::{Gate, GateError, parse_gate};
use super::units::DisplayDuration;

/// Device models by name.
pub type ModelSet = BTreeMap<String, DeviceModel>;

/// The most devices one scenario may plan: far past what one machine runs, and small enough
/// that every per-device figure fits comfortably in memory-free arithmetic.
const MAX_DEVICES: u64 = 100_000_000;
/// The longest run a scenario may ask for.
const MAX_RUN: Duration = Duration::from_secs(30 * 86_400);
/// Shares must sum to one within this (files write decimals).
const SHARE_TOLERANCE: f64 = 1e-6;

/// A validated scenario, ready to plan.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The file it came from.
    pub file: PathBuf,
    /// Scenario name.
    pub name: String,
    /// What it exercises.
    pub description: Option<String>,
    /// Seed of every random draw.
    pub seed: u64,
    /// Wall-clock length of the run.
    pub duration: Duration,
    /// Simulated seconds per real second for the device models.
    pub time_scale: f64,
    /// Where its device models live.
    pub models_dir: PathBuf,
    /// The backend it drives.
    pub backend: Backend,
    /// The devices.
    pub fleet: Fleet,
    /// The operator's timeline, in time order.
    pub phases: Vec<Phase>,
    /// Pass/fail gates.
    pub gates: Vec<Gate>,
}

/// The backend a scenario drives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Which dialect.
    pub kind: BackendKind,
    /// Device-side endpoint; `None` starts the embedded backend in-process.
    pub url: Option<String>,
    /// Operator API base URL.
    pub api: Option<String>,
    /// Environment variable holding the credential.
    pub token_env: Option<String>,
}

/// The devices of a scenario.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// How many.
    pub devices: u64,
    /// How they arrive.
    pub arrival: Arrival,
    /// Local addresses connections are spread over.
    pub source_addrs: Option<AddrBlock>,
    /// Which models, in what shares, in which groups.
    pub mix: Vec<MixEntry>,
}

/// How devices arrive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrival {
    /// All devices arrive within `over`.
    Ramp {
        /// Length of the ramp.
        over: Duration,
        /// Random arrival times instead of even spacing.
        poisson: bool,
    },
    /// Devices arrive at a rate.
    Rate {
        /// Devices per second.
        per_sec: f64,
        /// Random arrival times instead of even spacing.
        poisson: bool,
    },
}

impl Arrival {
    /// The window all `devices` arrive in.
    pub fn window(self, devices: u64) -> Duration {
        match self {
            Self::Ramp { over, .. } => over,
            // A rate of almost nothing would overflow `Duration`: such a window is "forever".
            Self::Rate { per_sec, .. } => {
                Duration::try_from_secs_f64(devices as f64 / per_sec).unwrap_or(Duration::MAX)
            }
        }
    }

    /// Whether arrival times are random.
    pub fn poisson(self) -> bool {
        match self {
            Self::Ramp { poisson, .. } | Self::Rate { poisson, .. } => poisson,
        }
    }
}

/// A block of local addresses, `127.0.0.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrBlock {
    /// The first address.
    pub base: IpAddr,
    /// Prefix length in bits.
    pub prefix_len: u8,
}

impl AddrBlock {
    /// Parses CIDR notation.
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, len) = text.split_once('/')?;
        let base: IpAddr = addr.trim().parse().ok()?;
        let prefix_len: u8 = len.trim().parse().ok()?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        (prefix_len <= max).then_some(Self { base, prefix_len })
    }
}

/// One entry of the fleet's mix.
#[derive(Debug, Clone, PartialEq)]
pub struct MixEntry {
    /// Device model name.
    pub model: String,
    /// Share of the fleet, a fraction.
    pub share: f64,
    /// Group the devices join.
    pub group: String,
}

/// An operator action at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// When it fires, from the start of the run.
    pub at: Duration,
    /// Target group; `None` targets the whole fleet.
    pub group: Option<String>,
    /// What it does.
    pub action: Action,
}

/// What a phase does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Push desired configuration.
    Config {
        /// Keys and values.
        set: BTreeMap<String, serde_json::Value>,
    },
    /// Send a command to a share of the target.
    Command {
        /// Which command.
        command: String,
        /// Share of the target, a fraction.
        share: f64,
    },
    /// An OTA campaign.
    Ota(Campaign),
    /// Cut a share of the target off for a while.
    Outage {
        /// Share of the target, a fraction.
        share: f64,
        /// How long.
        duration: Duration,
    },
    /// Decommission a share of the target.
    Decommission {
        /// Share of the target, a fraction.
        share: f64,
    },
}

impl Action {
    /// The `action` name as files write it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Config { .. } => "config",
            Self::Command { .. } => "command",
            Self::Ota(_) => "ota",
            Self::Outage { .. } => "outage",
            Self::Decommission { .. } => "decommission",
        }
    }
}

/// An OTA campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct Campaign {
    /// Version of the image.
    pub version: String,
    /// Image size in bytes.
    pub size_bytes: u64,
    /// The image's own chance of failing to boot.
    pub boot_fail: f64,
    /// The image's own chance of arriving corrupt.
    pub corrupt: f64,
    /// Cumulative share of the target after each wave.
    pub waves: Vec<f64>,
    /// Halt when a wave's failure rate passes this.
    pub halt_above: Option<f64>,
    /// How long each wave soaks.
    pub soak: Duration,
}

/// Commands a command phase may send.
pub const COMMANDS: [&str; 3] = ["reboot", "logs", "ping"];

/// Checks a decoded scenario against itself and its models.
pub fn check_scenario(
    source: &Source<'_>,
    raw: ScenarioFile,
    models_dir: PathBuf,
    models: &ModelSet,
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

    let backend = check_backend(source, raw.backend)?;
    let fleet = check_fleet(source, raw.fleet, duration, backend.kind, models)?;
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
        gates.push(gate);
    }

    Ok(Scenario {
        file: source.file().to_owned(),
        name: s.name,
        description: s.description,
        seed: s.seed,
        duration,
        time_scale,
        models_dir,
        backend,
        fleet,
        phases,
        gates,
    })
}

fn check_backend(source: &Source<'_>, raw: Option<super::file::BackendSection>) -> Result<Backend, FileError> {
    let Some(raw) = raw else {
        return Ok(Backend {
            kind: BackendKind::Embedded,
            url: None,
            api: None,
            token_env: None,
        });
    };
    let err = |key: &str, message: String| source.error(KeyPath::of(&["backend", key]), message);
    let (url_schemes, api_allowed): (&[&str], bool) = match raw.kind {
        BackendKind::Embedded | BackendKind::Thingsboard => (&["mqtt", "mqtts"], true),
        BackendKind::Mqtt => (&["mqtt", "mqtts"], false),
        BackendKind::Hawkbit => (&["http", "https"], true),
        BackendKind::Lwm2m => (&["coap", "coaps"], true),
        BackendKind::AwsIot => (&["mqtts"], true),
    };
    match (&raw.url, raw.kind) {
        (None, BackendKind::Embedded) if raw.api.is_some() => {
            return Err(err(
                "url",
                "missing: a standalone embedded backend needs both url and api".to_owned(),
            ));
        }
        (None, BackendKind::Embedded) => {}
        (None, _) => {
            return Err(err(
                "url",
                format!(
                    "missing: this backend needs a url like \"{}://127.0.0.1:PORT\"",
                    url_schemes[0]
                ),
            ));
        }
        (Some(url), _) => check_url(url, url_schemes).map_err(|m| err("url", m))?,
    }
    match &raw.api {
        Some(_) if !api_allowed => {
            return Err(err(
                "api",
                "the mqtt backend has no operator API; remove this key".to_owned(),
            ));
        }
        Some(api) => check_url(api, &["http", "https"]).map_err(|m| err("api", m))?,
        None if raw.kind == BackendKind::Embedded && raw.url.is_some() => {
            return Err(err(
                "api",
                "missing: a standalone embedded backend needs both url and api".to_owned(),
            ));
        }
        None => {}
    }
    if let Some(var) = &raw.token_env {
        let ok = !var.is_empty()
            && !var.starts_with(|c: char| c.is_ascii_digit())
            && var
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(err(
                "token_env",
                format!("expected an environment variable name like \"FLEETSIM_TOKEN\", found \"{var}\""),
            ));
        }
    }
    Ok(Backend {
        kind: raw.kind,
        url: raw.url,
        api: raw.api,
        token_env: raw.token_env,
    })
}

/// Checks `scheme://host:port[/path]` with one of `schemes`.
fn check_url(url: &str, schemes: &[&str]) -> Result<(), String> {
    let expected = || {
        format!(
            "expected a URL like \"{}://127.0.0.1:PORT\", found \"{url}\"",
            schemes[0]
        )
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(expected)?;
    if !schemes.contains(&scheme) {
        return Err(format!(
            "expected a URL with scheme {}, found \"{url}\"",
            schemes.join(" or ")
        ));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = authority.rsplit_once(':').ok_or_else(expected)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(expected());
    }
    Ok(())
}

fn check_fleet(
    source: &Source<'_>,
    raw: super::file::FleetSection,
    duration: Duration,
    backend: BackendKind,
    models: &ModelSet,
) -> Result<Fleet, FileError> {
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
    })
}

fn check_phase(
    source: &Source<'_>,
    index: usize,
    raw: PhaseSection,
    duration: Duration,
    fleet: &Fleet,
    groups: &BTreeSet<&str>,
    models: &ModelSet,
) -> Result<Phase, FileError> {
    let path = KeyPath::of(&["phase"]).index(index);
    let err = |key: &str, message: String| source.error(path.key(key), message);
    let share_of = |key: &str, value: f64| {
        if value > 0.0 && value <= 1.0 {
            Ok(value)
        } else {
            Err(err(
                key,
                format!("expected above 0% and at most 100%, found {}", pct(value)),
            ))
        }
    };
    let at = raw.at();
    if at >= duration {
        return Err(err(
            "at",
            format!(
                "expected a time before the end of the run ({}), found \"{}\"",
                DisplayDuration(duration),
                DisplayDuration(at)
            ),
        ));
    }
    let (at, group, action) = match raw {
        PhaseSection::Config(p) => {
            if p.set.is_empty() {
                return Err(err(
                    "set",
                    "expected at least one key, like { report_interval = \"15m\" }".to_owned(),
                ));
            }
            (p.at.0, p.group, Action::Config { set: p.set })
        }
        PhaseSection::Command(p) => {
            if !COMMANDS.contains(&p.command.as_str()) {
                return Err(err(
                    "command",
                    format!("expected one of {}, found \"{}\"", COMMANDS.join(", "), p.command),
                ));
            }
            let share = match p.share {
                Some(s) => share_of("share", s.0)?,
                None => 1.0,
            };
            (
                p.at.0,
                p.group,
                Action::Command {
                    command: p.command,
                    share,
                },
            )
        }
        PhaseSection::Ota(p) => {
            let f = p.firmware;
            if f.version.trim().is_empty() {
                return Err(source.error(
                    path.key("firmware").key("version"),
                    "expected a version like \"2.0.0\", found \"\"".to_owned(),
                ));
            }
            if f.size.0 == 0 {
                return Err(source.error(
                    path.key("firmware").key("size"),
                    "expected a size above zero".to_owned(),
                ));
            }
            let boot_fail = f.boot_fail.map_or(0.0, |v| v.0);
            probability(boot_fail).map_err(|m| source.error(path.key("firmware").key("boot_fail"), m))?;
            let corrupt = f.corrupt.map_or(0.0, |v| v.0);
            probability(corrupt).map_err(|m| source.error(path.key("firmware").key("corrupt"), m))?;
            let r = p.rollout;
            let waves_path = path.key("rollout").key("waves");
            if r.waves.is_empty() {
                return Err(source.error(
                    waves_path,
                    "expected at least one wave, like [\"10%\", \"100%\"]".to_owned(),
                ));
            }
            let mut previous = 0.0;
            for (i, wave) in r.waves.iter().enumerate() {
                if !(wave.0 > previous && wave.0 <= 1.0) {
                    return Err(source.error(
                        waves_path.index(i),
                        format!(
                            "expected waves to grow, each above the one before and at most 100%, found {}",
                            pct(wave.0)
                        ),
                    ));
                }
                previous = wave.0;
            }
            if let Some(halt) = r.halt_above
                && !(halt.0 > 0.0 && halt.0 <= 1.0)
            {
                return Err(source.error(
                    path.key("rollout").key("halt_above"),
                    format!("expected above 0% and at most 100%, found {}", pct(halt.0)),
                ));
            }
            let campaign = Campaign {
                version: f.version,
                size_bytes: f.size.0,
                boot_fail,
                corrupt,
                waves: r.waves.iter().map(|w| w.0).collect(),
                halt_above: r.halt_above.map(|h| h.0),
                soak: r.soak.map_or(Duration::from_secs(10), |s| s.0),
            };
            (p.at.0, p.group, Action::Ota(campaign))
        }
        PhaseSection::Outage(p) => {
            let share = share_of("share", p.share.0)?;
            if p.duration.0.is_zero() {
                return Err(err("duration", "expected a duration above zero".to_owned()));
            }
            if p.at.0 + p.duration.0 > duration {
                return Err(err(
                    "duration",
                    format!(
                        "the outage would end at {}, after the run ends at {}",
                        DisplayDuration(p.at.0 + p.duration.0),
                        DisplayDuration(duration)
                    ),
                ));
            }
            (
                p.at.0,
                p.group,
                Action::Outage {
                    share,
                    duration: p.duration.0,
                },
            )
        }
        PhaseSection::Decommission(p) => {
            let share = share_of("share", p.share.0)?;
            (p.at.0, p.group, Action::Decommission { share })
        }
    };
    if let Some(group) = &group
        && !groups.contains(group.as_str())
    {
        let known: Vec<&str> = groups.iter().copied().collect();
        return Err(err(
            "group",
            format!("no group \"{group}\" in fleet.mix; groups: {}", known.join(", ")),
        ));
    }
    if matches!(action, Action::Ota(_)) {
        // Every model in the target must take updates, or the campaign would count devices
        // that can never install it.
        let without_ota = fleet
            .mix
            .iter()
            .filter(|m| group.as_ref().is_none_or(|g| *g == m.group))
            .find(|m| models.get(&m.model).is_some_and(|model| model.ota.is_none()));
        if let Some(entry) = without_ota {
            return Err(err(
                "group",
                format!(
                    "model \"{}\" in this target has no [ota] section, so it cannot take a campaign",
                    entry.model
                ),
            ));
        }
    }
    Ok(Phase { at, group, action })
}
