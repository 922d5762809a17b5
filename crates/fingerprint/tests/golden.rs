//! Golden outputs: every `.eml` under `testdata/` is fingerprinted with the
//! public development key and compared with the `.json` next to it.
//!
//! After an intended change of the algorithm, regenerate with
//! `UPDATE_GOLDEN=1 cargo test -p starling-fingerprint --test golden`, review
//! the diff, and bump `ALGORITHM_VERSION` if fingerprints changed.

use std::path::{Path, PathBuf};

use starling_fingerprint::{Fingerprinter, Fingerprints, Key};

fn testdata(group: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(group);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .eml files in {}", dir.display());
    files
}

fn fingerprint(path: &Path) -> Fingerprints {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Fingerprinter::new(&Key::DEVELOPMENT).fingerprint(&raw)
}

/// Compares (or, with `UPDATE_GOLDEN` set, rewrites) the golden file of each
/// message; reports every mismatch at once.
fn check(group: &str) {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    for path in testdata(group) {
        let got = serde_json::to_string_pretty(&fingerprint(&path)).expect("serialisable") + "\n";
        let golden = path.with_extension("json");
        if update {
            std::fs::write(&golden, &got).expect("write golden file");
            continue;
        }
        match std::fs::read_to_string(&golden) {
            Ok(want) if want == got => {}
            Ok(_) => mismatches.push(format!("{} differs from its golden file", path.display())),
            Err(e) => mismatches.push(format!("{}: no golden file ({e})", path.display())),
        }
    }
    assert!(
        mismatches.is_empty(),
        "{}\nIf the change is intended: UPDATE_GOLDEN=1 cargo test -p starling-fingerprint --test golden",
        mismatches.join("\n")
    );
}

#[test]
fn corpus_messages_match_their_golden_files() {
    check("corpus");
}

#[test]
fn malformed_messages_match_their_golden_files() {
    check("malformed");
}

/// The words that may appear in fingerprint output: field names and tags.
const VOCABULARY: &[&str] = &[
    "version",
    "text",
    "fuzzy",
    "shingles",
    "slots",
    "urls",
    "domains",
    "attachments",
    "skipped",
    "kind",
    "reason",
    "problems",
    "problem",
    "stats",
    "bytes",
    "parts",
    "words",
    "visible_text",
    "url",
    "domain",
    "attachment",
    "limit",
    "distinct",
    "need_words",
    "need_distinct",
    "count",
    "need_bytes",
    "not_a_message",
    "no_text",
    "too_short",
    "no_links",
    "no_attachments",
    "attachments_too_small",
    "message_truncated",
    "too_many_parts",
    "too_deep",
    "part_truncated",
    "encoding_problem",
    "too_many_words",
    "html_too_deep",
    "too_many_links",
    "too_many_attachments",
    "attachment_truncated",
];

/// No message content reaches the output: every string in it is either a
/// field name or tag from the fixed vocabulary, or hexadecimal.
#[test]
fn output_carries_no_content() {
    fn strings(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::String(s) => out.push(s.clone()),
            serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
            serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| {
                out.push(k.clone());
                strings(v, out);
            }),
            _ => {}
        }
    }
    for path in testdata("corpus").into_iter().chain(testdata("malformed")) {
        let json = serde_json::to_value(fingerprint(&path)).expect("serialisable");
        let mut found = Vec::new();
        strings(&json, &mut found);
        for s in found {
            let hex = !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
            assert!(hex || VOCABULARY.contains(&s.as_str()), "{}: unexpected string {s:?} in output", path.display());
        }
    }
}

#[test]
fn hostile_input_yields_problems_not_panics() {
    let problems_of = |name: &str| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/malformed").join(name);
        fingerprint(&path).problems
    };
    assert!(!problems_of("deep-nesting.eml").is_empty());
    assert!(!problems_of("html-deep.eml").is_empty());
    assert!(!problems_of("unterminated-multipart.eml").is_empty());
}

#[test]
fn empty_and_short_messages_get_no_text_fingerprint() {
    for name in ["empty.eml", "headers-only.eml", "garbage.eml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/malformed").join(name);
        let fp = fingerprint(&path);
        assert!(fp.text.is_none() && fp.fuzzy.is_none(), "{name} got a text fingerprint");
    }
}
