//! The agent's configuration: one TOML file, every option with a default
//! (documented in `docs/configuration.md`), and every problem reported at
//! once with its key path.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::policy::ActionKind;
use crate::whitelist::Entry;

mod filtering;
mod network;
mod parse;
mod problems;
mod services;
mod stores;

pub use filtering::*;
pub use network::*;
pub use parse::*;
pub use services::*;
pub use stores::*;

/// Everything the agent needs to run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Directory of the state database (`state.sqlite3`) and of files the
    /// agent keeps (the agent's own secret).
    pub state_dir: PathBuf,
    /// Where the mailboxes are: `maildir` or `imap`.
    pub mail_store: MailStoreKind,
    /// The network the agent asks.
    pub network: NetworkConfig,
    /// Local Maildir++ mailboxes.
    pub maildir: MaildirConfig,
    /// An IMAP server.
    pub imap: ImapConfig,
    /// Where the list of mailboxes comes from.
    pub users: UsersConfig,
    /// What happens to spam and phishing.
    pub policy: PolicyConfig,
    /// Rules that need no network.
    pub rules: RulesConfig,
    /// Senders never filtered (server-wide; more entries live in the state
    /// database, per user too).
    pub whitelist: WhitelistConfig,
    /// Catching up with mail that arrived while the agent was not running.
    pub scan: ScanConfig,
    /// Users' feedback: moves into and out of the spam folder reported to
    /// the network.
    pub feedback: FeedbackConfig,
    /// The daily rescan of young mail.
    pub rescan: RescanConfig,
    /// Shared (public) mailboxes, each with its own action.
    pub shared: Vec<SharedMailbox>,
    /// The web console and REST API.
    pub console: ConsoleConfig,
    /// Statistics reports and the "time and money saved" estimate.
    pub reports: ReportsConfig,
    /// The local model that learns from the organisation's own users.
    pub model: LearningConfig,
    /// Filing copies already delivered when their campaign becomes known.
    pub retro: RetroConfig,
    /// In-line filtering: a milter for Postfix and Sendmail.
    pub milter: MilterConfig,
    /// Activation codes: the key they are verified with.
    pub activation: ActivationConfig,
    /// Mail to the postmaster (subscription warnings and expiry).
    pub notify: NotifyConfig,
}

impl Default for AgentConfig {
    fn default() -> AgentConfig {
        AgentConfig {
            state_dir: PathBuf::from("starling-data"),
            mail_store: MailStoreKind::Maildir,
            network: NetworkConfig::default(),
            maildir: MaildirConfig::default(),
            imap: ImapConfig::default(),
            users: UsersConfig::default(),
            policy: PolicyConfig::default(),
            rules: RulesConfig::default(),
            whitelist: WhitelistConfig::default(),
            scan: ScanConfig::default(),
            feedback: FeedbackConfig::default(),
            rescan: RescanConfig::default(),
            shared: Vec::new(),
            console: ConsoleConfig::default(),
            reports: ReportsConfig::default(),
            model: LearningConfig::default(),
            retro: RetroConfig::default(),
            milter: MilterConfig::default(),
            activation: ActivationConfig::default(),
            notify: NotifyConfig::default(),
        }
    }
}

/// The kind of mail store the agent watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailStoreKind {
    /// Maildir++ directories on this machine.
    Maildir,
    /// An IMAP server, logged into on behalf of each mailbox.
    Imap,
}

/// A shared (public) mailbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedMailbox {
    /// The account holding it: an IMAP user, or a directory below the
    /// Maildir root.
    pub account: String,
    /// The folder watched in that account.
    #[serde(default = "inbox")]
    pub folder: String,
    /// Its action; absent: `policy.shared_action`.
    #[serde(default)]
    pub action: Option<ActionKind>,
    /// Its spam folder; empty: as `policy.spam_folder`.
    #[serde(default)]
    pub spam_folder: String,
}

fn inbox() -> String {
    "INBOX".into()
}

impl AgentConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<AgentConfig, Vec<String>> {
        let text = std::fs::read_to_string(path).map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?;
        AgentConfig::from_toml(&text)
    }

    /// Parses and checks a configuration text: every problem at once.
    pub fn from_toml(text: &str) -> Result<AgentConfig, Vec<String>> {
        let config: AgentConfig = match parse_all_problems(text) {
            Ok(config) => config,
            Err(mut problems) => {
                // Check what remains without the keys already found wrong,
                // so that one run lists every problem.
                if let Some(rest) = without_keys(text, &problems)
                    && let Ok(config) = rest.try_into::<AgentConfig>()
                {
                    problems.extend(config.problems());
                }
                return Err(problems);
            }
        };
        let problems = config.problems();
        if problems.is_empty() { Ok(config) } else { Err(problems) }
    }

    /// `path` resolved against `state_dir` when relative.
    pub fn in_state_dir(&self, path: &Path) -> PathBuf {
        if path.is_absolute() { path.to_owned() } else { self.state_dir.join(path) }
    }
}

/// Checks a mailbox (user) name: printable, no path separators, no IMAP
/// specials that would need quoting.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && name.chars().all(|c| !c.is_control() && !c.is_whitespace() && !matches!(c, '/' | '\\' | '"' | '*' | '%'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a usable mailbox name (no spaces, control characters, / \\ \" * % or leading dot)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(AgentConfig::default().problems(), Vec::<String>::new());
        assert_eq!(AgentConfig::from_toml("").unwrap(), AgentConfig::default());
    }

    #[test]
    fn a_credential_never_crosses_the_network_in_clear_unless_allowed() {
        let with = |url: &str, allow: bool| {
            let text = format!("[network]\nurl = {url:?}\nallow_plaintext_public = {allow}\n");
            AgentConfig::from_toml(&text).map(|_| ()).map_err(|p| p.join("; "))
        };
        for url in ["http://127.0.0.1:7890", "http://localhost:7890", "http://[::1]:7890/", "https://net.example.org"] {
            assert_eq!(with(url, false), Ok(()), "{url}");
        }
        for url in
            ["http://net.example.org:7890", "http://192.0.2.7", "http://[2001:db8::1]:7890", "http://u@10.0.0.1/"]
        {
            let refused = with(url, false).unwrap_err();
            assert!(refused.starts_with("network.url:") && refused.contains("in clear"), "{url}: {refused}");
            assert_eq!(with(url, true), Ok(()), "{url} when allowed");
        }
    }

    #[test]
    fn all_problems_are_reported_at_once_with_their_keys() {
        let text = r#"
            mail_store = "imap"
            [imap]
            host = "mail.example.com"
            security = "plain"
            idle_seconds = 5
            [network]
            batch_size = 0
            [policy]
            spam_action = "folder"
            min_confidence = 2.0
            [whitelist]
            entries = ["/(unclosed/"]
        "#;
        let problems = AgentConfig::from_toml(text).unwrap_err();
        for key in [
            "imap.security",
            "imap.idle_seconds",
            "network.batch_size",
            "policy.spam_action",
            "policy.min_confidence",
            "whitelist.entries[0]",
            "users.source",
        ] {
            assert!(problems.iter().any(|p| p.starts_with(key)), "{key} missing from {problems:?}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_all_reported_with_their_key() {
        let text = "mail_stor = 1\n[policy]\nspam_folder_name = \"x\"\nspam_action = \"shred\"\n[imap]\nport = \"x\"\n";
        let problems = AgentConfig::from_toml(text).unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        for (key, word) in [
            ("mail_stor:", "mail_stor"),
            ("policy.spam_folder_name:", "spam_folder_name"),
            ("policy.spam_action:", "shred"),
            ("imap.port:", "string"),
        ] {
            assert!(problems.iter().any(|p| p.starts_with(key) && p.contains(word)), "{key} missing from {problems:?}");
        }
    }

    #[test]
    fn syntax_errors_say_where() {
        let problems = AgentConfig::from_toml("[policy\n").unwrap_err();
        assert!(problems[0].contains("line 1"), "{problems:?}");
    }

    #[test]
    fn phish_action_is_same_or_an_action() {
        let c = AgentConfig::from_toml("[policy]\nphish_action = \"delete\"\n").unwrap();
        assert_eq!(c.policy.phish_action, PhishAction::Action(ActionKind::Delete));
        let c = AgentConfig::from_toml("[policy]\nphish_action = \"same\"\n").unwrap();
        assert_eq!(c.policy.phish_action, PhishAction::Same);
    }

    #[test]
    fn imap_port_follows_security() {
        let mut imap = ImapConfig::default();
        assert_eq!(imap.port(), 993);
        imap.security = ImapSecurity::Starttls;
        assert_eq!(imap.port(), 143);
        imap.port = 10143;
        assert_eq!(imap.port(), 10143);
    }
}
