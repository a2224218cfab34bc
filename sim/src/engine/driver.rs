//! The driver: one task per device that performs what the device core decides, over the
//! lean MQTT transport, and records what it measures into its shard's recorder.
//!
//! Design: the task sleeps until the device's planned arrival, then loops: hand the core an
//! event, perform the actions it returns (provision, connect, publish, disconnect), then wait
//! for the next thing to happen: the wake-up the core asked for, a packet from the server
//! (PUBACKs give publish latency), keep-alive time, or shutdown. Latencies run from the
//! intended start of each operation (the planned arrival, the scheduled wake), so a harness
//! or backend that falls behind shows up in the figures rather than hiding in a slower test.
//! Shard state is shared through `Rc<RefCell<..>>`: a shard runs on one thread, so recording
//! takes no lock.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::Packet;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::clock::RunClock;
use crate::device::{Action, Ctx, Device, Event, SimTime, State};
use crate::dialect::Dialect;
use crate::dialect::embedded::{Credentials, KEEP_ALIVE_S};
use crate::dialect::mqtt::Identity;
use crate::metrics::recorder::{Counter, Latency, Recorder};
use crate::model::Reading;
use crate::plan::PlannedDevice;
use crate::scenario::DeviceModel;
use crate::transport::mqtt::{MqttConn, TransportError};
use crate::transport::source::SourceAddrs;

/// QoS 1 publishes awaiting their PUBACK, per device; past this the oldest is forgotten (its
/// latency lost, counted as a timeout) so a silent server cannot grow memory.
const INFLIGHT_LIMIT: usize = 8;

/// A send this much later than intended counts as late.
const LATE: Duration = Duration::from_millis(5);

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
    fn record(&self, latency: Latency, since: Instant) {
        self.recorder.borrow_mut().record(latency, since.elapsed());
    }

    fn count(&self, counter: Counter) {
        self.recorder.borrow_mut().count(counter, 1);
    }

    fn planned(&self) {
        self.states.borrow_mut()[0] += 1;
    }

    fn moved(&self, from: State, to: State) {
        let mut states = self.states.borrow_mut();
        let index = |s: State| State::ALL.iter().position(|x| *x == s).unwrap_or(0);
        states[index(from)] = states[index(from)].saturating_sub(1);
        states[index(to)] += 1;
    }
}

/// Runs one device until the core stops it or the shard shuts down.
pub async fn drive(shard: Rc<ShardCtx>, model: Rc<DeviceModel>, group: Rc<str>, planned: PlannedDevice) {
    let ctx = Ctx {
        seed: shard.seed,
        model: &model,
    };
    let arrival = shard.clock.start() + planned.first_wakeup;
    let arrival_sim = shard.clock.sim(arrival);
    let mut device = Device::new(planned.index, ctx, arrival_sim);
    // The simulated time of the event being acted on. Replies to the device's own requests
    // (provisioned, connected, refused) count as instantaneous in simulated time: the device's
    // life is then the same whatever the network's real delays, which are measured as
    // latencies instead. Only events from outside (a dropped connection) take the clock.
    let mut acting_at = arrival_sim;
    shard.planned();
    tokio::select! {
        () = sleep_until(arrival) => {}
        () = shard.shutdown.cancelled() => return,
    }
    let source = shard.sources.map(|s| s.for_device(planned.index));
    let mut link = Link {
        conn: None,
        credentials: None,
        inflight: VecDeque::new(),
        last_sent: Instant::now(),
    };
    let mut events: VecDeque<(Event, Instant)> = VecDeque::from([(Event::Arrive, arrival)]);
    // The wake-up the core asked for, in real time and in its own simulated time: the core is
    // handed back exactly the simulated time it asked for, never a float round trip of it.
    let mut wake: Option<(Instant, SimTime)> = None;
    let mut payload = Vec::new();
    loop {
        let (event, at) = match events.pop_front() {
            Some(next) => next,
            None => match link.wait(&shard, wake.map(|(real, _)| real)).await {
                Some(next) => next,
                None => break,
            },
        };
        let now = match (event, wake) {
            (Event::Wake, Some((_, sim))) => sim,
            (Event::Arrive, _) => arrival_sim,
            (Event::ConnectionLost, _) => shard.clock.sim(at).max(acting_at),
            _ => acting_at,
        };
        acting_at = now;
        let before = device.state();
        let actions = device.on_event(now, event, ctx);
        if device.state() != before {
            shard.moved(before, device.state());
            if let Some(transitions) = &shard.transitions {
                transitions.borrow_mut().push((planned.index, now, device.state()));
            }
        }
        for action in actions.iter() {
            match action {
                Action::Provision => {
                    // Provisioning latency runs from the planned arrival: the intended start.
                    let identity = Identity {
                        serial: &planned.serial,
                        index: planned.index,
                        model: &model.name,
                        group: &group,
                    };
                    match shard.dialect.provision(identity, source).await {
                        Ok(credentials) => {
                            if shard.dialect.provisions() {
                                shard.record(Latency::Provision, arrival);
                            }
                            shard.count(Counter::Provisioned);
                            link.credentials = Some(credentials);
                            events.push_back((Event::Provisioned, Instant::now()));
                        }
                        Err(_) => {
                            shard.count(Counter::ErrorsRefused);
                            events.push_back((Event::ProvisionFailed, Instant::now()));
                        }
                    }
                }
                Action::Connect => {
                    let started = Instant::now();
                    let Some(credentials) = &link.credentials else {
                        // Connect only ever follows Provisioned; without credentials it fails.
                        events.push_back((Event::ConnectFailed, Instant::now()));
                        continue;
                    };
                    match shard.dialect.connect(credentials, source).await {
                        Ok(conn) => {
                            shard.record(Latency::Connect, started);
                            shard.count(Counter::Connected);
                            link.conn = Some(conn);
                            link.last_sent = Instant::now();
                            events.push_back((Event::Connected, Instant::now()));
                        }
                        Err(error) => {
                            shard.count(error_counter(error));
                            events.push_back((Event::ConnectFailed, Instant::now()));
                        }
                    }
                }
                Action::Publish { seq, .. } => {
                    let intended = wake.map_or(at, |(real, _)| real);
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
                    model.telemetry.write_payload(&mut payload, &reading);
                    if let Err(lost) = link.publish(&shard, &model, &payload, intended).await {
                        events.push_back((lost, Instant::now()));
                    }
                }
                Action::Disconnect => {
                    if let Some(conn) = link.conn.take() {
                        let _ = conn.disconnect().await;
                    }
                }
                Action::WakeAt(sim) => wake = Some((shard.clock.real(sim), sim)),
                Action::Stop => {
                    if let Some(conn) = link.conn.take() {
                        let _ = conn.disconnect().await;
                    }
                    return;
                }
            }
        }
    }
    if let Some(conn) = link.conn.take() {
        let _ = conn.disconnect().await;
    }
}

/// A device's connection and what it waits for on it.
struct Link {
    conn: Option<MqttConn>,
    credentials: Option<Credentials>,
    /// QoS 1 publishes: packet id and intended send time.
    inflight: VecDeque<(u16, Instant)>,
    last_sent: Instant,
}

impl Link {
    async fn publish(
        &mut self,
        shard: &ShardCtx,
        model: &DeviceModel,
        payload: &[u8],
        intended: Instant,
    ) -> Result<(), Event> {
        let (Some(conn), Some(credentials)) = (self.conn.as_mut(), self.credentials.as_ref()) else {
            return Ok(());
        };
        let qos = if model.telemetry.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        match conn.publish(&credentials.telemetry_topic, payload, qos).await {
            Ok(pkid) => {
                shard.count(Counter::Published);
                self.last_sent = Instant::now();
                if qos == QoS::AtLeastOnce {
                    if self.inflight.len() >= INFLIGHT_LIMIT {
                        self.inflight.pop_front();
                        shard.count(Counter::ErrorsTimeout);
                    }
                    self.inflight.push_back((pkid, intended));
                }
                Ok(())
            }
            Err(_) => {
                self.conn = None;
                Err(Event::ConnectionLost)
            }
        }
    }

    /// Waits for the next event: the wake-up, a lost connection, or shutdown (`None`).
    /// Acknowledgements and pings are handled here without waking the core.
    async fn wait(&mut self, shard: &ShardCtx, wake: Option<Instant>) -> Option<(Event, Instant)> {
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        loop {
            let wake_at = wake.unwrap_or(far);
            let ping_at = self.last_sent + Duration::from_secs(u64::from(KEEP_ALIVE_S) / 2);
            let Some(conn) = self.conn.as_mut() else {
                tokio::select! {
                    () = sleep_until(wake_at) => return Some((Event::Wake, wake_at)),
                    () = shard.shutdown.cancelled() => return None,
                }
            };
            // Every branch is cancel-safe: `read` keeps partial bytes, sleeps lose nothing.
            tokio::select! {
                () = sleep_until(wake_at) => return Some((Event::Wake, wake_at)),
                () = sleep_until(ping_at) => {
                    if conn.ping().await.is_err() {
                        self.conn = None;
                        return Some((Event::ConnectionLost, Instant::now()));
                    }
                    self.last_sent = Instant::now();
                }
                packet = conn.read() => match packet {
                    Ok(Some(Packet::PubAck(ack))) => {
                        if let Some(slot) = self.inflight.iter().position(|(pkid, _)| *pkid == ack.pkid)
                            && let Some((_, intended)) = self.inflight.remove(slot)
                        {
                            shard.record(Latency::Publish, intended);
                        }
                    }
                    Ok(Some(Packet::Publish(message))) => {
                        if message.qos == QoS::AtLeastOnce && conn.ack(message.pkid).await.is_err() {
                            self.conn = None;
                            return Some((Event::ConnectionLost, Instant::now()));
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        self.conn = None;
                        self.inflight.clear();
                        return Some((Event::ConnectionLost, Instant::now()));
                    }
                },
                () = shard.shutdown.cancelled() => return None,
            }
        }
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
