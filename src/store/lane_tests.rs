//! Tests of the lane (`super`): its queue, its workers, its timeouts and its memory release.

use super::testing::{hold_the_worker, lane, lane_with_connections};
use super::*;
use std::sync::atomic::AtomicBool;

#[tokio::test]
async fn releasing_memory_shrinks_each_connection_once() {
    // The workers' own connections and the ones no worker holds, none counted twice.
    for (workers, connections) in [(4, 6), (1, 3), (3, 3)] {
        let (lane, _dir) = lane_with_connections(workers, connections, Duration::from_secs(5));
        let shrunk = lane.release_memory().await.expect("released");
        assert_eq!(shrunk, connections as usize, "{workers} workers");
    }
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
async fn stats_count_the_connection_a_running_job_holds() {
    let (lane, _dir) = lane(1, Duration::from_secs(5));
    let lane = Arc::new(lane);
    let idle = lane.stats();
    assert_eq!((idle.open, idle.idle, idle.in_use), (1, 1, 0));
    let (release, blocker) = hold_the_worker(&lane).await;
    let busy = lane.stats();
    assert_eq!((busy.open, busy.idle, busy.in_use), (1, 0, 1));
    release.send(()).expect("release");
    blocker.await.expect("join").expect("ran");
    // The worker counts the job done just after it answered.
    let deadline = Instant::now() + Duration::from_secs(10);
    while lane.stats().in_use > 0 {
        assert!(Instant::now() < deadline, "still in use");
        tokio::task::yield_now().await;
    }
    let after = lane.stats();
    assert_eq!((after.open, after.idle), (1, 1));
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
