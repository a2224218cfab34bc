//! The LwM2M front's registrations: which device is registered where, until when, with which
//! objects. One map behind the front's mutex, touched on Register, Update, De-register and
//! expiry, and when a request to a device needs its address now; never per notification.

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// One device's registration.
#[derive(Debug)]
pub struct Registration {
    /// The registry's id of the device.
    pub device_id: String,
    /// Its endpoint name (its serial).
    pub endpoint: String,
    /// Where the device is now: the source of its last Register or Update.
    pub addr: SocketAddr,
    /// Seconds the registration lives without an update.
    pub lifetime_s: u32,
    /// Its binding (`U`, `UQ`).
    pub binding: String,
    /// Its object instances (`/3/0`) and objects (`/5`).
    pub links: Vec<String>,
    /// When it expires unless updated.
    pub expires_at: Instant,
    /// The session-table connection id it holds its device's place with.
    pub conn_id: u64,
    /// Cancelled to end it from outside (a newer registration, a decommission, shutdown).
    pub kill: CancellationToken,
}

impl Registration {
    /// Whether the device registered `path` (an object instance such as `/3/0`, or its
    /// object).
    pub fn has(&self, path: &str) -> bool {
        self.links
            .iter()
            .any(|l| l == path || path.strip_prefix(l.as_str()).is_some_and(|rest| rest.starts_with('/')))
    }
}

/// What an Update changes.
#[derive(Debug, Default)]
pub struct Changes {
    /// A new lifetime.
    pub lifetime_s: Option<u32>,
    /// A new binding.
    pub binding: Option<String>,
    /// New object links.
    pub links: Option<Vec<String>>,
}

/// Registrations by location (`/rd/{location}`) and by endpoint.
#[derive(Debug, Default)]
pub struct Table {
    by_location: HashMap<u64, Registration>,
    by_endpoint: HashMap<String, u64>,
    last_location: u64,
}

impl Table {
    /// Adds `registration` (its expiry from its lifetime, counted from `now`); returns its
    /// location and the registration of the same endpoint it replaces, if any (LwM2M: a
    /// Register of a registered endpoint replaces its registration).
    pub fn register(&mut self, mut registration: Registration, now: Instant) -> (u64, Option<Registration>) {
        registration.expires_at = now + Duration::from_secs(u64::from(registration.lifetime_s));
        self.last_location += 1;
        let location = self.last_location;
        let replaced = self
            .by_endpoint
            .insert(registration.endpoint.clone(), location)
            .and_then(|old| self.by_location.remove(&old));
        self.by_location.insert(location, registration);
        (location, replaced)
    }

    /// The ids of the devices registered now.
    pub fn device_ids(&self) -> Vec<String> {
        self.by_location.values().map(|r| r.device_id.clone()).collect()
    }

    /// Renews the registration at `location` from `addr`, applying `changes`; its device id,
    /// or `None` when no registration is there (it expired, or the device was decommissioned).
    pub fn update(&mut self, location: u64, addr: SocketAddr, changes: Changes, now: Instant) -> Option<&Registration> {
        let registration = self.by_location.get_mut(&location)?;
        registration.addr = addr;
        if let Some(lifetime_s) = changes.lifetime_s {
            registration.lifetime_s = lifetime_s;
        }
        if let Some(binding) = changes.binding {
            registration.binding = binding;
        }
        if let Some(links) = changes.links {
            registration.links = links;
        }
        registration.expires_at = now + Duration::from_secs(u64::from(registration.lifetime_s));
        Some(registration)
    }

    /// Removes the registration at `location` when it is still the one made with connection
    /// `conn_id` (any, when `None`).
    pub fn remove(&mut self, location: u64, conn_id: Option<u64>) -> Option<Registration> {
        let held = self.by_location.get(&location)?;
        if conn_id.is_some_and(|id| id != held.conn_id) {
            return None;
        }
        let registration = self.by_location.remove(&location)?;
        if self.by_endpoint.get(&registration.endpoint) == Some(&location) {
            self.by_endpoint.remove(&registration.endpoint);
        }
        Some(registration)
    }

    /// The registration at `location`.
    pub fn get(&self, location: u64) -> Option<&Registration> {
        self.by_location.get(&location)
    }

    /// How many devices are registered.
    pub fn len(&self) -> usize {
        self.by_location.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_location.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(endpoint: &str, conn_id: u64, lifetime_s: u32) -> Registration {
        Registration {
            device_id: format!("d-{endpoint}"),
            endpoint: endpoint.to_owned(),
            addr: "127.0.0.1:5000".parse().unwrap(),
            lifetime_s,
            binding: "U".to_owned(),
            links: vec!["/1/0".into(), "/3/0".into(), "/5".into()],
            expires_at: Instant::now(),
            conn_id,
            kill: CancellationToken::new(),
        }
    }

    #[test]
    fn a_second_register_of_an_endpoint_replaces_the_first() {
        let now = Instant::now();
        let mut table = Table::default();
        let (first, replaced) = table.register(registration("sn-1", 1, 60), now);
        assert!(replaced.is_none());
        let (second, replaced) = table.register(registration("sn-1", 2, 60), now);
        assert_ne!(first, second, "a new location");
        assert_eq!(replaced.map(|r| r.conn_id), Some(1));
        assert_eq!(table.len(), 1);
        assert!(table.get(first).is_none());
        // The first registration's task ending must not remove the second.
        assert!(table.remove(second, Some(1)).is_none());
        assert!(table.remove(second, Some(2)).is_some());
        assert!(table.is_empty());
    }

    #[test]
    fn an_update_renews_moves_and_changes() {
        let now = Instant::now();
        let mut table = Table::default();
        let (location, _) = table.register(registration("sn-1", 1, 60), now);
        assert_eq!(
            table.get(location).map(|r| r.expires_at),
            Some(now + Duration::from_secs(60))
        );
        let later = now + Duration::from_secs(50);
        let moved: SocketAddr = "127.0.0.2:6000".parse().unwrap();
        let changes = Changes {
            lifetime_s: Some(120),
            ..Changes::default()
        };
        let updated = table.update(location, moved, changes, later).expect("registered");
        assert_eq!(updated.addr, moved);
        assert_eq!(updated.expires_at, later + Duration::from_secs(120));
        assert!(table.update(location + 1, moved, Changes::default(), later).is_none());
    }

    #[test]
    fn objects_and_their_instances_are_known() {
        let r = registration("sn-1", 1, 60);
        assert!(r.has("/3/0"));
        assert!(r.has("/5/0"), "an object's instances");
        assert!(!r.has("/3303/0"));
        assert!(!r.has("/3/00"));
    }
}
