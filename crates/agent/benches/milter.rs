//! In-line filtering through a real Postfix (`scripts/bench milter`).
//!
//! A private Dovecot (LMTP), a network node that knows a third of the spam,
//! and the agent's milter alone (`starling milter`, loopback). The same
//! corpus messages (dev split: spam-1 and easy-ham-1, each with its own
//! Message-ID) are sent over SMTP to private Postfix instances: without a
//! milter, with Starling's, and — when `RSPAMD_MILTER=host:port` names an
//! rspamd proxy worker in milter mode (`scripts/bench milter` starts one
//! when rspamd is installed) — with rspamd's. Per instance, 1 and 50
//! concurrent SMTP sessions, each sending its share of the messages over
//! one connection: the time of each SMTP transaction (MAIL FROM to the
//! reply to the message's end, which waits for the milter), p50 and p99,
//! and messages accepted per second. The milter's added latency is the
//! difference to Postfix alone at the same percentile. Postfix's queue is
//! drained into Dovecot between runs. `bench-process cpu` is the CPU time of
//! this process per message: the SMTP clients, and the agent and the node
//! (Postfix alone: the clients only). Needs root (Postfix's master).
//!
//! Usage: `cargo bench -p starling-agent --bench milter -- [MESSAGES]`
//! (default 2000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use starling_agent::AgentConfig;
use starling_proto::v1::ReportClass;
use starling_testkit::postfix::{Postfix, PostfixOptions};
use starling_testkit::{Dovecot, DovecotOptions, Node, corpus_messages, free_port, wait_until, with_message_id};
use tokio_util::sync::CancellationToken;

const USERS: usize = 10;

fn main() -> anyhow::Result<()> {
    let messages: usize =
        std::env::args().skip(1).find(|a| !a.starts_with('-')).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(messages))
}

async fn run(count: usize) -> anyhow::Result<()> {
    let users: Vec<String> = (0..USERS).map(|i| format!("u{i}")).collect();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let dovecot =
        Dovecot::start(&names, DovecotOptions { strip_domain: true, many_connections: true, ..Default::default() })?;
    let node = Node::start().await?;
    let mut mail = Vec::new();
    let spam = corpus_messages("spam-1", count / 2)?;
    let ham = corpus_messages("easy-ham-1", count - spam.len())?;
    for (i, (_, raw)) in spam.iter().chain(&ham).enumerate() {
        mail.push(with_message_id(raw, &format!("bench-{i}@milter.test")));
    }
    // A third of the spam is known to the network.
    for raw in mail[..spam.len()].iter().step_by(3) {
        node.report(ReportClass::Spam, &[raw]).await?;
    }
    // Interleave spam and ham.
    let mut order: Vec<usize> = (0..mail.len()).collect();
    order.sort_by_key(|&i| (i % spam.len().max(1), i));
    let mail: Arc<Vec<Vec<u8>>> = Arc::new(order.into_iter().map(|i| mail[i].clone()).collect());

    let state = tempfile::tempdir()?;
    let port = free_port();
    let users_toml = names.iter().map(|u| format!("{u:?}")).collect::<Vec<_>>().join(", ");
    let text = format!(
        "state_dir = {:?}\n[network]\nurl = {:?}\n[users]\nsource = \"list\"\nlist = [{users_toml}]\n\
         [console]\nenabled = false\n[milter]\nlisten = \"127.0.0.1:{port}\"\n",
        state.path().display().to_string(),
        node.url
    );
    let config = AgentConfig::from_toml(&text).map_err(|p| anyhow::anyhow!("{p:?}"))?;
    let stop = CancellationToken::new();
    let options =
        starling_agent::Options { credential: Some(node.credential.clone()), milter_only: true, ..Default::default() };
    let agent = tokio::spawn(starling_agent::run(config, options, stop.clone()));
    let db = state.path().join(starling_agent::state::FILE_NAME);
    let started = wait_until(Duration::from_secs(30), || {
        starling_agent::state::open(&db)
            .ok()
            .and_then(|c| starling_agent::state::events(&c, 0, Some(900), 1).ok())
            .is_some_and(|e| !e.is_empty())
    });
    anyhow::ensure!(started, "the milter did not start");

    let mut setups: Vec<(&str, Option<String>)> =
        vec![("postfix alone", None), ("postfix + starling", Some(format!("inet:127.0.0.1:{port}")))];
    match std::env::var("RSPAMD_MILTER") {
        Ok(address) => {
            let (host, rspamd_port) = address.rsplit_once(':').unwrap_or(("127.0.0.1", &address));
            setups.push(("postfix + rspamd", Some(format!("inet:{host}:{rspamd_port}"))));
        }
        Err(_) => eprintln!("RSPAMD_MILTER not set: rspamd's milter is not measured"),
    }
    let mut baseline: Vec<(usize, f64, f64)> = Vec::new();
    println!("milter: {} messages ({} spam, a third known), {USERS} users, corpus dev split", mail.len(), spam.len());
    for (label, milter) in setups {
        let postfix =
            Postfix::start(dovecot.lmtp_port, PostfixOptions { milter: milter.clone(), ..Default::default() })?;
        // Warm up (Postfix's processes, the milter's connection path).
        load(&postfix, &mail, 4, 40)?;
        drain(&postfix);
        for sessions in [1usize, 50] {
            let n = if sessions == 1 { mail.len().min(300) } else { mail.len() };
            let cpu_before = process_cpu();
            let (mut times, elapsed, refused) = load(&postfix, &mail, sessions, n)?;
            let cpu = process_cpu() - cpu_before;
            drain(&postfix);
            times.sort_unstable_by(f64::total_cmp);
            let p50 = percentile(&times, 0.50);
            let p99 = percentile(&times, 0.99);
            let rate = n as f64 / elapsed.as_secs_f64();
            println!(
                "milter: {label:<20} sessions={sessions:<3} messages={n:<5} transaction p50={p50:.2} ms p99={p99:.2} ms \
                 rate={rate:.0} msg/s refused={refused} bench-process cpu={:.2} ms/msg",
                cpu.as_secs_f64() * 1000.0 / n as f64
            );
            match milter {
                None => baseline.push((sessions, p50, p99)),
                Some(_) => {
                    if let Some((_, b50, b99)) = baseline.iter().find(|(s, _, _)| *s == sessions) {
                        println!(
                            "milter: {label:<20} sessions={sessions:<3} added latency p50={:+.2} ms p99={:+.2} ms",
                            p50 - b50,
                            p99 - b99
                        );
                    }
                }
            }
        }
    }
    stop.cancel();
    let _ = agent.await;
    Ok(())
}

/// Sends `n` messages over `sessions` SMTP connections at once, each to a
/// user in turn; the transaction times (ms), the wall time and how many
/// were refused.
fn load(
    postfix: &Postfix,
    mail: &Arc<Vec<Vec<u8>>>,
    sessions: usize,
    n: usize,
) -> anyhow::Result<(Vec<f64>, Duration, usize)> {
    let started = Instant::now();
    let handles: Vec<_> = (0..sessions)
        .map(|s| {
            let mail = mail.clone();
            let mut client = postfix.client();
            std::thread::spawn(move || -> anyhow::Result<(Vec<f64>, usize)> {
                let client = client.as_mut().map_err(|e| anyhow::anyhow!("{e}"))?;
                let mut times = Vec::new();
                let mut refused = 0;
                for i in (s..n).step_by(sessions) {
                    let to = format!("u{}@example.org", i % USERS);
                    let at = Instant::now();
                    let reply = client.send("sender@example.net", &[&to], &mail[i % mail.len()])?;
                    times.push(at.elapsed().as_secs_f64() * 1000.0);
                    if !reply.starts_with('2') {
                        refused += 1;
                    }
                }
                Ok((times, refused))
            })
        })
        .collect();
    let mut times = Vec::with_capacity(n);
    let mut refused = 0;
    for handle in handles {
        let (t, r) = handle.join().map_err(|_| anyhow::anyhow!("a session panicked"))??;
        times.extend(t);
        refused += r;
    }
    Ok((times, started.elapsed(), refused))
}

/// Waits until Postfix delivered everything (so deliveries do not compete
/// with the next run).
fn drain(postfix: &Postfix) {
    wait_until(Duration::from_secs(600), || postfix.queued() == 0);
}

/// CPU time used by this process so far (the agent and the node run in
/// it; Postfix, Dovecot and rspamd do not).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks: u64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<u64>().ok()).sum();
    Duration::from_millis(ticks * 10)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}
