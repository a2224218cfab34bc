//! The driver: one task per device that performs what the device core decides, over the
//! lean MQTT transport (and HTTP for firmware), and records what it measures into its shard's
//! recorder.
//!
//! Design: the task sleeps until the device's planned arrival, then loops: hand the core an
//! event, perform the actions it returns (provision, connect, publish, answer, download,
//! disconnect), then wait on its [`Link`] for the next thing to happen: the wake-up the core
//! asked for, a message from the backend, or a dropped connection. Latencies run
//! from the intended start of each operation (the planned arrival, the scheduled wake, the
//! operator's action), so a harness or backend that falls behind shows up in the figures
//! rather than hiding in a slower test. Shard state is shared through `Rc`: a shard runs on one
//! thread, so recording takes no lock.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::ConnectReturnCode;
use tokio::time::{Instant, sleep_until};

use super::clock::RunClock;
use super::download::download;
use super::link::{Awaited, Job, Link, plain_image};
use super::operator_log::OperatorLog;
use crate::device::{Action, Actions, Ctx, Device, Event, OtaReport, Outage, SimTime, State};
use crate::dialect::Dialect;
use crate::dialect::embedded::ProvisionError;
use crate::dialect::mqtt::Identity;
use crate::metrics::recorder::{Counter, Latency, Recorder};
use crate::model::{Image, Outcome, Reading};
use crate::plan::PlannedDevice;
use crate::scenario::DeviceModel;
use crate::transport::mqtt::TransportError;
use crate::transport::source::SourceAddrs;

/// A wake-up that never comes (a year away).
const NEVER: Duration = Duration::from_secs(86_400 * 365);
/// A send this much later than intended counts as late.
const LATE: Duration = Duration::from_millis(5);
/// How long a device leaving cleanly (to reboot) waits for its last messages' PUBACKs.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// What every device of a shard shares.
#[derive(Debug)]
pub struct ShardCtx {
    /// The scenario seed.
    pub seed: u64,
    /// The run's clock.
    pub clock: RunClock,
    /// The backend.
    pub dialect: Dialect,
    /// Local addresses to connect from.
    pub sources: Option<SourceAddrs>,
    /// The key serials are computed with (`plan::serial`): devices keep no serial.
    pub serial_key: u64,
    /// The images the scenario's campaigns roll out, by version.
    pub images: Vec<(String, Image)>,
    /// What the operator did, to measure answers from.
    pub operator: Arc<OperatorLog>,
    /// Latencies and counts.
    pub recorder: RefCell<Recorder>,
    /// Devices per lifecycle state, indexed like `State::ALL`.
    pub states: RefCell<[u64; 11]>,
    /// Every state change as (device index, simulated time, new state), when a test asks for
    /// the devices' life stories; `None` in runs, which keep only the counts.
    pub transitions: Option<RefCell<Vec<Transition>>>,
}

/// A device's state change: its index, the simulated time, the new state.
pub type Transition = (u64, SimTime, State);

impl ShardCtx {
    /// Records a latency measured from `since`.
    pub fn record(&self, latency: Latency, since: Instant) {
        self.recorder.borrow_mut().record(latency, since.elapsed());
    }

    /// Counts one event.
    pub fn count(&self, counter: Counter) {
        self.recorder.borrow_mut().count(counter, 1);
    }

    /// The image a job rolls out: the scenario's, with its risks, or a plain one.
    pub fn image_for(&self, job: &Job) -> Image {
        self.images
            .iter()
            .find(|(version, _)| *version == job.version)
            .map_or_else(
                || plain_image(job.size),
                |(_, image)| Image {
                    size_bytes: job.size,
                    ..*image
                },
            )
    }

    /// Counts a planned device (not arrived yet).
    pub fn planned(&self) {
        self.states.borrow_mut()[0] += 1;
    }

    fn moved(&self, from: State, to: State) {
        let mut states = self.states.borrow_mut();
        let index = |s: State| State::ALL.iter().position(|x| *x == s).unwrap_or(0);
        states[index(from)] = states[index(from)].saturating_sub(1);
        states[index(to)] += 1;
    }
}

/// What the devices of one mix entry share: their model, group and the outages that reach them.
#[derive(Debug)]
pub struct Member {
    /// The device model.
    pub model: DeviceModel,
    /// The group.
    pub group: String,
    /// The scenario's outages that reach the group, in time order.
    pub outages: Vec<Outage>,
}

/// Runs one device from its arrival until the core stops it or the shard shuts down.
///
/// Not an `async fn`: the device's state is built here, so the task's future holds each
/// piece once (an idle connected device costs what its future holds).
pub fn drive(shard: Rc<ShardCtx>, member: Rc<Member>, planned: PlannedDevice) -> impl Future<Output = ()> {
    let arrival = shard.clock.start() + planned.first_wakeup;
    let arrival_sim = shard.clock.sim(arrival);
    let ctx = Ctx {
        seed: shard.seed,
        model: &member.model,
        outages: &member.outages,
    };
    let device = Device::new(planned.index, ctx, arrival_sim);
    let source = shard.sources.map(|s| s.for_device(planned.index));
    let mut running = Running {
        device,
        acting_at: arrival_sim,
        arrival,
        wake: None,
        events: VecDeque::new(),
        io: DeviceTask {
            shard,
            member,
            index: planned.index,
            source,
            link: Link::new(),
        },
    };
    // Captured by the block and borrowed in place: an `async fn` taking it by value would
    // hold it twice (rust-lang/rust#62958).
    async move { running.run().await }
}

/// A device and its I/O, as its task holds them.
struct Running {
    device: Device,
    /// The simulated time of the event being acted on. Replies to the device's own requests
    /// (provisioned, connected, refused, downloaded) count as instantaneous in simulated time:
    /// the device's life is then the same whatever the network's real delays, which are
    /// measured as latencies instead. Only events from outside (a dropped connection, a
    /// message from the backend) take the clock.
    acting_at: SimTime,
    /// The planned arrival.
    arrival: Instant,
    /// The wake-up the core asked for, in its own simulated time: the core is handed back
    /// exactly the time it asked for, never a float round trip of it.
    wake: Option<SimTime>,
    /// Events to hand the core before waiting again.
    events: VecDeque<(Event, Instant)>,
    io: DeviceTask,
}

impl Running {
    async fn run(&mut self) {
        let shard = Rc::clone(&self.io.shard);
        sleep_until(self.arrival).await;
        self.events.push_back((Event::Arrive, self.arrival));
        loop {
            let (event, at) = match self.events.pop_front() {
                Some(next) => next,
                None => {
                    // An idle device keeps no event buffer.
                    self.events = VecDeque::new();
                    let wake = self
                        .wake
                        .map_or_else(|| Instant::now() + NEVER, |sim| shard.clock.real(sim));
                    self.io.link.wait(&shard, wake).await
                }
            };
            let (actions, step) = self.decide(event, at);
            // Boxed: an idle device's task holds only what waiting needs. Performing the
            // actions (connects, publishes, downloads) needs far more, and only for a moment.
            match Box::pin(self.io.perform_all(actions, step, &mut self.events)).await {
                Performed::Stop => return,
                Performed::WakeAt(Some(sim)) => self.wake = Some(sim),
                Performed::WakeAt(None) => {}
            }
        }
    }

    /// Hands the core one event and counts what changed.
    fn decide(&mut self, event: Event, at: Instant) -> (Actions, Step) {
        let shard = &*self.io.shard;
        let member = &*self.io.member;
        let ctx = Ctx {
            seed: shard.seed,
            model: &member.model,
            outages: &member.outages,
        };
        let now = match (event, self.wake) {
            (Event::Wake, Some(sim)) => sim,
            (Event::Arrive, _) => shard.clock.sim(self.arrival),
            (Event::ConnectionLost | Event::ConfigDesired { .. } | Event::Command(_) | Event::OtaJob(_), _) => {
                shard.clock.sim(at).max(self.acting_at)
            }
            _ => self.acting_at,
        };
        self.acting_at = now;
        let device = &mut self.device;
        let (before, was_waiting) = (device.state(), device.awaiting_recovery());
        let actions = device.on_event(now, event, ctx);
        if device.state() != before {
            shard.moved(before, device.state());
            if let Some(transitions) = &shard.transitions {
                transitions.borrow_mut().push((device.index, now, device.state()));
            }
        }
        if !was_waiting && device.awaiting_recovery() {
            shard.count(Counter::OutageAffected);
        }
        if was_waiting && !device.awaiting_recovery() && !actions.iter().any(|a| matches!(a, Action::Recovered { .. }))
        {
            shard.count(Counter::OutageExcused);
        }
        let intended = match (event, self.wake) {
            (Event::Wake, Some(sim)) => shard.clock.real(sim),
            _ => at,
        };
        let step = Step {
            now,
            intended,
            arrival: self.arrival,
            update_started: device.update_started(),
        };
        (actions, step)
    }
}

/// When and why the actions of one event are performed.
#[derive(Debug, Clone, Copy)]
struct Step {
    /// The event's simulated time.
    now: SimTime,
    /// When the event was meant to happen (the scheduled wake).
    intended: Instant,
    /// The device's planned arrival.
    arrival: Instant,
    /// When the running update started, in simulated time.
    update_started: SimTime,
}

/// What performing one event's actions asks of the task.
#[derive(Debug, Clone, Copy)]
enum Performed {
    /// Wake at this simulated time next (or keep the wake asked for before).
    WakeAt(Option<SimTime>),
    /// The device is done.
    Stop,
}

/// One device's I/O side: what it performs the core's actions with.
struct DeviceTask {
    shard: Rc<ShardCtx>,
    member: Rc<Member>,
    index: u64,
    source: Option<std::net::IpAddr>,
    link: Link,
}

impl DeviceTask {
    /// The device's serial, computed again when needed rather than kept.
    fn serial(&self) -> String {
        crate::plan::serial(&self.member.model.serial_prefix, self.shard.serial_key, self.index)
    }

    /// Performs one event's actions in order; what they lead to goes to `events`.
    async fn perform_all(
        &mut self,
        actions: Actions,
        step: Step,
        events: &mut VecDeque<(Event, Instant)>,
    ) -> Performed {
        let mut wake = None;
        for action in actions.iter() {
            match action {
                Action::WakeAt(sim) => wake = Some(sim),
                Action::Stop => {
                    self.hang_up().await;
                    return Performed::Stop;
                }
                action => {
                    if let Some(next) = self.perform(action, step).await {
                        events.push_back((next, Instant::now()));
                    }
                }
            }
        }
        Performed::WakeAt(wake)
    }

    /// Performs one action; returns the event it led to, if any.
    async fn perform(&mut self, action: Action, step: Step) -> Option<Event> {
        let shard = Rc::clone(&self.shard);
        let shard = &*shard;
        let member = Rc::clone(&self.member);
        let (model, group) = (&member.model, member.group.as_str());
        let Step {
            now,
            intended,
            arrival,
            update_started,
        } = step;
        match action {
            Action::Provision => Some(self.provision(arrival).await),
            Action::Connect => Some(self.connect().await),
            Action::Publish { seq, .. } => {
                if intended.elapsed() > LATE {
                    // The harness fell behind its schedule: the latency recorded from the
                    // intended time shows how much; this counts how often.
                    shard.count(Counter::LateSends);
                }
                let reading = Reading {
                    seq: u64::from(seq),
                    uptime: now.since(SimTime(0)),
                    battery: None,
                    value: 20.0,
                };
                let mut payload = Vec::new();
                model.telemetry.write_payload(&mut payload, &reading);
                let qos = if model.telemetry.qos == 0 {
                    QoS::AtMostOnce
                } else {
                    QoS::AtLeastOnce
                };
                let serial = self.serial();
                let identity = Identity {
                    serial: &serial,
                    index: self.index,
                    model: &model.name,
                    group,
                };
                let topic = shard.dialect.telemetry_topic(self.link.credentials.as_ref()?, identity);
                self.link
                    .publish(shard, &topic, &payload, qos, Awaited::Telemetry, intended)
                    .await
                    .err()
            }
            Action::Disconnect => {
                // A link that fails says no goodbye: the socket just closes.
                self.link.drop_conn();
                None
            }
            Action::Leave => {
                self.link.flush(shard, FLUSH_TIMEOUT).await;
                self.hang_up().await;
                None
            }
            Action::ReportConfig { version } => {
                shard.count(Counter::ConfigReported);
                let set_at = shard.operator.config_set_at(group);
                // Config set before the device existed is not a latency of this device.
                let since = set_at.filter(|set| self.link.provisioned_at.is_some_and(|p| *set >= p));
                let body = format!("{{\"version\":{version}}}");
                self.answer("config/reported", body.as_bytes(), since, Awaited::Config)
                    .await
            }
            Action::CommandResult => {
                shard.count(Counter::CommandsAnswered);
                let id = self.link.command.take()?;
                let device_id = self.link.credentials.as_ref()?.device_id.clone();
                let since = shard.operator.command_sent_at(&device_id);
                let body = br#"{"status":"ok","output":"done"}"#;
                self.answer(&format!("cmd/{id}/result"), body, since, Awaited::Command)
                    .await
            }
            Action::Download { from, to } => {
                let job = self.link.job.as_deref()?.clone();
                if from > 0 {
                    shard.count(Counter::OtaResumes);
                }
                let mut fetched = self.link.fetched.take().unwrap_or_default();
                let reached = Box::pin(download(shard, self.source, &job, &mut fetched, from, to)).await;
                // Kept until the next job replaces it: a finished download's hash is small.
                self.link.fetched = (reached < job.size).then_some(fetched);
                Some(Event::Downloaded { reached })
            }
            Action::OtaStatus(report) => {
                if matches!(report, OtaReport::Failed | OtaReport::RolledBack) {
                    shard.operator.failure_reported();
                }
                let campaign = self.link.job.as_ref().map_or(0, |job| job.campaign);
                let body = format!("{{\"campaign\":{campaign},\"state\":\"{}\"}}", report.name());
                self.answer("ota/status", body.as_bytes(), None, Awaited::Nothing).await
            }
            Action::OtaDone(outcome) => {
                shard.record(Latency::OtaDuration, shard.clock.real(update_started));
                shard.count(match outcome {
                    Outcome::Installed => Counter::OtaInstalled,
                    Outcome::Corrupt => Counter::OtaFailed,
                    Outcome::RolledBack => Counter::OtaRolledBack,
                    Outcome::Bricked => Counter::OtaBricked,
                });
                None
            }
            Action::Recovered { outage_end } => {
                shard.record(Latency::Recovery, shard.clock.real(outage_end));
                shard.count(Counter::OutageRecovered);
                None
            }
            Action::WakeAt(_) | Action::Stop => None,
        }
    }

    async fn provision(&mut self, arrival: Instant) -> Event {
        let shard = Rc::clone(&self.shard);
        let member = Rc::clone(&self.member);
        let serial = self.serial();
        let identity = Identity {
            serial: &serial,
            index: self.index,
            model: &member.model.name,
            group: &member.group,
        };
        // Boxed: the provisioning exchange's future is large and runs once.
        match Box::pin(shard.dialect.provision(identity, &member.model.firmware, self.source)).await {
            Ok(credentials) => {
                if shard.dialect.provisions() {
                    // Provisioning latency runs from the planned arrival: the intended start.
                    shard.record(Latency::Provision, arrival);
                }
                shard.count(Counter::Provisioned);
                self.link.credentials = Some(credentials);
                self.link.provisioned_at = Some(Instant::now());
                Event::Provisioned
            }
            Err(ProvisionError::Transport(error)) => {
                shard.count(error_counter(error));
                Event::ProvisionFailed
            }
            Err(ProvisionError::Rejected) => {
                // Rejected by the backend (claim revoked, serial decommissioned, ...).
                shard.count(Counter::ErrorsAuth);
                Event::ProvisionFailed
            }
        }
    }

    async fn connect(&mut self) -> Event {
        let shard = &*self.shard;
        let started = Instant::now();
        let Some(credentials) = &self.link.credentials else {
            // Connect only ever follows Provisioned; without credentials it fails.
            return Event::ConnectFailed;
        };
        let (serial, member) = (self.serial(), &*self.member);
        let identity = Identity {
            serial: &serial,
            index: self.index,
            model: &member.model.name,
            group: &member.group,
        };
        match Box::pin(shard.dialect.connect(credentials, identity, self.source)).await {
            Ok(conn) => {
                shard.record(Latency::Connect, started);
                shard.count(Counter::Connected);
                self.link.connected(conn);
                Event::Connected
            }
            Err(TransportError::Refused(ConnectReturnCode::NotAuthorized)) if shard.dialect.provisions() => {
                // The backend no longer knows these credentials: the operator retired the
                // device.
                shard.count(Counter::Decommissioned);
                Event::Decommissioned
            }
            Err(error) => {
                shard.count(error_counter(error));
                Event::ConnectFailed
            }
        }
    }

    /// Publishes an answer at QoS 1 on the device's own `suffix` topic.
    async fn answer(&mut self, suffix: &str, body: &[u8], since: Option<Instant>, awaited: Awaited) -> Option<Event> {
        let topic = format!("fleet/v1/d/{}/{suffix}", self.link.credentials.as_ref()?.device_id);
        let (since, awaited) = match since {
            Some(since) => (since, awaited),
            None => (Instant::now(), Awaited::Nothing),
        };
        self.link
            .publish(&self.shard, &topic, body, QoS::AtLeastOnce, awaited, since)
            .await
            .err()
    }

    async fn hang_up(&mut self) {
        if let Some(conn) = self.link.conn.take() {
            let _ = conn.disconnect().await;
        }
        self.link.drop_conn();
    }
}

fn error_counter(error: TransportError) -> Counter {
    match error {
        TransportError::Refused(_) => Counter::ErrorsAuth,
        TransportError::Io(std::io::ErrorKind::TimedOut) => Counter::ErrorsTimeout,
        TransportError::Io(_) | TransportError::Closed => Counter::ErrorsRefused,
        TransportError::Protocol => Counter::ErrorsProtocol,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::mqtt::Broker;
    use crate::scenario::parse_model;

    /// An idle connected device costs its task's future for the whole run: keep it small.
    #[test]
    fn a_device_task_is_small() {
        let text = "name = \"m\"\nprotocol = \"mqtt\"\nfirmware = \"1.0\"\n[telemetry]\ninterval = \"1m\"\npayload_bytes = 8\n";
        let model = parse_model(std::path::Path::new("m.toml"), text).expect("valid model");
        let shard = Rc::new(ShardCtx {
            seed: 1,
            clock: RunClock::new(Instant::now(), 1.0),
            dialect: Dialect::Mqtt(Broker {
                addr: "127.0.0.1:1883".parse().expect("addr"),
                telemetry_topic: "t".into(),
                command_topic: "c".into(),
            }),
            sources: None,
            serial_key: 0,
            images: Vec::new(),
            operator: Arc::new(OperatorLog::default()),
            recorder: RefCell::new(Recorder::default()),
            states: RefCell::new([0; 11]),
            transitions: None,
        });
        let member = Rc::new(Member {
            model,
            group: "g".into(),
            outages: Vec::new(),
        });
        let planned = PlannedDevice {
            index: 0,
            serial: "S".into(),
            mix: 0,
            first_wakeup: Duration::ZERO,
        };
        let task = drive(shard, member, planned);
        let size = std::mem::size_of_val(&task);
        println!("device task future: {size} bytes");
        assert!(size <= 900, "a device's task future grew to {size} bytes");
    }
}
