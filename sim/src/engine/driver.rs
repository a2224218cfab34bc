//! The driver: one task per awake device that hands the device core its events and has
//! [`super::perform`] carry out what the core decides through the device's dialect, recording
//! what it measures into its shard's meter.
//!
//! Design: a device's task loops: hand the core an event, perform the actions it returns
//! (provision, connect, report, answer, download, disconnect), then wait on its [`Link`] for
//! the next thing to happen: the wake-up the core asked for, something the server sent (read
//! by the dialect into an event), or a dropped connection. Every event reaches the core
//! through the device's [`Inbox`], whichever way it came. Latencies run from the intended
//! start of each operation (the planned arrival, the scheduled wake, the operator's action),
//! so a harness or backend that falls behind shows up in the figures rather than hiding in a
//! slower test.

use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;

use super::context::{Life, Member, ShardCtx, Sleeper};
use super::perform::{DeviceTask, Home, Performed, Publish, Step};
use crate::device::{Action, Actions, Ctx, Event, SimTime, State};
use crate::dialect::{Devices, Dialect, Inbox, Link, Woken};
use crate::metrics::recorder::Counter;

/// A wake-up that never comes (a year away).
const NEVER: Duration = Duration::from_secs(86_400 * 365);

impl Life {
    /// Hands the core one event that happened at `at` and counts what changed.
    pub fn decide<D: Dialect>(
        &mut self,
        shard: &ShardCtx<D>,
        member: &Member,
        event: Event,
        at: Instant,
    ) -> (Actions, Step) {
        let ctx = Ctx {
            seed: shard.seed,
            model: &member.model,
            incidents: &member.incidents,
        };
        let wake = self.wake();
        let now = match (event, wake) {
            (Event::Wake, Some(sim)) => sim,
            (Event::Arrive, _) => self.provision_from,
            (
                Event::ConnectionLost
                | Event::ConfigDesired { .. }
                | Event::Command(_)
                | Event::OtaJob(_)
                | Event::OtaReceived(_),
                _,
            ) => shard.clock.sim(at).max(self.acting_at),
            _ => self.acting_at,
        };
        self.acting_at = now;
        let device = &mut self.device;
        let (before, was_waiting) = (device.state(), device.awaiting_recovery());
        let base_before = device.base_state();
        let actions = device.on_event(now, event, ctx);
        if device.state() != before {
            shard.moved(device.index, now, before, device.state());
            if before == State::Sleeping && device.state() == State::Provisioning {
                // A duty-cycled device provisions at its first wake: that is when it meant to.
                self.provision_from = now;
            }
        }
        let meter = &shard.shared.meter;
        if !was_waiting && device.awaiting_recovery() {
            meter.count(Counter::OutageAffected);
        }
        if was_waiting && !device.awaiting_recovery() && !actions.iter().any(|a| matches!(a, Action::Recovered { .. }))
        {
            meter.count(Counter::OutageExcused);
        }
        let intended = match (event, wake) {
            // A wake-up the core asked for at once (a report as soon as it connects) was
            // meant for the moment it asked, `at`, which follows the simulated instant.
            (Event::Wake, Some(sim)) => shard.clock.real(sim).max(at),
            _ => at,
        };
        let step = Step {
            now,
            intended,
            arrival: shard.clock.real(self.provision_from),
            up_since: shard.clock.real(
                device
                    .booted()
                    .map_or(self.provision_from, |b| b.max(self.provision_from)),
            ),
            update_started: device.update_started(),
            event,
            moved: (base_before, device.base_state()),
        };
        if let Some(Action::WakeAt(sim)) = actions.iter().find(|a| matches!(a, Action::WakeAt(_))) {
            self.wake = sim;
        }
        (actions, step)
    }
}

/// Hands a device the event that woke it (its arrival, or a sleeper's wake-up) outside any
/// task, and gives it a task only if the actions need I/O: a duty-cycled device whose wake-up
/// finds nothing to send (its link changed state while it slept, or it backs off during an
/// outage) goes straight back to the sleepers. Called by the shard's loop.
pub fn wake<D: Dialect>(shard: &Rc<ShardCtx<D>>, sleeper: Sleeper<D>, event: Event, at: Instant) {
    let Sleeper { mut life, kept, member } = sleeper;
    if !member.model.telemetry.duty_cycle {
        // An always-connected device always needs its task: the task hands the core the event.
        // (Deciding here would mean boxing the actions for the task, a short-lived allocation
        // that, left between each device's long-lived ones, cost 260 bytes a device.)
        let mut inbox = Inbox::default();
        inbox.push_at(event, at);
        let running = Running::new(Rc::clone(shard), member, life, kept, inbox);
        tokio::task::spawn_local(awake(running));
        return;
    }
    let (actions, step) = life.decide(shard, &member, event, at);
    let io_needed = actions.iter().any(|a| !matches!(a, Action::WakeAt(_)));
    if !io_needed {
        shard.sleep(Box::new(Sleeper { life, kept, member }));
        return;
    }
    let running = Running::new(Rc::clone(shard), member, life, kept, Inbox::default());
    tokio::task::spawn_local(awake_with(running, Box::new((actions, step))));
}

/// Runs a device that has I/O to do, its inbox first, until the core stops it, it falls asleep
/// holding no connection (back to the shard's sleepers), or the shard shuts down.
///
/// Not an `async fn`, and takes the device's state built: the task's future holds each piece
/// once (rust-lang/rust#62958), and an idle connected device costs what its future holds.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would hold the device's state twice in every device's task"
)]
pub fn awake<D: Dialect>(mut running: Running<D>) -> impl Future<Output = ()> {
    async move {
        let ending = running.run().await;
        running.end(ending);
    }
}

/// As [`awake`], for a device whose waking event was decided outside the task: performs
/// `first` (the actions it led to) before anything else. A task of its own type, so that an
/// always-connected device's task holds nothing for it.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would hold the device's state twice in every device's task"
)]
pub fn awake_with<D: Dialect>(mut running: Running<D>, first: Box<(Actions, Step)>) -> impl Future<Output = ()> {
    async move {
        let (actions, step) = *first;
        // Boxed: an idle device's task holds only what waiting needs. Performing the actions
        // (connects, publishes, downloads) needs far more, and only for a moment.
        let performed = Box::pin(running.io.perform_all(actions, step, &mut running.inbox)).await;
        let ending = match performed {
            Performed::Stop => Ending::Done,
            Performed::Continue => running.run().await,
        };
        running.end(ending);
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
pub struct Running<D: Dialect> {
    life: Life,
    /// Events to hand the core before waiting again.
    inbox: Inbox,
    io: DeviceTask<D>,
}

impl<D: Dialect> Running<D> {
    /// A device's task state, counted among the shard's tasks until [`Running::end`].
    pub fn new(
        shard: Rc<ShardCtx<D>>,
        member: Rc<Member>,
        life: Life,
        kept: Option<<D as Devices>::Kept>,
        inbox: Inbox,
    ) -> Self {
        let index = life.device.index;
        let device = shard.dialect.wake(kept);
        shard.tasks.set(shard.tasks.get() + 1);
        Self {
            life,
            inbox,
            io: DeviceTask {
                home: Home { shard, member, index },
                link: Link::None,
                device,
                provisioned_at: SimTime::NEVER,
            },
        }
    }

    /// The task is over: a device falling asleep goes back to the shard's sleepers.
    fn end(self, ending: Ending) {
        let shard = &self.io.home.shard;
        shard.tasks.set(shard.tasks.get().saturating_sub(1));
        if ending == Ending::Asleep {
            let Self { life, io, .. } = self;
            let DeviceTask { home, device, .. } = io;
            let kept = home.shard.dialect.keep(device);
            home.shard.sleep(Box::new(Sleeper {
                life,
                kept,
                member: home.member,
            }));
        }
    }

    /// When the core asked to be woken (far off when it asked for nothing).
    fn core_wake(&self) -> Instant {
        self.life
            .wake()
            .map_or_else(|| Instant::now() + NEVER, |sim| self.io.home.shard.clock.real(sim))
    }

    /// Not an `async fn`, so that `self` is held once (rust-lang/rust#62958).
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn would hold its arguments twice in every idle device's future"
    )]
    fn run(&mut self) -> impl Future<Output = Ending> + '_ {
        async move {
            loop {
                // What the dialect owes the server of its own accord, once it is due (an LwM2M
                // registration's update), before anything else. Boxed: rare next to waiting.
                if let Some(due) = self.io.home.shard.dialect.due(&self.io.device)
                    && due <= Instant::now()
                {
                    Box::pin(self.io.on_due(&mut self.inbox)).await;
                }
                // The event and its instant end with this block: only what is performed is held
                // while it is.
                let (actions, step, at_once) = {
                    let (event, at) = match self.inbox.pop() {
                        // A wake-up handed on at once (below) that an event since has moved on.
                        Some((Event::Wake, at)) if self.core_wake() > at => continue,
                        Some(next) => next,
                        None if self.io.home.member.model.telemetry.duty_cycle && !self.io.link.is_open() => {
                            // Asleep, or backing off before another attempt: nothing to listen to
                            // until a time comes, so the timer heap holds the device, not a task.
                            return Ending::Asleep;
                        }
                        None => {
                            // An idle device keeps no event buffer.
                            self.inbox.release();
                            // What the dialect owes of its own accord wakes the task too. (One
                            // expression: a first binding shadowed would be held across the wait.)
                            let wake = {
                                let core = self.core_wake();
                                self.io
                                    .home
                                    .shard
                                    .dialect
                                    .due(&self.io.device)
                                    .map_or(core, |due| due.min(core))
                            };
                            // Nothing but the task's own state is held across the wait (no
                            // reference bound here, which would take a word of it).
                            let (next, ack) = match self.io.link.wait(&self.io.home.shard.shared, wake).await {
                                // The core's wake-up only if it was its time (the dialect's duty is
                                // done at the top of the loop, where the task holds nothing else),
                                // at the core's own instant: the wait gives the calendar's, up to a
                                // microsecond later.
                                Woken::Wake(at) => {
                                    let core = self.core_wake();
                                    ((core <= at).then_some((Event::Wake, core)), None)
                                }
                                Woken::Lost => (Some((Event::ConnectionLost, Instant::now())), None),
                                // Whatever the server sends reaches the core here, read by the
                                // dialect.
                                Woken::Heard(heard) => {
                                    let DeviceTask { home, device, link, .. } = &mut self.io;
                                    let event = home.shard.dialect.read(&home.cx(), device, link, heard.arrival());
                                    (event.map(|event| (event, Instant::now())), heard.owed_ack())
                                }
                            };
                            // Boxed: rare next to waiting, so an idle device's future does not
                            // hold it.
                            if let Some(pkid) = ack
                                && Box::pin(self.io.link.acknowledge(pkid)).await.is_err()
                            {
                                (Event::ConnectionLost, Instant::now())
                            } else if let Some(next) = next {
                                next
                            } else {
                                continue;
                            }
                        }
                    };
                    // The shard and member are borrowed from the task, not cloned: an idle device's
                    // future holds no second reference to them.
                    let home = &self.io.home;
                    let (actions, step) = self.life.decide(&home.shard, &home.member, event, at);
                    // A wake-up the core asks for that has already passed in real time (a report as
                    // soon as it is connected: a reply takes no simulated time) is meant for when
                    // the event came, not for the real time of the simulated instant: the connect
                    // took real time, timed as `connect.latency`, and the report is not late.
                    let at_once = (event != Event::Wake && self.core_wake() <= at).then_some(at);
                    (actions, step, at_once)
                };
                // Boxed, each event's future, so an idle device's holds neither: a lone report's
                // (nearly every event's) in a box of its own size.
                let performing: Pin<Box<dyn Future<Output = Performed> + '_>> = match Publish::alone_in(actions) {
                    Some(publish) => Box::pin(self.io.perform_report(publish, actions, step, &mut self.inbox)),
                    None => Box::pin(self.io.perform_all(actions, step, &mut self.inbox)),
                };
                if performing.await == Performed::Stop {
                    return Ending::Done;
                }
                if let Some(at) = at_once {
                    self.inbox.push_at(Event::Wake, at);
                }
            }
        }
    }
}
