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

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::clock::RunClock;
use super::link::{Job, Link, plain_image};
use super::operator_log::OperatorLog;
use super::perform::{DeviceTask, Performed, Step};
use super::timers::Timers;
use crate::device::{Action, Actions, Ctx, Device, Event, Outage, SimTime, State};
use crate::dialect::Dialect;
use crate::dialect::embedded::Credentials;
use crate::metrics::recorder::{Counter, Latency, Recorder};
use crate::model::Image;
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
    /// Duty-cycled devices asleep between reports, by wake-up time.
    pub sleepers: RefCell<Timers<Box<Sleeper>>>,
    /// Told when a device falls asleep, so the shard's loop can wait for an earlier wake-up.
    pub sleepers_changed: Notify,
    /// Device tasks alive: devices awake (connected, or between attempts), not asleep.
    pub tasks: Cell<u64>,
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

    /// Files a device that fell asleep under its wake-up time.
    pub fn sleep(&self, sleeper: Box<Sleeper>) {
        let at = sleeper.life.wake.unwrap_or(SimTime::NEVER);
        let mut sleepers = self.sleepers.borrow_mut();
        let earlier = sleepers.next_at().is_none_or(|next| at < next);
        sleepers.insert(at, sleeper);
        if earlier {
            self.sleepers_changed.notify_one();
        }
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

/// A device's state between events, whether its task holds it (awake) or the shard's
/// sleepers do (a duty-cycled device between reports).
#[derive(Debug)]
pub struct Life {
    /// The device core.
    pub device: Device,
    /// The simulated time of the event being acted on. Replies to the device's own requests
    /// (provisioned, connected, refused, downloaded) count as instantaneous in simulated time:
    /// the device's life is then the same whatever the network's real delays, which are
    /// measured as latencies instead. Only events from outside (a dropped connection, a
    /// message from the backend) take the clock.
    acting_at: SimTime,
    /// When provisioning was meant to start: the planned arrival, or for a duty-cycled
    /// device its first wake.
    provision_from: SimTime,
    /// The wake-up the core asked for, in its own simulated time: the core is handed back
    /// exactly the time it asked for, never a float round trip of it.
    wake: Option<SimTime>,
}

impl Life {
    /// Device `index` of `member`, planned to arrive at `arrival`.
    pub fn new(shard: &ShardCtx, member: &Member, index: u64, arrival: SimTime) -> Self {
        let ctx = Ctx {
            seed: shard.seed,
            model: &member.model,
            outages: &member.outages,
        };
        Self {
            device: Device::new(index, ctx, arrival),
            acting_at: arrival,
            provision_from: arrival,
            wake: None,
        }
    }

    /// When the device asked to wake.
    pub fn wake(&self) -> Option<SimTime> {
        self.wake
    }

    /// Hands the core one event that happened at `at` and counts what changed.
    pub fn decide(&mut self, shard: &ShardCtx, member: &Member, event: Event, at: Instant) -> (Actions, Step) {
        let ctx = Ctx {
            seed: shard.seed,
            model: &member.model,
            outages: &member.outages,
        };
        let now = match (event, self.wake) {
            (Event::Wake, Some(sim)) => sim,
            (Event::Arrive, _) => self.provision_from,
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
            if before == State::Sleeping && device.state() == State::Provisioning {
                // A duty-cycled device provisions at its first wake: that is when it meant to.
                self.provision_from = now;
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
            arrival: shard.clock.real(self.provision_from),
            update_started: device.update_started(),
        };
        if let Some(Action::WakeAt(sim)) = actions.iter().find(|a| matches!(a, Action::WakeAt(_))) {
            self.wake = Some(sim);
        }
        (actions, step)
    }
}

/// A duty-cycled device waiting for a time without a connection (asleep between reports, or
/// backing off before another attempt): all it keeps while it holds no task.
#[derive(Debug)]
pub struct Sleeper {
    /// Its state.
    pub life: Life,
    /// Its credentials, once provisioned.
    pub credentials: Option<Credentials>,
    /// Its model, group and outages.
    pub member: Rc<Member>,
}

/// Hands a device the event that woke it (its arrival, or a sleeper's wake-up) outside any
/// task, and gives it a task only if the actions need I/O: a duty-cycled device whose wake-up
/// finds nothing to send (its link changed state while it slept, or it backs off during an
/// outage) goes straight back to the sleepers. Called by the shard's loop.
pub fn wake(shard: &Rc<ShardCtx>, sleeper: Sleeper, event: Event, at: Instant) {
    let Sleeper {
        mut life,
        credentials,
        member,
    } = sleeper;
    if !member.model.telemetry.duty_cycle {
        // An always-connected device always needs its task: the task hands the core the event.
        // (Deciding here would mean boxing the actions for the task, a short-lived allocation
        // that, left between each device's long-lived ones, cost 260 bytes a device.)
        let events = VecDeque::from([(event, at)]);
        tokio::task::spawn_local(awake(Rc::clone(shard), member, life, credentials, events, None));
        return;
    }
    let (actions, step) = life.decide(shard, &member, event, at);
    let io_needed = actions.iter().any(|a| !matches!(a, Action::WakeAt(_)));
    if !io_needed && member.model.telemetry.duty_cycle {
        shard.sleep(Box::new(Sleeper {
            life,
            credentials,
            member,
        }));
        return;
    }
    let first = Some(Box::new((actions, step)));
    tokio::task::spawn_local(awake(
        Rc::clone(shard),
        member,
        life,
        credentials,
        VecDeque::new(),
        first,
    ));
}

/// Runs a device that has I/O to do, starting with `first` (the actions of the event that
/// woke it, when decided already) or else its first `events`, until the core stops it, it falls asleep holding no connection (back to the
/// shard's sleepers), or the shard shuts down.
///
/// Not an `async fn`: the device's state is built here, so the task's future holds each
/// piece once (an idle connected device costs what its future holds).
pub fn awake(
    shard: Rc<ShardCtx>,
    member: Rc<Member>,
    life: Life,
    credentials: Option<Credentials>,
    events: VecDeque<(Event, Instant)>,
    first: Option<Box<(Actions, Step)>>,
) -> impl Future<Output = ()> {
    let index = life.device.index;
    let source = shard.sources.map(|s| s.for_device(index));
    let mut link = Link::new();
    link.credentials = credentials;
    let mut running = Running {
        life,
        events,
        io: DeviceTask {
            shard,
            member,
            index,
            source,
            link,
        },
    };
    // Captured by the block and borrowed in place: an `async fn` taking it by value would
    // hold it twice (rust-lang/rust#62958).
    running.io.shard.tasks.set(running.io.shard.tasks.get() + 1);
    async move {
        let ending = running.run(first).await;
        let shard = &running.io.shard;
        shard.tasks.set(shard.tasks.get().saturating_sub(1));
        if ending == Ending::Asleep {
            let Running { life, io, .. } = running;
            io.shard.sleep(Box::new(Sleeper {
                life,
                credentials: io.link.credentials,
                member: io.member,
            }));
        }
    }
}

/// How a device's task ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The device is done (dead, bricked, retired).
    Done,
    /// It sleeps until its next report, holding no connection.
    Asleep,
}

/// A device and its I/O, as its task holds them.
struct Running {
    life: Life,
    /// Events to hand the core before waiting again.
    events: VecDeque<(Event, Instant)>,
    io: DeviceTask,
}

impl Running {
    async fn run(&mut self, first: Option<Box<(Actions, Step)>>) -> Ending {
        let (shard, member) = (Rc::clone(&self.io.shard), Rc::clone(&self.io.member));
        // Boxed: an idle device's task holds only what waiting needs. Performing the actions
        // (connects, publishes, downloads) needs far more, and only for a moment.
        if let Some(first) = first {
            let (actions, step) = *first;
            if let Performed::Stop = Box::pin(self.io.perform_all(actions, step, &mut self.events)).await {
                return Ending::Done;
            }
        }
        loop {
            let (event, at) = match self.events.pop_front() {
                Some(next) => next,
                None if member.model.telemetry.duty_cycle && self.io.link.conn.is_none() => {
                    // Asleep, or backing off before another attempt: nothing to listen to
                    // until a time comes, so the timer heap holds the device, not a task.
                    return Ending::Asleep;
                }
                None => {
                    // An idle device keeps no event buffer.
                    self.events = VecDeque::new();
                    let wake = self
                        .life
                        .wake
                        .map_or_else(|| Instant::now() + NEVER, |sim| shard.clock.real(sim));
                    self.io.link.wait(&shard, wake).await
                }
            };
            let (actions, step) = self.life.decide(&shard, &member, event, at);
            if let Performed::Stop = Box::pin(self.io.perform_all(actions, step, &mut self.events)).await {
                return Ending::Done;
            }
        }
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
            sleepers: RefCell::new(Timers::default()),
            sleepers_changed: Notify::new(),
            tasks: Cell::new(0),
        });
        let member = Rc::new(Member {
            model,
            group: "g".into(),
            outages: Vec::new(),
        });
        let life = Life::new(&shard, &member, 0, SimTime(0));
        let first = Box::new((
            Actions::default(),
            Step {
                now: SimTime(0),
                intended: Instant::now(),
                arrival: Instant::now(),
                update_started: SimTime(0),
            },
        ));
        let task = awake(shard, member, life, None, VecDeque::new(), Some(first));
        let size = std::mem::size_of_val(&task);
        println!("device task future: {size} bytes");
        assert!(size <= 900, "a device's task future grew to {size} bytes");
    }

    /// A sleeping device costs its sleeper's box, its heap slot and its device id: keep the
    /// box within the 512 bytes a sleeping device may cost in all.
    #[test]
    fn a_sleeper_is_small() {
        let size = std::mem::size_of::<Sleeper>();
        println!("sleeper: {size} bytes");
        assert!(size <= 320, "a sleeping device's state grew to {size} bytes");
    }
}
