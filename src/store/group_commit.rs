//! Group commit: write transactions that queued up behind one another at the single writer run
//! in one SQLite transaction, each inside a savepoint of its own, and one `COMMIT` makes them
//! all durable. A job's callers hear back only after that `COMMIT`, so "`Ok` means durable"
//! holds as it did with one transaction per job.
//!
//! A job whose closure fails (or panics) is rolled back to its savepoint and answered with its
//! own error; the others in the batch are unaffected. If SQLite itself gives up the transaction
//! (a full disk, an I/O error: a savepoint can no longer be released, or the `COMMIT` fails),
//! nothing of the batch was committed and every job in it is answered with that error.
//!
//! Batches form only from jobs already waiting: the writer never holds a job back to wait for
//! company, so a lone write costs what it did before.
//!
//! A savepoint is not free: SQLite copies every page a job changes inside one into the
//! savepoint's journal first (in memory, in 1 KB pieces). A job that changes many pages (vectors
//! in bulk, a deletion, an import) is queued as *leading* (`Store::write_large`): it ends the
//! batch before it and runs first in its own, where it needs no savepoint.

use std::panic::{AssertUnwindSafe, catch_unwind};

use rusqlite::{Transaction, TransactionBehavior};
use tokio::sync::oneshot;

use super::StoreError;
use super::connection::PooledConnection;

/// Most write jobs one `COMMIT` covers.
pub const MAX_BATCH: usize = 64;

type Outcome<T> = std::thread::Result<Result<T, StoreError>>;

/// A write job: runs its closure in the batch's transaction (or is handed the reason it cannot
/// run) and says whether its changes stay.
pub type TxJob = Box<dyn FnOnce(Result<&Transaction<'_>, StoreError>) -> Staged + Send>;

/// A write job that has run, waiting for its batch's fate.
pub struct Staged {
    /// Its closure returned `Ok`: its savepoint is released, else rolled back.
    keep: bool,
    /// Answers the caller, given whether the batch committed.
    answer: Box<dyn FnOnce(Result<(), StoreError>) + Send>,
}

impl Staged {
    /// Answers now, for a job that reaches no `COMMIT` (it failed, or timed out in the queue).
    pub fn answer_alone(self) {
        (self.answer)(Ok(()));
    }
}

/// Wraps `f` as a [`TxJob`]; the receiver gets its outcome once the batch is settled.
pub fn job<T, F>(f: F) -> (TxJob, oneshot::Receiver<Outcome<T>>)
where
    F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    let (reply, answer) = oneshot::channel::<Outcome<T>>();
    let span = tracing::Span::current();
    let job: TxJob = Box::new(move |tx| {
        let outcome: Outcome<T> =
            span.in_scope(|| catch_unwind(AssertUnwindSafe(|| tx.and_then(f))));
        let keep = matches!(outcome, Ok(Ok(_)));
        Staged {
            keep,
            answer: Box::new(move |committed| {
                let outcome = match (outcome, committed) {
                    (Ok(Ok(_)), Err(error)) => Ok(Err(error)),
                    (outcome, _) => outcome,
                };
                let _ = reply.send(outcome);
            }),
        }
    });
    (job, answer)
}

/// What [`run_batch`] did, for the lane's figures.
pub struct BatchReport {
    pub jobs: usize,
    pub committed: bool,
}

/// Runs `first`, then (if it succeeded) every job `next` yields (up to [`MAX_BATCH`]), in one
/// transaction on `conn`; commits; tells `settled` (before any caller hears back); answers them all.
pub fn run_batch(
    conn: &mut PooledConnection,
    first: TxJob,
    mut next: impl FnMut() -> Option<TxJob>,
    settled: impl FnOnce(BatchReport),
) {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(error) => {
            settled(BatchReport {
                jobs: 1,
                committed: false,
            });
            first(Err(error.into())).answer_alone();
            return;
        }
    };
    // The first job needs no savepoint: if it fails, the transaction holds nothing else.
    let staged = first(Ok(&tx));
    if !staged.keep {
        drop(tx);
        settled(BatchReport {
            jobs: 1,
            committed: false,
        });
        staged.answer_alone();
        return;
    }
    let mut answers = vec![staged.answer];
    let mut failure = None;
    let mut job = next();
    while let Some(current) = job.take() {
        let (answer, settled) = stage(&tx, current);
        answers.push(answer);
        if let Err(error) = settled {
            failure = Some(error);
            break;
        }
        if answers.len() < MAX_BATCH {
            job = next();
        }
    }
    let committed = match failure {
        // Dropping the transaction rolls back whatever SQLite still holds of it.
        Some(error) => Err(error),
        None => tx.commit().map_err(StoreError::from),
    };
    settled(BatchReport {
        jobs: answers.len(),
        committed: committed.is_ok(),
    });
    answer_all(answers, committed);
}

type Answer = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// Runs one job inside a savepoint and releases or rolls back to it. An error means the
/// transaction can take no more (SQLite rolled it back).
fn stage(tx: &Transaction<'_>, job: TxJob) -> (Answer, Result<(), StoreError>) {
    if let Err(error) = statement(tx, "SAVEPOINT job") {
        let staged = job(Err(error.for_another_caller()));
        return (staged.answer, Err(error));
    }
    let staged = job(Ok(tx));
    let settled = if staged.keep {
        statement(tx, "RELEASE job")
    } else {
        statement(tx, "ROLLBACK TO job").and_then(|()| statement(tx, "RELEASE job"))
    };
    (staged.answer, settled)
}

fn statement(tx: &Transaction<'_>, sql: &str) -> Result<(), StoreError> {
    tx.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// The batch's fate to every job in it: the original error to the last, copies to the rest.
fn answer_all(mut answers: Vec<Answer>, committed: Result<(), StoreError>) {
    let last = answers.pop();
    for answer in answers {
        answer(match &committed {
            Ok(()) => Ok(()),
            Err(error) => Err(error.for_another_caller()),
        });
    }
    if let Some(last) = last {
        last(committed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::lane::Lane;
    use super::super::lane::testing::{hold_the_worker, lane};
    use super::*;

    async fn lane_with_table() -> (Arc<Lane>, tempfile::TempDir) {
        let (lane, dir) = lane(1, std::time::Duration::from_secs(30));
        let lane = Arc::new(lane);
        lane.run(|conn| Ok(conn.execute_batch("CREATE TABLE t (v INTEGER NOT NULL)")?))
            .await
            .expect("table");
        (lane, dir)
    }

    /// Releases the worker `jobs` were queued behind (in this order) and gives each outcome,
    /// a panic included.
    async fn queued_together<T: Send + 'static>(
        lane: &Arc<Lane>,
        jobs: Vec<tokio::task::JoinHandle<T>>,
        release: std::sync::mpsc::Sender<()>,
    ) -> Vec<Result<T, tokio::task::JoinError>> {
        let _ = release.send(());
        let mut outcomes = Vec::new();
        for job in jobs {
            outcomes.push(job.await);
        }
        assert_eq!(lane.stats().waiting, 0);
        outcomes
    }

    /// Spawns a write of `v` (then `then`), and waits until it is queued: only behind a held
    /// worker (a free one may take it before it is ever seen waiting).
    async fn queue_write(
        lane: &Arc<Lane>,
        v: i64,
        then: fn(&Transaction<'_>) -> Result<(), StoreError>,
    ) -> tokio::task::JoinHandle<Result<(), StoreError>> {
        let waiting = lane.stats().waiting;
        let task = tokio::spawn({
            let lane = lane.clone();
            async move {
                lane.run_in_transaction(move |tx| {
                    tx.execute("INSERT INTO t (v) VALUES (?1)", [v])?;
                    then(tx)
                })
                .await
            }
        });
        while lane.stats().waiting == waiting {
            tokio::task::yield_now().await;
        }
        task
    }

    #[expect(clippy::unnecessary_wraps, reason = "a `then` of `queue_write`")]
    fn fine(_: &Transaction<'_>) -> Result<(), StoreError> {
        Ok(())
    }

    async fn values(lane: &Lane) -> Vec<i64> {
        lane.run(|conn| {
            let mut statement = conn.prepare("SELECT v FROM t ORDER BY v")?;
            let rows = statement.query_map([], |row| row.get(0))?;
            Ok(rows.collect::<Result<Vec<i64>, _>>()?)
        })
        .await
        .expect("read")
    }

    #[tokio::test]
    async fn writes_queued_together_share_one_commit_and_all_are_answered() {
        let (lane, _dir) = lane_with_table().await;
        let (release, blocker) = hold_the_worker(&lane).await;
        let mut jobs = Vec::new();
        for v in 0..20 {
            jobs.push(queue_write(&lane, v, fine).await);
        }
        for outcome in queued_together(&lane, jobs, release).await {
            outcome.expect("task").expect("committed");
        }
        blocker.await.expect("task").expect("blocker");
        assert_eq!(values(&lane).await, (0..20).collect::<Vec<_>>());
        assert_eq!(
            lane.commits(),
            (1, 20),
            "one COMMIT for the 20 queued writes"
        );
        // A write alone is a batch of one.
        lane.run_in_transaction(|tx| Ok(tx.execute("INSERT INTO t (v) VALUES (20)", [])?))
            .await
            .expect("alone");
        assert_eq!(lane.commits(), (2, 21));
    }

    #[tokio::test]
    async fn a_leading_write_ends_the_batch_before_it_and_opens_its_own() {
        let (lane, _dir) = lane_with_table().await;
        let (release, blocker) = hold_the_worker(&lane).await;
        let mut jobs = vec![
            queue_write(&lane, 1, fine).await,
            queue_write(&lane, 2, fine).await,
        ];
        let waiting = lane.stats().waiting;
        let leading = tokio::spawn({
            let lane = lane.clone();
            async move {
                lane.run_leading_transaction(|tx| {
                    Ok(tx.execute("INSERT INTO t (v) VALUES (3)", [])?)
                })
                .await
            }
        });
        while lane.stats().waiting == waiting {
            tokio::task::yield_now().await;
        }
        jobs.push(queue_write(&lane, 4, fine).await);
        for outcome in queued_together(&lane, jobs, release).await {
            outcome.expect("task").expect("committed");
        }
        assert_eq!(leading.await.expect("task").expect("committed"), 1);
        blocker.await.expect("task").expect("blocker");
        assert_eq!(values(&lane).await, vec![1, 2, 3, 4]);
        assert_eq!(
            lane.commits(),
            (2, 4),
            "one COMMIT for 1 and 2, one for the leading write and 4, which joined it"
        );
    }

    #[tokio::test]
    async fn a_failing_or_panicking_write_is_undone_alone_and_the_others_commit() {
        let (lane, _dir) = lane_with_table().await;
        let (release, blocker) = hold_the_worker(&lane).await;
        let jobs = vec![
            queue_write(&lane, 1, fine).await,
            queue_write(&lane, 2, |_| {
                Err(StoreError::InvalidInput("refused".into()))
            })
            .await,
            queue_write(&lane, 3, fine).await,
            queue_write(&lane, 4, |_| panic!("boom")).await,
            queue_write(&lane, 5, fine).await,
        ];
        let outcomes = queued_together(&lane, jobs, release).await;
        blocker.await.expect("task").expect("blocker");
        assert!(outcomes[0].as_ref().is_ok_and(Result::is_ok));
        assert!(matches!(
            outcomes[1].as_ref().map(Result::as_ref),
            Ok(Err(StoreError::InvalidInput(_)))
        ));
        assert!(outcomes[2].as_ref().is_ok_and(Result::is_ok));
        assert!(
            outcomes[3]
                .as_ref()
                .is_err_and(tokio::task::JoinError::is_panic),
            "the panic reaches its own caller"
        );
        assert!(outcomes[4].as_ref().is_ok_and(Result::is_ok));
        assert_eq!(values(&lane).await, vec![1, 3, 5]);
        assert_eq!(lane.commits(), (1, 5));
    }

    #[tokio::test]
    async fn a_first_write_that_fails_is_rolled_back_and_the_next_starts_a_batch_of_its_own() {
        let (lane, _dir) = lane_with_table().await;
        let (release, blocker) = hold_the_worker(&lane).await;
        let jobs = vec![
            queue_write(&lane, 1, |_| {
                Err(StoreError::InvalidInput("refused".into()))
            })
            .await,
            queue_write(&lane, 2, fine).await,
            queue_write(&lane, 3, fine).await,
        ];
        let outcomes: Vec<_> = queued_together(&lane, jobs, release)
            .await
            .into_iter()
            .map(|outcome| outcome.expect("task"))
            .collect();
        blocker.await.expect("task").expect("blocker");
        assert!(matches!(outcomes[0], Err(StoreError::InvalidInput(_))));
        assert!(outcomes[1].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
        assert_eq!(values(&lane).await, vec![2, 3]);
        assert_eq!(lane.commits(), (1, 2));
    }

    #[tokio::test]
    async fn a_transaction_sqlite_gave_up_answers_every_write_in_it_with_an_error() {
        let (lane, _dir) = lane_with_table().await;
        let (release, blocker) = hold_the_worker(&lane).await;
        // The second write ends the transaction under the batch (as SQLite does on a full disk
        // or an I/O error): the first, already staged, was never committed either.
        let jobs = vec![
            queue_write(&lane, 1, fine).await,
            queue_write(&lane, 2, |tx| Ok(tx.execute_batch("ROLLBACK")?)).await,
        ];
        let outcomes: Vec<_> = queued_together(&lane, jobs, release)
            .await
            .into_iter()
            .map(|outcome| outcome.expect("task"))
            .collect();
        blocker.await.expect("task").expect("blocker");
        assert!(
            outcomes.iter().all(Result::is_err),
            "no write may be told it committed: {outcomes:?}"
        );
        assert_eq!(values(&lane).await, Vec::<i64>::new());
        assert_eq!(lane.commits(), (0, 0));
        // The writer goes on.
        lane.run_in_transaction(|tx| Ok(tx.execute("INSERT INTO t (v) VALUES (7)", [])?))
            .await
            .expect("a later write commits");
        assert_eq!(values(&lane).await, vec![7]);
    }

    #[tokio::test]
    async fn a_plain_job_queued_between_writes_runs_after_the_commit_of_those_before_it() {
        let (lane, _dir) = lane_with_table().await;
        let (release, blocker) = hold_the_worker(&lane).await;
        let first = queue_write(&lane, 1, fine).await;
        let second = queue_write(&lane, 2, fine).await;
        let reader = tokio::spawn({
            let lane = lane.clone();
            async move {
                lane.run(|conn| {
                    Ok((
                        conn.is_autocommit(),
                        conn.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))?,
                    ))
                })
                .await
            }
        });
        while lane.stats().waiting < 3 {
            tokio::task::yield_now().await;
        }
        let third = queue_write(&lane, 3, fine).await;
        let _ = release.send(());
        let (outside_a_transaction, seen) = reader.await.expect("task").expect("read");
        for write in [first, second, third] {
            write.await.expect("task").expect("committed");
        }
        blocker.await.expect("task").expect("blocker");
        assert!(
            outside_a_transaction,
            "a plain job never runs inside a batch"
        );
        assert_eq!(seen, 2);
        assert_eq!(lane.commits(), (2, 3));
    }
}
