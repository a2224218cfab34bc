//! The timer structure sleeping devices wait in: a min-heap of (wake time, entry).
//!
//! Design: a duty-cycled device between reports holds no task and no socket, only its state,
//! boxed in this heap under the simulated time it wakes at. Insertion and removal of the
//! earliest entry are O(log n) with 16-byte heap slots (a time and a box), which at a few
//! thousand wake-ups a second is a small share of a core even at ten million entries
//! (`benches/timers.rs` measures both at 10M). Entries due at the same time come out in no
//! particular order: devices are independent, so that cannot change what any one does.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::device::SimTime;

/// Entries waiting for their time, earliest first.
#[derive(Debug)]
pub struct Timers<T> {
    heap: BinaryHeap<Due<T>>,
}

#[derive(Debug)]
struct Due<T> {
    at: SimTime,
    entry: T,
}

// Ordered by time alone, reversed: `BinaryHeap` is a max-heap and the earliest must come out
// first.
impl<T> Ord for Due<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        other.at.cmp(&self.at)
    }
}

impl<T> PartialOrd for Due<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> PartialEq for Due<T> {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl<T> Eq for Due<T> {}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
        }
    }
}

impl<T> Timers<T> {
    /// Files `entry` to come out at `at`.
    pub fn insert(&mut self, at: SimTime, entry: T) {
        self.heap.push(Due { at, entry });
    }

    /// The earliest time an entry waits for.
    pub fn next_at(&self) -> Option<SimTime> {
        self.heap.peek().map(|due| due.at)
    }

    /// Takes out the earliest entry if `is_due` says its time has come.
    pub fn pop_if(&mut self, is_due: impl FnOnce(SimTime) -> bool) -> Option<(SimTime, T)> {
        if !is_due(self.next_at()?) {
            return None;
        }
        self.heap.pop().map(|due| (due.at, due.entry))
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Gives back memory left over from a larger population.
    pub fn shrink(&mut self) {
        if self.heap.capacity() > 2 * self.heap.len() + 1024 {
            self.heap.shrink_to(self.heap.len() * 3 / 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_out_in_time_order_and_only_when_due() {
        let mut timers = Timers::default();
        for (at, name) in [(30, "c"), (10, "a"), (20, "b"), (10, "a2")] {
            timers.insert(SimTime(at), name);
        }
        assert_eq!(timers.next_at(), Some(SimTime(10)));
        assert_eq!(timers.pop_if(|at| at <= SimTime(5)), None);
        let mut due = Vec::new();
        while let Some((at, name)) = timers.pop_if(|at| at <= SimTime(20)) {
            due.push((at.0, name));
        }
        due.sort_unstable();
        assert_eq!(due, [(10, "a"), (10, "a2"), (20, "b")]);
        assert_eq!(timers.len(), 1);
        assert_eq!(timers.pop_if(|_| true), Some((SimTime(30), "c")));
        assert!(timers.is_empty());
        assert_eq!(timers.pop_if(|_| true), None);
    }

    /// A heap slot is a time and a pointer: what a sleeping device costs here besides its box.
    #[test]
    fn a_slot_is_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Due<Box<[u8; 256]>>>(), 16);
    }
}
