//! A shard's wake-up calendar: when each waiting device's task is to be woken, kept by the
//! shard rather than in a timer of each device's own.
//!
//! Design: a waiting device holds an [`Alarm`], two numbers (8 bytes), where a tokio `Sleep`
//! took 112 bytes of its task's future for the whole wait; that is what brings a broker's idle
//! device into a 512-byte task (`sim/tests/budgets.rs`). The calendar keeps each alarm's slot
//! (its waker) and a heap of deadlines, and one task of the shard, [`Calendar::ring`], sleeps
//! on a single timer until the earliest and wakes every alarm then due (the shard's is a
//! timerfd, [`Timer::precise`], which wakes at the instant rather than on tokio's next
//! millisecond). The shard runs
//! on one thread, so nothing here takes a lock.
//!
//! An alarm given up before it rings ([`Calendar::cancel`]: the device heard from its server
//! first) leaves its deadline in the heap, skipped when it comes (its slot's generation has
//! moved on), so cancelling costs no search. Its slot is freed when the next alarm is set or
//! given up, unless the next is set for the same deadline (a wait that a message ended, begun
//! again at once for the same wake-up): that takes the alarm back, and the heap holds one
//! deadline, not two.
//! Deadlines are kept in whole microseconds from the calendar's origin, rounded up, and the
//! heap is read against the clock rounded down: an alarm never rings early, as neither timer
//! fires early.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::precise_timer::Timer;

/// A device's place in the calendar while it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alarm {
    /// Its slot (none for [`Alarm::RUNG`]).
    slot: u32,
    /// The slot's generation when the alarm was set.
    generation: u32,
}

impl Alarm {
    /// An alarm set for a time already past: it rings from the start and holds no slot.
    const RUNG: Self = Self {
        slot: u32::MAX,
        generation: 0,
    };
}

/// What the calendar keeps of one alarm.
#[derive(Debug, Default)]
struct Slot {
    /// Its deadline, microseconds from the origin.
    deadline: u64,
    /// Bumped each time the slot is freed: a deadline in the heap from before is stale.
    generation: u32,
    /// Its deadline came.
    rung: bool,
    /// The task to wake then (none before it is first polled).
    waker: Option<Waker>,
}

/// The calendar's state.
#[derive(Debug, Default)]
struct Book {
    slots: Vec<Slot>,
    /// Slots free for the next alarms.
    free: Vec<u32>,
    /// Deadlines (microseconds from the origin), slot and generation, earliest first.
    due: BinaryHeap<Reverse<(u64, u32, u32)>>,
    /// The alarm given up last, its slot not yet freed: a device whose wait ended on
    /// something that leaves its wake-up where it was (a message) sets the same deadline again
    /// at once, and takes it back rather than leaving a stale deadline in the heap and adding
    /// another.
    recent: Option<Alarm>,
}

impl Book {
    /// Frees `alarm`'s slot for the next alarm, if it still holds it.
    fn release(&mut self, alarm: Alarm) {
        if let Some(slot) = self.slots.get_mut(alarm.slot as usize)
            && slot.generation == alarm.generation
        {
            slot.generation = slot.generation.wrapping_add(1);
            slot.rung = false;
            slot.waker = None;
            self.free.push(alarm.slot);
        }
    }

    /// The alarm given up last, if it was set for `micros`; otherwise its slot is freed.
    fn take_back(&mut self, micros: u64) -> Option<Alarm> {
        let recent = self.recent.take()?;
        let same = self
            .slots
            .get(recent.slot as usize)
            .is_some_and(|slot| slot.generation == recent.generation && slot.deadline == micros);
        if same {
            return Some(recent);
        }
        self.release(recent);
        None
    }
}

/// The wake-ups a shard's waiting devices are owed.
#[derive(Debug)]
pub struct Calendar {
    /// Where deadlines count from.
    origin: Instant,
    book: RefCell<Book>,
    /// Told when an alarm is set before every other, so [`Calendar::ring`] sleeps less.
    earlier: Notify,
    /// Microseconds from the origin at which the run ends: no alarm rings then or after.
    closes: Cell<u64>,
}

impl Default for Calendar {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            book: RefCell::default(),
            earlier: Notify::new(),
            closes: Cell::new(u64::MAX),
        }
    }
}

impl Calendar {
    /// An alarm for `at`; it rings at once for a time already past.
    #[cfg(test)]
    pub fn set(&self, at: Instant) -> Alarm {
        self.set_from(at, Instant::now())
    }

    /// An alarm for `at`, the clock having read `now` a moment before (a caller that has
    /// just read it saves a second reading); it rings at once for a time at or before `now`.
    pub fn set_from(&self, at: Instant, now: Instant) -> Alarm {
        if at <= now {
            return Alarm::RUNG;
        }
        let micros = self.micros(at);
        let mut book = self.book.borrow_mut();
        if let Some(alarm) = book.take_back(micros) {
            return alarm;
        }
        let slot = match book.free.pop() {
            Some(slot) => slot,
            None => {
                // More than u32::MAX - 1 alarms at once would not fit in memory first.
                let slot = u32::try_from(book.slots.len()).unwrap_or(u32::MAX - 1);
                book.slots.push(Slot::default());
                slot
            }
        };
        let Some(entry) = book.slots.get_mut(slot as usize) else {
            return Alarm::RUNG;
        };
        entry.rung = false;
        entry.deadline = micros;
        let generation = entry.generation;
        let earliest = book.due.peek().is_none_or(|Reverse((first, ..))| micros < *first);
        book.due.push(Reverse((micros, slot, generation)));
        drop(book);
        if earliest {
            self.earlier.notify_one();
        }
        Alarm { slot, generation }
    }

    /// Ready once `alarm` has rung; until then the task is woken when it does.
    pub fn poll(&self, alarm: Alarm, cx: &mut Context<'_>) -> Poll<()> {
        let mut book = self.book.borrow_mut();
        let Some(slot) = book.slots.get_mut(alarm.slot as usize) else {
            return Poll::Ready(());
        };
        if slot.generation != alarm.generation || slot.rung {
            return Poll::Ready(());
        }
        match &slot.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => slot.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Gives `alarm` up, rung or not: its slot is free for the next (kept a moment for the
    /// same deadline, see [`Book::recent`]).
    pub fn cancel(&self, alarm: Alarm) {
        let mut book = self.book.borrow_mut();
        let Some(slot) = book.slots.get_mut(alarm.slot as usize) else {
            return;
        };
        if slot.generation != alarm.generation {
            return;
        }
        if slot.rung {
            // Its deadline has left the heap: nothing to take back.
            book.release(alarm);
            return;
        }
        slot.waker = None;
        if let Some(previous) = book.recent.replace(alarm) {
            book.release(previous);
        }
    }

    /// Rings no alarm at or after `end`, the run's end: a device due then is not woken for
    /// a moment the run does not hold (on a timer of its own the ringer could wake it a
    /// moment before the shard's end is seen, and the device act on what is cut off).
    pub fn close_at(&self, end: Instant) {
        self.closes.set(self.micros(end));
    }

    /// Rings every alarm as its time comes on `timer`, for as long as it is polled (the shard
    /// runs it as a task of its own; it never returns).
    pub async fn ring(&self, timer: &Timer) {
        loop {
            let next = self.next_live();
            let earlier = self.earlier.notified();
            match next {
                Some(at) => {
                    tokio::select! {
                        biased;
                        () = timer.sleep_until(at) => self.ring_due(),
                        () = earlier => {}
                    }
                }
                None => earlier.await,
            }
        }
    }

    /// The earliest deadline of an alarm still set, dropping the stale ones before it; none
    /// at or after the close.
    fn next_live(&self) -> Option<Instant> {
        let mut book = self.book.borrow_mut();
        let Book { slots, due, .. } = &mut *book;
        while let Some(Reverse((micros, slot, generation))) = due.peek().copied() {
            let live = slots
                .get(slot as usize)
                .is_some_and(|s| s.generation == generation && !s.rung);
            if live {
                return (micros < self.closes.get()).then(|| self.instant(micros));
            }
            due.pop();
        }
        None
    }

    /// Rings the alarms whose deadline has come.
    fn ring_due(&self) {
        let now = self.micros_down(Instant::now());
        loop {
            let waker = {
                let mut book = self.book.borrow_mut();
                let Book { slots, due, .. } = &mut *book;
                let Some(Reverse((micros, slot, generation))) = due.peek().copied() else {
                    break;
                };
                if micros > now || micros >= self.closes.get() {
                    break;
                }
                due.pop();
                match slots.get_mut(slot as usize) {
                    Some(s) if s.generation == generation && !s.rung => {
                        s.rung = true;
                        s.waker.take()
                    }
                    _ => None,
                }
            };
            // Outside the borrow: waking a task of this thread only queues it, but nothing
            // here needs to hold the book meanwhile.
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    /// `at` in whole microseconds from the origin, rounded up (an alarm never rings early):
    /// half an instant's room, for what a waiting device holds.
    pub fn micros(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.origin);
        let micros = u64::try_from(since.as_micros()).unwrap_or(u64::MAX);
        micros.saturating_add(u64::from(!since.subsec_nanos().is_multiple_of(1_000)))
    }

    /// The instant `micros` from the origin (a year on for one past what an instant holds).
    pub fn instant(&self, micros: u64) -> Instant {
        self.origin
            .checked_add(Duration::from_micros(micros))
            .unwrap_or_else(|| self.origin + Duration::from_secs(86_400 * 365))
    }

    /// `at` in whole microseconds from the origin, rounded down.
    fn micros_down(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_micros()).unwrap_or(u64::MAX)
    }

    /// How many alarms are set and not given up.
    #[cfg(test)]
    fn held(&self) -> usize {
        let book = self.book.borrow();
        book.slots.len() - book.free.len() - usize::from(book.recent.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    /// Waits for `alarm` and gives it up, as a device's wait does.
    async fn wait(calendar: &Calendar, alarm: Alarm) {
        poll_fn(|cx| calendar.poll(alarm, cx)).await;
        calendar.cancel(alarm);
    }

    /// Alarms ring in their order, each at its time and never before, on one timer.
    #[tokio::test(start_paused = true)]
    async fn alarms_ring_at_their_time_in_order() {
        let calendar = Calendar::default();
        let start = Instant::now();
        let late = calendar.set(start + Duration::from_millis(30));
        let soon = calendar.set(start + Duration::from_micros(10_500));
        let rang = tokio::select! {
            () = calendar.ring(&Timer::Wheel) => unreachable!("the calendar rings for ever"),
            at = async {
                wait(&calendar, soon).await;
                let first = Instant::now() - start;
                wait(&calendar, late).await;
                (first, Instant::now() - start)
            } => at,
        };
        // The timer wheel's millisecond rounds up, never down.
        assert!(
            rang.0 >= Duration::from_micros(10_500) && rang.0 <= Duration::from_millis(12),
            "{rang:?}"
        );
        assert!(
            rang.1 >= Duration::from_millis(30) && rang.1 <= Duration::from_millis(31),
            "{rang:?}"
        );
        assert_eq!(calendar.held(), 0);
        assert_eq!(calendar.book.borrow().due.len(), 0, "no deadline left behind");
    }

    /// An alarm given up does not ring, its slot goes to the next alarm, and its stale
    /// deadline does not ring the next alarm early.
    #[tokio::test(start_paused = true)]
    async fn an_alarm_given_up_frees_its_slot_and_never_rings() {
        let calendar = Calendar::default();
        let start = Instant::now();
        let given_up = calendar.set(start + Duration::from_millis(5));
        calendar.cancel(given_up);
        let other = calendar.set(start + Duration::from_millis(7));
        calendar.cancel(other);
        let next = calendar.set(start + Duration::from_millis(20));
        assert_eq!(next.slot, given_up.slot, "the freed slot is taken again");
        assert_ne!(next.generation, given_up.generation);
        tokio::select! {
            () = calendar.ring(&Timer::Wheel) => unreachable!(),
            () = wait(&calendar, next) => {}
        }
        assert!(
            Instant::now() - start >= Duration::from_millis(20),
            "not at the stale 5 ms"
        );
        let waker = futures_waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(
            calendar.poll(given_up, &mut cx),
            Poll::Ready(()),
            "a stale alarm is over"
        );
    }

    /// An alarm given up and set again at once for the same time (a wait a message ended, begun
    /// again) takes its slot and deadline back: the heap holds one deadline for it, not two.
    #[tokio::test(start_paused = true)]
    async fn the_same_deadline_set_again_is_taken_back() {
        let calendar = Calendar::default();
        let start = Instant::now();
        let at = start + Duration::from_millis(9);
        let first = calendar.set(at);
        calendar.cancel(first);
        let again = calendar.set(at);
        assert_eq!(again, first, "the same alarm");
        assert_eq!(calendar.book.borrow().due.len(), 1);
        let elsewhere = calendar.set(start + Duration::from_millis(3));
        assert_ne!(elsewhere.slot, first.slot);
        tokio::select! {
            () = calendar.ring(&Timer::Wheel) => unreachable!(),
            () = async { wait(&calendar, elsewhere).await; wait(&calendar, again).await } => {}
        }
        assert!(Instant::now() - start >= Duration::from_millis(9));
        assert_eq!(calendar.held(), 0);
    }

    /// A time already past rings at once, holding no slot; a later alarm set before every
    /// other wakes the ringer from a longer sleep.
    #[tokio::test(start_paused = true)]
    async fn a_past_time_rings_at_once_and_an_earlier_alarm_shortens_the_sleep() {
        let calendar = Calendar::default();
        let start = Instant::now();
        let past = calendar.set(start);
        let waker = futures_waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(calendar.poll(past, &mut cx), Poll::Ready(()));
        assert!(calendar.book.borrow().slots.is_empty(), "no slot for a time past");
        let far = calendar.set(start + Duration::from_secs(60));
        let rang = tokio::select! {
            () = calendar.ring(&Timer::Wheel) => unreachable!(),
            at = async {
                // The ringer sleeps towards 60 s before this one is set.
                tokio::time::sleep(Duration::from_millis(1)).await;
                let near = calendar.set(Instant::now() + Duration::from_millis(2));
                wait(&calendar, near).await;
                Instant::now() - start
            } => at,
        };
        assert!(rang < Duration::from_millis(5), "woken for the nearer alarm: {rang:?}");
        calendar.cancel(far);
        assert_eq!(calendar.held(), 0);
    }

    /// On the shard's timerfd, in real time: alarms ring in their order and never before their
    /// time, though an alarm set later is due first.
    #[tokio::test]
    async fn alarms_ring_in_order_and_never_early_on_the_precise_timer() {
        let calendar = Calendar::default();
        let timer = Timer::precise();
        assert!(matches!(timer, Timer::Precise(_)), "a timerfd: {timer:?}");
        let start = Instant::now();
        let late = start + Duration::from_millis(9);
        let later = calendar.set(late);
        let rang = tokio::select! {
            () = calendar.ring(&timer) => unreachable!("the calendar rings for ever"),
            at = async {
                let soon = start + Duration::from_micros(2_300);
                let first = calendar.set(soon);
                wait(&calendar, first).await;
                let first_at = Instant::now();
                assert!(first_at >= soon, "rang {:?} early", soon - first_at);
                wait(&calendar, later).await;
                (first_at, Instant::now())
            } => at,
        };
        assert!(rang.1 >= late && rang.1 >= rang.0, "{rang:?}");
        assert_eq!(calendar.held(), 0);
    }

    /// Closed at the run's end, the calendar rings what is due before it and nothing due at
    /// it or after, however late its thread looks.
    #[tokio::test(start_paused = true)]
    async fn nothing_rings_at_or_after_the_close() {
        let calendar = Calendar::default();
        let start = Instant::now();
        let end = start + Duration::from_secs(7);
        calendar.close_at(end);
        let before = calendar.set(end - Duration::from_micros(1));
        let at_end = calendar.set(end);
        let after = calendar.set(end + Duration::from_secs(1));
        let waker = futures_waker();
        let mut cx = Context::from_waker(&waker);
        tokio::select! {
            () = calendar.ring(&Timer::Wheel) => unreachable!("the calendar rings for ever"),
            () = wait(&calendar, before) => {}
        }
        tokio::time::sleep_until(end + Duration::from_secs(5)).await;
        tokio::select! {
            biased;
            () = calendar.ring(&Timer::Wheel) => unreachable!("the calendar rings for ever"),
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
        assert_eq!(calendar.poll(at_end, &mut cx), Poll::Pending, "not at the end");
        assert_eq!(calendar.poll(after, &mut cx), Poll::Pending, "not after it");
        calendar.ring_due();
        assert_eq!(calendar.poll(after, &mut cx), Poll::Pending, "however late it looks");
    }

    /// A waker that does nothing, for polling by hand.
    fn futures_waker() -> Waker {
        Waker::noop().clone()
    }
}
