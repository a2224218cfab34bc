//! OTA campaigns as durable records: the campaign (group, image, waves, soak, halt
//! threshold, state and why it ended), and one job per targeted device with the last state it
//! reported. The campaign engine (`crate::ota::campaign`) decides; this module records.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use serde_json::json;

use super::job::WriteCtx;
use super::ops::{audit, sql_int};
use super::records::{Actor, RegistryError};

/// Schema step adding campaigns and per-device OTA jobs (version 3).
pub const V3: &str = "
CREATE TABLE campaigns(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_name TEXT NOT NULL,
    version TEXT NOT NULL,
    waves TEXT NOT NULL,
    soak_ms INTEGER NOT NULL,
    halt_above REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'halted', 'completed')),
    current_wave INTEGER NOT NULL DEFAULT -1,
    created_at INTEGER NOT NULL,
    ended_at INTEGER,
    end_reason TEXT
);
CREATE TABLE ota_jobs(
    campaign INTEGER NOT NULL REFERENCES campaigns(id),
    device_id TEXT NOT NULL REFERENCES devices(id),
    wave INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('sent', 'downloading', 'verifying', 'installing', 'rebooting',
                                         'succeeded', 'failed', 'rolled_back')),
    updated_at INTEGER NOT NULL,
    PRIMARY KEY(campaign, device_id)
);
CREATE INDEX ota_jobs_wave ON ota_jobs(campaign, wave, state);
";

/// The states a device reports for its OTA job, in the order they happen.
pub const OTA_STATES: [&str; 7] = [
    "downloading",
    "verifying",
    "installing",
    "rebooting",
    "succeeded",
    "failed",
    "rolled_back",
];

/// Final states: a job in one of them takes no more reports.
const FINAL_STATES: [&str; 3] = ["succeeded", "failed", "rolled_back"];

/// A campaign as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignRecord {
    /// Campaign id.
    pub id: u64,
    /// Target group.
    pub group: String,
    /// Firmware version it installs.
    pub version: String,
    /// Cumulative share of the group reached after each wave.
    pub waves: Vec<f64>,
    /// How long each wave soaks, ms.
    pub soak_ms: u64,
    /// Halt when a wave's failed-or-rolled-back share passes this.
    pub halt_above: f64,
    /// `running`, `halted` or `completed`.
    pub state: String,
    /// Index of the last wave started; -1 before the first.
    pub current_wave: i64,
    /// When it started, unix ms.
    pub created_at: u64,
    /// When it halted or completed, unix ms.
    pub ended_at: Option<u64>,
    /// Why it ended (for a halt: which wave and what rate).
    pub end_reason: Option<String>,
}

/// Job counts of one wave, by reported state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WaveCounts {
    /// Wave index.
    pub wave: u64,
    /// Devices the wave targeted.
    pub targeted: u64,
    /// Jobs sent and not yet reported on.
    pub sent: u64,
    /// Jobs in progress (downloading, verifying, installing, rebooting).
    pub in_progress: u64,
    /// Installed and booted.
    pub succeeded: u64,
    /// Failed (for example a corrupt image), old firmware kept.
    pub failed: u64,
    /// Failed to boot and fell back to the previous slot.
    pub rolled_back: u64,
}

impl WaveCounts {
    /// The share of the wave that failed or rolled back.
    pub fn failure_rate(&self) -> f64 {
        if self.targeted == 0 {
            0.0
        } else {
            (self.failed + self.rolled_back) as f64 / self.targeted as f64
        }
    }
}

/// What became of a device's OTA report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtaReport {
    /// Recorded.
    Recorded,
    /// The job had already ended; the report changes nothing.
    AlreadyEnded,
    /// The device has no job in that campaign.
    Unknown,
}

/// Starts a campaign record; audit `campaign.started`.
pub fn create(
    ctx: &mut WriteCtx<'_>,
    group: &str,
    version: &str,
    waves: &[f64],
    soak_ms: u64,
    halt_above: f64,
) -> Result<CampaignRecord, RegistryError> {
    let waves_json = serde_json::to_string(waves).map_err(|e| RegistryError::Corrupt(e.to_string()))?;
    ctx.conn
        .prepare_cached(
            "INSERT INTO campaigns(group_name, version, waves, soak_ms, halt_above, state, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6)",
        )?
        .execute(params![
            group,
            version,
            waves_json,
            sql_int(soak_ms, "soak")?,
            halt_above,
            sql_int(ctx.now, "clock")?
        ])?;
    let id = u64::try_from(ctx.conn.last_insert_rowid()).unwrap_or(0);
    let detail = json!({ "campaign": id, "version": version, "waves": waves, "halt_above": halt_above });
    audit(ctx, Actor::Operator, "campaign.started", group, &detail)?;
    Ok(CampaignRecord {
        id,
        group: group.to_owned(),
        version: version.to_owned(),
        waves: waves.to_vec(),
        soak_ms,
        halt_above,
        state: "running".to_owned(),
        current_wave: -1,
        created_at: ctx.now,
        ended_at: None,
        end_reason: None,
    })
}

/// Records that wave `wave` targets `devices`: one job each, state `sent`. Refuses (false,
/// nothing written) when the campaign is no longer running: the writer orders this after any
/// halt already committed, so a halted campaign never starts another wave.
pub fn start_wave(ctx: &mut WriteCtx<'_>, campaign: u64, wave: u64, devices: &[String]) -> Result<bool, RegistryError> {
    let (campaign, wave, now) = (
        sql_int(campaign, "campaign")?,
        sql_int(wave, "wave")?,
        sql_int(ctx.now, "clock")?,
    );
    let running: Option<String> = ctx
        .conn
        .prepare_cached("SELECT state FROM campaigns WHERE id = ?1")?
        .query_row(params![campaign], |row| row.get(0))
        .optional()?;
    if running.as_deref() != Some("running") {
        return Ok(false);
    }
    let mut insert = ctx.conn.prepare_cached(
        "INSERT INTO ota_jobs(campaign, device_id, wave, state, updated_at) VALUES (?1, ?2, ?3, 'sent', ?4)
         ON CONFLICT(campaign, device_id) DO NOTHING",
    )?;
    for device in devices {
        insert.execute(params![campaign, device, wave, now])?;
    }
    ctx.conn
        .prepare_cached("UPDATE campaigns SET current_wave = ?2 WHERE id = ?1")?
        .execute(params![campaign, wave])?;
    Ok(true)
}

/// Records a device's report on its job.
pub fn report(ctx: &mut WriteCtx<'_>, device_id: &str, campaign: u64, state: &str) -> Result<OtaReport, RegistryError> {
    let campaign = sql_int(campaign, "campaign")?;
    let current: Option<String> = ctx
        .conn
        .prepare_cached("SELECT state FROM ota_jobs WHERE campaign = ?1 AND device_id = ?2")?
        .query_row(params![campaign, device_id], |row| row.get(0))
        .optional()?;
    match current.as_deref() {
        None => Ok(OtaReport::Unknown),
        Some(done) if FINAL_STATES.contains(&done) => Ok(OtaReport::AlreadyEnded),
        Some(_) => {
            ctx.conn
                .prepare_cached(
                    "UPDATE ota_jobs SET state = ?3, updated_at = ?4 WHERE campaign = ?1 AND device_id = ?2",
                )?
                .execute(params![campaign, device_id, state, sql_int(ctx.now, "clock")?])?;
            Ok(OtaReport::Recorded)
        }
    }
}

/// Ends a running campaign as `halted` or `completed` with a reason; audit
/// `campaign.halted` / `campaign.completed`. False if it was not running.
pub fn end(
    ctx: &mut WriteCtx<'_>,
    campaign: u64,
    state: &str,
    reason: &str,
    actor: Actor,
) -> Result<bool, RegistryError> {
    let changed = ctx
        .conn
        .prepare_cached(
            "UPDATE campaigns SET state = ?2, ended_at = ?3, end_reason = ?4 WHERE id = ?1 AND state = 'running'",
        )?
        .execute(params![
            sql_int(campaign, "campaign")?,
            state,
            sql_int(ctx.now, "clock")?,
            reason
        ])?;
    if changed == 1 {
        let action = format!("campaign.{state}");
        audit(ctx, actor, &action, &campaign.to_string(), &json!({ "reason": reason }))?;
    }
    Ok(changed == 1)
}

const CAMPAIGN_COLUMNS: &str =
    "id, group_name, version, waves, soak_ms, halt_above, state, current_wave, created_at, ended_at, end_reason";

fn from_row(row: &Row<'_>) -> rusqlite::Result<CampaignRecord> {
    let unsigned = |v: i64| u64::try_from(v).unwrap_or(0);
    let waves: String = row.get(3)?;
    let waves = serde_json::from_str(&waves)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, e.to_string().into()))?;
    Ok(CampaignRecord {
        id: unsigned(row.get(0)?),
        group: row.get(1)?,
        version: row.get(2)?,
        waves,
        soak_ms: unsigned(row.get(4)?),
        halt_above: row.get(5)?,
        state: row.get(6)?,
        current_wave: row.get(7)?,
        created_at: unsigned(row.get(8)?),
        ended_at: row.get::<_, Option<i64>>(9)?.map(unsigned),
        end_reason: row.get(10)?,
    })
}

/// The campaign with that id.
pub fn read(conn: &Connection, id: u64) -> Result<Option<CampaignRecord>, RegistryError> {
    let sql = format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![sql_int(id, "campaign")?], from_row)
        .optional()?)
}

/// Campaigns still running (to resume after a restart).
pub fn running(conn: &Connection) -> Result<Vec<CampaignRecord>, RegistryError> {
    let sql = format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE state = 'running' ORDER BY id");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Active device ids of a group, in id order: the campaign's targets.
pub fn targets(conn: &Connection, group: &str) -> Result<Vec<String>, RegistryError> {
    let mut stmt =
        conn.prepare_cached("SELECT id FROM devices WHERE group_name = ?1 AND state = 'active' ORDER BY id")?;
    let rows = stmt.query_map(params![group], |row| row.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Job counts per wave, by state.
pub fn wave_counts(conn: &Connection, campaign: u64) -> Result<Vec<WaveCounts>, RegistryError> {
    let mut stmt = conn.prepare_cached(
        "SELECT wave, state, COUNT(*) FROM ota_jobs WHERE campaign = ?1 GROUP BY wave, state ORDER BY wave",
    )?;
    let rows = stmt.query_map(params![sql_int(campaign, "campaign")?], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?))
    })?;
    let mut waves: Vec<WaveCounts> = Vec::new();
    for row in rows {
        let (wave, state, count) = row?;
        let (wave, count) = (u64::try_from(wave).unwrap_or(0), u64::try_from(count).unwrap_or(0));
        if waves.last().is_none_or(|w| w.wave != wave) {
            waves.push(WaveCounts {
                wave,
                ..WaveCounts::default()
            });
        }
        // The push above guarantees a last element.
        let Some(counts) = waves.last_mut() else { continue };
        counts.targeted += count;
        match state.as_str() {
            "sent" => counts.sent += count,
            "succeeded" => counts.succeeded += count,
            "failed" => counts.failed += count,
            "rolled_back" => counts.rolled_back += count,
            _ => counts.in_progress += count,
        }
    }
    Ok(waves)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{Scratch, accepted};
    use super::super::{ProvisionMeta, Registry, RegistryOptions};

    #[tokio::test]
    async fn waves_record_jobs_reports_and_stop_once_the_campaign_ends() {
        let dir = Scratch::new("campaign");
        let registry = Registry::open(&dir.0, RegistryOptions::default()).unwrap();
        registry
            .create_claim("factory", "s3cret", "sensors")
            .await
            .unwrap()
            .unwrap();
        let mut ids = Vec::new();
        for serial in ["SN-1", "SN-2", "SN-3"] {
            let outcome = registry
                .provision("factory", serial, ProvisionMeta::default())
                .await
                .unwrap();
            ids.push(accepted(outcome).0);
        }
        assert_eq!(registry.campaign_targets("sensors").unwrap().len(), 3);
        let campaign = registry
            .start_campaign("sensors", "2.0.0", vec![0.34, 1.0], 1000, 0.1)
            .await
            .unwrap()
            .unwrap();
        assert!(registry.start_wave(campaign.id, 0, ids[..2].to_vec()).await.unwrap());
        assert_eq!(
            registry.report_ota(&ids[0], campaign.id, "rolled_back").await.unwrap(),
            super::OtaReport::Recorded
        );
        assert_eq!(
            registry.report_ota(&ids[0], campaign.id, "succeeded").await.unwrap(),
            super::OtaReport::AlreadyEnded,
            "a final state takes no more reports"
        );
        assert_eq!(
            registry.report_ota(&ids[2], campaign.id, "installing").await.unwrap(),
            super::OtaReport::Unknown
        );
        let counts = registry.wave_counts(campaign.id).unwrap();
        assert_eq!((counts[0].targeted, counts[0].rolled_back, counts[0].sent), (2, 1, 1));
        assert!((counts[0].failure_rate() - 0.5).abs() < 1e-9);
        assert!(
            registry
                .end_campaign(campaign.id, true, "halted by an operator", true)
                .await
                .unwrap()
        );
        assert!(
            !registry.end_campaign(campaign.id, false, "done", false).await.unwrap(),
            "ends once"
        );
        assert!(
            !registry.start_wave(campaign.id, 1, ids[2..].to_vec()).await.unwrap(),
            "no wave after a halt"
        );
        assert_eq!(registry.wave_counts(campaign.id).unwrap().len(), 1);
        let record = registry.campaign(campaign.id).unwrap().unwrap();
        assert_eq!(
            (record.state.as_str(), record.end_reason.as_deref()),
            ("halted", Some("halted by an operator"))
        );
        let audit = registry.audit(0, 100).unwrap();
        assert!(
            audit
                .iter()
                .any(|e| e.action == "campaign.halted" && e.detail == json!({ "reason": "halted by an operator" }))
        );
    }
}
