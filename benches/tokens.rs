//! Token counting (README, Performance, round two): our compact counter against tiktoken-rs,
//! on the README (prose, code, tables) and on one long run of a single character, for both
//! encodings. The counts are asserted equal before timing.
//!
//! `cargo bench --bench tokens`

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use mcp_platform::tokens::Encoding;

fn counting(c: &mut Criterion) {
    let readme = include_str!("../README.md");
    let run = "a".repeat(64 << 10);
    let cases = [
        (Encoding::O200kBase, tiktoken_rs::o200k_base_singleton()),
        (Encoding::Cl100kBase, tiktoken_rs::cl100k_base_singleton()),
    ];
    for (encoding, reference) in cases {
        for (name, text) in [("readme", readme), ("one_char_64k", run.as_str())] {
            assert_eq!(
                encoding.count(text) as usize,
                reference.encode_ordinary(text).len(),
                "{} on {name}",
                encoding.name()
            );
            let mut group = c.benchmark_group(format!("count_{}_{name}", encoding.name()));
            group.throughput(Throughput::Bytes(text.len() as u64));
            group.sample_size(20);
            group.bench_function("compact", |b| b.iter(|| encoding.count(black_box(text))));
            group.bench_function("tiktoken_rs", |b| {
                b.iter(|| reference.encode_ordinary(black_box(text)).len());
            });
            group.finish();
        }
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    counting(&mut criterion);
    criterion.final_summary();
}
