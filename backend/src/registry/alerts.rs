//! Alert rules, as the operator sets them: a device's battery below a level, a device offline
//! longer than a time, a device reporting error codes more often than a rate, or a sensor
//! reading the same value report after report, for one group or every device. Rules are durable (a restarted
//! backend watches what it watched); the alerts they raise live in the gateway's monitor
//! (`crate::monitor`), and each raise and clear is audited here (`alert.raised`,
//! `alert.cleared`, actor `system`).

use rusqlite::{Connection, Row, params};
use serde::Serialize;
use serde_json::{Value, json};

use super::job::WriteCtx;
use super::ops::{audit, sql_int};
use super::records::{Actor, RegistryError};

/// Schema step adding the alert rules (version 6).
pub const V6: &str = "
CREATE TABLE alert_rules(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('battery_below', 'offline_for')),
    group_name TEXT,
    threshold REAL NOT NULL,
    created_at INTEGER NOT NULL,
    deleted_at INTEGER
);
";

/// Schema step (version 7): rules on error codes and on stuck sensors (SQLite cannot change a
/// CHECK, so the table is made again and its rows copied), with a second parameter, the window
/// of an error-codes rule.
pub const V7: &str = "
CREATE TABLE alert_rules_v7(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('battery_below', 'offline_for', 'error_codes', 'sensor_stuck')),
    group_name TEXT,
    threshold REAL NOT NULL,
    window_s REAL,
    created_at INTEGER NOT NULL,
    deleted_at INTEGER
);
INSERT INTO alert_rules_v7(id, kind, group_name, threshold, created_at, deleted_at)
    SELECT id, kind, group_name, threshold, created_at, deleted_at FROM alert_rules;
DROP TABLE alert_rules;
ALTER TABLE alert_rules_v7 RENAME TO alert_rules;
";

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuleKind {
    /// The battery a device last reported is below `below` (a fraction).
    BatteryBelow {
        /// The level, in (0, 1].
        below: f64,
    },
    /// A device has been disconnected for at least `after_s` seconds.
    OfflineFor {
        /// Seconds offline.
        after_s: f64,
    },
    /// A device made at least `at_least` reports that carried error codes within `within_s`
    /// seconds.
    ErrorCodes {
        /// Reports with error codes.
        at_least: u32,
        /// The window, seconds.
        within_s: f64,
    },
    /// A device's sensor read the same value in `reports` reports in a row.
    SensorStuck {
        /// Reports in a row.
        reports: u32,
    },
}

impl RuleKind {
    /// The kind's name, as stored and in the API.
    pub fn name(self) -> &'static str {
        match self {
            Self::BatteryBelow { .. } => "battery_below",
            Self::OfflineFor { .. } => "offline_for",
            Self::ErrorCodes { .. } => "error_codes",
            Self::SensorStuck { .. } => "sensor_stuck",
        }
    }

    /// Every kind's name.
    pub const NAMES: [&'static str; 4] = ["battery_below", "offline_for", "error_codes", "sensor_stuck"];

    /// Whether its parameters are in bounds: a level in (0, 1], a time offline within a
    /// day, 1 to 1,000 error reports within a window of a day at most, 2 to 1,000 reports
    /// in a row.
    pub fn is_sane(self) -> bool {
        match self {
            Self::BatteryBelow { below } => below > 0.0 && below <= 1.0,
            Self::OfflineFor { after_s } => (0.0..=86_400.0).contains(&after_s),
            Self::ErrorCodes { at_least, within_s } => {
                (1..=1000).contains(&at_least) && within_s > 0.0 && within_s <= 86_400.0
            }
            Self::SensorStuck { reports } => (2..=1000).contains(&reports),
        }
    }

    /// The stored threshold and window.
    fn stored(self) -> (f64, Option<f64>) {
        match self {
            Self::BatteryBelow { below } => (below, None),
            Self::OfflineFor { after_s } => (after_s, None),
            Self::ErrorCodes { at_least, within_s } => (f64::from(at_least), Some(within_s)),
            Self::SensorStuck { reports } => (f64::from(reports), None),
        }
    }

    fn from_stored(kind: &str, threshold: f64, window_s: Option<f64>) -> Option<Self> {
        // Counts were stored from a u32: whole and in range.
        let count = threshold as u32;
        match kind {
            "battery_below" => Some(Self::BatteryBelow { below: threshold }),
            "offline_for" => Some(Self::OfflineFor { after_s: threshold }),
            "error_codes" => Some(Self::ErrorCodes {
                at_least: count,
                within_s: window_s?,
            }),
            "sensor_stuck" => Some(Self::SensorStuck { reports: count }),
            _ => None,
        }
    }
}

/// A rule as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRule {
    /// `r-` and a number.
    pub id: String,
    /// What it watches.
    #[serde(flatten)]
    pub kind: RuleKind,
    /// The group it watches (`None`: every device).
    pub group: Option<String>,
    /// When it was set, unix ms.
    pub created_at: u64,
}

impl AlertRule {
    /// The rule's number.
    pub fn number(&self) -> i64 {
        parse_id(&self.id).unwrap_or(0)
    }
}

/// Parses `r-N` into N.
pub fn parse_id(id: &str) -> Option<i64> {
    id.strip_prefix("r-")?.parse().ok().filter(|n: &i64| *n > 0)
}

/// Records a new rule; audit `alert_rule.created`.
pub fn create(ctx: &mut WriteCtx<'_>, kind: RuleKind, group: Option<&str>) -> Result<AlertRule, RegistryError> {
    ctx.conn
        .prepare_cached(
            "INSERT INTO alert_rules(kind, group_name, threshold, window_s, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            kind.name(),
            group,
            kind.stored().0,
            kind.stored().1,
            sql_int(ctx.now, "clock")?
        ])?;
    let rule = AlertRule {
        id: format!("r-{}", ctx.conn.last_insert_rowid()),
        kind,
        group: group.map(str::to_owned),
        created_at: ctx.now,
    };
    // A rule is plain data: it always serializes.
    let detail = serde_json::to_value(&rule).unwrap_or(Value::Null);
    audit(ctx, Actor::Operator, "alert_rule.created", &rule.id, &detail)?;
    Ok(rule)
}

/// Deletes rule `id`; false when there is no such rule. Audit `alert_rule.deleted`.
pub fn delete(ctx: &mut WriteCtx<'_>, id: i64) -> Result<bool, RegistryError> {
    let changed = ctx
        .conn
        .prepare_cached("UPDATE alert_rules SET deleted_at = ?2 WHERE id = ?1 AND deleted_at IS NULL")?
        .execute(params![id, sql_int(ctx.now, "clock")?])?;
    if changed > 0 {
        audit(
            ctx,
            Actor::Operator,
            "alert_rule.deleted",
            &format!("r-{id}"),
            &json!({}),
        )?;
    }
    Ok(changed > 0)
}

/// Audits an alert raised (`raised` true) or cleared for `device_id` by `rule`, with `detail`.
pub fn record(
    ctx: &mut WriteCtx<'_>,
    raised: bool,
    rule: &str,
    device_id: &str,
    detail: &Value,
) -> Result<(), RegistryError> {
    let action = if raised { "alert.raised" } else { "alert.cleared" };
    let mut detail = detail.clone();
    detail["rule"] = Value::from(rule);
    audit(ctx, Actor::System, action, device_id, &detail)
}

/// The rules in force, oldest first.
pub fn list(conn: &Connection) -> Result<Vec<AlertRule>, RegistryError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, kind, group_name, threshold, created_at, window_s FROM alert_rules WHERE deleted_at IS NULL ORDER BY id",
    )?;
    let rules = stmt.query_map([], from_row)?;
    Ok(rules.collect::<Result<_, _>>()?)
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<AlertRule> {
    let kind: String = row.get(1)?;
    let threshold: f64 = row.get(3)?;
    let kind = RuleKind::from_stored(&kind, threshold, row.get(5)?).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, format!("rule kind {kind:?}").into())
    })?;
    Ok(AlertRule {
        id: format!("r-{}", row.get::<_, i64>(0)?),
        kind,
        group: row.get(2)?,
        created_at: u64::try_from(row.get::<_, i64>(4)?).unwrap_or(0),
    })
}
