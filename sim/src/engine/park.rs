//! When a shard's thread last slept, so a late send can say why it was late: the thread asleep
//! at the report's intended instant and run only well after it (the machine did not run the
//! harness in time: other work on its cores, a virtual machine's host running other work, a
//! stopped process), or the thread awake and busy with the devices before it (the harness's own
//! load, unless the machine held it back while it ran: a late wake just before, whose backlog
//! it was still working through, or its core taken from it while it ran, which a virtual
//! machine's guest cannot see).
//!
//! The shard's runtime calls [`parking`] just before its thread sleeps on its timers and
//! sockets and [`unparked`] as soon as it runs again (tokio's park hooks): two clock reads a
//! sleep, on the thread itself, so nothing is shared and nothing locks. A thread with no record
//! (another runtime's, or a shard before its first sleep) reads as never having slept.

use std::cell::Cell;
use std::time::Duration;

use tokio::time::Instant;

/// A report sent more than this after its intended instant is a late send.
pub const LATE: Duration = Duration::from_millis(5);

/// The shortest sleep kept. A late send counts as woken late when the thread woke later after
/// its instant than it then took to send it, so more than half of [`LATE`] after it, having
/// slept since before it: a shorter sleep cannot have made one. The shorter ones are mostly
/// not sleeps at all: the runtime passes through its park hooks, without sleeping, each time
/// it stops to look at its sockets between two batches of tasks (every 61 tasks), and would
/// otherwise overwrite the sleep a backlog began with.
const KEPT: Duration = Duration::from_micros(2_500);

thread_local! {
    /// When the thread last went to sleep.
    static ASLEEP: Cell<Option<Instant>> = const { Cell::new(None) };
    /// The thread's last sleep of at least [`KEPT`]: when it began and when the thread ran again.
    static LAST_SLEEP: Cell<Option<(Instant, Instant)>> = const { Cell::new(None) };
}

/// The park hook: the thread is about to sleep (or to look at its sockets without sleeping).
pub fn parking() {
    ASLEEP.set(Some(Instant::now()));
}

/// The unpark hook: the thread runs again.
pub fn unparked() {
    if let Some(sleep) = ASLEEP.take().and_then(|asleep| kept(asleep, Instant::now())) {
        LAST_SLEEP.set(Some(sleep));
    }
}

/// The sleep from `asleep` to `woke`, if it is long enough to keep ([`KEPT`]).
fn kept(asleep: Instant, woke: Instant) -> Option<(Instant, Instant)> {
    (woke.saturating_duration_since(asleep) >= KEPT).then_some((asleep, woke))
}

/// Whether a report meant for `intended` and sent at `now` (more than [`LATE`] after it) was
/// late mostly because this thread woke late: it was asleep at `intended` and ran again later
/// after it than the time it then took to get to the report.
pub fn woke_late(intended: Instant, now: Instant) -> bool {
    LAST_SLEEP
        .get()
        .is_some_and(|(asleep, woke)| slept_through(asleep, woke, intended, now))
}

/// [`woke_late`] for a sleep from `asleep` to `woke`.
fn slept_through(asleep: Instant, woke: Instant, intended: Instant, now: Instant) -> bool {
    if asleep > intended || woke <= intended || woke > now {
        // Awake at the intended instant (or a sleep after the report: not this one's).
        return false;
    }
    woke - intended > now - woke
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_report_due_while_the_thread_slept_was_late_for_the_wake_when_the_wake_took_longest() {
        let t = Instant::now();
        // Asleep from t, due at t + 1 ms, woke at t + 9, sent at t + 10: 8 ms asleep past it.
        assert!(slept_through(t, t + ms(9), t + ms(1), t + ms(10)));
        // Woke 2 ms after it, then 6 ms on the devices before it: the harness's own load.
        assert!(!slept_through(t, t + ms(3), t + ms(1), t + ms(9)));
    }

    #[test]
    fn a_report_due_while_the_thread_was_awake_was_late_for_the_harness_load() {
        let t = Instant::now();
        // Slept until t + 1, due at t + 2, sent at t + 30: awake throughout.
        assert!(!slept_through(t, t + ms(1), t + ms(2), t + ms(30)));
        // Fell asleep after the instant it was due: it was behind before it slept.
        assert!(!slept_through(t + ms(5), t + ms(20), t + ms(2), t + ms(21)));
    }

    #[test]
    fn a_sleep_after_the_send_says_nothing() {
        let t = Instant::now();
        assert!(!slept_through(t, t + ms(12), t + ms(1), t + ms(10)));
    }

    #[test]
    fn a_look_at_the_sockets_between_batches_is_not_kept_as_a_sleep() {
        let t = Instant::now();
        assert_eq!(kept(t, t + Duration::from_micros(100)), None);
        assert_eq!(kept(t, t + KEPT), Some((t, t + KEPT)));
    }

    #[test]
    fn the_hooks_keep_this_threads_last_sleep() {
        let t = Instant::now();
        assert!(!woke_late(t, t + ms(10)), "no sleep recorded on this thread yet");
        parking();
        std::thread::sleep(ms(3));
        unparked();
        let (asleep, woke) = LAST_SLEEP.get().expect("the sleep was recorded");
        assert!(woke >= asleep + ms(3));
        assert!(woke_late(asleep, woke), "due as it fell asleep, sent as it woke");
        let slept = woke - asleep;
        assert!(
            !woke_late(asleep, woke + slept * 2),
            "then busy twice as long as it slept"
        );
    }
}
