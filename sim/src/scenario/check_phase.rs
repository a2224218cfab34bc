//! `[[phase]]` checks: times inside the run, targets that exist in the mix, shares and waves
//! in range, and campaigns aimed only at devices that take updates.

use std::collections::BTreeSet;
use std::time::Duration;

use super::decode::Source;
use super::device_model::{pct, probability};
use super::error::{FileError, KeyPath};
use super::file::{FirmwareSection, PhaseSection, RolloutSection};
use super::typed::{Action, AlertRule, COMMANDS, Campaign, Fleet, ModelSet, Phase};
use super::units::DisplayDuration;
use crate::dialect::lwm2m::objects::Path;
use crate::model::FaultKind;

/// Checks phase `index` of a scenario whose run lasts `duration`.
pub(super) fn check_phase(
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
            if p.command == "set" && p.args.is_empty() {
                return Err(err(
                    "args",
                    "a set command needs args, like { led = \"on\" }".to_owned(),
                ));
            }
            if p.command == "read" && !p.args.get("path").and_then(|v| v.as_str()).is_some_and(is_lwm2m_path) {
                return Err(err(
                    "args",
                    "a read command needs args.path, the LwM2M object, instance or resource it reads, like { path = \"/3/0/9\" } (each number 0 to 65535, written without leading zeros)".to_owned(),
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
                    args: p.args,
                    share,
                },
            )
        }
        PhaseSection::Ota(p) => {
            let campaign = check_campaign(source, &path, p.firmware, p.rollout)?;
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
        PhaseSection::Rotate(p) => {
            let share = match p.share {
                Some(share) => share_of("share", share.0)?,
                None => 1.0,
            };
            let grace = p.grace.map_or(DEFAULT_ROTATION_GRACE, |g| g.0);
            (p.at.0, p.group, Action::Rotate { share, grace })
        }
        PhaseSection::Alert(p) => {
            // Each rule's keys; any other rule key given is refused, at that key.
            let (takes, missing): (&[&str], &str) = match p.rule.as_str() {
                "battery_below" => (&["below"], "the battery level to alert under, e.g. \"20%\""),
                "offline_for" => (&["after"], "how long a device may be offline, e.g. \"30s\""),
                "error_codes" => (
                    &["at_least", "within"],
                    "how many reports with error codes (at_least) within how long (within), e.g. 3 and \"1m\"",
                ),
                "sensor_stuck" => (&["reports"], "how many reports in a row with the same reading, e.g. 5"),
                other => {
                    return Err(err(
                        "rule",
                        format!(
                            "expected one of \"battery_below\", \"offline_for\", \"error_codes\", \"sensor_stuck\", found \"{other}\""
                        ),
                    ));
                }
            };
            let given = [
                ("below", p.below.is_some()),
                ("after", p.after.is_some()),
                ("at_least", p.at_least.is_some()),
                ("within", p.within.is_some()),
                ("reports", p.reports.is_some()),
            ];
            if let Some((key, _)) = given.iter().find(|(key, set)| *set && !takes.contains(key)) {
                let keys: Vec<String> = takes.iter().map(|k| format!("`{k}`")).collect();
                return Err(err(
                    key,
                    format!("a {} rule takes {}, not `{key}`", p.rule, keys.join(" and ")),
                ));
            }
            let rule = match (p.below, p.after, p.at_least, p.within, p.reports) {
                (Some(below), ..) => AlertRule::BatteryBelow(share_of("below", below.0)?),
                (_, Some(after), ..) => AlertRule::OfflineFor(after.0),
                (_, _, Some(at_least), Some(within), _) => {
                    if !(1..=1000).contains(&at_least) {
                        return Err(err("at_least", format!("expected 1 to 1000 reports, found {at_least}")));
                    }
                    if within.0.is_zero() || within.0 > Duration::from_secs(86_400) {
                        return Err(err(
                            "within",
                            format!(
                                "expected above 0 and at most 1d, found \"{}\"",
                                DisplayDuration(within.0)
                            ),
                        ));
                    }
                    AlertRule::ErrorCodes {
                        at_least,
                        within: within.0,
                    }
                }
                (.., Some(reports)) => {
                    if !(2..=1000).contains(&reports) {
                        return Err(err("reports", format!("expected 2 to 1000 reports, found {reports}")));
                    }
                    AlertRule::SensorStuck(reports)
                }
                _ => {
                    let absent = takes
                        .iter()
                        .find(|key| !given.iter().any(|(k, set)| k == *key && *set))
                        .unwrap_or(&"rule");
                    return Err(err(absent, format!("missing: {missing}")));
                }
            };
            (p.at.0, p.group, Action::Alert(rule))
        }
        PhaseSection::Fault(p) => {
            let share = share_of("share", p.share.0)?;
            let Some(kind) = FaultKind::parse(&p.fault) else {
                let kinds: Vec<String> = FaultKind::ALL.iter().map(|k| format!("\"{}\"", k.name())).collect();
                return Err(err(
                    "fault",
                    format!("expected one of {}, found \"{}\"", kinds.join(", "), p.fault),
                ));
            };
            let duration_of_fault = match (kind, p.duration) {
                (FaultKind::WatchdogReset, Some(_)) => {
                    return Err(err(
                        "duration",
                        "a watchdog reset is instant: remove `duration`".to_owned(),
                    ));
                }
                (FaultKind::WatchdogReset, None) => Duration::ZERO,
                (_, None) => {
                    return Err(err(
                        "duration",
                        format!("missing: how long the {} lasts, e.g. \"5m\"", kind.name()),
                    ));
                }
                (_, Some(d)) if d.0.is_zero() => {
                    return Err(err("duration", "expected a duration above zero".to_owned()));
                }
                (_, Some(d)) => d.0,
            };
            if p.at.0 + duration_of_fault > duration {
                return Err(err(
                    "duration",
                    format!(
                        "the fault would end at {}, after the run ends at {}",
                        DisplayDuration(p.at.0 + duration_of_fault),
                        DisplayDuration(duration)
                    ),
                ));
            }
            (
                p.at.0,
                p.group,
                Action::Fault {
                    kind,
                    share,
                    duration: duration_of_fault,
                },
            )
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

/// Soak time of a wave when the rollout does not set one.
const DEFAULT_SOAK: Duration = Duration::from_secs(10);

/// How long a rotated device's old certificate is still accepted when the phase names no
/// grace (the reference backend's own default).
const DEFAULT_ROTATION_GRACE: Duration = Duration::from_secs(60);

/// Checks an OTA phase's image and rollout.
fn check_campaign(
    source: &Source<'_>,
    path: &KeyPath,
    f: FirmwareSection,
    r: RolloutSection,
) -> Result<Campaign, FileError> {
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
    Ok(Campaign {
        version: f.version,
        size_bytes: f.size.0,
        boot_fail,
        corrupt,
        waves: r.waves.iter().map(|w| w.0).collect(),
        halt_above: r.halt_above.map(|h| h.0),
        soak: r.soak.map_or(DEFAULT_SOAK, |s| s.0),
    })
}

/// Whether `text` is an LwM2M path as a device prints it: `/3`, `/3/0` or `/3/0/9`, each
/// number 0 to 65535 without leading zeros (the device's Read is matched to the command by it).
fn is_lwm2m_path(text: &str) -> bool {
    text.strip_prefix('/')
        .and_then(|rest| Path::parse(rest.split('/').map(str::as_bytes)))
        .is_some_and(|path| path.to_string() == text)
}
