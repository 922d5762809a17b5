//! Fingerprinting throughput over the SpamAssassin corpus, on one core, with
//! the MIME parser alone as the baseline in the same run.
//!
//! Run with `scripts/bench fingerprint` (it fetches the corpus first), or
//! `cargo bench -p starling-fingerprint` with the corpus at `target/corpus`
//! or `$STARLING_CORPUS`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mail_parser::MessageParser;
use starling_fingerprint::{Fingerprinter, Key};

fn corpus_dir() -> PathBuf {
    match std::env::var_os("STARLING_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/corpus"),
    }
}

/// Every `.eml` file of the corpus, read into memory.
fn load_corpus() -> Vec<Vec<u8>> {
    let dir = corpus_dir();
    let mut files = Vec::new();
    let groups = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} not found ({e}); run scripts/bench", dir.display()));
    for group in groups {
        let group = group.expect("corpus entry").path();
        if !group.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&group).expect("corpus group") {
            let path = entry.expect("corpus file").path();
            if path.extension().is_some_and(|e| e == "eml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files.iter().map(|p| std::fs::read(p).expect("corpus message")).collect()
}

/// A checksum of all text digests and signature slots, so the benchmark
/// provably computes what it measures.
fn fingerprint_all(fingerprinter: &Fingerprinter, corpus: &[Vec<u8>]) -> (u64, usize) {
    let mut checksum = 0u64;
    let mut with_text = 0;
    for raw in corpus {
        let fp = fingerprinter.fingerprint(black_box(raw));
        if let Some(digest) = fp.text {
            with_text += 1;
            checksum ^= u64::from_le_bytes(digest.0[..8].try_into().expect("8 bytes"));
        }
        if let Some(fuzzy) = &fp.fuzzy {
            checksum = checksum.rotate_left(1) ^ u64::from(fuzzy.slots[0]);
        }
    }
    (checksum, with_text)
}

fn parse_all(parser: &MessageParser, corpus: &[Vec<u8>]) -> usize {
    corpus.iter().map(|raw| parser.parse(black_box(raw)).map_or(0, |m| m.parts.len())).sum()
}

/// Parsing plus what any consumer of the parser does next: the decoded text
/// of every text body part (HTML converted to text by mail-parser).
fn parse_and_text_all(parser: &MessageParser, corpus: &[Vec<u8>]) -> usize {
    corpus
        .iter()
        .map(|raw| {
            let Some(message) = parser.parse(black_box(raw)) else { return 0 };
            (0..message.text_body.len()).filter_map(|i| message.body_text(i)).map(|t| t.len()).sum::<usize>()
        })
        .sum()
}

fn bench(c: &mut Criterion) {
    let corpus = load_corpus();
    let bytes: usize = corpus.iter().map(Vec::len).sum();
    let fingerprinter = Fingerprinter::new(&Key::DEVELOPMENT);
    let parser = MessageParser::default();

    let (checksum, with_text) = fingerprint_all(&fingerprinter, &corpus);
    assert_eq!(fingerprint_all(&fingerprinter, &corpus).0, checksum, "fingerprints are deterministic");
    assert!(with_text * 10 >= corpus.len() * 9, "only {with_text} of {} messages got a text digest", corpus.len());
    eprintln!("corpus: {} messages, {} bytes; text digests {with_text}; checksum {checksum:016x}", corpus.len(), bytes);

    for (name, throughput) in
        [("messages", Throughput::Elements(corpus.len() as u64)), ("bytes", Throughput::Bytes(bytes as u64))]
    {
        let mut group = c.benchmark_group(format!("corpus-{name}"));
        group.throughput(throughput).sample_size(10).measurement_time(Duration::from_secs(8));
        group.bench_function("fingerprint", |b| b.iter(|| fingerprint_all(&fingerprinter, &corpus)));
        group.bench_function("parse-only (mail-parser)", |b| b.iter(|| parse_all(&parser, &corpus)));
        group.bench_function("parse+text (mail-parser)", |b| b.iter(|| parse_and_text_all(&parser, &corpus)));
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
