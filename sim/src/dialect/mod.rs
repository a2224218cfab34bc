//! Backends as fleetsim drives them: one folder per backend, each holding its whole story, and
//! the one seam through which the engine asks them anything.
//!
//! Design: a dialect is a type that implements [`Dialect`], itself four small traits, one per
//! concern: [`Keys`] (its `[backend]` keys, the phases it plays, `--backend`), [`Devices`]
//! (what a device sends and how it reads what arrives), [`Operator`] (the phases, played
//! through the backend's own API) and [`Summary`] (its view at the end, its section of
//! `summary.json`). The engine is generic over the dialect and is instantiated once per
//! dialect by the registry below, the one place that lists them: a dialect's calls are
//! inlined, a device holds its dialect's own state and nothing of the others', and no future
//! is boxed or dispatched through a vtable to cross the seam. `docs/dialects.md` says why, and
//! how to add one.
//!
//! Shared by the dialects: a device's [`link`] (a byte stream, a datagram endpoint, or none;
//! the one path by which what the server sends reaches a device), [`fault`]s counted by kind,
//! [`firmware`] downloads, the [`operator_log`] that devices measure the operator's actions
//! from, and the operator's seeded picks and images ([`phase`]).
//!
//! The `async fn`s of these traits are called on a shard's own thread (devices run as local
//! tasks), so their futures need not be `Send`.
#![allow(async_fn_in_trait)]

pub mod embedded;
pub mod fault;
pub mod firmware;
pub mod hawkbit;
pub mod keys;
pub mod link;
pub mod mqtt;
pub mod operator_log;
pub mod phase;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::device::{Event, OtaReport};
use crate::metrics::recorder::{Counter, Latency, Meter, Snapshot};
use crate::model::Image;
use crate::report::figures::CampaignView;
use crate::scenario::file::{BackendKind, BackendSection};
use crate::scenario::{Backend, BackendKeys, DeviceModel, KeyError, Scenario};

pub use fault::Fault;
pub use link::{Arrival, Link};
pub use operator_log::{OperatorLog, StartedCampaign};
pub use phase::{PhaseCx, Played};

/// A backend fleetsim drives: its keys, its devices, its operator and its summary.
pub trait Dialect: Keys + Devices + Operator + Summary + Clone + Send + Sync + std::fmt::Debug + 'static {
    /// The scenario's `backend.kind` this dialect runs.
    const KIND: BackendKind;

    /// Starts or finds the scenario's backend and readies it for the run (claims, a login).
    fn start(scenario: &Scenario, out: &Path) -> Result<Started<Self>, StartError>;

    /// For a `--workers` run: starts in this process the backend every worker then shares,
    /// when the scenario names none and the dialect can start one. Most dialects drive a
    /// server that runs elsewhere: `None`.
    fn host(scenario: &Scenario, out: &Path) -> Result<Option<Hosted>, StartError> {
        let _ = (scenario, out);
        Ok(None)
    }
}

/// The `[backend]` keys a dialect takes, the phases it plays, and where `--backend` points it.
/// Called while a scenario is checked, before anything runs.
pub trait Keys {
    /// The keys of `[backend]` only this backend (and any other that lists them) takes,
    /// besides `kind`, `url`, `api` and `token_env`; the others are refused before
    /// [`Keys::check_keys`] is asked.
    const KEYS: &'static [&'static str];

    /// Checks this backend's keys: the url and api it needs, and its own keys. An error names
    /// the key and what is expected.
    fn check_keys(section: &BackendSection) -> Result<(), KeyError>;

    /// The first phase this backend cannot play, with why (a broker has no operator API).
    fn refuse(scenario: &Scenario) -> Result<(), String>;

    /// Points `backend` at `url`, given on the command line; an error says which URL this
    /// backend takes.
    fn aim(backend: &mut Backend, url: &str) -> Result<(), String>;
}

/// The device side: what a device sends, and how it reads what the server sends it.
pub trait Devices {
    /// What a device keeps between wakes, asleep in its shard's timer heap (its credentials):
    /// every sleeping device holds one, so keep it small.
    type Kept: 'static;
    /// What an awake device holds for this backend besides its link: what it kept, the
    /// answers it owes, the update it is taking.
    type Device: 'static;

    /// Where devices connect; source addresses are spread in its address family.
    fn device_addr(&self) -> SocketAddr;

    /// A device waking with what it kept (nothing before it provisioned).
    fn wake(&self, kept: Option<Self::Kept>) -> Self::Device;

    /// What a device falling asleep keeps.
    fn keep(&self, device: Self::Device) -> Option<Self::Kept>;

    /// Gets the device its credentials.
    async fn provision(&self, cx: &DeviceCx<'_>, device: &mut Self::Device) -> Result<Provisioned, Fault>;

    /// Connects the device for a `session` of that kind: the link it holds from now on
    /// ([`Link::None`] for a backend that keeps no standing connection).
    async fn connect(&self, cx: &DeviceCx<'_>, device: &mut Self::Device, session: Session) -> Result<Link, Fault>;

    /// Sends a telemetry report (a poll, for a backend that devices poll); what comes of it
    /// goes to the inbox.
    async fn report(
        &self,
        cx: &DeviceCx<'_>,
        device: &mut Self::Device,
        link: &mut Link,
        report: Report<'_>,
        inbox: &mut Inbox,
    );

    /// Answers the backend (a config applied, a command done, an update's progress); what
    /// comes of it goes to the inbox.
    async fn answer(
        &self,
        cx: &DeviceCx<'_>,
        device: &mut Self::Device,
        link: &mut Link,
        answer: Answer,
        inbox: &mut Inbox,
    );

    /// Fetches bytes `from..to` of the update's image; returns how many bytes of it the
    /// device holds afterwards.
    async fn download(&self, cx: &DeviceCx<'_>, device: &mut Self::Device, from: u64, to: u64) -> u64;

    /// Reads what the server sent the device on its link: the event it means to the device,
    /// if any. Something that does not parse is counted (`errors.protocol`), never a panic.
    fn read(&self, cx: &DeviceCx<'_>, device: &mut Self::Device, arrival: Arrival<'_>) -> Option<Event>;
}

/// The operator side: the scenario's phases, played through the backend's own API while the
/// run goes on, and the backend followed meanwhile.
pub trait Operator {
    /// Whether this backend has an operator API the run plays phases through.
    fn operates(&self) -> bool;

    /// Plays one phase (never an outage: devices cut themselves off).
    async fn play(&self, cx: PhaseCx<'_>) -> Played;

    /// Whether the backend has a health check for [`Operator::health`] to ask; without one,
    /// a server that goes away shows in its devices' failed requests.
    fn watched(&self) -> bool {
        false
    }

    /// Asks the backend whether it serves.
    async fn health(&self) -> Result<(), String> {
        Ok(())
    }

    /// The campaigns the operator started, as the backend reports them now.
    async fn campaigns(&self, started: &[StartedCampaign]) -> Vec<CampaignView> {
        let _ = started;
        Vec::new()
    }
}

/// The backend's view at the end of a run, and its section of the summary.
pub trait Summary {
    /// What the backend holds at the end.
    async fn view(&self, cx: ViewCx<'_>) -> BackendView;

    /// This dialect's section of a merged summary (under its kind's name) from the parts'
    /// sections and the merged counters; `Null` when it writes none.
    fn merge_section(sections: &[&Value], count: &dyn Fn(Counter) -> u64) -> Value {
        let _ = (sections, count);
        Value::Null
    }
}

/// A started backend, ready for the run.
pub struct Started<D> {
    /// How the run reaches it.
    pub dialect: D,
    /// The backend, when it runs in this process.
    pub hosted: Option<Hosted>,
}

/// A backend running in this process for the length of a run.
pub struct Hosted {
    /// What the run's command line names it by (`--backend`), for workers and shards.
    pub url: String,
    /// How to run it in a process of its own instead, for a person to read.
    pub own_process: &'static str,
    /// Stops it; `devices_active` is its count of active devices, read just before.
    stop: Box<dyn FnOnce() -> Option<u64> + Send>,
}

impl Hosted {
    /// A backend at `url`, stopped by `stop` (which returns its active devices first).
    pub fn new(url: String, own_process: &'static str, stop: impl FnOnce() -> Option<u64> + Send + 'static) -> Self {
        Self {
            url,
            own_process,
            stop: Box::new(stop),
        }
    }

    /// Stops the backend; returns the devices it held as active.
    pub fn stop(self) -> Option<u64> {
        (self.stop)()
    }
}

/// Why a backend could not be started or readied.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The scenario asks for something this version does not run.
    #[error("{0}")]
    Unsupported(String),
    /// The backend could not start, be reached or logged in to, or a secret is missing.
    #[error("{0}")]
    Backend(String),
}

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
    /// The command last received is done.
    Command,
    /// Where the update stands.
    Ota(OtaReport),
}

/// What reaches a device's core, in order: what the server sent, whichever way it came, and
/// what came of the device's own requests, each with when it happened.
#[derive(Debug, Default)]
pub struct Inbox {
    events: VecDeque<(Event, Instant)>,
}

impl Inbox {
    /// An event that happens now.
    pub fn push(&mut self, event: Event) {
        self.push_at(event, Instant::now());
    }

    /// An event that happened at `at`.
    pub fn push_at(&mut self, event: Event, at: Instant) {
        self.events.push_back((event, at));
    }

    /// The next event for the core.
    pub fn pop(&mut self) -> Option<(Event, Instant)> {
        self.events.pop_front()
    }

    /// Gives back the queue's memory: an idle device keeps no event buffer.
    pub fn release(&mut self) {
        self.events = VecDeque::new();
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

    /// A real-time interval (a server's polling interval) in the device's simulated time.
    pub fn sim_span(&self, real: Duration) -> Duration {
        Duration::from_secs_f64(real.as_secs_f64() * self.shared.time_scale)
    }
}

/// What the summary's view is given.
#[derive(Debug, Clone, Copy)]
pub struct ViewCx<'a> {
    /// The scenario's groups.
    pub groups: &'a [&'a str],
    /// The campaigns the operator started.
    pub campaigns: &'a [StartedCampaign],
    /// Whether this process played the operator (one shard of a sharded run does).
    pub operated: bool,
    /// What the devices measured, merged.
    pub snapshot: &'a Snapshot,
}

/// The backend's view at the end of a run.
#[derive(Debug, Default)]
pub struct BackendView {
    /// The campaigns the operator started, as the backend saw them.
    pub campaigns: Vec<CampaignView>,
    /// The devices the backend holds as active (for `devices.lost`).
    pub devices_active: Option<u64>,
    /// The dialect's section of `summary.json`, written under its kind's name.
    pub section: Option<Value>,
    /// Lines worth a person's attention (where the server and the devices disagree).
    pub notes: Vec<String>,
}

/// Something to do with the dialect of a kind, whichever it is: [`visit`] calls
/// [`Visit::visit`] with it.
pub trait Visit {
    /// What the visit gives.
    type Output;
    /// Does it with dialect `D`.
    fn visit<D: Dialect>(self) -> Self::Output;
}

/// The registry: every dialect that runs, one line each.
macro_rules! registry {
    ($($dialect:ty),* $(,)?) => {
        /// Visits the dialect of `kind`; `None` for a kind no dialect runs yet.
        pub fn visit<V: Visit>(kind: BackendKind, visitor: V) -> Option<V::Output> {
            $(if kind == <$dialect as Dialect>::KIND {
                return Some(visitor.visit::<$dialect>());
            })*
            None
        }

        /// The kinds that run, in registry order.
        pub const RUNNING: &[BackendKind] = &[$(<$dialect as Dialect>::KIND),*];

        /// The kinds whose dialect takes `[backend]` key `key`.
        fn owners(key: &str) -> Vec<BackendKind> {
            let mut owners = Vec::new();
            $(if <$dialect as Keys>::KEYS.contains(&key) {
                owners.push(<$dialect as Dialect>::KIND);
            })*
            owners
        }

        /// Merges every dialect's section of the parts' summaries into `summary` (a merge
        /// of report folders).
        pub fn merge_sections(summary: &mut Value, parts: &[&Value]) {
            let counters = summary["metrics"]["counters"].clone();
            let count = |c: Counter| counters[c.name()].as_u64().unwrap_or(0);
            $({
                let name = <$dialect as Dialect>::KIND.name();
                let sections: Vec<&Value> = parts.iter().map(|p| &p[name]).collect();
                let merged = <$dialect as Summary>::merge_section(&sections, &count);
                if !merged.is_null() {
                    summary[name] = merged;
                }
            })*
        }
    };
}

registry!(embedded::Embedded, mqtt::Broker, hawkbit::Hawkbit);

/// Whether a dialect runs `kind`.
pub fn runs(kind: BackendKind) -> bool {
    RUNNING.contains(&kind)
}

/// Why `kind` does not run: it names the kinds that do.
pub fn not_running(kind: BackendKind) -> String {
    let names: Vec<String> = RUNNING.iter().map(|k| format!("\"{}\"", k.name())).collect();
    format!(
        "backend kind \"{}\" does not run yet; expected one of {}",
        kind.name(),
        names.join(", ")
    )
}

/// The registry as scenario loading asks it: it checks a `[backend]` section's keys with the
/// dialect of its kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Registry;

impl BackendKeys for Registry {
    fn check(&self, section: &BackendSection) -> Result<(), KeyError> {
        check_keys(section)
    }
}

/// Checks the keys of a `[backend]` section with its kind's dialect: a kind that does not
/// run, or a key another kind's dialect takes, is refused first.
pub fn check_keys(section: &BackendSection) -> Result<(), KeyError> {
    struct Check<'a>(&'a BackendSection);
    impl Visit for Check<'_> {
        type Output = Result<(), KeyError>;
        fn visit<D: Dialect>(self) -> Self::Output {
            if let Some(key) = self.0.dialect_keys().find(|key| !D::KEYS.contains(key)) {
                let owners: Vec<String> = owners(key).iter().map(|k| format!("\"{}\"", k.name())).collect();
                let message = format!("only a backend of kind {} takes this key", owners.join(" or "));
                return Err(KeyError::new(key, message));
            }
            D::check_keys(self.0)
        }
    }
    visit(section.kind, Check(section)).unwrap_or_else(|| Err(KeyError::new("kind", not_running(section.kind))))
}

/// Refuses a scenario whose backend cannot play one of its phases, naming it.
pub fn refuse(scenario: &Scenario) -> Result<(), String> {
    struct Refuse<'a>(&'a Scenario);
    impl Visit for Refuse<'_> {
        type Output = Result<(), String>;
        fn visit<D: Dialect>(self) -> Self::Output {
            D::refuse(self.0)
        }
    }
    let kind = scenario.backend.kind;
    visit(kind, Refuse(scenario)).unwrap_or_else(|| Err(format!("{}: {}", scenario.file.display(), not_running(kind))))
}

/// Points a scenario's backend at `url` (`--backend`).
pub fn aim(backend: &mut Backend, url: &str) -> Result<(), String> {
    struct Aim<'a>(&'a mut Backend, &'a str);
    impl Visit for Aim<'_> {
        type Output = Result<(), String>;
        fn visit<D: Dialect>(self) -> Self::Output {
            D::aim(self.0, self.1)
        }
    }
    let kind = backend.kind;
    visit(kind, Aim(backend, url)).unwrap_or_else(|| Err(format!("nothing yet: {}", not_running(kind))))
}

/// Starts in this process the backend a `--workers` run's workers share, if its dialect
/// starts one for this scenario.
pub fn host(scenario: &Scenario, out: &Path) -> Result<Option<Hosted>, StartError> {
    struct Host<'a>(&'a Scenario, &'a Path);
    impl Visit for Host<'_> {
        type Output = Result<Option<Hosted>, StartError>;
        fn visit<D: Dialect>(self) -> Self::Output {
            D::host(self.0, self.1)
        }
    }
    let kind = scenario.backend.kind;
    visit(kind, Host(scenario, out)).unwrap_or_else(|| Err(StartError::Unsupported(not_running(kind))))
}

/// `SCHEME://IP:PORT[/...]` to a socket address: fleetsim runs take addresses, not names.
pub fn url_addr(url: &str, scheme: &str) -> Option<SocketAddr> {
    url.strip_prefix(scheme)?.split('/').next()?.parse().ok()
}

/// The value of the environment variable the scenario's `backend.<key>` names.
pub fn env_value(scenario: &Scenario, key: &str, var: Option<&str>) -> Result<String, StartError> {
    let file = scenario.file.display();
    let Some(var) = var else {
        return Err(StartError::Backend(format!(
            "backend: {file}: backend.{key} is missing: name the environment variable that holds it"
        )));
    };
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Ok(value),
        _ => Err(StartError::Backend(format!(
            "backend: {file}: backend.{key} names {var}, which is not set; export {var}=... before the run"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_running_kind_has_one_dialect_and_the_others_say_which_run() {
        for kind in RUNNING {
            assert_eq!(RUNNING.iter().filter(|k| *k == kind).count(), 1, "{kind:?} once");
            assert!(runs(*kind));
        }
        assert!(!runs(BackendKind::Lwm2m));
        assert_eq!(
            not_running(BackendKind::Lwm2m),
            "backend kind \"lwm2m\" does not run yet; expected one of \"embedded\", \"mqtt\", \"hawkbit\""
        );
    }
}
