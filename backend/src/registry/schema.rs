//! SQL schema of `registry.sqlite3`, connection settings, and migration driven by
//! `PRAGMA user_version`.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::records::RegistryError;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "registry.sqlite3";

/// How long a connection waits for a lock held by another connection (a checkpoint, a second
/// process) before failing with SQLITE_BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The writer's page cache, in KiB (SQLite's default is 2 MiB). Device ids are keyed hashes,
/// so every provision lands on a random page of each device index, and at a million devices
/// the database is about 450 MiB: a 2 MiB cache reads nearly every insert's pages from the
/// file. 64 MiB keeps the indexes' inner pages and the recently touched leaves.
const WRITER_CACHE_KIB: i64 = 64 * 1024;

/// Schema version 1. Beyond the tables the design names: foreign keys from devices to claims
/// and from reported config to devices, a CHECK on each enumerated column, a unique
/// (serial, generation) index that also serves "max generation of a serial", and a
/// (group_name, id) index for paging a group's devices.
const V1: &str = "
CREATE TABLE claims(
    name TEXT PRIMARY KEY,
    secret_hash BLOB NOT NULL,
    default_group TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1))
);
CREATE TABLE devices(
    id TEXT PRIMARY KEY,
    serial TEXT NOT NULL,
    claim TEXT NOT NULL REFERENCES claims(name),
    group_name TEXT NOT NULL,
    model TEXT,
    firmware TEXT,
    generation INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'decommissioned', 'released')),
    token_hash BLOB,
    created_at INTEGER NOT NULL,
    decommissioned_at INTEGER
);
-- One live identity per serial; released rows stay as history.
CREATE UNIQUE INDEX devices_live_serial ON devices(serial) WHERE state != 'released';
CREATE UNIQUE INDEX devices_serial_generation ON devices(serial, generation);
CREATE INDEX devices_group ON devices(group_name, id);
CREATE TABLE desired_config(
    scope_kind TEXT NOT NULL CHECK (scope_kind IN ('group', 'device')),
    scope TEXT NOT NULL,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY(scope_kind, scope)
);
CREATE TABLE reported_config(
    device_id TEXT PRIMARY KEY REFERENCES devices(id),
    version INTEGER NOT NULL,
    reported_at INTEGER NOT NULL
);
CREATE TABLE audit(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL CHECK (actor IN ('operator', 'device', 'system')),
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta(key, value) VALUES ('config_seq', 0);
";

/// Migration steps; entry `i` takes the schema from version `i` to `i + 1`. Appending is the
/// only allowed change: shipped steps have run on real databases.
const MIGRATIONS: &[&str] = &[
    V1,
    super::commands::V2,
    super::campaigns::V3,
    super::certs::V4,
    super::commands::V5,
    super::alerts::V6,
    super::alerts::V7,
    super::commands::V8,
    V9,
];

/// Schema step (version 9): a desired config may expire (unix ms; NULL never), as an MQTT 5
/// message with a message expiry does: past it, it is no longer delivered.
const V9: &str = "ALTER TABLE desired_config ADD COLUMN expires_at INTEGER;";

/// The schema version this code writes and reads.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Opens the read-write connection with the durability settings, and brings the schema to
/// [`SCHEMA_VERSION`].
pub fn open_writer(path: &Path) -> Result<Connection, RegistryError> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(RegistryError::NotWal(mode));
    }
    // FULL syncs the WAL on every commit: a provisioning reply is only sent after its commit,
    // so a device never holds a token the registry could forget.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // A negative cache_size is in KiB.
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// Opens a read-only connection for queries. Call after [`open_writer`], which creates the
/// file and switches it to WAL.
pub fn open_reader(path: &Path) -> Result<Connection, RegistryError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// Applies the missing migration steps in one IMMEDIATE transaction, so two processes
/// opening a fresh directory at once cannot both create the tables.
fn migrate(conn: &mut Connection) -> Result<(), RegistryError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(RegistryError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let start = usize::try_from(found).map_err(|_| RegistryError::Corrupt(format!("user_version {found}")))?;
    for step in &MIGRATIONS[start..] {
        tx.execute_batch(step)?;
    }
    if start < MIGRATIONS.len() {
        // PRAGMA takes no bound parameters; the value is our own constant.
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("registry-schema-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A database at `path` as version `version`'s code left it, holding `rows`.
    fn database_at(path: &std::path::Path, version: usize, rows: &str) {
        let mut conn = Connection::open(path).unwrap();
        let tx = conn.transaction().unwrap();
        for step in &MIGRATIONS[..version] {
            tx.execute_batch(step).unwrap();
        }
        tx.execute_batch(&format!("PRAGMA user_version = {version};")).unwrap();
        tx.execute_batch(rows).unwrap();
        tx.commit().unwrap();
    }

    /// After a migration rebuilt the commands table and one more command was added: ids went
    /// on from the copied rows (the new one is 2), and the CHECK on names still holds.
    fn rebuilt_commands_go_on(conn: &Connection) {
        let next: i64 = conn
            .query_row("SELECT MAX(id) FROM commands", [], |r| r.get(0))
            .unwrap();
        assert_eq!(next, 2, "ids go on from the copied rows");
        assert!(
            conn.execute_batch(
                "INSERT INTO commands(device_id, name, args, state, created_at, deadline_at)
                 VALUES ('d-1', 'dance', '{}', 'pending', 3, 4)"
            )
            .is_err(),
            "the CHECK still holds"
        );
    }

    #[test]
    fn fresh_database_gets_version_and_settings() {
        let dir = scratch("fresh");
        let conn = open_writer(&dir.join(DB_FILE)).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(sync, 2, "FULL");
        let fk: i64 = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
        assert_eq!(fk, 1);
        let cache: i64 = conn.query_row("PRAGMA cache_size", [], |r| r.get(0)).unwrap();
        assert_eq!(cache, -WRITER_CACHE_KIB);
        let seq: i64 = conn
            .query_row("SELECT value FROM meta WHERE key = 'config_seq'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(seq, 0);
        drop(conn);
        // Reopening must not re-run V1 (it would fail on CREATE TABLE).
        let conn = open_writer(&dir.join(DB_FILE)).unwrap();
        let reader = open_reader(&dir.join(DB_FILE)).unwrap();
        let mode: String = reader.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        drop((conn, reader));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_version_4_database_keeps_its_commands_and_takes_diagnose_and_settings() {
        let dir = scratch("v4");
        let path = dir.join(DB_FILE);
        // A database as version 4's code left it, with a command answered.
        database_at(
            &path,
            4,
            "INSERT INTO claims VALUES ('c', x'00', 'g', 0, 0);
             INSERT INTO devices VALUES ('d-1', 'S', 'c', 'g', NULL, NULL, 1, 'active', x'00', 0, NULL);
             INSERT INTO commands(device_id, name, args, state, created_at, deadline_at, completed_at, result)
                 VALUES ('d-1', 'logs', '{}', 'succeeded', 1, 2, 2, '{\"status\":\"ok\"}');
             INSERT INTO reported_config VALUES ('d-1', 3, 5);",
        );
        let conn = open_writer(&path).unwrap();
        let kept: (i64, String, String) = conn
            .query_row("SELECT id, name, result FROM commands", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(kept, (1, "logs".to_owned(), "{\"status\":\"ok\"}".to_owned()));
        conn.execute_batch(
            "INSERT INTO commands(device_id, name, args, state, created_at, deadline_at)
                 VALUES ('d-1', 'diagnose', '{}', 'pending', 3, 4);
             UPDATE reported_config SET settings = '{\"led\":\"on\"}' WHERE device_id = 'd-1';",
        )
        .unwrap();
        rebuilt_commands_go_on(&conn);
        drop(conn);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_version_6_database_keeps_its_rules_and_takes_the_new_kinds() {
        let dir = scratch("v6");
        let path = dir.join(DB_FILE);
        // A database as version 6's code left it: a rule in force, one deleted.
        database_at(
            &path,
            6,
            "INSERT INTO alert_rules(kind, group_name, threshold, created_at) VALUES ('battery_below', 'g', 0.2, 1);
             INSERT INTO alert_rules(kind, group_name, threshold, created_at, deleted_at) VALUES ('offline_for', NULL, 30, 2, 3);",
        );
        let conn = open_writer(&path).unwrap();
        let rules = super::super::alerts::list(&conn).unwrap();
        assert_eq!(rules.len(), 1, "{rules:?}");
        assert_eq!(rules[0].id, "r-1");
        assert_eq!(rules[0].kind, super::super::RuleKind::BatteryBelow { below: 0.2 });
        conn.execute_batch(
            "INSERT INTO alert_rules(kind, threshold, window_s, created_at) VALUES ('error_codes', 3, 60, 4);",
        )
        .unwrap();
        let next: i64 = conn
            .query_row("SELECT MAX(id) FROM alert_rules", [], |r| r.get(0))
            .unwrap();
        assert_eq!(next, 3, "ids go on past the deleted rule");
        let rules = super::super::alerts::list(&conn).unwrap();
        assert_eq!(
            rules[1].kind,
            super::super::RuleKind::ErrorCodes {
                at_least: 3,
                within_s: 60.0
            }
        );
        assert!(
            conn.execute_batch("INSERT INTO alert_rules(kind, threshold, created_at) VALUES ('vibes', 1, 5)")
                .is_err(),
            "the CHECK still holds"
        );
        drop(conn);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_version_7_database_keeps_its_commands_and_takes_reads() {
        let dir = scratch("v7");
        let path = dir.join(DB_FILE);
        // A database as version 7's code left it: a device with a command answered.
        database_at(
            &path,
            7,
            "INSERT INTO claims VALUES ('c', x'00', 'g', 0, 0);
             INSERT INTO devices VALUES ('d-1', 'S', 'c', 'g', NULL, NULL, 1, 'active', x'00', 0, NULL);
             INSERT INTO commands(device_id, name, args, state, created_at, deadline_at, completed_at, result)
                 VALUES ('d-1', 'diagnose', '{}', 'succeeded', 1, 2, 2, '{}');",
        );
        assert!(
            Connection::open(&path)
                .unwrap()
                .execute_batch(
                    "INSERT INTO commands(device_id, name, args, state, created_at, deadline_at)
                     VALUES ('d-1', 'read', '{}', 'pending', 3, 4)"
                )
                .is_err(),
            "version 7 has no reads"
        );
        let conn = open_writer(&path).unwrap();
        let kept: (i64, String) = conn
            .query_row("SELECT id, name FROM commands", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!(kept, (1, "diagnose".to_owned()));
        conn.execute_batch(
            "INSERT INTO commands(device_id, name, args, state, created_at, deadline_at)
                 VALUES ('d-1', 'read', '{\"path\":\"/3/0/9\"}', 'pending', 3, 4)",
        )
        .unwrap();
        rebuilt_commands_go_on(&conn);
        drop(conn);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = scratch("newer");
        let path = dir.join(DB_FILE);
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA user_version = 99")
            .unwrap();
        let err = open_writer(&path).unwrap_err();
        assert!(matches!(err, RegistryError::SchemaTooNew { found: 99, .. }), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn live_serial_is_unique_but_released_rows_are_history() {
        let dir = scratch("unique");
        let conn = open_writer(&dir.join(DB_FILE)).unwrap();
        conn.execute_batch(
            "INSERT INTO claims VALUES ('c', x'00', 'g', 0, 0);
             INSERT INTO devices VALUES ('d-1', 'S', 'c', 'g', NULL, NULL, 1, 'released', NULL, 0, 1);
             INSERT INTO devices VALUES ('d-2', 'S', 'c', 'g', NULL, NULL, 2, 'active', x'00', 0, NULL);",
        )
        .unwrap();
        let dup = conn.execute_batch(
            "INSERT INTO devices VALUES ('d-3', 'S', 'c', 'g', NULL, NULL, 3, 'decommissioned', NULL, 0, NULL)",
        );
        assert!(dup.is_err());
        let no_claim = conn.execute_batch(
            "INSERT INTO devices VALUES ('d-4', 'T', 'nope', 'g', NULL, NULL, 1, 'active', NULL, 0, NULL)",
        );
        assert!(no_claim.is_err(), "foreign key to claims");
        drop(conn);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
