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
use crate::stats::{Gauge, Histogram, LatencySummary};

type Outcome<T> = std::thread::Result<Result<T, StoreError>>;
type Job = Box<dyn FnOnce(Result<PooledConnection, StoreError>) + Send>;

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;

/// Jobs queued per lane at most (each holds a closure and its data until a worker runs it).
pub const QUEUE_CAPACITY: usize = 4096;
const ABANDONED: u8 = 2;

struct Queued {
    job: Job,
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
    pub size: u32,
    pub workers: usize,
    pub idle: u32,
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
            pool,
            timeout,
            queued: Gauge::default(),
            running: Gauge::default(),
            wait: Histogram::new(),
            timeouts: AtomicU64::new(0),
        });
        // One slot more than callers may fill: kept for `close_with`'s last job (should a race
        // of callers take it, `close_with` waits for a worker to free a slot: milliseconds).
        let (sender, receiver) = crossbeam_channel::bounded::<Queued>(QUEUE_CAPACITY + 1);
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
        let ticket = Ticket::new(&queued, &self.shared);
        {
            let sender = self.sender.read().unwrap_or_else(PoisonError::into_inner);
            let Some(sender) = sender.as_ref() else {
                return Err(StoreError::Closed);
            };
            // Bounded: under a flood callers get `busy` at once instead of the queue (and the
            // memory its jobs hold) growing without end.
            if sender.len() >= QUEUE_CAPACITY {
                return Err(StoreError::QueueFull {
                    pool: self.shared.name,
                    capacity: QUEUE_CAPACITY,
                });
            }
            self.shared.queued.add(1);
            match sender.try_send(queued) {
                Ok(()) => {}
                Err(crossbeam_channel::TrySendError::Full(_)) => {
                    self.shared.queued.add(-1);
                    return Err(StoreError::QueueFull {
                        pool: self.shared.name,
                        capacity: QUEUE_CAPACITY,
                    });
                }
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                    self.shared.queued.add(-1);
                    return Err(StoreError::Closed);
                }
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
        let queued = Queued {
            job,
            enqueued: Instant::now(),
            state: Arc::new(AtomicU8::new(QUEUED)),
        };
        (queued, answer)
    }

    pub fn stats(&self) -> PoolStats {
        let state = self.shared.pool.state();
        PoolStats {
            size: self.shared.pool.max_size(),
            workers: self.workers,
            idle: state.idle_connections,
            in_use: state.connections.saturating_sub(state.idle_connections),
            waiting: self.shared.queued.current(),
            acquire_wait_ms: self.shared.wait.summary(),
            timeouts: self.shared.timeouts.load(Ordering::Relaxed),
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
    while let Ok(queued) = receiver.recv() {
        shared.queued.add(-1);
        let waited = queued.enqueued.elapsed();
        if queued
            .state
            .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            continue; // its caller timed out and gave up
        }
        shared.wait.record(waited);
        let _running = shared.running.enter();
        let conn = if waited > shared.timeout {
            shared.timeouts.fetch_add(1, Ordering::Relaxed);
            Err(shared.pool_timeout())
        } else {
            shared.pool.get_timeout(shared.timeout).map_err(|_| {
                shared.timeouts.fetch_add(1, Ordering::Relaxed);
                shared.pool_timeout()
            })
        };
        (queued.job)(conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::connection::{Pragmas, build_pool};
    use std::sync::atomic::AtomicBool;

    fn lane(workers: usize, timeout: Duration) -> (Lane, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = crate::config::RepositoryConfig::default();
        std::fs::File::create(dir.path().join("t.db")).expect("create the file");
        let pool = build_pool(
            &dir.path().join("t.db"),
            "writer",
            1,
            Pragmas::from_config(&config, false),
            timeout,
        )
        .expect("pool");
        (
            Lane::start("writer", pool, workers, timeout).expect("lane"),
            dir,
        )
    }

    /// Starts a job that keeps the lane's one worker busy until `release` is sent, and waits
    /// until it runs: every later job is queued.
    async fn hold_the_worker(
        lane: &Arc<Lane>,
    ) -> (
        std::sync::mpsc::Sender<()>,
        tokio::task::JoinHandle<Result<Option<()>, StoreError>>,
    ) {
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let blocker = tokio::spawn({
            let lane = lane.clone();
            async move { lane.run(move |_| Ok(hold.recv().ok())).await }
        });
        while lane.stats().in_use == 0 {
            tokio::task::yield_now().await;
        }
        (release, blocker)
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_with_busy() {
        let (lane, _dir) = lane(1, Duration::from_secs(30));
        let lane = Arc::new(lane);
        let (release, blocker) = hold_the_worker(&lane).await;
        let queued: Vec<_> = (0..QUEUE_CAPACITY)
            .map(|_| {
                let lane = lane.clone();
                tokio::spawn(async move { lane.run(|_| Ok(())).await })
            })
            .collect();
        while lane.stats().waiting < QUEUE_CAPACITY {
            tokio::task::yield_now().await;
        }
        let refused = lane.run(|_| Ok(())).await;
        assert!(
            matches!(refused, Err(StoreError::QueueFull { .. })),
            "{refused:?}"
        );
        assert_eq!(
            refused.err().map(|e| e.code()),
            Some(crate::wire::ErrorCode::Busy)
        );
        release.send(()).expect("release");
        blocker.await.expect("join").expect("ran");
        for job in queued {
            job.await.expect("join").expect("every queued job ran");
        }
        assert!(lane.run(|_| Ok(())).await.is_ok(), "room again");
    }

    #[tokio::test]
    async fn a_single_worker_lane_runs_jobs_in_arrival_order() {
        let (lane, _dir) = lane(1, Duration::from_secs(5));
        let lane = Arc::new(lane);
        let order = Arc::new(Mutex::new(Vec::new()));
        let (release, blocker) = hold_the_worker(&lane).await;
        let mut tasks = Vec::new();
        for i in 0..20 {
            let (queued, order) = (lane.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                queued
                    .run(move |_| {
                        order.lock().expect("not poisoned").push(i);
                        Ok(())
                    })
                    .await
            }));
            while lane.stats().waiting < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        release.send(()).expect("release");
        blocker.await.expect("task").expect("blocker ran");
        for task in tasks {
            task.await.expect("task").expect("job ran");
        }
        assert_eq!(
            *order.lock().expect("not poisoned"),
            (0..20).collect::<Vec<_>>()
        );
        assert_eq!(lane.stats().acquire_wait_ms.count, 21);
    }

    #[tokio::test]
    async fn a_job_that_waits_past_the_timeout_never_runs() {
        let (lane, _dir) = lane(1, Duration::from_millis(50));
        let lane = Arc::new(lane);
        let ran = Arc::new(AtomicBool::new(false));
        let slow = tokio::spawn({
            let lane = lane.clone();
            async move {
                lane.run(|_| {
                    std::thread::sleep(Duration::from_millis(300));
                    Ok(())
                })
                .await
            }
        });
        while lane.stats().in_use == 0 {
            tokio::task::yield_now().await;
        }
        let flag = ran.clone();
        let queued_late = lane.run(move |_| {
            flag.store(true, Ordering::SeqCst);
            Ok(())
        });
        assert!(matches!(
            queued_late.await,
            Err(StoreError::PoolTimeout { pool: "writer", .. })
        ));
        slow.await.expect("task").expect("slow job ran");
        lane.run(|_| Ok(())).await.expect("the lane still works");
        assert!(
            !ran.load(Ordering::SeqCst),
            "an abandoned job must not run later"
        );
        assert_eq!(lane.stats().timeouts, 1);
    }

    #[tokio::test]
    async fn a_panic_in_a_job_reaches_the_caller_and_the_worker_survives() {
        let (lane, _dir) = lane(1, Duration::from_secs(5));
        let lane = Arc::new(lane);
        let panicking = tokio::spawn({
            let lane = lane.clone();
            async move {
                lane.run(|_| -> Result<(), StoreError> { panic!("boom") })
                    .await
            }
        });
        assert!(panicking.await.expect_err("panicked").is_panic());
        assert_eq!(lane.run(|_| Ok(7)).await.expect("still serving"), 7);
    }

    #[tokio::test]
    async fn a_closed_lane_runs_its_last_job_after_the_queue_then_refuses_and_its_threads_exit() {
        let (lane, _dir) = lane(1, Duration::from_secs(5));
        let lane = Arc::new(lane);
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (release, blocker) = hold_the_worker(&lane).await;
        let queued: Vec<_> = (0..5)
            .map(|i| {
                let (lane, order) = (lane.clone(), order.clone());
                tokio::spawn(async move {
                    lane.run(move |_| {
                        order.lock().expect("lock").push(i);
                        Ok(())
                    })
                    .await
                })
            })
            .collect();
        while lane.stats().waiting < 5 {
            tokio::task::yield_now().await;
        }
        let last = order.clone();
        let closing = lane.close_with(move |_| {
            last.lock().expect("lock").push(99);
            Ok(())
        });
        let refused = lane.run(|_| Ok(())).await;
        assert!(
            matches!(refused, Err(StoreError::Closed)),
            "a closed lane takes no new job"
        );
        release.send(()).expect("release");
        closing.await.expect("the last job ran");
        blocker.await.expect("task").expect("blocker ran");
        for task in queued {
            task.await.expect("task").expect("queued job ran");
        }
        assert_eq!(
            *order.lock().expect("lock"),
            vec![0, 1, 2, 3, 4, 99],
            "the last job runs after the queue"
        );
        assert!(
            lane.join(Duration::from_secs(5)).await,
            "workers exit once closed and drained"
        );
    }

    #[tokio::test]
    async fn a_job_whose_caller_went_away_before_it_started_never_runs() {
        let (lane, _dir) = lane(1, Duration::from_secs(5));
        let lane = Arc::new(lane);
        let (release, blocker) = hold_the_worker(&lane).await;
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let gone = tokio::spawn({
            let lane = lane.clone();
            async move {
                lane.run(move |_| {
                    flag.store(true, Ordering::SeqCst);
                    Ok(())
                })
                .await
            }
        });
        while lane.stats().waiting == 0 {
            tokio::task::yield_now().await;
        }
        gone.abort();
        assert!(gone.await.expect_err("aborted").is_cancelled());
        release.send(()).expect("release");
        blocker.await.expect("task").expect("blocker ran");
        lane.run(|_| Ok(())).await.expect("the lane goes on");
        assert!(!ran.load(Ordering::SeqCst), "the abandoned job ran");
    }
}
