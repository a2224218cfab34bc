//! A timer that fires at the instant it was set for, not on tokio's next millisecond: what a
//! shard sleeps on until its devices' next wake-up and its next arrival.
//!
//! Tokio's timer wheel counts whole milliseconds from its runtime's start, rounds a deadline up
//! to the next of them, and a thread that parks between two of them sleeps whole milliseconds
//! from the one before. On the 2-core machine a sleep woke about 1.1 ms late on average
//! (`cargo bench -p fleetsim --bench timers -- sleep_250us`, docs/scale.md), and every latency
//! the harness measures from an intended instant carried that: a connect that took 0.2 ms read
//! as 1.3.
//!
//! A Linux timerfd armed for the absolute instant wakes the thread within the kernel's timer
//! slack, about 50 µs. It costs the shard one file and one system call a wake-up (the arming;
//! the clock, not a read, says the instant has come), which one wake-up a grid step for all the
//! shard's devices makes small.
//!
//! Tokio's instants are `CLOCK_MONOTONIC`'s, offset: the timer maps one to the other through
//! an instant and the clock read just after it, so a deadline is never armed early.

use std::cell::Cell;
use std::os::fd::OwnedFd;

use rustix::time::{
    ClockId, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, clock_gettime, timerfd_create,
    timerfd_settime,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

const NANOS: i128 = 1_000_000_000;

/// What a shard's waits sleep on.
#[derive(Debug)]
pub enum Timer {
    /// Tokio's timer wheel, to the millisecond: what a test with paused time needs.
    Wheel,
    /// A timerfd, to the kernel's timer slack.
    Precise(TimerFd),
}

impl Timer {
    /// A timerfd, or tokio's wheel if the system will not give one (no file left). Must be
    /// called inside a tokio runtime with I/O enabled.
    pub fn precise() -> Self {
        TimerFd::new().map_or(Self::Wheel, Self::Precise)
    }

    /// Sleeps until `at` (at once for a time past). Cancel-safe: dropped before it fires, the
    /// timer stays armed, and the next sleep until the same instant takes that expiry.
    pub async fn sleep_until(&self, at: Instant) {
        match self {
            Self::Wheel => tokio::time::sleep_until(at).await,
            Self::Precise(fd) => {
                if fd.sleep_until(at).await.is_err() {
                    // The timer failed after it was made (not seen): the wheel still keeps time.
                    tokio::time::sleep_until(at).await;
                }
            }
        }
    }
}

/// A non-blocking `CLOCK_MONOTONIC` timerfd registered with the runtime.
#[derive(Debug)]
pub struct TimerFd {
    fd: AsyncFd<OwnedFd>,
    /// The deadline armed whose expiry has not been read yet.
    armed: Cell<Option<Instant>>,
    /// An instant, and `CLOCK_MONOTONIC` in nanoseconds read just after it.
    base: (Instant, i128),
}

impl TimerFd {
    /// A disarmed timer, registered with the current runtime.
    pub fn new() -> std::io::Result<Self> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // Tokio 1.54 deprecates this for its unsafe successor, `register_with_interest`, whose
        // contract is that the descriptor stays open and unreplaced while registered. An
        // `OwnedFd` moved into the `AsyncFd` is owned by it for its whole life, so that holds
        // here, and the crate stays free of `unsafe`.
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(fd, Interest::READABLE)?;
        // The clock is read after the instant, so an instant maps to the clock's reading at or
        // after it: a deadline is armed late by the gap between the two reads, never early.
        let instant = Instant::now();
        let clock = clock_gettime(ClockId::Monotonic);
        let base = (instant, i128::from(clock.tv_sec) * NANOS + i128::from(clock.tv_nsec));
        Ok(Self {
            fd,
            armed: Cell::new(None),
            base,
        })
    }

    /// Sleeps until `at`, arming the timer unless it is armed for `at` already (at once,
    /// unarmed, for a time past).
    ///
    /// The expiry is never read: the clock says whether `at` has come (the timer fires at or
    /// after it, never before), and arming again clears an expiry left unread. So a wake-up
    /// costs one system call, the arming, where reading the expiry took two more (the read, and
    /// at the next sleep a read that found nothing behind the readiness it left).
    pub async fn sleep_until(&self, at: Instant) -> std::io::Result<()> {
        loop {
            if Instant::now() >= at {
                self.armed.set(None);
                return Ok(());
            }
            if self.armed.get() != Some(at) {
                timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::ABSTIME, &self.spec(at))?;
                self.armed.set(Some(at));
            }
            self.fd.readable().await?.clear_ready();
            // Woken, but if still before `at` the readiness was an expiry of an earlier arming,
            // whose sleep was dropped before it came: arming again (at the loop's top) costs a
            // call and leaves nothing to chance. At or after `at`, the top returns.
            self.armed.set(None);
        }
    }

    /// `at` as an absolute `CLOCK_MONOTONIC` time to arm (a nanosecond after boot for a time
    /// before it: zero would disarm the timer, and any past time fires at once).
    fn spec(&self, at: Instant) -> Itimerspec {
        let (instant, clock) = self.base;
        let nanos = match at.checked_duration_since(instant) {
            Some(after) => clock.saturating_add(i128::try_from(after.as_nanos()).unwrap_or(i128::MAX)),
            None => clock.saturating_sub(i128::try_from((instant - at).as_nanos()).unwrap_or(i128::MAX)),
        }
        .max(1);
        let secs = i64::try_from(nanos / NANOS).unwrap_or(i64::MAX);
        let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
        Itimerspec {
            it_interval: zero,
            it_value: Timespec {
                tv_sec: secs,
                // Below a second: fits.
                tv_nsec: (nanos % NANOS) as _,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Each sleep ends at or after its instant, a past one at once; the lateness each shows is
    /// for the eye, not asserted (the machine's load decides it).
    #[tokio::test]
    async fn a_sleep_never_ends_before_its_instant() {
        let timer = Timer::precise();
        assert!(matches!(timer, Timer::Precise(_)), "a timerfd: {timer:?}");
        let start = Instant::now();
        timer.sleep_until(start - Duration::from_millis(3)).await;
        for step in 1..=20u32 {
            let at = start + Duration::from_micros(1_730) * step;
            timer.sleep_until(at).await;
            let now = Instant::now();
            assert!(now >= at, "woke {:?} early", at - now);
            eprintln!("step {step}: {:?} late", now - at);
        }
    }

    /// A sleep dropped before it fires leaves the timer armed: a later sleep for another
    /// instant re-arms it, and one for the same instant takes the expiry that came meanwhile.
    #[tokio::test]
    async fn a_dropped_sleep_leaves_nothing_that_stops_the_next() {
        let Timer::Precise(timer) = Timer::precise() else {
            panic!("no timerfd");
        };
        let start = Instant::now();
        let far = start + Duration::from_secs(3_600);
        tokio::select! {
            _ = timer.sleep_until(far) => panic!("an hour passed"),
            () = tokio::time::sleep(Duration::from_millis(2)) => {}
        }
        // Re-armed for a nearer instant: it is not left waiting for the hour.
        let near = Instant::now() + Duration::from_millis(3);
        timer.sleep_until(near).await.expect("timerfd");
        assert!(Instant::now() >= near);
        // Armed, dropped, and its instant passes unawaited: the next sleep for it ends at once.
        let soon = Instant::now() + Duration::from_millis(1);
        {
            let mut sleep = std::pin::pin!(timer.sleep_until(soon));
            let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(sleep.as_mut().poll(cx))).await;
            assert!(polled.is_pending(), "armed for a millisecond on");
        }
        std::thread::sleep(Duration::from_millis(5));
        let again = tokio::time::timeout(Duration::from_secs(30), timer.sleep_until(soon)).await;
        assert!(matches!(again, Ok(Ok(()))), "the expiry was kept: {again:?}");
        assert!(timer.armed.get().is_none(), "taken and disarmed");
    }

    /// An expiry left by an earlier arming, its sleep dropped, does not end a sleep for a
    /// later instant: the runtime saw the timer readable, but the instant has not come.
    #[tokio::test]
    async fn an_earlier_expiry_does_not_end_a_later_sleep() {
        let Timer::Precise(timer) = Timer::precise() else {
            panic!("no timerfd");
        };
        let soon = Instant::now() + Duration::from_millis(1);
        {
            let mut sleep = std::pin::pin!(timer.sleep_until(soon));
            let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(sleep.as_mut().poll(cx))).await;
            assert!(polled.is_pending(), "armed for a millisecond on");
        }
        // The runtime parks past the expiry and marks the timer readable.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let later = Instant::now() + Duration::from_millis(20);
        timer.sleep_until(later).await.expect("timerfd");
        let now = Instant::now();
        assert!(now >= later, "woke {:?} early", later - now);
    }

    /// Instants map onto the monotonic clock a nanosecond for a nanosecond, and an instant
    /// never onto a time before the clock's reading when it was taken.
    #[tokio::test]
    async fn instants_map_onto_the_clock_never_early() {
        let Timer::Precise(timer) = Timer::precise() else {
            panic!("no timerfd");
        };
        let nanos = |spec: Itimerspec| i128::from(spec.it_value.tv_sec) * NANOS + i128::from(spec.it_value.tv_nsec);
        let (instant, clock) = timer.base;
        assert_eq!(nanos(timer.spec(instant)), clock);
        assert_eq!(
            nanos(timer.spec(instant + Duration::from_nanos(1_500_000_001))),
            clock + 1_500_000_001
        );
        assert_eq!(nanos(timer.spec(instant - Duration::from_millis(2))), clock - 2_000_000);
        for _ in 0..1_000 {
            let before = clock_gettime(ClockId::Monotonic);
            let before = i128::from(before.tv_sec) * NANOS + i128::from(before.tv_nsec);
            assert!(nanos(timer.spec(Instant::now())) >= before, "armed early");
        }
    }
}
