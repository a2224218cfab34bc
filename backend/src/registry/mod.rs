//! Durable device registry on SQLite: claims, devices, credentials (hashes only), desired and
//! reported config, and the audit log. Authentication is answered from in-memory caches;
//! writes go through a group-commit writer thread and return only once committed; reads use
//! a separate read-only connection.

mod alerts;
mod cache;
mod campaigns;
mod certs;
mod commands;
mod identity;
mod job;
mod ops;
mod reads;
mod records;
mod schema;
mod writer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::Connection;
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use cache::AuthCache;
pub use identity::PskRoot;
use identity::{SecretKey, clip_meta, lock_dir, sha256, valid_device_id, valid_name};
use job::{Job, WriteCtx};
use writer::{Shared, Writer};

pub use alerts::{AlertRule, RuleKind};
pub use campaigns::{CampaignRecord, OTA_STATES, OtaReport, WaveCounts};
pub use certs::{CertState, CertificateRecord, IssueReason, NewCertificate, Recorded};
pub use commands::{COMMAND_NAMES, CommandRecord, CommandState, Completion};
pub use identity::{KEY_FILE, KEY_LEN, MAX_META_LEN, MAX_SECRET_LEN, valid_serial};
pub use reads::MAX_PAGE;
pub use records::{
    Actor, AuditEntry, CertAuth, ClaimAuth, ConfigScope, DeviceAuth, DeviceRecord, DeviceState, Drift, EffectiveConfig,
    ProvisionMeta, ProvisionOutcome, Refusal, RegistryCounts, RegistryError, RejectReason, ReportedConfig, WriterStats,
};
pub use schema::{DB_FILE, SCHEMA_VERSION};
pub use writer::{Clock, WRITE_QUEUE};

/// Default for [`RegistryOptions::max_batch`].
pub const DEFAULT_MAX_BATCH: usize = 1024;

/// Unix time in milliseconds from the system clock (0 if the clock is before 1970).
pub fn system_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// How to run a registry.
#[derive(Clone)]
pub struct RegistryOptions {
    /// Source of every timestamp the registry stores; tests inject a fixed one.
    pub clock: Clock,
    /// Most jobs committed in one transaction (values below 1 count as 1).
    pub max_batch: usize,
    /// The secret key a new directory is given; fresh OS randomness when `None`. A run that
    /// must give the same device ids every time (fleetsim's in-process backend, keyed from
    /// the scenario's seed) sets it; a directory that has a key keeps it.
    pub new_key: Option<[u8; KEY_LEN]>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            clock: Arc::new(system_clock_ms),
            max_batch: DEFAULT_MAX_BATCH,
            new_key: None,
        }
    }
}

impl std::fmt::Debug for RegistryOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryOptions")
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// Handle to an open registry. Cheap to clone; all clones share one writer thread, one
/// reader connection and the auth caches. The writer stops when the last clone is dropped
/// (after finishing queued jobs) or when [`Registry::close`] is called.
#[derive(Clone, Debug)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    sender: job::Sender,
    slots: Arc<Semaphore>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    shared: Arc<Shared>,
    reader: Mutex<Connection>,
    /// The same clock the writer uses, for reads that compare with "now".
    clock: Clock,
    /// Where LwM2M devices' pre-shared keys come from.
    psk_root: PskRoot,
    // Declared last so it is released only after the writer and reader connections closed.
    _dir_lock: std::fs::File,
}

impl Inner {
    /// Closes the queue, lets the writer finish what is queued, and waits for it.
    fn shutdown(&self) -> Result<(), RegistryError> {
        // These locks guard only Option swaps, which cannot be left half-done by a panic.
        self.sender.write().unwrap_or_else(PoisonError::into_inner).take();
        self.slots.close();
        let handle = self.writer_thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        match handle.map(JoinHandle::join) {
            Some(Err(_)) => Err(RegistryError::WriterPanicked),
            _ => Ok(()),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Joining here means a dropped registry has released its files, so reopening the
        // directory right away sees every committed write; a panicked writer has nobody
        // left to report to.
        let _ = self.shutdown();
    }
}

impl Registry {
    /// Opens (creating if needed) the registry in `dir`: the directory, `secret.key`, the
    /// database and its schema; loads the auth caches and starts the writer thread. Fails
    /// with [`RegistryError::InUse`] while another registry has the directory open.
    pub fn open(dir: &Path, options: RegistryOptions) -> Result<Registry, RegistryError> {
        let io = |source| RegistryError::Io {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let db_path = dir.join(DB_FILE);
        let db_exists = db_path.try_exists().map_err(|source| RegistryError::Io {
            path: db_path.clone(),
            source,
        })?;
        let key = SecretKey::load_or_create(dir, db_exists, options.new_key)?;
        let psk_root = key.psk_root();
        let dir_lock = lock_dir(dir)?;
        let conn = schema::open_writer(&db_path)?;
        let cache = AuthCache::load(&conn)?;
        let reader = schema::open_reader(&db_path)?;
        let shared = Arc::new(Shared::new(cache));
        let (tx, rx) = sync_channel(WRITE_QUEUE);
        let clock = Arc::clone(&options.clock);
        let writer = Writer::new(conn, key, options.clock, options.max_batch, Arc::clone(&shared));
        let handle = writer.spawn(rx).map_err(RegistryError::Spawn)?;
        Ok(Registry {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                sender: RwLock::new(Some(tx)),
                slots: Arc::new(Semaphore::new(WRITE_QUEUE)),
                writer_thread: Mutex::new(Some(handle)),
                shared,
                reader: Mutex::new(reader),
                psk_root,
                clock,
                _dir_lock: dir_lock,
            }),
        })
    }

    /// Where LwM2M devices' pre-shared keys come from (the same for the life of the data
    /// folder's key).
    pub fn psk_root(&self) -> &PskRoot {
        &self.inner.psk_root
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Stops the writer after it finished every queued job and waits for it. Other clones
    /// of this handle get [`RegistryError::Closed`] from then on.
    pub fn close(self) -> Result<(), RegistryError> {
        self.inner.shutdown()
    }

    /// Group-commit counters.
    pub fn stats(&self) -> WriterStats {
        self.inner.shared.stats()
    }

    // --- fast, in-memory ---

    /// Checks a device's token (answered from memory, never blocks on I/O).
    pub fn authenticate_device(&self, device_id: &str, token: &[u8]) -> DeviceAuth {
        self.inner.shared.cache.authenticate_device(device_id, token)
    }

    /// Whether `device_id` is active now (from memory, like authentication).
    pub fn is_active(&self, device_id: &str) -> bool {
        self.inner.shared.cache.is_active(device_id)
    }

    /// Checks a client certificate of `device_id` by its serial number (answered from memory,
    /// never blocks on I/O).
    pub fn authenticate_certificate(&self, device_id: &str, serial: &str) -> CertAuth {
        let now = (self.inner.clock)();
        self.inner.shared.cache.authenticate_certificate(device_id, serial, now)
    }

    /// Checks a claim's secret (answered from memory, never blocks on I/O).
    pub fn authenticate_claim(&self, name: &str, secret: &[u8]) -> ClaimAuth {
        self.inner.shared.cache.authenticate_claim(name, secret)
    }

    // --- durable writes ---

    /// Queues `work` for the writer and waits until its batch committed. Waits for a queue
    /// slot without blocking the thread. Dropping the future after the job was queued does
    /// not cancel it: the write still commits, only the reply is lost.
    async fn submit<T, F>(&self, work: F) -> Result<T, RegistryError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteCtx<'_>) -> Result<T, RegistryError> + Send + 'static,
    {
        let slot = Arc::clone(&self.inner.slots)
            .acquire_owned()
            .await
            .map_err(|_| RegistryError::Closed)?;
        let (job, reply) = Job::new(work, slot);
        job::send(&self.inner.sender, job)?;
        reply.await.map_err(|_| RegistryError::Closed)?
    }

    /// Creates a provisioning claim (audit `claim.created`).
    pub async fn create_claim(
        &self,
        name: &str,
        secret: &str,
        default_group: &str,
    ) -> Result<Result<(), Refusal>, RegistryError> {
        if !valid_name(name) || !valid_name(default_group) {
            return Ok(Err(Refusal::InvalidName));
        }
        if secret.is_empty() || secret.len() > MAX_SECRET_LEN {
            return Ok(Err(Refusal::InvalidSecret));
        }
        let (name, group, hash) = (name.to_owned(), default_group.to_owned(), sha256(secret.as_bytes()));
        self.submit(move |ctx| ops::create_claim(ctx, &name, hash, &group))
            .await
    }

    /// Revokes a claim: no further provisioning through it (audit `claim.revoked`).
    pub async fn revoke_claim(&self, name: &str) -> Result<Result<(), Refusal>, RegistryError> {
        if !valid_name(name) {
            return Ok(Err(Refusal::NotFound));
        }
        let name = name.to_owned();
        self.submit(move |ctx| ops::revoke_claim(ctx, &name)).await
    }

    /// Provisions `serial` through `claim`; returns once the device row is committed.
    pub async fn provision(
        &self,
        claim: &str,
        serial: &str,
        meta: ProvisionMeta,
    ) -> Result<ProvisionOutcome, RegistryError> {
        if !valid_name(claim) {
            return Ok(ProvisionOutcome::Rejected {
                reason: RejectReason::InvalidClaim,
            });
        }
        if !valid_serial(serial) {
            return Ok(ProvisionOutcome::Rejected {
                reason: RejectReason::InvalidSerial,
            });
        }
        let (claim, serial, meta) = (claim.to_owned(), serial.to_owned(), clip_meta(meta));
        self.submit(move |ctx| ops::provision(ctx, &claim, &serial, &meta))
            .await
    }

    /// Decommissions an active device; its token and certificates stop authenticating once
    /// this returns. Returns how many certificates that revoked.
    pub async fn decommission(&self, device_id: &str) -> Result<Result<u64, Refusal>, RegistryError> {
        if !valid_device_id(device_id) {
            return Ok(Err(Refusal::NotFound));
        }
        let id = device_id.to_owned();
        self.submit(move |ctx| ops::decommission(ctx, &id)).await
    }

    /// Records a certificate the CA issued to an active device, revoking its earlier ones as
    /// the issue's reason says ([`IssueReason`]); `NotFound` when the device is not active.
    pub async fn record_certificate(
        &self,
        device_id: &str,
        cert: NewCertificate,
    ) -> Result<Result<Recorded, Refusal>, RegistryError> {
        if !valid_device_id(device_id) {
            return Ok(Err(Refusal::NotFound));
        }
        let id = device_id.to_owned();
        self.submit(move |ctx| certs::record(ctx, &id, &cert)).await
    }

    /// Notes that an active device is to rotate its certificate, the old one accepted for
    /// `grace_ms` after the new one is issued; `NotFound` when the device is not active.
    pub async fn request_rotation(&self, device_id: &str, grace_ms: u64) -> Result<Result<(), Refusal>, RegistryError> {
        if !valid_device_id(device_id) {
            return Ok(Err(Refusal::NotFound));
        }
        let id = device_id.to_owned();
        self.submit(move |ctx| certs::request_rotation(ctx, &id, grace_ms))
            .await
    }

    /// Lets a decommissioned serial be provisioned again, under a new id and token.
    pub async fn release_serial(&self, serial: &str) -> Result<Result<(), Refusal>, RegistryError> {
        if !valid_serial(serial) {
            return Ok(Err(Refusal::InvalidName));
        }
        let serial = serial.to_owned();
        self.submit(move |ctx| ops::release_serial(ctx, &serial)).await
    }

    /// Replaces the desired document of a group or an active device; returns its version,
    /// taken from a global counter so versions are comparable across scopes.
    pub async fn set_desired(
        &self,
        scope: ConfigScope,
        doc: Map<String, Value>,
    ) -> Result<Result<u64, Refusal>, RegistryError> {
        self.set_desired_expiring(scope, doc, None).await
    }

    /// As [`Registry::set_desired`], the config expiring `expiry_ms` from now (an MQTT 5
    /// message expiry: it is not delivered after), or never.
    pub async fn set_desired_expiring(
        &self,
        scope: ConfigScope,
        doc: Map<String, Value>,
        expiry_ms: Option<u64>,
    ) -> Result<Result<u64, Refusal>, RegistryError> {
        match &scope {
            ConfigScope::Group(name) if !valid_name(name) => return Ok(Err(Refusal::InvalidName)),
            ConfigScope::Device(id) if !valid_device_id(id) => return Ok(Err(Refusal::NotFound)),
            _ => {}
        }
        self.submit(move |ctx| ops::set_desired(ctx, &scope, doc, expiry_ms))
            .await
    }

    /// Stores the config version an active device reports running and the settings it
    /// holds, when it says (not audited); a report without settings keeps the last ones.
    /// Reports for unknown or retired devices are ignored.
    pub async fn report_config(
        &self,
        device_id: &str,
        version: u64,
        settings: Option<Map<String, Value>>,
    ) -> Result<(), RegistryError> {
        let version = ops::sql_int(version, "reported config version")?;
        if !valid_device_id(device_id) {
            return Ok(());
        }
        let id = device_id.to_owned();
        let settings = settings.map(|s| Value::Object(s).to_string());
        self.submit(move |ctx| ops::report_config(ctx, &id, version, settings.as_deref()))
            .await
    }

    /// What device `device_id` last reported of its config: the version, its settings, when.
    pub fn reported_config(&self, device_id: &str) -> Result<Option<ReportedConfig>, RegistryError> {
        reads::reported_config(&self.reader(), device_id)
    }

    /// Appends a rare device lifecycle event to the audit log (actor `device`).
    pub async fn record_lifecycle(&self, device_id: &str, action: &str, detail: Value) -> Result<(), RegistryError> {
        let (id, action) = (device_id.to_owned(), action.to_owned());
        self.submit(move |ctx| ops::record_lifecycle(ctx, &id, &action, &detail))
            .await
    }

    /// Records a command for an active device (audit `command.sent`); `NotFound` when the
    /// device is unknown or retired. Delivering it is the gateway's job.
    pub async fn send_command(
        &self,
        device_id: &str,
        name: &str,
        args: Value,
        timeout_ms: u64,
    ) -> Result<Result<CommandRecord, Refusal>, RegistryError> {
        if !valid_device_id(device_id) {
            return Ok(Err(Refusal::NotFound));
        }
        if !COMMAND_NAMES.contains(&name) {
            return Ok(Err(Refusal::InvalidName));
        }
        let (id, name) = (device_id.to_owned(), name.to_owned());
        self.submit(move |ctx| commands::create(ctx, &id, &name, &args, timeout_ms))
            .await
    }

    /// Sets an alert rule for `group` (`None`: every device); audit `alert_rule.created`.
    /// Refused: a bad group name, or parameters out of bounds ([`RuleKind::is_sane`]).
    pub async fn create_alert_rule(
        &self,
        kind: RuleKind,
        group: Option<String>,
    ) -> Result<Result<AlertRule, Refusal>, RegistryError> {
        if group.as_deref().is_some_and(|g| !valid_name(g)) {
            return Ok(Err(Refusal::InvalidName));
        }
        if !kind.is_sane() {
            return Ok(Err(Refusal::OutOfRange));
        }
        self.submit(move |ctx| alerts::create(ctx, kind, group.as_deref()).map(Ok))
            .await
    }

    /// Deletes alert rule `id` (`r-N`); `NotFound` when there is no such rule in force.
    pub async fn delete_alert_rule(&self, id: &str) -> Result<Result<(), Refusal>, RegistryError> {
        let Some(number) = alerts::parse_id(id) else {
            return Ok(Err(Refusal::NotFound));
        };
        let deleted = self.submit(move |ctx| alerts::delete(ctx, number)).await?;
        Ok(if deleted { Ok(()) } else { Err(Refusal::NotFound) })
    }

    /// The alert rules in force, oldest first.
    pub fn alert_rules(&self) -> Result<Vec<AlertRule>, RegistryError> {
        alerts::list(&self.reader())
    }

    /// Audits an alert `rule` raised (or cleared) for `device_id`.
    pub async fn record_alert(
        &self,
        raised: bool,
        rule: &str,
        device_id: &str,
        detail: Value,
    ) -> Result<(), RegistryError> {
        let (rule, device) = (rule.to_owned(), device_id.to_owned());
        self.submit(move |ctx| alerts::record(ctx, raised, &rule, &device, &detail))
            .await
    }

    /// Records a device's answer to command `command_id` (`c-N`) it was sent.
    pub async fn complete_command(
        &self,
        device_id: &str,
        command_id: &str,
        succeeded: bool,
        result: Value,
    ) -> Result<Completion, RegistryError> {
        let Some(id) = commands::parse_id(command_id) else {
            return Ok(Completion::Unknown);
        };
        let device = device_id.to_owned();
        self.submit(move |ctx| commands::complete(ctx, &device, id, succeeded, &result))
            .await
    }

    /// Records a new campaign over `group` installing `version` (audit `campaign.started`).
    /// The caller has checked the image exists and the waves grow to at most 1.
    pub async fn start_campaign(
        &self,
        group: &str,
        version: &str,
        waves: Vec<f64>,
        soak_ms: u64,
        halt_above: f64,
    ) -> Result<Result<CampaignRecord, Refusal>, RegistryError> {
        if !valid_name(group) {
            return Ok(Err(Refusal::InvalidName));
        }
        let (group, version) = (group.to_owned(), version.to_owned());
        self.submit(move |ctx| campaigns::create(ctx, &group, &version, &waves, soak_ms, halt_above).map(Ok))
            .await
    }

    /// Records that wave `wave` of a campaign targets `devices`; false (nothing recorded) when
    /// the campaign has ended meanwhile.
    pub async fn start_wave(&self, campaign: u64, wave: u64, devices: Vec<String>) -> Result<bool, RegistryError> {
        self.submit(move |ctx| campaigns::start_wave(ctx, campaign, wave, &devices))
            .await
    }

    /// Records a device's OTA report (`downloading` ... `rolled_back`).
    pub async fn report_ota(&self, device_id: &str, campaign: u64, state: &str) -> Result<OtaReport, RegistryError> {
        if !OTA_STATES.contains(&state) {
            return Ok(OtaReport::Unknown);
        }
        let (device, state) = (device_id.to_owned(), state.to_owned());
        self.submit(move |ctx| campaigns::report(ctx, &device, campaign, &state))
            .await
    }

    /// Ends a running campaign as halted (by the engine or an operator) or completed; false
    /// when it was not running.
    pub async fn end_campaign(
        &self,
        campaign: u64,
        halted: bool,
        reason: &str,
        by_operator: bool,
    ) -> Result<bool, RegistryError> {
        let state = if halted { "halted" } else { "completed" };
        let actor = if by_operator { Actor::Operator } else { Actor::System };
        let reason = reason.to_owned();
        self.submit(move |ctx| campaigns::end(ctx, campaign, state, &reason, actor))
            .await
    }

    /// Times out every pending command past its deadline; returns how many. A read looks
    /// first, so a sweep with nothing to expire costs no write transaction.
    pub async fn expire_commands(&self) -> Result<u64, RegistryError> {
        let now = (self.inner.clock)();
        if !commands::any_expired(&self.reader(), now)? {
            return Ok(0);
        }
        self.submit(commands::expire).await
    }

    // --- reads (blocking; async callers use spawn_blocking) ---

    fn reader(&self) -> MutexGuard<'_, Connection> {
        // rusqlite resets statements on drop, even while unwinding, so a connection whose
        // user panicked is still fit for the next query.
        self.inner.reader.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The device with that id, in any state.
    pub fn device(&self, id: &str) -> Result<Option<DeviceRecord>, RegistryError> {
        reads::device(&self.reader(), id)
    }

    /// The certificates issued to a device, oldest first, each with its state now (by the
    /// clock CONNECT is judged by).
    pub fn certificates(&self, device_id: &str) -> Result<Vec<CertificateRecord>, RegistryError> {
        certs::list(&self.reader(), device_id, (self.inner.clock)())
    }

    /// The serial's newest identity (its live row, else its last released row).
    pub fn device_by_serial(&self, serial: &str) -> Result<Option<DeviceRecord>, RegistryError> {
        reads::device_by_serial(&self.reader(), serial)
    }

    /// Devices in id order, of every state, optionally of one group; keyset pagination:
    /// pass the last id of the previous page as `after_id`. `limit` is capped at [`MAX_PAGE`].
    pub fn devices(
        &self,
        group: Option<&str>,
        after_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeviceRecord>, RegistryError> {
        reads::devices(&self.reader(), group, after_id, limit)
    }

    /// Group document overlaid by device document (top-level keys, device wins); version is
    /// the larger of the two; `None` if the device is unknown.
    pub fn effective_config(&self, device_id: &str) -> Result<Option<EffectiveConfig>, RegistryError> {
        reads::effective_config(&self.reader(), device_id)
    }

    /// Active devices (optionally of one group) whose reported version differs from the
    /// desired one; a device with nothing desired and nothing reported is not drifting.
    pub fn config_drift(&self, group: Option<&str>) -> Result<Vec<Drift>, RegistryError> {
        reads::config_drift(&self.reader(), group)
    }

    /// Audit entries after `after_id` (0 for the start), oldest first, at most `limit`
    /// (capped at [`MAX_PAGE`]).
    pub fn audit(&self, after_id: i64, limit: usize) -> Result<Vec<AuditEntry>, RegistryError> {
        reads::audit(&self.reader(), after_id, limit, None)
    }

    /// As [`Registry::audit`], only the entries of `action` when given.
    pub fn audit_of(
        &self,
        after_id: i64,
        limit: usize,
        action: Option<&str>,
    ) -> Result<Vec<AuditEntry>, RegistryError> {
        reads::audit(&self.reader(), after_id, limit, action)
    }

    /// Devices per state and claim counts, as of the last commit; from memory, so a health
    /// check costs nothing however large the registry.
    pub fn counts(&self) -> RegistryCounts {
        self.inner.shared.cache.counts()
    }

    /// The campaign with that id.
    pub fn campaign(&self, id: u64) -> Result<Option<CampaignRecord>, RegistryError> {
        campaigns::read(&self.reader(), id)
    }

    /// Campaigns still running.
    pub fn running_campaigns(&self) -> Result<Vec<CampaignRecord>, RegistryError> {
        campaigns::running(&self.reader())
    }

    /// Active device ids of a group in id order.
    pub fn campaign_targets(&self, group: &str) -> Result<Vec<String>, RegistryError> {
        campaigns::targets(&self.reader(), group)
    }

    /// A campaign's job counts per wave.
    pub fn wave_counts(&self, campaign: u64) -> Result<Vec<WaveCounts>, RegistryError> {
        campaigns::wave_counts(&self.reader(), campaign)
    }

    /// The command `c-N`, in any state.
    pub fn command(&self, command_id: &str) -> Result<Option<CommandRecord>, RegistryError> {
        match commands::parse_id(command_id) {
            Some(id) => commands::read(&self.reader(), id),
            None => Ok(None),
        }
    }
}
