//! The typed scenario the engine runs: every value checked, every unit parsed (durations are
//! `Duration`, shares are fractions, sizes are bytes).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::device_model::DeviceModel;
use super::file::WorkerLoss;
use super::gate::Gate;
use crate::model::FaultKind;

/// Device models by name.
pub type ModelSet = BTreeMap<String, DeviceModel>;

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
    /// The real-time grid wake-ups and arrivals fall on (zero: none).
    pub wake_grid: Duration,
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

/// The backend a scenario drives: its `[backend]` section as written (no units to parse:
/// URLs, names of environment variables, topic templates), its keys checked by the kind's
/// dialect, which reads its own from here.
pub use super::file::BackendSection as Backend;

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
    /// What a `--workers` run does when a worker process dies.
    pub on_worker_loss: WorkerLoss,
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

impl Scenario {
    /// What of the timeline the run's duration cannot hold, if anything: a phase at or after
    /// the end, an outage or a fault that would end after it, a campaign whose last wave could
    /// not start before it (each wave soaks before the next). A scenario file is checked for
    /// the first two as it is read; this checks them again once `--duration` has changed the
    /// run's length.
    pub fn timeline_problem(&self) -> Option<String> {
        let end = self.duration;
        let show = |d: Duration| super::units::DisplayDuration(d).to_string();
        self.phases.iter().find_map(|phase| {
            let name = phase.action.name();
            let at = show(phase.at);
            if phase.at >= end {
                return Some(format!(
                    "phase \"{name}\" at {at} comes at or after the run's end at {}",
                    show(end)
                ));
            }
            // An outage or a fault may end with the run; a campaign's last wave must start
            // before it.
            let (lasts, what, may_end_with_run) = match &phase.action {
                Action::Outage { duration, .. } | Action::Fault { duration, .. } => (*duration, "would end", true),
                Action::Ota(campaign) => {
                    let waits = u32::try_from(campaign.waves.len().saturating_sub(1)).unwrap_or(u32::MAX);
                    (campaign.soak.saturating_mul(waits), "would start its last wave", false)
                }
                _ => return None,
            };
            let until = phase.at.saturating_add(lasts);
            let late = if may_end_with_run { until > end } else { until >= end };
            late.then(|| {
                format!(
                    "phase \"{name}\" at {at} {what} at {}, after the run's end at {}",
                    show(until),
                    show(end)
                )
            })
        })
    }
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
        /// Its arguments (for `set`, the keys to set).
        args: BTreeMap<String, serde_json::Value>,
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
    /// Ask a share of the target to rotate its certificates.
    Rotate {
        /// Share of the target, a fraction.
        share: f64,
        /// How long old certificates are still accepted after the new ones are issued.
        grace: Duration,
    },
    /// Set an alert rule on the backend.
    Alert(AlertRule),
    /// Put a share of the target in a fault for a while.
    Fault {
        /// Which fault.
        kind: FaultKind,
        /// Share of the target, a fraction.
        share: f64,
        /// How long (zero for an instant fault: a watchdog reset).
        duration: Duration,
    },
}

/// An alert rule an `alert` phase sets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AlertRule {
    /// A device whose battery is below this level (a fraction).
    BatteryBelow(f64),
    /// A device disconnected for at least this long.
    OfflineFor(Duration),
    /// A device that made at least `at_least` reports carrying error codes within `within`.
    ErrorCodes {
        /// Reports with error codes.
        at_least: u32,
        /// The window.
        within: Duration,
    },
    /// A device whose sensor read the same value in this many reports in a row.
    SensorStuck(u32),
}

impl AlertRule {
    /// The rule's kind as the backend names it.
    pub fn kind(self) -> &'static str {
        match self {
            Self::BatteryBelow(_) => "battery_below",
            Self::OfflineFor(_) => "offline_for",
            Self::ErrorCodes { .. } => "error_codes",
            Self::SensorStuck(_) => "sensor_stuck",
        }
    }
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
            Self::Rotate { .. } => "rotate",
            Self::Alert(_) => "alert",
            Self::Fault { .. } => "fault",
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
pub const COMMANDS: [&str; 5] = ["reboot", "set", "logs", "diagnose", "read"];
