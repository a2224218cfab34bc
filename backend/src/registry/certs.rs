//! Device certificates: every certificate the backend's CA issued (by serial number, with the
//! device it names and when it stops being accepted), and the rotations operators asked for.
//!
//! A certificate is accepted at CONNECT until its `revoke_at` time: none while it is the
//! device's, now when its device is decommissioned or when it is replaced at provisioning (the
//! device never got it, or lost it), the rotation's grace period ahead when the device rotated
//! to a new one. A renewal (a device replacing a short-lived certificate on its own) leaves the
//! old one to expire. Revocation is checked by the gateway from memory (the auth cache).

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde_json::json;

use super::cache::{CacheUpdate, CertEntry};
use super::job::WriteCtx;
use super::ops::{audit, is_active, sql_int};
use super::records::{Actor, Refusal, RegistryError};

/// Schema step adding certificates and pending rotations (version 4).
pub const V4: &str = "
CREATE TABLE certificates(
    serial TEXT PRIMARY KEY,
    device_id TEXT NOT NULL REFERENCES devices(id),
    reason TEXT NOT NULL CHECK (reason IN ('provision', 'rotate', 'renew')),
    issued_at INTEGER NOT NULL,
    not_after INTEGER NOT NULL,
    revoke_at INTEGER
);
CREATE INDEX certificates_device ON certificates(device_id);
CREATE TABLE rotations(
    device_id TEXT PRIMARY KEY REFERENCES devices(id),
    grace_ms INTEGER NOT NULL,
    requested_at INTEGER NOT NULL
);
";

/// Why a certificate was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueReason {
    /// At provisioning by claim.
    Provision,
    /// After the operator asked the device to rotate.
    Rotate,
    /// The device replaced a certificate on its own (before it expired).
    Renew,
}

impl IssueReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Provision => "provision",
            Self::Rotate => "rotate",
            Self::Renew => "renew",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "provision" => Some(Self::Provision),
            "rotate" => Some(Self::Rotate),
            "renew" => Some(Self::Renew),
            _ => None,
        }
    }
}

/// A certificate just issued, to record.
#[derive(Debug, Clone)]
pub struct NewCertificate {
    /// Its serial number, lowercase hex.
    pub serial: String,
    /// When it expires, unix ms.
    pub not_after: u64,
    /// Issued at provisioning (else the device asked over its own connection: a rotation when
    /// the operator asked for one, a renewal otherwise).
    pub at_provisioning: bool,
}

/// What recording a certificate did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// Why it was issued.
    pub reason: IssueReason,
    /// When the device's earlier certificates stop being accepted, if they do.
    pub previous_revoke_at: Option<u64>,
    /// How many earlier certificates that revokes.
    pub revoked: u64,
}

/// One certificate as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateRecord {
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Why it was issued.
    pub reason: IssueReason,
    /// When, unix ms.
    pub issued_at: u64,
    /// When it expires, unix ms.
    pub not_after: u64,
    /// When it stops (or stopped) being accepted, unix ms.
    pub revoke_at: Option<u64>,
    /// Whether it is accepted now, by the registry's clock (the one CONNECT is judged by).
    pub state: CertState,
}

/// Whether a certificate is accepted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertState {
    /// Accepted.
    Active,
    /// Its `revoke_at` has passed.
    Revoked,
}

/// Records a certificate issued to an active device, and revokes its earlier ones as
/// [`IssueReason`] says: at once when issued at provisioning, after the grace period of a
/// pending rotation, not at all on a renewal. Audit `certificate.issued` (and
/// `certificate.revoked` when it revokes any).
pub fn record(
    ctx: &mut WriteCtx<'_>,
    device_id: &str,
    cert: &NewCertificate,
) -> Result<Result<Recorded, Refusal>, RegistryError> {
    if !is_active(ctx, device_id)? {
        return Ok(Err(Refusal::NotFound));
    }
    let rotation: Option<i64> = ctx
        .conn
        .prepare_cached("DELETE FROM rotations WHERE device_id = ?1 RETURNING grace_ms")?
        .query_row([device_id], |r| r.get(0))
        .optional()?;
    let (reason, previous_revoke_at) = match (cert.at_provisioning, rotation) {
        (true, _) => (IssueReason::Provision, Some(ctx.now)),
        (false, Some(grace)) => (
            IssueReason::Rotate,
            Some(ctx.now.saturating_add(u64::try_from(grace).unwrap_or(0))),
        ),
        (false, None) => (IssueReason::Renew, None),
    };
    ctx.conn
        .prepare_cached(
            "INSERT INTO certificates(serial, device_id, reason, issued_at, not_after) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            cert.serial,
            device_id,
            reason.as_str(),
            sql_int(ctx.now, "clock")?,
            sql_int(cert.not_after, "not_after")?,
        ])?;
    ctx.after_commit(CacheUpdate::Cert(
        cert.serial.clone(),
        CertEntry {
            device_id: device_id.into(),
            revoke_at: None,
        },
    ));
    audit(
        ctx,
        Actor::Device,
        "certificate.issued",
        device_id,
        &json!({ "serial": cert.serial, "reason": reason.as_str(), "not_after": cert.not_after }),
    )?;
    let revoked = match previous_revoke_at {
        Some(at) => revoke_others(ctx, device_id, Some(&cert.serial), at)?,
        None => 0,
    };
    Ok(Ok(Recorded {
        reason,
        previous_revoke_at,
        revoked,
    }))
}

/// Revokes the device's certificates (all, or all but `keep`) from `at` on, unless they are
/// already revoked sooner; audit `certificate.revoked` when any. Returns how many.
pub fn revoke_others(
    ctx: &mut WriteCtx<'_>,
    device_id: &str,
    keep: Option<&str>,
    at: u64,
) -> Result<u64, RegistryError> {
    let at_sql = sql_int(at, "revoke_at")?;
    let serials: Vec<String> = ctx
        .conn
        .prepare_cached(
            "UPDATE certificates SET revoke_at = ?3
             WHERE device_id = ?1 AND serial != ?2 AND (revoke_at IS NULL OR revoke_at > ?3)
             RETURNING serial",
        )?
        .query_map(params![device_id, keep.unwrap_or(""), at_sql], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for serial in &serials {
        ctx.after_commit(CacheUpdate::Cert(
            serial.clone(),
            CertEntry {
                device_id: device_id.into(),
                revoke_at: Some(at),
            },
        ));
    }
    if !serials.is_empty() {
        audit(
            ctx,
            Actor::System,
            "certificate.revoked",
            device_id,
            &json!({ "serials": serials, "at": at }),
        )?;
    }
    Ok(serials.len() as u64)
}

/// Notes that the operator asked an active device to rotate: its next certificate request
/// replaces its certificates, which stop being accepted `grace_ms` after the new one is
/// issued. Audit `certificate.rotation_requested`.
pub fn request_rotation(
    ctx: &mut WriteCtx<'_>,
    device_id: &str,
    grace_ms: u64,
) -> Result<Result<(), Refusal>, RegistryError> {
    if !is_active(ctx, device_id)? {
        return Ok(Err(Refusal::NotFound));
    }
    ctx.conn
        .prepare_cached("INSERT OR REPLACE INTO rotations(device_id, grace_ms, requested_at) VALUES (?1, ?2, ?3)")?
        .execute(params![
            device_id,
            sql_int(grace_ms, "grace")?,
            sql_int(ctx.now, "clock")?
        ])?;
    audit(
        ctx,
        Actor::Operator,
        "certificate.rotation_requested",
        device_id,
        &json!({ "grace_ms": grace_ms }),
    )?;
    Ok(Ok(()))
}

/// A device's certificates, oldest first, each with its state at `now` (unix ms).
pub fn list(conn: &rusqlite::Connection, device_id: &str, now: u64) -> Result<Vec<CertificateRecord>, RegistryError> {
    let mut stmt = conn.prepare_cached(
        "SELECT serial, reason, issued_at, not_after, revoke_at FROM certificates
         WHERE device_id = ?1 ORDER BY issued_at, serial",
    )?;
    let rows = stmt.query_map([device_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, Option<i64>>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (serial, reason, issued_at, not_after, revoke_at) = row?;
        let corrupt = |what: &str| RegistryError::Corrupt(format!("certificate {serial}: {what}"));
        let time = |t: i64, what: &str| u64::try_from(t).map_err(|_| corrupt(what));
        let revoke_at = revoke_at.map(|t| time(t, "revoke_at")).transpose()?;
        out.push(CertificateRecord {
            reason: IssueReason::parse(&reason).ok_or_else(|| corrupt("reason"))?,
            issued_at: time(issued_at, "issued_at")?,
            not_after: time(not_after, "not_after")?,
            state: if revoke_at.is_some_and(|at| at <= now) {
                CertState::Revoked
            } else {
                CertState::Active
            },
            revoke_at,
            serial,
        });
    }
    Ok(out)
}
