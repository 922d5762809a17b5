//! `starling network bench`: a load generator against a running node.
//!
//! It fills the store with synthetic reported messages (random text digests
//! and min-hash signatures, as the fingerprint engine makes them) through the
//! Report API, then runs concurrent Check requests for a fixed time: a share
//! of them are near-copies of stored messages (same signature, other text, so
//! they go through band keys, candidate verification and the reputation
//! tally), the rest are unseen messages. It prints reports/s, checked
//! messages/s and request latency percentiles, and the node's store sizes.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use starling_fingerprint::ALGORITHM_VERSION;
use starling_proto::client::{self, Credential, Target};
use starling_proto::v1;
use tokio::task::JoinSet;

use crate::operator::OperatorArgs;

#[derive(Args)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    operator: OperatorArgs,
    /// Reported messages the store should hold before checking (loaded through
    /// Report requests if it holds fewer).
    #[arg(long, default_value_t = 1_000_000)]
    fingerprints: u64,
    /// Messages per Check request.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Reports per Report request while loading.
    #[arg(long, default_value_t = 256)]
    report_batch: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Seconds of checking.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Share of checked messages that are near-copies of reported ones.
    #[arg(long, default_value_t = 0.1)]
    hit_share: f64,
    /// PID of the node, to report its memory.
    #[arg(long)]
    node_pid: Option<u32>,
    /// More API nodes of the same network (sharing its store): the clients
    /// are spread over --network and these, round robin.
    #[arg(long, value_name = "ADDR,ADDR", value_delimiter = ',')]
    spread: Vec<String>,
}

/// A stateless, seeded generator (SplitMix64).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Synthetic message `i` (its text digest varies with `variant`).
fn message(i: u64, variant: u64) -> v1::FingerprintSet {
    let text: Vec<u8> = [mix(i ^ (variant << 48)), mix(!i ^ variant)].iter().flat_map(|w| w.to_le_bytes()).collect();
    v1::FingerprintSet {
        version: u32::from(ALGORITHM_VERSION),
        text,
        slots: (0..64).map(|s| mix(i.wrapping_mul(64).wrapping_add(s) ^ 0x5eed) as u32).collect(),
        shingles: 120,
        ..Default::default()
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[index]) / 1000.0
}

pub(crate) fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    crate::runtime()?.block_on(bench(args))
}

async fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let mut admin = args.operator.admin().await?;
    let stats = admin.stats(v1::StatsRequest {}).await.map_err(|e| anyhow::anyhow!("{}", e.message()))?.into_inner();
    let name = format!("bench-{:x}", mix(Instant::now().elapsed().as_nanos() as u64 ^ u64::from(std::process::id())));
    let request = v1::CreateOrganisationRequest { name, plan: v1::Plan::Feed.into(), expires_at: 0 };
    let created = admin.create_organisation(request).await.map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    let credential = Credential::new(&created.into_inner().credential).map_err(anyhow::Error::msg)?;
    let mut nodes = vec![args.operator.network.clone()];
    nodes.extend(args.spread.iter().cloned());
    let mut channels = Vec::new();
    for c in 0..args.clients.max(1) {
        let address = &nodes[c % nodes.len()];
        channels.push(Target::new(address).connect().await.with_context(|| format!("cannot reach {address}"))?);
    }

    // Load.
    let have = stats.entries;
    if have < args.fingerprints {
        let started = Instant::now();
        let next = Arc::new(AtomicU64::new(have));
        let mut tasks = JoinSet::new();
        for channel in &channels {
            let mut client = client::network(channel.clone(), credential.clone());
            let next = next.clone();
            let total = args.fingerprints;
            let step = args.report_batch.max(1);
            tasks.spawn(async move {
                loop {
                    let from = next.fetch_add(step, Ordering::Relaxed);
                    if from >= total {
                        return Ok::<_, tonic::Status>(());
                    }
                    let reports = (from..(from + step).min(total))
                        .map(|i| v1::Report {
                            fingerprints: Some(message(i, 0)),
                            class: v1::ReportClass::Spam.into(),
                            reporter: format!("trap-{}", i % 8),
                        })
                        .collect();
                    client.report(v1::ReportRequest { reports }).await?;
                }
            });
        }
        while let Some(result) = tasks.join_next().await {
            result?.map_err(|e| anyhow::anyhow!("report failed: {}", e.message()))?;
        }
        let loaded = args.fingerprints - have;
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "load        {loaded} reports in {seconds:.1} s: {:.0} reports/s (batches of {})",
            loaded as f64 / seconds,
            args.report_batch
        );
    }

    // Check.
    let stored = args.fingerprints.max(have);
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let checked = Arc::new(AtomicU64::new(0));
    let matched = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for (c, channel) in channels.iter().enumerate() {
        let mut client = client::network(channel.clone(), credential.clone());
        let (checked, matched) = (checked.clone(), matched.clone());
        let (batch, hit_share) = (args.batch.max(1), args.hit_share);
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut n = c as u64 * 1_000_000_007;
            while Instant::now() < deadline {
                let messages: Vec<v1::FingerprintSet> = (0..batch)
                    .map(|_| {
                        n += 1;
                        let draw = mix(n ^ 0xc4ec);
                        if (draw % 10_000) as f64 / 10_000.0 < hit_share {
                            message(draw % stored.max(1), 1 + n)
                        } else {
                            message(u64::MAX / 2 + draw % (1 << 40), 0)
                        }
                    })
                    .collect();
                let started = Instant::now();
                let verdicts = client.check(v1::CheckRequest { messages }).await?.into_inner().verdicts;
                latencies.push(started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                checked.fetch_add(verdicts.len() as u64, Ordering::Relaxed);
                matched.fetch_add(verdicts.iter().filter(|v| v.matched_kind != 0).count() as u64, Ordering::Relaxed);
            }
            Ok::<_, tonic::Status>(latencies)
        });
    }
    let started = Instant::now();
    let mut latencies = Vec::new();
    while let Some(result) = tasks.join_next().await {
        latencies.extend(result?.map_err(|e| anyhow::anyhow!("check failed: {}", e.message()))?);
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let checked = checked.load(Ordering::Relaxed);
    println!(
        "check       batch {} x {} clients: {:.0} messages/s, {} requests, latency p50 {:.3} ms p99 {:.3} ms max {:.3} ms; {} of {} matched",
        args.batch,
        args.clients,
        checked as f64 / seconds,
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
        matched.load(Ordering::Relaxed),
        checked
    );
    let stats = admin.stats(v1::StatsRequest {}).await.map_err(|e| anyhow::anyhow!("{}", e.message()))?.into_inner();
    println!(
        "store       {} entries, {} index keys, {:.0} bytes on disk per entry, filter {:.0} bytes per entry",
        stats.entries,
        stats.index_keys,
        stats.store_bytes as f64 / stats.entries.max(1) as f64,
        stats.filter_bytes as f64 / stats.entries.max(1) as f64
    );
    if let Some(pid) = args.node_pid {
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("no process {pid}"))?;
        let field = |name: &str| {
            status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        };
        let (rss, peak) = (field("VmRSS:").unwrap_or(0) * 1024, field("VmHWM:").unwrap_or(0) * 1024);
        println!(
            "memory      node RSS {:.1} MiB ({:.0} bytes per entry), peak {:.1} MiB",
            rss as f64 / 1048576.0,
            rss as f64 / stats.entries.max(1) as f64,
            peak as f64 / 1048576.0
        );
    }
    Ok(ExitCode::SUCCESS)
}
