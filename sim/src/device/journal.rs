//! A device's own event log: what it lived through lately, with simulated timestamps, as a
//! real device keeps a ring buffer it uploads when asked (the reference backend's `logs`
//! command), and the error counts its health snapshot gives (`diagnose`).
//!
//! Design: written from what the core decided (an event, the states it moved between, the
//! actions it led to), so it tells what the device saw, not what the harness did: an event the
//! core found stale (a connect that came back after the device gave up on it) is not logged.
//! Sixteen entries of eight bytes, the newest overwriting the oldest; a time is kept in tenths
//! of a simulated second (up to 13 simulated years, then it stays there).

use std::fmt::Write as _;

use super::core::SimTime;
use super::events::{Action, Actions, CommandKind, Event};
use super::ota::OtaReport;
use super::state::State;
use crate::model::{FaultKind, FaultSet};

/// Entries kept: the newest sixteen.
pub const CAPACITY: usize = 16;

/// What a log entry says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logged {
    /// The backend issued it credentials.
    Provisioned,
    /// Provisioning failed (refused, or no answer).
    ProvisionFailed,
    /// It connected.
    Connected,
    /// A connect failed.
    ConnectFailed,
    /// Its connection dropped.
    ConnectionLost,
    /// It applied desired config of this version.
    ConfigApplied(u32),
    /// It carried out this command.
    Command(CommandKind),
    /// Its update reached this step.
    Ota(OtaReport),
    /// Its battery went under the model's `low_at`.
    LowBattery,
    /// It asked for a new certificate.
    CertificateRequested,
    /// It took a new certificate and logs in with it.
    CertificateInstalled,
    /// The backend refused it: decommissioned.
    Decommissioned,
    /// Its watchdog reset it.
    WatchdogReset,
    /// Its report was the first made in this fault (a stuck or out-of-range sensor, an
    /// error burst).
    FaultStarted(FaultKind),
    /// Its report was the first made out of this fault.
    FaultEnded(FaultKind),
}

impl Logged {
    /// The entry's name in the uploaded log.
    pub fn name(self) -> &'static str {
        match self {
            Self::Provisioned => "provisioned",
            Self::ProvisionFailed => "provision_failed",
            Self::Connected => "connected",
            Self::ConnectFailed => "connect_failed",
            Self::ConnectionLost => "connection_lost",
            Self::ConfigApplied(_) => "config_applied",
            Self::Command(_) => "command",
            Self::Ota(_) => "ota",
            Self::LowBattery => "low_battery",
            Self::CertificateRequested => "certificate_requested",
            Self::CertificateInstalled => "certificate_installed",
            Self::Decommissioned => "decommissioned",
            Self::WatchdogReset => "watchdog_reset",
            Self::FaultStarted(_) => "fault_started",
            Self::FaultEnded(_) => "fault_ended",
        }
    }

    /// Packs the entry's kind (high byte) and detail (low 24 bits).
    fn pack(self) -> u32 {
        let (kind, detail) = match self {
            Self::Provisioned => (0, 0),
            Self::ProvisionFailed => (1, 0),
            Self::Connected => (2, 0),
            Self::ConnectFailed => (3, 0),
            Self::ConnectionLost => (4, 0),
            // Versions past 2^24 - 1 stay there (a backend's millionth config change).
            Self::ConfigApplied(version) => (5, version.min(DETAIL_MAX)),
            Self::Command(kind) => (6, kind as u32),
            Self::Ota(report) => (7, report as u32),
            Self::LowBattery => (8, 0),
            Self::CertificateRequested => (9, 0),
            Self::CertificateInstalled => (10, 0),
            Self::Decommissioned => (11, 0),
            Self::WatchdogReset => (12, 0),
            Self::FaultStarted(kind) => (13, kind as u32),
            Self::FaultEnded(kind) => (14, kind as u32),
        };
        kind << 24 | detail
    }

    /// The entry [`Logged::pack`] made.
    fn unpack(packed: u32) -> Option<Self> {
        let detail = packed & DETAIL_MAX;
        Some(match packed >> 24 {
            0 => Self::Provisioned,
            1 => Self::ProvisionFailed,
            2 => Self::Connected,
            3 => Self::ConnectFailed,
            4 => Self::ConnectionLost,
            5 => Self::ConfigApplied(detail),
            6 => Self::Command(*CommandKind::ALL.get(detail as usize)?),
            7 => Self::Ota(*OtaReport::ALL.get(detail as usize)?),
            8 => Self::LowBattery,
            9 => Self::CertificateRequested,
            10 => Self::CertificateInstalled,
            11 => Self::Decommissioned,
            12 => Self::WatchdogReset,
            13 => Self::FaultStarted(*FaultKind::ALL.get(detail as usize)?),
            14 => Self::FaultEnded(*FaultKind::ALL.get(detail as usize)?),
            _ => return None,
        })
    }
}

/// The largest detail an entry holds.
const DETAIL_MAX: u32 = (1 << 24) - 1;

/// One entry: when, in tenths of a simulated second, and what ([`Logged::pack`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Entry {
    at_ds: u32,
    what: u32,
}

/// The failures a device counts since it arrived, for its health snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    /// Provisioning attempts that failed.
    pub provision: u16,
    /// Connects that failed.
    pub connect: u16,
    /// Connections that dropped.
    pub connection_lost: u16,
    /// Updates that failed or rolled back.
    pub ota: u16,
    /// Watchdog resets.
    pub resets: u16,
    /// Reports that carried error codes.
    pub error_reports: u16,
}

/// A device's event log and error counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Journal {
    entries: [Entry; CAPACITY],
    /// Entries written in all; the newest is at `(written - 1) % CAPACITY`.
    written: u32,
    errors: ErrorCounts,
    /// `LowBattery` was logged: said once.
    low_battery: bool,
    /// The faults the last report was made in.
    faults: FaultSet,
}

impl Journal {
    /// Notes what the core decided at `now`: `event`, which moved the device between the
    /// core's states `moved` (see [`super::Device::base_state`]), leading to `actions`.
    pub fn note(&mut self, now: SimTime, event: Event, moved: (State, State), actions: &Actions) {
        let (from, to) = moved;
        let lost = lost(event, moved, actions);
        let logged = match event {
            Event::Provisioned if from == State::Provisioning => Some(Logged::Provisioned),
            Event::ProvisionFailed if from == State::Provisioning => {
                bump(&mut self.errors.provision);
                Some(Logged::ProvisionFailed)
            }
            Event::Connected if from == State::Connecting && to == State::Online => Some(Logged::Connected),
            Event::ConnectFailed if from == State::Connecting => {
                bump(&mut self.errors.connect);
                Some(Logged::ConnectFailed)
            }
            _ if lost => {
                bump(&mut self.errors.connection_lost);
                Some(Logged::ConnectionLost)
            }
            Event::Decommissioned if to == State::Decommissioned => Some(Logged::Decommissioned),
            Event::CredentialsChanged if from == State::Online => Some(Logged::CertificateInstalled),
            Event::Command(kind) if actions.iter().any(|a| matches!(a, Action::CommandResult { .. })) => {
                Some(Logged::Command(kind))
            }
            _ => None,
        };
        if let Some(logged) = logged {
            self.push(now, logged);
        }
        for action in actions.iter() {
            if let Action::Publish { faults, .. } = action {
                self.fault_changes(now, faults);
            }
            let logged = match action {
                Action::ReportConfig { version } => Logged::ConfigApplied(version),
                Action::OtaStatus(report) => {
                    if report.failed() {
                        bump(&mut self.errors.ota);
                    }
                    Logged::Ota(report)
                }
                Action::RequestCertificate => Logged::CertificateRequested,
                Action::Reset => {
                    bump(&mut self.errors.resets);
                    Logged::WatchdogReset
                }
                Action::Publish {
                    battery: Some(level), ..
                } if level.low && !self.low_battery => {
                    self.low_battery = true;
                    Logged::LowBattery
                }
                _ => continue,
            };
            self.push(now, logged);
        }
    }

    /// A report made in `faults`: the faults that started or ended since the last report are
    /// logged, and an error burst's report counted.
    fn fault_changes(&mut self, now: SimTime, faults: FaultSet) {
        if faults.has(FaultKind::ErrorBurst) {
            bump(&mut self.errors.error_reports);
        }
        if faults == self.faults {
            return;
        }
        for kind in FaultKind::ALL {
            match (self.faults.has(kind), faults.has(kind)) {
                (false, true) => self.push(now, Logged::FaultStarted(kind)),
                (true, false) => self.push(now, Logged::FaultEnded(kind)),
                _ => {}
            }
        }
        self.faults = faults;
    }

    /// Adds an entry, overwriting the oldest once full.
    fn push(&mut self, now: SimTime, logged: Logged) {
        let at_ds = u32::try_from(now.0 / 100_000).unwrap_or(u32::MAX);
        self.entries[self.written as usize % CAPACITY] = Entry {
            at_ds,
            what: logged.pack(),
        };
        self.written = self.written.saturating_add(1);
    }

    /// The entries kept, oldest first: when (simulated seconds since the run started) and what.
    pub fn entries(&self) -> impl Iterator<Item = (f64, Logged)> + '_ {
        let kept = (self.written as usize).min(CAPACITY);
        let first = self.written as usize - kept;
        (first..self.written as usize).filter_map(move |n| {
            let entry = self.entries[n % CAPACITY];
            Some((f64::from(entry.at_ds) / 10.0, Logged::unpack(entry.what)?))
        })
    }

    /// Entries written since the device arrived, those overwritten included.
    pub fn written(&self) -> u32 {
        self.written
    }

    /// The failures counted since the device arrived.
    pub fn errors(&self) -> ErrorCounts {
        self.errors
    }

    /// The log as JSON: `{"written":N,"events":[{"at_s":12.3,"event":"connected"},...]}`,
    /// oldest first, each with its detail (`"version"`, `"command"`, `"state"`).
    pub fn write_json(&self, out: &mut String) {
        // Writing into a String cannot fail.
        let _ = write!(out, "{{\"written\":{},\"events\":[", self.written);
        for (k, (at_s, logged)) in self.entries().enumerate() {
            if k > 0 {
                out.push(',');
            }
            let _ = write!(out, "{{\"at_s\":{at_s:.1},\"event\":\"{}\"", logged.name());
            match logged {
                Logged::ConfigApplied(version) => {
                    let _ = write!(out, ",\"version\":{version}");
                }
                Logged::Command(kind) => {
                    let _ = write!(out, ",\"command\":\"{}\"", kind.name());
                }
                Logged::Ota(report) => {
                    let _ = write!(out, ",\"state\":\"{}\"", report.name());
                }
                Logged::FaultStarted(kind) | Logged::FaultEnded(kind) => {
                    let _ = write!(out, ",\"fault\":\"{}\"", kind.name());
                }
                _ => {}
            }
            out.push('}');
        }
        out.push_str("]}");
    }
}

/// Whether the link dropped under the device: the server closed the connection, or the core
/// cut it as its link model or a mass outage says (a goodbye before a reboot is not a loss,
/// and a watchdog reset is logged as itself).
fn lost(event: Event, (from, to): (State, State), actions: &Actions) -> bool {
    from == State::Online
        && !matches!(to, State::Online | State::Decommissioned | State::Dead | State::Bricked)
        && (event == Event::ConnectionLost || actions.iter().any(|a| a == Action::Disconnect))
        && !actions.iter().any(|a| a == Action::Reset)
}

/// Adds one to a count, stopping at its largest.
fn bump(count: &mut u16) {
    *count = count.saturating_add(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::BatteryLevel;
    use crate::model::FaultSet;

    fn at(s: u64) -> SimTime {
        SimTime(s * 1_000_000)
    }

    #[test]
    fn what_the_core_took_is_logged_with_its_time_and_stale_events_are_not() {
        let mut journal = Journal::default();
        let none = Actions::default();
        journal.note(
            at(1),
            Event::Provisioned,
            (State::Provisioning, State::Connecting),
            &none,
        );
        journal.note(at(2), Event::ConnectFailed, (State::Connecting, State::Offline), &none);
        journal.note(at(4), Event::Connected, (State::Connecting, State::Online), &none);
        // A connect the core had given up on comes back: stale.
        journal.note(at(5), Event::Connected, (State::Offline, State::Offline), &none);
        journal.note(
            at(6),
            Event::ConfigDesired { version: 7 },
            (State::Online, State::Online),
            &Actions::of(&[Action::ReportConfig { version: 7 }]),
        );
        let answered = Actions::of(&[Action::CommandResult {
            battery: None,
            reading_centi: 0,
            seq: 0,
        }]);
        journal.note(
            at(7),
            Event::Command(CommandKind::Logs),
            (State::Online, State::Online),
            &answered,
        );
        // A command while offline is not carried out: not logged.
        journal.note(
            at(8),
            Event::Command(CommandKind::Set),
            (State::Offline, State::Offline),
            &none,
        );
        // The link model (or an outage) cuts it off at a wake-up.
        journal.note(
            at(8),
            Event::Wake,
            (State::Online, State::Offline),
            &Actions::of(&[Action::Disconnect]),
        );
        journal.note(
            at(9),
            Event::Wake,
            (State::Online, State::Online),
            &Actions::of(&[Action::OtaStatus(OtaReport::RolledBack)]),
        );
        let logged: Vec<(f64, Logged)> = journal.entries().collect();
        assert_eq!(
            logged,
            [
                (1.0, Logged::Provisioned),
                (2.0, Logged::ConnectFailed),
                (4.0, Logged::Connected),
                (6.0, Logged::ConfigApplied(7)),
                (7.0, Logged::Command(CommandKind::Logs)),
                (8.0, Logged::ConnectionLost),
                (9.0, Logged::Ota(OtaReport::RolledBack)),
            ]
        );
        assert_eq!(
            journal.errors(),
            ErrorCounts {
                provision: 0,
                connect: 1,
                connection_lost: 1,
                ota: 1,
                resets: 0,
                error_reports: 0,
            }
        );
        let mut json = String::new();
        journal.write_json(&mut json);
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(parsed["written"], 7);
        assert_eq!(
            parsed["events"][3],
            serde_json::json!({"at_s": 6.0, "event": "config_applied", "version": 7})
        );
        assert_eq!(parsed["events"][4]["command"], "logs");
        assert_eq!(parsed["events"][6]["state"], "rolled_back");
    }

    #[test]
    fn a_watchdog_reset_is_logged_as_itself_and_error_reports_are_counted() {
        let mut journal = Journal::default();
        journal.note(
            at(3),
            Event::Wake,
            (State::Online, State::Offline),
            &Actions::of(&[Action::Disconnect, Action::Reset]),
        );
        let burst = Action::Publish {
            seq: 4,
            payload_bytes: 64,
            battery: None,
            reading_centi: 2150,
            faults: FaultSet::NONE.with(FaultKind::ErrorBurst),
        };
        journal.note(
            at(30),
            Event::Wake,
            (State::Online, State::Online),
            &Actions::of(&[burst]),
        );
        let stuck = Action::Publish {
            seq: 5,
            payload_bytes: 64,
            battery: None,
            reading_centi: 2150,
            faults: FaultSet::NONE.with(FaultKind::StuckSensor),
        };
        journal.note(
            at(40),
            Event::Wake,
            (State::Online, State::Online),
            &Actions::of(&[stuck]),
        );
        journal.note(
            at(50),
            Event::Wake,
            (State::Online, State::Online),
            &Actions::of(&[stuck]),
        );
        let entries: Vec<(f64, Logged)> = journal.entries().collect();
        assert_eq!(
            entries,
            vec![
                (3.0, Logged::WatchdogReset),
                (30.0, Logged::FaultStarted(FaultKind::ErrorBurst)),
                (40.0, Logged::FaultStarted(FaultKind::StuckSensor)),
                (40.0, Logged::FaultEnded(FaultKind::ErrorBurst)),
            ],
            "a reset is not a connection_lost too; a fault is logged where it starts and ends"
        );
        let errors = journal.errors();
        assert_eq!((errors.resets, errors.connection_lost, errors.error_reports), (1, 0, 1));
        let mut json = String::new();
        journal.write_json(&mut json);
        assert!(
            json.contains(r#"{"at_s":40.0,"event":"fault_started","fault":"stuck_sensor"}"#),
            "{json}"
        );
    }

    #[test]
    fn the_newest_sixteen_are_kept_and_low_battery_is_said_once() {
        let mut journal = Journal::default();
        let low = Actions::of(&[Action::Publish {
            seq: 0,
            payload_bytes: 64,
            battery: Some(BatteryLevel {
                permille: 100,
                low: true,
            }),
            reading_centi: 0,
            faults: FaultSet::NONE,
        }]);
        for s in 0..40 {
            journal.note(at(s), Event::Wake, (State::Online, State::Online), &low);
            journal.note(
                at(s),
                Event::ConnectionLost,
                (State::Online, State::Offline),
                &Actions::default(),
            );
        }
        assert_eq!(journal.written(), 41);
        let logged: Vec<(f64, Logged)> = journal.entries().collect();
        assert_eq!(logged.len(), CAPACITY);
        assert!(logged.iter().all(|(_, l)| *l == Logged::ConnectionLost), "{logged:?}");
        assert_eq!(logged.first().map(|e| e.0), Some(24.0));
        assert_eq!(logged.last().map(|e| e.0), Some(39.0));
        assert_eq!(journal.errors().connection_lost, 40);
    }

    #[test]
    fn entries_pack_and_unpack_whole() {
        let all = [
            Logged::Provisioned,
            Logged::ConfigApplied(DETAIL_MAX),
            Logged::Command(CommandKind::Diagnose),
            Logged::Ota(OtaReport::Succeeded),
            Logged::Decommissioned,
        ];
        for logged in all {
            assert_eq!(Logged::unpack(logged.pack()), Some(logged));
        }
        assert_eq!(
            Logged::unpack(Logged::ConfigApplied(u32::MAX).pack()),
            Some(Logged::ConfigApplied(DETAIL_MAX))
        );
        assert_eq!(Logged::unpack(200 << 24), None);
    }
}
