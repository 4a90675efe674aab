//! Store figures (docs/performance.md):
//! - point reads by id: the 16-reader pool vs one shared connection, 1 to 16 concurrent tasks;
//! - one message per transaction vs a batch of 100 in one;
//! - 4 concurrent writers: wait p50/p99/max through the write gate vs plain `busy_timeout`.
//!
//! `cargo bench --bench store` runs all; `cargo bench --bench store -- reads` filters the
//! criterion groups (the contention report always runs last).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use mcp_platform::config::RepositoryConfig;
use mcp_platform::stats::Histogram;
use mcp_platform::store::{CHECKPOINT_INTERVAL, ConversationId, NewMessage, Role, Store};
use rusqlite::Connection;
use tokio::runtime::Runtime;

const CONVERSATIONS: usize = 10_000;
const READS_PER_TASK: usize = 200;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn open_store(dir: &Path) -> Store {
    let config = RepositoryConfig {
        path: dir.join("bench.db"),
        ..RepositoryConfig::default()
    };
    Store::open(&config).expect("store opens")
}

fn seed(rt: &Runtime, store: &Store) -> Vec<ConversationId> {
    rt.block_on(async {
        let repo = store.conversations();
        let mut ids = Vec::with_capacity(CONVERSATIONS);
        for _ in 0..CONVERSATIONS {
            ids.push(repo.create(Some("bench".into())).await.expect("create").id);
        }
        ids
    })
}

const POINT_READ: &str = "SELECT id, title, created_at, updated_at, message_count, token_count \
                          FROM conversations WHERE id = ?1";

fn point_read(conn: &Connection, id: &str) -> Option<String> {
    let mut statement = conn.prepare_cached(POINT_READ).expect("prepare");
    statement.query_row([id], |r| r.get(1)).expect("row")
}

/// One connection shared by every task behind an async lock held for the whole call, as the
/// Python original shared its one connection.
#[derive(Clone)]
struct LockedConnection(Arc<tokio::sync::Mutex<Option<Connection>>>);

impl LockedConnection {
    async fn read(&self, id: String) -> Option<String> {
        let mut guard = self.0.lock().await;
        let conn = guard.take().expect("connection present");
        let (conn, title) = tokio::task::spawn_blocking(move || {
            let title = point_read(&conn, &id);
            (conn, title)
        })
        .await
        .expect("blocking");
        *guard = Some(conn);
        title
    }
}

/// One connection owned by one thread that serves a queue (the tokio-rusqlite design): the
/// best a single connection can do.
#[derive(Clone)]
struct ConnectionThread(
    std::sync::mpsc::Sender<(String, tokio::sync::oneshot::Sender<Option<String>>)>,
);

impl ConnectionThread {
    fn start(path: &Path) -> Self {
        let (sender, receiver) =
            std::sync::mpsc::channel::<(String, tokio::sync::oneshot::Sender<Option<String>>)>();
        let conn = Connection::open(path).expect("open");
        std::thread::spawn(move || {
            while let Ok((id, reply)) = receiver.recv() {
                let _ = reply.send(point_read(&conn, &id));
            }
        });
        Self(sender)
    }

    async fn read(&self, id: String) -> Option<String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.0.send((id, reply)).expect("thread alive");
        answer.await.expect("answered")
    }
}

/// Runs `tasks` tasks of READS_PER_TASK reads each, `read` picking the mechanism.
async fn read_burst<F, Fut>(tasks: usize, ids: Arc<Vec<ConversationId>>, read: F)
where
    F: Fn(ConversationId) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (ids, read) = (ids.clone(), read.clone());
            tokio::spawn(async move {
                for i in 0..READS_PER_TASK {
                    read(ids[(t * 7919 + i * 104_729) % ids.len()].clone()).await;
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("task");
    }
}

/// Point reads: T tasks each read READS_PER_TASK conversations by id.
fn reads(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(dir.path());
    let ids = Arc::new(seed(&rt, &store));
    let path = dir.path().join("bench.db");
    let locked = LockedConnection(Arc::new(tokio::sync::Mutex::new(Some(
        Connection::open(&path).expect("open"),
    ))));
    let thread = ConnectionThread::start(&path);

    let mut group = c.benchmark_group("reads");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4));
    for tasks in [1usize, 4, 16] {
        group.throughput(Throughput::Elements((tasks * READS_PER_TASK) as u64));
        group.bench_with_input(
            BenchmarkId::new("pool_16_readers", tasks),
            &tasks,
            |b, &tasks| {
                b.to_async(&rt).iter(|| {
                    let store = store.clone();
                    read_burst(tasks, ids.clone(), move |id| {
                        let store = store.clone();
                        async move {
                            black_box(store.conversations().get(&id).await.expect("read"));
                        }
                    })
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("one_connection_locked", tasks),
            &tasks,
            |b, &tasks| {
                b.to_async(&rt).iter(|| {
                    let locked = locked.clone();
                    read_burst(tasks, ids.clone(), move |id| {
                        let locked = locked.clone();
                        async move {
                            black_box(locked.read(id.to_string()).await);
                        }
                    })
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("one_connection_thread", tasks),
            &tasks,
            |b, &tasks| {
                b.to_async(&rt).iter(|| {
                    let thread = thread.clone();
                    read_burst(tasks, ids.clone(), move |id| {
                        let thread = thread.clone();
                        async move {
                            black_box(thread.read(id.to_string()).await);
                        }
                    })
                });
            },
        );
    }
    group.finish();
}

/// 100 messages appended one transaction each, or as one batch.
fn batching(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(dir.path());
    let id = rt
        .block_on(store.conversations().create(None))
        .expect("create")
        .id;
    let message = || {
        NewMessage::new(
            Role::User,
            "a message of a typical short length for a chat turn",
        )
    };

    let mut group = c.benchmark_group("append_100");
    group.sample_size(20).throughput(Throughput::Elements(100));
    group.bench_function("one_per_transaction", |b| {
        b.to_async(&rt).iter(|| async {
            let repo = store.conversations();
            for _ in 0..100 {
                repo.append(&id, vec![message()]).await.expect("append");
            }
        });
    });
    group.bench_function("one_batch", |b| {
        b.to_async(&rt).iter(|| async {
            let batch = (0..100).map(|_| message()).collect();
            store
                .conversations()
                .append(&id, batch)
                .await
                .expect("append");
        });
    });
    group.finish();
}

const WRITERS: usize = 4;
const WRITES_PER_WRITER: usize = 500;

/// Per-write latency with 4 concurrent writers through the store (gate + pool).
fn contention_through_gate() -> (Histogram, Duration, mcp_platform::stats::LatencySummary) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(dir.path());
    let id = rt
        .block_on(store.conversations().create(None))
        .expect("create")
        .id;
    let latency = Arc::new(Histogram::new());
    let started = Instant::now();
    rt.block_on(async {
        // As the application does: checkpoints in the background, off the write path.
        let checkpoints = tokio::spawn({
            let store = store.clone();
            async move {
                loop {
                    tokio::time::sleep(CHECKPOINT_INTERVAL).await;
                    store.checkpoint().await.expect("checkpoint");
                }
            }
        });
        let tasks: Vec<_> = (0..WRITERS)
            .map(|_| {
                let (store, id, latency) = (store.clone(), id.clone(), latency.clone());
                tokio::spawn(async move {
                    let repo = store.conversations();
                    for _ in 0..WRITES_PER_WRITER {
                        let started = Instant::now();
                        repo.append(&id, vec![NewMessage::new(Role::User, "m")])
                            .await
                            .expect("append");
                        latency.record(started.elapsed());
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("writer");
        }
        checkpoints.abort();
    });
    let elapsed = started.elapsed();
    let gate = store.stats().write_gate.wait_ms;
    (
        Arc::try_unwrap(latency).unwrap_or_else(|_| Histogram::new()),
        elapsed,
        gate,
    )
}

/// The same appends from 4 tasks, each with its own connection on a blocking thread and no
/// gate: they contend in SQLite's busy handler, as a server without the gate would.
fn contention_busy_timeout() -> (Histogram, Duration, usize) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(dir.path());
    let id = rt
        .block_on(store.conversations().create(None))
        .expect("create")
        .id
        .to_string();
    drop(store);
    let latency = Arc::new(Histogram::new());
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..WRITERS)
            .map(|_| {
                let (path, id, latency, failures) = (
                    dir.path().join("bench.db"),
                    id.clone(),
                    latency.clone(),
                    failures.clone(),
                );
                tokio::spawn(async move {
                    let conn = Connection::open(path).expect("open");
                    conn.busy_timeout(Duration::from_secs(5))
                        .expect("busy_timeout");
                    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
                        .expect("pragmas");
                    let mut conn = Some(conn);
                    for _ in 0..WRITES_PER_WRITER {
                        let (mut c, id) = (conn.take().expect("connection"), id.clone());
                        let begun = Instant::now();
                        let (c, ok) = tokio::task::spawn_blocking(move || {
                            let ok = append_raw(&mut c, &id).is_ok();
                            (c, ok)
                        })
                        .await
                        .expect("blocking");
                        latency.record(begun.elapsed());
                        if !ok {
                            failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        conn = Some(c);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("writer");
        }
    });
    let elapsed = started.elapsed();
    let failed = failures.load(std::sync::atomic::Ordering::Relaxed);
    (
        Arc::try_unwrap(latency).unwrap_or_else(|_| Histogram::new()),
        elapsed,
        failed,
    )
}

fn append_raw(conn: &mut Connection, id: &str) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let seq: i64 = tx.query_row(
        "UPDATE conversations SET next_seq = next_seq + 1, message_count = message_count + 1 WHERE id = ?1 RETURNING next_seq - 1",
        [id],
        |r| r.get(0),
    )?;
    tx.execute(
        "INSERT INTO messages (conversation_id, seq, role, content, created_at) VALUES (?1, ?2, 'user', 'm', 0)",
        rusqlite::params![id, seq],
    )?;
    tx.commit()
}

fn contention_report() {
    let (gated, gated_time, gate_wait) = contention_through_gate();
    let (busy, busy_time, failed) = contention_busy_timeout();
    let (g, b) = (gated.summary(), busy.summary());
    #[allow(clippy::cast_precision_loss)] // 2000 fits an f64 exactly
    let rate = |d: Duration| (WRITERS * WRITES_PER_WRITER) as f64 / d.as_secs_f64();
    println!("\nwrite contention: {WRITERS} writers x {WRITES_PER_WRITER} appends (ms; appends/s)");
    println!(
        "{:<30} {:>8} {:>8} {:>8} {:>10} {:>7}",
        "", "p50", "p99", "max", "appends/s", "errors"
    );
    let row = |name: &str, p50: f64, p99: f64, max: f64, per_s: String, errors: usize| {
        println!("{name:<30} {p50:>8.3} {p99:>8.3} {max:>8.3} {per_s:>10} {errors:>7}");
    };
    row(
        "gate: wait in queue",
        gate_wait.p50,
        gate_wait.p99,
        gate_wait.max,
        String::new(),
        0,
    );
    row(
        "gate: whole append",
        g.p50,
        g.p99,
        g.max,
        format!("{:.0}", rate(gated_time)),
        0,
    );
    row(
        "busy_timeout: whole append",
        b.p50,
        b.p99,
        b.max,
        format!("{:.0}", rate(busy_time)),
        failed,
    );
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    reads(&mut criterion);
    batching(&mut criterion);
    criterion.final_summary();
    contention_report();
}
