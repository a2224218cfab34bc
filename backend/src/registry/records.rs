//! Values the registry hands out: records read back from the database, authentication verdicts,
//! outcomes of durable writes, business refusals, and the error type for infrastructure failures.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

/// Infrastructure failure of a registry operation. Business refusals (bad names, unknown
/// devices, ...) are never errors: they come back as [`Refusal`] or [`RejectReason`] values.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// SQLite reported an error for this operation.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A file in the data directory could not be read, written or created.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying OS error.
        #[source]
        source: std::io::Error,
    },
    /// The secret key file exists but does not hold exactly the expected number of bytes.
    #[error("{}: secret key must be {expected} bytes, found {found}", path.display())]
    KeyLength {
        /// The key file.
        path: PathBuf,
        /// Its length on disk.
        found: u64,
        /// The length it must have.
        expected: usize,
    },
    /// The database exists but its secret key file does not.
    #[error(
        "{}: missing although the database exists; a new key would invalidate every device id and token",
        path.display()
    )]
    KeyMissing {
        /// The key file that was expected.
        path: PathBuf,
    },
    /// Another registry (in this or another process) has the data directory open.
    #[error("{}: registry already open elsewhere", path.display())]
    InUse {
        /// The data directory.
        path: PathBuf,
    },
    /// The OS random source failed while creating the secret key.
    #[error("cannot read OS randomness: {0}")]
    Random(getrandom::Error),
    /// The database was written by a newer version of this module.
    #[error("database schema version {found} is newer than the supported version {supported}")]
    SchemaTooNew {
        /// `PRAGMA user_version` found in the file.
        found: i64,
        /// Newest version this code knows.
        supported: i64,
    },
    /// SQLite refused to switch the database to WAL mode.
    #[error("database journal mode is {0:?}, expected \"wal\"")]
    NotWal(String),
    /// A stored value does not parse (unknown state string, malformed JSON document, ...).
    #[error("corrupt registry data: {0}")]
    Corrupt(String),
    /// A numeric argument does not fit the database's signed 64-bit integers.
    #[error("{what} is out of range")]
    OutOfRange {
        /// Which argument.
        what: &'static str,
    },
    /// The writer thread could not be started.
    #[error("cannot start the registry writer thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// The batch this job belonged to failed as a whole (BEGIN or COMMIT failed, or SQLite
    /// rolled the transaction back); nothing of the batch was committed.
    #[error("write batch failed, nothing committed: {0}")]
    BatchFailed(#[source] Arc<rusqlite::Error>),
    /// The registry was closed (or its writer thread is gone) before the job could run.
    #[error("registry is closed")]
    Closed,
    /// The writer thread panicked; reported by [`super::Registry::close`].
    #[error("registry writer thread panicked")]
    WriterPanicked,
}

/// Why an operator write was refused. Not an error: the registry is healthy, the request
/// does not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// A claim name, group name or serial does not match its syntax.
    InvalidName,
    /// A claim secret is empty or longer than the accepted maximum.
    InvalidSecret,
    /// A claim with that name already exists (revoked or not).
    AlreadyExists,
    /// No such claim, no such active device, or nothing to release for that serial.
    NotFound,
    /// The claim is already revoked.
    AlreadyRevoked,
    /// The device is already decommissioned (or released).
    AlreadyDecommissioned,
    /// The serial's live device is active: decommission it before releasing the serial.
    NotDecommissioned,
    /// A value outside what it may be (an alert rule's level).
    OutOfRange,
}

impl Refusal {
    /// Stable machine-readable code.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::InvalidName => "invalid_name",
            Refusal::InvalidSecret => "invalid_secret",
            Refusal::AlreadyExists => "already_exists",
            Refusal::NotFound => "not_found",
            Refusal::AlreadyRevoked => "already_revoked",
            Refusal::AlreadyDecommissioned => "already_decommissioned",
            Refusal::NotDecommissioned => "not_decommissioned",
            Refusal::OutOfRange => "out_of_range",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict on a client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertAuth {
    /// Accepted; the device's group.
    Ok {
        /// The device's group.
        group: String,
    },
    /// Revoked (rotated past its grace, replaced, or its device decommissioned).
    Revoked,
    /// Not a certificate the registry issued to that device.
    Unknown,
}

/// Optional descriptive fields a device sends with its provisioning request. They are
/// untrusted and only descriptive: each is cut to [`super::MAX_META_LEN`] bytes before storing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProvisionMeta {
    /// Hardware model string, as the device reports it.
    pub model: Option<String>,
    /// Firmware version string, as the device reports it.
    pub firmware: Option<String>,
}

/// Result of a provisioning request that the registry could evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisionOutcome {
    /// The device has an identity; the reply was committed before this value was returned.
    Accepted {
        /// The device id (`d-` + 20 hex chars).
        device_id: String,
        /// The device's secret token (64 hex chars); only its SHA-256 is stored.
        token: String,
        /// The group the device belongs to.
        group: String,
        /// True when this was an idempotent retry of an earlier accepted request.
        existed: bool,
    },
    /// The request was refused; nothing was written.
    Rejected {
        /// Why.
        reason: RejectReason,
    },
}

/// Why a provisioning request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The claim does not exist (or its name is malformed).
    InvalidClaim,
    /// The claim exists but was revoked.
    ClaimRevoked,
    /// The serial does not match `[A-Za-z0-9._-]{1,64}`.
    InvalidSerial,
    /// The serial has an active device provisioned through a different claim.
    ProvisionedByOtherClaim,
    /// The serial's device was decommissioned and the operator has not released the serial.
    Decommissioned,
}

impl RejectReason {
    /// Stable machine-readable code, e.g. `"invalid_claim"`.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidClaim => "invalid_claim",
            RejectReason::ClaimRevoked => "claim_revoked",
            RejectReason::InvalidSerial => "invalid_serial",
            RejectReason::ProvisionedByOtherClaim => "provisioned_by_other_claim",
            RejectReason::Decommissioned => "decommissioned",
        }
    }

    /// Human-readable explanation, suitable for a reply to the device.
    pub fn message(self) -> &'static str {
        match self {
            RejectReason::InvalidClaim => "unknown provisioning claim",
            RejectReason::ClaimRevoked => "provisioning claim has been revoked",
            RejectReason::InvalidSerial => "serial must be 1-64 characters of A-Z a-z 0-9 . _ -",
            RejectReason::ProvisionedByOtherClaim => "serial is already provisioned through another claim",
            RejectReason::Decommissioned => "device was decommissioned; an operator must release the serial",
        }
    }
}

/// Verdict of [`super::Registry::authenticate_device`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceAuth {
    /// Token matches an active device.
    Ok {
        /// The device's group.
        group: String,
    },
    /// No device has that id.
    Unknown,
    /// The device exists but the token does not match.
    WrongToken,
    /// The device was decommissioned (or its serial since released); its token is void.
    Decommissioned,
}

/// Verdict of [`super::Registry::authenticate_claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimAuth {
    /// Secret matches a live claim.
    Ok,
    /// No claim has that name.
    Unknown,
    /// The claim exists but the secret does not match.
    WrongSecret,
    /// The claim was revoked.
    Revoked,
}

/// Lifecycle state of a device row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// Provisioned and allowed to connect.
    Active,
    /// Retired by an operator; its serial cannot be provisioned again yet.
    Decommissioned,
    /// Decommissioned and released: kept as history, the serial may be provisioned anew.
    Released,
}

impl DeviceState {
    /// The string stored in `devices.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Active => "active",
            DeviceState::Decommissioned => "decommissioned",
            DeviceState::Released => "released",
        }
    }

    /// Parses the stored string; `None` for anything else.
    pub fn parse(s: &str) -> Option<DeviceState> {
        match s {
            "active" => Some(DeviceState::Active),
            "decommissioned" => Some(DeviceState::Decommissioned),
            "released" => Some(DeviceState::Released),
            _ => None,
        }
    }
}

/// One row of `devices`, without its token hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceRecord {
    /// Device id.
    pub id: String,
    /// Manufacturer serial.
    pub serial: String,
    /// Claim the device was provisioned through.
    pub claim: String,
    /// Group the device belongs to.
    pub group: String,
    /// Model reported at provisioning.
    pub model: Option<String>,
    /// Firmware reported at provisioning.
    pub firmware: Option<String>,
    /// How many identities this serial has had, this one included.
    pub generation: u64,
    /// Lifecycle state.
    pub state: DeviceState,
    /// Provisioning time, unix ms.
    pub created_at: u64,
    /// Decommissioning time, unix ms.
    pub decommissioned_at: Option<u64>,
}

/// Target of a desired-config document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ConfigScope {
    /// Applies to every device of the named group.
    Group(String),
    /// Applies to one device (by id) and overrides its group's keys.
    Device(String),
}

/// A device's desired configuration after overlaying its device document on its group's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EffectiveConfig {
    /// The larger of the documents' versions; 0 when neither is set.
    pub version: u64,
    /// Group document with the device document's top-level keys written over it, each left
    /// out once past its expiry while the other holds.
    pub doc: Map<String, Value>,
    /// When it expires, unix ms: the earliest expiry of the documents in it (`None`: never).
    pub expires_at: Option<u64>,
}

impl EffectiveConfig {
    /// Whether it has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_at.is_some_and(|at| at <= now_ms)
    }
}

/// What a device last reported of its config.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportedConfig {
    /// The desired config version it applied.
    pub version: u64,
    /// The settings it holds (what `set` commands applied), if it ever said.
    pub settings: Option<Value>,
    /// When it reported, unix ms.
    pub reported_at: u64,
}

/// An active device whose reported config version differs from its desired version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// Device id.
    pub device_id: String,
    /// Version the device should run.
    pub desired_version: u64,
    /// Version the device last reported, if ever.
    pub reported_version: Option<u64>,
}

/// Who performed an audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// An operator, through the management API.
    Operator,
    /// A device, through the gateway.
    Device,
    /// The backend itself.
    System,
}

impl Actor {
    /// The string stored in `audit.actor`.
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::Operator => "operator",
            Actor::Device => "device",
            Actor::System => "system",
        }
    }

    /// Parses the stored string; `None` for anything else.
    pub fn parse(s: &str) -> Option<Actor> {
        match s {
            "operator" => Some(Actor::Operator),
            "device" => Some(Actor::Device),
            "system" => Some(Actor::System),
            _ => None,
        }
    }
}

/// One row of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Monotonic id; page with `after_id`.
    pub id: i64,
    /// When, unix ms.
    pub at: u64,
    /// Who.
    pub actor: Actor,
    /// What, e.g. `"claim.created"`.
    pub action: String,
    /// On what: a claim name, device id, serial or config scope.
    pub subject: String,
    /// Action-specific JSON details.
    pub detail: Value,
}

/// Row counts for dashboards and health checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RegistryCounts {
    /// Devices in state active.
    pub active: u64,
    /// Devices in state decommissioned.
    pub decommissioned: u64,
    /// Device rows in state released (history).
    pub released: u64,
    /// Claims, revoked ones included.
    pub claims: u64,
    /// Revoked claims.
    pub revoked_claims: u64,
}

/// Counters of the group-commit writer, to make batching visible.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WriterStats {
    /// Transactions committed or attempted (one per batch).
    pub batches: u64,
    /// Jobs executed.
    pub jobs: u64,
    /// Largest batch so far.
    pub largest_batch: u64,
}
