//! What a reference-backend device keeps of its own life while connected, and its answers to
//! the commands that ask about it: `logs` uploads its [`Journal`], `diagnose` answers with a
//! health snapshot, and `set` applies its arguments to the device's settings, which the device
//! then reports back with its applied config (docs/backend-api.md, "Commands").
//!
//! Design: boxed and made at the device's first noted event, so a device holds one pointer for
//! it (and the box, 200 bytes, most of them the journal's sixteen entries: see the size test);
//! duty-cycled devices, which take no commands, keep none.

use serde_json::{Map, Value, json};

use crate::device::{Action, Actions, CommandKind, Event, Journal, SimTime, State};
use crate::dialect::Health;
use crate::transport::mqtt::Reply;

/// Settings a device holds at most.
pub const MAX_SETTINGS: usize = 32;
/// The longest setting name.
const MAX_NAME: usize = 64;
/// The longest string a setting holds.
const MAX_TEXT: usize = 256;

/// A connected device's own record.
#[derive(Debug, Default)]
pub struct Diary {
    /// What it lived through.
    pub journal: Journal,
    /// The command being answered (boxed: a word while none is).
    pub command: Option<Box<Pending>>,
    /// What `set` commands applied, by name.
    pub settings: Map<String, Value>,
    /// The desired config version it applied last (0: none).
    pub config_version: u32,
    /// The firmware an update installed, once one did (the model's until then).
    pub firmware: Option<Box<str>>,
}

/// A command received and not yet answered.
#[derive(Debug)]
pub struct Pending {
    /// Its id, for the answer's topic.
    pub id: Box<str>,
    /// What it asks.
    pub kind: CommandKind,
    /// Its arguments (`set`'s settings).
    pub args: Value,
    /// MQTT 5: where the request asked to be answered, and the correlation data to echo.
    pub reply: Option<Reply>,
}

/// A command's answer: the result document, and whether the device's settings changed (so
/// its reported config goes out again).
#[derive(Debug)]
pub struct Answered {
    /// `{"status":"ok"|"error","output":...}`.
    pub result: Value,
    /// A `set` applied something.
    pub settings_changed: bool,
}

impl Diary {
    /// Notes what the device lived through (`event` at `now`, moving it between the core's
    /// states `moved`, leading to `actions`) in its journal, and the config version it applied.
    pub fn note(&mut self, now: SimTime, event: Event, moved: (State, State), actions: &Actions) {
        self.journal.note(now, event, moved, actions);
        for action in actions.iter() {
            if let Action::ReportConfig { version } = action {
                self.config_version = version;
            }
        }
    }

    /// Carries out `command` and says how it went; `health` is how the device stands now,
    /// `firmware` the model's version (the running one until an update installed another).
    pub fn answer(&mut self, command: &Pending, health: &Health, firmware: &str) -> Answered {
        let ok = |output: Value| Answered {
            result: json!({ "status": "ok", "output": output }),
            settings_changed: false,
        };
        match command.kind {
            CommandKind::Reboot => ok(Value::from("rebooting")),
            CommandKind::Logs => {
                let mut log = String::new();
                self.journal.write_json(&mut log);
                // The journal writes JSON; a failure here would be its bug.
                ok(serde_json::from_str(&log).unwrap_or(Value::Null))
            }
            CommandKind::Diagnose => ok(self.snapshot(health, firmware)),
            CommandKind::Read => Answered {
                result: json!({
                    "status": "error",
                    "output": "read: this device speaks MQTT and has no LwM2M resources to read; diagnose answers with its health",
                }),
                settings_changed: false,
            },
            CommandKind::Set => match self.apply(&command.args) {
                Ok(applied) => Answered {
                    result: json!({ "status": "ok", "output": { "applied": applied } }),
                    settings_changed: true,
                },
                Err(why) => Answered {
                    result: json!({ "status": "error", "output": format!("set: {why}") }),
                    settings_changed: false,
                },
            },
        }
    }

    /// The health snapshot `diagnose` answers with.
    fn snapshot(&self, health: &Health, firmware: &str) -> Value {
        let errors = self.journal.errors();
        let mut snapshot = json!({
            "uptime_s": round(health.uptime.as_secs_f64(), 1000.0),
            "firmware": self.firmware.as_deref().unwrap_or(firmware),
            "config_version": self.config_version,
            "errors": {
                "provision": errors.provision,
                "connect": errors.connect,
                "connection_lost": errors.connection_lost,
                "ota": errors.ota,
                "resets": errors.resets,
                "error_reports": errors.error_reports,
            },
            "log_entries": self.journal.written(),
        });
        if let Some(battery) = health.battery {
            snapshot["battery"] = json!(battery.fraction());
            snapshot["low_battery"] = json!(battery.low);
        }
        if let Some(rssi) = health.rssi {
            snapshot["rssi"] = json!(rssi);
        }
        if let Some(centi) = health.reading_centi {
            snapshot["reading"] = json!(f64::from(centi) / 100.0);
        }
        snapshot
    }

    /// Applies `set`'s arguments: an object of names to strings, numbers or booleans (`null`
    /// removes a setting). Nothing is applied unless all of it can be. What was applied, or
    /// why not.
    fn apply(&mut self, args: &Value) -> Result<Value, String> {
        let Some(args) = args.as_object() else {
            return Err("expected an object of settings as args, e.g. {\"led\":\"on\"}".into());
        };
        if args.is_empty() {
            return Err("expected at least one setting in args".into());
        }
        for (name, value) in args {
            let named = !name.is_empty()
                && name.len() <= MAX_NAME
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !named {
                return Err(format!(
                    "setting {name:?}: expected a name of 1 to {MAX_NAME} letters, digits, '_', '.' or '-'"
                ));
            }
            match value {
                Value::String(text) if text.len() > MAX_TEXT => {
                    return Err(format!("setting {name:?}: expected at most {MAX_TEXT} bytes of text"));
                }
                Value::Array(_) | Value::Object(_) => {
                    return Err(format!(
                        "setting {name:?}: expected a string, a number, a boolean or null"
                    ));
                }
                _ => {}
            }
        }
        let added = args
            .iter()
            .filter(|(name, value)| !value.is_null() && !self.settings.contains_key(*name))
            .count();
        if self.settings.len() + added > MAX_SETTINGS {
            return Err(format!("a device holds at most {MAX_SETTINGS} settings"));
        }
        for (name, value) in args {
            if value.is_null() {
                self.settings.remove(name);
            } else {
                self.settings.insert(name.clone(), value.clone());
            }
        }
        Ok(Value::Object(args.clone()))
    }

    /// The device's reported config: the version it applied and, once `set` gave it any, its
    /// settings.
    pub fn reported(&self) -> Value {
        let mut reported = json!({ "version": self.config_version });
        if !self.settings.is_empty() {
            reported["settings"] = Value::Object(self.settings.clone());
        }
        reported
    }
}

/// `x` rounded to the nearest `1 / per`.
fn round(x: f64, per: f64) -> f64 {
    (x * per).round() / per
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::device::{Actions, BatteryLevel, Event, SimTime, State};

    fn command(kind: CommandKind, args: Value) -> Pending {
        Pending {
            id: "c-1".into(),
            kind,
            args,
            reply: None,
        }
    }

    const HEALTH: Health = Health {
        battery: Some(BatteryLevel {
            permille: 140,
            low: true,
        }),
        rssi: Some(-97),
        reading_centi: Some(2150),
        uptime: Duration::from_millis(93_250),
    };

    #[test]
    fn a_diary_stays_small() {
        // Every connected reference-backend device holds one: the journal's 16 entries of 8
        // bytes and its counts, a pointer to the pending command, an empty map, the config
        // version and a firmware name: 200 bytes, in mimalloc's 224-byte class.
        assert_eq!(std::mem::size_of::<Diary>(), 200);
        assert_eq!(std::mem::size_of::<Journal>(), 148);
    }

    #[test]
    fn set_applies_what_it_can_all_or_nothing_and_the_settings_are_reported() {
        let mut diary = Diary::default();
        let answered = diary.answer(
            &command(CommandKind::Set, json!({"led": "on", "rate": 5})),
            &HEALTH,
            "1.0",
        );
        assert_eq!(
            answered.result,
            json!({"status": "ok", "output": {"applied": {"led": "on", "rate": 5}}})
        );
        assert!(answered.settings_changed);
        diary.config_version = 4;
        assert_eq!(
            diary.reported(),
            json!({"version": 4, "settings": {"led": "on", "rate": 5}})
        );
        // One bad setting: nothing applied.
        for bad in [
            json!({"led": "off", "nested": {"a": 1}}),
            json!("led=on"),
            json!({}),
            json!({"": 1}),
        ] {
            let answered = diary.answer(&command(CommandKind::Set, bad.clone()), &HEALTH, "1.0");
            assert_eq!(answered.result["status"], "error", "{bad}");
            assert!(
                answered.result["output"]
                    .as_str()
                    .is_some_and(|o| o.starts_with("set: "))
            );
            assert!(!answered.settings_changed);
        }
        assert_eq!(diary.settings["led"], "on");
        diary.answer(&command(CommandKind::Set, json!({"led": null})), &HEALTH, "1.0");
        assert_eq!(diary.reported(), json!({"version": 4, "settings": {"rate": 5}}));
        let many: Map<String, Value> = (0..MAX_SETTINGS).map(|k| (format!("k{k}"), json!(k))).collect();
        let answered = diary.answer(&command(CommandKind::Set, Value::Object(many)), &HEALTH, "1.0");
        assert_eq!(
            answered.result["status"], "error",
            "one over the limit: {}",
            answered.result
        );
    }

    #[test]
    fn diagnose_answers_with_the_device_as_it_stands_and_logs_with_its_journal() {
        let mut diary = Diary::default();
        let none = Actions::default();
        diary.journal.note(
            SimTime(2_000_000),
            Event::ConnectFailed,
            (State::Connecting, State::Offline),
            &none,
        );
        diary.journal.note(
            SimTime(5_500_000),
            Event::Connected,
            (State::Connecting, State::Online),
            &none,
        );
        diary.config_version = 3;
        let snapshot = diary.answer(&command(CommandKind::Diagnose, json!({})), &HEALTH, "1.4.2");
        assert_eq!(
            snapshot.result,
            json!({"status": "ok", "output": {
                "uptime_s": 93.25, "firmware": "1.4.2", "config_version": 3,
                "errors": {"provision": 0, "connect": 1, "connection_lost": 0, "ota": 0, "resets": 0, "error_reports": 0},
                "log_entries": 2, "battery": 0.14, "low_battery": true, "rssi": -97, "reading": 21.5,
            }})
        );
        diary.firmware = Some("2.0.0".into());
        let snapshot = diary.answer(&command(CommandKind::Diagnose, json!({})), &HEALTH, "1.4.2");
        assert_eq!(snapshot.result["output"]["firmware"], "2.0.0", "an update installed it");
        let logs = diary.answer(&command(CommandKind::Logs, json!({})), &HEALTH, "1.4.2");
        assert_eq!(
            logs.result["output"],
            json!({"written": 2, "events": [
                {"at_s": 2.0, "event": "connect_failed"},
                {"at_s": 5.5, "event": "connected"},
            ]})
        );
    }
}
