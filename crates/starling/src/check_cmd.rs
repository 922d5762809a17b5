//! `starling check FILE|DIR…`: ask a network for the verdict on messages, as
//! the agent would — fingerprinted here (in parallel), checked in batches.
//! Prints one line per message and a summary with the rate.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use starling_fingerprint::{Fingerprinter, Key};
use starling_proto::client::{self, Credential, Target};
use starling_proto::v1;
use tokio::task::JoinSet;

use crate::FingerprintOptions;
use crate::fingerprint_cmd::collect_files;

#[derive(Args)]
pub(crate) struct CheckArgs {
    /// Messages: files, or directories searched recursively.
    #[arg(required = true, value_name = "FILE|DIR")]
    paths: Vec<PathBuf>,
    /// The network node's address (http://… or https://…).
    #[arg(long, default_value = "127.0.0.1:7890", value_name = "ADDR")]
    network: String,
    /// File holding the organisation's credential.
    #[arg(long, value_name = "FILE", env = "STARLING_CREDENTIAL_FILE")]
    credential_file: PathBuf,
    /// CA certificate (PEM) to trust for an https:// node.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Messages per request.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// One JSON object per message.
    #[arg(long)]
    json: bool,
    /// Print only the summary.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    fingerprint: FingerprintOptions,
}

pub(crate) fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    crate::runtime()?.block_on(check(args))
}

async fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let secret = std::fs::read_to_string(&args.credential_file)
        .with_context(|| format!("cannot read the credential file {}", args.credential_file.display()))?;
    let credential = Credential::new(&secret).map_err(anyhow::Error::msg)?;
    let mut target = Target::new(&args.network);
    if let Some(ca) = &args.ca {
        target.ca_pem = Some(std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?);
    }
    let channel = target.connect().await.with_context(|| format!("cannot reach the network at {}", args.network))?;
    let mut agent = client::network(channel, credential);
    let hello = agent.hello(v1::HelloRequest::default()).await.map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    let key: [u8; 32] = hello.into_inner().fingerprint_key.try_into().map_err(|_| anyhow::anyhow!("no key"))?;
    let fingerprinter = Fingerprinter::with_settings(&Key::from_bytes(key), args.fingerprint.settings());

    let mut files = Vec::new();
    for path in &args.paths {
        collect_files(path, &mut files).with_context(|| format!("cannot read {}", path.display()))?;
    }
    let started = Instant::now();
    let (batch, in_flight) = (args.batch.max(1), args.in_flight.max(1));
    let mut counts = [0usize; 4]; // clean, spam, phish, unreadable
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    for chunk in files.chunks(batch * in_flight) {
        let sets = fingerprint_all(&fingerprinter, chunk);
        let mut requests = JoinSet::new();
        for (n, part) in sets.chunks(batch).enumerate() {
            let messages: Vec<v1::FingerprintSet> = part.iter().filter_map(|s| s.clone()).collect();
            let mut agent = agent.clone();
            requests.spawn(async move { (n, agent.check(v1::CheckRequest { messages }).await) });
        }
        let mut answers = Vec::new();
        while let Some(answer) = requests.join_next().await {
            let (n, reply) = answer?;
            answers.push((n, reply.map_err(|e| anyhow::anyhow!("{}", e.message()))?.into_inner().verdicts));
        }
        answers.sort_by_key(|(n, _)| *n);
        let mut verdicts = answers.into_iter().flat_map(|(_, v)| v);
        for (path, set) in chunk.iter().zip(&sets) {
            let verdict = if set.is_some() { verdicts.next() } else { None };
            let class = match &verdict {
                None => "unreadable",
                Some(v) => match v1::Class::try_from(v.class) {
                    Ok(v1::Class::Spam) => "spam",
                    Ok(v1::Class::Phish) => "phish",
                    _ => "clean",
                },
            };
            counts[match class {
                "clean" => 0,
                "spam" => 1,
                "phish" => 2,
                _ => 3,
            }] += 1;
            if args.quiet {
                continue;
            }
            let confidence = verdict.as_ref().map_or(0.0, |v| v.confidence);
            if args.json {
                let evidence = verdict.as_ref().and_then(|v| v.evidence).unwrap_or_default();
                let line = serde_json::json!({
                    "file": path, "class": class, "confidence": confidence,
                    "reporters": evidence.reporters, "organisations": evidence.organisations,
                    "spam": evidence.spam, "phish": evidence.phish, "ham": evidence.ham,
                });
                writeln!(out, "{line}")?;
            } else {
                writeln!(out, "{}  {class} {confidence:.2}", path.display())?;
            }
        }
    }
    out.flush()?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "checked {} messages in {seconds:.2} s ({:.0} messages/s): {} spam, {} phishing, {} clean, {} unreadable",
        files.len(),
        files.len() as f64 / seconds.max(1e-9),
        counts[1],
        counts[2],
        counts[0],
        counts[3]
    );
    Ok(if counts[3] > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Fingerprints files on every core; `None` for unreadable ones.
fn fingerprint_all(fingerprinter: &Fingerprinter, files: &[PathBuf]) -> Vec<Option<v1::FingerprintSet>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = files.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(per_thread)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|path| match std::fs::read(path) {
                            Ok(raw) => Some(starling_proto::to_wire(&fingerprinter.fingerprint(&raw))),
                            Err(e) => {
                                eprintln!("starling: cannot read {}: {e}", path.display());
                                None
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a fingerprinting thread panicked")).collect()
    })
}
