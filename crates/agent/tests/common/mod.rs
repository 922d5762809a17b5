//! What the IMAP tests share: the agent's configuration against a private
//! Dovecot and node, a running agent and what it recorded, waiting.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use starling_agent::AgentConfig;
use starling_agent::state;
use starling_proto::v1::{Class, ReportClass};
use starling_testkit::{Dovecot, Message, Node, testdata, wait_until, with_message_id};
use tokio_util::sync::CancellationToken;

/// How long a test waits for anything.
pub const WAIT: Duration = Duration::from_secs(30);

/// An agent configuration for `users`, with extra TOML appended.
pub fn config(dovecot: &Dovecot, node: &Node, state_dir: &Path, users: &[&str], extra: &str) -> AgentConfig {
    let server = ImapServer { port: dovecot.imap_port, password_file: &dovecot.password_file(), auth: "master-user" };
    imap_config(&server, node, state_dir, users, extra)
}

/// How the agent reaches an IMAP server on loopback.
pub struct ImapServer<'a> {
    /// Its plain IMAP port.
    pub port: u16,
    /// The administrator's password file.
    pub password_file: &'a Path,
    /// `master-user` (Dovecot) or `sasl-plain` (Cyrus).
    pub auth: &'a str,
}

/// An agent configuration for `users` of any IMAP server, with extra TOML
/// appended.
pub fn imap_config(server: &ImapServer, node: &Node, state_dir: &Path, users: &[&str], extra: &str) -> AgentConfig {
    let users = users.iter().map(|u| format!("{u:?}")).collect::<Vec<_>>().join(", ");
    let text = format!(
        r#"
state_dir = {state:?}
mail_store = "imap"

[network]
url = {url:?}
retry_seconds = 1

[imap]
host = "127.0.0.1"
port = {port}
security = "plain"
auth = {auth:?}
admin_user = "starling"
password_file = {password:?}
timeout_seconds = 10
reconnect_min_seconds = 1
reconnect_max_seconds = 2

[users]
source = "list"
list = [{users}]

{extra}
"#,
        state = state_dir.display().to_string(),
        url = node.url,
        port = server.port,
        auth = server.auth,
        password = server.password_file.display().to_string(),
    );
    AgentConfig::from_toml(&text).unwrap_or_else(|problems| panic!("test configuration: {problems:?}\n{text}"))
}

/// A running agent.
pub struct Agent {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    state_dir: std::path::PathBuf,
}

impl Agent {
    /// Starts an agent with an organisation's credential.
    pub fn start(config: AgentConfig, credential: &str) -> Agent {
        let options = starling_agent::Options { credential: Some(credential.to_owned()), ..Default::default() };
        Agent::start_with(config, options)
    }

    /// Starts an agent with these options.
    pub fn start_with(config: AgentConfig, options: starling_agent::Options) -> Agent {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let stop = CancellationToken::new();
        let state_dir = config.state_dir.clone();
        let task = tokio::spawn(starling_agent::run(config, options, stop.clone()));
        Agent { stop, task, state_dir }
    }

    /// Stops it; it must have run without error.
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the agent stops within 20 s")
            .expect("the agent task")
            .expect("the agent ran without error");
    }

    /// Whether it is still running.
    pub fn running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Its state database.
    pub fn db(&self) -> rusqlite::Connection {
        state::open(&self.state_dir.join(state::FILE_NAME)).expect("state")
    }

    /// Its events of one kind.
    pub fn events(&self, id: u16) -> Vec<state::EventRow> {
        let Ok(c) = state::open(&self.state_dir.join(state::FILE_NAME)) else { return Vec::new() };
        state::events(&c, 0, Some(id), 1000).unwrap_or_default()
    }

    /// A mailbox's counters, all hours together.
    pub fn counters(&self, mailbox: &str) -> state::Counters {
        assert!(!self.task.is_finished(), "the agent stopped early");
        let mut total = state::Counters::default();
        for (_, _, counters) in state::hourly(&self.db(), 0, Some(mailbox)).expect("hourly") {
            total.add(&counters);
        }
        total
    }

    /// Waits until the agent has looked at `n` messages of `mailbox` in all.
    pub fn wait_checked(&self, mailbox: &str, n: u32) {
        assert!(wait_until(WAIT, || self.counters(mailbox).checked >= n), "{mailbox}: {n} checked");
    }

    /// Waits until the agent has looked at the first `n` messages that
    /// arrived in a folder (its cursor there).
    pub fn wait_seen(&self, mailbox: &str, folder: &str, n: i64) {
        let seen =
            || state::cursor(&self.db(), mailbox, folder).ok().flatten().is_some_and(|cursor| cursor.position >= n);
        assert!(wait_until(WAIT, seen), "{mailbox}/{folder}: {n} messages seen");
    }
}

/// The Message-IDs of messages, sorted.
pub fn ids(messages: &[Message]) -> Vec<String> {
    let mut ids: Vec<String> = messages.iter().map(|m| m.message_id.clone()).collect();
    ids.sort();
    ids
}

/// Waits for a condition; on time-out, fails with Dovecot's log.
pub fn eventually(what: &str, dovecot: &Dovecot, condition: impl FnMut() -> bool) {
    assert!(wait_until(WAIT, condition), "timed out waiting for: {what}\nDovecot log:\n{}", dovecot.log());
}

/// The test corpus's spam that the node calls spam once reported, each
/// with a unique Message-ID (`spam-TAG-N@test`).
pub async fn known_spam(node: &Node, tag: &str) -> Vec<Vec<u8>> {
    let mut spam = Vec::new();
    for (i, (_, raw)) in testdata(true).iter().enumerate().skip(1) {
        let raw = with_message_id(raw, &format!("spam-{tag}-{i}@test"));
        node.report(ReportClass::Spam, &[&raw]).await.expect("report spam");
        if node.verdict(&raw).await.expect("check") == Class::Spam {
            spam.push(raw);
        }
    }
    spam
}

/// A message's Message-ID header value.
pub fn message_id(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let line = text.lines().find(|l| l.to_ascii_lowercase().starts_with("message-id:")).expect("a Message-ID");
    line["Message-ID:".len()..].trim().to_owned()
}
