//! The agent against a real Dovecot, end to end (`scripts/bench agent`):
//!
//! - `scan N`: a mailbox of N messages seen for the first time; messages/s
//!   from the agent's start until every message is checked and spam filed.
//! - `latency N`: N spams delivered one at a time over LMTP while the agent
//!   waits in IDLE; time from the end of the delivery to the message's file
//!   appearing in the spam folder (p50, p99, max).
//! - `memory N`: N mailboxes watched at once; the agent's resident memory
//!   per idle mailbox (the process's RSS after all are in IDLE, minus before).
//! - `compare N`: the same N-message mailbox scanned by the agent and by
//!   isbg with SpamAssassin's spamd (`spamc`), the tool an administrator
//!   would otherwise use; messages/s of each and the ratio.
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

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let what = args.first().map(String::as_str).unwrap_or("all");
    let count = |default: usize| args.get(1).and_then(|n| n.parse().ok()).unwrap_or(default);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match what {
            "scan" => scan(count(10_000)).await,
            "latency" => latency(count(200)).await,
            "memory" => memory(count(1_000)).await,
            "compare" => compare(count(1_000)).await,
            "all" => {
                scan(10_000).await?;
                latency(200).await?;
                compare(1_000).await
            }
            other => anyhow::bail!("unknown part {other}: scan, latency, memory, compare or all"),
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

fn config(dovecot: &Dovecot, node: &Node, state_dir: &Path, users: &[String]) -> anyhow::Result<AgentConfig> {
    let users = users.iter().map(|u| format!("{u:?}")).collect::<Vec<_>>().join(", ");
    let text = format!(
        "state_dir = {state:?}\nmail_store = \"imap\"\n\n[network]\nurl = {url:?}\n\n\
         [imap]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"plain\"\npassword_file = {password:?}\n\n\
         [users]\nsource = \"list\"\nlist = [{users}]\n",
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
        let state_dir = tempfile::tempdir()?;
        let config = config(dovecot, node, state_dir.path(), users)?;
        let stop = CancellationToken::new();
        let options = starling_agent::Options { credential: Some(node.credential.clone()) };
        let task = tokio::spawn(starling_agent::run(config, options, stop.clone()));
        Ok(Agent { stop, task, state_dir })
    }

    fn checked(&self) -> u64 {
        let Ok(c) = state::open(&self.state_dir.path().join("state.sqlite3")) else { return 0 };
        state::hourly(&c, 0, None).map(|rows| rows.iter().map(|(_, _, n)| u64::from(n.checked)).sum()).unwrap_or(0)
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
    // Wait until every mailbox is logged in and the numbers settle.
    let mut logged_in = 0;
    while started.elapsed() < Duration::from_secs(600) {
        logged_in = who(&dovecot);
        if logged_in >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let all = rss_kib();
    println!(
        "memory: {count} idle mailboxes ({logged_in} IMAP sessions after {:.1} s): RSS {base} KiB with one, {all} KiB with all = {:.1} KiB per idle mailbox",
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
