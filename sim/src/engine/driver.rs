//! The driver: one task per device that performs what the device core decides, over the
//! lean MQTT transport (and HTTP for firmware), and records what it measures into its shard's
//! recorder.
//!
//! Design: the task sleeps until the device's planned arrival, then loops: hand the core an
//! event, perform the actions it returns (provision, connect, publish, answer, download,
//! disconnect), then wait on its [`Link`] for the next thing to happen: the wake-up the core
//! asked for, a message from the backend, a dropped connection, or shutdown. Latencies run
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
use tokio_util::sync::CancellationToken;

use super::clock::RunClock;
use super::download::download;
use super::link::{Awaited, Job, Link, plain_image};
use super::operator_log::OperatorLog;
use crate::device::{Action, Ctx, Device, Event, OtaReport, Outage, SimTime, State};
use crate::dialect::Dialect;
use crate::dialect::embedded::ProvisionError;
use crate::dialect::mqtt::Identity;
use crate::metrics::recorder::{Counter, Latency, Recorder};
use crate::model::{Image, Outcome, Reading};
use crate::plan::PlannedDevice;
use crate::scenario::DeviceModel;
use crate::transport::mqtt::TransportError;
use crate::transport::source::SourceAddrs;

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
    /// The images the scenario's campaigns roll out, by version.
    pub images: Vec<(String, Image)>,
    /// What the operator did, to measure answers from.
    pub operator: Arc<OperatorLog>,
    /// Latencies and counts.
    pub recorder: RefCell<Recorder>,
    /// Devices per lifecycle state, indexed like `State::ALL`.
    pub states: RefCell<[u64; 11]>,
    /// Cancelled at the end of the run.
    pub shutdown: CancellationToken,
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
pub async fn drive(shard: Rc<ShardCtx>, member: Rc<Member>, planned: PlannedDevice) {
    let (model, group) = (&member.model, member.group.as_str());
    let ctx = Ctx {
        seed: shard.seed,
        model,
        outages: &member.outages,
    };
    let arrival = shard.clock.start() + planned.first_wakeup;
    let arrival_sim = shard.clock.sim(arrival);
    let mut device = Device::new(planned.index, ctx, arrival_sim);
    // The simulated time of the event being acted on. Replies to the device's own requests
    // (provisioned, connected, refused, downloaded) count as instantaneous in simulated time:
    // the device's life is then the same whatever the network's real delays, which are
    // measured as latencies instead. Only events from outside (a dropped connection, a message
    // from the backend) take the clock.
    let mut acting_at = arrival_sim;
    tokio::select! {
        () = sleep_until(arrival) => {}
        () = shard.shutdown.cancelled() => return,
    }
    let mut device_task = DeviceTask {
        shard: &shard,
        model,
        group,
        planned: &planned,
        source: shard.sources.map(|s| s.for_device(planned.index)),
        link: Link::new(),
        payload: Vec::new(),
    };
    let mut events: VecDeque<(Event, Instant)> = VecDeque::from([(Event::Arrive, arrival)]);
    // The wake-up the core asked for, in real time and in its own simulated time: the core is
    // handed back exactly the simulated time it asked for, never a float round trip of it.
    let mut wake: Option<(Instant, SimTime)> = None;
    loop {
        let (event, at) = match events.pop_front() {
            Some(next) => next,
            None => match device_task.link.wait(&shard, wake.map(|(real, _)| real)).await {
                Some(next) => next,
                None => break,
            },
        };
        let now = match (event, wake) {
            (Event::Wake, Some((_, sim))) => sim,
            (Event::Arrive, _) => arrival_sim,
            (Event::ConnectionLost | Event::ConfigDesired { .. } | Event::Command(_) | Event::OtaJob(_), _) => {
                shard.clock.sim(at).max(acting_at)
            }
            _ => acting_at,
        };
        acting_at = now;
        let (before, was_waiting) = (device.state(), device.awaiting_recovery());
        let actions = device.on_event(now, event, ctx);
        if device.state() != before {
            shard.moved(before, device.state());
            if let Some(transitions) = &shard.transitions {
                transitions.borrow_mut().push((planned.index, now, device.state()));
            }
        }
        if !was_waiting && device.awaiting_recovery() {
            shard.count(Counter::OutageAffected);
        }
        let intended = wake.map_or(at, |(real, _)| real);
        for action in actions.iter() {
            match action {
                Action::WakeAt(sim) => wake = Some((shard.clock.real(sim), sim)),
                Action::Stop => {
                    device_task.hang_up().await;
                    return;
                }
                action => {
                    if let Some(next) = device_task.perform(action, now, intended, arrival, &device).await {
                        events.push_back((next, Instant::now()));
                    }
                }
            }
        }
    }
    device_task.hang_up().await;
}

/// One device's I/O side: what it performs the core's actions with.
struct DeviceTask<'a> {
    shard: &'a ShardCtx,
    model: &'a DeviceModel,
    group: &'a str,
    planned: &'a PlannedDevice,
    source: Option<std::net::IpAddr>,
    link: Link,
    payload: Vec<u8>,
}

impl DeviceTask<'_> {
    /// Performs one action; returns the event it led to, if any.
    async fn perform(
        &mut self,
        action: Action,
        now: SimTime,
        intended: Instant,
        arrival: Instant,
        device: &Device,
    ) -> Option<Event> {
        let shard = self.shard;
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
                self.model.telemetry.write_payload(&mut self.payload, &reading);
                let qos = if self.model.telemetry.qos == 0 {
                    QoS::AtMostOnce
                } else {
                    QoS::AtLeastOnce
                };
                let topic = self.link.credentials.as_ref()?.telemetry_topic.clone();
                let payload = std::mem::take(&mut self.payload);
                let result = self
                    .link
                    .publish(shard, &topic, &payload, qos, Awaited::Telemetry, intended)
                    .await;
                self.payload = payload;
                result.err()
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
                let set_at = shard.operator.config_set_at(self.group);
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
                shard.record(Latency::OtaDuration, shard.clock.real(device.update_started()));
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
        let shard = self.shard;
        let identity = Identity {
            serial: &self.planned.serial,
            index: self.planned.index,
            model: &self.model.name,
            group: self.group,
        };
        // Boxed: the provisioning exchange's future is large and runs once; kept inline it
        // would grow every idle device's task by its size.
        match Box::pin(shard.dialect.provision(identity, &self.model.firmware, self.source)).await {
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
        let shard = self.shard;
        let started = Instant::now();
        let Some(credentials) = &self.link.credentials else {
            // Connect only ever follows Provisioned; without credentials it fails.
            return Event::ConnectFailed;
        };
        match Box::pin(shard.dialect.connect(credentials, self.source)).await {
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
            .publish(self.shard, &topic, body, QoS::AtLeastOnce, awaited, since)
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
