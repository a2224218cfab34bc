//! The durable write operations. Each runs on the writer thread inside its own savepoint of
//! a batch transaction; syntax checks happen before a job is queued, so these functions
//! only apply the rules that need the database. Refusals are returned as values and leave
//! nothing written; errors roll the job's savepoint back.

use rusqlite::{OptionalExtension, params};
use serde_json::{Map, Value, json};

use super::cache::{CacheUpdate, ClaimEntry, DeviceEntry};
use super::identity::{ct_eq, sha256};
use super::job::WriteCtx;
use super::records::{
    Actor, ConfigScope, DeviceState, ProvisionMeta, ProvisionOutcome, Refusal, RegistryError, RejectReason,
};

/// Converts a u64 for SQLite's signed integers.
pub fn sql_int(value: u64, what: &'static str) -> Result<i64, RegistryError> {
    i64::try_from(value).map_err(|_| RegistryError::OutOfRange { what })
}

/// Whether `device_id` is an active device, as the write transaction sees it.
pub(super) fn is_active(ctx: &WriteCtx<'_>, device_id: &str) -> Result<bool, RegistryError> {
    let found: Option<String> = ctx
        .conn
        .prepare_cached("SELECT id FROM devices WHERE id = ?1 AND state = 'active'")?
        .query_row([device_id], |r| r.get(0))
        .optional()?;
    Ok(found.is_some())
}

pub(super) fn audit(
    ctx: &WriteCtx<'_>,
    actor: Actor,
    action: &str,
    subject: &str,
    detail: &Value,
) -> Result<(), RegistryError> {
    ctx.conn
        .prepare_cached("INSERT INTO audit(at, actor, action, subject, detail) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![
            sql_int(ctx.now, "clock")?,
            actor.as_str(),
            action,
            subject,
            detail.to_string()
        ])?;
    Ok(())
}

/// Creates a claim; audit `claim.created`.
pub fn create_claim(
    ctx: &mut WriteCtx<'_>,
    name: &str,
    secret_hash: [u8; 32],
    default_group: &str,
) -> Result<Result<(), Refusal>, RegistryError> {
    let inserted = ctx
        .conn
        .prepare_cached(
            "INSERT INTO claims(name, secret_hash, default_group, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO NOTHING",
        )?
        .execute(params![
            name,
            &secret_hash[..],
            default_group,
            sql_int(ctx.now, "clock")?
        ])?;
    if inserted == 0 {
        return Ok(Err(Refusal::AlreadyExists));
    }
    audit(
        ctx,
        Actor::Operator,
        "claim.created",
        name,
        &json!({ "default_group": default_group }),
    )?;
    ctx.after_commit(CacheUpdate::Claim(
        name.to_owned(),
        ClaimEntry {
            secret_hash,
            revoked: false,
        },
    ));
    Ok(Ok(()))
}

/// Revokes a claim; devices already provisioned through it stay active. Audit `claim.revoked`.
pub fn revoke_claim(ctx: &mut WriteCtx<'_>, name: &str) -> Result<Result<(), Refusal>, RegistryError> {
    let row: Option<(Vec<u8>, bool)> = ctx
        .conn
        .prepare_cached("SELECT secret_hash, revoked FROM claims WHERE name = ?1")?
        .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((hash, revoked)) = row else {
        return Ok(Err(Refusal::NotFound));
    };
    if revoked {
        return Ok(Err(Refusal::AlreadyRevoked));
    }
    let secret_hash = <[u8; 32]>::try_from(hash).map_err(|_| RegistryError::Corrupt(format!("claim {name}: hash")))?;
    ctx.conn
        .prepare_cached("UPDATE claims SET revoked = 1 WHERE name = ?1")?
        .execute([name])?;
    audit(ctx, Actor::Operator, "claim.revoked", name, &json!({}))?;
    ctx.after_commit(CacheUpdate::Claim(
        name.to_owned(),
        ClaimEntry {
            secret_hash,
            revoked: true,
        },
    ));
    Ok(Ok(()))
}

/// The serial's live (non-released) row, if any.
struct LiveDevice {
    id: String,
    claim: String,
    group: String,
    generation: u64,
    state: DeviceState,
    token_hash: Option<Vec<u8>>,
}

/// Columns of a live row as stored: id, claim, group, generation, state, token hash.
type LiveRow = (String, String, String, i64, String, Option<Vec<u8>>);

fn live_device(ctx: &WriteCtx<'_>, serial: &str) -> Result<Option<LiveDevice>, RegistryError> {
    let raw: Option<LiveRow> = ctx
        .conn
        .prepare_cached(
            "SELECT id, claim, group_name, generation, state, token_hash FROM devices
             WHERE serial = ?1 AND state != 'released'",
        )?
        .query_row([serial], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })
        .optional()?;
    let Some((id, claim, group, generation, state, token_hash)) = raw else {
        return Ok(None);
    };
    let corrupt = |what: &str| RegistryError::Corrupt(format!("device {id}: {what}"));
    let state = DeviceState::parse(&state).ok_or_else(|| corrupt("state"))?;
    let generation = u64::try_from(generation).map_err(|_| corrupt("generation"))?;
    Ok(Some(LiveDevice {
        id,
        claim,
        group,
        generation,
        state,
        token_hash,
    }))
}

/// Provisioning rules. An idempotent retry (same claim, active device) writes nothing, not
/// even an audit entry: it is not a lifecycle change, and retry storms after a lost reply
/// must not flood the audit log.
pub fn provision(
    ctx: &mut WriteCtx<'_>,
    claim: &str,
    serial: &str,
    meta: &ProvisionMeta,
) -> Result<ProvisionOutcome, RegistryError> {
    let rejected = |reason| Ok(ProvisionOutcome::Rejected { reason });
    let claim_row: Option<(String, bool)> = ctx
        .conn
        .prepare_cached("SELECT default_group, revoked FROM claims WHERE name = ?1")?
        .query_row([claim], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let default_group = match claim_row {
        None => return rejected(RejectReason::InvalidClaim),
        Some((_, true)) => return rejected(RejectReason::ClaimRevoked),
        Some((group, false)) => group,
    };
    match live_device(ctx, serial)? {
        Some(dev) if dev.state == DeviceState::Decommissioned => rejected(RejectReason::Decommissioned),
        Some(dev) if dev.claim != claim => rejected(RejectReason::ProvisionedByOtherClaim),
        Some(dev) => {
            let token = ctx.key.device_token(&dev.id, dev.generation);
            // A mismatch means the key file was swapped under the database: refuse to hand
            // out a token that would never authenticate.
            if !dev.token_hash.is_some_and(|h| ct_eq(&h, &sha256(token.as_bytes()))) {
                return Err(RegistryError::Corrupt(format!(
                    "device {}: token does not match the key",
                    dev.id
                )));
            }
            Ok(ProvisionOutcome::Accepted {
                device_id: dev.id,
                token,
                group: dev.group,
                existed: true,
            })
        }
        None => {
            // One past the serial's newest released identity. A serial has few rows, so they
            // are read and compared here: SQLite re-prepared `SELECT MAX(generation) ...` (and
            // `ORDER BY generation DESC LIMIT 1`) on every step inside a batch, a fifth of the
            // writer's time when provisioning.
            let mut newest = 0_i64;
            let mut generations = ctx
                .conn
                .prepare_cached("SELECT generation FROM devices WHERE serial = ?1")?;
            for found in generations.query_map([serial], |r| r.get::<_, i64>(0))? {
                newest = newest.max(found?);
            }
            let generation = newest + 1;
            let generation = u64::try_from(generation)
                .map_err(|_| RegistryError::Corrupt(format!("serial {serial}: generation {generation}")))?;
            let device_id = ctx.key.device_id(serial, generation);
            let token = ctx.key.device_token(&device_id, generation);
            let token_hash = sha256(token.as_bytes());
            ctx.conn
                .prepare_cached(
                    "INSERT INTO devices(id, serial, claim, group_name, model, firmware, generation, state,
                                         token_hash, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'active', ?8, ?9)",
                )?
                .execute(params![
                    device_id,
                    serial,
                    claim,
                    default_group,
                    meta.model,
                    meta.firmware,
                    sql_int(generation, "generation")?,
                    &token_hash[..],
                    sql_int(ctx.now, "clock")?,
                ])?;
            let detail = json!({
                "serial": serial, "claim": claim, "group": default_group, "generation": generation,
                "model": meta.model, "firmware": meta.firmware,
            });
            audit(ctx, Actor::Device, "device.provisioned", &device_id, &detail)?;
            let entry = DeviceEntry {
                token_hash: Some(token_hash),
                group: default_group.clone(),
                state: DeviceState::Active,
            };
            ctx.after_commit(CacheUpdate::Device(device_id.clone(), entry));
            Ok(ProvisionOutcome::Accepted {
                device_id,
                token,
                group: default_group,
                existed: false,
            })
        }
    }
}

/// Decommissions an active device: voids its token, revokes its certificates, drops its
/// device-scoped desired and reported config. Audit `device.decommissioned`. Returns how many
/// certificates it revoked.
pub fn decommission(ctx: &mut WriteCtx<'_>, device_id: &str) -> Result<Result<u64, Refusal>, RegistryError> {
    let row: Option<(String, String, String)> = ctx
        .conn
        .prepare_cached("SELECT serial, state, group_name FROM devices WHERE id = ?1")?
        .query_row([device_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((serial, state, group)) = row else {
        return Ok(Err(Refusal::NotFound));
    };
    if state != DeviceState::Active.as_str() {
        return Ok(Err(Refusal::AlreadyDecommissioned));
    }
    ctx.conn
        .prepare_cached(
            "UPDATE devices SET state = 'decommissioned', token_hash = NULL, decommissioned_at = ?2 WHERE id = ?1",
        )?
        .execute(params![device_id, sql_int(ctx.now, "clock")?])?;
    ctx.conn
        .prepare_cached("DELETE FROM desired_config WHERE scope_kind = 'device' AND scope = ?1")?
        .execute([device_id])?;
    ctx.conn
        .prepare_cached("DELETE FROM reported_config WHERE device_id = ?1")?
        .execute([device_id])?;
    ctx.conn
        .prepare_cached("DELETE FROM rotations WHERE device_id = ?1")?
        .execute([device_id])?;
    let revoked = super::certs::revoke_others(ctx, device_id, None, ctx.now)?;
    audit(
        ctx,
        Actor::Operator,
        "device.decommissioned",
        device_id,
        &json!({ "serial": serial, "certificates_revoked": revoked }),
    )?;
    ctx.after_commit(CacheUpdate::Device(
        device_id.to_owned(),
        DeviceEntry {
            token_hash: None,
            group,
            state: DeviceState::Decommissioned,
        },
    ));
    Ok(Ok(revoked))
}

/// Moves the serial's decommissioned row to released so the serial can be provisioned again
/// (under a new id). Audit `serial.released`.
pub fn release_serial(ctx: &mut WriteCtx<'_>, serial: &str) -> Result<Result<(), Refusal>, RegistryError> {
    let Some(dev) = live_device(ctx, serial)? else {
        return Ok(Err(Refusal::NotFound));
    };
    if dev.state != DeviceState::Decommissioned {
        return Ok(Err(Refusal::NotDecommissioned));
    }
    ctx.conn
        .prepare_cached("UPDATE devices SET state = 'released' WHERE id = ?1")?
        .execute([&dev.id])?;
    audit(
        ctx,
        Actor::Operator,
        "serial.released",
        serial,
        &json!({ "device_id": dev.id }),
    )?;
    // The id keeps answering "decommissioned"; only the counts see the release.
    let entry = DeviceEntry {
        token_hash: None,
        group: dev.group,
        state: DeviceState::Released,
    };
    ctx.after_commit(CacheUpdate::Device(dev.id, entry));
    Ok(Ok(()))
}

/// Stores a desired-config document under the next global config version. Audit
/// `config.desired_set` with the document.
pub fn set_desired(
    ctx: &mut WriteCtx<'_>,
    scope: &ConfigScope,
    doc: Map<String, Value>,
    expiry_ms: Option<u64>,
) -> Result<Result<u64, Refusal>, RegistryError> {
    let (kind, name) = match scope {
        ConfigScope::Group(name) => ("group", name),
        ConfigScope::Device(id) => {
            let active: bool = ctx
                .conn
                .prepare_cached("SELECT EXISTS(SELECT 1 FROM devices WHERE id = ?1 AND state = 'active')")?
                .query_row([id], |r| r.get(0))?;
            if !active {
                return Ok(Err(Refusal::NotFound));
            }
            ("device", id)
        }
    };
    let version: i64 = ctx
        .conn
        .prepare_cached("UPDATE meta SET value = value + 1 WHERE key = 'config_seq' RETURNING value")?
        .query_row([], |r| r.get(0))?;
    let doc = Value::Object(doc);
    ctx.conn
        .prepare_cached(
            "INSERT INTO desired_config(scope_kind, scope, version, doc, updated_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(scope_kind, scope)
             DO UPDATE SET version = excluded.version, doc = excluded.doc, updated_at = excluded.updated_at,
                 expires_at = excluded.expires_at",
        )?
        .execute(params![
            kind,
            name,
            version,
            doc.to_string(),
            sql_int(ctx.now, "clock")?,
            expiry_ms
                .map(|ms| sql_int(ctx.now.saturating_add(ms), "expiry"))
                .transpose()?
        ])?;
    let subject = format!("{kind}:{name}");
    let mut detail = json!({ "version": version, "doc": doc });
    if let Some(ms) = expiry_ms {
        detail["expiry_ms"] = json!(ms);
    }
    audit(ctx, Actor::Operator, "config.desired_set", &subject, &detail)?;
    let version = u64::try_from(version).map_err(|_| RegistryError::Corrupt(format!("config_seq {version}")))?;
    Ok(Ok(version))
}

/// Records the config version a device runs. Reports for unknown or retired devices are
/// dropped: the gateway only forwards reports of authenticated devices, so such a report
/// raced a decommissioning and carries no information.
pub fn report_config(
    ctx: &mut WriteCtx<'_>,
    device_id: &str,
    version: i64,
    settings: Option<&str>,
) -> Result<(), RegistryError> {
    ctx.conn
        .prepare_cached(
            "INSERT INTO reported_config(device_id, version, reported_at, settings)
             SELECT id, ?2, ?3, ?4 FROM devices WHERE id = ?1 AND state = 'active'
             ON CONFLICT(device_id) DO UPDATE SET version = excluded.version, reported_at = excluded.reported_at,
                 settings = COALESCE(excluded.settings, reported_config.settings)",
        )?
        .execute(params![device_id, version, sql_int(ctx.now, "clock")?, settings])?;
    Ok(())
}

/// Appends a device lifecycle event to the audit log.
pub fn record_lifecycle(
    ctx: &mut WriteCtx<'_>,
    device_id: &str,
    action: &str,
    detail: &Value,
) -> Result<(), RegistryError> {
    audit(ctx, Actor::Device, action, device_id, detail)
}
