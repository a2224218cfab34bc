//! The front's own requests to devices, waiting for their answers, and the observations it
//! holds. The receive loop hands each acknowledgement, Reset and response here; the task that
//! sent the request waits on its channel. Tokens are the front's, eight bytes from a counter,
//! so a response names its request whichever port the device answers from.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};

use coap_lite::Packet;
use tokio::sync::mpsc;

/// What came back for a request.
#[derive(Debug)]
pub enum Reply {
    /// An empty acknowledgement: the answer follows separately.
    Acknowledged,
    /// The device reset the request: it does not know it.
    Reset,
    /// The answer.
    Response(Packet),
}

/// What the front observes on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    /// /3/0/9, the battery level in percent.
    Battery,
    /// /4/0/2, the radio signal strength in dBm.
    Signal,
    /// /3303/0/5700, the temperature sensor's value.
    Sensor,
    /// /3/0/11, the error codes (one instance each; 0, no error), asked as TLV: observed while
    /// an error-codes alert rule is in force.
    ErrorCodes,
    /// /5/0/3, the state of the firmware update of campaign `campaign` (observed once the
    /// device took its Package URI, not at registration).
    UpdateState {
        /// The campaign the update belongs to.
        campaign: u64,
    },
    /// /5/0/5, the result of the firmware update of campaign `campaign`.
    UpdateResult {
        /// The campaign the update belongs to.
        campaign: u64,
    },
}

impl Watched {
    /// Every one, in the order they are observed.
    pub const ALL: [Watched; 3] = [Watched::Battery, Watched::Signal, Watched::Sensor];

    /// The resource's path segments.
    pub fn path(self) -> [&'static str; 3] {
        match self {
            Self::Battery => ["3", "0", "9"],
            Self::Signal => ["4", "0", "2"],
            Self::Sensor => ["3303", "0", "5700"],
            Self::ErrorCodes => ["3", "0", "11"],
            Self::UpdateState { .. } => ["5", "0", "3"],
            Self::UpdateResult { .. } => ["5", "0", "5"],
        }
    }

    /// The content format asked for (Accept), if not the device's default: TLV for a
    /// multiple resource, which plain text cannot carry.
    pub fn accept(self) -> Option<u16> {
        match self {
            Self::ErrorCodes => Some(super::tlv::CONTENT_FORMAT),
            _ => None,
        }
    }

    /// The object instance a device must register for it to be observed.
    pub fn instance(self) -> &'static str {
        match self {
            Self::Battery | Self::ErrorCodes => "/3/0",
            Self::Signal => "/4/0",
            Self::Sensor => "/3303/0",
            Self::UpdateState { .. } | Self::UpdateResult { .. } => "/5/0",
        }
    }
}

/// An observation the front holds.
#[derive(Debug, Clone)]
pub struct Observation {
    /// The device observed.
    pub device_id: String,
    /// The registration (session-table connection) that made it.
    pub conn_id: u64,
    /// What is observed.
    pub watched: Watched,
}

#[derive(Debug)]
struct Pending {
    addr: SocketAddr,
    message_id: u16,
    tx: mpsc::Sender<Reply>,
}

#[derive(Debug, Default)]
struct Maps {
    /// By token.
    pending: HashMap<u64, Pending>,
    /// Token by (device address, message id), for empty acknowledgements and Resets, which
    /// carry no token.
    by_message: HashMap<(SocketAddr, u16), u64>,
    /// By token.
    observations: HashMap<u64, Observation>,
}

/// What a response was.
#[derive(Debug)]
pub enum Matched {
    /// The answer to a request a task waits on (and, when an observation shares its token,
    /// its first notification too).
    Answer(Option<Observation>),
    /// A notification of an observation.
    Notification(Observation),
    /// Nothing the front asked for.
    Unknown,
}

/// Pending requests and observations.
#[derive(Debug)]
pub struct Exchanges {
    maps: Mutex<Maps>,
    next_token: std::sync::atomic::AtomicU64,
}

impl Exchanges {
    /// Tokens counting up from `first` (random, so a restarted front does not reuse the last
    /// one's tokens at once).
    pub fn new(first: u64) -> Self {
        Self {
            maps: Mutex::new(Maps::default()),
            next_token: std::sync::atomic::AtomicU64::new(first),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        // Every update is a single insert or remove: a panicking holder leaves them whole.
        self.maps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new token.
    pub fn token(&self) -> u64 {
        self.next_token.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits for the answer to request `token`, message `message_id`, sent to `addr`.
    pub fn expect(&self, token: u64, addr: SocketAddr, message_id: u16) -> mpsc::Receiver<Reply> {
        // An empty acknowledgement, then the response: two replies at most.
        let (tx, rx) = mpsc::channel(2);
        let mut maps = self.lock();
        maps.by_message.insert((addr, message_id), token);
        maps.pending.insert(token, Pending { addr, message_id, tx });
        rx
    }

    /// The request `token` is over (answered or given up).
    pub fn finish(&self, token: u64) {
        let mut maps = self.lock();
        if let Some(pending) = maps.pending.remove(&token) {
            maps.by_message.remove(&(pending.addr, pending.message_id));
        }
    }

    /// Holds observation `token`.
    pub fn observe(&self, token: u64, observation: Observation) {
        self.lock().observations.insert(token, observation);
    }

    /// Forgets every observation registration `conn_id` made.
    pub fn forget(&self, conn_id: u64) {
        self.lock().observations.retain(|_, o| o.conn_id != conn_id);
    }

    /// Forgets observation `token` (the device reset a notification).
    pub fn cancel(&self, token: u64) {
        self.lock().observations.remove(&token);
    }

    /// An empty acknowledgement (`reset` false) or a Reset of message `message_id` from
    /// `addr`; false when no request of the front's is that message.
    pub fn on_empty(&self, addr: SocketAddr, message_id: u16, reset: bool) -> bool {
        let maps = self.lock();
        let Some(pending) = maps
            .by_message
            .get(&(addr, message_id))
            .and_then(|token| maps.pending.get(token))
        else {
            return false;
        };
        let reply = if reset { Reply::Reset } else { Reply::Acknowledged };
        // A full channel means the task has its answer already; what follows is stale.
        let _ = pending.tx.try_send(reply);
        true
    }

    /// A response carrying `token` (copied only to a request waiting on it: a notification,
    /// the common case, is read where it lies).
    pub fn on_response(&self, token: u64, packet: &Packet) -> Matched {
        let maps = self.lock();
        let observation = maps.observations.get(&token).cloned();
        match maps.pending.get(&token) {
            Some(pending) => {
                let _ = pending.tx.try_send(Reply::Response(packet.clone()));
                Matched::Answer(observation)
            }
            None => match observation {
                Some(observation) => Matched::Notification(observation),
                None => Matched::Unknown,
            },
        }
    }

    /// Requests waiting and observations held.
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let maps = self.lock();
        (maps.pending.len(), maps.observations.len())
    }
}

/// A token's eight bytes.
pub fn token_bytes(token: u64) -> Vec<u8> {
    token.to_be_bytes().to_vec()
}

/// The token a packet carries, when it is one of the front's (eight bytes).
pub fn token_of(packet: &Packet) -> Option<u64> {
    let bytes: [u8; 8] = packet.get_token().try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_acknowledgement_then_the_response_reach_the_waiting_request() {
        let exchanges = Exchanges::new(7);
        let addr: SocketAddr = "127.0.0.1:5683".parse().unwrap();
        let token = exchanges.token();
        let mut rx = exchanges.expect(token, addr, 41);
        assert!(!exchanges.on_empty(addr, 42, false), "another message");
        assert!(exchanges.on_empty(addr, 41, false));
        assert!(matches!(
            exchanges.on_response(token, &Packet::new()),
            Matched::Answer(None)
        ));
        assert!(matches!(rx.try_recv(), Ok(Reply::Acknowledged)));
        assert!(matches!(rx.try_recv(), Ok(Reply::Response(_))));
        exchanges.finish(token);
        assert!(!exchanges.on_empty(addr, 41, true), "over");
        assert_eq!(exchanges.counts(), (0, 0));
    }

    #[test]
    fn notifications_name_their_observation_until_forgotten() {
        let exchanges = Exchanges::new(1);
        let token = exchanges.token();
        let observation = Observation {
            device_id: "d-1".into(),
            conn_id: 3,
            watched: Watched::Battery,
        };
        exchanges.observe(token, observation);
        assert!(matches!(
            exchanges.on_response(token, &Packet::new()),
            Matched::Notification(Observation {
                watched: Watched::Battery,
                ..
            })
        ));
        exchanges.forget(4);
        assert_eq!(exchanges.counts(), (0, 1), "another registration's");
        exchanges.forget(3);
        assert!(matches!(exchanges.on_response(token, &Packet::new()), Matched::Unknown));
    }

    #[test]
    fn tokens_are_eight_bytes_both_ways() {
        let mut packet = Packet::new();
        packet.set_token(token_bytes(0x0102_0304_0506_0708));
        assert_eq!(token_of(&packet), Some(0x0102_0304_0506_0708));
        packet.set_token(vec![1, 2]);
        assert_eq!(token_of(&packet), None);
    }
}
