//! Stream parsing and limiter figures (docs/performance.md):
//! - parse throughput of a 1000-chunk streamed answer, bytes through the SSE decoder and the
//!   assembler, in MB/s, with its network chunks cut at awkward places (`eventsource-stream`,
//!   the crate the decoder replaced, was measured beside it until issue 41: 2-3x slower, with
//!   several allocations per chunk);
//! - heap allocations per chunk (a counting allocator around the system one);
//! - the limiter's overhead per request (a slot and a rate token, no waiting).
//!
//! `cargo bench --bench sse`

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use mcp_platform::llm::{Assembler, Limits, SseDecoder};

/// Counts allocations so the report can give allocations per chunk.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the only addition is a
// relaxed counter increment, which cannot affect the allocation.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `realloc` on the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CHUNKS: usize = 1000;

/// A 1000-chunk answer as a provider sends it, cut into network reads of 1 to 700 bytes that
/// split events, field names and multibyte characters.
fn network_reads() -> (Vec<Bytes>, usize) {
    let mut stream = String::new();
    for i in 0..CHUNKS {
        let text = format!("token {i} – ünïcødé ");
        let chunk = serde_json::json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
        let _ = write!(stream, "data: {chunk}\n\n");
        if i % 100 == 0 {
            stream.push_str(": OPENROUTER PROCESSING\n\n");
        }
    }
    stream.push_str(
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
    );
    stream.push_str("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1000,\"total_tokens\":1009}}\n\n");
    stream.push_str("data: [DONE]\n\n");
    let bytes = stream.into_bytes();
    let total = bytes.len();
    let mut reads = Vec::new();
    let (mut start, mut step) = (0, 1);
    while start < total {
        let end = (start + step).min(total);
        reads.push(Bytes::copy_from_slice(&bytes[start..end]));
        start = end;
        step = (step * 7 + 13) % 700 + 1;
    }
    (reads, total)
}

/// Events the assembler made of `reads`, parsed by our decoder (as the provider reads a
/// stream).
fn parse_with_decoder(reads: Vec<Bytes>) -> usize {
    let mut decoder = SseDecoder::default();
    let mut assembler = Assembler::default();
    let mut count = 0;
    for read in reads {
        decoder.push(&read);
        while decoder.next_event().expect("well-formed") {
            count += assembler.feed(decoder.data()).expect("valid").len();
        }
    }
    count += assembler.end(true).expect("complete").len();
    count
}

fn parsing(c: &mut Criterion) {
    let (reads, total) = network_reads();
    let mut group = c.benchmark_group("sse");
    group.throughput(Throughput::Bytes(total as u64));
    group.bench_function("parse_1000_chunks/sse_decoder", |b| {
        b.iter_batched(
            || reads.clone(),
            |reads| black_box(parse_with_decoder(reads)),
            criterion::BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn limiter(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let limits = Limits::new(1000, u32::MAX, Duration::from_secs(30));
    c.bench_function("limiter_acquire_release", |b| {
        b.iter(|| rt.block_on(async { black_box(limits.acquire().await.expect("slot")) }));
    });
}

fn allocation_report() {
    let (reads, total) = network_reads();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let events = parse_with_decoder(reads);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    #[allow(clippy::cast_precision_loss)] // small counts
    let per_chunk = allocations as f64 / CHUNKS as f64;
    println!(
        "\nsse: {CHUNKS} chunks, {total} bytes, {events} events: SseDecoder {allocations} \
         allocations ({per_chunk:.1} per chunk)"
    );
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    parsing(&mut criterion);
    limiter(&mut criterion);
    criterion.final_summary();
    allocation_report();
}
