//! Remote commands: the operator sends `reboot`, `set`, `logs`, `diagnose` or (to an LwM2M device)
//! `read` to a device, the device answers on `.../cmd/{id}/result`, and a command nobody answered in time is marked
//! `timed_out`. Rows are durable, so a command queued for an offline device survives a
//! backend restart as a record (its delivery is the gateway's job).

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use serde_json::{Value, json};

use super::job::WriteCtx;
use super::ops::{audit, is_active, sql_int};
use super::records::{Actor, Refusal, RegistryError};

/// Schema step adding the commands table (version 2).
pub const V2: &str = "
CREATE TABLE commands(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL REFERENCES devices(id),
    name TEXT NOT NULL CHECK (name IN ('reboot', 'set', 'logs')),
    args TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed', 'timed_out')),
    created_at INTEGER NOT NULL,
    deadline_at INTEGER NOT NULL,
    completed_at INTEGER,
    result TEXT
);
CREATE INDEX commands_pending ON commands(state, deadline_at);
";

/// Schema step (version 5): `diagnose` joins the commands (SQLite cannot change a CHECK, so
/// the table is made again and its rows copied), and a device's reported config keeps the
/// settings it reports.
pub const V5: &str = "
CREATE TABLE commands_v5(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL REFERENCES devices(id),
    name TEXT NOT NULL CHECK (name IN ('reboot', 'set', 'logs', 'diagnose')),
    args TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed', 'timed_out')),
    created_at INTEGER NOT NULL,
    deadline_at INTEGER NOT NULL,
    completed_at INTEGER,
    result TEXT
);
INSERT INTO commands_v5 SELECT id, device_id, name, args, state, created_at, deadline_at, completed_at, result
    FROM commands;
DROP TABLE commands;
ALTER TABLE commands_v5 RENAME TO commands;
CREATE INDEX commands_pending ON commands(state, deadline_at);
ALTER TABLE reported_config ADD COLUMN settings TEXT;
";

/// Schema step (version 8): `read` joins the commands, the table made again as for version 5.
pub const V8: &str = "
CREATE TABLE commands_v8(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL REFERENCES devices(id),
    name TEXT NOT NULL CHECK (name IN ('reboot', 'set', 'logs', 'diagnose', 'read')),
    args TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed', 'timed_out')),
    created_at INTEGER NOT NULL,
    deadline_at INTEGER NOT NULL,
    completed_at INTEGER,
    result TEXT
);
INSERT INTO commands_v8 SELECT id, device_id, name, args, state, created_at, deadline_at, completed_at, result
    FROM commands;
DROP TABLE commands;
ALTER TABLE commands_v8 RENAME TO commands;
CREATE INDEX commands_pending ON commands(state, deadline_at);
";

/// The commands a device understands (`read` is an LwM2M Read, carried out by the LwM2M front).
pub const COMMAND_NAMES: [&str; 5] = ["reboot", "set", "logs", "diagnose", "read"];

/// Where a command stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandState {
    /// Sent, no answer yet.
    Pending,
    /// The device answered that it carried it out.
    Succeeded,
    /// The device answered that it could not.
    Failed,
    /// No answer before the deadline.
    TimedOut,
}

impl CommandState {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            "timed_out" => Some(Self::TimedOut),
            _ => None,
        }
    }
}

/// One command as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandRecord {
    /// `c-` and a number, unique for the life of the registry.
    pub id: String,
    /// Target device.
    pub device_id: String,
    /// `reboot`, `set`, `logs`, `diagnose` or `read`.
    pub name: String,
    /// Arguments as sent.
    pub args: Value,
    /// Where it stands.
    pub state: CommandState,
    /// When it was sent, unix ms.
    pub created_at: u64,
    /// When it times out, unix ms.
    pub deadline_at: u64,
    /// When it was answered or timed out, unix ms.
    pub completed_at: Option<u64>,
    /// The device's answer (for `logs`, its event log; for `diagnose`, its health; for `read`,
    /// the path, the content format and the value read).
    pub result: Option<Value>,
}

/// What became of a device's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// Recorded: the command is now succeeded or failed.
    Recorded,
    /// The command had already ended (a late answer after its timeout, or a duplicate).
    AlreadyEnded,
    /// No such command for this device.
    Unknown,
}

/// Parses `c-N` into N.
pub fn parse_id(id: &str) -> Option<i64> {
    id.strip_prefix("c-")?.parse().ok().filter(|n: &i64| *n > 0)
}

/// Records a new command for an active device; audit `command.sent`.
pub fn create(
    ctx: &mut WriteCtx<'_>,
    device_id: &str,
    name: &str,
    args: &Value,
    timeout_ms: u64,
) -> Result<Result<CommandRecord, Refusal>, RegistryError> {
    if !is_active(ctx, device_id)? {
        return Ok(Err(Refusal::NotFound));
    }
    let deadline = ctx.now.saturating_add(timeout_ms);
    ctx.conn
        .prepare_cached(
            "INSERT INTO commands(device_id, name, args, state, created_at, deadline_at)
             VALUES (?1, ?2, ?3, 'pending', ?4, ?5)",
        )?
        .execute(params![
            device_id,
            name,
            args.to_string(),
            sql_int(ctx.now, "clock")?,
            sql_int(deadline, "command deadline")?
        ])?;
    let id = format!("c-{}", ctx.conn.last_insert_rowid());
    audit(
        ctx,
        Actor::Operator,
        "command.sent",
        device_id,
        &json!({ "command": id, "name": name, "args": args }),
    )?;
    Ok(Ok(CommandRecord {
        id,
        device_id: device_id.to_owned(),
        name: name.to_owned(),
        args: args.clone(),
        state: CommandState::Pending,
        created_at: ctx.now,
        deadline_at: deadline,
        completed_at: None,
        result: None,
    }))
}

/// Records a device's answer to one of its own pending commands.
pub fn complete(
    ctx: &mut WriteCtx<'_>,
    device_id: &str,
    id: i64,
    succeeded: bool,
    result: &Value,
) -> Result<Completion, RegistryError> {
    let state: Option<String> = ctx
        .conn
        .prepare_cached("SELECT state FROM commands WHERE id = ?1 AND device_id = ?2")?
        .query_row(params![id, device_id], |row| row.get(0))
        .optional()?;
    match state.as_deref() {
        None => Ok(Completion::Unknown),
        Some("pending") => {
            let state = if succeeded { "succeeded" } else { "failed" };
            ctx.conn
                .prepare_cached("UPDATE commands SET state = ?2, completed_at = ?3, result = ?4 WHERE id = ?1")?
                .execute(params![id, state, sql_int(ctx.now, "clock")?, result.to_string()])?;
            Ok(Completion::Recorded)
        }
        Some(_) => Ok(Completion::AlreadyEnded),
    }
}

/// Marks every pending command past its deadline as timed out; returns how many.
pub fn expire(ctx: &mut WriteCtx<'_>) -> Result<u64, RegistryError> {
    let now = sql_int(ctx.now, "clock")?;
    let changed = ctx
        .conn
        .prepare_cached(
            "UPDATE commands SET state = 'timed_out', completed_at = ?1
             WHERE state = 'pending' AND deadline_at <= ?1",
        )?
        .execute(params![now])?;
    Ok(changed as u64)
}

/// Whether any pending command is past its deadline at `now`.
pub fn any_expired(conn: &Connection, now: u64) -> Result<bool, RegistryError> {
    let found = conn
        .prepare_cached("SELECT 1 FROM commands WHERE state = 'pending' AND deadline_at <= ?1 LIMIT 1")?
        .exists(params![sql_int(now, "clock")?])?;
    Ok(found)
}

/// The command with that id.
pub fn read(conn: &Connection, id: i64) -> Result<Option<CommandRecord>, RegistryError> {
    let record = conn
        .prepare_cached(
            "SELECT id, device_id, name, args, state, created_at, deadline_at, completed_at, result
             FROM commands WHERE id = ?1",
        )?
        .query_row(params![id], from_row)
        .optional()?;
    Ok(record)
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<CommandRecord> {
    use rusqlite::types::Type;
    let bad = |idx: usize, msg: String| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, msg.into());
    let json = |idx: usize, text: String| serde_json::from_str::<Value>(&text).map_err(|e| bad(idx, e.to_string()));
    let state: String = row.get(4)?;
    let unsigned = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(CommandRecord {
        id: format!("c-{}", row.get::<_, i64>(0)?),
        device_id: row.get(1)?,
        name: row.get(2)?,
        args: json(3, row.get(3)?)?,
        state: CommandState::parse(&state).ok_or_else(|| bad(4, format!("command state {state:?}")))?,
        created_at: unsigned(row.get(5)?),
        deadline_at: unsigned(row.get(6)?),
        completed_at: row.get::<_, Option<i64>>(7)?.map(unsigned),
        result: row.get::<_, Option<String>>(8)?.map(|t| json(8, t)).transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use serde_json::json;

    use super::super::tests::{Scratch, accepted};
    use super::super::{ProvisionMeta, Registry, RegistryOptions};
    use super::*;

    /// A registry whose clock the test moves by hand, with one provisioned device.
    async fn registry_with_device(dir: &Scratch) -> (Registry, Arc<AtomicU64>, String) {
        let now = Arc::new(AtomicU64::new(10_000));
        let clock = Arc::clone(&now);
        let options = RegistryOptions {
            clock: Arc::new(move || clock.load(Ordering::Relaxed)),
            ..RegistryOptions::default()
        };
        let registry = Registry::open(&dir.0, options).unwrap();
        registry
            .create_claim("factory", "s3cret", "sensors")
            .await
            .unwrap()
            .unwrap();
        let outcome = registry
            .provision("factory", "SN-1", ProvisionMeta::default())
            .await
            .unwrap();
        let (device_id, ..) = accepted(outcome);
        (registry, now, device_id)
    }

    #[tokio::test]
    async fn a_command_is_answered_once() {
        let dir = Scratch::new("cmd-answer");
        let (registry, _now, device) = registry_with_device(&dir).await;
        let sent = registry
            .send_command(&device, "logs", json!({}), 5_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(sent.state, CommandState::Pending);
        assert_eq!(sent.deadline_at, 15_000);
        let output = json!({ "status": "ok", "output": ["booted", "joined"] });
        let done = registry
            .complete_command(&device, &sent.id, true, output.clone())
            .await
            .unwrap();
        assert_eq!(done, Completion::Recorded);
        let again = registry
            .complete_command(&device, &sent.id, false, json!({}))
            .await
            .unwrap();
        assert_eq!(again, Completion::AlreadyEnded, "a duplicate answer changes nothing");
        let stored = registry.command(&sent.id).unwrap().unwrap();
        assert_eq!(stored.state, CommandState::Succeeded);
        assert_eq!(stored.result, Some(output));
        let audit = registry.audit(0, 100).unwrap();
        assert!(audit.iter().any(|e| e.action == "command.sent" && e.subject == device));
    }

    #[tokio::test]
    async fn only_the_target_device_can_answer_and_unknown_ids_are_refused() {
        let dir = Scratch::new("cmd-owner");
        let (registry, _now, device) = registry_with_device(&dir).await;
        let sent = registry
            .send_command(&device, "reboot", json!({}), 5_000)
            .await
            .unwrap()
            .unwrap();
        let stranger = registry
            .complete_command("d-00000000000000000000", &sent.id, true, json!({}))
            .await
            .unwrap();
        assert_eq!(stranger, Completion::Unknown);
        assert_eq!(
            registry
                .complete_command(&device, "c-999", true, json!({}))
                .await
                .unwrap(),
            Completion::Unknown
        );
        assert_eq!(
            registry
                .complete_command(&device, "nonsense", true, json!({}))
                .await
                .unwrap(),
            Completion::Unknown
        );
        let refused = registry
            .send_command("d-00000000000000000000", "reboot", json!({}), 1)
            .await
            .unwrap();
        assert_eq!(refused.err(), Some(Refusal::NotFound));
        let bad_name = registry
            .send_command(&device, "self-destruct", json!({}), 1)
            .await
            .unwrap();
        assert_eq!(bad_name.err(), Some(Refusal::InvalidName));
    }

    #[tokio::test]
    async fn unanswered_commands_time_out_and_late_answers_are_ignored() {
        let dir = Scratch::new("cmd-timeout");
        let (registry, now, device) = registry_with_device(&dir).await;
        let sent = registry
            .send_command(&device, "set", json!({ "led": "on" }), 1_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(registry.expire_commands().await.unwrap(), 0, "not yet due");
        now.store(11_000, Ordering::Relaxed);
        assert_eq!(registry.expire_commands().await.unwrap(), 1);
        assert_eq!(
            registry.command(&sent.id).unwrap().unwrap().state,
            CommandState::TimedOut
        );
        let late = registry
            .complete_command(&device, &sent.id, true, json!({}))
            .await
            .unwrap();
        assert_eq!(late, Completion::AlreadyEnded);
        assert_eq!(registry.expire_commands().await.unwrap(), 0, "nothing left to expire");
    }
}
