//! What a shard and its devices hold: what every device of a shard shares ([`ShardCtx`]),
//! what the devices of one mix entry share ([`Member`]), a device's state between events
//! ([`Life`]) and a device asleep without a task ([`Sleeper`]). How a device runs is
//! [`super::driver`]'s. A shard runs on one thread, so its state is shared through `Rc` and
//! `RefCell`: recording and counting take no lock.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use tokio::sync::Notify;

use super::clock::RunClock;
use super::timers::Timers;
use crate::device::{Ctx, Device, Incident, SimTime, State, StateCounts};
use crate::dialect::{Devices, Dialect, Shared};
use crate::scenario::DeviceModel;
use crate::transport::source::SourceAddrs;

/// What every device of a shard shares.
#[derive(Debug)]
pub struct ShardCtx<D: Dialect> {
    /// The scenario seed.
    pub seed: u64,
    /// The run's clock.
    pub clock: RunClock,
    /// The backend.
    pub dialect: D,
    /// What the dialect uses of the shard: its meter, the operator's log, the images.
    pub shared: Shared,
    /// Local addresses to connect from.
    pub sources: Option<SourceAddrs>,
    /// Devices per lifecycle state.
    pub states: RefCell<StateCounts>,
    /// Every state change as (device index, simulated time, new state), when a test asks for
    /// the devices' life stories; `None` in runs, which keep only the counts.
    pub transitions: Option<RefCell<Vec<Transition>>>,
    /// Duty-cycled devices asleep between reports, by wake-up time.
    pub sleepers: RefCell<Timers<Box<Sleeper<D>>>>,
    /// Told when a device falls asleep, so the shard's loop can wait for an earlier wake-up.
    pub sleepers_changed: Notify,
    /// Device tasks alive: devices awake (connected, or between attempts), not asleep.
    pub tasks: Cell<u64>,
}

/// A device's state change: its index, the simulated time, the new state.
pub type Transition = (u64, SimTime, State);

impl<D: Dialect> ShardCtx<D> {
    /// A shard of `dialect`'s devices, none planned yet; with `record_transitions`, every
    /// state change is kept.
    pub fn new(
        seed: u64,
        clock: RunClock,
        dialect: D,
        shared: Shared,
        sources: Option<SourceAddrs>,
        record_transitions: bool,
    ) -> Self {
        Self {
            seed,
            clock,
            dialect,
            shared,
            sources,
            states: RefCell::new(StateCounts::default()),
            transitions: record_transitions.then(|| RefCell::new(Vec::new())),
            sleepers: RefCell::new(Timers::default()),
            sleepers_changed: Notify::new(),
            tasks: Cell::new(0),
        }
    }

    /// Files a device that fell asleep under its wake-up time.
    pub fn sleep(&self, sleeper: Box<Sleeper<D>>) {
        let at = sleeper.life.wake;
        let mut sleepers = self.sleepers.borrow_mut();
        let earlier = sleepers.next_at().is_none_or(|next| at < next);
        sleepers.insert(at, sleeper);
        if earlier {
            self.sleepers_changed.notify_one();
        }
    }

    /// Counts a planned device (not arrived yet).
    pub fn planned(&self) {
        self.states.borrow_mut().add(State::Unprovisioned, 1);
    }

    /// Counts a device's move from one state to another, and keeps it if asked to.
    pub fn moved(&self, index: u64, at: SimTime, from: State, to: State) {
        self.states.borrow_mut().moved(from, to);
        if let Some(transitions) = &self.transitions {
            transitions.borrow_mut().push((index, at, to));
        }
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
    pub incidents: Vec<Incident>,
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
    pub(super) acting_at: SimTime,
    /// When provisioning was meant to start: the planned arrival, or for a duty-cycled
    /// device its first wake.
    pub(super) provision_from: SimTime,
    /// The wake-up the core asked for, in its own simulated time (`NEVER` before it asks):
    /// the core is handed back exactly the time it asked for, never a float round trip of it.
    pub(super) wake: SimTime,
}

impl Life {
    /// Device `index` of `member`, planned to arrive at `arrival`.
    pub fn new(seed: u64, member: &Member, index: u64, arrival: SimTime) -> Self {
        let ctx = Ctx {
            seed,
            model: &member.model,
            incidents: &member.incidents,
        };
        Self {
            device: Device::new(index, ctx, arrival),
            acting_at: arrival,
            provision_from: arrival,
            wake: SimTime::NEVER,
        }
    }

    /// When the device asked to wake.
    pub fn wake(&self) -> Option<SimTime> {
        (self.wake != SimTime::NEVER).then_some(self.wake)
    }
}

/// A duty-cycled device waiting for a time without a connection (asleep between reports, or
/// backing off before another attempt): all it keeps while it holds no task.
pub struct Sleeper<D: Dialect> {
    /// Its state.
    pub life: Life,
    /// What its dialect keeps of it (its credentials, once provisioned).
    pub kept: Option<<D as Devices>::Kept>,
    /// Its model, group and outages.
    pub member: Rc<Member>,
}

impl<D: Dialect> std::fmt::Debug for Sleeper<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sleeper")
            .field("life", &self.life)
            .field("provisioned", &self.kept.is_some())
            .finish_non_exhaustive()
    }
}
