//! A device's I/O side: performing what the core decided (provision, connect, report, answer
//! the backend, download, leave) through its dialect, and recording what each action
//! measures. The driver ([`super::driver`]) calls it once per event, boxed, so an idle
//! device's task never holds these futures.

use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;

use super::context::{Member, ShardCtx};
use crate::device::{Action, Actions, BatteryLevel, Event, OtaReport, SimTime, State};
use crate::dialect::firmware::Attempt;
use crate::dialect::{Answer, DeviceCx, Devices, Dialect, Fault, Health, Inbox, Link, Provisioned, Report, Session};
use crate::metrics::recorder::{Counter, Latency};
use crate::model::{FaultKind, FaultSet, Outcome, Reading};
use crate::scratch;

/// How long a device leaving cleanly (to reboot) waits for its last messages' PUBACKs.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// When and why the actions of one event are performed.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// The event's simulated time.
    pub now: SimTime,
    /// When the event was meant to happen (the scheduled wake).
    pub intended: Instant,
    /// The device's planned arrival.
    pub arrival: Instant,
    /// When its uptime counts from: its arrival, or its last boot after a reset or reboot.
    pub up_since: Instant,
    /// When the running update started, in simulated time.
    pub update_started: SimTime,
    /// The event the actions follow from.
    pub event: Event,
    /// The core's states before and after the event ([`crate::device::Device::base_state`]).
    pub moved: (State, State),
}

/// What performing one event's actions asks of the task. (The wake-up the actions ask for is
/// taken by the driver when the core decides them.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Performed {
    /// Wait for the next event.
    Continue,
    /// The device is done.
    Stop,
}

/// Where a device lives: its shard, its mix entry and its index (the address it connects from
/// follows from the index, and is worked out again rather than kept).
pub struct Home<D: Dialect> {
    /// The shard it runs in.
    pub shard: Rc<ShardCtx<D>>,
    /// Its model, group and outages.
    pub member: Rc<Member>,
    /// Its index in the fleet.
    pub index: u64,
}

impl<D: Dialect> Home<D> {
    /// The device as its dialect sees it.
    pub fn cx(&self) -> DeviceCx<'_> {
        DeviceCx {
            shared: &self.shard.shared,
            index: self.index,
            model: &self.member.model,
            group: &self.member.group,
            source: self.shard.sources.map(|s| s.for_device(self.index)),
        }
    }
}

/// One device's I/O side: what it performs the core's actions with.
pub struct DeviceTask<D: Dialect> {
    /// Where it lives.
    pub home: Home<D>,
    /// Its link to the backend.
    pub link: Link,
    /// What its dialect holds for it.
    pub device: <D as Devices>::Device,
    /// When the device was provisioned, on the run's clock ([`SimTime::NEVER`] until then:
    /// a word, where an optional `Instant` takes two in every idle device's task). Config
    /// set before the device existed is not its latency.
    pub provisioned_at: SimTime,
}

impl<D: Dialect> DeviceTask<D> {
    /// Performs one event's actions in order; what they lead to goes to the inbox.
    ///
    /// Not an `async fn`, nor is [`DeviceTask::perform`]: the future is boxed for each event
    /// and, while a connect waits on a backed-up server, held by every device in flight, so
    /// it holds its arguments once (rust-lang/rust#62958) and what a device leaving needs
    /// only in a box of its own.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn would hold the actions twice in every event's future"
    )]
    pub fn perform_all<'a>(
        &'a mut self,
        actions: Actions,
        step: Step,
        inbox: &'a mut Inbox,
    ) -> impl Future<Output = Performed> + 'a {
        async move {
            self.note(&actions, step);
            for action in actions.iter() {
                match action {
                    Action::WakeAt(_) => {}
                    Action::Stop => {
                        Box::pin(self.link.hang_up()).await;
                        return Performed::Stop;
                    }
                    action => self.perform(action, step, inbox).await,
                }
            }
            Performed::Continue
        }
    }

    /// Performs one event's actions when all they do is publish a report (and ask for the
    /// next wake-up), as nearly every wake-up of a connected device does: what
    /// [`DeviceTask::perform_all`] does with them, in a future the size of a report's, not of
    /// every action's (a connect's is the largest). The driver boxes each event's future: one
    /// of over a kilobyte took the allocator's slow path and a copy of its size at every
    /// report (docs/scale.md, "Counting instructions").
    pub fn perform_report<'a>(
        &'a mut self,
        publish: Publish,
        actions: Actions,
        step: Step,
        inbox: &'a mut Inbox,
    ) -> impl Future<Output = Performed> + 'a {
        self.note(&actions, step);
        let Self { home, link, device, .. } = self;
        let sending = report(home, link, device, publish, step, inbox);
        async move {
            sending.await;
            Performed::Continue
        }
    }

    /// Notes what the device lived through, for a dialect whose devices keep a log.
    fn note(&mut self, actions: &Actions, step: Step) {
        let Self { home, device, .. } = self;
        home.shard
            .dialect
            .note(&home.cx(), device, step.now, step.event, step.moved, actions);
    }

    /// Does what the dialect owes the server of its own accord ([`Devices::due`] came).
    pub async fn on_due(&mut self, inbox: &mut Inbox) {
        let Self { home, link, device, .. } = self;
        home.shard.dialect.on_due(&home.cx(), device, link, inbox).await;
    }

    /// Performs one action.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn would hold its arguments twice in every event's future"
    )]
    fn perform<'a>(&'a mut self, action: Action, step: Step, inbox: &'a mut Inbox) -> impl Future<Output = ()> + 'a {
        async move {
            let Self {
                home,
                link,
                device,
                provisioned_at,
            } = self;
            let (shard, cx) = (&*home.shard, home.cx());
            let dialect = &shard.dialect;
            match action {
                Action::Provision => {
                    // Boxed: the provisioning exchange's future is large and runs once.
                    match Box::pin(dialect.provision(&cx, device)).await {
                        Ok(provisioned) => {
                            if provisioned == Provisioned::Exchanged {
                                // Provisioning latency runs from the planned arrival: the intended start.
                                cx.record(Latency::Provision, step.arrival);
                            }
                            cx.count(Counter::Provisioned);
                            *provisioned_at = shard.clock.sim(Instant::now());
                            if provisioned == Provisioned::Exchanged {
                                inbox.push(Event::Provisioned);
                            } else {
                                // Nothing was asked: what follows (the connect) was meant for
                                // when the device arrived, however late the harness got to it.
                                inbox.push_at(Event::Provisioned, step.intended);
                            }
                        }
                        Err(fault) => {
                            cx.count(fault.counter());
                            inbox.push(Event::ProvisionFailed);
                        }
                    }
                }
                Action::Connect => {
                    let session = Session::of(cx.model);
                    // Not boxed: in a connect storm every device in flight holds this future
                    // while the server backs up, and one box (this event's) costs less than
                    // two, during the storm and in the holes it leaves behind. A server that
                    // takes the connection and never answers (the handshake, the CONNACK)
                    // times out, as a device's connect would, and the device backs off.
                    let connecting = dialect.connect(&cx, device, session);
                    let connected = tokio::time::timeout(cx.model.link.connect_timeout, connecting)
                        .await
                        .unwrap_or(Err(Fault::Timeout));
                    match connected {
                        Ok(connected) => {
                            // A backend devices poll is "connected" without a connection: nothing
                            // to time or count.
                            if connected.is_open() {
                                // From the connect's intended start (the arrival, the end of a
                                // backoff), so a harness behind its schedule shows here too.
                                cx.record(Latency::Connect, step.intended);
                                cx.count(Counter::Connected);
                            }
                            *link = connected;
                            inbox.push(Event::Connected);
                        }
                        Err(fault) => {
                            cx.count(fault.counter());
                            // The backend no longer knows the device: the operator retired it.
                            let retired = fault == Fault::Retired;
                            inbox.push(if retired {
                                Event::Decommissioned
                            } else {
                                Event::ConnectFailed
                            });
                        }
                    }
                }
                Action::Publish { .. } => {
                    // A publish always has a report's fields.
                    if let Some(publish) = Publish::of(action) {
                        report(home, link, device, publish, step, inbox).await;
                    }
                }
                // A link that fails says no goodbye: the connection resets.
                Action::Disconnect => link.drop_conn(),
                Action::Leave => {
                    // Boxed: once in a device's life.
                    Box::pin(async {
                        link.flush(&shard.shared.meter, FLUSH_TIMEOUT).await;
                        link.hang_up().await;
                    })
                    .await;
                }
                Action::ReportConfig { version } => {
                    cx.count(Counter::ConfigReported);
                    let set_at = shard.shared.marks.config_set_at(cx.group);
                    // Config set before the device existed is not a latency of this device.
                    let since = set_at.filter(|set| shard.clock.sim(*set) >= *provisioned_at);
                    dialect
                        .answer(&cx, device, link, Answer::Config { version, since }, inbox)
                        .await;
                }
                Action::CommandResult {
                    battery,
                    reading_centi,
                    seq,
                } => {
                    cx.count(Counter::CommandsAnswered);
                    let health = Health {
                        battery,
                        // The signal its last report carried.
                        rssi: cx.rssi(seq.saturating_sub(1)),
                        reading_centi: (reading_centi != u16::MAX).then_some(reading_centi),
                        uptime: uptime(&cx, &step, shard.seed),
                    };
                    // Boxed: a few times in a device's life, and a log or a snapshot to write.
                    Box::pin(dialect.answer(&cx, device, link, Answer::Command(health), inbox)).await;
                }
                Action::RequestCertificate => {
                    // Boxed: a few times in a device's life.
                    Box::pin(dialect.answer(&cx, device, link, Answer::Certificate, inbox)).await;
                }
                Action::Download { from, to } => {
                    if from > 0 {
                        cx.count(Counter::OtaResumes);
                    }
                    inbox.push(match Box::pin(dialect.download(&cx, device, from, to)).await {
                        Attempt::Held(reached) => Event::Downloaded { reached },
                        Attempt::Gone => Event::ImageGone,
                    });
                }
                Action::OtaStatus(report) => {
                    if report.failed() {
                        shard.shared.marks.failure_reported();
                    }
                    if report == OtaReport::Unavailable {
                        cx.count(Counter::OtaUnavailable);
                    }
                    dialect.answer(&cx, device, link, Answer::Ota(report), inbox).await;
                }
                Action::OtaDone(outcome) => {
                    cx.record(Latency::OtaDuration, shard.clock.real(step.update_started));
                    cx.count(match outcome {
                        Outcome::Installed => Counter::OtaInstalled,
                        Outcome::Corrupt => Counter::OtaFailed,
                        Outcome::RolledBack => Counter::OtaRolledBack,
                        Outcome::Bricked => Counter::OtaBricked,
                    });
                }
                Action::Recovered { outage_end } => {
                    cx.record(Latency::Recovery, shard.clock.real(outage_end));
                    cx.count(Counter::OutageRecovered);
                }
                Action::Reset => cx.count(Counter::WatchdogResets),
                // Boxed: once in a device's life.
                Action::Retire => Box::pin(dialect.retire(&cx, device, link, step.intended)).await,
                Action::WakeAt(_) | Action::Stop => {}
            }
        }
    }
}

/// A report to publish: [`Action::Publish`]'s fields.
#[derive(Debug, Clone, Copy)]
pub struct Publish {
    seq: u32,
    battery: Option<BatteryLevel>,
    reading_centi: u16,
    faults: FaultSet,
}

impl Publish {
    /// The report `actions` publish when that is all they do, besides asking for the next
    /// wake-up ([`DeviceTask::perform_report`]).
    pub fn alone_in(actions: Actions) -> Option<Self> {
        actions.lone().and_then(Self::of)
    }

    /// A publish's report; none for another action.
    fn of(action: Action) -> Option<Self> {
        match action {
            Action::Publish {
                seq,
                battery,
                reading_centi,
                faults,
                ..
            } => Some(Self {
                seq,
                battery,
                reading_centi,
                faults,
            }),
            _ => None,
        }
    }
}

/// Publishes a report: the reading the device's state and model give, written as its model's
/// payload, handed to the dialect now (a broker's device writes its PUBLISH then); the future
/// is what the dialect's report still waits for, and holds no reading and no payload (their
/// buffers are given back first).
fn report<'a, D: Dialect>(
    home: &'a Home<D>,
    link: &'a mut Link,
    device: &'a mut <D as Devices>::Device,
    publish: Publish,
    step: Step,
    inbox: &'a mut Inbox,
) -> impl Future<Output = ()> + use<'a, D> {
    let Publish {
        seq,
        battery,
        reading_centi,
        faults,
    } = publish;
    let (shard, cx) = (&*home.shard, home.cx());
    let dialect = &shard.dialect;
    let now = Instant::now();
    if now.saturating_duration_since(step.intended) > super::park::LATE {
        // The harness fell behind its schedule: the latency recorded from the intended time
        // shows how much; this counts how often, and how often the thread woke late for it.
        cx.count(Counter::LateSends);
        if super::park::woke_late(step.intended, now) {
            cx.count(Counter::LateSendsWokenLate);
        }
    }
    // A copy into a scratch string: the reading must not hold the device, which the dialect's
    // report takes to change.
    let mut firmware = scratch::string();
    firmware.push_str(dialect.firmware(&cx, device));
    let model_faults = &cx.model.faults;
    if !faults.is_empty() {
        cx.count(Counter::FaultReports);
    }
    let reading = Reading {
        seq: u64::from(seq),
        uptime: uptime(&cx, &step, shard.seed),
        battery: battery.map(BatteryLevel::fraction),
        volts: battery
            .zip(cx.model.battery.as_ref())
            .map(|(level, model)| model.volts_at(level.fraction())),
        low_battery: battery.is_some_and(|b| b.low),
        value: if faults.has(FaultKind::OutOfRange) {
            model_faults.out_of_range_value
        } else {
            f64::from(reading_centi) / 100.0
        },
        rssi: cx.rssi(seq),
        firmware: &firmware,
        errors: if faults.has(FaultKind::ErrorBurst) {
            model_faults.codes()
        } else {
            &[]
        },
    };
    let mut payload = scratch::bytes();
    cx.model.telemetry.write_payload(&mut payload, &reading);
    let report = Report {
        payload: &payload,
        qos: cx.model.telemetry.qos,
        intended: step.intended,
        reading: &reading,
    };
    let sending = dialect.report(&cx, device, link, report, inbox);
    scratch::give_bytes(payload);
    scratch::give_string(firmware);
    sending
}

/// The uptime a device reports at `step`: simulated time since it arrived or last booted, as
/// its own clock counts it (drifting as its model says).
fn uptime(cx: &DeviceCx<'_>, step: &Step, seed: u64) -> Duration {
    let up = cx.sim_span(step.intended.saturating_duration_since(step.up_since));
    let drift = cx.model.faults.drift(seed, cx.index);
    if drift == 0.0 {
        up
    } else {
        up.mul_f64((1.0 + drift).max(0.0))
    }
}
