//! What the operator did and when, shared by the operator and the shards, so a device that
//! answers an operator's action can measure from the moment the operator acted: a config
//! push's set time for `config.latency`, a command's send time for `command.latency`, and
//! the first failure a device reported for `ota.halt.latency`, a rotation's request time for
//! `rotate.latency`; the devices whose credentials it revoked, whose later connects are
//! `revoked.tried`; the campaigns it started, for the dashboard to follow; and the alert rules
//! it set, with the alerts they call for ([`super::alert_book`]).
//!
//! Design: written a few times per phase and read only when a device handles an operator's
//! message (never on the telemetry path), so plain mutexes are enough. The operator writes
//! before it calls the backend, so a device that hears from the backend always finds the time.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use tokio::time::Instant;

use super::alert_book::AlertBook;

/// The operator's actions, by target.
#[derive(Debug, Default)]
pub struct OperatorLog {
    /// When each group's desired config was last set.
    config_set: Mutex<HashMap<String, Instant>>,
    /// When each device was last sent a command, by device id.
    command_sent: Mutex<HashMap<String, Instant>>,
    /// The path each device was last asked to read and when, by device id, until the device
    /// serves the server's Read of it.
    read_sent: Mutex<HashMap<String, (String, Instant)>>,
    /// The first `failed` or `rolled_back` report of the run, Unix milliseconds (0 if none).
    first_failure_ms: AtomicU64,
    /// Campaigns started.
    campaigns: Mutex<Vec<StartedCampaign>>,
    /// When each group's latest rollout started (devices that poll take it at their next poll).
    rollout_started: Mutex<HashMap<String, Instant>>,
    /// Devices whose credentials the operator revoked (decommissioned), by device id.
    revoked: Mutex<HashSet<String>>,
    /// When each device was last asked to rotate its certificate, by device id.
    rotation_asked: Mutex<HashMap<String, Instant>>,
    /// The alert rules set, the alerts they call for and what the backend raised.
    pub alerts: AlertBook,
}

impl OperatorLog {
    /// Records that `group`'s desired config is being set now.
    pub fn config_set(&self, group: &str, at: Instant) {
        if let Ok(mut map) = self.config_set.lock() {
            map.insert(group.to_owned(), at);
        }
    }

    /// When `group`'s desired config was last set.
    pub fn config_set_at(&self, group: &str) -> Option<Instant> {
        self.config_set.lock().ok()?.get(group).copied()
    }

    /// Records that a command is being sent to `device_id` now.
    pub fn command_sent(&self, device_id: &str, at: Instant) {
        if let Ok(mut map) = self.command_sent.lock() {
            map.insert(device_id.to_owned(), at);
        }
    }

    /// When `device_id` was last sent a command.
    pub fn command_sent_at(&self, device_id: &str) -> Option<Instant> {
        self.command_sent.lock().ok()?.get(device_id).copied()
    }

    /// Records that the operator is asking, now, for `path` of `device_id` to be read.
    pub fn read_sent(&self, device_id: &str, path: &str, at: Instant) {
        if let Ok(mut map) = self.read_sent.lock() {
            map.insert(device_id.to_owned(), (path.to_owned(), at));
        }
    }

    /// When the operator asked for `path` of `device_id` to be read, once: the device serving
    /// the server's Read of it takes the mark, so a later Read of the same path (the server's
    /// own) is not timed again.
    pub fn read_taken(&self, device_id: &str, path: &str) -> Option<Instant> {
        let mut map = self.read_sent.lock().ok()?;
        match map.get(device_id) {
            Some((asked, _)) if asked == path => map.remove(device_id).map(|(_, at)| at),
            _ => None,
        }
    }

    /// Notes a device's failure report (only the first of the run is kept).
    pub fn failure_reported(&self) {
        let now = unix_ms(SystemTime::now());
        let _ = self
            .first_failure_ms
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Records that the backend started a campaign.
    pub fn campaign_started(&self, campaign: StartedCampaign) {
        if let Ok(mut campaigns) = self.campaigns.lock() {
            campaigns.push(campaign);
        }
    }

    /// Records that a rollout to `group` is being started now.
    pub fn rollout_started(&self, group: &str, at: Instant) {
        if let Ok(mut map) = self.rollout_started.lock() {
            map.insert(group.to_owned(), at);
        }
    }

    /// When the latest rollout to `group` started.
    pub fn rollout_started_at(&self, group: &str) -> Option<Instant> {
        self.rollout_started.lock().ok()?.get(group).copied()
    }

    /// Records that `device_id`'s credentials are being revoked now (before the call, so a
    /// device the backend drops at once finds the mark when it tries again).
    pub fn revoked(&self, device_id: &str) {
        if let Ok(mut set) = self.revoked.lock() {
            set.insert(device_id.to_owned());
        }
    }

    /// Takes back [`OperatorLog::revoked`] when the backend did not revoke them after all.
    pub fn not_revoked(&self, device_id: &str) {
        if let Ok(mut set) = self.revoked.lock() {
            set.remove(device_id);
        }
    }

    /// Whether the operator revoked `device_id`'s credentials.
    pub fn is_revoked(&self, device_id: &str) -> bool {
        self.revoked.lock().is_ok_and(|set| set.contains(device_id))
    }

    /// Records that `device_id` is being asked to rotate its certificate now.
    pub fn rotation_asked(&self, device_id: &str, at: Instant) {
        if let Ok(mut map) = self.rotation_asked.lock() {
            map.insert(device_id.to_owned(), at);
        }
    }

    /// When `device_id` was last asked to rotate its certificate.
    pub fn rotation_asked_at(&self, device_id: &str) -> Option<Instant> {
        self.rotation_asked.lock().ok()?.get(device_id).copied()
    }

    /// The campaigns started so far.
    pub fn campaigns(&self) -> Vec<StartedCampaign> {
        self.campaigns.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The first failure report of the run, Unix milliseconds.
    pub fn first_failure_ms(&self) -> Option<u64> {
        match self.first_failure_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(ms),
        }
    }
}

/// A campaign the operator started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedCampaign {
    /// The backend's id.
    pub id: u64,
    /// Its group.
    pub group: String,
    /// Active devices in the group when it started: the campaign's population.
    pub targeted: u64,
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_failure_is_kept() {
        let log = OperatorLog::default();
        assert_eq!(log.first_failure_ms(), None);
        log.failure_reported();
        let first = log.first_failure_ms();
        std::thread::sleep(std::time::Duration::from_millis(2));
        log.failure_reported();
        assert_eq!(log.first_failure_ms(), first);
    }
}
