//! The driver: one task per device that hands the device core its events and has
//! [`super::perform`] carry out what the core decides, over the lean MQTT transport (and HTTP
//! for firmware), recording what it measures into its shard's recorder.
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

use tokio::time::{Instant, sleep_until};

use super::clock::RunClock;
use super::link::{Job, Link, plain_image};
use super::operator_log::OperatorLog;
use super::perform::{DeviceTask, Performed, Step};
use crate::device::{Action, Actions, Ctx, Device, Event, Outage, SimTime, State};
use crate::dialect::Dialect;
use crate::metrics::recorder::{Counter, Latency, Recorder};
use crate::model::Image;
use crate::plan::PlannedDevice;
use crate::scenario::DeviceModel;
use crate::transport::source::SourceAddrs;

/// A wake-up that never comes (a year away).
const NEVER: Duration = Duration::from_secs(86_400 * 365);

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
                cluster: Vec::new(),
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
