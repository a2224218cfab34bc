//! What crosses the device seam: what a dialect is told of the device it acts for
//! ([`DeviceCx`], with what its shard shares: [`Shared`]), what it is asked to send
//! ([`Report`], [`Answer`]), what it answers ([`Provisioned`]), and the device's [`Inbox`],
//! where what comes of it goes.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::OperatorLog;
use super::calendar::Calendar;
use super::wake_grid::WakeGrid;
use crate::device::{BatteryLevel, Event, OtaReport};
use crate::metrics::recorder::{Counter, Latency, Meter};
use crate::model::{Image, Reading};
use crate::scenario::DeviceModel;

/// What a device's connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// An always-connected device: a session the backend keeps, subscribed to what the
    /// backend sends it (config, commands, update jobs).
    Persistent,
    /// A duty-cycled device's wake: a clean session that only reports, then leaves.
    DutyCycle,
}

impl Session {
    /// The session a device of `model` opens.
    pub fn of(model: &DeviceModel) -> Self {
        if model.telemetry.duty_cycle {
            Self::DutyCycle
        } else {
            Self::Persistent
        }
    }
}

/// How a device got its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provisioned {
    /// By an exchange with the backend: its latency is recorded.
    Exchanged,
    /// Without asking anyone (a broker's devices are who their serial says).
    Given,
}

/// A telemetry report to send.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    /// The payload, as the model writes it.
    pub payload: &'a [u8],
    /// The model's QoS (0 or 1).
    pub qos: u8,
    /// When it was meant to go: its latency runs from here.
    pub intended: Instant,
    /// What the payload says, for a protocol that sends the values rather than the payload
    /// (LwM2M's notifications, its objects' reads).
    pub reading: &'a Reading<'a>,
}

/// An answer a device owes the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Config `version` is applied; `config.latency` runs from `since`, the operator's
    /// setting of it, when the device existed then.
    Config {
        /// The version applied.
        version: u32,
        /// When the operator set it.
        since: Option<Instant>,
    },
    /// The command last received is done; a health snapshot answers with `Health`.
    Command(Health),
    /// Where the update stands.
    Ota(OtaReport),
    /// A certificate signing request, for a new certificate the backend asked for.
    Certificate,
}

/// How a device stands as it answers a command: what its health snapshot (`diagnose`) says
/// besides what its dialect keeps (its log's error counts, its firmware).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// Its battery (`None` for mains power).
    pub battery: Option<BatteryLevel>,
    /// Its radio's signal strength, dBm, if the model gives one.
    pub rssi: Option<i16>,
    /// Its sensor's last reading, in hundredths (`None` before the first).
    pub reading_centi: Option<u16>,
    /// Simulated time since it was switched on.
    pub uptime: Duration,
}

/// What reaches a device's core, in order: what the server sent, whichever way it came, and
/// what came of the device's own requests, each with when it happened.
#[derive(Debug, Default)]
pub struct Inbox {
    /// Boxed: a pointer in every idle device's task rather than a queue's four words. Events
    /// pass through here only around connects, failures and operator requests, not per report.
    #[allow(
        clippy::box_collection,
        reason = "the box is the point: a pointer in the task rather than the queue's four words"
    )]
    events: Option<Box<VecDeque<(Event, Instant)>>>,
}

impl Inbox {
    /// An event that happens now.
    pub fn push(&mut self, event: Event) {
        self.push_at(event, Instant::now());
    }

    /// An event that happened at `at`.
    pub fn push_at(&mut self, event: Event, at: Instant) {
        self.events.get_or_insert_default().push_back((event, at));
    }

    /// The next event for the core.
    pub fn pop(&mut self) -> Option<(Event, Instant)> {
        self.events.as_mut()?.pop_front()
    }

    /// Gives back the queue's memory: an idle device keeps no event buffer.
    pub fn release(&mut self) {
        self.events = None;
    }
}

/// What a shard's devices share that a dialect uses.
#[derive(Debug, Default)]
pub struct Shared {
    /// The shard's latencies and counts.
    pub meter: Meter,
    /// What the operator did, to measure answers from.
    pub marks: Arc<OperatorLog>,
    /// The images the scenario's campaigns roll out, by version.
    pub images: Vec<(String, Image)>,
    /// Simulated seconds per real second.
    pub time_scale: f64,
    /// The grid the shard's wake-ups fall on, and so a link's own duties.
    pub grid: WakeGrid,
    /// When each waiting device is to be woken ([`Calendar::ring`] runs as the shard's task).
    pub calendar: Calendar,
    /// The key serials are computed with (`plan::serial`): devices keep no serial.
    pub serial_key: u64,
}

/// The device a dialect acts for, and what it may use of its shard.
#[derive(Debug, Clone, Copy)]
pub struct DeviceCx<'a> {
    /// What the shard's devices share.
    pub shared: &'a Shared,
    /// The device's index in the fleet.
    pub index: u64,
    /// Its model.
    pub model: &'a DeviceModel,
    /// Its group.
    pub group: &'a str,
    /// The local address it connects from.
    pub source: Option<IpAddr>,
}

impl DeviceCx<'_> {
    /// The device's serial, computed again when needed rather than kept.
    pub fn serial(&self) -> String {
        crate::plan::serial(&self.model.serial_prefix, self.shared.serial_key, self.index)
    }

    /// Writes the device's serial to `out` (the hot path's serial, with no allocation).
    pub fn write_serial(&self, out: &mut String) {
        crate::plan::write_serial(out, &self.model.serial_prefix, self.shared.serial_key, self.index);
    }

    /// Records a latency measured from `since`.
    pub fn record(&self, latency: Latency, since: Instant) {
        self.shared.meter.record(latency, since);
    }

    /// Counts one event.
    pub fn count(&self, counter: Counter) {
        self.shared.meter.count(counter);
    }

    /// The image version `version` of `size` bytes is: the scenario's, with its risks, or a
    /// plain one (an update the scenario did not describe).
    pub fn image_for(&self, version: &str, size: u64) -> Image {
        match self.shared.images.iter().find(|(v, _)| v == version) {
            Some((_, image)) => Image {
                size_bytes: size,
                ..*image
            },
            None => Image {
                size_bytes: size,
                corrupt: 0.0,
                boot_fail: 0.0,
            },
        }
    }

    /// The radio's signal strength at report `seq`, dBm, if the model gives one
    /// (`link.signal`): the same for the same seed, device and report.
    pub fn rssi(&self, seq: u32) -> Option<i16> {
        let signal = self.model.link.signal?;
        Some(signal.dbm(self.shared.serial_key, self.index, u64::from(seq)))
    }

    /// A real-time interval (a server's polling interval) in the device's simulated time.
    pub fn sim_span(&self, real: Duration) -> Duration {
        Duration::from_secs_f64(real.as_secs_f64() * self.shared.time_scale)
    }
}
