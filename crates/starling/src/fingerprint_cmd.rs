//! `starling fingerprint FILE|DIR…`: what would be sent for each message.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use starling_fingerprint::{Fingerprinter, Fingerprints, Key, Kind};

use crate::FingerprintOptions;

#[derive(Args)]
pub(crate) struct FingerprintArgs {
    /// Messages: files, or directories searched recursively (every regular file is a message).
    #[arg(required = true, value_name = "FILE|DIR")]
    paths: Vec<PathBuf>,
    /// One JSON object per message, one per line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    options: FingerprintOptions,
}

pub(crate) fn run(args: &FingerprintArgs) -> anyhow::Result<ExitCode> {
    let key = args.options.key()?;
    let fingerprinter = Fingerprinter::with_settings(&key, args.options.settings());
    let mut files = Vec::new();
    let mut failed = false;
    for path in &args.paths {
        if let Err(error) = collect_files(path, &mut files) {
            eprintln!("starling: cannot read {}: {error}", path.display());
            failed = true;
        }
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    for file in &files {
        let raw = match std::fs::read(file) {
            Ok(raw) => raw,
            Err(error) => {
                eprintln!("starling: cannot read {}: {error}", file.display());
                failed = true;
                continue;
            }
        };
        let fingerprints = fingerprinter.fingerprint(&raw);
        if args.json {
            serde_json::to_writer(&mut out, &JsonView::new(file, &key, &fingerprints))?;
            writeln!(out)?;
        } else {
            write_summary(&mut out, file, &key, &fingerprints)?;
        }
    }
    out.flush()?;
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Regular files under `path` (or `path` itself), in name order.
pub(crate) fn collect_files(path: &Path, files: &mut Vec<PathBuf>) -> io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() {
        files.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        collect_files(&entry, files)?;
    }
    Ok(())
}

#[derive(Serialize)]
struct JsonView<'a> {
    file: &'a Path,
    key_id: String,
    kinds: Vec<Kind>,
    #[serde(flatten)]
    fingerprints: &'a Fingerprints,
    band_keys: Option<Vec<String>>,
    skipped_text: Vec<String>,
    problem_text: Vec<String>,
}

impl<'a> JsonView<'a> {
    fn new(file: &'a Path, key: &Key, fingerprints: &'a Fingerprints) -> JsonView<'a> {
        JsonView {
            file,
            key_id: key.id(),
            kinds: fingerprints.kinds(),
            fingerprints,
            band_keys: fingerprints.fuzzy.as_ref().map(|f| f.band_keys().iter().map(|k| format!("{k:016x}")).collect()),
            skipped_text: fingerprints.skipped.iter().map(|s| format!("{}: {}", s.kind, s.reason)).collect(),
            problem_text: fingerprints.problems.iter().map(ToString::to_string).collect(),
        }
    }
}

fn write_summary(out: &mut impl Write, file: &Path, key: &Key, fp: &Fingerprints) -> io::Result<()> {
    let development = if *key == Key::DEVELOPMENT { ", the public development key" } else { "" };
    writeln!(out, "{}  (algorithm v{}, key {}{development})", file.display(), fp.version, key.id())?;
    for kind in Kind::ALL {
        if let Some(skipped) = fp.skipped.iter().find(|s| s.kind == kind) {
            writeln!(out, "  {kind:<11} -  {}", skipped.reason)?;
            continue;
        }
        let line = match kind {
            Kind::Text => {
                let digest = fp.text.map(|d| d.to_string()).unwrap_or_default();
                format!("{digest}  ({} words)", fp.stats.words)
            }
            Kind::Fuzzy => match &fp.fuzzy {
                Some(f) => format!(
                    "{} slots over {} distinct shingles, {} band keys (first {:016x})",
                    f.slots.len(),
                    f.shingles,
                    starling_fingerprint::BANDS,
                    f.band_keys()[0]
                ),
                None => String::new(),
            },
            Kind::Url => digests(&fp.urls),
            Kind::Domain => digests(&fp.domains),
            Kind::Attachment => digests(&fp.attachments),
        };
        writeln!(out, "  {kind:<11} {line}")?;
    }
    for problem in &fp.problems {
        writeln!(out, "  problem     {problem}")?;
    }
    Ok(())
}

fn digests(digests: &[starling_fingerprint::Digest]) -> String {
    let shown: Vec<String> = digests.iter().take(4).map(|d| d.to_string()[..12].to_owned() + "…").collect();
    let more = digests.len().saturating_sub(shown.len());
    let tail = if more > 0 { format!(" and {more} more") } else { String::new() };
    format!("{} digest{}: {}{tail}", digests.len(), if digests.len() == 1 { "" } else { "s" }, shown.join(" "))
}
