//! The agent's side of the model's cost per message on one core, over the
//! SpamAssassin development groups: reading a message's facts as the agent
//! always does, the same with the model's header tokens (one parse for
//! both: the difference is what the tokens cost), and the features from
//! words and tokens (`learning::features`: ids of the tokens, words and
//! sparse bigrams). The model's own learning and classification are
//! measured in `crates/model/benches/model.rs`.
//!
//! `scripts/bench model` (the corpus at `target/corpus` or `$STARLING_CORPUS`).

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use starling_agent::facts::Facts;
use starling_agent::{facts::header_tokens, learning};
use starling_fingerprint::{Fingerprinter, Key, ModelText};

/// The development groups only (the hold-out groups are never read):
/// (raw message, its normalised words).
fn corpus() -> Vec<(Vec<u8>, ModelText)> {
    let dir = PathBuf::from(std::env::var_os("STARLING_CORPUS").unwrap_or_else(|| "target/corpus".into()));
    let dir = if dir.is_absolute() { dir } else { PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(dir) };
    let fingerprinter = Fingerprinter::new(&Key::DEVELOPMENT);
    let mut out = Vec::new();
    for group in ["spam-1", "easy-ham-1", "hard-ham-1"] {
        let Ok(entries) = std::fs::read_dir(dir.join(group)) else { continue };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let Ok(raw) = std::fs::read(&path) else { continue };
            let (_, text) = fingerprinter.fingerprint_with_words(&raw);
            out.push((raw, text));
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let messages = corpus();
    assert!(!messages.is_empty(), "no corpus: run shared/corpus/fetch-spamassassin target/corpus");
    let tokens: usize = messages.iter().map(|(raw, _)| header_tokens(raw).len()).sum();
    println!(
        "corpus: {} messages, {:.1} header tokens per message",
        messages.len(),
        tokens as f64 / messages.len() as f64
    );
    let mut group = c.benchmark_group("features");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("facts", |b| {
        b.iter(|| {
            i = (i + 1) % messages.len();
            black_box(Facts::from_message(&messages[i].0, 3))
        })
    });
    group.bench_function("facts+header_tokens", |b| {
        b.iter(|| {
            i = (i + 1) % messages.len();
            black_box(Facts::with_header_tokens(&messages[i].0, 3))
        })
    });
    let tokens: Vec<Vec<String>> = messages.iter().map(|(raw, _)| header_tokens(raw)).collect();
    group.bench_function("learning::features", |b| {
        b.iter(|| {
            i = (i + 1) % messages.len();
            black_box(learning::features(&messages[i].1, &tokens[i]))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
