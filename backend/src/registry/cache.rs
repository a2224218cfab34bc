//! In-memory authentication caches: every MQTT CONNECT is answered from here, never from
//! SQLite. The writer thread is the only mutator and applies a batch's changes after the
//! batch committed, so the caches never show uncommitted state. They also keep the registry's
//! counts (devices per state, claims), so `/healthz` and `/metrics` answer without scanning a
//! table that may hold millions of rows.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use rusqlite::Connection;

use super::identity::{ct_eq, sha256};
use super::records::{CertAuth, ClaimAuth, DeviceAuth, DeviceState, RegistryCounts, RegistryError};

/// What authentication needs to know about a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEntry {
    /// SHA-256 of the token; `None` once decommissioned.
    pub token_hash: Option<[u8; 32]>,
    /// The device's group, returned on success.
    pub group: String,
    /// Its lifecycle state, for the counts.
    pub state: DeviceState,
}

/// What authentication needs to know about a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimEntry {
    /// SHA-256 of the claim secret.
    pub secret_hash: [u8; 32],
    /// Whether the claim was revoked.
    pub revoked: bool,
}

/// What authentication needs to know about a certificate the backend issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertEntry {
    /// The device it names.
    pub device_id: Box<str>,
    /// When it stops being accepted, unix ms.
    pub revoke_at: Option<u64>,
}

/// A change to apply after its batch committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheUpdate {
    /// Insert or replace a device.
    Device(String, DeviceEntry),
    /// Insert or replace a claim.
    Claim(String, ClaimEntry),
    /// Insert or replace a certificate, by serial number.
    Cert(String, CertEntry),
}

/// Both caches. Locks are held only for a map lookup or for applying one batch.
#[derive(Debug, Default)]
pub struct AuthCache {
    devices: RwLock<HashMap<String, DeviceEntry>>,
    claims: RwLock<HashMap<String, ClaimEntry>>,
    certs: RwLock<HashMap<String, CertEntry>>,
    counts: RwLock<RegistryCounts>,
}

fn hash32(bytes: Vec<u8>, what: &str) -> Result<[u8; 32], RegistryError> {
    <[u8; 32]>::try_from(bytes).map_err(|b| RegistryError::Corrupt(format!("{what}: hash of {} bytes", b.len())))
}

impl AuthCache {
    /// Loads every device and every claim. Released rows are kept: a retired id must keep
    /// answering "decommissioned" after a restart, and re-provisioned serials are rare enough
    /// that their history costs no noticeable memory.
    pub fn load(conn: &Connection) -> Result<AuthCache, RegistryError> {
        let mut devices = HashMap::new();
        let mut counts = RegistryCounts::default();
        let mut stmt = conn.prepare("SELECT id, token_hash, group_name, state FROM devices")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let token_hash = match row.get::<_, Option<Vec<u8>>>(1)? {
                Some(bytes) => Some(hash32(bytes, &id)?),
                None => None,
            };
            let state: String = row.get(3)?;
            let state = DeviceState::parse(&state)
                .ok_or_else(|| RegistryError::Corrupt(format!("device {id}: state {state:?}")))?;
            tally_device(&mut counts, state, 1);
            let entry = DeviceEntry {
                token_hash,
                group: row.get(2)?,
                state,
            };
            devices.insert(id, entry);
        }
        let mut claims = HashMap::new();
        let mut stmt = conn.prepare("SELECT name, secret_hash, revoked FROM claims")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let name: String = row.get(0)?;
            let entry = ClaimEntry {
                secret_hash: hash32(row.get(1)?, &name)?,
                revoked: row.get(2)?,
            };
            tally_claim(&mut counts, &entry, 1);
            claims.insert(name, entry);
        }
        let mut certs = HashMap::new();
        let mut stmt = conn.prepare("SELECT serial, device_id, revoke_at FROM certificates")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let serial: String = row.get(0)?;
            let revoke_at = match row.get::<_, Option<i64>>(2)? {
                Some(at) => Some(
                    u64::try_from(at)
                        .map_err(|_| RegistryError::Corrupt(format!("certificate {serial}: revoke_at {at}")))?,
                ),
                None => None,
            };
            let entry = CertEntry {
                device_id: row.get::<_, String>(1)?.into_boxed_str(),
                revoke_at,
            };
            certs.insert(serial, entry);
        }
        Ok(AuthCache {
            devices: RwLock::new(devices),
            claims: RwLock::new(claims),
            certs: RwLock::new(certs),
            counts: RwLock::new(counts),
        })
    }

    /// Applies one committed batch's changes, in job order.
    pub fn apply(&self, updates: Vec<CacheUpdate>) {
        if updates.is_empty() {
            return;
        }
        // A panic while holding these locks can only come from HashMap insertion (allocation
        // failure aborts instead), so a poisoned map is still consistent: keep serving it.
        let mut devices = self.devices.write().unwrap_or_else(PoisonError::into_inner);
        let mut claims = self.claims.write().unwrap_or_else(PoisonError::into_inner);
        let mut certs = self.certs.write().unwrap_or_else(PoisonError::into_inner);
        let mut counts = self.counts.write().unwrap_or_else(PoisonError::into_inner);
        for update in updates {
            match update {
                CacheUpdate::Device(id, entry) => {
                    tally_device(&mut counts, entry.state, 1);
                    if let Some(replaced) = devices.insert(id, entry) {
                        tally_device(&mut counts, replaced.state, -1);
                    }
                }
                CacheUpdate::Claim(name, entry) => {
                    tally_claim(&mut counts, &entry, 1);
                    if let Some(replaced) = claims.insert(name, entry) {
                        tally_claim(&mut counts, &replaced, -1);
                    }
                }
                CacheUpdate::Cert(serial, entry) => {
                    certs.insert(serial, entry);
                }
            }
        }
    }

    /// Devices per state and claims, as of the last committed batch.
    pub fn counts(&self) -> RegistryCounts {
        *self.counts.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks a device's token against the cached hash.
    pub fn authenticate_device(&self, device_id: &str, token: &[u8]) -> DeviceAuth {
        // Hash outside the lock: it is the expensive part and needs no shared state.
        let presented = sha256(token);
        let devices = self.devices.read().unwrap_or_else(PoisonError::into_inner);
        match devices.get(device_id) {
            None => DeviceAuth::Unknown,
            Some(DeviceEntry { token_hash: None, .. }) => DeviceAuth::Decommissioned,
            Some(DeviceEntry {
                token_hash: Some(stored),
                group,
                ..
            }) => {
                if ct_eq(stored, &presented) {
                    DeviceAuth::Ok { group: group.clone() }
                } else {
                    DeviceAuth::WrongToken
                }
            }
        }
    }

    /// Checks a client certificate (already verified by the TLS handshake as issued by the
    /// backend's CA) by its serial number: it must be one the registry recorded for
    /// `device_id`, not revoked by `now` (unix ms), and its device active.
    pub fn authenticate_certificate(&self, device_id: &str, serial: &str, now: u64) -> CertAuth {
        let revoked = {
            let certs = self.certs.read().unwrap_or_else(PoisonError::into_inner);
            match certs.get(serial) {
                Some(entry) if &*entry.device_id == device_id => entry.revoke_at.is_some_and(|at| at <= now),
                _ => return CertAuth::Unknown,
            }
        };
        let devices = self.devices.read().unwrap_or_else(PoisonError::into_inner);
        match devices.get(device_id) {
            Some(DeviceEntry {
                token_hash: Some(_),
                group,
                ..
            }) if !revoked => CertAuth::Ok { group: group.clone() },
            Some(_) => CertAuth::Revoked,
            None => CertAuth::Unknown,
        }
    }

    /// Whether `device_id` is an active device (it has a token).
    pub fn is_active(&self, device_id: &str) -> bool {
        let devices = self.devices.read().unwrap_or_else(PoisonError::into_inner);
        devices.get(device_id).is_some_and(|entry| entry.token_hash.is_some())
    }

    /// Checks a claim secret against the cached hash. A revoked claim answers `Revoked` only
    /// to a caller that knows the secret, so the answer leaks nothing to guessers.
    pub fn authenticate_claim(&self, name: &str, secret: &[u8]) -> ClaimAuth {
        let presented = sha256(secret);
        let claims = self.claims.read().unwrap_or_else(PoisonError::into_inner);
        match claims.get(name) {
            None => ClaimAuth::Unknown,
            Some(entry) if !ct_eq(&entry.secret_hash, &presented) => ClaimAuth::WrongSecret,
            Some(entry) if entry.revoked => ClaimAuth::Revoked,
            Some(_) => ClaimAuth::Ok,
        }
    }
}

/// Adds `delta` (1 or -1) to the count of devices in `state`.
fn tally_device(counts: &mut RegistryCounts, state: DeviceState, delta: i8) {
    let count = match state {
        DeviceState::Active => &mut counts.active,
        DeviceState::Decommissioned => &mut counts.decommissioned,
        DeviceState::Released => &mut counts.released,
    };
    *count = count.saturating_add_signed(i64::from(delta));
}

/// Adds `delta` (1 or -1) to the claim counts for `claim`.
fn tally_claim(counts: &mut RegistryCounts, claim: &ClaimEntry, delta: i8) {
    counts.claims = counts.claims.saturating_add_signed(i64::from(delta));
    if claim.revoked {
        counts.revoked_claims = counts.revoked_claims.saturating_add_signed(i64::from(delta));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_drive_verdicts() {
        let cache = AuthCache::default();
        let entry = DeviceEntry {
            token_hash: Some(sha256(b"tok")),
            group: "g".into(),
            state: DeviceState::Active,
        };
        cache.apply(vec![
            CacheUpdate::Device("d-1".into(), entry),
            CacheUpdate::Claim(
                "c".into(),
                ClaimEntry {
                    secret_hash: sha256(b"s"),
                    revoked: false,
                },
            ),
        ]);
        assert_eq!(
            cache.authenticate_device("d-1", b"tok"),
            DeviceAuth::Ok { group: "g".into() }
        );
        assert_eq!(cache.authenticate_device("d-1", b"tok2"), DeviceAuth::WrongToken);
        assert_eq!(cache.authenticate_device("d-2", b"tok"), DeviceAuth::Unknown);
        assert_eq!(cache.authenticate_claim("c", b"s"), ClaimAuth::Ok);
        assert_eq!(cache.authenticate_claim("c", b"x"), ClaimAuth::WrongSecret);
        assert_eq!(cache.authenticate_claim("x", b"s"), ClaimAuth::Unknown);
        cache.apply(vec![
            CacheUpdate::Device(
                "d-1".into(),
                DeviceEntry {
                    token_hash: None,
                    group: "g".into(),
                    state: DeviceState::Decommissioned,
                },
            ),
            CacheUpdate::Claim(
                "c".into(),
                ClaimEntry {
                    secret_hash: sha256(b"s"),
                    revoked: true,
                },
            ),
        ]);
        assert_eq!(cache.authenticate_device("d-1", b"tok"), DeviceAuth::Decommissioned);
        assert_eq!(cache.authenticate_claim("c", b"s"), ClaimAuth::Revoked);
        assert_eq!(cache.authenticate_claim("c", b"x"), ClaimAuth::WrongSecret);
    }

    #[test]
    fn counts_follow_replacements() {
        let cache = AuthCache::default();
        let device = |state, token_hash| DeviceEntry {
            token_hash,
            group: "g".into(),
            state,
        };
        let claim = |revoked| ClaimEntry {
            secret_hash: sha256(b"s"),
            revoked,
        };
        cache.apply(vec![
            CacheUpdate::Device("d-1".into(), device(DeviceState::Active, Some(sha256(b"t")))),
            CacheUpdate::Device("d-2".into(), device(DeviceState::Active, Some(sha256(b"t")))),
            CacheUpdate::Claim("a".into(), claim(false)),
            CacheUpdate::Claim("b".into(), claim(false)),
        ]);
        cache.apply(vec![
            CacheUpdate::Device("d-1".into(), device(DeviceState::Decommissioned, None)),
            CacheUpdate::Device("d-2".into(), device(DeviceState::Decommissioned, None)),
            CacheUpdate::Device("d-2".into(), device(DeviceState::Released, None)),
            CacheUpdate::Device("d-3".into(), device(DeviceState::Active, Some(sha256(b"t")))),
            CacheUpdate::Claim("b".into(), claim(true)),
        ]);
        let expected = RegistryCounts {
            active: 1,
            decommissioned: 1,
            released: 1,
            claims: 2,
            revoked_claims: 1,
        };
        assert_eq!(cache.counts(), expected);
    }
}
