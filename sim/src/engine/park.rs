//! When a shard's thread last slept, so a late send can say why it was late: the thread asleep
//! at the report's intended instant and run only well after it, or still working through the
//! backlog such a late wake left (the machine did not run the harness in time: other work on
//! its cores, a virtual machine's host running other work, a stopped process), or the thread
//! awake and busy with the devices before it (the harness's own load, unless the machine took
//! its core while it ran, which a virtual machine's guest cannot see).
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
    /// The backlog of the last sleep found to have ended late: when it ended, and until when
    /// the reports the thread sent were still held back by it.
    static BACKLOG: Cell<Option<Backlog>> = const { Cell::new(None) };
}

/// What a late wake left behind: a thread run again some time after a report it slept through
/// was due has that much of its devices' work piled up, and the reports due meanwhile or while
/// it works through the pile go out late for the wake, not for the harness's load. Until it
/// has been awake as long as the wake was late: a pile that takes longer than that to clear
/// is the harness's own load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Backlog {
    /// When the late wake came: the end of the sleep it belongs to.
    woke: Instant,
    /// The end of the backlog: the wake plus the longest it was found late.
    until: Instant,
}

impl Backlog {
    /// The backlog after finding the wake at `woke` late for a report due at `intended`:
    /// the `previous` one lengthened, if it is that wake's.
    fn after(previous: Option<Backlog>, woke: Instant, intended: Instant) -> Backlog {
        let until = woke + woke.saturating_duration_since(intended);
        match previous {
            Some(backlog) if backlog.woke == woke => Backlog {
                woke,
                until: backlog.until.max(until),
            },
            _ => Backlog { woke, until },
        }
    }

    /// Whether a report due at `intended` and sent at `now`, on a thread whose last sleep ran
    /// from `asleep` to `woke`, went out within this backlog: the same wake, due after the
    /// thread fell asleep (not behind before it), sent before the backlog's end.
    fn holds(self, asleep: Instant, woke: Instant, intended: Instant, now: Instant) -> bool {
        self.woke == woke && intended >= asleep && now <= self.until
    }
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
/// after it than the time it then took to get to the report; or it went out within the
/// backlog such a wake left (see [`Backlog`]).
pub fn woke_late(intended: Instant, now: Instant) -> bool {
    let Some((asleep, woke)) = LAST_SLEEP.get() else {
        return false;
    };
    if slept_through(asleep, woke, intended, now) {
        BACKLOG.set(Some(Backlog::after(BACKLOG.get(), woke, intended)));
        return true;
    }
    BACKLOG
        .get()
        .is_some_and(|backlog| backlog.holds(asleep, woke, intended, now))
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
    fn reports_sent_within_a_late_wakes_backlog_are_the_wakes() {
        let t = Instant::now();
        // Asleep from t, woke at t + 20, 15 ms after a report due at t + 5.
        let backlog = Backlog::after(None, t + ms(20), t + ms(5));
        assert_eq!(backlog.until, t + ms(35), "as long again after the wake as it was late");
        // Due at t + 18, sent at t + 30 (working through the backlog): the wake's.
        assert!(backlog.holds(t, t + ms(20), t + ms(18), t + ms(30)));
        // Due at t + 25, after the wake, sent at t + 34: still the wake's.
        assert!(backlog.holds(t, t + ms(20), t + ms(25), t + ms(34)));
        // Sent at t + 36: awake longer than the wake was late, the harness's own load.
        assert!(!backlog.holds(t, t + ms(20), t + ms(25), t + ms(36)));
        // Due before the thread fell asleep: it was behind already.
        assert!(!backlog.holds(t + ms(1), t + ms(20), t, t + ms(30)));
        // After another sleep, ended at t + 40: not this wake's.
        assert!(!backlog.holds(t + ms(37), t + ms(40), t + ms(38), t + ms(39)));
    }

    #[test]
    fn a_backlog_grows_with_the_latest_the_same_wake_was_found_and_starts_again_at_the_next() {
        let t = Instant::now();
        let first = Backlog::after(None, t + ms(20), t + ms(15));
        let longer = Backlog::after(Some(first), t + ms(20), t + ms(5));
        assert_eq!(longer.until, t + ms(35));
        assert_eq!(
            Backlog::after(Some(longer), t + ms(20), t + ms(15)),
            longer,
            "never shorter"
        );
        let next = Backlog::after(Some(longer), t + ms(50), t + ms(44));
        assert_eq!((next.woke, next.until), (t + ms(50), t + ms(56)));
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
            woke_late(woke, woke + slept / 2),
            "due as it woke, sent within the backlog the late wake left"
        );
        assert!(
            !woke_late(asleep, woke + slept * 2),
            "then busy twice as long as it slept"
        );
    }
}
