//! Vector figures (docs/performance.md): batched insert rate, and KNN (k = 10) latency p50/p99 at 10k
//! and 100k vectors of 384 and 1536 dimensions, with and without a filter (a conversation,
//! 10% of the rows, applied inside the `vec0` query). Exact search: sqlite-vec scans every
//! vector (no quantized pre-filter, so there is no recall to report).
//!
//! `cargo bench --bench vector` (about 3 minutes); `VECTOR_BENCH_SIZES=10000` for a quick run.
//! A plain measuring harness rather than criterion: percentiles are the figure asked for.

// Counts shown as rates and milliseconds: float conversions of small numbers.
#![allow(clippy::cast_precision_loss)]

use std::fmt::Write;
use std::time::{Duration, Instant};

use mcp_platform::config::{RepositoryConfig, VectorSpace};
use mcp_platform::store::{NewMemory, Store};

const BATCH: usize = 1_000;
const QUERIES: usize = 60;
const K: usize = 10;

fn random_unit(rng: &mut fastrand::Rng, dimensions: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dimensions).map(|_| rng.f32() - 0.5).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    for x in &mut v {
        *x /= norm;
    }
    v
}

/// The `permille`th of `sorted`, in milliseconds.
fn percentile(sorted: &[Duration], permille: usize) -> f64 {
    sorted[(sorted.len() - 1) * permille / 1000].as_secs_f64() * 1000.0
}

async fn run(dimensions: u32, rows: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = RepositoryConfig {
        path: dir.path().join("bench.db"),
        ..RepositoryConfig::default()
    };
    let space = VectorSpace {
        embedder: "bench".into(),
        dimensions,
    };
    let store = Store::open_with(&config, &space).expect("store");
    let memories = store.memories();
    let mut rng = fastrand::Rng::with_seed(7);
    let started = Instant::now();
    for start in (0..rows).step_by(BATCH) {
        let batch = (start..(start + BATCH).min(rows))
            .map(|i| NewMemory {
                text: format!("memory {i}"),
                tags: Vec::new(),
                conversation_id: Some(format!("c{}", i % 10)),
                vector: random_unit(&mut rng, dimensions as usize),
            })
            .collect();
        memories.store_many(batch).await.expect("insert");
    }
    let insert_rate = rows as f64 / started.elapsed().as_secs_f64();
    let mut line = format!("| {rows} | {dimensions} | {insert_rate:.0} |");
    for filter in [None, Some("c3".to_string())] {
        let mut times = Vec::with_capacity(QUERIES);
        for _ in 0..QUERIES {
            let query = random_unit(&mut rng, dimensions as usize);
            let started = Instant::now();
            let hits = memories
                .find(&query, K, Vec::new(), filter.clone())
                .await
                .expect("knn");
            times.push(started.elapsed());
            assert_eq!(hits.len(), K);
        }
        times.sort();
        let _ = write!(
            line,
            " {:.1} / {:.1} |",
            percentile(&times, 500),
            percentile(&times, 990)
        );
    }
    println!("{line}");
    store.close(Duration::from_secs(30)).await.expect("close");
}

fn main() {
    let sizes: Vec<usize> = std::env::var("VECTOR_BENCH_SIZES").ok().map_or_else(
        || vec![10_000, 100_000],
        |s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
    );
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass nothing: run only
    // when benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    println!(
        "| vectors | dimensions | insert rows/s (batches of {BATCH}) | KNN k={K} p50 / p99 ms | filtered (10%) p50 / p99 ms |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for rows in sizes {
        for dimensions in [384, 1536] {
            runtime.block_on(run(dimensions, rows));
        }
    }
}
