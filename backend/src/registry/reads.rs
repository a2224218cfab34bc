//! Read queries on the read-only connection. Each query is a single SQL statement, so it
//! sees one consistent WAL snapshot without an explicit transaction.

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Map, Value};

use super::records::{
    Actor, AuditEntry, DeviceRecord, DeviceState, Drift, EffectiveConfig, RegistryError, ReportedConfig,
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
///
/// Each document expires on its own: one past its expiry is left out while the other holds,
/// so a device's own config set after its group's expired is still its desired config, and
/// the result expires with the earliest of the documents left. When every document set has
/// expired, the result is all of them with their expiry, delivered nowhere.
pub fn effective_config(conn: &Connection, device_id: &str) -> Result<Option<EffectiveConfig>, RegistryError> {
    type Raw = (
        Option<i64>,
        Option<String>,
        Option<i64>,
        Option<String>,
        [Option<i64>; 2],
    );
    let raw: Option<Raw> = conn
        .prepare_cached(
            "SELECT g.version, g.doc, dc.version, dc.doc, g.expires_at, dc.expires_at FROM devices d
             LEFT JOIN desired_config g ON g.scope_kind = 'group' AND g.scope = d.group_name
             LEFT JOIN desired_config dc ON dc.scope_kind = 'device' AND dc.scope = d.id
             WHERE d.id = ?1",
        )?
        .query_row([device_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, [r.get(4)?, r.get(5)?]))
        })
        .optional()?;
    let Some((group_version, group_doc, device_version, device_doc, [group_expiry, device_expiry])) = raw else {
        return Ok(None);
    };
    // The documents set, group first: (version, doc, expiry in unix ms).
    let set = [
        (group_version, group_doc, group_expiry),
        (device_version, device_doc, device_expiry),
    ]
    .map(|(version, doc, expiry)| Some((version?, doc, expiry.map(|at| u64::try_from(at).unwrap_or(0)))));
    let now = super::system_clock_ms();
    let live = |expiry: Option<u64>| expiry.is_none_or(|at| at > now);
    let any_live = set.iter().flatten().any(|&(_, _, expiry)| live(expiry));
    let (mut version, mut doc, mut expires_at) = (0, Map::new(), None);
    // A document past its expiry is left out while another holds.
    for (v, text, expiry) in set
        .into_iter()
        .flatten()
        .filter(|&(_, _, expiry)| !any_live || live(expiry))
    {
        version = version.max(v);
        doc.extend(parse_doc(text)?);
        expires_at = expires_at.into_iter().chain(expiry).min();
    }
    let version = u64::try_from(version).map_err(|_| RegistryError::Corrupt(format!("config version {version}")))?;
    Ok(Some(EffectiveConfig {
        version,
        doc,
        expires_at,
    }))
}

/// What device `device_id` last reported of its config, if it ever did.
pub fn reported_config(conn: &Connection, device_id: &str) -> Result<Option<ReportedConfig>, RegistryError> {
    let reported = conn
        .prepare_cached("SELECT version, settings, reported_at FROM reported_config WHERE device_id = ?1")?
        .query_row([device_id], |r| {
            let settings = r
                .get::<_, Option<String>>(1)?
                .map(|text| serde_json::from_str(&text).map_err(|e| bad(1, Type::Text, e.to_string())))
                .transpose()?;
            Ok(ReportedConfig {
                version: get_u64(r, 0)?,
                settings,
                reported_at: get_u64(r, 2)?,
            })
        })
        .optional()?;
    Ok(reported)
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
pub fn audit(
    conn: &Connection,
    after_id: i64,
    limit: usize,
    action: Option<&str>,
) -> Result<Vec<AuditEntry>, RegistryError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, actor, action, subject, detail FROM audit
         WHERE id > ?1 AND (?3 IS NULL OR action = ?3) ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after_id, page(limit), action], |r| {
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

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::super::tests::{Scratch, accepted, obj, with_claim};
    use super::super::{Actor, ConfigScope, Drift, ProvisionMeta, Refusal, RegistryError};

    #[tokio::test]
    async fn desired_config_overlays_and_drift_follows_reports() {
        let dir = Scratch::new("config");
        let reg = with_claim(&dir, "factory").await;
        reg.create_claim("lab", "s", "lab").await.unwrap().unwrap();
        let (a, ..) = accepted(reg.provision("factory", "A", ProvisionMeta::default()).await.unwrap());
        let (b, ..) = accepted(reg.provision("factory", "B", ProvisionMeta::default()).await.unwrap());
        let (c, ..) = accepted(reg.provision("lab", "C", ProvisionMeta::default()).await.unwrap());
        let none = reg.effective_config(&c).unwrap().unwrap();
        assert_eq!((none.version, none.doc.len()), (0, 0));
        assert_eq!(reg.effective_config("d-00000000000000000000").unwrap(), None);
        assert!(reg.config_drift(None).unwrap().is_empty());

        let v1 = reg
            .set_desired(ConfigScope::Group("default".into()), obj(json!({"a": 1, "b": 1})))
            .await
            .unwrap();
        let v2 = reg
            .set_desired(ConfigScope::Device(a.clone()), obj(json!({"b": 2, "c": 2})))
            .await
            .unwrap();
        assert_eq!((v1, v2), (Ok(1), Ok(2)));
        let ea = reg.effective_config(&a).unwrap().unwrap();
        assert_eq!(
            (ea.version, Value::Object(ea.doc)),
            (2, json!({"a": 1, "b": 2, "c": 2}))
        );
        let eb = reg.effective_config(&b).unwrap().unwrap();
        assert_eq!((eb.version, Value::Object(eb.doc)), (1, json!({"a": 1, "b": 1})));
        let v3 = reg
            .set_desired(ConfigScope::Group("default".into()), obj(json!({"a": 3})))
            .await
            .unwrap();
        assert_eq!(v3, Ok(3));
        assert_eq!(reg.effective_config(&a).unwrap().unwrap().version, 3);
        let bad = reg
            .set_desired(ConfigScope::Device("d-00000000000000000000".into()), Map::new())
            .await
            .unwrap();
        assert_eq!(bad, Err(Refusal::NotFound));
        let bad = reg
            .set_desired(ConfigScope::Group("Bad".into()), Map::new())
            .await
            .unwrap();
        assert_eq!(bad, Err(Refusal::InvalidName));

        let drift = reg.config_drift(None).unwrap();
        let expected = |id: &str, reported| Drift {
            device_id: id.to_owned(),
            desired_version: 3,
            reported_version: reported,
        };
        let mut want = vec![expected(&a, None), expected(&b, None)];
        want.sort_by(|x, y| x.device_id.cmp(&y.device_id));
        assert_eq!(drift, want);
        reg.report_config(&a, 3, None).await.unwrap();
        reg.report_config(&b, 1, Some(obj(json!({"led": "on"})))).await.unwrap();
        reg.report_config("d-00000000000000000000", 1, None).await.unwrap();
        assert_eq!(reg.config_drift(Some("default")).unwrap(), vec![expected(&b, Some(1))]);
        assert!(reg.config_drift(Some("lab")).unwrap().is_empty());
        assert!(matches!(
            reg.report_config(&a, u64::MAX, None).await,
            Err(RegistryError::OutOfRange { .. })
        ));
        // What a device reported: its settings kept until it reports others.
        let reported = |id: &str| reg.reported_config(id).unwrap().map(|r| (r.version, r.settings));
        assert_eq!(reported(&a), Some((3, None)));
        assert_eq!(reported(&b), Some((1, Some(json!({"led": "on"})))));
        reg.report_config(&b, 1, None).await.unwrap();
        assert_eq!(reported(&b), Some((1, Some(json!({"led": "on"})))), "kept");
        reg.report_config(&b, 1, Some(obj(json!({"led": "off"}))))
            .await
            .unwrap();
        assert_eq!(reported(&b), Some((1, Some(json!({"led": "off"})))));
        assert_eq!(reported("d-00000000000000000000"), None);

        // Decommissioning drops the device document; the group's still applies.
        reg.decommission(&a).await.unwrap().unwrap();
        let ea = reg.effective_config(&a).unwrap().unwrap();
        assert_eq!((ea.version, Value::Object(ea.doc)), (3, json!({"a": 3})));
        assert_eq!(reg.config_drift(None).unwrap(), vec![expected(&b, Some(1))]);
    }

    #[tokio::test]
    async fn audit_records_operator_actions_in_order() {
        let dir = Scratch::new("audit");
        let reg = with_claim(&dir, "factory").await;
        let (id, ..) = accepted(
            reg.provision("factory", "SN-1", ProvisionMeta::default())
                .await
                .unwrap(),
        );
        reg.set_desired(ConfigScope::Group("default".into()), obj(json!({"k": "v"})))
            .await
            .unwrap()
            .unwrap();
        reg.record_lifecycle(&id, "device.factory_reset", json!({"reason": "button"}))
            .await
            .unwrap();
        reg.decommission(&id).await.unwrap().unwrap();
        reg.release_serial("SN-1").await.unwrap().unwrap();
        reg.revoke_claim("factory").await.unwrap().unwrap();
        let log = reg.audit(0, 100).unwrap();
        let got: Vec<(Actor, &str, &str)> = log
            .iter()
            .map(|e| (e.actor, e.action.as_str(), e.subject.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Actor::Operator, "claim.created", "factory"),
                (Actor::Device, "device.provisioned", id.as_str()),
                (Actor::Operator, "config.desired_set", "group:default"),
                (Actor::Device, "device.factory_reset", id.as_str()),
                (Actor::Operator, "device.decommissioned", id.as_str()),
                (Actor::Operator, "serial.released", "SN-1"),
                (Actor::Operator, "claim.revoked", "factory"),
            ]
        );
        assert!(
            log.windows(2).all(|w| w[0].id < w[1].id && w[0].at < w[1].at),
            "ids and injected clock increase"
        );
        assert_eq!(log[2].detail, json!({"version": 1, "doc": {"k": "v"}}));
        let tail = reg.audit(log[4].id, 100).unwrap();
        assert_eq!(tail.len(), 2);
        assert_eq!(reg.audit(0, 3).unwrap().len(), 3);
        let provisioned = reg.audit_of(0, 100, Some("device.provisioned")).unwrap();
        assert_eq!(provisioned.len(), 1, "{provisioned:?}");
        assert!(reg.audit_of(0, 100, Some("no.such")).unwrap().is_empty());
    }

    #[tokio::test]
    async fn device_listing_pages_by_id_and_group() {
        let dir = Scratch::new("pages");
        let reg = with_claim(&dir, "factory").await;
        reg.create_claim("lab", "s", "lab").await.unwrap().unwrap();
        for i in 0..7 {
            let claim = if i % 2 == 0 { "factory" } else { "lab" };
            accepted(
                reg.provision(claim, &format!("SN-{i}"), ProvisionMeta::default())
                    .await
                    .unwrap(),
            );
        }
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = reg.devices(Some("default"), after.as_deref(), 2).unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            seen.extend(page.into_iter().map(|d| d.id));
        }
        assert_eq!(seen.len(), 4);
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(reg.devices(None, None, usize::MAX).unwrap().len(), 7);
    }
}
