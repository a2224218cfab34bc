//! The session table: which connection holds each client id now, and what persistent
//! sessions keep while their device is away.
//!
//! Design: one map behind a mutex, touched on connect, disconnect and when the operator
//! routes a message to a device, never per telemetry message. A live session is reached
//! through its connection's bounded channel; a persistent session whose device is offline
//! keeps its subscriptions and a bounded queue of QoS 1 messages, delivered on reconnect,
//! until it expires (an MQTT 5 session expiry interval; a 3.1.1 session never does). An
//! expired session is forgotten when something next asks for it: its device's reconnect, or a
//! message routed to it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::Publish;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::topics;

/// QoS 1 messages a persistent session keeps for an offline device; past this the oldest
/// is dropped (and counted), so a device that never returns cannot grow memory without end.
pub const OFFLINE_QUEUE_LIMIT: usize = 64;

/// Messages waiting for a live connection to write them; a device that falls this far
/// behind loses messages rather than stalling the operator (`deliver` answers `Dropped`).
pub const OUTBOUND_CHANNEL: usize = 32;

/// A message the gateway hands a connection's task to deliver (boxed so an idle channel's
/// slots stay small).
pub type Outbound = Box<Outgoing>;

/// A message for a device, and when it expires: MQTT 5's message expiry, which the gateway
/// honours for every device. An expired message is not delivered (live or from a stored
/// session's queue); an MQTT 5 device is told what is left of its interval.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The message.
    pub publish: Publish,
    /// When it expires; `None`: never.
    pub expires_at: Option<Instant>,
}

impl Outgoing {
    /// A message that never expires.
    pub fn new(publish: Publish) -> Self {
        Self {
            publish,
            expires_at: None,
        }
    }

    /// Whether it has expired by `now`.
    pub fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Whole seconds left of its expiry at `now`, rounded up (MQTT 5, 3.3.2.3.3: the interval
    /// sent is what is left of it); `None` for a message that never expires.
    pub fn expiry_left(&self, now: Instant) -> Option<u32> {
        let left = self.expires_at?.saturating_duration_since(now);
        let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        Some(u32::try_from(seconds).unwrap_or(u32::MAX))
    }
}

/// The instant a unix-ms expiry (the registry's) falls on, by the system clock now.
pub fn expiry_instant(expires_at_ms: Option<u64>) -> Option<Instant> {
    let left = expires_at_ms?.saturating_sub(crate::registry::system_clock_ms());
    Some(Instant::now() + std::time::Duration::from_millis(left))
}

impl std::ops::Deref for Outgoing {
    type Target = Publish;

    fn deref(&self) -> &Publish {
        &self.publish
    }
}

/// A subscription: a filter and the QoS granted for it.
pub type Subscription = (String, QoS);

/// What a persistent session keeps between connections.
#[derive(Debug, Default)]
pub struct Stored {
    /// Granted subscriptions.
    pub subscriptions: Vec<Subscription>,
    /// QoS 1 messages waiting for the device, oldest first.
    pub queue: VecDeque<Outgoing>,
    /// When the session ends if its device has not come back; `None`: never.
    pub expires_at: Option<Instant>,
}

impl Stored {
    /// Whether the session has ended by `now`.
    fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Queues `publish` if a subscription wants it; false when it was not wanted. Drops the
    /// oldest message when full (returned as the second value).
    fn enqueue(&mut self, publish: Outgoing) -> (bool, bool) {
        let wanted = self
            .subscriptions
            .iter()
            .any(|(filter, qos)| *qos != QoS::AtMostOnce && topics::matches(filter, &publish.topic));
        if !wanted {
            return (false, false);
        }
        let dropped = self.queue.len() >= OFFLINE_QUEUE_LIMIT;
        if dropped {
            self.queue.pop_front();
        }
        self.queue.push_back(publish);
        (true, dropped)
    }
}

/// A connection currently holding a client id.
#[derive(Debug, Clone)]
pub struct Live {
    /// Which connection (ids are never reused).
    pub conn_id: u64,
    /// Where to hand it messages.
    pub tx: mpsc::Sender<Outbound>,
    /// Cancelled to close it from outside: a takeover or a decommission. A token rather
    /// than a channel message, so a connection with a full channel still closes.
    pub kill: CancellationToken,
}

#[derive(Debug, Default)]
struct Entry {
    live: Option<Live>,
    stored: Option<Stored>,
}

/// What happened to a message routed to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Handed to the live connection.
    Sent,
    /// Queued in the offline device's persistent session.
    Queued,
    /// Nowhere to go: offline without a persistent session, unsubscribed, or a full channel.
    Dropped,
}

impl Delivery {
    /// How the operator API names it: `sent`, `queued` or `undelivered`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Queued => "queued",
            Self::Dropped => "undelivered",
        }
    }
}

/// What a device last said about itself on `.../status`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeviceStatus {
    /// Battery level, a fraction.
    pub battery: Option<f64>,
    /// Firmware version running.
    pub firmware: Option<String>,
    /// Seconds since boot.
    pub uptime_s: Option<u64>,
    /// Radio signal strength in dBm (link quality).
    pub rssi_dbm: Option<i32>,
    /// Telemetry reports that carried error codes.
    pub error_reports: u64,
    /// The codes the last of those carried.
    pub last_errors: Vec<u16>,
}

/// When a device was last seen and what it last reported.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Presence {
    /// Unix ms of the last connect, disconnect or status report.
    pub last_seen_ms: u64,
    /// The last status report.
    pub status: Option<DeviceStatus>,
}

/// Client id -> live connection and stored session; device id -> presence.
#[derive(Debug, Default)]
pub struct SessionTable {
    entries: Mutex<HashMap<String, Entry>>,
    /// Updated on connect, disconnect and status reports, and by telemetry only when it
    /// carries a battery or a signal: a connected device is seen "now" (keep-alive proves it).
    presence: Mutex<HashMap<String, Presence>>,
}

impl SessionTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // The map holds no invariant a panicking holder could break halfway: every update
        // is a single insert or take.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes connection `conn_id` the holder of `client_id`. Returns the stored session to
    /// resume (only when `clean` is false and one exists that has not expired) and whether an
    /// older connection was told to close (session takeover).
    pub fn attach(&self, client_id: &str, live: Live, clean: bool) -> (Option<Stored>, bool) {
        let mut entries = self.lock();
        let entry = entries.entry(client_id.to_owned()).or_default();
        let previous = entry.live.replace(live);
        if let Some(old) = &previous {
            old.kill.cancel();
        }
        let took_over = previous.is_some();
        let stored = entry.stored.take().filter(|stored| !stored.expired(Instant::now()));
        (if clean { None } else { stored }, took_over)
    }

    /// Releases `client_id` if `conn_id` still holds it, keeping `stored` for a persistent
    /// session. A connection that was taken over finds a newer holder and leaves it alone,
    /// but its stored state is still kept when the newer one did not ask for it.
    pub fn detach(&self, client_id: &str, conn_id: u64, stored: Option<Stored>) {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(client_id) else {
            return;
        };
        if entry.live.as_ref().is_some_and(|live| live.conn_id == conn_id) {
            entry.live = None;
            entry.stored = stored;
        }
        if entry.live.is_none() && entry.stored.is_none() {
            entries.remove(client_id);
        }
    }

    /// Routes a message to `client_id`: to its live connection, else into its persistent
    /// session's queue. Returns what happened and whether an old queued message was dropped.
    pub fn deliver(&self, client_id: &str, publish: Publish) -> (Delivery, bool) {
        self.deliver_expiring(client_id, publish, None)
    }

    /// As [`SessionTable::deliver`], a message that expires at `expires_at` (MQTT 5's message
    /// expiry): not delivered after, from a queue or live.
    pub fn deliver_expiring(&self, client_id: &str, publish: Publish, expires_at: Option<Instant>) -> (Delivery, bool) {
        let publish = Outgoing { publish, expires_at };
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(client_id) else {
            return (Delivery::Dropped, false);
        };
        if let Some(live) = &entry.live {
            return match live.tx.try_send(Box::new(publish)) {
                Ok(()) => (Delivery::Sent, false),
                Err(_) => (Delivery::Dropped, false),
            };
        }
        if entry
            .stored
            .as_ref()
            .is_some_and(|stored| stored.expired(Instant::now()))
        {
            entries.remove(client_id);
            return (Delivery::Dropped, false);
        }
        match entry.stored.as_mut() {
            Some(stored) => match stored.enqueue(publish) {
                (true, dropped) => (Delivery::Queued, dropped),
                (false, _) => (Delivery::Dropped, false),
            },
            None => (Delivery::Dropped, false),
        }
    }

    /// Closes the live connection of `client_id` and forgets its stored session (the
    /// device was decommissioned).
    pub fn evict(&self, client_id: &str) {
        self.forget(client_id);
        let mut entries = self.lock();
        if let Some(entry) = entries.remove(client_id)
            && let Some(live) = entry.live
        {
            live.kill.cancel();
        }
    }

    /// Records that `device_id` was seen at `at_ms`, with its status report if it sent one.
    pub fn record_seen(&self, device_id: &str, at_ms: u64, status: Option<DeviceStatus>) {
        let mut presence = self.presence.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = presence.entry(device_id.to_owned()).or_default();
        entry.last_seen_ms = entry.last_seen_ms.max(at_ms);
        if let Some(mut status) = status {
            // A status report says nothing of errors: the counts telemetry made stay.
            if let Some(old) = entry.status.take() {
                status.error_reports = old.error_reports;
                status.last_errors = old.last_errors;
            }
            entry.status = Some(status);
        }
    }

    /// Records that `device_id` was seen at `at_ms`, with `change` made to the status it last
    /// reported (an empty one when it has none): one reading of a report that carries one
    /// field, as an LwM2M notification does.
    pub fn record_seen_with(&self, device_id: &str, at_ms: u64, change: impl FnOnce(&mut DeviceStatus)) {
        let mut presence = self.presence.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = presence.entry(device_id.to_owned()).or_default();
        entry.last_seen_ms = entry.last_seen_ms.max(at_ms);
        change(entry.status.get_or_insert(DeviceStatus {
            battery: None,
            firmware: None,
            uptime_s: None,
            rssi_dbm: None,
            error_reports: 0,
            last_errors: Vec::new(),
        }));
    }

    /// When `device_id` was last seen and what it last reported.
    pub fn presence(&self, device_id: &str) -> Option<Presence> {
        self.presence
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(device_id)
            .cloned()
    }

    /// Forgets a decommissioned device's presence.
    fn forget(&self, device_id: &str) {
        self.presence
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(device_id);
    }

    /// Whether `client_id` has a live connection now.
    pub fn is_live(&self, client_id: &str) -> bool {
        self.lock().get(client_id).is_some_and(|e| e.live.is_some())
    }

    /// How many client ids have a live connection.
    pub fn live_count(&self) -> usize {
        self.lock().values().filter(|e| e.live.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(topic: &str) -> Publish {
        Publish::new(topic, QoS::AtLeastOnce, b"x".to_vec())
    }

    fn live(conn_id: u64) -> (Live, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(OUTBOUND_CHANNEL);
        (
            Live {
                conn_id,
                tx,
                kill: CancellationToken::new(),
            },
            rx,
        )
    }

    #[test]
    fn a_second_attach_takes_over_the_first() {
        let table = SessionTable::default();
        let (first, _rx1) = live(1);
        let kill = first.kill.clone();
        let (second, _rx2) = live(2);
        assert!(!table.attach("d-1", first, true).1);
        assert!(table.attach("d-1", second, true).1);
        assert!(kill.is_cancelled(), "the first connection is told to close");
        // The old connection's detach must not release the new holder.
        table.detach("d-1", 1, None);
        assert_eq!(table.live_count(), 1);
        table.detach("d-1", 2, None);
        assert_eq!(table.live_count(), 0);
    }

    #[test]
    fn persistent_sessions_queue_while_offline() {
        let table = SessionTable::default();
        table.attach("d-1", live(1).0, false);
        let stored = Stored {
            subscriptions: vec![("fleet/v1/d/d-1/cmd/+".to_owned(), QoS::AtLeastOnce)],
            ..Stored::default()
        };
        table.detach("d-1", 1, Some(stored));
        assert_eq!(
            table.deliver("d-1", publish("fleet/v1/d/d-1/cmd/c1")).0,
            Delivery::Queued
        );
        assert_eq!(
            table.deliver("d-1", publish("fleet/v1/d/d-1/telemetry")).0,
            Delivery::Dropped
        );
        let (resumed, _) = table.attach("d-1", live(2).0, false);
        let resumed = resumed.expect("stored session resumes");
        assert_eq!(resumed.queue.len(), 1);
        assert_eq!(resumed.subscriptions.len(), 1);
    }

    #[test]
    fn offline_queues_are_bounded() {
        let mut stored = Stored {
            subscriptions: vec![("t/#".to_owned(), QoS::AtLeastOnce)],
            ..Stored::default()
        };
        let mut dropped = 0;
        for i in 0..OFFLINE_QUEUE_LIMIT + 5 {
            if stored.enqueue(Outgoing::new(publish(&format!("t/{i}")))).1 {
                dropped += 1;
            }
        }
        assert_eq!(stored.queue.len(), OFFLINE_QUEUE_LIMIT);
        assert_eq!(dropped, 5);
        assert_eq!(stored.queue.front().map(|p| p.topic.as_str()), Some("t/5"));
    }

    #[test]
    fn clean_sessions_discard_what_was_stored() {
        let table = SessionTable::default();
        table.attach("d-1", live(1).0, false);
        table.detach("d-1", 1, Some(Stored::default()));
        assert!(table.attach("d-1", live(2).0, true).0.is_none());
    }

    /// An MQTT 5 session expires its interval after its connection closed: until then it
    /// queues and resumes; after, a message to it goes nowhere and its device starts afresh.
    #[tokio::test(start_paused = true)]
    async fn a_session_ends_its_expiry_interval_after_its_connection() {
        let table = SessionTable::default();
        let expiring = |seconds: u64| Stored {
            subscriptions: vec![("fleet/v1/d/d-1/cmd/+".to_owned(), QoS::AtLeastOnce)],
            expires_at: Some(Instant::now() + std::time::Duration::from_secs(seconds)),
            ..Stored::default()
        };
        table.attach("d-1", live(1).0, false);
        table.detach("d-1", 1, Some(expiring(60)));
        tokio::time::advance(std::time::Duration::from_secs(59)).await;
        assert_eq!(
            table.deliver("d-1", publish("fleet/v1/d/d-1/cmd/c1")).0,
            Delivery::Queued
        );
        let (resumed, _) = table.attach("d-1", live(2).0, false);
        assert_eq!(resumed.expect("resumed within its interval").queue.len(), 1);

        table.detach("d-1", 2, Some(expiring(60)));
        tokio::time::advance(std::time::Duration::from_secs(60)).await;
        assert_eq!(
            table.deliver("d-1", publish("fleet/v1/d/d-1/cmd/c2")).0,
            Delivery::Dropped,
            "an expired session queues nothing"
        );
        table.attach("d-1", live(3).0, false);
        table.detach("d-1", 3, Some(expiring(10)));
        tokio::time::advance(std::time::Duration::from_secs(11)).await;
        assert!(table.attach("d-1", live(4).0, false).0.is_none(), "nothing to resume");
    }
}
