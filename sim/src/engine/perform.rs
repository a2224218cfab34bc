//! A device's I/O side: performing what the core decided (provision, connect, publish,
//! answer the backend, download, leave) over the dialect's transport, and recording what each
//! action measures. The driver ([`super::driver`]) calls it once per event, boxed, so an idle
//! device's task never holds these futures.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::ConnectReturnCode;
use tokio::time::Instant;

use super::download::download;
use super::driver::{Member, ShardCtx};
use super::link::{Awaited, Link};
use crate::device::{Action, Actions, Event, OtaReport, SimTime};
use crate::dialect::Session;
use crate::dialect::embedded::ProvisionError;
use crate::dialect::mqtt::Identity;
use crate::metrics::recorder::{Counter, Latency};
use crate::model::{Outcome, Reading};
use crate::transport::mqtt::TransportError;

/// A send this much later than intended counts as late.
const LATE: Duration = Duration::from_millis(5);
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
    /// When the running update started, in simulated time.
    pub update_started: SimTime,
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

/// One device's I/O side: what it performs the core's actions with.
pub struct DeviceTask {
    /// The shard it runs in.
    pub shard: Rc<ShardCtx>,
    /// Its model, group and outages.
    pub member: Rc<Member>,
    /// Its index in the fleet.
    pub index: u64,
    /// The local address it connects from.
    pub source: Option<std::net::IpAddr>,
    /// Its connection.
    pub link: Link,
}

impl DeviceTask {
    /// The device's serial, computed again when needed rather than kept.
    fn serial(&self) -> String {
        crate::plan::serial(&self.member.model.serial_prefix, self.shard.serial_key, self.index)
    }

    /// Performs one event's actions in order; what they lead to goes to `events`.
    pub async fn perform_all(
        &mut self,
        actions: Actions,
        step: Step,
        events: &mut VecDeque<(Event, Instant)>,
    ) -> Performed {
        for action in actions.iter() {
            match action {
                Action::WakeAt(_) => {}
                Action::Stop => {
                    self.hang_up().await;
                    return Performed::Stop;
                }
                Action::Publish { .. } if self.shard.dialect.ddi().is_some() => {
                    // A polling device's report is a poll, whose answer may mean several events.
                    let shard = Rc::clone(&self.shard);
                    if let Some(ddi) = shard.dialect.ddi() {
                        Box::pin(self.poll(ddi, step.intended, events)).await;
                    }
                }
                action => {
                    if let Some(next) = self.perform(action, step).await {
                        events.push_back((next, Instant::now()));
                    }
                }
            }
        }
        Performed::Continue
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
            // A polling device holds no connection: its polls find out whether the server is
            // there.
            Action::Connect if shard.dialect.ddi().is_some() => Some(Event::Connected),
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
                let authorization = match (shard.dialect.ddi(), &self.link.credentials) {
                    (Some(ddi), Some(credentials)) => ddi.authorization(credentials),
                    _ => None,
                };
                let download = download(
                    shard,
                    self.source,
                    authorization.as_deref(),
                    &job,
                    &mut fetched,
                    from,
                    to,
                );
                let reached = Box::pin(download).await;
                // Kept until the next job replaces it: a finished download's hash is small.
                self.link.fetched = (reached < job.size).then_some(fetched);
                Some(Event::Downloaded { reached })
            }
            Action::OtaStatus(report) => {
                if matches!(report, OtaReport::Failed | OtaReport::RolledBack) {
                    shard.operator.failure_reported();
                }
                if let Some(ddi) = shard.dialect.ddi() {
                    return Box::pin(self.report_progress(ddi, report)).await;
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
        let session = Session::of(&member.model);
        match Box::pin(shard.dialect.connect(credentials, identity, self.source, session)).await {
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

    /// Says goodbye on the connection, if any, and forgets it.
    pub async fn hang_up(&mut self) {
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
        TransportError::Local => Counter::ErrorsLocal,
        TransportError::Protocol => Counter::ErrorsProtocol,
    }
}
