//! Scenario files: checks ranges, cross-field rules (shares that sum to one, arrivals that end
//! before the run does) and cross-file rules (the mix names models that exist and speak the
//! backend's protocol), and builds the typed [`Scenario`]. Phases are checked in
//! [`super::check_phase`].

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use super::check_phase::check_phase;
use super::decode::Source;
use super::device_model::is_name;
use super::error::{FileError, KeyPath};
use super::file::{BackendKind, BackendSection, FleetSection, ScenarioFile};
use super::gate::{GateError, parse_gate};
use super::typed::{AddrBlock, Arrival, Backend, DdiSettings, Fleet, MixEntry, ModelSet, Scenario};
use super::units::DisplayDuration;

/// The most devices one scenario may plan: far past what one machine runs, and small enough
/// that every per-device figure fits comfortably in memory-free arithmetic.
const MAX_DEVICES: u64 = 100_000_000;
/// The longest run a scenario may ask for.
const MAX_RUN: Duration = Duration::from_secs(30 * 86_400);
/// Shares must sum to one within this (files write decimals).
const SHARE_TOLERANCE: f64 = 1e-6;

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

fn check_backend(source: &Source<'_>, raw: Option<BackendSection>) -> Result<Backend, FileError> {
    let Some(raw) = raw else {
        return Ok(Backend {
            kind: BackendKind::Embedded,
            url: None,
            cluster: Vec::new(),
            api: None,
            token_env: None,
            telemetry_topic: None,
            command_topic: None,
            ddi: None,
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
    if let Some(cluster) = &raw.cluster {
        if raw.kind != BackendKind::Mqtt {
            return Err(err(
                "cluster",
                "only a backend of kind \"mqtt\" takes cluster endpoints".to_owned(),
            ));
        }
        for (k, endpoint) in cluster.iter().enumerate() {
            check_url(endpoint, url_schemes)
                .map_err(|m| source.error(KeyPath::of(&["backend", "cluster"]).index(k), m))?;
        }
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
    let ddi = check_ddi(&raw).map_err(|(key, message)| err(key, message))?;
    for (key, template) in [
        ("telemetry_topic", &raw.telemetry_topic),
        ("command_topic", &raw.command_topic),
    ] {
        let Some(topic) = template else { continue };
        if raw.kind != BackendKind::Mqtt {
            return Err(err(
                key,
                "only a backend of kind \"mqtt\" takes a topic template".to_owned(),
            ));
        }
        if let Err(message) = check_topic_template(topic) {
            return Err(err(key, message));
        }
    }
    Ok(Backend {
        kind: raw.kind,
        url: raw.url,
        cluster: raw.cluster.unwrap_or_default(),
        api: raw.api,
        token_env: raw.token_env,
        telemetry_topic: raw.telemetry_topic,
        command_topic: raw.command_topic,
        ddi,
    })
}

/// The hawkBit keys: only for `kind = "hawkbit"`, where a token-authenticated fleet needs
/// `token_env` and an operator API needs its user and password.
fn check_ddi(raw: &BackendSection) -> Result<Option<DdiSettings>, (&'static str, String)> {
    use super::file::DeviceAuth;
    if raw.kind != BackendKind::Hawkbit {
        for (key, set) in [
            ("tenant", raw.tenant.is_some()),
            ("device_auth", raw.device_auth.is_some()),
            ("user_env", raw.user_env.is_some()),
            ("password_env", raw.password_env.is_some()),
        ] {
            if set {
                return Err((key, "only a backend of kind \"hawkbit\" takes this key".to_owned()));
            }
        }
        return Ok(None);
    }
    let tenant = raw.tenant.clone().unwrap_or_else(|| "DEFAULT".to_owned());
    if tenant.is_empty()
        || !tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err((
            "tenant",
            format!("expected a tenant name of letters, digits, '-' and '_', found \"{tenant}\""),
        ));
    }
    let device_auth = raw.device_auth.unwrap_or(DeviceAuth::TargetToken);
    if device_auth != DeviceAuth::None && raw.token_env.is_none() {
        return Err((
            "token_env",
            "missing: hawkBit device tokens need a secret; name the environment variable holding it, \
             like token_env = \"FLEETSIM_DDI_SECRET\" (or set device_auth = \"none\")"
                .to_owned(),
        ));
    }
    if raw.api.is_some() && (raw.user_env.is_none() || raw.password_env.is_none()) {
        let key = if raw.user_env.is_none() {
            "user_env"
        } else {
            "password_env"
        };
        return Err((
            key,
            "missing: the management API needs a login; name the environment variables holding it, \
             like user_env = \"FLEETSIM_DDI_USER\" and password_env = \"FLEETSIM_DDI_PASSWORD\""
                .to_owned(),
        ));
    }
    Ok(Some(DdiSettings {
        tenant,
        device_auth,
        user_env: raw.user_env.clone(),
        password_env: raw.password_env.clone(),
    }))
}

/// The placeholders a topic template may use.
pub const TOPIC_PLACEHOLDERS: [&str; 4] = ["{serial}", "{index}", "{model}", "{group}"];

/// A topic template: no wildcards, no empty levels, known placeholders only.
fn check_topic_template(topic: &str) -> Result<(), String> {
    let mut rest = topic.to_owned();
    for placeholder in TOPIC_PLACEHOLDERS {
        rest = rest.replace(placeholder, "x");
    }
    if topic.is_empty() || rest.contains(['+', '#', '{', '}']) || rest.split('/').any(str::is_empty) {
        return Err(format!(
            "expected a topic like \"devices/{{serial}}/telemetry\" (no wildcards or empty levels; placeholders {}), found \"{topic}\"",
            TOPIC_PLACEHOLDERS.join(", ")
        ));
    }
    Ok(())
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
    raw: FleetSection,
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
        on_worker_loss: raw.on_worker_loss.unwrap_or_default(),
    })
}
