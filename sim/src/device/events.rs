//! What passes between a device and its driver: the events that happen to a device
//! ([`Event`]), the actions it decides on ([`Action`], a few per event in [`Actions`]), and the
//! commands it understands ([`CommandKind`]).

use super::core::SimTime;
use super::ota::OtaReport;
use crate::model::{FaultSet, Image, Outcome};

/// A remote command a device understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    /// Answer, then restart.
    Reboot,
    /// Set a key; answer.
    Set,
    /// Upload the event log as the answer.
    Logs,
    /// Answer with a health snapshot.
    Diagnose,
    /// Read an LwM2M resource: the server's Read, which an LwM2M device answers as any Read
    /// (an MQTT device has no resources to read and says so).
    Read,
}

impl CommandKind {
    /// Every command, in declaration order (`kind as usize` is its place).
    pub const ALL: [CommandKind; 5] = [Self::Reboot, Self::Set, Self::Logs, Self::Diagnose, Self::Read];

    /// The command by its name on the wire.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The command's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Reboot => "reboot",
            Self::Set => "set",
            Self::Logs => "logs",
            Self::Diagnose => "diagnose",
            Self::Read => "read",
        }
    }
}

/// What happened to a device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event {
    /// Its planned arrival time came.
    Arrive,
    /// The backend issued credentials.
    Provisioned,
    /// The backend refused to provision it (or did not answer).
    ProvisionFailed,
    /// The connection is up.
    Connected,
    /// Connecting failed (refused, reset, timed out).
    ConnectFailed,
    /// An established connection dropped (the server closed it, an outage).
    ConnectionLost,
    /// The time it asked to wake at came.
    Wake,
    /// The operator decommissioned it (its credentials are refused).
    Decommissioned,
    /// The backend sent desired config `version`.
    ConfigDesired {
        /// The desired config's version.
        version: u32,
    },
    /// The backend sent a command.
    Command(CommandKind),
    /// The backend sent a firmware update job for `Image`.
    OtaJob(Image),
    /// A server pushed the whole of `Image` (an LwM2M block-wise Write of object 5's
    /// package): the device verifies what it holds, with no download of its own.
    OtaReceived(Image),
    /// A download attempt ended holding the image's first `reached` bytes.
    Downloaded {
        /// Bytes of the image held now.
        reached: u64,
    },
    /// A download attempt found the image gone (HTTP 404 or 410, CoAP 4.04): the device gives
    /// the update up.
    ImageGone,
    /// The server ordered a held update installed (an LwM2M server executed object 5's
    /// Update).
    InstallOrdered,
    /// The operator asked the device (through the backend) for a new certificate.
    RotateCertificate,
    /// The device holds new credentials (a new certificate): it logs in again with them.
    CredentialsChanged,
    /// The backend told the device how often to report (a hawkBit server's polling
    /// interval), in simulated milliseconds; 0 returns it to its model's schedule.
    ReportEvery {
        /// The interval, simulated milliseconds.
        ms: u32,
    },
}

/// A battery's state as a report carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatteryLevel {
    /// Charge left, in thousandths of the capacity.
    pub permille: u16,
    /// Below the model's `low_at`: the device saves power (its reports come further apart).
    pub low: bool,
}

impl BatteryLevel {
    /// The charge left as a fraction of the capacity.
    pub fn fraction(self) -> f64 {
        f64::from(self.permille) / 1000.0
    }
}

/// What a device wants done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Ask the backend for credentials.
    Provision,
    /// Open a connection with its credentials.
    Connect,
    /// Publish telemetry message `seq` of `payload_bytes`.
    Publish {
        /// Sequence number of the message.
        seq: u32,
        /// Payload size.
        payload_bytes: u32,
        /// The battery as the report leaves (`None` for a mains-powered device).
        battery: Option<BatteryLevel>,
        /// The sensor's reading, in hundredths (the telemetry model's random walk on 0 to
        /// 100).
        reading_centi: u16,
        /// The faults the report is made in: a stuck sensor repeats its reading, one out of
        /// range reads its model's out-of-range value, an error burst adds its codes.
        faults: FaultSet,
    },
    /// Drop the connection as a failing link does (no goodbye), or abandon a connect still
    /// in progress (its late success must be closed by the driver: the core has moved on and
    /// will ignore it).
    Disconnect,
    /// The watchdog reset the device (after the `Disconnect` that dropped its connection):
    /// for the figures and its log.
    Reset,
    /// Leave cleanly, as before a reboot: wait for what is in flight to be acknowledged, then
    /// say DISCONNECT and close.
    Leave,
    /// Deliver `Event::Wake` at this time.
    WakeAt(SimTime),
    /// The device retires (a `decommission` phase against a server fleetsim has no operator
    /// for): it says goodbye as its protocol has one (LwM2M's De-register, MQTT's DISCONNECT)
    /// before the `Stop` that follows.
    Retire,
    /// The device is done (dead, bricked, decommissioned): forget it.
    Stop,
    /// Report config `version` as applied.
    ReportConfig {
        /// The applied version.
        version: u32,
    },
    /// Answer the command just received, with what a health snapshot needs from the core.
    CommandResult {
        /// The battery now (`None` for a mains-powered device).
        battery: Option<BatteryLevel>,
        /// The sensor's last reading, in hundredths (`u16::MAX` before the first).
        reading_centi: u16,
        /// Reports published so far.
        seq: u32,
    },
    /// Ask the backend for a new certificate (send a certificate signing request).
    RequestCertificate,
    /// Fetch bytes `from..to` of the update's image (HTTP Range), then deliver
    /// `Event::Downloaded`. `to` short of the size is the model cutting the attempt.
    Download {
        /// First byte.
        from: u64,
        /// One past the last byte.
        to: u64,
    },
    /// Report the update's progress to the backend.
    OtaStatus(OtaReport),
    /// The update ended this way (for the figures; `OtaStatus` told the backend).
    OtaDone(Outcome),
    /// Connected again after a mass outage that cut this device off, which ended at this time.
    Recovered {
        /// When the outage ended.
        outage_end: SimTime,
    },
}

/// The most actions one event produces: a wake that flips the link, retries, reports and
/// finishes a download (Verifying, Installing, Rebooting, Disconnect) is seven with its WakeAt,
/// eight if a certificate renewal is due then too.
const MAX_ACTIONS: usize = 8;

/// The actions of one event, without allocating.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Actions {
    items: [Option<Action>; MAX_ACTIONS],
    len: u8,
}

impl Actions {
    pub(super) fn push(&mut self, action: Action) {
        // More than MAX_ACTIONS would be a bug in this module; the extra is dropped rather
        // than panicking in a run.
        if let Some(slot) = self.items.get_mut(usize::from(self.len)) {
            *slot = Some(action);
            self.len += 1;
        }
    }

    /// The actions, in order.
    pub fn iter(&self) -> impl Iterator<Item = Action> + '_ {
        self.items.iter().take(usize::from(self.len)).filter_map(|a| *a)
    }

    /// The one action these make besides asking for a wake-up, if they make just one (a
    /// connected device's usual wake-up makes a report and nothing else).
    pub fn lone(&self) -> Option<Action> {
        let mut doing = self.iter().filter(|action| !matches!(action, Action::WakeAt(_)));
        match (doing.next(), doing.next()) {
            (Some(action), None) => Some(action),
            _ => None,
        }
    }

    /// Whether the device restarts in these actions of `event`: a reboot command carried out
    /// (it leaves to reboot), an update installed (its reboot), the watchdog's reset. What a
    /// device holds only in memory is gone after it (an LwM2M client's observations and
    /// registration).
    pub fn restart(&self, event: Event) -> bool {
        self.iter().any(|action| {
            matches!(action, Action::Reset | Action::OtaStatus(OtaReport::Rebooting))
                || (action == Action::Leave && event == Event::Command(CommandKind::Reboot))
        })
    }
}

/// Actions as the tests write them.
#[cfg(test)]
impl Actions {
    /// `list`'s actions, in order.
    pub(crate) fn of(list: &[Action]) -> Self {
        let mut actions = Self::default();
        for action in list {
            actions.push(*action);
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lone action is the one that is not a wake-up, wherever the wake-ups are; none when
    /// there are two or none.
    #[test]
    fn the_lone_action_is_the_only_one_besides_wake_ups() {
        let (wake, one) = (Action::WakeAt(SimTime(5)), Action::Connect);
        assert_eq!(Actions::of(&[one]).lone(), Some(one));
        assert_eq!(Actions::of(&[one, wake]).lone(), Some(one));
        assert_eq!(Actions::of(&[wake, one, wake]).lone(), Some(one));
        assert_eq!(Actions::of(&[one, Action::Disconnect]).lone(), None);
        assert_eq!(Actions::of(&[one, wake, Action::Reset]).lone(), None);
        assert_eq!(Actions::of(&[wake]).lone(), None);
        assert_eq!(Actions::of(&[]).lone(), None);
    }
}
