//! Jobs for the writer thread: the type-erased work item with its typed reply channel, the
//! context a job's work runs in, and the bounded, closable sending side.

use std::sync::{Arc, PoisonError, RwLock};

use rusqlite::Connection;
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use super::cache::CacheUpdate;
use super::identity::SecretKey;
use super::records::RegistryError;

/// What a job's work function can touch while its savepoint is open.
pub struct WriteCtx<'a> {
    /// The read-write connection, inside the batch transaction.
    pub conn: &'a Connection,
    /// The clock reading for this job, unix ms.
    pub now: u64,
    /// Key for identity derivations.
    pub key: &'a SecretKey,
    updates: &'a mut Vec<CacheUpdate>,
}

impl<'a> WriteCtx<'a> {
    /// Context for one job; `updates` collects the cache changes of the whole batch.
    pub fn new(conn: &'a Connection, now: u64, key: &'a SecretKey, updates: &'a mut Vec<CacheUpdate>) -> Self {
        WriteCtx {
            conn,
            now,
            key,
            updates,
        }
    }

    /// Queues a cache change; it is applied only if this job and its batch commit.
    pub fn after_commit(&mut self, update: CacheUpdate) {
        self.updates.push(update);
    }
}

/// Type-erased job body plus its reply channel.
trait Task: Send {
    /// Runs the work; false when it failed (the error is kept for the reply).
    fn run(&mut self, ctx: &mut WriteCtx<'_>) -> bool;
    /// Sends the reply once the batch's fate is known.
    fn finish(self: Box<Self>, batch: Result<(), &Arc<rusqlite::Error>>);
}

struct TypedTask<T, F> {
    work: Option<F>,
    outcome: Option<Result<T, RegistryError>>,
    reply: oneshot::Sender<Result<T, RegistryError>>,
}

impl<T, F> Task for TypedTask<T, F>
where
    T: Send,
    F: FnOnce(&mut WriteCtx<'_>) -> Result<T, RegistryError> + Send,
{
    fn run(&mut self, ctx: &mut WriteCtx<'_>) -> bool {
        let Some(work) = self.work.take() else { return false };
        let outcome = work(ctx);
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn finish(self: Box<Self>, batch: Result<(), &Arc<rusqlite::Error>>) {
        let reply = match (self.outcome, batch) {
            // A job's own failure is the more precise answer, whatever became of the batch.
            (Some(Err(e)), _) => Err(e),
            (_, Err(e)) => Err(RegistryError::BatchFailed(Arc::clone(e))),
            (Some(Ok(value)), Ok(())) => Ok(value),
            // The writer runs every job before committing; a job without outcome in a
            // committed batch cannot occur, and if it did, "not done" is the honest answer.
            (None, Ok(())) => Err(RegistryError::Closed),
        };
        // The caller may have stopped waiting (its future was dropped); nothing to do then.
        let _ = self.reply.send(reply);
    }
}

/// A unit of work for the writer thread.
pub struct Job {
    task: Box<dyn Task>,
    // Held until the reply is sent, so the number of jobs in flight never exceeds the
    // channel's capacity and sending never blocks.
    _slot: OwnedSemaphorePermit,
}

impl Job {
    /// Wraps `work` and returns the job with the receiver of its reply.
    pub fn new<T, F>(work: F, slot: OwnedSemaphorePermit) -> (Job, oneshot::Receiver<Result<T, RegistryError>>)
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteCtx<'_>) -> Result<T, RegistryError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let task = Box::new(TypedTask {
            work: Some(work),
            outcome: None,
            reply,
        });
        (Job { task, _slot: slot }, rx)
    }

    /// Runs the job's work; false when it failed (its error is kept for the reply).
    pub fn run(&mut self, ctx: &mut WriteCtx<'_>) -> bool {
        self.task.run(ctx)
    }

    /// Sends the reply: the job's own error if it failed, else the batch's fate.
    pub fn finish(self, batch: Result<(), &Arc<rusqlite::Error>>) {
        self.task.finish(batch);
    }
}

/// The sending side, closable by [`super::Registry::close`] while other handles still exist.
pub type Sender = RwLock<Option<std::sync::mpsc::SyncSender<Job>>>;

/// Hands a job to the writer; `Closed` if the registry was closed or the writer is gone.
pub fn send(sender: &Sender, job: Job) -> Result<(), RegistryError> {
    // The lock only guards swapping the Option out; no panic can leave it half-done.
    let guard = sender.read().unwrap_or_else(PoisonError::into_inner);
    let tx = guard.as_ref().ok_or(RegistryError::Closed)?;
    // The caller holds a queue slot, so Full cannot occur; Disconnected means the thread died.
    tx.try_send(job).map_err(|_| RegistryError::Closed)
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::sync_channel;

    use tokio::sync::Semaphore;

    use super::*;

    fn slot() -> OwnedSemaphorePermit {
        Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap()
    }

    /// Runs `work` as a job against an in-memory database, then finishes it with `batch`.
    fn outcome<T: Send + 'static>(
        work: impl FnOnce(&mut WriteCtx<'_>) -> Result<T, RegistryError> + Send + 'static,
        batch: Result<(), &Arc<rusqlite::Error>>,
    ) -> (bool, Result<T, RegistryError>) {
        let conn = Connection::open_in_memory().unwrap();
        let key = SecretKey::fixed(1);
        let mut updates = Vec::new();
        let (mut job, mut rx) = Job::new(work, slot());
        let ran = job.run(&mut WriteCtx::new(&conn, 5, &key, &mut updates));
        job.finish(batch);
        (ran, rx.try_recv().unwrap())
    }

    #[test]
    fn reply_reflects_job_and_batch() {
        let batch_error = Arc::new(rusqlite::Error::InvalidQuery);
        let (ran, reply) = outcome(|ctx| Ok(ctx.now), Ok(()));
        assert!(ran);
        assert_eq!(reply.unwrap(), 5);
        let (ran, reply) = outcome(|_| Ok(1), Err(&batch_error));
        assert!(ran);
        assert!(matches!(reply, Err(RegistryError::BatchFailed(_))));
        let (ran, reply) = outcome(|ctx| Ok(ctx.conn.execute("no sql", [])?), Err(&batch_error));
        assert!(!ran);
        assert!(matches!(reply, Err(RegistryError::Sqlite(_))), "own error wins");
    }

    #[test]
    fn sending_after_close_or_writer_exit_is_closed() {
        let (tx, rx) = sync_channel(1);
        let sender: Sender = RwLock::new(Some(tx));
        send(&sender, Job::new(|_| Ok(()), slot()).0).unwrap();
        drop(rx);
        let gone = send(&sender, Job::new(|_| Ok(()), slot()).0);
        assert!(matches!(gone, Err(RegistryError::Closed)));
        sender.write().unwrap().take();
        let closed = send(&sender, Job::new(|_| Ok(()), slot()).0);
        assert!(matches!(closed, Err(RegistryError::Closed)));
    }
}
