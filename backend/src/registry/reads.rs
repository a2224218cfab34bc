//! Read queries on the read-only connection. Each query is a single SQL statement, so it
//! sees one consistent WAL snapshot without an explicit transaction.

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Map, Value};

use super::records::{
    Actor, AuditEntry, DeviceRecord, DeviceState, Drift, EffectiveConfig, RegistryCounts, RegistryError,
};

/// Largest page any listing returns, whatever limit the caller asks for: one call must not
/// hold the reader lock for an unbounded scan.
pub const MAX_PAGE: usize = 10_000;

const DEVICE_COLUMNS: &str =
    "id, serial, claim, group_name, model, firmware, generation, state, created_at, decommissioned_at";

fn bad(idx: usize, ty: Type, msg: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, ty, msg.into())
}

fn get_u64(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v).map_err(|_| bad(idx, Type::Integer, format!("negative value {v}")))
}

fn get_opt_u64(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<u64>> {
    match row.get::<_, Option<i64>>(idx)? {
        None => Ok(None),
        Some(v) => u64::try_from(v)
            .map(Some)
            .map_err(|_| bad(idx, Type::Integer, format!("negative value {v}"))),
    }
}

fn device_from_row(row: &Row<'_>) -> rusqlite::Result<DeviceRecord> {
    let state: String = row.get(7)?;
    Ok(DeviceRecord {
        id: row.get(0)?,
        serial: row.get(1)?,
        claim: row.get(2)?,
        group: row.get(3)?,
        model: row.get(4)?,
        firmware: row.get(5)?,
        generation: get_u64(row, 6)?,
        state: DeviceState::parse(&state).ok_or_else(|| bad(7, Type::Text, format!("device state {state:?}")))?,
        created_at: get_u64(row, 8)?,
        decommissioned_at: get_opt_u64(row, 9)?,
    })
}

fn page(limit: usize) -> i64 {
    // MAX_PAGE fits in i64, so the conversion cannot fail after clamping.
    i64::try_from(limit.min(MAX_PAGE)).unwrap_or(0)
}

/// The device with that id, in any state.
pub fn device(conn: &Connection, id: &str) -> Result<Option<DeviceRecord>, RegistryError> {
    let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row([id], device_from_row).optional()?)
}

/// The serial's newest identity: its live row if any, else its last released row.
pub fn device_by_serial(conn: &Connection, serial: &str) -> Result<Option<DeviceRecord>, RegistryError> {
    let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE serial = ?1 ORDER BY generation DESC LIMIT 1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([serial], device_from_row)
        .optional()?)
}

/// Devices of every state ordered by id, optionally of one group, after `after_id`.
pub fn devices(
    conn: &Connection,
    group: Option<&str>,
    after_id: Option<&str>,
    limit: usize,
) -> Result<Vec<DeviceRecord>, RegistryError> {
    let sql = format!(
        "SELECT {DEVICE_COLUMNS} FROM devices
         WHERE (?1 IS NULL OR group_name = ?1) AND (?2 IS NULL OR id > ?2) ORDER BY id LIMIT ?3"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![group, after_id, page(limit)], device_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn parse_doc(text: Option<String>) -> Result<Map<String, Value>, RegistryError> {
    match text.map(|t| serde_json::from_str::<Value>(&t)) {
        None => Ok(Map::new()),
        Some(Ok(Value::Object(map))) => Ok(map),
        Some(_) => Err(RegistryError::Corrupt("desired_config.doc is not a JSON object".into())),
    }
}

/// Group document overlaid by the device document (top-level keys; the device's win).
pub fn effective_config(conn: &Connection, device_id: &str) -> Result<Option<EffectiveConfig>, RegistryError> {
    type Raw = (Option<i64>, Option<String>, Option<i64>, Option<String>);
    let raw: Option<Raw> = conn
        .prepare_cached(
            "SELECT g.version, g.doc, dc.version, dc.doc FROM devices d
             LEFT JOIN desired_config g ON g.scope_kind = 'group' AND g.scope = d.group_name
             LEFT JOIN desired_config dc ON dc.scope_kind = 'device' AND dc.scope = d.id
             WHERE d.id = ?1",
        )?
        .query_row([device_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    let Some((group_version, group_doc, device_version, device_doc)) = raw else {
        return Ok(None);
    };
    let mut doc = parse_doc(group_doc)?;
    doc.extend(parse_doc(device_doc)?);
    let version = group_version.unwrap_or(0).max(device_version.unwrap_or(0));
    let version = u64::try_from(version).map_err(|_| RegistryError::Corrupt(format!("config version {version}")))?;
    Ok(Some(EffectiveConfig { version, doc }))
}

/// Active devices whose reported version (0 if never reported) differs from their desired
/// version (0 if nothing desired), ordered by id.
pub fn config_drift(conn: &Connection, group: Option<&str>) -> Result<Vec<Drift>, RegistryError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, desired, reported FROM (
             SELECT d.id AS id, MAX(COALESCE(g.version, 0), COALESCE(dc.version, 0)) AS desired,
                    r.version AS reported
             FROM devices d
             LEFT JOIN desired_config g ON g.scope_kind = 'group' AND g.scope = d.group_name
             LEFT JOIN desired_config dc ON dc.scope_kind = 'device' AND dc.scope = d.id
             LEFT JOIN reported_config r ON r.device_id = d.id
             WHERE d.state = 'active' AND (?1 IS NULL OR d.group_name = ?1))
         WHERE COALESCE(reported, 0) != desired ORDER BY id",
    )?;
    let rows = stmt.query_map([group], |r| {
        Ok(Drift {
            device_id: r.get(0)?,
            desired_version: get_u64(r, 1)?,
            reported_version: get_opt_u64(r, 2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Audit entries with id greater than `after_id`, oldest first.
pub fn audit(conn: &Connection, after_id: i64, limit: usize) -> Result<Vec<AuditEntry>, RegistryError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, actor, action, subject, detail FROM audit WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after_id, page(limit)], |r| {
        let actor: String = r.get(2)?;
        let detail: String = r.get(5)?;
        Ok(AuditEntry {
            id: r.get(0)?,
            at: get_u64(r, 1)?,
            actor: Actor::parse(&actor).ok_or_else(|| bad(2, Type::Text, format!("actor {actor:?}")))?,
            action: r.get(3)?,
            subject: r.get(4)?,
            detail: serde_json::from_str(&detail).map_err(|e| bad(5, Type::Text, e.to_string()))?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Devices per state and claims.
pub fn counts(conn: &Connection) -> Result<RegistryCounts, RegistryError> {
    Ok(conn
        .prepare_cached(
            "SELECT (SELECT COUNT(*) FROM devices WHERE state = 'active'),
                (SELECT COUNT(*) FROM devices WHERE state = 'decommissioned'),
                (SELECT COUNT(*) FROM devices WHERE state = 'released'),
                (SELECT COUNT(*) FROM claims),
                (SELECT COUNT(*) FROM claims WHERE revoked = 1)",
        )?
        .query_row([], |r| {
            Ok(RegistryCounts {
                active: get_u64(r, 0)?,
                decommissioned: get_u64(r, 1)?,
                released: get_u64(r, 2)?,
                claims: get_u64(r, 3)?,
                revoked_claims: get_u64(r, 4)?,
            })
        })?)
}
