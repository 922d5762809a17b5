//! The model's cost per message on one core: feature extraction, learning
//! and classification (and the linear classifier's fit and decision) over the SpamAssassin development groups (or
//! synthetic messages when the corpus is absent), and the memory after
//! training 100,000 synthetic messages.
//!
//! `cargo bench -p starling-model` with the corpus at `target/corpus` or
//! `$STARLING_CORPUS` (fetch it with `shared/corpus/fetch-spamassassin`).

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use starling_fingerprint::{Fingerprinter, Key};
use starling_model::{Features, Label, Linear, MAX_FIT_EXAMPLES, Model, ModelConfig};

/// One message's inputs: hashed words, header tokens, label.
struct Input {
    words: Vec<u64>,
    headers: Vec<String>,
    label: Label,
}

fn corpus_dir() -> PathBuf {
    match std::env::var_os("STARLING_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/corpus"),
    }
}

/// The development groups only (the hold-out groups are never read).
fn load_corpus() -> Vec<Input> {
    let fingerprinter = Fingerprinter::new(&Key::DEVELOPMENT);
    let mut inputs = Vec::new();
    for (group, label) in [("spam-1", Label::Spam), ("easy-ham-1", Label::Ham), ("hard-ham-1", Label::Ham)] {
        let Ok(entries) = std::fs::read_dir(corpus_dir().join(group)) else { continue };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let Ok(raw) = std::fs::read(&path) else { continue };
            let (_, text) = fingerprinter.fingerprint_with_words(&raw);
            let subject = raw.split(|&b| b == b'\n').find(|l| l.starts_with(b"Subject:")).unwrap_or(b"");
            let headers = String::from_utf8_lossy(subject)
                .split(|c: char| !c.is_alphanumeric())
                .skip(1)
                .filter(|w| !w.is_empty())
                .map(|w| format!("subject:{}", w.to_lowercase()))
                .collect();
            inputs.push(Input { words: text.words, headers, label });
        }
    }
    // Interleave the classes the way mail arrives.
    let mut rng = 0x5eedu64;
    for i in (1..inputs.len()).rev() {
        rng = next(rng);
        inputs.swap(i, (rng % (i as u64 + 1)) as usize);
    }
    inputs
}

fn next(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `n` synthetic messages of 200 to 600 words from a Zipf-like vocabulary.
fn synthetic(n: usize) -> Vec<Input> {
    let mut rng = 1u64;
    (0..n)
        .map(|i| {
            rng = next(rng);
            let len = 200 + (rng % 400) as usize;
            let label = if i % 4 == 0 { Label::Spam } else { Label::Ham };
            let words = (0..len)
                .map(|_| {
                    rng = next(rng);
                    // Squaring a uniform draw favours small ids: a long tail.
                    let u = (rng >> 11) as f64 / (1u64 << 53) as f64;
                    (u * u * 200_000.0) as u64 + if label == Label::Spam && u < 0.1 { 1 << 40 } else { 0 }
                })
                .collect();
            Input { words, headers: vec![format!("subject:{}", rng % 1000)], label }
        })
        .collect()
}

fn features(input: &Input) -> Features {
    let headers: Vec<&str> = input.headers.iter().map(String::as_str).collect();
    Features::extract(&input.words, &headers)
}

fn bench(c: &mut Criterion) {
    let mut inputs = load_corpus();
    let source = if inputs.is_empty() {
        inputs = synthetic(3_000);
        "synthetic"
    } else {
        "corpus"
    };
    let all: Vec<(Features, Label)> = inputs.iter().map(|i| (features(i), i.label)).collect();
    let mean = all.iter().map(|(f, _)| f.len()).sum::<usize>() / all.len();
    println!("{source}: {} messages, {mean} features per message on average", all.len());

    // STARLING_BENCH_TABLE_BITS: a small table (16) fits the cache and
    // shows the arithmetic alone.
    let table_bits = std::env::var("STARLING_BENCH_TABLE_BITS").ok().and_then(|v| v.parse().ok()).unwrap_or(23);
    let mut model = Model::new(ModelConfig { table_bits, ..ModelConfig::default() });
    for (f, label) in &all {
        model.learn(f, *label);
    }
    // A checksum of the output, so a change in behaviour shows up here too.
    let filed = all.iter().filter(|(f, _)| model.would_file(&model.classify(f))).count();
    println!("trained on all: threshold {:.6}, {filed} of {} filed", model.threshold(), all.len());

    // The linear classifier: one fit (six, with the cross-validation) on
    // the whole set and on the most it ever fits (the set repeated), timed
    // once; its decision per message below.
    let started = std::time::Instant::now();
    let linear = Linear::fit(&all);
    let fit_all = started.elapsed();
    let most: Vec<(Features, Label)> = all.iter().cycle().take(MAX_FIT_EXAMPLES).cloned().collect();
    let started = std::time::Instant::now();
    let _ = black_box(Linear::fit(&most));
    println!(
        "linear fit: {} examples {:.2} s, {} examples {:.2} s; threshold {:.4}; {} of {} above it",
        all.len(),
        fit_all.as_secs_f64(),
        most.len(),
        started.elapsed().as_secs_f64(),
        linear.threshold(),
        all.iter().filter(|(f, _)| linear.files(linear.decision(f))).count(),
        all.len()
    );

    let mut group = c.benchmark_group("model");
    let mut i = 0;
    group.bench_function("extract", |b| {
        b.iter(|| {
            i = (i + 1) % inputs.len();
            black_box(features(&inputs[i]))
        })
    });
    group.bench_function("classify", |b| {
        b.iter(|| {
            i = (i + 1) % all.len();
            black_box(model.classify(&all[i].0))
        })
    });
    group.bench_function("linear decision", |b| {
        b.iter(|| {
            i = (i + 1) % all.len();
            black_box(linear.decision(&all[i].0))
        })
    });
    group.bench_function("learn", |b| {
        b.iter(|| {
            i = (i + 1) % all.len();
            black_box(model.learn(&all[i].0, all[i].1))
        })
    });
    group.bench_function("learn+unlearn", |b| {
        b.iter(|| {
            i = (i + 1) % all.len();
            let prior = model.learn(&all[i].0, all[i].1);
            model.unlearn(&all[i].0, all[i].1);
            black_box(prior)
        })
    });
    group.finish();

    memory_after_100k();
}

fn memory_after_100k() {
    let started = std::time::Instant::now();
    let mut model = Model::new(ModelConfig::default());
    let before = model.memory_bytes();
    for chunk in 0..100 {
        for input in synthetic(1_000).iter().skip(chunk % 3) {
            model.learn(&features(input), input.label);
        }
    }
    let (spam, ham) = model.examples();
    println!(
        "memory_bytes: {} before training, {} after {} messages ({:.1} MiB; {} halvings; {:.1} s)",
        before,
        model.memory_bytes(),
        spam + ham,
        model.memory_bytes() as f64 / (1 << 20) as f64,
        model.halvings(),
        started.elapsed().as_secs_f64()
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
