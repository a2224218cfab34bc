//! The QoS 1 publishes an MQTT session awaits a PUBACK for, oldest first: one word in every
//! device, and a box of [`INFLIGHT_LIMIT`] entries only while any are in flight (a `Vec` took
//! three words of every idle device's task, and allocated as often).

use tokio::time::Instant;

use super::link::Awaited;

/// QoS 1 publishes awaiting their PUBACK, per device; past this the oldest is forgotten (its
/// latency lost, counted as a timeout) so a silent server cannot grow memory.
pub const INFLIGHT_LIMIT: usize = 8;

/// One publish in flight: its packet id, the time to measure from, what to record.
pub type Flight = (u16, Instant, Awaited);

/// The publishes in flight.
#[derive(Debug, Default)]
pub struct Inflight(Option<Box<Flights>>);

/// Up to [`INFLIGHT_LIMIT`] flights, the first `len` of `items` in use.
#[derive(Debug)]
struct Flights {
    len: usize,
    items: [Flight; INFLIGHT_LIMIT],
}

impl Inflight {
    /// How many are in flight.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |f| f.len)
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Adds `flight` as the newest; when [`INFLIGHT_LIMIT`] are already in flight, the oldest
    /// is forgotten and returned.
    pub fn push(&mut self, flight: Flight) -> Option<Flight> {
        let Some(flights) = &mut self.0 else {
            self.0 = Some(Box::new(Flights {
                len: 1,
                items: [flight; INFLIGHT_LIMIT],
            }));
            return None;
        };
        let forgotten = (flights.len == INFLIGHT_LIMIT).then(|| {
            let oldest = flights.items[0];
            flights.items.copy_within(1.., 0);
            flights.len -= 1;
            oldest
        });
        flights.items[flights.len] = flight;
        flights.len += 1;
        forgotten
    }

    /// Takes the flight of packet `pkid` out, if it is in flight; the box goes with the last.
    pub fn take(&mut self, pkid: u16) -> Option<(Instant, Awaited)> {
        let flights = self.0.as_mut()?;
        let slot = flights.items[..flights.len].iter().position(|(id, ..)| *id == pkid)?;
        let (_, since, awaited) = flights.items[slot];
        flights.items.copy_within(slot + 1..flights.len, slot);
        flights.len -= 1;
        if flights.len == 0 {
            self.0 = None;
        }
        Some((since, awaited))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Flights come out by packet id in any order, the oldest is forgotten past the limit, and
    /// nothing is held once none is in flight.
    #[test]
    fn flights_are_taken_by_id_and_the_oldest_is_forgotten_past_the_limit() {
        let start = Instant::now();
        let at = |k: u16| start + Duration::from_millis(u64::from(k));
        let mut inflight = Inflight::default();
        assert!(inflight.is_empty());
        for pkid in 1..=8 {
            assert_eq!(inflight.push((pkid, at(pkid), Awaited::Telemetry)), None);
        }
        assert_eq!(inflight.len(), 8);
        assert_eq!(
            inflight.push((9, at(9), Awaited::Config)).map(|f| f.0),
            Some(1),
            "the oldest goes"
        );
        assert_eq!(inflight.take(1), None, "forgotten");
        assert_eq!(inflight.take(9), Some((at(9), Awaited::Config)));
        assert_eq!(inflight.take(4), Some((at(4), Awaited::Telemetry)));
        assert_eq!(inflight.take(4), None, "once only");
        for pkid in [2, 3, 5, 6, 7] {
            assert_eq!(inflight.take(pkid).map(|f| f.0), Some(at(pkid)));
        }
        assert_eq!(inflight.len(), 1);
        assert_eq!(inflight.take(8).map(|f| f.0), Some(at(8)));
        assert!(
            inflight.is_empty() && inflight.0.is_none(),
            "the box goes with the last"
        );
        assert_eq!(std::mem::size_of::<Inflight>(), 8, "one word in every device");
    }
}
