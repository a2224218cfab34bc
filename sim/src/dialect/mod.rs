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
//! Beside the traits: what crosses the device seam ([`device_io`]), what starting a backend
//! gives ([`backend`]), the [`registry`]; and what the dialects share: a device's [`link`] (a
//! byte stream, a datagram endpoint, or none; the one path by which what the server sends
//! reaches a device), [`fault`]s counted by kind, [`firmware`] downloads, the
//! [`operator_log`] that devices measure the operator's actions from, the operator's seeded
//! picks and images ([`phase`]), and URL checks for the [`keys`].
//!
//! The `async fn`s of these traits are called on a shard's own thread (devices run as local
//! tasks), so their futures need not be `Send`.
#![allow(async_fn_in_trait)]

pub mod alert_book;
pub mod backend;
pub mod calendar;
pub mod device_io;
pub mod embedded;
pub mod fault;
pub mod firmware;
pub mod hawkbit;
pub mod inflight;
pub mod keys;
pub mod link;
pub mod lwm2m;
pub mod mqtt;
pub mod operator_log;
pub mod phase;
pub mod precise_timer;
pub mod registry;
pub mod tls;
pub mod ungiven;
pub mod wake_grid;

use std::net::SocketAddr;
use std::path::Path;

use serde_json::Value;
use tokio::time::Instant;

use crate::device::{Actions, Event, SimTime, State};
use crate::dialect::firmware::Attempt;
use crate::metrics::recorder::Counter;
use crate::report::figures::CampaignView;
use crate::scenario::file::{BackendKind, BackendSection};
use crate::scenario::{Backend, KeyError, Scenario};

pub use backend::{BackendView, Hosted, StartError, Started, ViewCx, env_value, url_addr};
pub use device_io::{Answer, DeviceCx, Health, Inbox, Provisioned, Report, Session, Shared};
pub use fault::Fault;
pub use link::{Arrival, Heard, Link, Woken};
pub use operator_log::{OperatorLog, StartedCampaign};
pub use phase::{PhaseCx, Played};
pub use registry::{RUNNING, Registry, Visit, aim, check_keys, host, merge_sections, not_running, refuse, runs, visit};

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

    /// The figures this backend, as `backend` configures it, cannot give, with why: a gate
    /// on one is refused before the run ([`ungiven`]).
    fn ungiven(backend: &Backend) -> Vec<ungiven::Ungiven>;

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
    ///
    /// What it needs of `report` and `cx` it takes before it returns (a broker's device
    /// writes its PUBLISH then): its future holds neither, so the report's reading and
    /// payload are given back before it is awaited, and the future a device performs a report
    /// with, boxed at every report, stays small (docs/scale.md, "Counting instructions").
    fn report<'a>(
        &'a self,
        cx: &DeviceCx<'a>,
        device: &'a mut Self::Device,
        link: &'a mut Link,
        report: Report<'_>,
        inbox: &'a mut Inbox,
    ) -> impl Future<Output = ()> + use<'a, Self>;

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

    /// Fetches bytes `from..to` of the update's image; says how many bytes of it the device
    /// holds afterwards, or that the image is gone.
    async fn download(&self, cx: &DeviceCx<'_>, device: &mut Self::Device, from: u64, to: u64) -> Attempt;

    /// Says the goodbye of a device that retires ([`crate::device::Action::Retire`]): by
    /// default MQTT's DISCONNECT on its connection, if it has one; a dialect whose server
    /// holds more of the device (an LwM2M registration) ends that too. `intended` is when
    /// the phase retired it: the goodbye's latency runs from then.
    async fn retire(&self, cx: &DeviceCx<'_>, device: &mut Self::Device, link: &mut Link, intended: Instant) {
        let _ = (cx, device, intended);
        link.hang_up().await;
    }

    /// When the device owes its server something of its own accord, whatever the core has
    /// planned (an LwM2M registration's update before its lifetime runs out), if ever: the
    /// device's task wakes for it then. An awake device's only; a sleeping one does what it
    /// owes when it next wakes.
    fn due(&self, device: &Self::Device) -> Option<Instant> {
        let _ = device;
        None
    }

    /// Does what [`Devices::due`] said was due; what comes of it goes to the inbox.
    async fn on_due(&self, cx: &DeviceCx<'_>, device: &mut Self::Device, link: &mut Link, inbox: &mut Inbox) {
        let _ = (cx, device, link, inbox);
    }

    /// The firmware version the device runs now, for its reports: its model's until an update
    /// installed another (a dialect whose devices take updates knows which).
    fn firmware<'a>(&self, cx: &DeviceCx<'a>, device: &'a Self::Device) -> &'a str {
        let _ = device;
        &cx.model.firmware
    }

    /// Notes what the core just decided for the device, at simulated time `now`: `event`,
    /// which moved it between the core's states `moved` ([`crate::device::Device::base_state`]),
    /// leading to `actions`. For a dialect whose devices keep a log of their own (a
    /// [`crate::device::Journal`], which the reference backend's `logs` command uploads); most
    /// keep nothing.
    fn note(
        &self,
        cx: &DeviceCx<'_>,
        device: &mut Self::Device,
        now: SimTime,
        event: Event,
        moved: (State, State),
        actions: &Actions,
    ) {
        let _ = (cx, device, now, event, moved, actions);
    }

    /// Reads what the server sent the device on its link: the event it means to the device,
    /// if any. Something that does not parse is counted (`errors.protocol`), never a panic.
    /// A protocol whose server asks and waits (CoAP's requests) answers here, on `link`,
    /// without waiting ([`Link::try_send`]): a lost answer is asked again by the server.
    fn read(&self, cx: &DeviceCx<'_>, device: &mut Self::Device, link: &Link, arrival: Arrival<'_>) -> Option<Event>;
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

    /// The alerts the backend raised after its record `after` (an opaque position, 0 at the
    /// start), and the position to ask from next. Only a backend that plays `alert` phases
    /// is asked.
    async fn raised_alerts(&self, after: i64) -> Result<(Vec<RaisedAlert>, i64), String> {
        Ok((Vec::new(), after))
    }
}

/// An alert a backend raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaisedAlert {
    /// The rule's id, as the backend gave it when the rule was set.
    pub rule: String,
    /// The device's id.
    pub device_id: String,
    /// When the backend raised it, Unix milliseconds.
    pub at_ms: u64,
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
