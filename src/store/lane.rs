//! A lane: one r2d2 pool served by dedicated worker threads that take jobs from a FIFO queue.
//!
//! Waiting happens in the queue, in arrival order, never in SQLite's busy handler: the writer
//! lane has a single thread, so the queue is the write gate and transactions run back to back
//! without a thread handoff while the write lock is held. Readers get one thread per pooled
//! connection. A job that waited longer than `connection_timeout` is not run: its caller gets
//! [`StoreError::PoolTimeout`] and can be sure nothing happened.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::oneshot;

use super::StoreError;
use super::connection::{Pool, PooledConnection};
use super::group_commit::{self, TxJob};
use super::pool_state::SeenPoolState;
use crate::stats::{Gauge, Histogram, LatencySummary};

type Outcome<T> = std::thread::Result<Result<T, StoreError>>;
type Job = Box<dyn FnOnce(Result<PooledConnection, StoreError>) + Send>;

/// What a queued job does with the worker's connection.
enum Work {
    /// Uses it as it is.
    Plain(Job),
    /// Runs inside a write transaction shared with the write jobs queued right behind it
    /// ([`group_commit`]); meant for a lane with one worker.
    Transaction(TxJob),
    /// The same, but first in its transaction (it ends the batch before it): the first job
    /// runs without a savepoint, and a savepoint costs a copy of every page the job changes.
    Leading(TxJob),
}

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;

/// Jobs queued per lane at most (each holds a closure and its data until a worker runs it).
pub const QUEUE_CAPACITY: usize = 4096;
const ABANDONED: u8 = 2;

struct Queued {
    work: Work,
    enqueued: Instant,
    /// `QUEUED` until a worker starts it (`RUNNING`) or its caller gives up (`ABANDONED`).
    state: Arc<AtomicU8>,
}

struct Shared {
    name: &'static str,
    pool: Pool,
    timeout: Duration,
    queued: Gauge,
    running: Gauge,
    wait: Histogram,
    timeouts: AtomicU64,
    /// Transactions committed by group commit, and the write jobs they carried.
    commits: AtomicU64,
    committed_jobs: AtomicU64,
    /// The pool's open connections as a worker last counted them: r2d2 counts them under the
    /// lock every checkout takes, which `/health` must not wait on while the lane is busy.
    seen: SeenPoolState,
}

pub struct Lane {
    shared: Arc<Shared>,
    /// `None` once closed: taking the write lock to close makes "check open, then enqueue"
    /// atomic, so nothing is queued behind a lane's final job.
    sender: RwLock<Option<crossbeam_channel::Sender<Queued>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    workers: usize,
}

/// `/health` figures for one pool and its queue.
#[derive(Debug, Clone, Serialize)]
pub struct PoolStats {
    /// Connections in the pool.
    pub size: u32,
    pub workers: usize,
    /// Connections open, as the lane's workers last counted them (all of them once the pool
    /// is built; fewer only while one that failed is opened again).
    pub open: u32,
    /// Open and not held by this lane's jobs.
    pub idle: u32,
    /// Held by this lane's running jobs.
    pub in_use: u32,
    /// Jobs waiting in the queue for a worker.
    pub waiting: usize,
    pub acquire_wait_ms: LatencySummary,
    pub timeouts: u64,
}

impl Lane {
    /// Starts `workers` threads serving `pool`.
    pub fn start(
        name: &'static str,
        pool: Pool,
        workers: usize,
        timeout: Duration,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            name,
            seen: SeenPoolState::new(&pool),
            pool,
            timeout,
            queued: Gauge::default(),
            running: Gauge::default(),
            wait: Histogram::new(),
            timeouts: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            committed_jobs: AtomicU64::new(0),
        });
        // Unbounded in the channel, bounded by `enqueue`: a bounded channel would allocate
        // (and touch) all its slots at start, ~260 KB a lane, for a queue that is nearly always
        // short.
        let (sender, receiver) = crossbeam_channel::unbounded::<Queued>();
        let mut threads = Vec::with_capacity(workers);
        for index in 0..workers {
            let (shared, receiver) = (shared.clone(), receiver.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("db-{name}-{index}"))
                    .stack_size(512 * 1024)
                    .spawn(move || serve(&shared, &receiver))?,
            );
        }
        Ok(Self {
            shared,
            sender: RwLock::new(Some(sender)),
            threads: Mutex::new(threads),
            workers,
        })
    }

    /// Runs `f` with a connection on a worker thread, in queue order. A panic in `f` is
    /// re-raised here. If this future is dropped before a worker starts the job, the job
    /// never runs; once started, it runs to the end.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut PooledConnection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (queued, answer) = Self::job(f);
        self.enqueue(queued, answer).await
    }

    /// Runs `f` inside a `BEGIN IMMEDIATE` transaction, in queue order, and answers once it is
    /// committed (its changes kept when `f` returns `Ok`, undone otherwise). Write jobs queued
    /// one behind another share one transaction and one `COMMIT` ([`group_commit`]), each in
    /// a savepoint of its own: for the writer lane, whose single worker is the write gate.
    pub async fn run_in_transaction<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (job, answer) = group_commit::job(f);
        self.enqueue(Queued::new(Work::Transaction(job)), answer)
            .await
    }

    /// As [`Lane::run_in_transaction`], but `f` opens its transaction (the jobs queued behind
    /// it may still join): for a job that changes many pages, which a savepoint would copy.
    pub async fn run_leading_transaction<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (job, answer) = group_commit::job(f);
        self.enqueue(Queued::new(Work::Leading(job)), answer).await
    }

    async fn enqueue<T>(
        &self,
        queued: Queued,
        answer: oneshot::Receiver<Outcome<T>>,
    ) -> Result<T, StoreError> {
        let ticket = Ticket::new(&queued, &self.shared);
        {
            let sender = self.sender.read().unwrap_or_else(PoisonError::into_inner);
            let Some(sender) = sender.as_ref() else {
                return Err(StoreError::Closed);
            };
            // Bounded: under a flood callers get `busy` at once instead of the queue (and the
            // memory its jobs hold) growing without end. (Callers checking at the same instant
            // may pass it together: a few jobs over, never without end.)
            if sender.len() >= QUEUE_CAPACITY {
                return Err(StoreError::QueueFull {
                    pool: self.shared.name,
                    capacity: QUEUE_CAPACITY,
                });
            }
            self.shared.queued.add(1);
            if sender.send(queued).is_err() {
                self.shared.queued.add(-1);
                return Err(StoreError::Closed);
            }
        }
        ticket.outcome(answer).await
    }

    /// Closes the lane at once: refuses new jobs, queues `last` behind every job already
    /// queued, and lets the workers exit once the queue is empty. The future gives `last`'s
    /// outcome.
    pub fn close_with<T, F>(
        &self,
        last: F,
    ) -> impl Future<Output = Result<T, StoreError>> + Send + use<T, F>
    where
        F: FnOnce(&mut PooledConnection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (queued, answer) = Self::job(last);
        let ticket = Ticket::new(&queued, &self.shared);
        let was_open = {
            let mut sender = self.sender.write().unwrap_or_else(PoisonError::into_inner);
            sender.take().is_some_and(|open| {
                self.shared.queued.add(1);
                open.send(queued).is_ok()
            })
        };
        async move {
            if !was_open {
                return Err(StoreError::Closed);
            }
            ticket.outcome(answer).await
        }
    }

    /// Refuses new jobs; those already queued still run, then the workers exit.
    pub fn close(&self) {
        self.sender
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// Waits (on a blocking thread) for the workers of a closed lane to exit.
    pub async fn join(&self, deadline: Duration) -> bool {
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        let joined =
            tokio::task::spawn_blocking(move || threads.into_iter().all(|t| t.join().is_ok()));
        matches!(tokio::time::timeout(deadline, joined).await, Ok(Ok(true)))
    }

    fn job<T, F>(f: F) -> (Queued, oneshot::Receiver<Outcome<T>>)
    where
        F: FnOnce(&mut PooledConnection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<Outcome<T>>();
        let span = tracing::Span::current();
        let job: Job = Box::new(move |conn| {
            let outcome = span
                .in_scope(|| catch_unwind(AssertUnwindSafe(|| conn.and_then(|mut c| f(&mut c)))));
            let _ = reply.send(outcome);
        });
        (Queued::new(Work::Plain(job)), answer)
    }

    /// Frees what SQLite holds in memory on the pool's connections (`PRAGMA shrink_memory`:
    /// their page caches; pages are read again from the file, most often from the system's
    /// cache, when next needed). One job: it shrinks its own connection, then every connection
    /// no job holds, each once. On a quiet server, the usual case, that is every connection,
    /// and the answer is their number; a connection a running job holds is left as it is.
    pub async fn release_memory(&self) -> Result<usize, StoreError> {
        let pool = self.shared.pool.clone();
        self.run(move |conn| {
            conn.execute_batch("PRAGMA shrink_memory")?;
            Ok(1 + shrink_idle(&pool)?)
        })
        .await
    }

    /// Transactions group commit has committed, and the write jobs they carried.
    pub fn commits(&self) -> (u64, u64) {
        (
            self.shared.commits.load(Ordering::Relaxed),
            self.shared.committed_jobs.load(Ordering::Relaxed),
        )
    }

    /// Lock-free: the open connections as the workers last counted them (at most
    /// [`super::pool_state::POOL_STATE_EVERY`] old while the lane is busy), and in use those
    /// its running jobs hold (for the writers, not the checkpointer's, which shares their
    /// pool).
    pub fn stats(&self) -> PoolStats {
        let open = self.shared.seen.open();
        let in_use = u32::try_from(self.shared.running.current())
            .unwrap_or(u32::MAX)
            .min(open);
        PoolStats {
            size: self.shared.pool.max_size(),
            workers: self.workers,
            open,
            idle: open - in_use,
            in_use,
            waiting: self.shared.queued.current(),
            acquire_wait_ms: self.shared.wait.summary(),
            timeouts: self.shared.timeouts.load(Ordering::Relaxed),
        }
    }
}

impl Queued {
    fn new(work: Work) -> Self {
        Self {
            work,
            enqueued: Instant::now(),
            state: Arc::new(AtomicU8::new(QUEUED)),
        }
    }
}

/// The caller's side of a queued job. Dropped before the job started (the caller went away),
/// it abandons the job so that it never runs.
struct Ticket {
    state: Arc<AtomicU8>,
    enqueued: Instant,
    shared: Arc<Shared>,
    settled: bool,
}

impl Ticket {
    fn new(queued: &Queued, shared: &Arc<Shared>) -> Self {
        Self {
            state: queued.state.clone(),
            enqueued: queued.enqueued,
            shared: shared.clone(),
            settled: false,
        }
    }

    /// Abandons the job if no worker has started it; `true` if it was abandoned.
    fn abandon(&self) -> bool {
        let abandoned = self
            .state
            .compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if abandoned {
            // Its time in the queue is a wait like any other, and the one that matters most.
            self.shared.wait.record(self.enqueued.elapsed());
        }
        abandoned
    }

    async fn outcome<T>(
        mut self,
        mut answer: oneshot::Receiver<Outcome<T>>,
    ) -> Result<T, StoreError> {
        let outcome = match tokio::time::timeout(self.shared.timeout, &mut answer).await {
            Ok(outcome) => outcome,
            Err(_) if self.abandon() => {
                self.settled = true;
                self.shared.timeouts.fetch_add(1, Ordering::Relaxed);
                return Err(self.shared.pool_timeout());
            }
            // A worker took it just now: it runs to the end.
            Err(_) => answer.await,
        };
        self.settled = true;
        match outcome {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(StoreError::Closed),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.settled {
            self.abandon();
        }
    }
}

impl Shared {
    fn pool_timeout(&self) -> StoreError {
        StoreError::PoolTimeout {
            pool: self.name,
            waited: self.timeout,
        }
    }
}

/// A worker: takes jobs in order until every sender is gone.
fn serve(shared: &Shared, receiver: &crossbeam_channel::Receiver<Queued>) {
    let mut held_back = None;
    loop {
        let queued = match held_back.take() {
            Some(queued) => queued,
            None => match receiver.recv() {
                Ok(queued) => queued,
                Err(_) => return,
            },
        };
        let Some((work, waited)) = admit(shared, queued) else {
            continue;
        };
        let _running = shared.running.enter();
        let conn = connection(shared, waited);
        match work {
            Work::Plain(job) => job(conn),
            Work::Transaction(job) | Work::Leading(job) => match conn {
                Err(error) => job(Err(error)).answer_alone(),
                Ok(mut conn) => {
                    group_commit::run_batch(
                        &mut conn,
                        job,
                        || next_write(shared, receiver, &mut held_back),
                        |report| {
                            if report.committed {
                                shared.commits.fetch_add(1, Ordering::Relaxed);
                                shared
                                    .committed_jobs
                                    .fetch_add(report.jobs as u64, Ordering::Relaxed);
                            }
                        },
                    );
                }
            },
        }
        // The job's connection is back in the pool.
        let idle = held_back.is_none() && receiver.is_empty();
        shared.seen.refresh(&shared.pool, idle);
    }
}

/// Shrinks every connection of `pool` no one holds, each once (they are held until all are
/// done), and gives their number.
fn shrink_idle(pool: &Pool) -> Result<usize, StoreError> {
    let mut shrunk = Vec::new();
    while let Some(idle) = pool.try_get() {
        idle.execute_batch("PRAGMA shrink_memory")?;
        shrunk.push(idle);
    }
    Ok(shrunk.len())
}

/// Takes a job off the queue for running: `None` if its caller gave up.
fn admit(shared: &Shared, queued: Queued) -> Option<(Work, Duration)> {
    shared.queued.add(-1);
    let waited = queued.enqueued.elapsed();
    if queued
        .state
        .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return None; // its caller timed out and gave up
    }
    shared.wait.record(waited);
    Some((queued.work, waited))
}

/// The pool timeout, counted, for a job that waited `waited` in the queue, if that was too long.
fn expired(shared: &Shared, waited: Duration) -> Option<StoreError> {
    (waited > shared.timeout).then(|| {
        shared.timeouts.fetch_add(1, Ordering::Relaxed);
        shared.pool_timeout()
    })
}

/// A pooled connection for a job that waited `waited`, unless it waited too long.
fn connection(shared: &Shared, waited: Duration) -> Result<PooledConnection, StoreError> {
    if let Some(timeout) = expired(shared, waited) {
        return Err(timeout);
    }
    shared.pool.get_timeout(shared.timeout).map_err(|_| {
        shared.timeouts.fetch_add(1, Ordering::Relaxed);
        shared.pool_timeout()
    })
}

/// The next write job already waiting, to join the open batch. A job of another kind, or one
/// that leads its own, ends the batch and is `held_back` to run after its `COMMIT`; one that
/// waited past the timeout is answered at once and skipped.
fn next_write(
    shared: &Shared,
    receiver: &crossbeam_channel::Receiver<Queued>,
    held_back: &mut Option<Queued>,
) -> Option<TxJob> {
    loop {
        let queued = receiver.try_recv().ok()?;
        if matches!(queued.work, Work::Plain(_) | Work::Leading(_)) {
            *held_back = Some(queued);
            return None;
        }
        let Some((Work::Transaction(job), waited)) = admit(shared, queued) else {
            continue;
        };
        if let Some(timeout) = expired(shared, waited) {
            job(Err(timeout)).answer_alone();
            continue;
        }
        return Some(job);
    }
}

/// A one-connection writer lane on a fresh file, and a way to hold its worker: for this
/// module's tests and group commit's.
#[cfg(test)]
pub(super) mod testing {
    use super::*;
    use crate::store::connection::{Pragmas, build_pool};

    pub fn lane(workers: usize, timeout: Duration) -> (Lane, tempfile::TempDir) {
        lane_with_connections(workers, 1, timeout)
    }

    pub fn lane_with_connections(
        workers: usize,
        connections: u32,
        timeout: Duration,
    ) -> (Lane, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = crate::config::RepositoryConfig::default();
        std::fs::File::create(dir.path().join("t.db")).expect("create the file");
        let pool = build_pool(
            &dir.path().join("t.db"),
            "writer",
            connections,
            Pragmas::from_config(&config, false),
            timeout,
            crate::store::connection::opener(),
        )
        .expect("pool");
        (
            Lane::start("writer", pool, workers, timeout).expect("lane"),
            dir,
        )
    }

    /// Starts a job that keeps the lane's one worker busy until `release` is sent, and waits
    /// until it runs: every later job is queued.
    pub async fn hold_the_worker(
        lane: &Arc<Lane>,
    ) -> (
        std::sync::mpsc::Sender<()>,
        tokio::task::JoinHandle<Result<Option<()>, StoreError>>,
    ) {
        let (release, hold) = std::sync::mpsc::channel::<()>();
        // The job says it started. The lane's in-use count may still hold the previous job,
        // whose worker has answered but not yet finished its turn of the loop: waiting on that
        // count returned before this job ran, and a `queue_write` after it then saw the
        // waiting count move twice (its own job in, this one out) and waited forever.
        let (started, has_started) = std::sync::mpsc::channel::<()>();
        let blocker = tokio::spawn({
            let lane = lane.clone();
            async move {
                lane.run(move |_| {
                    let _ = started.send(());
                    Ok(hold.recv().ok())
                })
                .await
            }
        });
        while has_started.try_recv().is_err() {
            tokio::task::yield_now().await;
        }
        (release, blocker)
    }
}

#[cfg(test)]
#[path = "lane_tests.rs"]
mod tests;
