//! The agent against a real Dovecot, end to end (`scripts/bench agent`):
//!
//! - `scan N`: a mailbox of N messages seen for the first time; messages/s
//!   from the agent's start until every message is checked and spam filed.
//! - `latency N`: N spams delivered one at a time over LMTP while the agent
//!   waits in IDLE; time from the end of the delivery to the message's file
//!   appearing in the spam folder (p50, p99, max).
//! - `memory N`: N mailboxes watched at once (two IDLE sessions each: the
//!   inbox and, for feedback, the spam folder); the agent's resident memory
//!   per idle mailbox (the process's RSS after all are in IDLE, minus before).
//! - `compare N`: the same N-message mailbox scanned by the agent and by
//!   isbg with SpamAssassin's spamd (`spamc`), the tool an administrator
//!   would otherwise use; messages/s of each and the ratio.
//!
//! - `feedback N`: two organisations, one network: a user at A moves a new
//!   campaign's message into Spam with a real IMAP client (Python's
//!   imaplib); a mutated copy is then delivered to B. Time from the move at
//!   A to B's agent filing the copy (p50, p99), N campaigns.
//! - `rescan N`: an N-message mailbox the agent has seen, a rescan asked
//!   for as `starling rescan` does; messages/s from the request to its end.
//! - `deploy USERS` (default 20): what an organisation sees. A real
//!   Dovecot with USERS mailboxes (and a `\Junk` folder), the embedded
//!   single-organisation node, the agent through Dovecot's master user with
//!   `[rescan] enabled = false`. The corpus's dev split (spam-1,
//!   easy-ham-1, hard-ham-1; never the holdout spam-2/easy-ham-2) in
//!   Date-header order, each message with its own opaque Message-ID,
//!   delivered over LMTP to a seeded-random user, twice with a fresh
//!   Dovecot, node and agent: a burst (as fast as LMTP takes it) and a
//!   trickle at 5 messages/s. A seeded 30 % of users report: every 20 s
//!   (and at the end) each reads their new INBOX mail (`FETCH BODY[]`, so
//!   it is `\Seen`), moves the spam they see to the spam folder and the ham
//!   they see there back to INBOX, by real IMAP moves (`imap_user.py
//!   round`); the others never touch their mail. After the last delivery
//!   the rounds go on until no filing for 60 s (at most 5 minutes); then a
//!   final round, the agent stops and every INBOX and spam folder is
//!   inventoried over IMAP. Per run: agent recall (spam the agent filed and
//!   still in a spam folder ÷ spam delivered), automatic share (÷ all spam
//!   in spam folders), ham false positives (filed, still in a spam folder)
//!   and ham ever filed, rescued ham filed again (must be 0), lost and
//!   duplicated Message-IDs, delivery→filed p50/p99 (the `filed` table
//!   polled every 50 ms), filings by pass and reason, and retro-filings'
//!   delay; beside them the reference figures (quoted, holdout
//!   split). Environment: `DEPLOY_AGENT_CONFIG` is appended to the agent's
//!   TOML (default `[model] ham_after_minutes = 2`: the corpus's years are
//!   minutes here; not `[rescan]`, which is set already), `DEPLOY_LIMIT=N`
//!   delivers every k-th message of the date order (N in all) to try it
//!   quickly, `DEPLOY_RUNS=burst|trickle|burst,trickle`, `DEPLOY_DUMP=DIR`
//!   writes each message's outcome to `DIR/deploy-<run>.tsv`,
//!   `DEPLOY_HISTORY=F` makes the oldest share F of the split the mail
//!   users already had when the agent came (appended over IMAP with dates
//!   over the previous 30 days: ham read in inboxes, the reporters' spam in
//!   their spam folders, the others' unread in inboxes) and measures the
//!   rest. About 25 minutes with the full split.
//!
//! For every part, `BENCH_LOG=FILE` writes the agent's log to FILE
//! (`RUST_LOG` filters it, default `info`): each filing's line says why.
//!
//! - `soak USERS` (default 10,000; `scripts/soak agent`): USERS mailboxes
//!   on one Dovecot watched by one agent for `SOAK_MINUTES` (default 60),
//!   mail arriving over LMTP at `SOAK_RATE` messages/s (default 50) to
//!   random users, a third of it spam the node knows. One line per
//!   `SOAK_ROUND` minutes (default 5): deliveries, spam filed of the spam
//!   delivered in the round (counted 10 s after its end), delivery→filed
//!   p50/p99/max (the `filed` table polled every 50 ms), ham filed, the
//!   process's RSS (agent and node: the bench is both) and open files, and
//!   Dovecot's IMAP sessions. RSS, files and p99 must stay flat once the
//!   retro-filing index holds `retro.max_messages` deliveries.
//!   `SOAK_AGENT_CONFIG` is appended to the agent's TOML.
//!
//! Each part starts its own Dovecot and network node on loopback ports.
//! This is a bench command rather than criterion: every figure is one long
//! end-to-end run against real servers.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use starling_agent::{AgentConfig, state};
use starling_proto::v1::{Class, ReportClass};
use starling_testkit::{Dovecot, DovecotOptions, MASTER_PASSWORD, MASTER_USER, Node, testdata, with_message_id};
use tokio_util::sync::CancellationToken;

mod deploy;
mod observe;
mod reporters;
mod results;
mod soak;

use deploy::*;
use observe::*;
use reporters::*;
use results::*;
use soak::*;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let what = args.first().map(String::as_str).unwrap_or("all");
    let count = |default: usize| args.get(1).and_then(|n| n.parse().ok()).unwrap_or(default);
    // BENCH_LOG=FILE: the agent's log (RUST_LOG, default `info`) in FILE,
    // e.g. to see why each message was filed.
    if let Some(path) = std::env::var_os("BENCH_LOG") {
        let file = std::fs::File::create(path)?;
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(file).try_init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match what {
            "scan" => scan(count(10_000)).await,
            "latency" => latency(count(200)).await,
            "memory" => memory(count(1_000)).await,
            "compare" => compare(count(1_000)).await,
            "feedback" => feedback(count(50)).await,
            "rescan" => rescan(count(10_000)).await,
            "deploy" => deploy(count(20)).await,
            "soak" => soak(count(10_000)).await,
            "all" => {
                scan(10_000).await?;
                latency(200).await?;
                compare(1_000).await
            }
            other => {
                anyhow::bail!(
                    "unknown part {other}: scan, latency, memory, compare, feedback, rescan, deploy, soak or all"
                )
            }
        }
    })
}

/// Spam the node knows and ham it does not, as a pool to copy from.
async fn pool(node: &Node) -> anyhow::Result<(Vec<Vec<u8>>, Vec<Vec<u8>>)> {
    let mut spam = Vec::new();
    for (name, raw) in testdata(true) {
        node.report(ReportClass::Spam, &[&raw]).await?;
        if node.verdict(&raw).await? == Class::Spam {
            spam.push(raw);
        } else {
            eprintln!("(skipping {name}: not distinctive enough for a verdict)");
        }
    }
    let ham = testdata(false).into_iter().map(|(_, raw)| raw).collect();
    Ok((spam, ham))
}

/// `count` messages cycling through the pool, each with its own Message-ID;
/// returns them and how many are spam.
fn mailbox(spam: &[Vec<u8>], ham: &[Vec<u8>], count: usize, tag: &str) -> (Vec<Vec<u8>>, usize) {
    let pool: Vec<&Vec<u8>> = spam.iter().chain(ham).collect();
    let messages = (0..count).map(|i| with_message_id(pool[i % pool.len()], &format!("{tag}-{i}@bench"))).collect();
    (messages, (0..count).filter(|i| i % pool.len() < spam.len()).count())
}

fn config(
    dovecot: &Dovecot,
    node: &Node,
    state_dir: &Path,
    users: &[String],
    extra: &str,
) -> anyhow::Result<AgentConfig> {
    let users = users.iter().map(|u| format!("{u:?}")).collect::<Vec<_>>().join(", ");
    let text = format!(
        "state_dir = {state:?}\nmail_store = \"imap\"\n\n[network]\nurl = {url:?}\n\n\
         [imap]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"plain\"\npassword_file = {password:?}\n\n\
         [users]\nsource = \"list\"\nlist = [{users}]\n\n{extra}",
        state = state_dir.display().to_string(),
        url = node.url,
        port = dovecot.imap_port,
        password = dovecot.password_file().display().to_string(),
    );
    AgentConfig::from_toml(&text).map_err(|problems| anyhow::anyhow!("{problems:?}"))
}

struct Agent {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    state_dir: tempfile::TempDir,
}

impl Agent {
    fn start(dovecot: &Dovecot, node: &Node, users: &[String]) -> anyhow::Result<Agent> {
        Agent::start_with(dovecot, node, users, &node.credential, "")
    }

    fn start_with(
        dovecot: &Dovecot,
        node: &Node,
        users: &[String],
        credential: &str,
        extra: &str,
    ) -> anyhow::Result<Agent> {
        let state_dir = tempfile::tempdir()?;
        let config = config(dovecot, node, state_dir.path(), users, extra)?;
        let stop = CancellationToken::new();
        let options = starling_agent::Options { credential: Some(credential.to_owned()), ..Default::default() };
        let task = tokio::spawn(starling_agent::run(config, options, stop.clone()));
        Ok(Agent { stop, task, state_dir })
    }

    fn checked(&self) -> u64 {
        let Ok(c) = state::open(&self.state_dir.path().join("state.sqlite3")) else { return 0 };
        state::hourly(&c, 0, None).map(|rows| rows.iter().map(|(_, _, n)| u64::from(n.checked)).sum()).unwrap_or(0)
    }

    fn db(&self) -> anyhow::Result<rusqlite::Connection> {
        Ok(state::open(&self.state_dir.path().join("state.sqlite3"))?)
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await?
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Files in a Maildir folder (`new/` and `cur/`).
fn files_in(folder: &Path) -> usize {
    ["new", "cur"].iter().map(|sub| std::fs::read_dir(folder.join(sub)).map(|d| d.count()).unwrap_or(0)).sum()
}

async fn scan_once(
    dovecot: &Dovecot,
    node: &Node,
    user: &str,
    messages: &[Vec<u8>],
    spam: usize,
) -> anyhow::Result<f64> {
    dovecot.fill_maildir(user, messages)?;
    // Index the mailbox first, as a mailbox in use would be.
    anyhow::ensure!(dovecot.messages(user, "INBOX")?.len() == messages.len(), "the mailbox is filled");
    let started = Instant::now();
    let agent = Agent::start(dovecot, node, &[user.to_owned()])?;
    let spam_dir = dovecot.maildir(user).join(".Spam");
    while agent.checked() < messages.len() as u64 || files_in(&spam_dir) < spam {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(1800), "the scan did not finish in 30 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    agent.stop().await?;
    Ok(seconds)
}

async fn scan(count: usize) -> anyhow::Result<()> {
    let dovecot = Dovecot::start(&["scan"], DovecotOptions::default())?;
    let node = Node::start().await?;
    let (spam, ham) = pool(&node).await?;
    let (messages, spam_count) = mailbox(&spam, &ham, count, "scan");
    let seconds = scan_once(&dovecot, &node, "scan", &messages, spam_count).await?;
    println!(
        "scan: {count} messages ({spam_count} spam filed) in {seconds:.2} s = {:.0} messages/s",
        count as f64 / seconds
    );
    Ok(())
}

async fn latency(count: usize) -> anyhow::Result<()> {
    let dovecot = Dovecot::start(&["idle"], DovecotOptions::default())?;
    let node = Node::start().await?;
    let (spam, _) = pool(&node).await?;
    dovecot.create_folder("idle", "Spam")?;
    let agent = Agent::start(&dovecot, &node, &["idle".to_owned()])?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spam_dir = dovecot.maildir("idle").join(".Spam");
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        let raw = with_message_id(&spam[i % spam.len()], &format!("latency-{i}@bench"));
        let before = files_in(&spam_dir);
        let dovecot_ref = &dovecot;
        tokio::task::block_in_place(|| dovecot_ref.lmtp_deliver("idle", &raw))?;
        let delivered = Instant::now();
        while files_in(&spam_dir) == before {
            anyhow::ensure!(delivered.elapsed() < Duration::from_secs(30), "message {i} was not filed in 30 s");
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_micros(200));
        }
        latencies.push(delivered.elapsed());
        // Deliveries a little apart, as mail arrives.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent.stop().await?;
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    println!(
        "latency: {count} deliveries over LMTP, delivered-to-filed p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    Ok(())
}

async fn memory(count: usize) -> anyhow::Result<()> {
    let users: Vec<String> = (0..count).map(|i| format!("u{i:04}")).collect();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let dovecot = Dovecot::start(&names, DovecotOptions { many_connections: true, ..Default::default() })?;
    let node = Node::start().await?;
    // The agent's fixed cost (runtime, state, network client) with one
    // mailbox, then with all of them.
    let one = Agent::start(&dovecot, &node, &users[..1])?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let base = rss_kib();
    one.stop().await?;
    let started = Instant::now();
    let agent = Agent::start(&dovecot, &node, &users)?;
    // Wait until every mailbox is logged in and its spam folder looked at,
    // and the spam folders' sessions closed again (nothing happens there:
    // the inbox's session is told of changes, IMAP NOTIFY).
    let db = agent.state_dir.path().join("state.sqlite3");
    let mut logged_in = 0;
    while started.elapsed() < Duration::from_secs(600) {
        logged_in = who(&dovecot);
        if logged_in >= count && spam_folders_watched(&db, &users, "Spam") == count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    while started.elapsed() < Duration::from_secs(600) && who(&dovecot) > count {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let settled = who(&dovecot);
    let all = rss_kib();
    println!(
        "memory: {count} idle mailboxes ({logged_in} IMAP sessions at the start, {settled} once the spam folders are quiet, after {:.1} s): RSS {base} KiB with one, {all} KiB with all = {:.1} KiB per idle mailbox",
        started.elapsed().as_secs_f64() - 5.0,
        (all.saturating_sub(base)) as f64 / (count.saturating_sub(1)) as f64
    );
    agent.stop().await?;
    Ok(())
}

/// IMAP sessions logged in at Dovecot.
fn who(dovecot: &Dovecot) -> usize {
    let out = Command::new("doveadm").arg("-c").arg(dovecot.config()).args(["who", "-1"]).output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.contains("imap")).count()).unwrap_or(0)
}

async fn compare(count: usize) -> anyhow::Result<()> {
    let dovecot = Dovecot::start(&["agent", "isbg"], DovecotOptions::default())?;
    let node = Node::start().await?;
    let (spam, ham) = pool(&node).await?;
    let (messages, spam_count) = mailbox(&spam, &ham, count, "compare");
    let agent_seconds = scan_once(&dovecot, &node, "agent", &messages, spam_count).await?;
    dovecot.fill_maildir("isbg", &messages)?;
    anyhow::ensure!(dovecot.messages("isbg", "INBOX")?.len() == count, "the mailbox is filled");
    dovecot.create_folder("isbg", "Spam")?;
    let spamd = Spamd::start()?;
    let started = Instant::now();
    let status = Command::new("isbg")
        .args(["--imaphost", "127.0.0.1", "--imapport", &dovecot.imap_port.to_string(), "--nossl"])
        // isbg reads passwords only from the command line or its own
        // obfuscated file; a loopback test password is fine here.
        .args(["--imapuser", &format!("isbg*{MASTER_USER}"), "--imappasswd", MASTER_PASSWORD])
        .args(["--spamc", "--spaminbox", "Spam", "--delete", "--expunge", "--partialrun", "0", "--noninteractive"])
        .args(["--nostats", "--trackfile"])
        .arg(spamd.dir.path().join("track"))
        .args(["--lockfilename"])
        .arg(spamd.dir.path().join("lock"))
        .env("PATH", spamd.path_env())
        .env("HOME", spamd.dir.path())
        .stdout(Stdio::null())
        .status()?;
    let isbg_seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(status.success() || status.code() == Some(0), "isbg failed: {status}");
    let isbg_spam = dovecot.messages("isbg", "Spam")?.len();
    let isbg_left = dovecot.messages("isbg", "INBOX")?.len();
    anyhow::ensure!(
        isbg_spam > 0 && isbg_spam + isbg_left == count,
        "isbg did not scan: {isbg_spam} in Spam, {isbg_left} left"
    );
    println!(
        "compare: {count} messages; Starling {:.0} messages/s ({spam_count} filed by the network's verdicts), \
         isbg + spamd {:.1} messages/s ({isbg_spam} filed by SpamAssassin's rules); ratio {:.0}x",
        count as f64 / agent_seconds,
        count as f64 / isbg_seconds,
        isbg_seconds / agent_seconds
    );
    Ok(())
}

/// A private spamd on a loopback port, and a `spamc` on `PATH` that talks
/// to it (isbg runs `spamc` by name).
struct Spamd {
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Spamd {
    fn start() -> anyhow::Result<Spamd> {
        anyhow::ensure!(
            Command::new("isbg").arg("--version").output().is_ok() && Path::new("/usr/sbin/spamd").exists(),
            "isbg and spamd are needed: apt-get install isbg spamd spamc"
        );
        let dir = tempfile::tempdir()?;
        let port = starling_testkit::free_port();
        let mut command = Command::new("/usr/sbin/spamd");
        command
            .args(["--listen", &format!("127.0.0.1:{port}"), "--allowed-ips", "127.0.0.1"])
            // Local rules only (-L): this machine has no DNS for the
            // network rules, which would only add time-outs.
            .args(["--max-children", "2", "--nouser-config", "--local", "--syslog", "stderr"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false) {
            command.args(["--username", "nobody"]);
        }
        let child = command.spawn()?;
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin)?;
        let spamc = bin.join("spamc");
        std::fs::write(&spamc, format!("#!/bin/sh\nexec /usr/bin/spamc -d 127.0.0.1 -p {port} \"$@\"\n"))?;
        std::fs::set_permissions(&spamc, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "spamd did not start in 120 s");
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(Spamd { dir, child })
    }

    fn path_env(&self) -> String {
        format!("{}:{}", self.dir.path().join("bin").display(), std::env::var("PATH").unwrap_or_default())
    }
}

impl Drop for Spamd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value at quantile `q` of sorted durations, in milliseconds.
fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1).min(sorted.len() - 1)].as_secs_f64() * 1e3
}

/// A campaign's next wave: another Message-ID, subject and greeting.
fn mutate(raw: &[u8], id: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(&with_message_id(raw, id)).into_owned();
    let (header, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let header: Vec<String> = header
        .lines()
        .map(|l| if l.to_ascii_lowercase().starts_with("subject:") { format!("{l} [ref 48213]") } else { l.to_owned() })
        .collect();
    format!("{}\n\nHello Robert, your code is 55187.\n\n{body}", header.join("\n")).into_bytes()
}

/// How many of `users` have had their spam folder `folder` looked at by
/// the agent (its cursor is kept): from then on a user's move is seen,
/// whether the spam folder keeps a session of its own or, quiet, is watched
/// through the inbox's (IMAP NOTIFY).
fn spam_folders_watched(db: &Path, users: &[String], folder: &str) -> usize {
    let Ok(connection) = rusqlite::Connection::open(db) else { return 0 };
    let _ = connection.busy_timeout(Duration::from_secs(5));
    users.iter().filter(|user| matches!(starling_agent::state::cursor(&connection, user, folder), Ok(Some(_)))).count()
}

async fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) -> anyhow::Result<()> {
    let started = Instant::now();
    while !condition() {
        anyhow::ensure!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

async fn feedback(rounds: usize) -> anyhow::Result<()> {
    let dovecot = Dovecot::start(&["alice", "bob"], DovecotOptions::default())?;
    let node = Node::start().await?;
    let credential_b = node.add_organisation("b").await?;
    let a = Agent::start(&dovecot, &node, &["alice".to_owned()])?;
    let b = Agent::start_with(&dovecot, &node, &["bob".to_owned()], &credential_b, "")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let campaigns = starling_testkit::corpus_messages("spam-1", rounds * 4)?;
    let bob_spam = dovecot.maildir("bob").join(".Spam");
    let (mut total, mut network, mut skipped) = (Vec::new(), Vec::new(), 0);
    for (i, (_, raw)) in campaigns.iter().enumerate() {
        if total.len() == rounds {
            break;
        }
        let first = with_message_id(raw, &format!("wave-1-{i}@bench"));
        let next = mutate(raw, &format!("wave-2-{i}@bench"));
        if node.verdict(&first).await? != Class::Clean {
            skipped += 1;
            continue;
        }
        let checked = a.checked();
        tokio::task::block_in_place(|| dovecot.lmtp_deliver("alice", &first))?;
        wait_for("alice's delivery", Duration::from_secs(30), || a.checked() > checked).await?;
        let moved = Instant::now();
        let id = format!("<wave-1-{i}@bench>");
        tokio::task::block_in_place(|| dovecot.imap_user("alice", &["move", &id, "INBOX", "Spam"]))?;
        // Some campaigns are too short to be recognised in another form.
        let mut known = false;
        while moved.elapsed() < Duration::from_secs(10) {
            if node.verdict(&next).await? == Class::Spam {
                known = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if !known {
            skipped += 1;
            continue;
        }
        network.push(moved.elapsed());
        let before = files_in(&bob_spam);
        tokio::task::block_in_place(|| dovecot.lmtp_deliver("bob", &next))?;
        wait_for("bob's filing", Duration::from_secs(30), || files_in(&bob_spam) > before).await?;
        total.push(moved.elapsed());
    }
    a.stop().await?;
    b.stop().await?;
    total.sort();
    network.sort();
    println!(
        "feedback: {} campaigns ({skipped} skipped: not recognisable once mutated): move at A -> network knows p50 {:.0} ms, p99 {:.0} ms; move at A -> mutated copy filed at B p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        total.len(),
        quantile_ms(&network, 0.5),
        quantile_ms(&network, 0.99),
        quantile_ms(&total, 0.5),
        quantile_ms(&total, 0.99),
        quantile_ms(&total, 1.0),
    );
    Ok(())
}

async fn rescan(count: usize) -> anyhow::Result<()> {
    let dovecot = Dovecot::start(&["rescan"], DovecotOptions::default())?;
    let node = Node::start().await?;
    let testdata_spam: Vec<Vec<u8>> = testdata(true).into_iter().map(|(_, raw)| raw).collect();
    let ham: Vec<Vec<u8>> = testdata(false).into_iter().map(|(_, raw)| raw).collect();
    let (messages, _) = mailbox(&testdata_spam, &ham, count, "rescan");
    dovecot.fill_maildir("rescan", &messages)?;
    anyhow::ensure!(dovecot.messages("rescan", "INBOX")?.len() == count, "the mailbox is filled");
    // The agent has seen the mailbox (nothing was spam then) ...
    let agent =
        Agent::start_with(&dovecot, &node, &["rescan".to_owned()], &node.credential, "[rescan]\nenabled = false\n")?;
    wait_for("the first scan", Duration::from_secs(600), || agent.checked() >= count as u64).await?;
    // ... and now the campaigns are known.
    let (spam, _) = pool(&node).await?;
    let spam_count = (0..count).filter(|i| i % (testdata_spam.len() + ham.len()) < testdata_spam.len()).count();
    let since = jiff::Timestamp::now().as_second() - 12 * 3600;
    let started = Instant::now();
    let id = state::rescan_request(&agent.db()?, "rescan", since, "request")?;
    let mut row = None;
    while started.elapsed() < Duration::from_secs(1800) {
        row = state::rescan(&agent.db()?, id)?;
        if row.as_ref().is_some_and(|r| r.status.finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let row = row.ok_or_else(|| anyhow::anyhow!("no rescan row"))?;
    anyhow::ensure!(row.status == state::RescanStatus::Done, "the rescan {}: {}", row.status, row.detail);
    agent.stop().await?;
    println!(
        "rescan: {} messages looked at again ({} filed; {} known campaigns of {spam_count} spam copies) in {seconds:.2} s = {:.0} messages/s",
        row.total,
        row.filed,
        spam.len(),
        row.total as f64 / seconds
    );
    Ok(())
}

fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The value at quantile `q` of seconds (sorted here); NaN when empty.
fn quantile_s(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1).min(sorted.len() - 1)]
}

fn seconds(value: f64) -> String {
    if value.is_nan() {
        "-".into()
    } else if value < 10.0 {
        format!("{value:.2} s")
    } else {
        format!("{value:.0} s")
    }
}
