//! The group-commit writer thread.
//!
//! Design: one OS thread owns the only read-write connection. Callers send jobs through a
//! bounded channel; the thread blocks for one job, drains up to `max_batch - 1` more without
//! waiting, and runs them all in one `BEGIN IMMEDIATE` transaction, each inside its own
//! SAVEPOINT so a failing job rolls back alone. One COMMIT (one WAL fsync under
//! `synchronous=FULL`) then covers the whole batch, which is what lets durable provisioning
//! scale with load instead of being capped by fsync latency. Only after COMMIT are the auth
//! caches updated and the replies sent, so no caller ever sees uncommitted state. Jobs of a
//! batch run in arrival order against the same transaction, so each sees its predecessors'
//! writes exactly as if they had committed one by one. The job type and the sending side
//! live in `job.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;

use rusqlite::Connection;

use super::cache::{AuthCache, CacheUpdate};
use super::identity::SecretKey;
use super::job::{Job, WriteCtx};
use super::records::WriterStats;

/// Capacity of the write queue, in jobs. Callers first take one of as many semaphore permits
/// asynchronously, so a full queue suspends them instead of blocking a runtime thread. Four
/// default batches: the writer always finds a full batch waiting while it fsyncs the previous
/// one, yet a stalled disk pushes back on callers after a few milliseconds' worth of work.
pub const WRITE_QUEUE: usize = 4096;

/// How many prepared statements the writer keeps compiled: the transaction-control ones plus
/// every statement of every write operation, with room to spare.
const STATEMENT_CACHE: usize = 64;

/// The clock type: unix milliseconds.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// State the writer shares with the registry handles.
#[derive(Debug)]
pub struct Shared {
    /// Authentication caches, updated after each commit.
    pub cache: AuthCache,
    batches: AtomicU64,
    jobs: AtomicU64,
    largest_batch: AtomicU64,
}

impl Shared {
    /// Wraps loaded caches with zeroed counters.
    pub fn new(cache: AuthCache) -> Shared {
        Shared {
            cache,
            batches: AtomicU64::new(0),
            jobs: AtomicU64::new(0),
            largest_batch: AtomicU64::new(0),
        }
    }

    /// Snapshot of the counters.
    pub fn stats(&self) -> WriterStats {
        WriterStats {
            batches: self.batches.load(Ordering::Relaxed),
            jobs: self.jobs.load(Ordering::Relaxed),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
        }
    }
}

/// The writer thread's state.
pub struct Writer {
    conn: Connection,
    key: SecretKey,
    clock: Clock,
    max_batch: usize,
    shared: Arc<Shared>,
}

impl Writer {
    /// Prepares a writer over an open, migrated connection.
    pub fn new(conn: Connection, key: SecretKey, clock: Clock, max_batch: usize, shared: Arc<Shared>) -> Writer {
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Writer {
            conn,
            key,
            clock,
            max_batch: max_batch.max(1),
            shared,
        }
    }

    /// Starts the thread. It exits after the channel closes and every queued job is done.
    pub fn spawn(self, rx: Receiver<Job>) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("registry-writer".into())
            .spawn(move || self.run(rx))
    }

    fn run(mut self, rx: Receiver<Job>) {
        // recv keeps yielding buffered jobs after the last sender is gone, so closing drains.
        while let Ok(first) = rx.recv() {
            let mut batch = Vec::with_capacity(self.max_batch.min(WRITE_QUEUE));
            batch.push(first);
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
        }
    }

    fn commit_batch(&mut self, mut jobs: Vec<Job>) {
        let n = jobs.len() as u64;
        self.shared.batches.fetch_add(1, Ordering::Relaxed);
        self.shared.jobs.fetch_add(n, Ordering::Relaxed);
        self.shared.largest_batch.fetch_max(n, Ordering::Relaxed);

        if let Err(e) = self.exec("BEGIN IMMEDIATE") {
            return fail_all(jobs, e);
        }
        let mut updates = Vec::new();
        let ran = jobs.iter_mut().try_for_each(|job| self.run_job(job, &mut updates));
        if let Err(e) = ran {
            self.rollback();
            return fail_all(jobs, e);
        }
        if let Err(e) = self.exec("COMMIT") {
            self.rollback();
            return fail_all(jobs, e);
        }
        self.shared.cache.apply(updates);
        for job in jobs {
            job.finish(Ok(()));
        }
    }

    /// Runs one job in its savepoint. Err only for failures that doom the whole batch.
    fn run_job(&mut self, job: &mut Job, updates: &mut Vec<CacheUpdate>) -> Result<(), rusqlite::Error> {
        self.exec("SAVEPOINT job")?;
        let mark = updates.len();
        let mut ctx = WriteCtx::new(&self.conn, (self.clock)(), &self.key, updates);
        if job.run(&mut ctx) {
            return self.exec("RELEASE job");
        }
        updates.truncate(mark);
        // Some errors (I/O, disk full) make SQLite roll back the whole transaction itself;
        // then the earlier jobs' work is gone too and the batch cannot commit.
        if self.conn.is_autocommit() {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                Some("SQLite rolled back the batch transaction after a job failed".into()),
            ));
        }
        self.exec("ROLLBACK TO job")?;
        self.exec("RELEASE job")
    }

    fn exec(&self, sql: &str) -> Result<(), rusqlite::Error> {
        self.conn.prepare_cached(sql)?.execute([]).map(drop)
    }

    fn rollback(&self) {
        if !self.conn.is_autocommit() {
            // Failing to roll back leaves nothing better to do: the next BEGIN will fail
            // and report the connection's state to that batch's callers.
            let _ = self.exec("ROLLBACK");
        }
    }
}

fn fail_all(jobs: Vec<Job>, error: rusqlite::Error) {
    let error = Arc::new(error);
    for job in jobs {
        job.finish(Err(&error));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use tokio::sync::oneshot;

    use super::super::tests::{Scratch, accepted, with_claim};
    use super::super::{DeviceAuth, ProvisionMeta, ProvisionOutcome, Registry, RegistryError};
    use super::*;
    use crate::registry::cache::DeviceEntry;

    /// Parks the writer inside a job until the returned sender fires, so that the jobs
    /// queued meanwhile are certain to form one batch.
    async fn park(reg: &Registry) -> (mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
        let (started_tx, started_rx) = oneshot::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let r = reg.clone();
        let parked = tokio::spawn(async move {
            r.submit(move |_| {
                let _ = started_tx.send(());
                let _ = go_rx.recv();
                Ok(())
            })
            .await
            .unwrap();
        });
        started_rx.await.unwrap();
        (go_tx, parked)
    }

    /// Waits until `n` jobs besides the parked one hold queue slots (and so are queued).
    async fn queued(reg: &Registry, n: usize) {
        while WRITE_QUEUE - reg.inner.slots.available_permits() < n + 1 {
            tokio::task::yield_now().await;
        }
        // A slot is taken just before the job is sent; give the last sender time to send.
        tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(20)))
            .await
            .unwrap();
    }

    fn provision(reg: &Registry, claim: &str, serial: &str) -> tokio::task::JoinHandle<ProvisionOutcome> {
        let (reg, claim, serial) = (reg.clone(), claim.to_owned(), serial.to_owned());
        tokio::spawn(async move { reg.provision(&claim, &serial, ProvisionMeta::default()).await.unwrap() })
    }

    const ORPHAN_DEVICE: &str = "INSERT INTO devices(id, serial, claim, group_name, generation, state, created_at)
         VALUES ('d-0000000000000000beef', 'SN-X', 'no-such-claim', 'g', 1, 'active', 0)";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_failing_job_rolls_back_alone() {
        let dir = Scratch::new("savepoint");
        let reg = with_claim(&dir, "factory").await;
        let before = reg.stats();
        let (go, parked) = park(&reg).await;
        let a = provision(&reg, "factory", "SN-A");
        let r = reg.clone();
        let bad = tokio::spawn(async move {
            r.submit(|ctx| {
                let entry = DeviceEntry {
                    token_hash: None,
                    group: "g".into(),
                    state: crate::registry::DeviceState::Active,
                };
                ctx.after_commit(CacheUpdate::Device("d-0000000000000000beef".into(), entry));
                ctx.conn.execute(ORPHAN_DEVICE, [])?;
                Ok(())
            })
            .await
        });
        let b = provision(&reg, "factory", "SN-B");
        queued(&reg, 3).await;
        go.send(()).unwrap();
        parked.await.unwrap();
        accepted(a.await.unwrap());
        accepted(b.await.unwrap());
        assert!(matches!(bad.await.unwrap(), Err(RegistryError::Sqlite(_))));
        let after = reg.stats();
        assert_eq!(after.batches - before.batches, 2, "parked job, then one batch of three");
        assert!(after.largest_batch >= 3);
        assert_eq!(reg.counts().active, 2);
        // The failed job's cache change was discarded with its savepoint.
        assert_eq!(
            reg.authenticate_device("d-0000000000000000beef", b"x"),
            DeviceAuth::Unknown
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_commit_fails_every_job_of_the_batch() {
        let dir = Scratch::new("commit");
        let reg = with_claim(&dir, "factory").await;
        let (go, parked) = park(&reg).await;
        let a = {
            let r = reg.clone();
            tokio::spawn(async move { r.provision("factory", "SN-A", ProvisionMeta::default()).await })
        };
        let r = reg.clone();
        // A deferred foreign-key violation passes its statement and savepoint, then fails COMMIT.
        let poison = tokio::spawn(async move {
            r.submit(|ctx| {
                Ok(ctx
                    .conn
                    .execute_batch(&format!("PRAGMA defer_foreign_keys = ON; {ORPHAN_DEVICE}"))?)
            })
            .await
        });
        queued(&reg, 2).await;
        go.send(()).unwrap();
        parked.await.unwrap();
        assert!(matches!(a.await.unwrap(), Err(RegistryError::BatchFailed(_))));
        assert!(matches!(poison.await.unwrap(), Err(RegistryError::BatchFailed(_))));
        assert_eq!(reg.counts().active, 0);
        // The writer recovered: the same request now commits as a first provisioning.
        let (id, token, _, existed) = accepted(
            reg.provision("factory", "SN-A", ProvisionMeta::default())
                .await
                .unwrap(),
        );
        assert!(!existed);
        assert_eq!(
            reg.authenticate_device(&id, token.as_bytes()),
            DeviceAuth::Ok {
                group: "default".into()
            }
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn same_serial_twice_in_one_batch_is_a_retry() {
        let dir = Scratch::new("samebatch");
        let reg = with_claim(&dir, "factory").await;
        let (go, parked) = park(&reg).await;
        let first = provision(&reg, "factory", "SN-1");
        let second = provision(&reg, "factory", "SN-1");
        queued(&reg, 2).await;
        go.send(()).unwrap();
        parked.await.unwrap();
        let (x, y) = (accepted(first.await.unwrap()), accepted(second.await.unwrap()));
        assert_eq!((&x.0, &x.1), (&y.0, &y.1));
        assert!(x.3 != y.3, "exactly one of them is the retry");
        assert_eq!(reg.devices(None, None, 10).unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_drains_queued_jobs_then_refuses() {
        let dir = Scratch::new("close");
        let reg = with_claim(&dir, "factory").await;
        let (go, parked) = park(&reg).await;
        let jobs: Vec<_> = (0..5).map(|i| provision(&reg, "factory", &format!("SN-{i}"))).collect();
        queued(&reg, 5).await;
        let closing = reg.clone();
        let closer = tokio::task::spawn_blocking(move || closing.close());
        go.send(()).unwrap();
        closer.await.unwrap().unwrap();
        parked.await.unwrap();
        for job in jobs {
            accepted(job.await.unwrap());
        }
        let refused = reg.provision("factory", "SN-9", ProvisionMeta::default()).await;
        assert!(matches!(refused, Err(RegistryError::Closed)));
        assert_eq!(reg.counts().active, 5, "counts still answer after close");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrency_2000_provisions_are_group_committed() {
        const N: usize = 2_000;
        const SEQUENTIAL: usize = 100;
        let dir = Scratch::new("concurrency");
        let reg = with_claim(&dir, "factory").await;

        // Baseline: one provision at a time pays one fsync each.
        let start = Instant::now();
        for i in 0..SEQUENTIAL {
            accepted(
                reg.provision("factory", &format!("SEQ-{i}"), ProvisionMeta::default())
                    .await
                    .unwrap(),
            );
        }
        let sequential = start.elapsed();

        let before = reg.stats();
        let start = Instant::now();
        let tasks: Vec<_> = (0..N)
            .map(|i| provision(&reg, "factory", &format!("SN-{i:05}")))
            .collect();
        let mut issued = Vec::with_capacity(N);
        for task in tasks {
            let (id, token, _, existed) = accepted(task.await.unwrap());
            assert!(!existed);
            issued.push((id, token));
        }
        let elapsed = start.elapsed();
        let after = reg.stats();

        let ids: HashSet<&String> = issued.iter().map(|(id, _)| id).collect();
        assert_eq!(ids.len(), N);
        assert_eq!(reg.counts().active, (N + SEQUENTIAL) as u64);
        for (id, token) in &issued {
            assert_eq!(
                reg.authenticate_device(id, token.as_bytes()),
                DeviceAuth::Ok {
                    group: "default".into()
                }
            );
        }
        println!(
            "concurrency: {N} concurrent provisions in {:.1} ms = {:.0}/s over {} batches (largest {}); \
             sequential baseline {SEQUENTIAL} in {:.1} ms = {:.0}/s",
            elapsed.as_secs_f64() * 1e3,
            N as f64 / elapsed.as_secs_f64(),
            after.batches - before.batches,
            after.largest_batch,
            sequential.as_secs_f64() * 1e3,
            SEQUENTIAL as f64 / sequential.as_secs_f64(),
        );
    }
}
