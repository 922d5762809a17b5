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
    // The network side needs little CPU; the cores go to fingerprinting.
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(check(args))
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
    let verdicts = check_all(&agent, &fingerprinter, &files, batch, in_flight).await?;
    let mut counts = [0usize; 4]; // clean, spam, phish, unreadable
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    for (path, verdict) in files.iter().zip(&verdicts) {
        let class = match verdict {
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

/// Fingerprints the files on every core while batches of them are checked,
/// up to `in_flight` requests at once; the verdicts come back in file order
/// (`None` for unreadable files).
async fn check_all(
    agent: &v1::network_client::NetworkClient<client::Authorised>,
    fingerprinter: &Fingerprinter,
    files: &[PathBuf],
    batch: usize,
    in_flight: usize,
) -> anyhow::Result<Vec<Option<v1::Verdict>>> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(usize, Option<v1::FingerprintSet>)>(batch * in_flight * 2);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let files: std::sync::Arc<Vec<PathBuf>> = std::sync::Arc::new(files.to_vec());
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (tx, next, files, fingerprinter) = (tx.clone(), next.clone(), files.clone(), fingerprinter.clone());
            std::thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(path) = files.get(i) else { return };
                    let set = match std::fs::read(path) {
                        Ok(raw) => Some(starling_proto::to_wire(&fingerprinter.fingerprint(&raw))),
                        Err(e) => {
                            eprintln!("starling: cannot read {}: {e}", path.display());
                            None
                        }
                    };
                    if tx.blocking_send((i, set)).is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    drop(tx);
    let mut verdicts: Vec<Option<v1::Verdict>> = vec![None; files.len()];
    let mut requests = JoinSet::new();
    let mut pending: Vec<(usize, v1::FingerprintSet)> = Vec::with_capacity(batch);
    let mut done = false;
    while !done || !pending.is_empty() || !requests.is_empty() {
        let flush = !pending.is_empty() && (pending.len() >= batch || done);
        if flush && requests.len() < in_flight {
            let (indices, messages): (Vec<usize>, Vec<v1::FingerprintSet>) = pending.drain(..).unzip();
            let mut agent = agent.clone();
            requests.spawn(async move { (indices, agent.check(v1::CheckRequest { messages }).await) });
            continue;
        }
        tokio::select! {
            item = rx.recv(), if !done && pending.len() < batch => match item {
                Some((i, Some(set))) => pending.push((i, set)),
                Some((_, None)) => {}
                None => done = true,
            },
            Some(answer) = requests.join_next(), if !requests.is_empty() => {
                let (indices, reply) = answer?;
                let reply = reply.map_err(|e| anyhow::anyhow!("{}", e.message()))?.into_inner();
                for (i, verdict) in indices.into_iter().zip(reply.verdicts) {
                    verdicts[i] = Some(verdict);
                }
            }
        }
    }
    for worker in workers {
        worker.join().map_err(|_| anyhow::anyhow!("a fingerprinting thread panicked"))?;
    }
    Ok(verdicts)
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

#[derive(Args)]
pub(crate) struct ReportArgs {
    /// What the messages are.
    #[arg(value_enum)]
    class: ReportKind,
    /// Messages: files, or directories searched recursively.
    #[arg(required = true, value_name = "FILE|DIR")]
    paths: Vec<PathBuf>,
    /// The reporter's pseudonym within the organisation (never an address).
    #[arg(long, default_value = "admin")]
    reporter: String,
    /// The network node's address (http://… or https://…).
    #[arg(long, default_value = "127.0.0.1:7890", value_name = "ADDR")]
    network: String,
    /// File holding the organisation's credential.
    #[arg(long, value_name = "FILE", env = "STARLING_CREDENTIAL_FILE")]
    credential_file: PathBuf,
    /// CA certificate (PEM) to trust for an https:// node.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    #[command(flatten)]
    fingerprint: FingerprintOptions,
}

/// A report's class on the command line.
#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportKind {
    Spam,
    Phish,
    Ham,
}

/// `starling report spam|phish|ham FILE|DIR…`: report messages as a user of
/// the organisation would (an administrator's manual report).
pub(crate) fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    crate::runtime()?.block_on(report_async(args))
}

async fn report_async(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let secret = std::fs::read_to_string(&args.credential_file)
        .with_context(|| format!("cannot read the credential file {}", args.credential_file.display()))?;
    let mut target = Target::new(&args.network);
    if let Some(ca) = &args.ca {
        target.ca_pem = Some(std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?);
    }
    let channel = target.connect().await.with_context(|| format!("cannot reach the network at {}", args.network))?;
    let mut agent = client::network(channel, Credential::new(&secret).map_err(anyhow::Error::msg)?);
    let hello = agent.hello(v1::HelloRequest::default()).await.map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    let key: [u8; 32] = hello.into_inner().fingerprint_key.try_into().map_err(|_| anyhow::anyhow!("no key"))?;
    let fingerprinter = Fingerprinter::with_settings(&Key::from_bytes(key), args.fingerprint.settings());
    let mut files = Vec::new();
    for path in &args.paths {
        collect_files(path, &mut files).with_context(|| format!("cannot read {}", path.display()))?;
    }
    let class = match args.class {
        ReportKind::Spam => v1::ReportClass::Spam,
        ReportKind::Phish => v1::ReportClass::Phish,
        ReportKind::Ham => v1::ReportClass::Ham,
    };
    let (mut recorded, mut ignored, mut unreadable) = (0, 0, 0);
    for chunk in files.chunks(256) {
        let sets = fingerprint_all(&fingerprinter, chunk);
        unreadable += sets.iter().filter(|s| s.is_none()).count();
        let reports = sets
            .into_iter()
            .flatten()
            .map(|set| v1::Report { fingerprints: Some(set), class: class.into(), reporter: args.reporter.clone() })
            .collect();
        let outcomes = agent
            .report(v1::ReportRequest { reports })
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message()))?
            .into_inner()
            .outcomes;
        recorded += outcomes.iter().filter(|o| o.recorded).count();
        ignored += outcomes.iter().filter(|o| !o.recorded).count();
    }
    eprintln!("reported {recorded} messages; {ignored} had nothing to report; {unreadable} unreadable");
    Ok(if unreadable > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
